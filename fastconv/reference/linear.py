"""Reference linear (fully connected) layer: NumPy matrix products, the twin of _kernels/_linear.pyx."""
from .._cache import LinearCache
from .._validate import check_cache, check_linear_cache, check_linear_dout, contiguous, linear_inputs


def linear_forward(x, w, b=None):
    """out (N, out_features) = x (N, in_features) @ w.T (w (out_features, in_features)) [+ b],
    and the cache for linear_backward."""
    linear_inputs(x, w, b)
    x, w = contiguous(x), contiguous(w)
    out = x @ w.T
    if b is not None:
        out += b
    return out, LinearCache(x, w, b is not None, "reference")


def linear_backward(dout, cache, *, need_dx=True):
    """(dx or None, dw, db or None) of linear_forward: dx = dout @ w, dw = dout.T @ x,
    db = dout summed over the batch."""
    check_cache(cache, LinearCache, "linear_forward")
    check_linear_cache(cache)
    check_linear_dout(dout, cache)
    dw = dout.T @ cache.x
    db = dout.sum(axis=0) if cache.has_bias else None
    return (dout @ cache.weight if need_dx else None), dw, db
