"""Reference conv2d forward/backward: explicit loops over output positions (n, oh, ow)."""
import numpy as np

from .._cache import ConvCache
from .._validate import check_cache, check_dout, contiguous, conv2d_inputs
from .im2col import output_positions, pad_images


def _forward(x, w, b, window):
    filters = w.shape[0]
    weight_rows = w.reshape(filters, window.channels * window.kernel_height * window.kernel_width)
    padded = pad_images(x, window)
    out = np.empty((window.batch, filters, window.out_height, window.out_width), dtype=x.dtype)
    for n, oh, ow, top, left in output_positions(window):
        patch = padded[n, :, top:top + window.kernel_height, left:left + window.kernel_width]
        out[n, :, oh, ow] = weight_rows @ patch.ravel()
    if b is not None:
        out += b.reshape(1, filters, 1, 1)
    return out


def _backward(dout, x, w, has_bias, window):
    filters = w.shape[0]
    weight_rows = w.reshape(filters, window.channels * window.kernel_height * window.kernel_width)
    padded = pad_images(x, window)
    dpadded = np.zeros_like(padded)
    dweight_rows = np.zeros_like(weight_rows)
    patch_shape = (window.channels, window.kernel_height, window.kernel_width)
    for n, oh, ow, top, left in output_positions(window):
        grad = dout[n, :, oh, ow]
        rows = slice(top, top + window.kernel_height)
        columns = slice(left, left + window.kernel_width)
        dweight_rows += np.outer(grad, padded[n, :, rows, columns].ravel())
        dpadded[n, :, rows, columns] += (weight_rows.T @ grad).reshape(patch_shape)
    dx = np.ascontiguousarray(
        dpadded[:, :, window.pad_height:window.pad_height + window.height,
                window.pad_width:window.pad_width + window.width]
    )
    db = dout.sum(axis=(0, 2, 3)) if has_bias else None
    return dx, dweight_rows.reshape(w.shape), db


def conv2d_forward(x, w, b=None, stride=1, padding=0):
    """2-D convolution (cross-correlation, as in deep learning) with zero padding.

    x : (N, C, H, W); w : (F, C, KH, KW); b : (F,) or None; all float32 or all float64.
    stride, padding : int or (h, w) pair.
    Returns out of shape (N, F, OH, OW), OH = floor((H + 2*pad_h - KH) / stride_h) + 1,
    and a cache for conv2d_backward.
    """
    window = conv2d_inputs(x, w, b, stride, padding)
    x, w = contiguous(x), contiguous(w)
    b = None if b is None else contiguous(b)
    out = _forward(x, w, b, window)
    return out, ConvCache(x, w, b is not None, window, "reference", "direct")


def conv2d_backward(dout, cache):
    """Gradients of conv2d_forward.

    dout : (N, F, OH, OW), the forward output's shape and dtype.
    Returns dx (N, C, H, W), dw (F, C, KH, KW), db (F,) or None when the forward had no bias.
    """
    check_cache(cache, ConvCache, "conv2d_forward")
    check_dout(dout, cache.out_shape, cache.x.dtype)
    return _backward(contiguous(dout), cache.x, cache.weight, cache.has_bias, cache.window)
