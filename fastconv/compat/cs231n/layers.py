"""The course's ``cs231n.layers``: affine, ReLU, batch/layer norm, dropout, naive conv and pooling,
spatial batch and group norm, and the losses, each ``forward -> (out, cache)``, ``backward(dout, cache)``.

Batch, layer and group norm run on fastconv's compiled kernels (fastconv.norm); the
``*_naive`` conv and pooling functions on the NumPy reference twins. The parameter dicts
are the course's:

- ``bn_param``: ``'mode'`` ('train' or 'test', required), ``'eps'`` (1e-5),
  ``'momentum'`` (0.9), ``'running_mean'`` and ``'running_var'`` (zeros of shape (D,) until
  the first training call stores them). In training,
  running = momentum * running + (1 - momentum) * batch statistic, with the biased batch
  variance, as the course has it (fastconv's own layers follow PyTorch instead);
- ``ln_param`` / ``gn_param``: ``'eps'`` (1e-5); the keys of a bn_param are accepted and
  ignored (the course's nets pass their bn_params, with 'mode', to layer norm);
- ``dropout_param``: ``'p'`` (the probability of *keeping* a unit), ``'mode'``, and
  ``'seed'``, which reseeds NumPy's global generator as the course does.
"""
from collections import namedtuple

import numpy as np

from . import _checks
from . import conv_backward_naive, conv_forward_naive, max_pool_backward_naive, max_pool_forward_naive  # noqa: F401
from ... import losses, norm

AffineCache = namedtuple("AffineCache", "x w b")
DropoutCache = namedtuple("DropoutCache", "dropout_param mask")
GroupNormCache = namedtuple("GroupNormCache", "norm parameter_shape")

_BN_KEYS = ("mode", "eps", "momentum", "running_mean", "running_var")

__all__ = [
    "affine_forward", "affine_backward", "relu_forward", "relu_backward",
    "softmax_loss", "svm_loss",
    "batchnorm_forward", "batchnorm_backward", "batchnorm_backward_alt",
    "layernorm_forward", "layernorm_backward",
    "dropout_forward", "dropout_backward",
    "conv_forward_naive", "conv_backward_naive", "max_pool_forward_naive", "max_pool_backward_naive",
    "spatial_batchnorm_forward", "spatial_batchnorm_backward",
    "spatial_groupnorm_forward", "spatial_groupnorm_backward",
]


# --- affine and ReLU ---------------------------------------------------------------------------

def affine_forward(x, w, b):
    """Fully connected layer: out = x.reshape(N, D) @ w + b.

    Parameters
    ----------
    x : ndarray of shape (N, d_1, ..., d_k), D = d_1 * ... * d_k
    w : ndarray of shape (D, M)
    b : ndarray of shape (M,)

    Returns
    -------
    out : ndarray of shape (N, M), in NumPy's result dtype of x, w and b.
    cache : (x, w, b) for affine_backward.
    """
    _checks.float_array(x, "x", "(N, d_1, ..., d_k)")
    _checks.float_array(w, "w", "(D, M)")
    _checks.float_array(b, "b", "(M,)")
    if x.ndim < 1 or w.ndim != 2 or b.ndim != 1:
        raise ValueError(f"affine_forward needs x (N, d_1, ..., d_k), w (D, M), b (M,); got shapes "
                         f"{x.shape}, {w.shape}, {b.shape}")
    features = int(np.prod(x.shape[1:]))
    if w.shape[0] != features or b.shape[0] != w.shape[1]:
        raise ValueError(f"w must have shape (D, M) = ({features}, M), D the product of x's trailing "
                         f"dimensions {x.shape[1:]}, and b shape (M,); got w {w.shape}, b {b.shape}")
    out = x.reshape(x.shape[0], features) @ w
    out += b
    return out, AffineCache(x, w, b)


