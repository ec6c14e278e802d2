"""Compiled depthwise convolution (groups == channels, any number of filters per channel):
direct loops, no GEMM, memory-bound.

Each (image, channel) plane is first copied once into a per-thread padded plane (zeros or the
padding mode's values, through _tiles.padded_index), so the loops over a window's taps are
branch-free: every output row is a sum of KH*KW scaled runs of a padded row, contiguous at
stride 1, which the compiler vectorises along the row. The backward runs one channel per task
over every image, so that channel's weight gradient is summed by one thread (no per-thread
copies to add up, and the same order for any thread count).
"""
from cython cimport floating
from cython.parallel cimport parallel, prange, threadid
from libc.string cimport memset

from ._tiles cimport Window, padded_index, unpack_window


cdef inline void pad_plane(const floating* plane, Py_ssize_t height, Py_ssize_t width,
                           const Window* w, Py_ssize_t padded_h, Py_ssize_t padded_w,
                           floating* padded) noexcept nogil:
    """padded (padded_h, padded_w) = plane (height, width) padded by (pad_h, pad_w) before,
    zeros or the padding mode's values around it."""
    cdef Py_ssize_t r, j, source_row, source
    cdef const floating* row
    cdef floating* dst
    for r in range(padded_h):
        dst = padded + r * padded_w
        source_row = padded_index(r - w.pad_h, height, w.mode)
        if source_row < 0:
            memset(dst, 0, padded_w * sizeof(floating))
            continue
        row = plane + source_row * width
        for j in range(padded_w):
            source = padded_index(j - w.pad_w, width, w.mode)
            dst[j] = 0 if source < 0 else row[source]


cdef inline void fold_plane(const floating* padded, Py_ssize_t padded_h, Py_ssize_t padded_w,
                            const Window* w, Py_ssize_t height, Py_ssize_t width,
                            floating* plane) noexcept nogil:
    """The adjoint of pad_plane: plane (height, width) = each padded position's gradient
    added onto the input position it copied."""
    cdef Py_ssize_t r, j, source_row, source
    cdef const floating* src
    memset(plane, 0, height * width * sizeof(floating))
    for r in range(padded_h):
        source_row = padded_index(r - w.pad_h, height, w.mode)
        if source_row < 0:
            continue
        src = padded + r * padded_w
        for j in range(padded_w):
            source = padded_index(j - w.pad_w, width, w.mode)
            if source >= 0:
                plane[source_row * width + source] += src[j]


cdef inline void add_scaled(floating* out, const floating* row, floating weight,
                            Py_ssize_t count, Py_ssize_t stride) noexcept nogil:
    """out[i] += weight * row[i * stride]; literal strides for the common cases, so the
    compiler vectorises them."""
    cdef Py_ssize_t i
    if stride == 1:
        for i in range(count):
            out[i] += weight * row[i]
    elif stride == 2:
        for i in range(count):
            out[i] += weight * row[2 * i]
    else:
        for i in range(count):
            out[i] += weight * row[i * stride]


cdef inline floating dot(const floating* a, const floating* row, Py_ssize_t count,
                         Py_ssize_t stride) noexcept nogil:
    """sum over i of a[i] * row[i * stride], in eight running sums (vectorisable, and the
    same order whichever thread runs it)."""
    cdef floating lanes[8]
    cdef floating total = 0
    cdef Py_ssize_t i, lane, whole = count - count % 8
    for lane in range(8):
        lanes[lane] = 0
    if stride == 1:
        for i in range(0, whole, 8):
            for lane in range(8):
                lanes[lane] += a[i + lane] * row[i + lane]
    else:
        for i in range(0, whole, 8):
            for lane in range(8):
                lanes[lane] += a[i + lane] * row[(i + lane) * stride]
    for lane in range(8):
        total += lanes[lane]
    for i in range(whole, count):
        total += a[i] * row[i * stride]
    return total


cdef inline void scatter_scaled(floating* dst, const floating* src, floating weight,
                                Py_ssize_t count, Py_ssize_t stride) noexcept nogil:
    """dst[i * stride] += weight * src[i]: the adjoint of add_scaled."""
    cdef Py_ssize_t i
    if stride == 1:
        for i in range(count):
            dst[i] += weight * src[i]
    elif stride == 2:
        for i in range(count):
            dst[2 * i] += weight * src[i]
    else:
        for i in range(count):
            dst[i * stride] += weight * src[i]


cdef inline Py_ssize_t padded_extent(Py_ssize_t out, Py_ssize_t stride, Py_ssize_t kernel,
                                     Py_ssize_t dilation) noexcept nogil:
    """Padded positions the windows read along an axis."""
    return (out - 1) * stride + (kernel - 1) * dilation + 1


