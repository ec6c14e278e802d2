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


cdef inline void transpose_into(floating* dst, const floating* src, Py_ssize_t rows,
                                Py_ssize_t columns, Py_ssize_t ld_src) noexcept nogil:
    """dst (columns, rows), contiguous = src^T, src (rows, columns) with row stride ld_src.
    Blocks of 16 x 16 keep the cache lines of both sides in use."""
    cdef Py_ssize_t row_block, column_block, i, j
    for column_block in range(0, columns, 16):
        for row_block in range(0, rows, 16):
            for j in range(column_block, min(column_block + 16, columns)):
                for i in range(row_block, min(row_block + 16, rows)):
                    dst[j * rows + i] = src[i * ld_src + j]


cdef inline void add_row_sums(floating* sums, const floating* src, Py_ssize_t rows,
                              Py_ssize_t columns, Py_ssize_t ld_src) noexcept nogil:
    """sums[i] += src[i, 0] + ... + src[i, columns - 1], src row stride ld_src. Sixteen
    running sums per row, in a fixed order, so the compiler can vectorise the loop."""
    cdef floating lanes[16]
    cdef floating total
    cdef Py_ssize_t i, j, lane, whole = columns - columns % 16
    cdef const floating* row
    for i in range(rows):
        row = src + i * ld_src
        for lane in range(16):
            lanes[lane] = 0
        for j in range(0, whole, 16):
            for lane in range(16):
                lanes[lane] += row[j + lane]
        total = 0
        for lane in range(16):
            total += lanes[lane]
        for j in range(whole, columns):
            total += row[j]
        sums[i] += total


cdef inline void add_weight_gradient(floating* dweight, floating* dbias, const floating* cols,
                                     int ld_cols, int patch, const floating* dout, int ld_dout,
                                     int filters, int ncols, floating* dout_band,
                                     bint transposed, const int[::1] pieces) noexcept nogil:
    """dweight += dout (F, ncols) @ cols^T (ncols, patch), and dbias (F,) += row sums of
    dout when dbias is not NULL.

    BLAS packs both operands of this product (their inner dimension is contiguous in both)
    unless it is tiny. With `transposed`, dout is first copied transposed into dout_band
    (ncols, F) and dweight is kept as its transpose (patch, F): then the product is
    cols @ dout_band, which gemm_blocked keeps on the BLAS's small-matrix path.
    """
    if transposed:
        transpose_into(dout_band, dout, filters, ncols, ld_dout)
        gemm_blocked(False, patch, filters, ncols, 1, cols, ld_cols, dout_band, filters, 1,
                     dweight, filters, pieces[0], pieces[1], pieces[2])
    else:
        gemm(False, True, filters, patch, ncols, 1, dout, ld_dout, cols, ld_cols, 1,
             dweight, patch)
    if dbias != NULL:
        add_row_sums(dbias, dout, filters, ncols, ld_dout)


def backward(const floating[:, :, :, ::1] dout, const floating[:, :, :, ::1] x,
             const floating[:, :, :, ::1] weight, floating[:, :, :, ::1] dx,
             floating[:, :, ::1] dweight_per_thread, floating[:, ::1] dbias_per_thread,
             floating[:, :, ::1] workspace, floating[:, :, ::1] dout_band,
             Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_h, Py_ssize_t pad_w,
             Py_ssize_t band_rows, bint direct, bint transposed,
             const int[::1] gemm_pieces, const int[::1] dweight_pieces, int num_threads):
    """dx (N, C, H, W) and per-thread partial sums of dweight and dbias.

    dx is overwritten. dweight_per_thread, (num_threads, F, C*KH*KW), or with `transposed`
    (num_threads, C*KH*KW, F), and dbias_per_thread (num_threads, F), or None for no bias,
    must be zero on entry; the caller sums them. Each thread owns whole images, so the
    col2im scatter into dx never races.
    dout_band: (num_threads, band_rows*OW, F) with `transposed` (see add_weight_gradient,
    whose pieces are dweight_pieces), else unused. gemm_pieces: those of the dcols product.
    """
    cdef Py_ssize_t batch = x.shape[0], channels = x.shape[1]
    cdef Py_ssize_t height = x.shape[2], width = x.shape[3]
    cdef Py_ssize_t filters = weight.shape[0]
    cdef Py_ssize_t kernel_height = weight.shape[2], kernel_width = weight.shape[3]
    cdef Py_ssize_t out_height = dout.shape[2], out_width = dout.shape[3]
    cdef Py_ssize_t bands = (out_height + band_rows - 1) // band_rows
    cdef Py_ssize_t image, band_index, row_start, row_stop
    cdef int patch = channels * kernel_height * kernel_width
    cdef int plane = out_height * out_width
    cdef int ld_work = workspace.shape[2]
    cdef int ncols, tid = 0
    cdef int piece_rows = gemm_pieces[0], piece_inner = gemm_pieces[1]
    cdef int piece_columns = gemm_pieces[2]
    cdef bint has_bias = dbias_per_thread is not None
    cdef floating* dbias
    cdef floating* band
    with nogil, parallel(num_threads=num_threads):
        tid = threadid()
        dbias = &dbias_per_thread[tid, 0] if has_bias else NULL
        band = &dout_band[tid, 0, 0] if transposed else NULL
        for image in prange(batch, schedule="static"):
            if direct:
                # dW += dout[n] (F, HW) @ x[n]^T (HW, C);  dx[n] = W^T (C, F) @ dout[n] (F, HW)
                add_weight_gradient(&dweight_per_thread[tid, 0, 0], dbias, &x[image, 0, 0, 0],
                                    plane, channels, &dout[image, 0, 0, 0], plane, filters,
                                    plane, band, transposed, dweight_pieces)
                gemm_blocked(True, channels, plane, filters, 1, &weight[0, 0, 0, 0], channels,
                             &dout[image, 0, 0, 0], plane, 0, &dx[image, 0, 0, 0], plane,
                             piece_rows, piece_inner, piece_columns)
                continue
            zero_image(dx, image)
            for band_index in range(bands):
                row_start = band_index * band_rows
                row_stop = min(row_start + band_rows, out_height)
                ncols = (row_stop - row_start) * out_width
                im2col_rows(x, image, kernel_height, kernel_width, stride_h, stride_w,
                            pad_h, pad_w, out_width, row_start, row_stop, workspace[tid], 0)
                add_weight_gradient(&dweight_per_thread[tid, 0, 0], dbias, &workspace[tid, 0, 0],
                                    ld_work, patch, &dout[image, 0, row_start, 0], plane,
                                    filters, ncols, band, transposed, dweight_pieces)
                # dcols (patch, ncols) = W^T (patch, F) @ dout band (F, ncols), reusing the buffer
                gemm_blocked(True, patch, ncols, filters, 1, &weight[0, 0, 0, 0], patch,
                             &dout[image, 0, row_start, 0], plane, 0, &workspace[tid, 0, 0],
                             ld_work, piece_rows, piece_inner, piece_columns)
                col2im_rows(workspace[tid], 0, kernel_height, kernel_width, stride_h, stride_w,
                            pad_h, pad_w, out_width, row_start, row_stop, dx, image)