def affine_backward(dout, cache):
    """Backward pass of affine_forward.

    dout : ndarray of shape (N, M). Returns (dx, dw, db) of shapes (N, d_1, ..., d_k), (D, M), (M,).
    """
    if not isinstance(cache, AffineCache):
        raise TypeError(f"cache must be the AffineCache returned by affine_forward, got {type(cache).__name__}")
    x, w, _ = cache
    _checks.float_array(dout, "dout", f"(N, M) = {(x.shape[0], w.shape[1])}")
    if dout.shape != (x.shape[0], w.shape[1]):
        raise ValueError(f"dout must have the forward output's shape {(x.shape[0], w.shape[1])}, got {dout.shape}")
    flat = x.reshape(x.shape[0], -1)
    return (dout @ w.T).reshape(x.shape), flat.T @ dout, dout.sum(axis=0)


def relu_forward(x):
    """max(x, 0) elementwise (NaN stays NaN). Returns (out, cache = x)."""
    _checks.float_array(x, "x", "any")
    return np.maximum(x, x.dtype.type(0)), x


def relu_backward(dout, cache):
    """dout where the forward's input was > 0, else 0. Returns dx of x's shape."""
    x = cache
    if not isinstance(x, np.ndarray):
        raise TypeError(f"cache must be the input array relu_forward returned, got {type(x).__name__}")
    _checks.float_array(dout, "dout", str(x.shape))
    if dout.shape != x.shape:
        raise ValueError(f"dout must have the forward output's shape {x.shape}, got {dout.shape}")
    return dout * (x > 0)


def softmax_loss(x, y):
    """Softmax cross-entropy: x (N, C) scores, y (N,) integer labels -> (loss, dx), averaged over N."""
    return losses.softmax_loss(x, y)


def svm_loss(x, y):
    """Multiclass SVM (hinge, margin 1): x (N, C) scores, y (N,) labels -> (loss, dx), averaged over N."""
    return losses.svm_loss(x, y)


# --- batch and layer norm ----------------------------------------------------------------------

def _norm_arrays(x, gamma, beta, layout, parameter_layout):
    _checks.float_array(x, "x", layout)
    _checks.real_array(gamma, "gamma", parameter_layout)
    _checks.real_array(beta, "beta", parameter_layout)
    dtype = _checks.common_float_dtype(x, gamma, beta)
    return _checks.as_dtype(x, dtype), _checks.as_dtype(gamma, dtype), _checks.as_dtype(beta, dtype)


def _batchnorm(x, gamma, beta, bn_param, layout):
    _checks.param_dict(bn_param, "bn_param", _BN_KEYS, required=("mode",))
    mode = _checks.mode(bn_param, "bn_param")
    eps = bn_param.get("eps", 1e-5)
    momentum = _checks.number(bn_param.get("momentum", 0.9), "bn_param['momentum']", low=0, high=1)
    x, gamma, beta = _norm_arrays(x, gamma, beta, layout, "(C,)")
    channels = x.shape[1] if x.ndim >= 2 else 0
    running = []
    for key in ("running_mean", "running_var"):
        value = bn_param.get(key)
        if value is None:
            value = np.zeros(channels, dtype=x.dtype)
        running.append(_checks.as_dtype(_checks.real_array(value, f"bn_param[{key!r}]", "(C,)"), x.dtype))
    if mode == "train":
        out, cache = norm.batch_norm_forward(x, gamma, beta, training=True, eps=eps)
        # the course's convention: momentum weighs the old estimate; the biased batch variance
        bn_param["running_mean"] = (momentum * running[0] + (1 - momentum) * cache.mean).astype(x.dtype)
        bn_param["running_var"] = (momentum * running[1] + (1 - momentum) * cache.var).astype(x.dtype)
    else:
        out, cache = norm.batch_norm_forward(x, gamma, beta, *running, training=False, eps=eps)
    return out, cache


