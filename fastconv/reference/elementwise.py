"""Reference ReLU, LeakyReLU and dropout: plain NumPy, the specification of _kernels/_elementwise.pyx.

Rules the compiled kernels follow exactly:
- ReLU: out = max(x, 0), a NaN stays NaN; the gradient passes where x > 0 (not at 0, not
  for NaN) and is 0 elsewhere, even where dout is NaN or infinite (np.where, not a product).
- LeakyReLU: out = x where x > 0, alpha * x elsewhere (so NaN stays NaN); the gradient is
  dout where x > 0, alpha * dout elsewhere.
- Dropout: element i is kept where uniform[i] >= p; out = x * m with m = scale (kept) or 0,
  scale = 1 / (1 - p) in x's dtype; so a dropped NaN or infinity gives NaN. dx = dout * m.
"""
import numpy as np

from .._cache import MaskCache
from .._validate import check_alpha, check_dropout, check_float_array, check_mask_dout


def relu_forward(x):
    """out = max(x, 0) (x's shape and dtype; NaN stays NaN) and the cache for relu_backward."""
    check_float_array(x, "x")
    # np.maximum, not np.where(x > 0, ...): a NaN must stay NaN, or a diverging net hides
    out = np.maximum(x, x.dtype.type(0))
    return out, MaskCache("relu", x > 0, "C", x.shape, x.dtype, None, "reference")


def relu_backward(dout, cache):
    """dx = dout where the forward's x > 0, else 0."""
    check_mask_dout(dout, cache, "relu", "relu_forward")
    return np.where(cache.mask, dout, cache.dtype.type(0))


def leaky_relu_forward(x, alpha=0.01):
    """out = x where x > 0, alpha * x elsewhere, and the cache for leaky_relu_backward."""
    check_float_array(x, "x")
    alpha = check_alpha(alpha)
    positive = x > 0
    out = np.where(positive, x, x * x.dtype.type(alpha))
    return out, MaskCache("leaky_relu", positive, "C", x.shape, x.dtype, alpha, "reference")


def leaky_relu_backward(dout, cache):
    """dx = dout where the forward's x > 0, alpha * dout elsewhere."""
    check_mask_dout(dout, cache, "leaky_relu", "leaky_relu_forward")
    return np.where(cache.mask, dout, dout * cache.dtype.type(cache.parameter))


def dropout_forward(x, p, uniform):
    """Inverted dropout: keep x[i] * 1 / (1 - p) where uniform[i] >= p, else x[i] * 0.

    uniform : float64 array of x's shape, uniform on [0, 1) (the caller's random numbers).
    Returns out and the cache for dropout_backward.
    """
    p = check_dropout(x, p, uniform)
    scale = x.dtype.type(1.0 / (1.0 - p))
    keep = uniform >= p
    out = x * (keep.astype(x.dtype) * scale)
    return out, MaskCache("dropout", keep, "C", x.shape, x.dtype, scale, "reference")


def dropout_backward(dout, cache):
    """dx = dout * scale where the element was kept, dout * 0 elsewhere."""
    check_mask_dout(dout, cache, "dropout", "dropout_forward")
    return dout * (cache.mask.astype(cache.dtype) * cache.parameter)
