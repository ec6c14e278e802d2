# im2col / col2im over a band of output rows of one image: the building block of every conv kernel.
from cython cimport floating
from libc.string cimport memcpy, memset


cdef inline void valid_columns(Py_ssize_t kernel_col, Py_ssize_t width, Py_ssize_t out_width,
                               Py_ssize_t stride_w, Py_ssize_t pad_w,
                               Py_ssize_t* first, Py_ssize_t* stop) noexcept nogil:
    """Output columns ow in [first, stop) read an input column inside [0, width) for this kernel column."""
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


cdef inline void gather_between_zeros(floating* dst, const floating* src, Py_ssize_t first,
                                      Py_ssize_t stop, Py_ssize_t count,
                                      Py_ssize_t stride) noexcept nogil:
    """dst[:count] = zeros, then gather(src, stride) over [first, stop), then zeros: one window
    row, whose columns outside [first, stop) (valid_columns()) lie in the padding. src is the
    input element of column `first`; first < stop."""
    cdef Py_ssize_t j
    # the zero margins are at most the padding wide: plain loops beat calls
    for j in range(first):
        dst[j] = 0
    gather(dst + first, src, stop - first, stride)
    for j in range(stop, count):
        dst[j] = 0


cdef inline void im2col_rows(
        const floating[:, :, :, ::1] x, Py_ssize_t image,
        Py_ssize_t kernel_height, Py_ssize_t kernel_width,
        Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_h, Py_ssize_t pad_w,
        Py_ssize_t out_width, Py_ssize_t row_start, Py_ssize_t row_stop,
        floating[:, ::1] cols, Py_ssize_t col_offset) noexcept nogil:
    """Copy the windows of output rows [row_start, row_stop) of x[image] into cols.

    cols[(c, kh, kw), col_offset + (oh - row_start) * out_width + ow] = padded x[image, c, ...]

    Row starts are taken through the memoryviews (bounds-checked in the checked build); the
    copies inside a row use pointers over the range valid_columns() proves in bounds.
    """
    cdef Py_ssize_t channels = x.shape[1], height = x.shape[2], width = x.shape[3]
    cdef Py_ssize_t c, kh, kw, oh, in_row, first, stop, row
    cdef floating* dst
    for kw in range(kernel_width):
        valid_columns(kw, width, out_width, stride_w, pad_w, &first, &stop)
        for c in range(channels):
            for kh in range(kernel_height):
                row = (c * kernel_height + kh) * kernel_width + kw
                dst = &cols[row, col_offset]
                for oh in range(row_start, row_stop):
                    in_row = oh * stride_h + kh - pad_h
                    if in_row < 0 or in_row >= height or first == stop:
                        memset(dst, 0, out_width * sizeof(floating))
                    else:
                        gather_between_zeros(
                            dst, &x[image, c, in_row, first * stride_w + kw - pad_w],
                            first, stop, out_width, stride_w)
                    dst = dst + out_width


cdef inline void col2im_rows(
        const floating[:, ::1] cols, Py_ssize_t col_offset,
        Py_ssize_t kernel_height, Py_ssize_t kernel_width,
        Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_h, Py_ssize_t pad_w,
        Py_ssize_t out_width, Py_ssize_t row_start, Py_ssize_t row_stop,
        floating[:, :, :, ::1] dx, Py_ssize_t image) noexcept nogil:
    """Adjoint of im2col_rows: add each column entry back onto the input pixel it was read from."""
    cdef Py_ssize_t channels = dx.shape[1], height = dx.shape[2], width = dx.shape[3]
    cdef Py_ssize_t c, kh, kw, oh, ow, in_row, first, stop, row
    cdef const floating* src
    cdef floating* dst
    for kw in range(kernel_width):
        valid_columns(kw, width, out_width, stride_w, pad_w, &first, &stop)
        if first == stop:
            continue
        for c in range(channels):
            for kh in range(kernel_height):
                row = (c * kernel_height + kh) * kernel_width + kw
                src = &cols[row, col_offset]
                for oh in range(row_start, row_stop):
                    in_row = oh * stride_h + kh - pad_h
                    if 0 <= in_row < height:
                        scatter_add(&dx[image, c, in_row, first * stride_w + kw - pad_w],
                                    src + first, stop - first, stride_w)
                    src = src + out_width


