"""Compiled pooling over planes (N*C of them), parallel over planes: max and average windows,
whole-plane means, adaptive windows, max-unpooling.

The Python front views every (N, C, *spatial) array as N*C planes of (D, H, W), with leading
unit axes for fewer spatial dimensions (a 2-D pool is a 3-D pool with D = 1, a 1-D pool one with
D = H = 1), allocates every output and checks every argument; these kernels trust them.
Windows are clamped to the plane, so padding is never read (max: padding never wins; avg:
padding adds zero, and the divisor is the front's rule). Every window holds at least one
input element (the front checks it).

Ties and NaN follow fastconv.reference.pool exactly: each window is scanned in row-major
order, a value strictly greater than the best so far or a NaN takes over, so the first
maximum wins, and the last NaN when there is one.

Speed: max pooling unrolls the commonest windows (2x2/2, 3x3/2, 3x3/1, undilated, one input
depth per window) by inlining one window loop with literal sizes. Other max windows, and
average pooling, build each output row in place, one input row and window column at a time
(every output still sees its window in row-major order), so the innermost loop runs along
the output row and vectorises.
"""
from cython cimport floating
from cython.parallel cimport parallel, prange, threadid
from libc.math cimport INFINITY, NAN
from libc.stdint cimport int32_t, int64_t, uint8_t
from libc.string cimport memset

from ._tiles cimport valid_columns

ctypedef fused index_t:
    int32_t
    int64_t


cdef struct Axis:
    # one spatial axis of a pooling window: input length and window arguments
    Py_ssize_t size
    Py_ssize_t kernel
    Py_ssize_t stride
    Py_ssize_t pad
    Py_ssize_t dilation


cdef struct Pitch:
    # where the elements of the (D, H, W) array a max kernel scans sit in the whole plane:
    # element (depth, row, col) has flat index start + depth*depth + row*row + col*col (the
    # plane itself: 0, H*W, W, 1; one phase of it: see "dilated max pooling" below)
    int64_t start
    int64_t depth
    int64_t row
    int64_t col


cdef inline Pitch at_depth(Pitch pitch, Py_ssize_t depth) noexcept nogil:
    """The pitch of one (H, W) slice of the array, as the 2-D max kernels take it."""
    pitch.start += depth * pitch.depth
    return pitch


cdef void fill_axes(Axis* axes, Py_ssize_t depth, Py_ssize_t height, Py_ssize_t width,
                    tuple kernel, tuple stride, tuple padding, tuple dilation):
    """axes[0..2] (depth, height, width) from the front's 3-tuples."""
    cdef Py_ssize_t i
    cdef Py_ssize_t sizes[3]
    sizes[0], sizes[1], sizes[2] = depth, height, width
    for i in range(3):
        axes[i].size = sizes[i]
        axes[i].kernel = kernel[i]
        axes[i].stride = stride[i]
        axes[i].pad = padding[i]
        axes[i].dilation = dilation[i]


cdef inline Py_ssize_t clamp_low(Py_ssize_t start) noexcept nogil:
    return start if start > 0 else 0


cdef inline Py_ssize_t clamp_high(Py_ssize_t stop, Py_ssize_t size) noexcept nogil:
    return stop if stop < size else size


