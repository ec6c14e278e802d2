# im2col / col2im over a band of output rows of one image: the building block of the conv kernels.
#
# Every convolution reaches these loops as a 3-D one: x is a 5-D view (N, C, D, H, W) (a 2-D
# convolution has D = 1, a 1-D one D = H = 1), and the kernel, stride, padding and dilation of
# the three axes come in a Window. A band is a run of output rows (oh) within one output depth
# slice (od). Padding is never materialised: each read of a position outside the input goes
# through padded_index(), which gives zero (ZEROS) or the input position the padding mode
# copies, and col2im adds each gradient back onto that same position.
from cython cimport floating
from libc.string cimport memcpy, memset

cdef enum:
    ZEROS = 0
    REFLECT = 1
    REPLICATE = 2
    CIRCULAR = 3


cdef struct Window:
    Py_ssize_t kernel_d, kernel_h, kernel_w
    Py_ssize_t stride_d, stride_h, stride_w
    Py_ssize_t pad_d, pad_h, pad_w            # padding before each axis (after: implied by out)
    Py_ssize_t dilation_d, dilation_h, dilation_w
    Py_ssize_t out_d, out_h, out_w
    int mode


cdef inline Window unpack_window(const Py_ssize_t[::1] values) noexcept nogil:
    """A Window from the 16 values the Python side packs (_kernels' callers: kernel, stride,
    padding and dilation for (d, h, w), the output size, the padding mode)."""
    cdef Window w
    w.kernel_d, w.kernel_h, w.kernel_w = values[0], values[1], values[2]
    w.stride_d, w.stride_h, w.stride_w = values[3], values[4], values[5]
    w.pad_d, w.pad_h, w.pad_w = values[6], values[7], values[8]
    w.dilation_d, w.dilation_h, w.dilation_w = values[9], values[10], values[11]
    w.out_d, w.out_h, w.out_w = values[12], values[13], values[14]
    w.mode = <int> values[15]
    return w


cdef inline Py_ssize_t padded_index(Py_ssize_t i, Py_ssize_t size, int mode) noexcept nogil:
    """The input position read at position i of the padded axis, or -1 for a zero. The
    geometry guarantees reflect padding < size and circular padding <= size."""
    cdef Py_ssize_t r
    if 0 <= i < size:
        return i
    if mode == ZEROS or size == 0:
        return -1
    if mode == REPLICATE:
        return 0 if i < 0 else size - 1
    if mode == CIRCULAR:
        r = i % size
        return r + size if r < 0 else r
    return -i if i < 0 else 2 * (size - 1) - i  # REFLECT


cdef inline void valid_columns(Py_ssize_t kernel_col, Py_ssize_t width, Py_ssize_t out_width,
                               Py_ssize_t stride_w, Py_ssize_t pad_w,
                               Py_ssize_t* first, Py_ssize_t* stop) noexcept nogil:
    """Output columns ow in [first, stop) read an input column inside [0, width) for this kernel
    column offset (kw * dilation): ow * stride_w + kernel_col - pad_w."""
    cdef Py_ssize_t offset = kernel_col - pad_w  # input column of ow = 0
    cdef Py_ssize_t lo = 0, hi
    if offset < 0:
        lo = (-offset + stride_w - 1) // stride_w
    if width - 1 - offset < 0:
        hi = 0
    else:
        hi = (width - 1 - offset) // stride_w + 1
    if hi > out_width:
        hi = out_width
    if lo > hi:
        lo = hi
    first[0] = lo
    stop[0] = hi


cdef inline void gather(floating* dst, const floating* src, Py_ssize_t count,
                        Py_ssize_t stride) noexcept nogil:
    """dst[i] = src[i * stride] for i < count. The common strides get loops of their own,
    which the compiler vectorises (a literal stride); the general loop stays scalar."""
    cdef Py_ssize_t i
    if stride == 1:
        memcpy(dst, src, count * sizeof(floating))
    elif stride == 2:
        for i in range(count):
            dst[i] = src[2 * i]
    elif stride == 4:
        for i in range(count):
            dst[i] = src[4 * i]
    else:
        for i in range(count):
            dst[i] = src[i * stride]