def forward(const floating[:, :, :, ::1] x, const floating[:, :, ::1] weight,
            const floating[::1] bias, floating[:, :, :, ::1] out, floating[:, ::1] padded,
            const Py_ssize_t[::1] window, int num_threads):
    """out (N, C*M, OH, OW) = depthwise conv of x (N, C, H, W) with weight (C*M, KH, KW)
    [+ bias (C*M,)]: filter c*M + j reads channel c. padded: (num_threads, at least
    padded_h * padded_w), the windows' extent (padded_extent)."""
    cdef Window w = unpack_window(window)
    cdef Py_ssize_t batch = x.shape[0], channels = x.shape[1]
    cdef Py_ssize_t height = x.shape[2], width = x.shape[3]
    cdef Py_ssize_t multiplier = weight.shape[0] // channels
    cdef Py_ssize_t padded_h = padded_extent(w.out_h, w.stride_h, w.kernel_h, w.dilation_h)
    cdef Py_ssize_t padded_w = padded_extent(w.out_w, w.stride_w, w.kernel_w, w.dilation_w)
    cdef Py_ssize_t task, image, c, j, f, oh, kh, kw, i
    cdef floating* plane
    cdef floating* row
    cdef floating start
    cdef bint has_bias = bias is not None
    cdef int tid = 0
    with nogil, parallel(num_threads=num_threads):
        tid = threadid()
        plane = &padded[tid, 0]
        for task in prange(batch * channels, schedule="dynamic"):
            image = task // channels
            c = task - image * channels
            pad_plane(&x[image, c, 0, 0], height, width, &w, padded_h, padded_w, plane)
            for j in range(multiplier):
                f = c * multiplier + j
                start = bias[f] if has_bias else 0
                for oh in range(w.out_h):
                    row = &out[image, f, oh, 0]
                    for i in range(w.out_w):
                        row[i] = start
                    for kh in range(w.kernel_h):
                        for kw in range(w.kernel_w):
                            add_scaled(row, plane + (oh * w.stride_h + kh * w.dilation_h) * padded_w
                                       + kw * w.dilation_w, weight[f, kh, kw], w.out_w, w.stride_w)


def backward(const floating[:, :, :, ::1] dout, const floating[:, :, :, ::1] x,
             const floating[:, :, ::1] weight, floating[:, :, :, ::1] dx,
             floating[:, :, ::1] dweight, floating[::1] dbias,
             floating[:, ::1] padded, floating[:, ::1] dpadded,
             const Py_ssize_t[::1] window, int num_threads):
    """dx (N, C, H, W), overwritten, and dweight (C*M, KH, KW), dbias (C*M,), which must be
    zero on entry, of the depthwise conv of x with weight. x None: no weight or bias
    gradient; dx None: no input gradient. padded, dpadded: (num_threads, the padded extent)
    each. One channel per task, its images in order: each gradient is summed by one thread in
    one order whatever the thread count."""
    cdef Window w = unpack_window(window)
    cdef bint need_dw = x is not None, need_dx = dx is not None
    cdef Py_ssize_t batch = dout.shape[0]
    cdef Py_ssize_t channels = dx.shape[1] if need_dx else x.shape[1]
    cdef Py_ssize_t height = dx.shape[2] if need_dx else x.shape[2]
    cdef Py_ssize_t width = dx.shape[3] if need_dx else x.shape[3]
    cdef Py_ssize_t multiplier = weight.shape[0] // channels
    cdef Py_ssize_t padded_h = padded_extent(w.out_h, w.stride_h, w.kernel_h, w.dilation_h)
    cdef Py_ssize_t padded_w = padded_extent(w.out_w, w.stride_w, w.kernel_w, w.dilation_w)
    cdef Py_ssize_t c, image, j, f, oh, kh, kw, i, base
    cdef floating* plane
    cdef floating* dplane
    cdef const floating* drow
    cdef floating total
    cdef bint has_bias = need_dw and dbias is not None
    cdef int tid = 0
    with nogil, parallel(num_threads=num_threads):
        tid = threadid()
        plane = &padded[tid, 0] if need_dw else NULL
        dplane = &dpadded[tid, 0] if need_dx else NULL
        for c in prange(channels, schedule="dynamic"):
            for image in range(batch):
                if need_dw:
                    pad_plane(&x[image, c, 0, 0], height, width, &w, padded_h, padded_w, plane)
                if need_dx:
                    memset(dplane, 0, padded_h * padded_w * sizeof(floating))
                for j in range(multiplier):
                    f = c * multiplier + j
                    for oh in range(w.out_h):
                        drow = &dout[image, f, oh, 0]
                        if has_bias:
                            total = 0
                            for i in range(w.out_w):
                                total += drow[i]
                            dbias[f] += total
                        for kh in range(w.kernel_h):
                            for kw in range(w.kernel_w):
                                base = (oh * w.stride_h + kh * w.dilation_h) * padded_w \
                                    + kw * w.dilation_w
                                if need_dw:
                                    dweight[f, kh, kw] += dot(drow, plane + base, w.out_w,
                                                              w.stride_w)
                                if need_dx:
                                    scatter_scaled(dplane + base, drow, weight[f, kh, kw],
                                                   w.out_w, w.stride_w)
                if need_dx:
                    fold_plane(dplane, padded_h, padded_w, &w, height, width, &dx[image, c, 0, 0])