cdef inline Py_ssize_t first_tap(Py_ssize_t start, Py_ssize_t dilation) noexcept nogil:
    """The first window position start + j*dilation that is >= 0."""
    if start >= 0:
        return start
    return start + ((dilation - 1 - start) // dilation) * dilation  # -start > 0: no C rounding issue


cdef inline Py_ssize_t tap_count(Py_ssize_t start, Axis axis) noexcept nogil:
    """How many window positions start + j*dilation (j < kernel) lie inside [0, size)."""
    cdef Py_ssize_t first = first_tap(start, axis.dilation)
    cdef Py_ssize_t stop = clamp_high(start + (axis.kernel - 1) * axis.dilation + 1, axis.size)
    if first >= stop:
        return 0
    return (stop - 1 - first) // axis.dilation + 1


cdef inline Py_ssize_t window_count(Py_ssize_t index, Axis axis, bint count_include_pad) noexcept nogil:
    """Average pooling's divisor along one axis for window `index` (PyTorch's rule): the
    window cut at the end of the trailing padding, and to the input without count_include_pad."""
    cdef Py_ssize_t start = index * axis.stride - axis.pad
    cdef Py_ssize_t stop = clamp_high(start + axis.kernel, axis.size + axis.pad)
    if not count_include_pad:
        start = clamp_low(start)
        stop = clamp_high(stop, axis.size)
    return stop - start


# ---- max pooling ----------------------------------------------------------------------------

cdef inline void max_window(const floating[:, ::1] x, floating[:, ::1] out,
                            index_t[:, ::1] argmax, Py_ssize_t oh, Py_ssize_t ow,
                            Py_ssize_t top, Py_ssize_t rows,
                            Py_ssize_t left, Py_ssize_t cols, Pitch pitch) noexcept nogil:
    """out[oh, ow] and argmax[oh, ow] over the rows x cols block of x starting at (top, left).

    pitch: where x's elements sit in their whole (D, H, W) plane (at_depth of x's depth).
    """
    cdef index_t start = <index_t>pitch.start, row_step = <index_t>pitch.row
    cdef index_t col_step = <index_t>pitch.col
    # -inf loses to everything but -inf, so a window of -inf keeps its first element
    cdef index_t best_index = start + <index_t>top * row_step + <index_t>left * col_step
    cdef floating best = -INFINITY, value
    cdef Py_ssize_t row, col
    cdef bint take
    for row in range(rows):
        for col in range(cols):
            value = x[top + row, left + col]
            take = (value > best) | (value != value)
            best = value if take else best
            best_index = (start + <index_t>(top + row) * row_step + <index_t>(left + col) * col_step
                          if take else best_index)
    out[oh, ow] = best
    argmax[oh, ow] = best_index


cdef inline void max_inside(const floating[:, ::1] x, floating[:, ::1] out, index_t[:, ::1] argmax,
                            Py_ssize_t oh_first, Py_ssize_t oh_stop,
                            Py_ssize_t ow_first, Py_ssize_t ow_stop,
                            Py_ssize_t kernel_height, Py_ssize_t kernel_width,
                            Py_ssize_t stride_h, Py_ssize_t stride_w,
                            Py_ssize_t pad_h, Py_ssize_t pad_w, Pitch pitch) noexcept nogil:
    """Outputs [oh_first, oh_stop) x [ow_first, ow_stop), whose windows lie wholly inside x.

    Called with literal window sizes, it is inlined with them and each window unrolled:
    about 2x faster than max_plane_rows, 4-8x faster than this loop with run-time sizes.
    """
    cdef Py_ssize_t oh, ow, top, left
    for oh in range(oh_first, oh_stop):
        top = oh * stride_h - pad_h
        for ow in range(ow_first, ow_stop):
            left = ow * stride_w - pad_w
            max_window(x, out, argmax, oh, ow, top, kernel_height, left, kernel_width, pitch)


cdef void max_clamped(const floating[:, ::1] x, floating[:, ::1] out, index_t[:, ::1] argmax,
                      Py_ssize_t oh, Py_ssize_t ow_first, Py_ssize_t ow_stop,
                      Py_ssize_t kernel_height, Py_ssize_t kernel_width,
                      Py_ssize_t stride_h, Py_ssize_t stride_w,
                      Py_ssize_t pad_h, Py_ssize_t pad_w, Pitch pitch) noexcept nogil:
    """Outputs [ow_first, ow_stop) of row oh, windows clamped to x."""
    cdef Py_ssize_t ow, left, top = oh * stride_h - pad_h
    cdef Py_ssize_t row_first = clamp_low(top)
    cdef Py_ssize_t rows = clamp_high(top + kernel_height, x.shape[0]) - row_first
    cdef Py_ssize_t col_first
    for ow in range(ow_first, ow_stop):
        left = ow * stride_w - pad_w
        col_first = clamp_low(left)
        max_window(x, out, argmax, oh, ow, row_first, rows,
                   col_first, clamp_high(left + kernel_width, x.shape[1]) - col_first, pitch)


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
                          Py_ssize_t pad_h, Py_ssize_t pad_w, Pitch pitch) noexcept nogil:
    """One (H, W) slice for the window sizes unrolled here: 2x2/2, 3x3/2, 3x3/1, and the 1-D
    pools' 1x2/2, 1x3/2, 1x3/1; any padding.

    Windows wholly inside x take the unrolled path, the rest (padding, edges, the ceil_mode
    overhang) the clamped one.
    """
    cdef Py_ssize_t out_height = out.shape[0], out_width = out.shape[1]
    cdef Py_ssize_t oh, oh_first, oh_stop, ow_first, ow_stop
    inside_outputs(x.shape[0], out_height, kernel_height, stride_h, pad_h, &oh_first, &oh_stop)
    inside_outputs(x.shape[1], out_width, kernel_width, stride_w, pad_w, &ow_first, &ow_stop)
    if kernel_height == 2 and kernel_width == 2 and stride_h == 2 and stride_w == 2:
        max_inside(x, out, argmax, oh_first, oh_stop, ow_first, ow_stop, 2, 2, 2, 2, pad_h, pad_w,
                   pitch)
    elif kernel_height == 3 and kernel_width == 3 and stride_h == 2 and stride_w == 2:
        max_inside(x, out, argmax, oh_first, oh_stop, ow_first, ow_stop, 3, 3, 2, 2, pad_h, pad_w,
                   pitch)
    elif kernel_height == 3:  # 3x3/1
        max_inside(x, out, argmax, oh_first, oh_stop, ow_first, ow_stop, 3, 3, 1, 1, pad_h, pad_w,
                   pitch)
    elif kernel_width == 2:  # 1x2/2 (1-D 2/2)
        max_inside(x, out, argmax, oh_first, oh_stop, ow_first, ow_stop, 1, 2, 1, 2, pad_h, pad_w,
                   pitch)
    elif stride_w == 2:  # 1x3/2
        max_inside(x, out, argmax, oh_first, oh_stop, ow_first, ow_stop, 1, 3, 1, 2, pad_h, pad_w,
                   pitch)
    else:  # 1x3/1
        max_inside(x, out, argmax, oh_first, oh_stop, ow_first, ow_stop, 1, 3, 1, 1, pad_h, pad_w,
                   pitch)
    for oh in range(out_height):
        if oh_first <= oh < oh_stop:
            max_clamped(x, out, argmax, oh, 0, ow_first, kernel_height, kernel_width,
                        stride_h, stride_w, pad_h, pad_w, pitch)
            max_clamped(x, out, argmax, oh, ow_stop, out_width, kernel_height, kernel_width,
                        stride_h, stride_w, pad_h, pad_w, pitch)
        else:
            max_clamped(x, out, argmax, oh, 0, out_width, kernel_height, kernel_width,
                        stride_h, stride_w, pad_h, pad_w, pitch)


cdef bint is_fixed(Axis* axes) noexcept nogil:
    """True for the (H, W) windows max_plane_fixed unrolls: undilated 2x2/2, 3x3/2 or 3x3/1,
    and one row (every 1-D pool) with 2/2, 3/2 or 3/1 columns. 1-D 3/2 on (32, 64, 4000):
    8.6 ms on max_plane_rows, two threads (docs/pooling.md)."""
    cdef Axis rows = axes[1], cols = axes[2]
    if rows.dilation != 1 or cols.dilation != 1:
        return False
    if rows.kernel == 1 and rows.stride == 1 and rows.pad == 0:
        if cols.kernel == 2:
            return cols.stride == 2
        return cols.kernel == 3 and (cols.stride == 1 or cols.stride == 2)
    if rows.kernel == 2 and cols.kernel == 2:
        return rows.stride == 2 and cols.stride == 2
    if rows.kernel == 3 and cols.kernel == 3:
        return rows.stride == cols.stride and (rows.stride == 1 or rows.stride == 2)
    return False


cdef void max_plane_fixed_depths(const floating[:, :, ::1] x, floating[:, :, ::1] out,
                                 index_t[:, :, ::1] argmax, Axis* axes, Pitch pitch,
                                 floating[:, ::1] best, index_t[:, ::1] best_index) noexcept nogil:
    """One plane whose (H, W) windows max_plane_fixed unrolls, any depth window: each input
    depth of a window by max_plane_fixed, the first into out, the others into best/best_index
    (scratch, OH x OW) and then into out where they win. In row-major (depth, row, column)
    order a later depth's elements all come after an earlier one's, so a depth's result taking
    over where it is greater or NaN gives the same winner as one scan of the whole window."""
    cdef Py_ssize_t od, oh, ow, start, first, taps, tap, depth
    cdef Axis depths = axes[0], rows = axes[1], cols = axes[2]
    cdef floating value
    cdef bint take
    for od in range(out.shape[0]):
        start = od * depths.stride - depths.pad
        first = first_tap(start, depths.dilation)
        taps = tap_count(start, depths)
        for tap in range(taps):
            depth = first + tap * depths.dilation
            if tap == 0:
                max_plane_fixed(x[depth], out[od], argmax[od], rows.kernel,
                                cols.kernel, rows.stride, cols.stride, rows.pad, cols.pad,
                                at_depth(pitch, depth))
                continue
            max_plane_fixed(x[depth], best, best_index, rows.kernel, cols.kernel,
                            rows.stride, cols.stride, rows.pad, cols.pad, at_depth(pitch, depth))
            for oh in range(out.shape[1]):
                for ow in range(out.shape[2]):
                    value = best[oh, ow]
                    take = (value > out[od, oh, ow]) | (value != value)
                    if take:
                        out[od, oh, ow] = value
                        argmax[od, oh, ow] = best_index[oh, ow]