def batchnorm_forward(x, gamma, beta, bn_param):
    """Batch normalisation of (N, D) features.

    Parameters
    ----------
    x : ndarray of shape (N, D)
    gamma, beta : ndarrays of shape (D,), the scale and shift
    bn_param : dict with 'mode' ('train' or 'test'), optional 'eps' (1e-5), 'momentum'
        (0.9), 'running_mean', 'running_var' (D,). Training uses the batch's mean and
        biased variance and stores the updated running estimates in bn_param; test uses them.

    Returns
    -------
    out : ndarray of shape (N, D)
    cache : for batchnorm_backward.
    """
    if isinstance(x, np.ndarray) and x.ndim != 2:
        raise ValueError(f"batchnorm_forward expects x of shape (N, D), got {x.shape}; "
                         "use spatial_batchnorm_forward for (N, C, H, W)")
    return _batchnorm(x, gamma, beta, bn_param, "(N, D)")


def batchnorm_backward(dout, cache):
    """Backward pass of batchnorm_forward: (dx, dgamma, dbeta) of shapes (N, D), (D,), (D,).

    In training mode dx includes the path through the batch mean and variance (the fused
    closed form, in two passes over dout and x).
    """
    _checks_cache(cache, norm_kind="batch", function="batchnorm_forward / spatial_batchnorm_forward")
    return norm.batch_norm_backward(_checks.in_dtype(dout, cache.x.dtype), cache)


def batchnorm_backward_alt(dout, cache):
    """The course's "simplified" batch norm backward: the same closed form as batchnorm_backward."""
    return batchnorm_backward(dout, cache)


def _checks_cache(cache, norm_kind, function):
    if not isinstance(cache, norm.NormCache) or cache.kind != norm_kind:
        raise TypeError(f"cache must be the cache returned by {function}, got {type(cache).__name__}")


def _layer_param(params, name):
    _checks.param_dict(params, name, _BN_KEYS)
    return params.get("eps", 1e-5)


def layernorm_forward(x, gamma, beta, ln_param):
    """Layer normalisation: each row of x (N, D) normalised over its D features, then scaled and shifted.

    gamma, beta : (D,). ln_param : dict with optional 'eps' (1e-5). The same in training and test.
    Returns (out (N, D), cache).
    """
    eps = _layer_param(ln_param, "ln_param")
    x, gamma, beta = _norm_arrays(x, gamma, beta, "(N, D)", "(D,)")
    if x.ndim != 2:
        raise ValueError(f"layernorm_forward expects x of shape (N, D), got {x.shape}")
    if gamma.shape != (x.shape[1],) or beta.shape != (x.shape[1],):
        raise ValueError(f"gamma and beta must have shape (D,) = ({x.shape[1]},), got {gamma.shape} and {beta.shape}")
    return norm.layer_norm_forward(x, gamma, beta, eps=eps)


def layernorm_backward(dout, cache):
    """Backward pass of layernorm_forward: (dx, dgamma, dbeta) of shapes (N, D), (D,), (D,)."""
    _checks_cache(cache, norm_kind="layer", function="layernorm_forward")
    return norm.layer_norm_backward(_checks.in_dtype(dout, cache.x.dtype), cache)


# --- dropout ---------------------------------------------------------------------------------

def dropout_forward(x, dropout_param):
    """Inverted dropout: in 'train' mode keep each unit with probability p and divide by p.

    Parameters
    ----------
    x : ndarray of any shape
    dropout_param : dict with 'p' (the probability of keeping a unit, in (0, 1]), 'mode'
        ('train' or 'test') and optional 'seed' (np.random.seed(seed) is called first, so the
        mask repeats: the course's way of making gradient checks deterministic).

    Returns
    -------
    out : x's shape and dtype; in 'test' mode x itself.
    cache : (dropout_param, mask) for dropout_backward; mask (x's dtype) is None in test mode.
    """
    _checks.param_dict(dropout_param, "dropout_param", ("p", "mode", "seed"), required=("p", "mode"))
    keep = _checks.number(dropout_param["p"], "dropout_param['p'] (the keep probability)", low=0, high=1, low_open=True)
    mode = _checks.mode(dropout_param, "dropout_param")
    _checks.float_array(x, "x", "any")
    if "seed" in dropout_param:
        np.random.seed(dropout_param["seed"])
    if mode == "test":
        return x, DropoutCache(dropout_param, None)
    mask = (np.random.rand(*x.shape) < keep).astype(x.dtype)
    mask /= x.dtype.type(keep)
    return x * mask, DropoutCache(dropout_param, mask)