cdef inline void scatter_add(floating* dst, const floating* src, Py_ssize_t count,
                             Py_ssize_t stride) noexcept nogil:
    """dst[i * stride] += src[i] for i < count: the adjoint of gather()."""
    cdef Py_ssize_t i
    if stride == 1:
        for i in range(count):
            dst[i] += src[i]
    elif stride == 2:
        for i in range(count):
            dst[2 * i] += src[i]
    elif stride == 4:
        for i in range(count):
            dst[4 * i] += src[i]
    else:
        for i in range(count):
            dst[i * stride] += src[i]


cdef inline void gather_row(floating* dst, const floating* row, Py_ssize_t width,
                            Py_ssize_t offset, Py_ssize_t first, Py_ssize_t stop,
                            Py_ssize_t count, Py_ssize_t stride, int mode) noexcept nogil:
    """dst[j] = padded row[j * stride + offset] for j < count, where [first, stop)
    (valid_columns()) are the j inside the row and the others lie in the padding: zeros, or
    what the padding mode copies. The margins are at most the padding wide: plain loops."""
    cdef Py_ssize_t j, source
    for j in range(first):
        source = padded_index(j * stride + offset, width, mode)
        dst[j] = 0 if source < 0 else row[source]
    if stop > first:
        gather(dst + first, row + first * stride + offset, stop - first, stride)
    for j in range(stop, count):
        source = padded_index(j * stride + offset, width, mode)
        dst[j] = 0 if source < 0 else row[source]


cdef inline void scatter_row(floating* row, const floating* src, Py_ssize_t width,
                             Py_ssize_t offset, Py_ssize_t first, Py_ssize_t stop,
                             Py_ssize_t count, Py_ssize_t stride, int mode) noexcept nogil:
    """The adjoint of gather_row: row[position j reads] += src[j]."""
    cdef Py_ssize_t j, source
    if mode != ZEROS:
        for j in range(first):
            source = padded_index(j * stride + offset, width, mode)
            if source >= 0:
                row[source] += src[j]
        for j in range(stop, count):
            source = padded_index(j * stride + offset, width, mode)
            if source >= 0:
                row[source] += src[j]
    if stop > first:
        scatter_add(row + first * stride + offset, src + first, stop - first, stride)


cdef inline Py_ssize_t source_plane(const Window* w, Py_ssize_t depth, Py_ssize_t od,
                                    Py_ssize_t kd) noexcept nogil:
    """The input depth slice kernel tap kd of output slice od reads (-1: zeros)."""
    return padded_index(od * w.stride_d + kd * w.dilation_d - w.pad_d, depth, w.mode)


