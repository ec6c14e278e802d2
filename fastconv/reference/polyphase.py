"""Space-to-depth (polyphase) rearrangement, the NumPy twin of the compiled copies: a strided convolution as a 3x3 stride-1 one.

With stride (s_h, s_w), output (oh, ow) of a KH x KW convolution reads padded input pixels
(s_h*oh + kh, s_w*ow + kw). Write kh = s_h*i + a (0 <= a < s_h) and kw = s_w*j + b: the pixel
is then pixel (oh + i, ow + j) of the phase image (a, b) of channel c,

    phases[n, (c, a, b), p, q] = padded x[n, c, s_h*p + a, s_w*q + b],

and the convolution is a stride-1 one over the C*s_h*s_w phase images with the kernels
cut the same way, kernels[f, (c, a, b), i, j] = w[f, c, s_h*i + a, s_w*j + b] (zero where
that tap lies past KH or KW). With KH <= 3*s_h and KW <= 3*s_w those kernels are 3x3, and the
phase images need OH + 2 rows and OW + 2 columns. Every padded input pixel lies in exactly
one phase image, so the gradient with respect to x is the phases' gradient put back in place.

Space-to-batch (below) is the same rearrangement with the phases in the batch: dilated
convolutions as undilated ones.
"""
import numpy as np


