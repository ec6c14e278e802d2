"""Reference im2col / col2im: explicit loops over output positions, the specification of the fast path."""
import numpy as np

from .._validate import col2im_inputs, contiguous, window_inputs


def pad_images(x, window):
    """x (N, C, H, W) zero-padded to (N, C, H + 2*pad_height, W + 2*pad_width)."""
    return np.pad(x, ((0, 0), (0, 0), (window.pad_height,) * 2, (window.pad_width,) * 2))


def output_positions(window):
    """Yield (n, oh, ow, top, left) for every output position in (n, oh, ow) order.

    top/left: the window's first row and column in the padded input.
    """
    for n in range(window.batch):
        for oh in range(window.out_height):
            for ow in range(window.out_width):
                yield n, oh, ow, oh * window.stride_height, ow * window.stride_width


def _im2col(x, window):
    padded = pad_images(x, window)
    rows = window.channels * window.kernel_height * window.kernel_width
    cols = np.empty((rows, window.batch * window.out_height * window.out_width), dtype=x.dtype)
    for col, (n, _, _, top, left) in enumerate(output_positions(window)):
        patch = padded[n, :, top:top + window.kernel_height, left:left + window.kernel_width]
        cols[:, col] = patch.ravel()
    return cols


def _col2im(cols, window):
    padded = np.zeros(
        (window.batch, window.channels, window.height + 2 * window.pad_height,
         window.width + 2 * window.pad_width),
        dtype=cols.dtype,
    )
    patch_shape = (window.channels, window.kernel_height, window.kernel_width)
    for col, (n, _, _, top, left) in enumerate(output_positions(window)):
        padded[n, :, top:top + window.kernel_height, left:left + window.kernel_width] += (
            cols[:, col].reshape(patch_shape)
        )
    return np.ascontiguousarray(
        padded[:, :, window.pad_height:window.pad_height + window.height,
               window.pad_width:window.pad_width + window.width]
    )


def im2col(x, kernel_size, stride=1, padding=0):
    """Unfold sliding windows of x into columns.

    x : ndarray of shape (N, C, H, W), float32 or float64.
    Returns cols of shape (C*KH*KW, N*OH*OW): rows ordered (c, kh, kw), columns (n, oh, ow),
    so that ``w.reshape(F, -1) @ cols`` is the convolution. Zero padding.
    """
    window = window_inputs(x, kernel_size, stride, padding)
    return _im2col(contiguous(x), window)


def col2im(cols, x_shape, kernel_size, stride=1, padding=0):
    """Adjoint of im2col: fold columns back into an (N, C, H, W) array, summing overlaps.

    cols : ndarray of shape (C*KH*KW, N*OH*OW); x_shape : (N, C, H, W).
    """
    window = col2im_inputs(cols, x_shape, kernel_size, stride, padding)
    return _col2im(contiguous(cols), window)
