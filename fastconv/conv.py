"""conv2d forward/backward: validate, plan (choose backend and algorithm), run the algorithm."""
import numpy as np

from . import _backend, algorithms, planner
from ._cache import ConvCache
from ._geometry import BLAS_INT_MAX
from ._validate import check_cache, check_dout, contiguous, conv2d_inputs
from .reference.conv import _backward as _reference_backward
from .reference.conv import _forward as _reference_forward

available_algorithms = planner.available_algorithms


def _check_blas_limits(geometry):
    sizes = {
        "C*KH*KW": geometry.patch,
        "H*W": geometry.height * geometry.width,
        "OH*OW": geometry.out_pixels,
        "F": geometry.filters,
    }
    for name, size in sizes.items():
        if size > BLAS_INT_MAX:
            raise ValueError(
                f"{name} = {size} exceeds the 32-bit BLAS size limit ({BLAS_INT_MAX}); "
                f"x shape {geometry.input_shape}, kernel {geometry.kernel}"
            )


def _forward_compiled(x, w, b, geometry, algorithm, automatic):
    """(out, the algorithm that computed it): with `automatic`, a result that came out not
    all finite from an algorithm whose transforms can turn an infinity into NaN is computed
    again by the direct method (algorithms/_winograd.py)."""
    if geometry.out_pixels * geometry.batch * geometry.filters == 0 or geometry.patch == 0:
        # nothing to multiply: the output is the bias
        out = np.empty(geometry.output_shape, dtype=x.dtype)
        out[...] = 0 if b is None else b.reshape((1, -1) + (1,) * geometry.ndim)
        return out, algorithm
    out, finite = algorithm.forward(x, w, b, geometry)
    if finite is False and automatic:
        algorithm = algorithms.DIRECT
        out, _ = algorithm.forward(x, w, b, geometry)
    return out, algorithm


def _backward_compiled(dout, x, w, has_bias, geometry, algorithm, automatic, need_dx):
    if dout.size == 0 or x.size == 0 or geometry.patch == 0:
        db = dout.sum(axis=(0,) + tuple(range(2, dout.ndim))) if has_bias else None
        return (np.zeros_like(x) if need_dx else None), np.zeros_like(w), db
    gradients, finite = algorithm.backward(dout, x, w, has_bias, geometry, need_dx)
    if finite is False and automatic:
        gradients, _ = algorithms.DIRECT.backward(dout, x, w, has_bias, geometry, need_dx)
    dx, dw, db = gradients
    return (dx if need_dx else None), dw, db


def conv2d_forward(x, w, b=None, stride=1, padding=0, *, backend="auto", algorithm="auto"):
    """2-D convolution (cross-correlation, as in deep learning) with zero padding.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
    w : ndarray of shape (F, C, KH, KW)
    b : ndarray of shape (F,) or None
        x, w and b share one dtype, float32 or float64; any memory layout.
    stride, padding : int or (h, w) pair
    backend : "auto", "cython" or "reference"
    algorithm : "auto" or one of `available_algorithms()` (compiled backend only;
        a name that cannot handle the shape raises UnsupportedAlgorithm, a ValueError).

    Returns
    -------
    out : ndarray of shape (N, F, OH, OW), x's dtype,
        OH = floor((H + 2*pad_h - KH) / stride_h) + 1, OW likewise.
    cache : ConvCache for conv2d_backward.
    """
    geometry = conv2d_inputs(x, w, b, stride, padding)
    backend = _backend.resolve(backend)
    automatic = algorithm == "auto"
    chosen = planner.choose(geometry, x.dtype, algorithm, "forward")
    if backend == "cython":  # before any copy or allocation
        _check_blas_limits(geometry)
    x, w = contiguous(x), contiguous(w)
    b = None if b is None else contiguous(b)
    if backend == "reference":
        out = _reference_forward(x, w, b, geometry)
    else:
        out, chosen = _forward_compiled(x, w, b, geometry, chosen, automatic)
    return out, ConvCache(x, w, b is not None, geometry, backend, chosen.NAME, automatic)


def conv2d_backward(dout, cache, *, need_dx=True):
    """Gradients of conv2d_forward, computed by the backend the forward used.

    dout : ndarray of shape (N, F, OH, OW), the forward output's shape and dtype.
    need_dx : False skips the input gradient (dx is then None), e.g. for a first layer.
    Returns dx (N, C, H, W), dw (F, C, KH, KW), db (F,) — db is None when the
    forward had no bias.
    """
    check_cache(cache, ConvCache, "conv2d_forward")
    check_dout(dout, cache.out_shape, cache.x.dtype)
    dout = contiguous(dout)
    if cache.backend == "reference":
        dx, dw, db = _reference_backward(dout, cache.x, cache.weight, cache.has_bias, cache.window)
        return (dx if need_dx else None), dw, db
    algorithm = algorithms.REGISTRY.get(cache.algorithm)
    if algorithm is None or algorithm.supports(cache.window) is not None:
        raise ValueError(f"cache holds algorithm {cache.algorithm!r}, which cannot do its "
                         "geometry: a cache must go back to its backward as the forward returned it")
    return _backward_compiled(dout, cache.x, cache.weight, cache.has_bias, cache.window,
                              algorithm, cache.automatic, need_dx)