cdef inline void zero_image(floating[:, :, :, ::1] a, Py_ssize_t image) noexcept nogil:
    cdef Py_ssize_t count = a.shape[1] * a.shape[2] * a.shape[3]
    if count > 0:
        memset(&a[image, 0, 0, 0], 0, count * sizeof(floating))


# Staged im2col. When windows overlap (KH*KW > stride_h*stride_w) every input pixel is copied
# into many columns; the plain im2col_rows() then pays for edge tests and a strided gather on
# each copy. Instead, the input rows a band needs are first copied once into a "stage": zero
# padded and, for stride_w > 1, split by column phase,
#     stage[c, r, phase, j] = padded x[image, c, first_row + r, j*stride_w + phase],
# so that every row of the im2col buffer is a contiguous run of the stage:
#     cols[(c, kh, kw), (oh - row_start)*OW + ow]
#         = stage[c, (oh - row_start)*stride_h + kh, kw % stride_w, kw // stride_w + ow].

cdef inline void stage_rows(
        const floating[:, :, :, ::1] x, Py_ssize_t image, Py_ssize_t first_row,
        Py_ssize_t rows, Py_ssize_t stride_w, Py_ssize_t pad_w, Py_ssize_t stage_width,
        floating* stage) noexcept nogil:
    """Fill stage (C, rows, stride_w, stage_width) from input rows first_row + r (may be padding)."""
    cdef Py_ssize_t channels = x.shape[1], height = x.shape[2], width = x.shape[3]
    cdef Py_ssize_t c, r, phase, in_row, first, stop
    cdef floating* dst = stage
    for c in range(channels):
        for r in range(rows):
            in_row = first_row + r
            if in_row < 0 or in_row >= height:
                memset(dst, 0, stride_w * stage_width * sizeof(floating))
                dst = dst + stride_w * stage_width
                continue
            for phase in range(stride_w):
                # stage column j reads input column j*stride_w + phase - pad_w
                valid_columns(phase, width, stage_width, stride_w, pad_w, &first, &stop)
                if first == stop:
                    memset(dst, 0, stage_width * sizeof(floating))
                else:
                    gather_between_zeros(
                        dst, &x[image, c, in_row, first * stride_w + phase - pad_w],
                        first, stop, stage_width, stride_w)
                dst = dst + stage_width


cdef inline void im2col_staged(
        const floating[:, :, :, ::1] x, Py_ssize_t image,
        Py_ssize_t kernel_height, Py_ssize_t kernel_width,
        Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_h, Py_ssize_t pad_w,
        Py_ssize_t out_width, Py_ssize_t row_start, Py_ssize_t row_stop,
        floating[:, ::1] cols, Py_ssize_t col_offset, floating[::1] stage) noexcept nogil:
    """im2col_rows() through a stage; stage needs C * rows * stride_w * stage_width elements,
    rows = (row_stop - row_start - 1)*stride_h + KH, stage_width = OW + (KW - 1) // stride_w."""
    cdef Py_ssize_t channels = x.shape[1]
    cdef Py_ssize_t rows = (row_stop - row_start - 1) * stride_h + kernel_height
    cdef Py_ssize_t stage_width = out_width + (kernel_width - 1) // stride_w
    cdef Py_ssize_t row_step = stride_h * stride_w * stage_width
    cdef Py_ssize_t c, kh, kw, oh, band_rows = row_stop - row_start
    cdef floating* dst
    cdef const floating* src
    stage_rows(x, image, row_start * stride_h - pad_h, rows, stride_w, pad_w, stage_width,
               &stage[0])
    for c in range(channels):
        for kh in range(kernel_height):
            for kw in range(kernel_width):
                dst = &cols[(c * kernel_height + kh) * kernel_width + kw, col_offset]
                src = &stage[((c * rows + kh) * stride_w + kw % stride_w) * stage_width
                             + kw // stride_w]
                for oh in range(band_rows):
                    memcpy(dst, src, out_width * sizeof(floating))
                    dst = dst + out_width
                    src = src + row_step
