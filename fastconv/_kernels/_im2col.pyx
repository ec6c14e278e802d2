"""Compiled im2col / col2im over a whole batch, and the polyphase rearrangement of
s2d-winograd (phases into channels) and s2b-winograd (phases into the batch) and its adjoint
(fastconv/reference/polyphase.py has the NumPy twins); parallel over images and channels."""
from cython cimport floating
from cython.parallel cimport prange

from ._tiles cimport Window, col2im_rows, im2col_rows, unpack_window, zero_image


def im2col(const floating[:, :, :, :, ::1] x, floating[:, ::1] cols,
           const Py_ssize_t[::1] window, int num_threads):
    """Fill cols (C*KD*KH*KW, N*OD*OH*OW) from x (N, C, D, H, W); columns ordered
    (n, od, oh, ow). window: the 16 values of _tiles.Window."""
    cdef Window w = unpack_window(window)
    cdef Py_ssize_t image, od, batch = x.shape[0]
    cdef Py_ssize_t plane = w.out_h * w.out_w
    for image in prange(batch, nogil=True, schedule="static", num_threads=num_threads):
        for od in range(w.out_d):
            im2col_rows(x, image, &w, od, 0, w.out_h, cols, (image * w.out_d + od) * plane)


def col2im(const floating[:, ::1] cols, floating[:, :, :, :, ::1] dx,
           const Py_ssize_t[::1] window, int num_threads):
    """Overwrite dx (N, C, D, H, W) with the adjoint of im2col applied to cols; each thread
    owns whole images."""
    cdef Window w = unpack_window(window)
    cdef Py_ssize_t image, od, batch = dx.shape[0]
    cdef Py_ssize_t plane = w.out_h * w.out_w
    for image in prange(batch, nogil=True, schedule="static", num_threads=num_threads):
        zero_image(dx, image)
        for od in range(w.out_d):
            col2im_rows(cols, (image * w.out_d + od) * plane, &w, od, 0, w.out_h, dx, image)


cdef inline Py_ssize_t phase_first(Py_ssize_t phase, Py_ssize_t stride,
                                   Py_ssize_t pad) noexcept nogil:
    """The first position p whose input index stride*p + phase - pad is not negative."""
    return 0 if pad <= phase else (pad - phase + stride - 1) // stride