def dropout_backward(dout, cache):
    """Backward pass of dropout_forward: dout * mask in 'train' mode, dout in 'test' mode."""
    if not isinstance(cache, DropoutCache):
        raise TypeError(f"cache must be the DropoutCache returned by dropout_forward, got {type(cache).__name__}")
    _checks.float_array(dout, "dout", "the forward output's shape")
    if cache.mask is None:
        return dout
    if dout.shape != cache.mask.shape:
        raise ValueError(f"dout must have the forward output's shape {cache.mask.shape}, got {dout.shape}")
    return dout * cache.mask


# --- spatial batch and group norm --------------------------------------------------------------

def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    """Batch normalisation of each channel of (N, C, H, W) maps over (N, H, W).

    gamma, beta : (C,). bn_param : as batchnorm_forward (running estimates of shape (C,)).
    Returns (out (N, C, H, W), cache). On the compiled kernels directly, without the
    course's transpose to (N*H*W, C).
    """
    if isinstance(x, np.ndarray) and x.ndim != 4:
        raise ValueError(f"spatial_batchnorm_forward expects x of shape (N, C, H, W), got {x.shape}")
    return _batchnorm(x, gamma, beta, bn_param, "(N, C, H, W)")


def spatial_batchnorm_backward(dout, cache):
    """Backward pass of spatial_batchnorm_forward: (dx, dgamma, dbeta) of shapes (N, C, H, W), (C,), (C,)."""
    return batchnorm_backward(dout, cache)


def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    """Group normalisation: each sample's C channels in G groups of C/G, each group normalised.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
    gamma, beta : ndarrays of shape (1, C, 1, 1) (the course's) or (C,); the gradients
        come back in the same shape.
    G : int, the number of groups, dividing C.
    gn_param : dict with optional 'eps' (1e-5); a bn_param's keys are accepted and ignored.

    Returns (out (N, C, H, W), cache).
    """
    eps = _layer_param(gn_param, "gn_param")
    x, gamma, beta = _norm_arrays(x, gamma, beta, "(N, C, H, W)", "(1, C, 1, 1)")
    if x.ndim != 4:
        raise ValueError(f"spatial_groupnorm_forward expects x of shape (N, C, H, W), got {x.shape}")
    channels = x.shape[1]
    if gamma.shape not in ((channels,), (1, channels, 1, 1)) or beta.shape != gamma.shape:
        raise ValueError(f"gamma and beta must have shape (1, {channels}, 1, 1) or ({channels},), "
                         f"got {gamma.shape} and {beta.shape}")
    out, cache = norm.group_norm_forward(x, gamma.reshape(channels), beta.reshape(channels), G, eps=eps)
    return out, GroupNormCache(cache, gamma.shape)


def spatial_groupnorm_backward(dout, cache):
    """Backward pass of spatial_groupnorm_forward: (dx, dgamma, dbeta), dgamma and dbeta in gamma's shape."""
    if not isinstance(cache, GroupNormCache):
        raise TypeError(f"cache must be the cache returned by spatial_groupnorm_forward, got {type(cache).__name__}")
    dx, dgamma, dbeta = norm.group_norm_backward(_checks.in_dtype(dout, cache.norm.x.dtype), cache.norm)
    return dx, dgamma.reshape(cache.parameter_shape), dbeta.reshape(cache.parameter_shape)