def _span(phase, stride, pad, size, count):
    """For phase `phase` along one axis: the phase positions [first, stop) (of `count`) that
    fall inside the input (0 <= stride*p + phase - pad < size), and the input index of the
    first; (0, 0, 0) when none do."""
    first = max(0, -((phase - pad) // stride))  # ceil((pad - phase) / stride)
    stop = min(count, (size - 1 + pad - phase) // stride + 1)
    if stop <= first:
        return 0, 0, 0
    return first, stop, stride * first + phase - pad


def _phase_views(window, phases):
    """(view of phase image (a, b) of every channel (N, C, OH + 2, OW + 2), row span,
    column span) for each phase (a, b), the spans as _span gives them."""
    stride_h, stride_w = window.stride
    batch, _, rows, columns = phases.shape
    split = phases.reshape(batch, window.channels, stride_h, stride_w, rows, columns)
    for a in range(stride_h):
        row_span = _span(a, stride_h, window.pad_height, window.height, rows)
        for b in range(stride_w):
            column_span = _span(b, stride_w, window.pad_width, window.width, columns)
            yield split[:, :, a, b], row_span, column_span


def _strided(first, stop, start, stride):
    """The input slice of phase positions [first, stop): start, start + stride, ..."""
    return slice(start, start + stride * (stop - first - 1) + 1, stride)


def space_to_depth(x, window, phases):
    """Fill phases (phase_shape(window), or fewer images) from x (N, C, H, W): zero where
    the padded input is padding or lies past x."""
    stride_h, stride_w = window.stride
    for target, (p0, p1, r0), (q0, q1, c0) in _phase_views(window, phases):
        if p1 == p0 or q1 == q0:
            target[...] = 0
            continue
        target[:, :, :p0] = 0
        target[:, :, p1:] = 0
        target[:, :, p0:p1, :q0] = 0
        target[:, :, p0:p1, q1:] = 0
        target[:, :, p0:p1, q0:q1] = x[:, :, _strided(p0, p1, r0, stride_h),
                                       _strided(q0, q1, c0, stride_w)]


def depth_to_space(phases, window, dx):
    """dx (N, C, H, W) from the gradient of the phase images (the adjoint of space_to_depth):
    each input pixel takes its phase pixel; pixels that no phase holds (rows or columns past
    the last window) get zero."""
    stride_h, stride_w = window.stride
    for source, (p0, p1, r0), (q0, q1, c0) in _phase_views(window, phases):
        if p1 > p0 and q1 > q0:
            dx[:, :, _strided(p0, p1, r0, stride_h), _strided(q0, q1, c0, stride_w)] = (
                source[:, :, p0:p1, q0:q1])
    rows, columns = phases.shape[2:]
    dx[:, :, max(0, stride_h * rows - window.pad_height):] = 0
    dx[:, :, :, max(0, stride_w * columns - window.pad_width):] = 0


def split_kernels(w, window):
    """(F, C*s_h*s_w, 3, 3) kernels over the phase images from w (F, C, KH, KW), zero where a
    tap lies past KH or KW (KH <= 3*s_h, KW <= 3*s_w)."""
    stride_h, stride_w = window.stride
    filters, channels, kernel_h, kernel_w = w.shape
    padded = np.zeros((filters, channels, 3 * stride_h, 3 * stride_w), dtype=w.dtype)
    padded[:, :, :kernel_h, :kernel_w] = w
    split = padded.reshape(filters, channels, 3, stride_h, 3, stride_w).transpose(0, 1, 3, 5, 2, 4)
    return np.ascontiguousarray(split).reshape(filters, channels * stride_h * stride_w, 3, 3)


def merge_kernels(split, window):
    """The adjoint of split_kernels: dW (F, C, KH, KW) from the gradient of the split kernels
    (F, C*s_h*s_w, 3, 3)."""
    stride_h, stride_w = window.stride
    filters = split.shape[0]
    merged = split.reshape(filters, window.channels, stride_h, stride_w, 3, 3).transpose(
        0, 1, 4, 2, 5, 3).reshape(filters, window.channels, 3 * stride_h, 3 * stride_w)
    return np.ascontiguousarray(merged[:, :, :window.kernel_height, :window.kernel_width])


# ---- space-to-batch: dilated convolutions as undilated ones (s2b-winograd) -------------
#
# With dilation (d_h, d_w) and stride 1, output (oh, ow) = (d_h*p + a, d_w*q + b) reads padded
# pixels (d_h*(p + i) + a, d_w*(q + j) + b): pixel (p + i, q + j) of phase image (a, b). The
# phase images go into the batch, image (a, b, n), and the convolution is an undilated one over
# them with the same kernel; its output's phase images are the output's.

def space_to_batch(x, step, padding, phases):
    """Fill phases (d_h*d_w*N, C, P, Q) from x (N, C, H, W) padded by `padding` (top, left):
    phases[(a, b, n), c, p, q] = padded x[n, c, d_h*p + a, d_w*q + b], zero where that pixel
    is padding or lies past x. step: (d_h, d_w)."""
    (d_h, d_w), (top, left) = step, padding
    batch, channels, height, width = x.shape
    rows, columns = phases.shape[2:]
    padded = np.zeros((batch, channels, d_h * rows, d_w * columns), x.dtype)
    kept_h, kept_w = max(0, min(height, d_h * rows - top)), max(0, min(width, d_w * columns - left))
    padded[:, :, top:top + kept_h, left:left + kept_w] = x[:, :, :kept_h, :kept_w]
    split = padded.reshape(batch, channels, rows, d_h, columns, d_w).transpose(3, 5, 0, 1, 2, 4)
    phases[...] = split.reshape(phases.shape)


def batch_to_space(phases, step, padding, x):
    """x (N, C, H, W) overwritten from its phase images (the adjoint of space_to_batch): each
    pixel takes its phase pixel; pixels past the phase images get zero."""
    (d_h, d_w), (top, left) = step, padding
    batch, channels, height, width = x.shape
    rows, columns = phases.shape[2:]
    padded = phases.reshape(d_h, d_w, batch, channels, rows, columns).transpose(
        2, 3, 4, 0, 5, 1).reshape(batch, channels, d_h * rows, d_w * columns)
    x[...] = 0
    kept_h, kept_w = max(0, min(height, d_h * rows - top)), max(0, min(width, d_w * columns - left))
    x[:, :, :kept_h, :kept_w] = padded[:, :, top:top + kept_h, left:left + kept_w]
