"""Compiled conv2d forward/backward: im2col over bands of output rows + BLAS GEMM, parallel over tasks.

The Python front allocates every output and workspace, chooses the band height so one
thread's im2col buffer stays within the workspace budget, and limits BLAS to one thread
when num_threads > 1 (the OpenMP threads here each run their own single-threaded GEMM).
"""
from cython cimport floating
from cython.parallel cimport parallel, prange, threadid

from ._gemm cimport gemm, gemm_blocked
from ._tiles cimport col2im_rows, im2col_rows, im2col_staged, zero_image


cdef inline void fill_bias(floating[:, :, :, ::1] out, const floating[::1] bias, Py_ssize_t image,
                           Py_ssize_t row_start, Py_ssize_t row_stop) noexcept nogil:
    """Set out[image, f, rows] = bias[f]; the GEMM then adds onto it (beta = 1)."""
    cdef Py_ssize_t f, oh, ow
    cdef floating value
    for f in range(out.shape[1]):
        value = bias[f]
        for oh in range(row_start, row_stop):
            for ow in range(out.shape[3]):
                out[image, f, oh, ow] = value


def forward(const floating[:, :, :, ::1] x, const floating[:, ::1] weight,
            Py_ssize_t kernel_height, Py_ssize_t kernel_width,
            const floating[::1] bias, floating[:, :, :, ::1] out,
            floating[:, :, ::1] workspace, floating[:, ::1] stage,
            Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_h, Py_ssize_t pad_w,
            Py_ssize_t band_rows, bint direct, const int[::1] gemm_pieces, int num_threads):
    """out (N, F, OH, OW) = conv(x (N, C, H, W), weight) [+ bias (F,)].

    weight: (F, C*KH*KW), or (F, C*KH*KW + 1) with the bias as its last column: the
    im2col buffer then gets a row of ones and the GEMM adds the bias (`bias` is then None).
    workspace: (num_threads, weight.shape[1], band_rows*OW), unused when `direct` (a 1x1,
    stride-1, unpadded convolution, which is a plain GEMM on x; `weight` is (F, C)).
    stage: (num_threads, stage size) for im2col_staged(), or (num_threads, 0) for im2col_rows().
    gemm_pieces: (rows, inner, columns), the most of each per GEMM call (0: no split).
    """
    cdef Py_ssize_t batch = x.shape[0], channels = x.shape[1]
    cdef Py_ssize_t height = x.shape[2], width = x.shape[3]
    cdef Py_ssize_t filters = weight.shape[0]
    cdef Py_ssize_t out_height = out.shape[2], out_width = out.shape[3]
    cdef Py_ssize_t bands = (out_height + band_rows - 1) // band_rows
    cdef Py_ssize_t task, image, row_start, row_stop, column
    cdef int patch = channels * kernel_height * kernel_width
    cdef int depth = weight.shape[1]  # patch, or patch + 1 with the bias folded in
    cdef int plane = out_height * out_width
    cdef int ld_work = workspace.shape[2]
    cdef int ncols, tid = 0
    cdef int piece_rows = gemm_pieces[0], piece_inner = gemm_pieces[1]
    cdef int piece_columns = gemm_pieces[2]
    cdef bint has_bias = bias is not None
    cdef floating beta = 1 if has_bias else 0
    with nogil, parallel(num_threads=num_threads):
        tid = threadid()
        if not direct and depth > patch:
            for column in range(ld_work):
                workspace[tid, patch, column] = 1
        # dynamic: a thread that starts late (woken from sleep) takes fewer bands; every
        # band is computed the same way whichever thread runs it, so results do not change
        for task in prange(batch * bands, schedule="dynamic"):
            image = task // bands
            row_start = (task % bands) * band_rows
            row_stop = min(row_start + band_rows, out_height)
            ncols = (row_stop - row_start) * out_width
            if has_bias:
                fill_bias(out, bias, image, row_start, row_stop)
            if direct:
                gemm_blocked(False, filters, ncols, channels, 1, &weight[0, 0], channels,
                             &x[image, 0, row_start, 0], height * width,
                             beta, &out[image, 0, row_start, 0], plane,
                             piece_rows, piece_inner, piece_columns)
            else:
                if stage.shape[1] > 0:
                    im2col_staged(x, image, kernel_height, kernel_width, stride_h, stride_w,
                                  pad_h, pad_w, out_width, row_start, row_stop, workspace[tid], 0,
                                  stage[tid])
                else:
                    im2col_rows(x, image, kernel_height, kernel_width, stride_h, stride_w,
                                pad_h, pad_w, out_width, row_start, row_stop, workspace[tid], 0)
                gemm_blocked(False, filters, ncols, depth, 1, &weight[0, 0], depth,
                             &workspace[tid, 0, 0], ld_work, beta, &out[image, 0, row_start, 0],
                             plane, piece_rows, piece_inner, piece_columns)