cdef inline void im2col_rows(
        const floating[:, :, :, :, ::1] x, Py_ssize_t image, const Window* w,
        Py_ssize_t od, Py_ssize_t row_start, Py_ssize_t row_stop,
        floating[:, ::1] cols, Py_ssize_t col_offset) noexcept nogil:
    """Copy the windows of output rows [row_start, row_stop) of depth slice od of x[image]
    into cols:

    cols[((c, kd), kh, kw), col_offset + (oh - row_start) * out_w + ow]
        = padded x[image, c, od*sd + kd*dd, oh*sh + kh*dh, ow*sw + kw*dw].

    Row starts are taken through the memoryviews (bounds-checked in the checked build); the
    copies inside a row use pointers over the range valid_columns() proves in bounds.
    """
    cdef Py_ssize_t channels = x.shape[1], depth = x.shape[2]
    cdef Py_ssize_t height = x.shape[3], width = x.shape[4]
    cdef Py_ssize_t c, kd, kh, kw, oh, in_d, in_row, first, stop, row, offset, j
    cdef floating* dst
    for kw in range(w.kernel_w):
        offset = kw * w.dilation_w - w.pad_w
        valid_columns(kw * w.dilation_w, width, w.out_w, w.stride_w, w.pad_w, &first, &stop)
        for c in range(channels):
            for kd in range(w.kernel_d):
                in_d = source_plane(w, depth, od, kd)
                for kh in range(w.kernel_h):
                    row = ((c * w.kernel_d + kd) * w.kernel_h + kh) * w.kernel_w + kw
                    dst = &cols[row, col_offset]
                    if w.mode == ZEROS and in_d >= 0 and first < stop:
                        # zero padding, the common case, without padded_index() per row and
                        # per margin value
                        for oh in range(row_start, row_stop):
                            in_row = oh * w.stride_h + kh * w.dilation_h - w.pad_h
                            if in_row < 0 or in_row >= height:
                                memset(dst, 0, w.out_w * sizeof(floating))
                            else:
                                for j in range(first):
                                    dst[j] = 0
                                gather(dst + first, &x[image, c, in_d, in_row, 0]
                                       + first * w.stride_w + offset, stop - first, w.stride_w)
                                for j in range(stop, w.out_w):
                                    dst[j] = 0
                            dst = dst + w.out_w
                        continue
                    for oh in range(row_start, row_stop):
                        in_row = padded_index(oh * w.stride_h + kh * w.dilation_h - w.pad_h,
                                              height, w.mode)
                        if in_d < 0 or in_row < 0 or (first == stop and w.mode == ZEROS):
                            memset(dst, 0, w.out_w * sizeof(floating))
                        else:
                            gather_row(dst, &x[image, c, in_d, in_row, 0], width, offset, first,
                                       stop, w.out_w, w.stride_w, w.mode)
                        dst = dst + w.out_w


cdef inline void col2im_rows(
        const floating[:, ::1] cols, Py_ssize_t col_offset, const Window* w,
        Py_ssize_t od, Py_ssize_t row_start, Py_ssize_t row_stop,
        floating[:, :, :, :, ::1] dx, Py_ssize_t image) noexcept nogil:
    """Adjoint of im2col_rows: add each column entry back onto the input pixel it was read
    from (the padding mode's source pixel for a padded position)."""
    cdef Py_ssize_t channels = dx.shape[1], depth = dx.shape[2]
    cdef Py_ssize_t height = dx.shape[3], width = dx.shape[4]
    cdef Py_ssize_t c, kd, kh, kw, oh, in_d, in_row, first, stop, row, offset
    cdef const floating* src
    for kw in range(w.kernel_w):
        offset = kw * w.dilation_w - w.pad_w
        valid_columns(kw * w.dilation_w, width, w.out_w, w.stride_w, w.pad_w, &first, &stop)
        if first == stop and w.mode == ZEROS:
            continue
        for c in range(channels):
            for kd in range(w.kernel_d):
                in_d = source_plane(w, depth, od, kd)
                if in_d < 0:
                    continue
                for kh in range(w.kernel_h):
                    row = ((c * w.kernel_d + kd) * w.kernel_h + kh) * w.kernel_w + kw
                    src = &cols[row, col_offset]
                    for oh in range(row_start, row_stop):
                        in_row = padded_index(oh * w.stride_h + kh * w.dilation_h - w.pad_h,
                                              height, w.mode)
                        if in_row >= 0:
                            scatter_row(&dx[image, c, in_d, in_row, 0], src, width, offset,
                                        first, stop, w.out_w, w.stride_w, w.mode)
                        src = src + w.out_w


cdef inline void zero_image(floating[:, :, :, :, ::1] a, Py_ssize_t image) noexcept nogil:
    cdef Py_ssize_t count = a.shape[1] * a.shape[2] * a.shape[3] * a.shape[4]
    if count > 0:
        memset(&a[image, 0, 0, 0, 0], 0, count * sizeof(floating))