cdef void max_plane_rows(const floating[:, :, ::1] x, floating[:, :, ::1] out,
                         index_t[:, :, ::1] argmax, Axis depths, Axis rows, Axis cols) noexcept nogil:
    """One (D, H, W) plane, any window (sizes known only at run time, dilation).

    Each output row is built in place, one input row and window column at a time: every
    output still sees its window in row-major order, and the innermost loop runs along the
    output row, so it vectorises (about 2x faster than max_window with run-time sizes).
    """
    # the width axis's values as plain locals, kept in registers in the inner loop (see avg_plane)
    cdef Py_ssize_t stride_w = cols.stride, pad_w = cols.pad, dilation_w = cols.dilation
    cdef Py_ssize_t kernel_width = cols.kernel
    cdef Py_ssize_t height = x.shape[1], width = x.shape[2], out_width = out.shape[2]
    cdef Py_ssize_t od, oh, ow, kw, start, depth_first, depth_taps, row_first, row_taps
    cdef Py_ssize_t tap_d, tap_h, depth, row, offset, first, stop, corner
    cdef index_t row_start, candidate
    cdef floating value, best
    cdef bint take
    for od in range(out.shape[0]):
        start = od * depths.stride - depths.pad
        depth_first = first_tap(start, depths.dilation)
        depth_taps = tap_count(start, depths)
        for oh in range(out.shape[1]):
            start = oh * rows.stride - rows.pad
            row_first = first_tap(start, rows.dilation)
            row_taps = tap_count(start, rows)
            # -inf loses to everything but -inf, so a window of -inf keeps its first element
            corner = (depth_first * height + row_first) * width
            for ow in range(out_width):
                out[od, oh, ow] = -INFINITY
                argmax[od, oh, ow] = <index_t>(corner + first_tap(ow * stride_w - pad_w, dilation_w))
            for tap_d in range(depth_taps):
                depth = depth_first + tap_d * depths.dilation
                for tap_h in range(row_taps):
                    row = row_first + tap_h * rows.dilation
                    row_start = <index_t>((depth * height + row) * width)
                    for kw in range(kernel_width):
                        offset = kw * dilation_w - pad_w
                        valid_columns(kw * dilation_w, width, out_width, stride_w, pad_w,
                                      &first, &stop)
                        for ow in range(first, stop):
                            value = x[depth, row, ow * stride_w + offset]
                            best = out[od, oh, ow]
                            take = (value > best) | (value != value)
                            candidate = row_start + <index_t>(ow * stride_w + offset)
                            out[od, oh, ow] = value if take else best
                            argmax[od, oh, ow] = candidate if take else argmax[od, oh, ow]


cdef void max_plane_fixed_any_depth(const floating[:, :, ::1] x, floating[:, :, ::1] out,
                                    index_t[:, :, ::1] argmax, Axis* axes, Pitch pitch,
                                    floating[:, ::1] best, index_t[:, ::1] best_index) noexcept nogil:
    """One (D, H, W) array whose (H, W) windows max_plane_fixed unrolls (is_fixed)."""
    cdef Py_ssize_t od, depth_step = axes[0].stride
    if axes[0].kernel != 1:
        max_plane_fixed_depths(x, out, argmax, axes, pitch, best, best_index)
        return
    # a window reads one input depth (no depth padding, as kernel depth is 1)
    for od in range(out.shape[0]):
        max_plane_fixed(x[od * depth_step], out[od], argmax[od], axes[1].kernel, axes[2].kernel,
                        axes[1].stride, axes[2].stride, axes[1].pad, axes[2].pad,
                        at_depth(pitch, od * depth_step))


# ---- dilated max pooling as an undilated pool of one phase -----------------------------------
#
# Along an axis with dilation d whose stride s is a multiple of d, window o reads the inputs
# o*s - p + j*d, which are all congruent to phase = (-p) mod d. So the whole pool reads only
# the inputs phase + d*i, and over them it is an undilated pool with kernel k, stride s/d and
# padding (p + phase)/d = ceil(p/d); an input is padding in one exactly when it is in the
# other, and the order of a window's taps is kept, so ties and NaN pick the same element.
# Gathering that phase (a quarter of the plane for d = 2 on both axes) into per-thread scratch
# lets the unrolled windows run, their argmax counted in the plane through the phase's Pitch.
# pool-55-dil2 ((16, 64, 55, 55), 3x3/2, padding 1, dilation 2), two threads: see
# docs/pooling.md.

cdef bint phase_axes(Axis* axes, Axis* sub, Py_ssize_t* phase) noexcept nogil:
    """True when a dilated (H, W) window is, on one phase of the input, an undilated window
    that max_plane_fixed unrolls; then sub holds that pool's axes and phase[1..2] where each
    axis's phase starts (phase[0] = 0: the depth axis is kept as it is)."""
    cdef Py_ssize_t i, d
    cdef bint dilated = False
    for i in range(3):
        sub[i] = axes[i]
        phase[i] = 0
    for i in range(1, 3):
        d = axes[i].dilation
        if d == 1:
            continue
        if axes[i].stride % d != 0:
            return False
        dilated = True
        phase[i] = (d - axes[i].pad % d) % d
        sub[i].size = (axes[i].size - phase[i] + d - 1) // d
        sub[i].stride = axes[i].stride // d
        sub[i].pad = (axes[i].pad + phase[i]) // d
        sub[i].dilation = 1
        if sub[i].size < 1:
            return False
    return dilated and is_fixed(sub)


def phase_shape(tuple size, tuple kernel, tuple stride, tuple padding, tuple dilation):
    """The (D, H', W') phase scratch max_forward needs per thread for this window, or None
    when it pools x directly. size, kernel, stride, padding, dilation: (depth, height, width)."""
    cdef Axis axes[3]
    cdef Axis sub[3]
    cdef Py_ssize_t phase[3]
    fill_axes(axes, size[0], size[1], size[2], kernel, stride, padding, dilation)
    if not phase_axes(axes, sub, phase):
        return None
    return (sub[0].size, sub[1].size, sub[2].size)


cdef void gather_phase(const floating[:, :, ::1] x, floating[:, :, ::1] sub,
                       Axis* axes, Py_ssize_t* phase) noexcept nogil:
    """sub[depth, r, c] = x[depth, phase_h + d_h*r, phase_w + d_w*c]."""
    cdef Py_ssize_t depth, r, c, row
    cdef Py_ssize_t step_h = axes[1].dilation, step_w = axes[2].dilation
    cdef Py_ssize_t first_w = phase[2]
    for depth in range(sub.shape[0]):
        for r in range(sub.shape[1]):
            row = phase[1] + step_h * r
            for c in range(sub.shape[2]):
                sub[depth, r, c] = x[depth, row, first_w + step_w * c]