def backward(const floating[:, :, :, ::1] dout, const floating[:, :, :, ::1] x,
             const floating[:, :, :, ::1] weight, floating[:, :, :, ::1] dx,
             floating[:, :, ::1] dweight_per_thread, floating[:, :, ::1] workspace,
             Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_h, Py_ssize_t pad_w,
             Py_ssize_t band_rows, bint direct, const int[::1] gemm_pieces, int num_threads):
    """dx (N, C, H, W) and per-thread partial sums of dweight, (num_threads, F, C*KH*KW).

    dx is overwritten; dweight_per_thread must be zero on entry and is summed by the caller.
    Each thread owns whole images, so the col2im scatter into dx never races.
    """
    cdef Py_ssize_t batch = x.shape[0], channels = x.shape[1]
    cdef Py_ssize_t height = x.shape[2], width = x.shape[3]
    cdef Py_ssize_t filters = weight.shape[0]
    cdef Py_ssize_t kernel_height = weight.shape[2], kernel_width = weight.shape[3]
    cdef Py_ssize_t out_height = dout.shape[2], out_width = dout.shape[3]
    cdef Py_ssize_t bands = (out_height + band_rows - 1) // band_rows
    cdef Py_ssize_t image, band, row_start, row_stop
    cdef int patch = channels * kernel_height * kernel_width
    cdef int plane = out_height * out_width
    cdef int ld_work = workspace.shape[2]
    cdef int ncols, tid = 0
    cdef int piece_rows = gemm_pieces[0], piece_inner = gemm_pieces[1]
    cdef int piece_columns = gemm_pieces[2]
    with nogil, parallel(num_threads=num_threads):
        tid = threadid()
        for image in prange(batch, schedule="static"):
            if direct:
                # dW += dout[n] (F, HW) @ x[n]^T (HW, C);  dx[n] = W^T (C, F) @ dout[n] (F, HW)
                gemm(False, True, filters, channels, plane, 1, &dout[image, 0, 0, 0], plane,
                     &x[image, 0, 0, 0], plane, 1, &dweight_per_thread[tid, 0, 0], channels)
                gemm_blocked(True, channels, plane, filters, 1, &weight[0, 0, 0, 0], channels,
                             &dout[image, 0, 0, 0], plane, 0, &dx[image, 0, 0, 0], plane,
                             piece_rows, piece_inner, piece_columns)
                continue
            zero_image(dx, image)
            for band in range(bands):
                row_start = band * band_rows
                row_stop = min(row_start + band_rows, out_height)
                ncols = (row_stop - row_start) * out_width
                im2col_rows(x, image, kernel_height, kernel_width, stride_h, stride_w,
                            pad_h, pad_w, out_width, row_start, row_stop, workspace[tid], 0)
                # dW += dout band (F, ncols) @ cols^T (ncols, patch)
                gemm(False, True, filters, patch, ncols, 1, &dout[image, 0, row_start, 0], plane,
                     &workspace[tid, 0, 0], ld_work, 1, &dweight_per_thread[tid, 0, 0], patch)
                # dcols (patch, ncols) = W^T (patch, F) @ dout band (F, ncols), reusing the buffer
                gemm_blocked(True, patch, ncols, filters, 1, &weight[0, 0, 0, 0], patch,
                             &dout[image, 0, row_start, 0], plane, 0, &workspace[tid, 0, 0],
                             ld_work, piece_rows, piece_inner, piece_columns)
                col2im_rows(workspace[tid], 0, kernel_height, kernel_width, stride_h, stride_w,
                            pad_h, pad_w, out_width, row_start, row_stop, dx, image)