cdef inline Py_ssize_t phase_stop(Py_ssize_t phase, Py_ssize_t stride, Py_ssize_t pad,
                                  Py_ssize_t size, Py_ssize_t count) noexcept nogil:
    """One past the last position p (of `count`) whose input index stride*p + phase - pad
    lies below size; positions [phase_first, phase_stop) lie inside the input (none when
    phase_stop <= phase_first), as fastconv/reference/polyphase.py's _span."""
    return 0 if size - 1 + pad - phase < 0 else min(count, (size - 1 + pad - phase) // stride + 1)


cdef check_phases(phases, Py_ssize_t batch, Py_ssize_t channels, Py_ssize_t stride_h,
                  Py_ssize_t stride_w, bint by_batch):
    """ValueError unless phases has the images and planes of its layout (the loops index it
    without bounds checks)."""
    cdef Py_ssize_t images = stride_h * stride_w * batch if by_batch else batch
    cdef Py_ssize_t planes = channels if by_batch else channels * stride_h * stride_w
    if stride_h < 1 or stride_w < 1 or phases.shape[0] != images or phases.shape[1] != planes:
        raise ValueError(f"phases must have {images} images of {planes} planes for strides "
                         f"({stride_h}, {stride_w}), by_batch={bool(by_batch)}; got "
                         f"{tuple(phases.shape)[:2]}")


def space_to_depth(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] phases,
                   Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_h, Py_ssize_t pad_w,
                   int num_threads, bint by_batch=False):
    """phases[n, (c, a, b), p, q] = padded x[n, c, stride_h*p + a, stride_w*q + b] for
    x (N, C, H, W) and phases (N, C*stride_h*stride_w, P, Q): zero where that pixel is padding
    or lies past x. by_batch: the phases go into the batch instead,
    phases[(a, b, n), c, p, q], phases (stride_h*stride_w*N, C, P, Q) (space-to-batch)."""
    cdef Py_ssize_t batch = x.shape[0], channels = x.shape[1]
    cdef Py_ssize_t height = x.shape[2], width = x.shape[3]
    cdef Py_ssize_t rows = phases.shape[2], columns = phases.shape[3]
    cdef Py_ssize_t task, image, c, a, b, p, q, plane, p0, p1, q0, q1, r
    cdef const floating* source
    cdef floating* target
    check_phases(phases, batch, channels, stride_h, stride_w, by_batch)
    for task in prange(batch * channels, nogil=True, schedule="static", num_threads=num_threads):
        image = task // channels
        c = task - image * channels
        for a in range(stride_h):
            p0 = phase_first(a, stride_h, pad_h)
            p1 = phase_stop(a, stride_h, pad_h, height, rows)
            for b in range(stride_w):
                q0 = phase_first(b, stride_w, pad_w)
                q1 = phase_stop(b, stride_w, pad_w, width, columns)
                plane = (c * stride_h + a) * stride_w + b
                for p in range(rows):
                    if by_batch:
                        target = &phases[(a * stride_w + b) * batch + image, c, p, 0]
                    else:
                        target = &phases[image, plane, p, 0]
                    if p < p0 or p >= p1 or q1 <= q0:
                        for q in range(columns):
                            target[q] = 0
                        continue
                    r = stride_h * p + a - pad_h
                    source = &x[image, c, r, 0] + (stride_w * q0 + b - pad_w)
                    for q in range(q0):
                        target[q] = 0
                    for q in range(q1 - q0):
                        target[q0 + q] = source[stride_w * q]
                    for q in range(q1, columns):
                        target[q] = 0


def depth_to_space(const floating[:, :, :, ::1] phases, floating[:, :, :, ::1] dx,
                   Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_h, Py_ssize_t pad_w,
                   int num_threads, bint by_batch=False):
    """The adjoint of space_to_depth (with the same by_batch): dx (N, C, H, W) overwritten,
    each pixel with its phase pixel (every padded pixel lies in exactly one phase image); zero
    for rows and columns past the phase images (past the last window)."""
    cdef Py_ssize_t batch = dx.shape[0], channels = dx.shape[1]
    cdef Py_ssize_t height = dx.shape[2], width = dx.shape[3]
    cdef Py_ssize_t rows = phases.shape[2], columns = phases.shape[3]
    cdef Py_ssize_t task, image, c, a, b, p, q, r, j, plane, q0, q1, covered
    cdef const floating* source
    cdef floating* target
    check_phases(phases, batch, channels, stride_h, stride_w, by_batch)
    # columns of x that some phase image holds: those before stride_w * Q - pad_w
    covered = max(0, min(width, stride_w * columns - pad_w))
    for task in prange(batch * channels, nogil=True, schedule="static", num_threads=num_threads):
        image = task // channels
        c = task - image * channels
        for r in range(height):
            target = &dx[image, c, r, 0]
            p = (r + pad_h) // stride_h
            if p >= rows:
                for j in range(width):
                    target[j] = 0
                continue
            a = r + pad_h - stride_h * p
            for b in range(stride_w):
                q0 = phase_first(b, stride_w, pad_w)
                q1 = phase_stop(b, stride_w, pad_w, width, columns)
                plane = (c * stride_h + a) * stride_w + b
                if by_batch:
                    source = &phases[(a * stride_w + b) * batch + image, c, p, 0]
                else:
                    source = &phases[image, plane, p, 0]
                for q in range(q0, q1):
                    target[stride_w * q + b - pad_w] = source[q]
            for j in range(covered, width):
                target[j] = 0