def max_forward(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] out,
                index_t[:, :, :, ::1] argmax, tuple kernel, tuple stride, tuple padding,
                tuple dilation, floating[:, :, ::1] best, index_t[:, :, ::1] best_index,
                floating[:, :, :, ::1] phased, int num_threads):
    """out and argmax (planes, OD, OH, OW) from x (planes, D, H, W), one pass over each window.

    kernel, stride, padding, dilation: (depth, height, width) triples.
    argmax: flat index into the D*H*W plane of each output's source element.
    best, best_index: (num_threads, OH, OW) scratch, for unrolled (H, W) windows over several
    input depths.
    phased: (num_threads, *phase_shape(...)) scratch when phase_shape gives one, else unused.
    """
    cdef Axis axes[3]
    cdef Axis sub[3]
    cdef Py_ssize_t phase[3]
    fill_axes(axes, x.shape[1], x.shape[2], x.shape[3], kernel, stride, padding, dilation)
    cdef Py_ssize_t plane, planes = x.shape[0]
    cdef bint fixed = is_fixed(axes)
    cdef bint by_phase = phase_axes(axes, sub, phase)
    cdef Pitch direct, phased_pitch
    direct.start, direct.depth, direct.row, direct.col = 0, axes[1].size * axes[2].size, axes[2].size, 1
    phased_pitch = direct
    phased_pitch.start = phase[1] * axes[2].size + phase[2]
    phased_pitch.row = axes[1].dilation * axes[2].size
    phased_pitch.col = axes[2].dilation
    # best and best_index have a row per thread only for windows over several depths (the
    # front passes one row otherwise: thread rows past it must not even be sliced)
    cdef bint per_thread = axes[0].kernel != 1
    cdef int tid = 0, row = 0
    if by_phase and (phased.shape[0] < num_threads or phased.shape[1] != sub[0].size
                     or phased.shape[2] != sub[1].size or phased.shape[3] != sub[2].size):
        raise ValueError(f"max_forward: phased scratch has shape ({phased.shape[0]}, "
                         f"{phased.shape[1]}, {phased.shape[2]}, {phased.shape[3]}), needs "
                         f"({num_threads}, {sub[0].size}, {sub[1].size}, {sub[2].size})")
    with nogil, parallel(num_threads=num_threads):
        tid = threadid()
        row = tid if per_thread else 0
        for plane in prange(planes, schedule="static"):
            if by_phase:
                gather_phase(x[plane], phased[tid], axes, phase)
                max_plane_fixed_any_depth(phased[tid], out[plane], argmax[plane], sub,
                                          phased_pitch, best[row], best_index[row])
            elif fixed:
                max_plane_fixed_any_depth(x[plane], out[plane], argmax[plane], axes, direct,
                                          best[row], best_index[row])
            else:
                max_plane_rows(x[plane], out[plane], argmax[plane], axes[0], axes[1], axes[2])


def max_backward(const floating[:, ::1] dout, const index_t[:, ::1] argmax,
                 floating[:, ::1] dx, int num_threads):
    """Overwrite dx (planes, plane size) with dout (planes, outputs) added at argmax (planes, outputs).

    Overlapping windows that share an argmax add up. One thread owns each plane. Serves every
    max pooling: 1-D to 3-D and adaptive.
    """
    cdef Py_ssize_t plane, planes = dx.shape[0], plane_size = dx.shape[1]
    cdef Py_ssize_t position, outputs = dout.shape[1]
    for plane in prange(planes, nogil=True, schedule="static", num_threads=num_threads):
        for position in range(plane_size):
            dx[plane, position] = 0
        for position in range(outputs):
            dx[plane, argmax[plane, position]] += dout[plane, position]


# ---- average pooling ------------------------------------------------------------------------

cdef void fill_column_divisors(floating[::1] divisors, Axis cols, bint count_include_pad,
                               Py_ssize_t divisor_override) noexcept nogil:
    """divisors[ow]: the width axis's factor of each output column's divisor (divisor_override
    itself when given; the depth and height factors are then 1)."""
    cdef Py_ssize_t ow
    for ow in range(divisors.shape[0]):
        if divisor_override > 0:
            divisors[ow] = <floating>divisor_override
        else:
            divisors[ow] = <floating>window_count(ow, cols, count_include_pad)


cdef inline Py_ssize_t row_factor(Py_ssize_t od, Py_ssize_t oh, Axis depths, Axis rows,
                                  bint count_include_pad, Py_ssize_t divisor_override) noexcept nogil:
    """The depth and height factors of the divisor of output row (od, oh)."""
    if divisor_override > 0:
        return 1
    return window_count(od, depths, count_include_pad) * window_count(oh, rows, count_include_pad)


# Average pooling is separable: a window's sum is the sum over its input rows (and depths) of
# each row's sum over the window's columns, and the divisor is a product of per-axis factors.
# So each output row is made in two passes over L1-resident scratch: the window's input rows
# added into one padded row (contiguous, vectorised adds over the whole width), then every
# output's columns summed from it, in registers, with literal loops for the common windows
# (3/1, 3/2, 2/2). The padded row has zeros where the window reaches padding or the ceil_mode
# overhang, so neither pass clamps. The backward runs the same two passes transposed. On
# (16, 256, 28, 28) 3x3/2 ceil_mode this replaced a loop of one read-modify-write pass over the
# output row per window tap (docs/pooling.md, "Average pooling in two passes").
#
# The plane functions take whole arrays and a plane index, not slices: slicing a memoryview
# without the GIL costs two atomic reference-count updates, which for small planes (pool-cifar:
# 0.5 us of work per plane) made average pooling 10-40% slower.

cdef inline void add_rows(floating* row, const floating[:, :, :, ::1] x, Py_ssize_t plane,
                          Py_ssize_t depth_first, Py_ssize_t depth_stop, Py_ssize_t row_first,
                          Py_ssize_t row_stop) noexcept nogil:
    """row[c] = the sum of x[plane, depth, r, c] over the window's depths and rows, in that
    order, for every column c (zero if the window has no row).

    The loops run over pointers to one row, their start taken through the memoryview: as
    loops over the 4-D memoryview, with its strides in memory that a float store may alias
    (-fno-strict-aliasing), GCC kept them scalar and reloaded the bounds on every element."""
    cdef Py_ssize_t depth, r, c, width = x.shape[3]
    cdef const floating* x_row
    cdef bint first = True
    for depth in range(depth_first, depth_stop):
        for r in range(row_first, row_stop):
            x_row = &x[plane, depth, r, 0]
            if first:
                for c in range(width):
                    row[c] = x_row[c]
                first = False
            else:
                for c in range(width):
                    row[c] += x_row[c]
    if first:
        for c in range(width):
            row[c] = 0


cdef inline void divide_window_sums(floating* out_row, const floating* padded, Py_ssize_t count,
                                    Py_ssize_t kernel, Py_ssize_t stride, floating factor,
                                    const floating* divisors) noexcept nogil:
    """out_row[o] = (padded[o*stride] + ... + padded[o*stride + kernel - 1]) / (factor *
    divisors[o]) for o < count."""
    cdef Py_ssize_t o, j
    cdef floating total
    if kernel == 3 and stride == 1:
        for o in range(count):
            out_row[o] = (padded[o] + padded[o + 1] + padded[o + 2]) / (factor * divisors[o])
    elif kernel == 3 and stride == 2:
        for o in range(count):
            out_row[o] = ((padded[2 * o] + padded[2 * o + 1] + padded[2 * o + 2])
                          / (factor * divisors[o]))
    elif kernel == 2 and stride == 2:
        for o in range(count):
            out_row[o] = (padded[2 * o] + padded[2 * o + 1]) / (factor * divisors[o])
    elif kernel == 4 and stride == 4:
        for o in range(count):
            out_row[o] = ((padded[4 * o] + padded[4 * o + 1] + padded[4 * o + 2] + padded[4 * o + 3])
                          / (factor * divisors[o]))
    else:
        for o in range(count):
            total = 0
            for j in range(kernel):
                total = total + padded[o * stride + j]
            out_row[o] = total / (factor * divisors[o])


