"""Reference max / average pooling: explicit loops over output positions, vectorised over N and C.

Rules the compiled kernels follow exactly:
- Windows are clamped to the input; padding is never read. Max pooling therefore never
  picks a padded position, and average pooling counts padded positions as zeros in the
  mean (the divisor is always KH*KW).
- Max pooling sends each output's gradient to one input: the first maximum in row-major
  window order. If the window holds a NaN the output is NaN and the gradient goes to the
  last NaN in row-major window order (both as PyTorch).
- The argmax is stored as a flat index into the input's H*W plane, int32 when H*W fits,
  else int64 (see `argmax_dtype`).
"""
import numpy as np

from .._cache import PoolCache
from .._validate import check_dout, check_pool_cache, contiguous, pool2d_inputs

INT32_MAX = 2**31 - 1


def argmax_dtype(window):
    """Integer dtype of stored argmax indices: int32 when every plane index fits, else int64."""
    return np.dtype(np.int32) if window.height * window.width <= INT32_MAX else np.dtype(np.int64)


def window_ranges(window):
    """Yield (oh, ow, rows, cols) for every output position in row-major order.

    rows, cols: slices of the input covered by that window, clamped to the input.
    """
    for oh in range(window.out_height):
        top = oh * window.stride_height - window.pad_height
        rows = slice(max(top, 0), min(top + window.kernel_height, window.height))
        for ow in range(window.out_width):
            left = ow * window.stride_width - window.pad_width
            cols = slice(max(left, 0), min(left + window.kernel_width, window.width))
            yield oh, ow, rows, cols


def _max_position(patch):
    """Index along the last axis of patch (N, C, K) of the element max pooling picks.

    The first maximum; when a row holds NaN, its last NaN.
    """
    is_nan = np.isnan(patch)
    last_nan = patch.shape[-1] - 1 - np.argmax(is_nan[..., ::-1], axis=-1)
    # np.argmax returns the first maximum (and the first NaN, which the line below overrides)
    return np.where(is_nan.any(axis=-1), last_nan, np.argmax(patch, axis=-1))


def _max_forward(x, window):
    out_shape = (window.batch, window.channels, window.out_height, window.out_width)
    out = np.empty(out_shape, dtype=x.dtype)
    argmax = np.empty(out_shape, dtype=argmax_dtype(window))
    for oh, ow, rows, cols in window_ranges(window):
        patch = x[:, :, rows, cols]
        patch_width = patch.shape[3]
        flat_patch = patch.reshape(window.batch, window.channels, patch.shape[2] * patch_width)
        position = _max_position(flat_patch)
        out[:, :, oh, ow] = np.take_along_axis(flat_patch, position[..., None], axis=-1)[..., 0]
        row = rows.start + position // patch_width
        col = cols.start + position % patch_width
        argmax[:, :, oh, ow] = row * window.width + col
    return out, argmax


def _max_backward(dout, argmax, window):
    dx = np.zeros((window.batch, window.channels, window.height * window.width), dtype=dout.dtype)
    images, channels = np.ogrid[:window.batch, :window.channels]
    for oh, ow, _, _ in window_ranges(window):
        # one index per (n, c), so no element is written twice by this +=
        dx[images, channels, argmax[:, :, oh, ow]] += dout[:, :, oh, ow]
    return dx.reshape(window.input_shape)


def _avg_forward(x, window):
    out = np.empty((window.batch, window.channels, window.out_height, window.out_width), dtype=x.dtype)
    area = window.kernel_height * window.kernel_width
    for oh, ow, rows, cols in window_ranges(window):
        out[:, :, oh, ow] = x[:, :, rows, cols].sum(axis=(2, 3)) / area
    return out


def _avg_backward(dout, window):
    dx = np.zeros(window.input_shape, dtype=dout.dtype)
    area = window.kernel_height * window.kernel_width
    for oh, ow, rows, cols in window_ranges(window):
        dx[:, :, rows, cols] += (dout[:, :, oh, ow] / area)[:, :, None, None]
    return dx


def max_pool2d_forward(x, kernel_size, stride=None, padding=0):
    """2-D max pooling; padding never wins a max.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W), float32 or float64, any memory layout.
    kernel_size : int or (h, w) pair
    stride : int or (h, w) pair, default kernel_size
    padding : int or (h, w) pair, at most half of kernel_size in each dimension.

    Returns
    -------
    out : ndarray of shape (N, C, OH, OW), x's dtype,
        OH = floor((H + 2*pad_h - KH) / stride_h) + 1, OW likewise.
    cache : PoolCache for max_pool2d_backward.
    """
    window = pool2d_inputs(x, kernel_size, stride, padding)
    out, argmax = _max_forward(contiguous(x), window)
    return out, PoolCache("max", window, x.dtype, argmax, "reference")


def max_pool2d_backward(dout, cache):
    """Gradient of max_pool2d_forward.

    dout : ndarray of shape (N, C, OH, OW), the forward output's shape and dtype.
    Returns dx of shape (N, C, H, W): each dout element added at its window's argmax
    (the first maximum in row-major window order; the last NaN if the window has one).
    """
    check_pool_cache(cache, "max")
    check_dout(dout, cache.out_shape, cache.dtype)
    return _max_backward(contiguous(dout), cache.argmax, cache.window)


def avg_pool2d_forward(x, kernel_size, stride=None, padding=0):
    """2-D average pooling; padded positions count as zeros in the mean (divisor KH*KW).

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W), float32 or float64, any memory layout.
    kernel_size : int or (h, w) pair
    stride : int or (h, w) pair, default kernel_size
    padding : int or (h, w) pair, at most half of kernel_size in each dimension.

    Returns
    -------
    out : ndarray of shape (N, C, OH, OW), x's dtype,
        OH = floor((H + 2*pad_h - KH) / stride_h) + 1, OW likewise.
    cache : PoolCache for avg_pool2d_backward.
    """
    window = pool2d_inputs(x, kernel_size, stride, padding)
    out = _avg_forward(contiguous(x), window)
    return out, PoolCache("avg", window, x.dtype, None, "reference")


def avg_pool2d_backward(dout, cache):
    """Gradient of avg_pool2d_forward.

    dout : ndarray of shape (N, C, OH, OW), the forward output's shape and dtype.
    Returns dx of shape (N, C, H, W): each dout element divided by KH*KW and added to
    every input of its window (overlapping windows add up).
    """
    check_pool_cache(cache, "avg")
    check_dout(dout, cache.out_shape, cache.dtype)
    return _avg_backward(contiguous(dout), cache.window)