# Staged im2col. When windows overlap (KH*KW > stride_h*stride_w) every input pixel is copied
# into many columns; the plain im2col_rows() then pays for edge tests and a strided gather on
# each copy. Instead, the input rows a band needs are first copied once into a "stage": padded
# and, for stride_w > 1, split by column phase,
#     stage[(c, kd), r, phase, j] = padded x[image, c, in_d(kd), first_row + r, j*stride_w + phase],
# so that every row of the im2col buffer is a contiguous run of the stage:
#     cols[((c, kd), kh, kw), (oh - row_start)*OW + ow]
#         = stage[(c, kd), (oh - row_start)*stride_h + kh*dh, (kw*dw) % stride_w,
#                 (kw*dw) // stride_w + ow].

cdef inline Py_ssize_t stage_height(const Window* w, Py_ssize_t band_rows) noexcept nogil:
    return (band_rows - 1) * w.stride_h + (w.kernel_h - 1) * w.dilation_h + 1


cdef inline Py_ssize_t stage_width(const Window* w) noexcept nogil:
    return w.out_w + ((w.kernel_w - 1) * w.dilation_w) // w.stride_w


cdef inline void stage_rows(
        const floating[:, :, :, :, ::1] x, Py_ssize_t image, const Window* w, Py_ssize_t od,
        Py_ssize_t first_row, Py_ssize_t rows, floating* stage) noexcept nogil:
    """Fill stage (C*KD, rows, stride_w, stage_width) from input rows first_row + r (may be
    padding) of the depth slices od's taps read."""
    cdef Py_ssize_t channels = x.shape[1], depth = x.shape[2]
    cdef Py_ssize_t height = x.shape[3], width = x.shape[4]
    cdef Py_ssize_t span = stage_width(w)
    cdef Py_ssize_t c, kd, r, phase, in_d, in_row, first, stop
    cdef floating* dst = stage
    for c in range(channels):
        for kd in range(w.kernel_d):
            in_d = source_plane(w, depth, od, kd)
            for r in range(rows):
                in_row = padded_index(first_row + r, height, w.mode)
                if in_d < 0 or in_row < 0:
                    memset(dst, 0, w.stride_w * span * sizeof(floating))
                    dst = dst + w.stride_w * span
                    continue
                for phase in range(w.stride_w):
                    # stage column j reads input column j*stride_w + phase - pad_w
                    valid_columns(phase, width, span, w.stride_w, w.pad_w, &first, &stop)
                    if first == stop and w.mode == ZEROS:
                        memset(dst, 0, span * sizeof(floating))
                    else:
                        gather_row(dst, &x[image, c, in_d, in_row, 0], width, phase - w.pad_w,
                                   first, stop, span, w.stride_w, w.mode)
                    dst = dst + span


cdef inline void im2col_staged(
        const floating[:, :, :, :, ::1] x, Py_ssize_t image, const Window* w,
        Py_ssize_t od, Py_ssize_t row_start, Py_ssize_t row_stop,
        floating[:, ::1] cols, Py_ssize_t col_offset, floating[::1] stage) noexcept nogil:
    """im2col_rows() through a stage; stage needs C * KD * stage_height * stride_w *
    stage_width elements."""
    cdef Py_ssize_t planes = x.shape[1] * w.kernel_d
    cdef Py_ssize_t band_rows = row_stop - row_start
    cdef Py_ssize_t rows = stage_height(w, band_rows)
    cdef Py_ssize_t span = stage_width(w)
    cdef Py_ssize_t row_step = w.stride_h * w.stride_w * span
    cdef Py_ssize_t plane, kh, kw, oh, shift
    cdef floating* dst
    cdef const floating* src
    stage_rows(x, image, w, od, row_start * w.stride_h - w.pad_h, rows, &stage[0])
    for plane in range(planes):
        for kh in range(w.kernel_h):
            for kw in range(w.kernel_w):
                shift = kw * w.dilation_w
                dst = &cols[(plane * w.kernel_h + kh) * w.kernel_w + kw, col_offset]
                src = &stage[((plane * rows + kh * w.dilation_h) * w.stride_w
                              + shift % w.stride_w) * span + shift // w.stride_w]
                for oh in range(band_rows):
                    memcpy(dst, src, w.out_w * sizeof(floating))
                    dst = dst + w.out_w
                    src = src + row_step