cdef inline void zero_edges(floating* padded, Py_ssize_t pad, Py_ssize_t width,
                            Py_ssize_t padded_width) noexcept nogil:
    """Zero padded[0:pad] and padded[pad + width:padded_width]: the columns no input row fills."""
    cdef Py_ssize_t c
    for c in range(pad):
        padded[c] = 0
    for c in range(pad + width, padded_width):
        padded[c] = 0


cdef inline Py_ssize_t padded_row_width(Axis cols, Py_ssize_t out_width) noexcept nogil:
    """The padded row's length: the leading padding, the input row, and zeros to the end of
    the last window (the trailing padding or the ceil_mode overhang); as pool._padded_width."""
    cdef Py_ssize_t inputs = cols.pad + cols.size, windows = (out_width - 1) * cols.stride + cols.kernel
    return inputs if inputs > windows else windows


cdef void avg_plane(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] out, Py_ssize_t plane,
                    Axis depths, Axis rows, Axis cols, bint count_include_pad,
                    Py_ssize_t divisor_override, floating* padded, Py_ssize_t padded_width,
                    const floating* divisors) noexcept nogil:
    """Each window's sum divided by its divisor, for one plane. padded: one thread's scratch
    row of padded_width >= max(pad + W, (OW - 1)*stride + kernel); divisors: the width factors."""
    cdef Py_ssize_t od, oh, start, top
    cdef Py_ssize_t out_width = out.shape[3]
    cdef floating factor
    zero_edges(padded, cols.pad, cols.size, padded_width)
    for od in range(out.shape[1]):
        start = od * depths.stride - depths.pad
        for oh in range(out.shape[2]):
            top = oh * rows.stride - rows.pad
            add_rows(padded + cols.pad, x, plane, clamp_low(start),
                     clamp_high(start + depths.kernel, depths.size), clamp_low(top),
                     clamp_high(top + rows.kernel, rows.size))
            factor = <floating>row_factor(od, oh, depths, rows, count_include_pad, divisor_override)
            divide_window_sums(&out[plane, od, oh, 0], padded, out_width, cols.kernel, cols.stride,
                               factor, divisors)


