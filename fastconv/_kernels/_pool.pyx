"""Compiled max / average pooling over (planes, H, W) arrays, parallel over planes (N*C).

The Python front views (N, C, H, W) arrays as N*C planes, allocates every output and
checks every argument; these kernels trust them. Windows are clamped to the plane, so
padding is never read (max: padding never wins; avg: padding adds zero, divisor KH*KW).
Ties and NaN follow fastconv.reference.pool exactly: each window is scanned in row-major
order, a value strictly greater than the best so far or a NaN takes over, so the first
maximum wins, and the last NaN when there is one.

Speed: max pooling unrolls the commonest windows (2x2/2, 3x3/2, 3x3/1) by inlining one
window loop with literal sizes. Other max windows, and average pooling, build each output
row in place, one input row and window column at a time (every output still sees its window
in row-major order), so the innermost loop runs along the output row and vectorises.
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


cdef inline void max_window(const floating[:, ::1] x, floating[:, ::1] out,
                            index_t[:, ::1] argmax, Py_ssize_t oh, Py_ssize_t ow,
                            Py_ssize_t top, Py_ssize_t rows,
                            Py_ssize_t left, Py_ssize_t cols) noexcept nogil:
    """out[oh, ow] and argmax[oh, ow] over the rows x cols block of x starting at (top, left)."""
    cdef index_t width = <index_t>x.shape[1]
    # -inf loses to everything but -inf, so a window of -inf keeps its first element
    cdef index_t best_index = <index_t>top * width + <index_t>left
    cdef floating best = -INFINITY, value
    cdef Py_ssize_t row, col
    cdef bint take
    for row in range(rows):
        for col in range(cols):
            value = x[top + row, left + col]
            take = (value > best) | (value != value)
            best = value if take else best
            best_index = <index_t>(top + row) * width + <index_t>(left + col) if take else best_index
    out[oh, ow] = best
    argmax[oh, ow] = best_index


cdef inline void max_inside(const floating[:, ::1] x, floating[:, ::1] out, index_t[:, ::1] argmax,
                            Py_ssize_t oh_first, Py_ssize_t oh_stop,
                            Py_ssize_t ow_first, Py_ssize_t ow_stop,
                            Py_ssize_t kernel_height, Py_ssize_t kernel_width,
                            Py_ssize_t stride_h, Py_ssize_t stride_w,
                            Py_ssize_t pad_h, Py_ssize_t pad_w) noexcept nogil:
    """Outputs [oh_first, oh_stop) x [ow_first, ow_stop), whose windows lie wholly inside x.

    Called with literal window sizes, it is inlined with them and each window unrolled:
    about 2x faster than max_plane_rows, 4-8x faster than this loop with run-time sizes.
    """
    cdef Py_ssize_t oh, ow, top, left
    for oh in range(oh_first, oh_stop):
        top = oh * stride_h - pad_h
        for ow in range(ow_first, ow_stop):
            left = ow * stride_w - pad_w
            max_window(x, out, argmax, oh, ow, top, kernel_height, left, kernel_width)


cdef void max_clamped(const floating[:, ::1] x, floating[:, ::1] out, index_t[:, ::1] argmax,
                      Py_ssize_t oh, Py_ssize_t ow_first, Py_ssize_t ow_stop,
                      Py_ssize_t kernel_height, Py_ssize_t kernel_width,
                      Py_ssize_t stride_h, Py_ssize_t stride_w,
                      Py_ssize_t pad_h, Py_ssize_t pad_w) noexcept nogil:
    """Outputs [ow_first, ow_stop) of row oh, windows clamped to x."""
    cdef Py_ssize_t ow, left, top = oh * stride_h - pad_h
    cdef Py_ssize_t row_first = clamp_low(top)
    cdef Py_ssize_t rows = clamp_high(top + kernel_height, x.shape[0]) - row_first
    cdef Py_ssize_t col_first
    for ow in range(ow_first, ow_stop):
        left = ow * stride_w - pad_w
        col_first = clamp_low(left)
        max_window(x, out, argmax, oh, ow, row_first, rows,
                   col_first, clamp_high(left + kernel_width, x.shape[1]) - col_first)


cdef inline void inside_outputs(Py_ssize_t size, Py_ssize_t out_size, Py_ssize_t kernel,
                                Py_ssize_t stride, Py_ssize_t pad,
                                Py_ssize_t* first, Py_ssize_t* stop) noexcept nogil:
    """Outputs [first, stop) along one axis whose whole window lies inside [0, size)."""
    cdef Py_ssize_t unused
    valid_columns(0, size, out_size, stride, pad, first, &unused)
    valid_columns(kernel - 1, size, out_size, stride, pad, &unused, stop)
    if stop[0] < first[0]:
        stop[0] = first[0]


cdef void max_plane_fixed(const floating[:, ::1] x, floating[:, ::1] out, index_t[:, ::1] argmax,
                          Py_ssize_t kernel_height, Py_ssize_t kernel_width,
                          Py_ssize_t stride_h, Py_ssize_t stride_w,
                          Py_ssize_t pad_h, Py_ssize_t pad_w) noexcept nogil:
    """One plane for the window sizes unrolled here: 2x2/2, 3x3/2, 3x3/1; any padding.

    Windows wholly inside x take the unrolled path, the rest (padding, edges) the clamped one.
    """
    cdef Py_ssize_t out_height = out.shape[0], out_width = out.shape[1]
    cdef Py_ssize_t oh, oh_first, oh_stop, ow_first, ow_stop
    inside_outputs(x.shape[0], out_height, kernel_height, stride_h, pad_h, &oh_first, &oh_stop)
    inside_outputs(x.shape[1], out_width, kernel_width, stride_w, pad_w, &ow_first, &ow_stop)
    if kernel_height == 2 and kernel_width == 2 and stride_h == 2 and stride_w == 2:
        max_inside(x, out, argmax, oh_first, oh_stop, ow_first, ow_stop, 2, 2, 2, 2, pad_h, pad_w)
    elif kernel_height == 3 and kernel_width == 3 and stride_h == 2 and stride_w == 2:
        max_inside(x, out, argmax, oh_first, oh_stop, ow_first, ow_stop, 3, 3, 2, 2, pad_h, pad_w)
    else:  # 3x3/1
        max_inside(x, out, argmax, oh_first, oh_stop, ow_first, ow_stop, 3, 3, 1, 1, pad_h, pad_w)
    for oh in range(out_height):
        if oh_first <= oh < oh_stop:
            max_clamped(x, out, argmax, oh, 0, ow_first, kernel_height, kernel_width,
                        stride_h, stride_w, pad_h, pad_w)
            max_clamped(x, out, argmax, oh, ow_stop, out_width, kernel_height, kernel_width,
                        stride_h, stride_w, pad_h, pad_w)
        else:
            max_clamped(x, out, argmax, oh, 0, out_width, kernel_height, kernel_width,
                        stride_h, stride_w, pad_h, pad_w)


cdef bint is_fixed(Py_ssize_t kernel_height, Py_ssize_t kernel_width,
                   Py_ssize_t stride_h, Py_ssize_t stride_w) noexcept nogil:
    """True for the window sizes max_plane_fixed unrolls."""
    if kernel_height == 2 and kernel_width == 2:
        return stride_h == 2 and stride_w == 2
    if kernel_height == 3 and kernel_width == 3:
        return stride_h == stride_w and (stride_h == 1 or stride_h == 2)
    return False


cdef void max_plane_rows(const floating[:, ::1] x, floating[:, ::1] out, index_t[:, ::1] argmax,
                         Py_ssize_t kernel_height, Py_ssize_t kernel_width,
                         Py_ssize_t stride_h, Py_ssize_t stride_w,
                         Py_ssize_t pad_h, Py_ssize_t pad_w) noexcept nogil:
    """One plane, any window sizes (known only at run time).

    Each output row is built in place, one input row and window column at a time: every
    output still sees its window in row-major order, and the innermost loop runs along the
    output row, so it vectorises (about 2x faster than max_window with run-time sizes).
    """
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


def max_forward(const floating[:, :, ::1] x, floating[:, :, ::1] out, index_t[:, :, ::1] argmax,
                Py_ssize_t kernel_height, Py_ssize_t kernel_width,
                Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_h, Py_ssize_t pad_w,
                int num_threads):
    """out and argmax (planes, OH, OW) from x (planes, H, W), one pass over each window.

    argmax: flat index into the H*W plane of each output's source element.
    """
    cdef Py_ssize_t plane, planes = x.shape[0]
    cdef bint fixed = is_fixed(kernel_height, kernel_width, stride_h, stride_w)
    for plane in prange(planes, nogil=True, schedule="static", num_threads=num_threads):
        if fixed:
            max_plane_fixed(x[plane], out[plane], argmax[plane], kernel_height, kernel_width,
                            stride_h, stride_w, pad_h, pad_w)
        else:
            max_plane_rows(x[plane], out[plane], argmax[plane], kernel_height, kernel_width,
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
