"""Compiled max / average pooling over (planes, H, W) arrays, parallel over planes (N*C).

The Python front views (N, C, H, W) arrays as N*C planes, allocates every output and
checks every argument; these kernels trust them. Windows are clamped to the plane, so
padding is never read (max: padding never wins; avg: padding adds zero, divisor KH*KW).
Ties and NaN follow fastconv.reference.pool exactly: each window is scanned in row-major
order, a value strictly greater than the best so far or a NaN takes over, so the first
maximum wins, and the last NaN when there is one.

Each output row is built in place, one input row and window column at a time: every output
still sees its window in row-major order, and the innermost loop runs along the output row,
so the compiler vectorises it.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport INFINITY
from libc.stdint cimport int32_t, int64_t

from ._tiles cimport valid_columns

ctypedef fused index_t:
    int32_t
    int64_t


cdef inline Py_ssize_t clamp_low(Py_ssize_t start) noexcept nogil:
    return start if start > 0 else 0


cdef inline Py_ssize_t clamp_high(Py_ssize_t stop, Py_ssize_t size) noexcept nogil:
    return stop if stop < size else size


cdef void max_plane(const floating[:, ::1] x, floating[:, ::1] out, index_t[:, ::1] argmax,
                    Py_ssize_t kernel_height, Py_ssize_t kernel_width,
                    Py_ssize_t stride_h, Py_ssize_t stride_w,
                    Py_ssize_t pad_h, Py_ssize_t pad_w) noexcept nogil:
    """Any window, stride and padding: out and argmax (flat index into x) of one plane."""
    cdef Py_ssize_t height = x.shape[0], width = x.shape[1], out_width = out.shape[1]
    cdef Py_ssize_t oh, ow, kw, top, row_first, row_stop, row, offset, first, stop
    cdef index_t row_start, candidate
    cdef floating value, best
    cdef bint take
    for oh in range(out.shape[0]):
        top = oh * stride_h - pad_h
        row_first = clamp_low(top)
        row_stop = clamp_high(top + kernel_height, height)
        # -inf loses to everything but -inf, so a window of -inf keeps its first element
        for ow in range(out_width):
            out[oh, ow] = -INFINITY
            argmax[oh, ow] = <index_t>(row_first * width + clamp_low(ow * stride_w - pad_w))
        for row in range(row_first, row_stop):
            row_start = <index_t>(row * width)
            for kw in range(kernel_width):
                offset = kw - pad_w
                valid_columns(kw, width, out_width, stride_w, pad_w, &first, &stop)
                for ow in range(first, stop):
                    value = x[row, ow * stride_w + offset]
                    best = out[oh, ow]
                    take = (value > best) | (value != value)
                    candidate = row_start + <index_t>(ow * stride_w + offset)
                    out[oh, ow] = value if take else best
                    argmax[oh, ow] = candidate if take else argmax[oh, ow]


cdef void max_plane_2x2(const floating[:, ::1] x, floating[:, ::1] out,
                        index_t[:, ::1] argmax) noexcept nogil:
    """2x2 windows, stride 2, no padding: the commonest case, unrolled (about 3x faster)."""
    cdef Py_ssize_t oh, ow
    cdef index_t top, bottom, column, best_index
    cdef floating best, value
    cdef bint take
    for oh in range(out.shape[0]):
        top = <index_t>(2 * oh * x.shape[1])
        bottom = top + <index_t>x.shape[1]
        for ow in range(out.shape[1]):
            column = 2 * <index_t>ow
            best = x[2 * oh, 2 * ow]
            best_index = top + column
            value = x[2 * oh, 2 * ow + 1]
            take = (value > best) | (value != value)
            best = value if take else best
            best_index = top + column + 1 if take else best_index
            value = x[2 * oh + 1, 2 * ow]
            take = (value > best) | (value != value)
            best = value if take else best
            best_index = bottom + column if take else best_index
            value = x[2 * oh + 1, 2 * ow + 1]
            take = (value > best) | (value != value)
            best = value if take else best
            best_index = bottom + column + 1 if take else best_index
            out[oh, ow] = best
            argmax[oh, ow] = best_index


def max_forward(const floating[:, :, ::1] x, floating[:, :, ::1] out, index_t[:, :, ::1] argmax,
                Py_ssize_t kernel_height, Py_ssize_t kernel_width,
                Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_h, Py_ssize_t pad_w,
                int num_threads):
    """out and argmax (planes, OH, OW) from x (planes, H, W), one pass over each window.

    argmax: flat index into the H*W plane of each output's source element.
    """
    cdef Py_ssize_t plane, planes = x.shape[0]
    cdef bint two_by_two = (kernel_height == 2 and kernel_width == 2 and stride_h == 2
                            and stride_w == 2 and pad_h == 0 and pad_w == 0)
    for plane in prange(planes, nogil=True, schedule="static", num_threads=num_threads):
        if two_by_two:
            max_plane_2x2(x[plane], out[plane], argmax[plane])
        else:
            max_plane(x[plane], out[plane], argmax[plane], kernel_height, kernel_width,
                      stride_h, stride_w, pad_h, pad_w)


def max_backward(const floating[:, ::1] dout, const index_t[:, ::1] argmax,
                 floating[:, ::1] dx, int num_threads):
    """Overwrite dx (planes, H*W) with dout (planes, OH*OW) added at argmax (planes, OH*OW).

    Overlapping windows that share an argmax add up. One thread owns each plane.
    """
    cdef Py_ssize_t plane, planes = dx.shape[0], plane_size = dx.shape[1]
    cdef Py_ssize_t position, outputs = dout.shape[1]
    for plane in prange(planes, nogil=True, schedule="static", num_threads=num_threads):
        for position in range(plane_size):
            dx[plane, position] = 0
        for position in range(outputs):
            dx[plane, argmax[plane, position]] += dout[plane, position]


cdef void avg_plane(const floating[:, ::1] x, floating[:, ::1] out,
                    Py_ssize_t kernel_height, Py_ssize_t kernel_width,
                    Py_ssize_t stride_h, Py_ssize_t stride_w,
                    Py_ssize_t pad_h, Py_ssize_t pad_w) noexcept nogil:
    """Window sums in row-major window order, divided by KH*KW, for one plane."""
    cdef Py_ssize_t height = x.shape[0], width = x.shape[1], out_width = out.shape[1]
    cdef Py_ssize_t oh, ow, kw, top, row, offset, first, stop
    cdef floating area = kernel_height * kernel_width
    for oh in range(out.shape[0]):
        top = oh * stride_h - pad_h
        for ow in range(out_width):
            out[oh, ow] = 0
        for row in range(clamp_low(top), clamp_high(top + kernel_height, height)):
            for kw in range(kernel_width):
                offset = kw - pad_w
                valid_columns(kw, width, out_width, stride_w, pad_w, &first, &stop)
                for ow in range(first, stop):
                    out[oh, ow] += x[row, ow * stride_w + offset]
        for ow in range(out_width):
            out[oh, ow] = out[oh, ow] / area


cdef void avg_plane_backward(const floating[:, ::1] dout, floating[:, ::1] dx,
                             Py_ssize_t kernel_height, Py_ssize_t kernel_width,
                             Py_ssize_t stride_h, Py_ssize_t stride_w,
                             Py_ssize_t pad_h, Py_ssize_t pad_w) noexcept nogil:
    """Overwrite dx with each dout element / (KH*KW) added over its window, for one plane."""
    cdef Py_ssize_t height = dx.shape[0], width = dx.shape[1], out_width = dout.shape[1]
    cdef Py_ssize_t oh, ow, kw, top, row, col, offset, first, stop
    cdef floating area = kernel_height * kernel_width
    for row in range(height):
        for col in range(width):
            dx[row, col] = 0
    for oh in range(dout.shape[0]):
        top = oh * stride_h - pad_h
        for row in range(clamp_low(top), clamp_high(top + kernel_height, height)):
            for kw in range(kernel_width):
                offset = kw - pad_w
                valid_columns(kw, width, out_width, stride_w, pad_w, &first, &stop)
                # distinct ow touch distinct columns here, so this loop also vectorises
                for ow in range(first, stop):
                    dx[row, ow * stride_w + offset] += dout[oh, ow] / area


def avg_forward(const floating[:, :, ::1] x, floating[:, :, ::1] out,
                Py_ssize_t kernel_height, Py_ssize_t kernel_width,
                Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_h, Py_ssize_t pad_w,
                int num_threads):
    """out (planes, OH, OW): each window's sum over x (planes, H, W) divided by KH*KW."""
    cdef Py_ssize_t plane, planes = x.shape[0]
    for plane in prange(planes, nogil=True, schedule="static", num_threads=num_threads):
        avg_plane(x[plane], out[plane], kernel_height, kernel_width, stride_h, stride_w,
                  pad_h, pad_w)


def avg_backward(const floating[:, :, ::1] dout, floating[:, :, ::1] dx,
                 Py_ssize_t kernel_height, Py_ssize_t kernel_width,
                 Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_h, Py_ssize_t pad_w,
                 int num_threads):
    """Overwrite dx (planes, H, W): each dout (planes, OH, OW) element / (KH*KW) added over its window."""
    cdef Py_ssize_t plane, planes = dx.shape[0]
    for plane in prange(planes, nogil=True, schedule="static", num_threads=num_threads):
        avg_plane_backward(dout[plane], dx[plane], kernel_height, kernel_width,
                           stride_h, stride_w, pad_h, pad_w)