cdef inline void spread_shares(floating* padded, floating* shares, const floating* dout_row,
                               Py_ssize_t count, Py_ssize_t kernel, Py_ssize_t stride,
                               floating factor, const floating* divisors,
                               Py_ssize_t padded_width) noexcept nogil:
    """The transpose of divide_window_sums: padded[c] = the sum of dout_row[o] / (factor *
    divisors[o]) over the outputs o whose window (o*stride .. o*stride + kernel - 1) holds c,
    for c < padded_width. shares: scratch of count + 2*kernel.

    The common windows gather: shares with kernel - 1 zeros either side, and each padded
    column the sum of its (at most kernel) shares, in registers. Windows side by side
    (kernel == stride) write each column's one share; others scatter."""
    cdef Py_ssize_t o, c, j, lead = kernel - 1
    cdef floating share
    if (kernel == 3 and stride <= 2) or (kernel == 2 and stride == 2):
        for c in range(lead):
            shares[c] = 0
            shares[lead + count + c] = 0
        for o in range(count):
            shares[lead + o] = dout_row[o] / (factor * divisors[o])
        # shares[lead + o] is output o's share; o < 0 and o >= count read zeros
        if kernel == 3 and stride == 1:  # padded_width = count + 2
            for c in range(padded_width):
                padded[c] = shares[c + 2] + shares[c + 1] + shares[c]
        elif kernel == 3:  # stride 2; padded_width <= 2*count + 1
            for c in range(padded_width // 2):
                padded[2 * c] = shares[c + 2] + shares[c + 1]
                padded[2 * c + 1] = shares[c + 2]
            if padded_width % 2:
                c = padded_width // 2
                padded[2 * c] = shares[c + 2] + shares[c + 1]
        else:  # 2/2: padded_width = 2*count
            for c in range(padded_width // 2):
                padded[2 * c] = shares[c + 1]
                padded[2 * c + 1] = shares[c + 1]
            if padded_width % 2:
                padded[padded_width - 1] = 0
        return
    if kernel == stride:  # windows side by side (audio's 4/4): each column one share
        for o in range(count):
            share = dout_row[o] / (factor * divisors[o])
            for j in range(kernel):
                padded[o * stride + j] = share
        for c in range(count * stride, padded_width):
            padded[c] = 0
        return
    for c in range(padded_width):
        padded[c] = 0
    for o in range(count):
        share = dout_row[o] / (factor * divisors[o])
        for j in range(kernel):
            padded[o * stride + j] += share


cdef inline bint window_holds(Py_ssize_t index, Axis axis, Py_ssize_t out_size) noexcept nogil:
    """Whether some window of an axis whose windows do not overlap (kernel <= stride) holds
    input `index`."""
    cdef Py_ssize_t shifted = index + axis.pad
    return shifted // axis.stride < out_size and shifted % axis.stride < axis.kernel


cdef void avg_plane_backward(const floating[:, :, :, ::1] dout, floating[:, :, :, ::1] dx,
                             Py_ssize_t plane, Axis depths, Axis rows, Axis cols,
                             bint count_include_pad, Py_ssize_t divisor_override,
                             floating* padded, Py_ssize_t padded_width, floating* shares,
                             const floating* divisors) noexcept nogil:
    """Overwrite dx with each dout element / its divisor added over its window, for one plane.
    padded, shares: one thread's scratch (see spread_shares).

    Where no two windows share an input row (depth and row windows no longer than their
    strides: every 1-D pool, 2x2/2), each row of dx is written once, by assignment, and only
    the rows no window holds are zeroed: one pass over dx instead of two (1-D 4/4 on
    (32, 64, 4000), one thread: 4.2-4.9 ms before, 3.2-3.9 after; docs/pooling.md)."""
    cdef Py_ssize_t out_width = dout.shape[3], width = dx.shape[3]
    cdef Py_ssize_t od, oh, start, top, depth, row, c
    cdef floating factor
    cdef floating* dx_row
    cdef const floating* columns = padded + cols.pad
    cdef bint disjoint = depths.kernel <= depths.stride and rows.kernel <= rows.stride
    for depth in range(dx.shape[1]):
        for row in range(dx.shape[2]):
            if disjoint and window_holds(depth, depths, dout.shape[1]) \
                    and window_holds(row, rows, dout.shape[2]):
                continue  # written below
            dx_row = &dx[plane, depth, row, 0]
            for c in range(width):
                dx_row[c] = 0
    for od in range(dout.shape[1]):
        start = od * depths.stride - depths.pad
        for oh in range(dout.shape[2]):
            top = oh * rows.stride - rows.pad
            factor = <floating>row_factor(od, oh, depths, rows, count_include_pad, divisor_override)
            spread_shares(padded, shares, &dout[plane, od, oh, 0], out_width, cols.kernel,
                          cols.stride, factor, divisors, padded_width)
            for depth in range(clamp_low(start), clamp_high(start + depths.kernel, depths.size)):
                for row in range(clamp_low(top), clamp_high(top + rows.kernel, rows.size)):
                    dx_row = &dx[plane, depth, row, 0]
                    if disjoint:
                        for c in range(width):
                            dx_row[c] = columns[c]
                    else:
                        for c in range(width):
                            dx_row[c] += columns[c]


def avg_forward(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] out,
                tuple kernel, tuple stride, tuple padding, bint count_include_pad,
                Py_ssize_t divisor_override, floating[:, ::1] scratch, floating[::1] divisors,
                int num_threads):
    """out (planes, OD, OH, OW): each window's sum over x (planes, D, H, W) divided by
    divisor_override if > 0, else by the window's element count (window_count, per axis).
    scratch: (num_threads, >= P), P = padded_row_width (a row per thread);
    divisors: (OW,), for the width factors of the divisors."""
    cdef Axis axes[3]
    fill_axes(axes, x.shape[1], x.shape[2], x.shape[3], kernel, stride, padding, (1, 1, 1))
    cdef Py_ssize_t plane, planes = x.shape[0]
    cdef Py_ssize_t padded_width = padded_row_width(axes[2], out.shape[3])
    cdef int tid = 0
    if scratch.shape[0] < num_threads or scratch.shape[1] < padded_width:
        raise ValueError(f"scratch must have a row of at least {padded_width} elements per thread")
    fill_column_divisors(divisors, axes[2], count_include_pad, divisor_override)
    with nogil, parallel(num_threads=num_threads):
        tid = threadid()
        for plane in prange(planes, schedule="static"):
            avg_plane(x, out, plane, axes[0], axes[1], axes[2], count_include_pad,
                      divisor_override, &scratch[tid, 0], padded_width, &divisors[0])


def avg_backward(const floating[:, :, :, ::1] dout, floating[:, :, :, ::1] dx,
                 tuple kernel, tuple stride, tuple padding, bint count_include_pad,
                 Py_ssize_t divisor_override, floating[:, ::1] scratch, floating[::1] divisors,
                 int num_threads):
    """Overwrite dx (planes, D, H, W): each dout (planes, OD, OH, OW) element divided as in
    avg_forward and added over its window. scratch: (num_threads, >= P + OW + 2*kernel_w), P
    as in avg_forward; divisors: (OW,), for the width factors of the divisors."""
    cdef Axis axes[3]
    fill_axes(axes, dx.shape[1], dx.shape[2], dx.shape[3], kernel, stride, padding, (1, 1, 1))
    cdef Py_ssize_t plane, planes = dx.shape[0]
    cdef Py_ssize_t padded_width = padded_row_width(axes[2], dout.shape[3])
    cdef Py_ssize_t row_length = padded_width + dout.shape[3] + 2 * axes[2].kernel
    cdef int tid = 0
    if scratch.shape[0] < num_threads or scratch.shape[1] < row_length:
        raise ValueError(f"scratch must have a row of at least {row_length} elements per thread")
    fill_column_divisors(divisors, axes[2], count_include_pad, divisor_override)
    with nogil, parallel(num_threads=num_threads):
        tid = threadid()
        for plane in prange(planes, schedule="static"):
            avg_plane_backward(dout, dx, plane, axes[0], axes[1], axes[2], count_include_pad,
                               divisor_override, &scratch[tid, 0], padded_width,
                               &scratch[tid, padded_width], &divisors[0])


# ---- whole-plane means (global average pooling) --------------------------------------------

# Sums of contiguous runs in blocks of 256, each block's lanes added into a double total. On
# x86-64 four 128-bit accumulators (SSE2: every x86-64 CPU has it, so the portable build
# keeps it); elsewhere eight scalar lanes. The intrinsics, not a Cython loop: gcc -O3 turned
# every lane-array form of this loop tried (8 or 16 lanes, any reduction order) into scalar
# adds. In a C test of the two loops over ResNet-50's head (65536 planes of 49 floats, one
# thread, fastest of 50): 0.62-0.75 ms for the lane arrays, 0.22 ms here; through the kernel,
# 0.30 -> 0.18-0.23 ms on two threads (docs/pooling.md, "Against the memory roofline").
cdef extern from *:
    """
    #if defined(__SSE2__)
    #include <emmintrin.h>
    static inline double fastconv_block_sum_float(const float* v, Py_ssize_t n) {
        __m128 a0 = _mm_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        __m128d wide;
        Py_ssize_t i = 0;
        double total;
        for (; i + 16 <= n; i += 16) {
            a0 = _mm_add_ps(a0, _mm_loadu_ps(v + i));
            a1 = _mm_add_ps(a1, _mm_loadu_ps(v + i + 4));
            a2 = _mm_add_ps(a2, _mm_loadu_ps(v + i + 8));
            a3 = _mm_add_ps(a3, _mm_loadu_ps(v + i + 12));
        }
        for (; i + 4 <= n; i += 4)
            a0 = _mm_add_ps(a0, _mm_loadu_ps(v + i));
        a0 = _mm_add_ps(_mm_add_ps(a0, a1), _mm_add_ps(a2, a3));
        wide = _mm_add_pd(_mm_cvtps_pd(a0), _mm_cvtps_pd(_mm_movehl_ps(a0, a0)));
        total = _mm_cvtsd_f64(wide) + _mm_cvtsd_f64(_mm_unpackhi_pd(wide, wide));
        for (; i < n; i++)
            total += v[i];
        return total;
    }
    /* float lanes over at most 256 values (16 per lane), then double */
    static inline double fastconv_run_sum_float(const float* v, Py_ssize_t n) {
        double total = 0.0;
        Py_ssize_t start = 0;
        for (; n - start > 256; start += 256)
            total += fastconv_block_sum_float(v + start, 256);
        return total + fastconv_block_sum_float(v + start, n - start);
    }
    static inline double fastconv_run_sum_double(const double* v, Py_ssize_t n) {
        __m128d a0 = _mm_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
        Py_ssize_t i = 0;
        double total;
        for (; i + 8 <= n; i += 8) {
            a0 = _mm_add_pd(a0, _mm_loadu_pd(v + i));
            a1 = _mm_add_pd(a1, _mm_loadu_pd(v + i + 2));
            a2 = _mm_add_pd(a2, _mm_loadu_pd(v + i + 4));
            a3 = _mm_add_pd(a3, _mm_loadu_pd(v + i + 6));
        }
        for (; i + 2 <= n; i += 2)
            a0 = _mm_add_pd(a0, _mm_loadu_pd(v + i));
        a0 = _mm_add_pd(_mm_add_pd(a0, a1), _mm_add_pd(a2, a3));
        total = _mm_cvtsd_f64(a0) + _mm_cvtsd_f64(_mm_unpackhi_pd(a0, a0));
        for (; i < n; i++)
            total += v[i];
        return total;
    }
    #else
    #define FASTCONV_RUN_SUM(name, type)                                          \
    static inline double name(const type* v, Py_ssize_t n) {                      \
        double total = 0.0;                                                       \
        for (Py_ssize_t start = 0; start < n; start += 256) {                     \
            Py_ssize_t stop = n - start > 256 ? start + 256 : n, i = start;       \
            type lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};                              \
            for (; i + 8 <= stop; i += 8)                                         \
                for (int k = 0; k < 8; k++) lane[k] += v[i + k];                  \
            for (int k = 0; k < 4; k++) total += (double)lane[k] + lane[k + 4];   \
            for (; i < stop; i++) total += v[i];                                  \
        }                                                                         \
        return total;                                                             \
    }
    FASTCONV_RUN_SUM(fastconv_run_sum_float, float)
    FASTCONV_RUN_SUM(fastconv_run_sum_double, double)
    #endif
    """
    double fastconv_run_sum_float(const float* v, Py_ssize_t n) noexcept nogil
    double fastconv_run_sum_double(const double* v, Py_ssize_t n) noexcept nogil


cdef inline double run_sum(const floating* values, Py_ssize_t length) noexcept nogil:
    """Sum of values[:length] (see fastconv_run_sum_float above)."""
    if floating is float:
        return fastconv_run_sum_float(values, length)
    return fastconv_run_sum_double(values, length)


def plane_means(const floating[:, ::1] x, floating[::1] out, int num_threads):
    """out[p] = mean of x[p, :] for x (planes, length), summed in double (NaN for length 0,
    as NumPy's mean of nothing)."""
    cdef Py_ssize_t plane, planes = x.shape[0], length = x.shape[1]
    cdef double size = length
    cdef const floating* values
    cdef floating* means
    if planes == 0 or length == 0:
        if planes:
            out[:] = NAN  # the mean of nothing, as NumPy's
        return
    values = &x[0, 0]
    means = &out[0]
    for plane in prange(planes, nogil=True, schedule="static", num_threads=num_threads):
        means[plane] = <floating>(run_sum(values + plane * length, length) / size)


def spread_means(const floating[::1] dout, floating[:, ::1] dx, int num_threads):
    """dx[p, :] = dout[p] / length for dx (planes, length): the gradient of plane_means."""
    cdef Py_ssize_t plane, i, planes = dx.shape[0], length = dx.shape[1]
    cdef floating value
    for plane in prange(planes, nogil=True, schedule="static", num_threads=num_threads):
        value = dout[plane] / <floating>length
        for i in range(length):
            dx[plane, i] = value


# ---- adaptive pooling (2-D) -----------------------------------------------------------------
# The window bounds come precomputed from the front (fastconv._geometry.adaptive_range, one
# entry per output row and column): computed here per output, their divisions cost more than
# the 3x3 windows of AlexNet's 13 -> 6 pool themselves.

def adaptive_avg_forward(const floating[:, :, ::1] x, floating[:, :, ::1] out,
                         const Py_ssize_t[::1] tops, const Py_ssize_t[::1] bottoms,
                         const Py_ssize_t[::1] lefts, const Py_ssize_t[::1] rights,
                         floating[:, ::1] scratch, int num_threads):
    """out (planes, OH, OW): the mean of each adaptive window of x (planes, H, W), rows
    [tops[oh], bottoms[oh]) and columns [lefts[ow], rights[ow]). scratch: (num_threads, W).

    In two passes per output row, as average pooling (see add_rows): the window's rows added
    into one row, then each output's columns summed from it."""
    cdef Py_ssize_t plane, oh, ow, row, col, top, bottom, left, right
    cdef Py_ssize_t planes = x.shape[0], width = x.shape[2]
    cdef Py_ssize_t out_height = out.shape[1], out_width = out.shape[2]
    cdef const floating* x_row
    cdef floating* sums
    cdef floating total
    cdef int tid = 0
    if scratch.shape[0] < num_threads or scratch.shape[1] < x.shape[2]:
        raise ValueError("scratch must have a row of at least W elements per thread")
    with nogil, parallel(num_threads=num_threads):
        tid = threadid()
        for plane in prange(planes, schedule="static"):
            sums = &scratch[tid, 0]
            for oh in range(out_height):
                top, bottom = tops[oh], bottoms[oh]
                x_row = &x[plane, top, 0]
                for col in range(width):
                    sums[col] = x_row[col]
                for row in range(top + 1, bottom):
                    x_row = &x[plane, row, 0]
                    for col in range(width):
                        sums[col] += x_row[col]
                for ow in range(out_width):
                    left, right = lefts[ow], rights[ow]
                    total = 0
                    for col in range(left, right):
                        total = total + sums[col]
                    out[plane, oh, ow] = total / <floating>((bottom - top) * (right - left))


def adaptive_avg_backward(const floating[:, :, ::1] dout, floating[:, :, ::1] dx,
                          const Py_ssize_t[::1] tops, const Py_ssize_t[::1] bottoms,
                          const Py_ssize_t[::1] lefts, const Py_ssize_t[::1] rights,
                          floating[:, ::1] scratch, int num_threads):
    """Overwrite dx (planes, H, W): each dout (planes, OH, OW) element / its window's size added
    over its window (windows may overlap). scratch: (num_threads, W).

    The transpose of adaptive_avg_forward's two passes: each output row's shares spread over
    one row, which is then added to each of the window's rows of dx."""
    cdef Py_ssize_t plane, oh, ow, row, col, top, bottom, left, right
    cdef Py_ssize_t planes = dx.shape[0], height = dx.shape[1], width = dx.shape[2]
    cdef Py_ssize_t out_height = dout.shape[1], out_width = dout.shape[2]
    cdef floating* dx_row
    cdef floating* spread
    cdef floating share
    cdef int tid = 0
    if scratch.shape[0] < num_threads or scratch.shape[1] < dx.shape[2]:
        raise ValueError("scratch must have a row of at least W elements per thread")
    with nogil, parallel(num_threads=num_threads):
        tid = threadid()
        for plane in prange(planes, schedule="static"):
            spread = &scratch[tid, 0]
            for row in range(height):
                dx_row = &dx[plane, row, 0]
                for col in range(width):
                    dx_row[col] = 0
            for oh in range(out_height):
                top, bottom = tops[oh], bottoms[oh]
                for col in range(width):
                    spread[col] = 0
                for ow in range(out_width):
                    left, right = lefts[ow], rights[ow]
                    share = dout[plane, oh, ow] / <floating>((bottom - top) * (right - left))
                    for col in range(left, right):
                        spread[col] += share
                for row in range(top, bottom):
                    dx_row = &dx[plane, row, 0]
                    for col in range(width):
                        dx_row[col] += spread[col]


def adaptive_max_forward(const floating[:, :, ::1] x, floating[:, :, ::1] out,
                         index_t[:, :, ::1] argmax,
                         const Py_ssize_t[::1] tops, const Py_ssize_t[::1] bottoms,
                         const Py_ssize_t[::1] lefts, const Py_ssize_t[::1] rights, int num_threads):
    """out and argmax (planes, OH, OW): the max of each adaptive window of x (planes, H, W) and
    its flat index into the H*W plane (first maximum, last NaN)."""
    cdef Py_ssize_t plane, oh, ow, row, col, top, bottom, left, right
    cdef Py_ssize_t planes = x.shape[0], width = x.shape[2]
    cdef Py_ssize_t out_height = out.shape[1], out_width = out.shape[2]
    cdef const floating* x_row
    cdef floating best, value
    cdef index_t best_index
    cdef bint take
    for plane in prange(planes, nogil=True, schedule="static", num_threads=num_threads):
        for oh in range(out_height):
            top, bottom = tops[oh], bottoms[oh]
            for ow in range(out_width):
                left, right = lefts[ow], rights[ow]
                best = -INFINITY
                best_index = <index_t>(top * width + left)
                for row in range(top, bottom):
                    x_row = &x[plane, row, 0]
                    for col in range(left, right):
                        value = x_row[col]
                        take = (value > best) | (value != value)
                        best = value if take else best
                        best_index = <index_t>(row * width + col) if take else best_index
                out[plane, oh, ow] = best
                argmax[plane, oh, ow] = best_index


# ---- max-unpooling --------------------------------------------------------------------------

ctypedef fused source_t:
    int32_t
    int64_t


def copy_indices(const source_t[:, ::1] indices, index_t[:, ::1] own, Py_ssize_t limit,
                 int num_threads):
    """own = indices (planes, L), each value checked to lie in [0, limit) as it is copied; the
    number of planes holding a value outside it (0: all in range; own is then complete).

    Max-unpooling's front copies the caller's indices so that nothing they do later reaches
    the cache, into int32 where the output plane allows: one pass instead of NumPy's copy
    and two reductions for the bounds, and half the bytes for the backward to read."""
    cdef Py_ssize_t plane, i, planes = indices.shape[0], length = indices.shape[1]
    cdef Py_ssize_t bad = 0
    cdef source_t value
    cdef bint outside
    for plane in prange(planes, nogil=True, schedule="static", num_threads=num_threads):
        outside = False
        for i in range(length):
            value = indices[plane, i]
            outside = outside | (value < 0) | (value >= limit)
            own[plane, i] = <index_t>value
        if outside:
            bad += 1
    return bad


def unpool_forward(const floating[:, ::1] x, const index_t[:, ::1] indices, floating[:, ::1] out,
                   uint8_t[:, ::1] claimed, int num_threads):
    """Overwrite out (planes, M) with zeros and x (planes, L) written at indices (planes, L),
    each in [0, M). A position named twice keeps the last x in plane order. claimed:
    (num_threads, M) scratch. Returns the number of planes that name a position twice: where
    none does, unpool_backward can run as a plain gather (repeats=False)."""
    cdef Py_ssize_t plane, planes = x.shape[0], length = x.shape[1], out_size = out.shape[1]
    cdef Py_ssize_t repeated = 0
    cdef int tid = 0
    if claimed.shape[0] < num_threads or claimed.shape[1] < out_size:
        raise ValueError("claimed must have a row of at least M bytes per thread")
    with nogil, parallel(num_threads=num_threads):
        tid = threadid()
        for plane in prange(planes, schedule="static"):
            if length > 0:
                if scatter_plane(&x[plane, 0], &indices[plane, 0], &out[plane, 0],
                                 &claimed[tid, 0], length, out_size):
                    repeated += 1
    return repeated


cdef inline bint scatter_plane(const floating* x, const index_t* indices, floating* out,
                               uint8_t* claimed, Py_ssize_t length, Py_ssize_t out_size) noexcept nogil:
    """One plane of unpool_forward; whether it names a position twice. Pointers, not
    memoryviews: with the memoryviews' strides in memory that a float store may alias
    (-fno-strict-aliasing), every element reloaded them (see add_rows); the front checked
    every index against out_size. claimed: one byte per output position, in L1 (12 KB for
    112x112), so the repeat check costs little beside the output's own writes."""
    cdef Py_ssize_t i, position
    cdef uint8_t repeated = 0
    memset(claimed, 0, out_size)
    for i in range(out_size):
        out[i] = 0
    for i in range(length):
        position = indices[i]
        repeated |= claimed[position]
        claimed[position] = 1
        out[position] = x[i]
    return repeated != 0


cdef inline void gather_plane(const floating* dout, const index_t* indices, floating* dx,
                              uint8_t* claimed, Py_ssize_t length, Py_ssize_t out_size) noexcept nogil:
    """One plane of unpool_backward (pointers: see scatter_plane). Scanned from the end, so the
    first x element to claim a position is the one the forward kept (the last); claimed: one
    byte per output position (12 KB for 112x112, in L1: an 8-byte owner index per position, in
    L2, had made this 3.4x slower than a plain gather)."""
    cdef Py_ssize_t i, position
    memset(claimed, 0, out_size)
    for i in range(length - 1, -1, -1):
        position = indices[i]
        dx[i] = 0 if claimed[position] else dout[position]
        claimed[position] = 1


def unpool_backward(const floating[:, ::1] dout, const index_t[:, ::1] indices, floating[:, ::1] dx,
                    uint8_t[:, ::1] claimed, bint repeats, int num_threads):
    """dx (planes, L): dout (planes, M) read back at indices (planes, L), the gradient of
    unpool_forward: an x element a later one overwrote gets 0. repeats: whether the forward
    found a plane naming a position twice; if not, a plain gather (2.3x faster: no claimed
    bytes to clear and test). claimed: (num_threads, M) scratch, used when repeats."""
    cdef Py_ssize_t plane, planes = dx.shape[0], length = dx.shape[1], out_size = dout.shape[1]
    cdef int tid = 0
    if repeats and (claimed.shape[0] < num_threads or claimed.shape[1] < out_size):
        raise ValueError("claimed must have a row of at least M bytes per thread")
    if not repeats:
        for plane in prange(planes, nogil=True, schedule="static", num_threads=num_threads):
            if length > 0:
                take_plane(&dout[plane, 0], &indices[plane, 0], &dx[plane, 0], length)
        return
    with nogil, parallel(num_threads=num_threads):
        tid = threadid()
        for plane in prange(planes, schedule="static"):
            if length > 0:
                gather_plane(&dout[plane, 0], &indices[plane, 0], &dx[plane, 0], &claimed[tid, 0],
                             length, out_size)


cdef inline void take_plane(const floating* dout, const index_t* indices, floating* dx,
                            Py_ssize_t length) noexcept nogil:
    """One plane of unpool_backward where no position is named twice: dx = dout[indices]."""
    cdef Py_ssize_t i
    for i in range(length):
        dx[i] = dout[indices[i]]
