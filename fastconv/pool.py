"""Max / average pooling forward and backward: validate, choose backend, run the kernel.

Ties and NaN: max pooling sends each output's gradient to the first maximum of its window
in row-major order; a window holding NaN gives NaN, and its gradient goes to the window's
last NaN (both as PyTorch). Padding never wins a max and counts as zero in an average.
"""
import numpy as np

from . import _backend, _compiled, _tuning
from ._cache import PoolCache
from ._settings import get_num_threads
from ._validate import check_dout, check_pool_cache, contiguous, pool2d_inputs
from .reference import pool as reference

def _threads(window):
    planes = window.batch * window.channels
    if planes * window.height * window.width < _tuning.POOL_PARALLEL_MIN_ELEMENTS:
        return 1
    return min(get_num_threads(), planes)


def _planes(a, height, width):
    """View a C-contiguous (N, C, height, width) array as (N*C, height, width) planes."""
    return a.reshape(a.shape[0] * a.shape[1], height, width)


def _max_forward_compiled(x, window):
    out_shape = (window.batch, window.channels, window.out_height, window.out_width)
    out = np.empty(out_shape, dtype=x.dtype)
    argmax = np.empty(out_shape, dtype=reference.argmax_dtype(window))
    if out.size:
        _compiled.pool.max_forward(
            _planes(x, window.height, window.width),
            _planes(out, window.out_height, window.out_width),
            _planes(argmax, window.out_height, window.out_width),
            *window.kernel_size, *window.stride, *window.padding, _threads(window),
        )
    return out, argmax


def _max_backward_compiled(dout, argmax, window):
    dx = np.empty(window.input_shape, dtype=dout.dtype)
    if dx.size:
        planes = window.batch * window.channels
        _compiled.pool.max_backward(
            dout.reshape(planes, -1), argmax.reshape(planes, -1), dx.reshape(planes, -1),
            _threads(window),
        )
    return dx


def _avg_forward_compiled(x, window):
    out = np.empty((window.batch, window.channels, window.out_height, window.out_width), x.dtype)
    if out.size:
        _compiled.pool.avg_forward(
            _planes(x, window.height, window.width),
            _planes(out, window.out_height, window.out_width),
            *window.kernel_size, *window.stride, *window.padding, _threads(window),
        )
    return out


def _avg_backward_compiled(dout, window):
    dx = np.empty(window.input_shape, dtype=dout.dtype)
    if dx.size:
        _compiled.pool.avg_backward(
            _planes(dout, window.out_height, window.out_width),
            _planes(dx, window.height, window.width),
            *window.kernel_size, *window.stride, *window.padding, _threads(window),
        )
    return dx


def max_pool2d_forward(x, kernel_size, stride=None, padding=0, *, backend="auto"):
    """2-D max pooling; padding never wins a max.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W), float32 or float64, any memory layout (never written).
    kernel_size : int or (h, w) pair
    stride : int or (h, w) pair, default kernel_size
    padding : int or (h, w) pair, at most half of kernel_size in each dimension.
    backend : "auto", "cython" or "reference"

    Returns
    -------
    out : ndarray of shape (N, C, OH, OW), x's dtype,
        OH = floor((H + 2*pad_h - KH) / stride_h) + 1, OW likewise. A window holding
        NaN gives NaN.
    cache : PoolCache for max_pool2d_backward; it keeps each output's argmax as a flat
        index into its H*W plane (int32 when H*W < 2**31, else int64).
    """
    window = pool2d_inputs(x, kernel_size, stride, padding)
    backend = _backend.resolve(backend)
    x = contiguous(x)
    if backend == "reference":
        out, argmax = reference._max_forward(x, window)
    else:
        out, argmax = _max_forward_compiled(x, window)
    return out, PoolCache("max", window, x.dtype, argmax, backend)


def max_pool2d_backward(dout, cache):
    """Gradient of max_pool2d_forward, computed by the backend the forward used.

    dout : ndarray of shape (N, C, OH, OW), the forward output's shape and dtype.
    Returns dx of shape (N, C, H, W): each dout element goes to one input, the first
    maximum of its window in row-major order (the last NaN if the window has NaN);
    overlapping windows sharing that input add up.
    """
    check_pool_cache(cache, "max")
    check_dout(dout, cache.out_shape, cache.dtype)
    dout = contiguous(dout)
    if cache.backend == "reference":
        return reference._max_backward(dout, cache.argmax, cache.window)
    return _max_backward_compiled(dout, cache.argmax, cache.window)


def avg_pool2d_forward(x, kernel_size, stride=None, padding=0, *, backend="auto"):
    """2-D average pooling; padded positions count as zeros in the mean (divisor KH*KW).

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W), float32 or float64, any memory layout (never written).
    kernel_size : int or (h, w) pair
    stride : int or (h, w) pair, default kernel_size
    padding : int or (h, w) pair, at most half of kernel_size in each dimension.
    backend : "auto", "cython" or "reference"

    Returns
    -------
    out : ndarray of shape (N, C, OH, OW), x's dtype,
        OH = floor((H + 2*pad_h - KH) / stride_h) + 1, OW likewise.
    cache : PoolCache for avg_pool2d_backward.
    """
    window = pool2d_inputs(x, kernel_size, stride, padding)
    backend = _backend.resolve(backend)
    x = contiguous(x)
    if backend == "reference":
        out = reference._avg_forward(x, window)
    else:
        out = _avg_forward_compiled(x, window)
    return out, PoolCache("avg", window, x.dtype, None, backend)


def avg_pool2d_backward(dout, cache):
    """Gradient of avg_pool2d_forward, computed by the backend the forward used.

    dout : ndarray of shape (N, C, OH, OW), the forward output's shape and dtype.
    Returns dx of shape (N, C, H, W): each dout element divided by KH*KW and added to
    every input of its window (overlapping windows add up).
    """
    check_pool_cache(cache, "avg")
    check_dout(dout, cache.out_shape, cache.dtype)
    dout = contiguous(dout)
    if cache.backend == "reference":
        return reference._avg_backward(dout, cache.window)
    return _avg_backward_compiled(dout, cache.window)
