"""Classification losses on class scores, averaged over the batch, with their gradients."""
import numbers

import numpy as np

from ._validate import check_array


def _scores_and_labels(scores, y):
    check_array(scores, "scores", 2, "(N, num_classes)")
    num_samples, num_classes = scores.shape
    if num_samples == 0 or num_classes == 0:
        raise ValueError(f"scores must have at least one sample and one class, got shape {scores.shape}")
    if not isinstance(y, np.ndarray):
        raise TypeError(f"y must be a numpy.ndarray of integer labels, shape ({num_samples},), got {type(y).__name__}")
    if y.dtype.kind not in "iu":
        raise TypeError(f"y must hold integer class labels, got dtype {y.dtype} (shape {y.shape})")
    if y.shape != (num_samples,):
        raise ValueError(
            f"y must have shape (N,) = ({num_samples},) to match scores {scores.shape}, got {y.shape}"
        )
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(
            f"labels in y must lie in [0, {num_classes}) for scores {scores.shape}, "
            f"got values from {y.min()} to {y.max()}"
        )
    return num_samples, num_classes


def softmax_loss(scores, y):
    """Mean cross-entropy of the softmax of `scores` against labels `y`.

    Parameters
    ----------
    scores : ndarray of shape (N, num_classes), float32 or float64
    y : integer ndarray of shape (N,), values in [0, num_classes)

    Returns
    -------
    loss : float, mean over the batch of -log softmax(scores)[i, y[i]]
    dscores : ndarray of scores' shape and dtype, d loss / d scores

    Scores are shifted by their row maximum first, so large scores cannot overflow exp.
    """
    num_samples, _ = _scores_and_labels(scores, y)
    rows = np.arange(num_samples)
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    log_probs = shifted - log_norm
    loss = -log_probs[rows, y].mean()
    dscores = np.exp(log_probs)
    dscores[rows, y] -= 1
    dscores /= num_samples
    return float(loss), dscores


def svm_loss(scores, y, margin=1.0):
    """Mean multiclass hinge loss: sum over j != y[i] of max(0, scores[i, j] - scores[i, y[i]] + margin).

    Parameters
    ----------
    scores : ndarray of shape (N, num_classes), float32 or float64
    y : integer ndarray of shape (N,), values in [0, num_classes)
    margin : float >= 0

    Returns
    -------
    loss : float
    dscores : ndarray of scores' shape and dtype. At a kink (a margin exactly 0) the
        subgradient 0 is used.
    """
    num_samples, _ = _scores_and_labels(scores, y)
    if isinstance(margin, bool) or not isinstance(margin, numbers.Real) or not margin >= 0:
        raise ValueError(f"margin must be a number >= 0, got {margin!r}")
    rows = np.arange(num_samples)
    correct = scores[rows, y][:, None]
    margins = np.maximum(scores - correct + scores.dtype.type(margin), 0)
    margins[rows, y] = 0
    loss = margins.sum() / num_samples
    violated = (margins > 0).astype(scores.dtype)
    violated[rows, y] = -violated.sum(axis=1)
    violated /= num_samples
    return float(loss), violated


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
