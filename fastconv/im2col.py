"""im2col / col2im: validate, dispatch to the compiled kernel or the reference twin."""
import numpy as np

from . import _backend, _compiled
from ._geometry import ConvGeometry
from ._settings import get_num_threads
from ._validate import col2im_inputs, contiguous, window_inputs
from .reference.im2col import _col2im as _reference_col2im
from .reference.im2col import _im2col as _reference_im2col


def _kernel_window(window):
    """The im2col kernels' Window values for a 2-D Window2d (zero padding, no dilation)."""
    return ConvGeometry(window.batch, window.channels, 0, 1, (window.height, window.width),
                        window.kernel_size, window.stride, (1, 1), window.padding,
                        window.padding, (window.out_height, window.out_width)).kernel_window()


def im2col(x, kernel_size, stride=1, padding=0, *, backend="auto"):
    """Unfold sliding windows of x into columns.

    x : ndarray of shape (N, C, H, W), float32 or float64 (any memory layout).
    kernel_size, stride, padding : int or (h, w) pair; zero padding.
    Returns cols of shape (C*KH*KW, N*OH*OW), x's dtype: rows ordered (c, kh, kw),
    columns (n, oh, ow), so that ``w.reshape(F, -1) @ cols`` is the convolution.
    """
    window = window_inputs(x, kernel_size, stride, padding)
    x = contiguous(x)
    if _backend.resolve(backend) == "reference":
        return _reference_im2col(x, window)
    rows = window.channels * window.kernel_height * window.kernel_width
    cols = np.empty((rows, window.batch * window.out_height * window.out_width), dtype=x.dtype)
    if cols.size:
        _compiled.im2col.im2col(x[:, :, None], cols, _kernel_window(window), get_num_threads())
    return cols


def col2im(cols, x_shape, kernel_size, stride=1, padding=0, *, backend="auto"):
    """Adjoint of im2col: fold columns back into an array of shape x_shape, summing overlaps.

    cols : ndarray of shape (C*KH*KW, N*OH*OW); x_shape : (N, C, H, W).
    Returns an (N, C, H, W) array of cols' dtype.
    """
    window = col2im_inputs(cols, x_shape, kernel_size, stride, padding)
    cols = contiguous(cols)
    if _backend.resolve(backend) == "reference":
        return _reference_col2im(cols, window)
    out = np.zeros(window.input_shape, dtype=cols.dtype)
    if cols.size:
        _compiled.im2col.col2im(cols, out[:, :, None], _kernel_window(window), get_num_threads())
    return out
