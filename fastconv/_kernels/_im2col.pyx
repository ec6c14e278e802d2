"""Compiled im2col / col2im over a whole batch, parallel over images."""
from cython cimport floating
from cython.parallel cimport prange

from ._tiles cimport col2im_rows, im2col_rows, zero_image


def im2col(const floating[:, :, :, ::1] x, floating[:, ::1] cols,
           Py_ssize_t kernel_height, Py_ssize_t kernel_width,
           Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_h, Py_ssize_t pad_w,
           Py_ssize_t out_height, Py_ssize_t out_width, int num_threads):
    """Fill cols (C*KH*KW, N*OH*OW) from x (N, C, H, W); columns ordered (n, oh, ow)."""
    cdef Py_ssize_t image, batch = x.shape[0], plane = out_height * out_width
    for image in prange(batch, nogil=True, schedule="static", num_threads=num_threads):
        im2col_rows(x, image, kernel_height, kernel_width, stride_h, stride_w, pad_h, pad_w,
                    out_width, 0, out_height, cols, image * plane)


def col2im(const floating[:, ::1] cols, floating[:, :, :, ::1] dx,
           Py_ssize_t kernel_height, Py_ssize_t kernel_width,
           Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_h, Py_ssize_t pad_w,
           Py_ssize_t out_height, Py_ssize_t out_width, int num_threads):
    """Overwrite dx (N, C, H, W) with the adjoint of im2col applied to cols; each thread owns whole images."""
    cdef Py_ssize_t image, batch = dx.shape[0], plane = out_height * out_width
    for image in prange(batch, nogil=True, schedule="static", num_threads=num_threads):
        zero_image(dx, image)
        col2im_rows(cols, image * plane, kernel_height, kernel_width, stride_h, stride_w,
                    pad_h, pad_w, out_width, 0, out_height, dx, image)
