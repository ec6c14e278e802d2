"""Classification losses on class scores, averaged over the batch, with their gradients.

softmax_loss and svm_loss validate here and compute in one compiled pass per row
(_kernels/_elementwise.pyx); fastconv.reference.losses holds the NumPy formulas they follow.
"""
import numbers

import numpy as np

from . import _backend, _compiled
from ._settings import get_num_threads
from ._validate import check_margin, scores_and_labels
from .reference import losses as reference

# Below this many scores a loss takes microseconds: one thread.
_PARALLEL_MIN_SCORES = 2**16


def _run_compiled(kernel, scores, y, *arguments):
    scores = np.ascontiguousarray(scores)
    labels = np.ascontiguousarray(y, dtype=np.intp)
    dscores = np.empty_like(scores)
    threads = 1 if scores.size < _PARALLEL_MIN_SCORES else min(get_num_threads(), scores.shape[0])
    loss = kernel(scores, labels, *arguments, dscores, threads)
    return float(loss), dscores


def softmax_loss(scores, y, *, backend="auto"):
    """Mean cross-entropy of the softmax of `scores` against labels `y`.

    Parameters
    ----------
    scores : ndarray of shape (N, num_classes), float32 or float64, any layout (never written)
    y : integer ndarray of shape (N,), values in [0, num_classes)
    backend : "auto", "cython" or "reference" (fastconv.reference.losses)

    Returns
    -------
    loss : float, mean over the batch of -log softmax(scores)[i, y[i]]
    dscores : ndarray of scores' shape and dtype, d loss / d scores

    Scores are shifted by their row maximum first, so large scores cannot overflow exp.
    A NaN in a row makes that row's loss and gradient NaN.
    """
    scores_and_labels(scores, y)
    if _backend.resolve(backend) == "reference":
        return reference.softmax_loss(scores, y)
    return _run_compiled(_compiled.elementwise.softmax_loss, scores, y)


def svm_loss(scores, y, margin=1.0, *, backend="auto"):
    """Mean multiclass hinge loss: sum over j != y[i] of max(0, scores[i, j] - scores[i, y[i]] + margin).

    Parameters
    ----------
    scores : ndarray of shape (N, num_classes), float32 or float64, any layout (never written)
    y : integer ndarray of shape (N,), values in [0, num_classes)
    margin : float >= 0
    backend : "auto", "cython" or "reference" (fastconv.reference.losses)

    Returns
    -------
    loss : float
    dscores : ndarray of scores' shape and dtype. At a kink (a margin exactly 0) the
        subgradient 0 is used.
    """
    scores_and_labels(scores, y)
    margin = check_margin(margin)
    if _backend.resolve(backend) == "reference":
        return reference.svm_loss(scores, y, margin)
    return _run_compiled(_compiled.elementwise.svm_loss, scores, y, scores.dtype.type(margin))


def l2_penalty(params, strength, keys=None):
    """L2 weight penalty 0.5 * strength * sum of squares, and its gradients.

    Parameters
    ----------
    params : dict of name -> ndarray (e.g. a model's ``params``)
    strength : float >= 0
    keys : names to penalise; None selects every name ending in "weight"
        (biases and normalisation shifts are usually left alone).

    Returns
    -------
    penalty : float
    grads : dict of the selected names -> strength * param (param's dtype), to add to
        the loss gradients before an optimiser step.
    """
    if isinstance(strength, bool) or not isinstance(strength, numbers.Real) or not strength >= 0:
        raise ValueError(f"strength must be a number >= 0, got {strength!r}")
    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict of name -> ndarray, got {type(params).__name__}")
    if keys is None:
        keys = [name for name in params if name == "weight" or name.endswith(".weight")]
    penalty = 0.0
    grads = {}
    for name in keys:
        if name not in params:
            raise KeyError(f"l2_penalty: no parameter named {name!r}; names are {sorted(params)}")
        value = params[name]
        penalty += 0.5 * strength * float(np.sum(value * value))
        grads[name] = value * value.dtype.type(strength)
    return penalty, grads
