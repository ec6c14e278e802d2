"""Compiled convolution forward/backward, 1-D to 3-D: im2col over bands of output rows + BLAS
GEMM (one per group), parallel over tasks.

The Python front (fastconv/algorithms/im2col_gemm.py) allocates every output and workspace,
chooses the band height so one thread's im2col buffer stays within the workspace budget, and
limits BLAS to one thread when num_threads > 1 (the OpenMP threads here each run their own
single-threaded GEMM). Every convolution arrives as a 3-D one over 5-D views (_tiles.pxd).
"""
from cython cimport floating
from cython.parallel cimport parallel, prange, threadid

from ._gemm cimport gemm, gemm_blocked
from ._tiles cimport (Window, col2im_rows, im2col_rows, im2col_staged, unpack_window,
                      zero_image)


cdef inline void fill_bias(floating[:, :, ::1] out, const floating[::1] bias, Py_ssize_t image,
                           Py_ssize_t start, Py_ssize_t count) noexcept nogil:
    """Set out[image, f, start:start + count] = bias[f]; the GEMM then adds onto it (beta = 1)."""
    cdef Py_ssize_t f, j
    cdef floating value
    for f in range(out.shape[1]):
        value = bias[f]
        for j in range(start, start + count):
            out[image, f, j] = value


def forward(const floating[:, :, :, :, ::1] x, const floating[:, ::1] weight,
            const Py_ssize_t[::1] window, Py_ssize_t groups,
            const floating[::1] bias, floating[:, :, ::1] out,
            floating[:, :, ::1] workspace, floating[:, ::1] stage,
            Py_ssize_t band_rows, bint direct, const int[::1] gemm_pieces, int num_threads):
    """out (N, F, OD*OH*OW) = conv(x (N, C, D, H, W), weight) [+ bias (F,)].

    weight: (F, C/groups * KD*KH*KW), or with groups == 1 (F, C*KD*KH*KW + 1) with the bias as
    its last column: the im2col buffer then gets a row of ones and the GEMM adds the bias
    (`bias` is then None). window: the 16 values of _tiles.Window.
    workspace: (num_threads, weight rows of every group (+ 1), band_rows*OW), unused when
    `direct` (a 1x1x1, stride-1, unpadded convolution without groups: a plain GEMM on x).
    stage: (num_threads, stage size) for im2col_staged(), or (num_threads, 0) for im2col_rows().
    gemm_pieces: (rows, inner, columns), the most of each per GEMM call (0: no split).
    """
    cdef Window w = unpack_window(window)
    cdef Py_ssize_t batch = x.shape[0], channels = x.shape[1]
    cdef Py_ssize_t filters = weight.shape[0]
    cdef Py_ssize_t bands = (w.out_h + band_rows - 1) // band_rows
    cdef Py_ssize_t slices = w.out_d * bands
    cdef Py_ssize_t task, image, od, row_start, row_stop, start, column, g
    cdef int group_filters = filters // groups
    cdef int patch = channels * w.kernel_d * w.kernel_h * w.kernel_w  # all groups' rows
    cdef int group_patch = patch // groups
    cdef int depth = weight.shape[1]  # group_patch, or patch + 1 with the bias folded in
    cdef int plane = out.shape[2]
    cdef int in_plane = x.shape[2] * x.shape[3] * x.shape[4]
    cdef int ld_work = workspace.shape[2]
    cdef int ncols, tid = 0
    cdef int piece_rows = gemm_pieces[0], piece_inner = gemm_pieces[1]
    cdef int piece_columns = gemm_pieces[2]
    cdef bint has_bias = bias is not None
    cdef floating beta = 1 if has_bias else 0
    with nogil, parallel(num_threads=num_threads):
        tid = threadid()
        if not direct and depth > group_patch:
            for column in range(ld_work):
                workspace[tid, patch, column] = 1
        # dynamic: a thread that starts late (woken from sleep) takes fewer bands; every
        # band is computed the same way whichever thread runs it, so results do not change
        for task in prange(batch * slices, schedule="dynamic"):
            image = task // slices
            od = (task % slices) // bands
            row_start = (task % bands) * band_rows
            row_stop = min(row_start + band_rows, w.out_h)
            ncols = (row_stop - row_start) * w.out_w
            start = (od * w.out_h + row_start) * w.out_w
            if has_bias:
                fill_bias(out, bias, image, start, ncols)
            if direct:
                gemm_blocked(False, filters, ncols, channels, 1, &weight[0, 0], channels,
                             &x[image, 0, 0, 0, 0] + start, in_plane,
                             beta, &out[image, 0, start], plane,
                             piece_rows, piece_inner, piece_columns)
                continue
            if stage.shape[1] > 0:
                im2col_staged(x, image, &w, od, row_start, row_stop, workspace[tid], 0,
                              stage[tid])
            else:
                im2col_rows(x, image, &w, od, row_start, row_stop, workspace[tid], 0)
            for g in range(groups):
                gemm_blocked(False, group_filters, ncols, depth, 1, &weight[g * group_filters, 0],
                             depth, &workspace[tid, g * group_patch, 0], ld_work, beta,
                             &out[image, g * group_filters, start], plane, piece_rows,
                             piece_inner, piece_columns)


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


def backward(const floating[:, :, ::1] dout, const floating[:, :, :, :, ::1] x,
             const floating[:, ::1] weight, floating[:, :, :, :, ::1] dx,
             floating[:, :, ::1] dweight_per_thread, floating[:, ::1] dbias_per_thread,
             floating[:, :, ::1] workspace, floating[:, :, ::1] dout_band,
             const Py_ssize_t[::1] window, Py_ssize_t groups,
             Py_ssize_t band_rows, bint direct, bint transposed,
             const int[::1] gemm_pieces, const int[::1] dweight_pieces, int num_threads):
    """dx (N, C, D, H, W) and per-thread partial sums of dweight and dbias, for dout
    (N, F, OD*OH*OW) and weight (F, C/groups * KD*KH*KW).

    x None: no weight gradient (dweight_per_thread and dbias_per_thread unused); dx None: no
    input gradient. dx is overwritten. dweight_per_thread, (num_threads, F, C/groups*K), or
    with `transposed` (groups == 1 only) (num_threads, C*K, F), and dbias_per_thread
    (num_threads, F), or None for no bias, must be zero on entry; the caller sums them. Each
    thread owns whole images, so the col2im scatter into dx never races.
    dout_band: (num_threads, band_rows*OW, F) with `transposed` (see add_weight_gradient,
    whose pieces are dweight_pieces), else unused. gemm_pieces: those of the dcols product.
    """
    cdef Window w = unpack_window(window)
    cdef bint need_dw = x is not None, need_dx = dx is not None
    cdef Py_ssize_t batch = dout.shape[0]
    cdef Py_ssize_t channels = dx.shape[1] if need_dx else x.shape[1]
    cdef Py_ssize_t filters = weight.shape[0]
    cdef Py_ssize_t bands = (w.out_h + band_rows - 1) // band_rows
    cdef Py_ssize_t image, od, band_index, row_start, row_stop, start, g
    cdef int group_filters = filters // groups
    cdef int patch = channels * w.kernel_d * w.kernel_h * w.kernel_w
    cdef int group_patch = patch // groups
    cdef int plane = dout.shape[2]
    cdef int ld_work = workspace.shape[2]
    cdef int ncols, tid = 0
    cdef int piece_rows = gemm_pieces[0], piece_inner = gemm_pieces[1]
    cdef int piece_columns = gemm_pieces[2]
    cdef bint has_bias = need_dw and dbias_per_thread is not None
    cdef floating* dbias
    cdef floating* band
    with nogil, parallel(num_threads=num_threads):
        tid = threadid()
        dbias = &dbias_per_thread[tid, 0] if has_bias else NULL
        band = &dout_band[tid, 0, 0] if transposed else NULL
        for image in prange(batch, schedule="static"):
            if direct:
                # dW += dout[n] (F, P) @ x[n]^T (P, C);  dx[n] = W^T (C, F) @ dout[n] (F, P)
                if need_dw:
                    add_weight_gradient(&dweight_per_thread[tid, 0, 0], dbias,
                                        &x[image, 0, 0, 0, 0], plane, channels,
                                        &dout[image, 0, 0], plane, filters, plane, band,
                                        transposed, dweight_pieces)
                if need_dx:
                    gemm_blocked(True, channels, plane, filters, 1, &weight[0, 0], channels,
                                 &dout[image, 0, 0], plane, 0, &dx[image, 0, 0, 0, 0], plane,
                                 piece_rows, piece_inner, piece_columns)
                continue
            if need_dx:
                zero_image(dx, image)
            for od in range(w.out_d):
                for band_index in range(bands):
                    row_start = band_index * band_rows
                    row_stop = min(row_start + band_rows, w.out_h)
                    ncols = (row_stop - row_start) * w.out_w
                    start = (od * w.out_h + row_start) * w.out_w
                    if need_dw:
                        im2col_rows(x, image, &w, od, row_start, row_stop, workspace[tid], 0)
                        for g in range(groups):
                            add_weight_gradient(
                                &dweight_per_thread[tid, g * group_filters, 0],
                                dbias + g * group_filters if has_bias else NULL,
                                &workspace[tid, g * group_patch, 0], ld_work, group_patch,
                                &dout[image, g * group_filters, start], plane, group_filters,
                                ncols, band, transposed, dweight_pieces)
                    if need_dx:
                        # dcols (patch, ncols) = W^T (patch, F) @ dout band (F, ncols) per
                        # group, reusing the buffer
                        for g in range(groups):
                            gemm_blocked(True, group_patch, ncols, group_filters, 1,
                                         &weight[g * group_filters, 0], group_patch,
                                         &dout[image, g * group_filters, start], plane, 0,
                                         &workspace[tid, g * group_patch, 0], ld_work,
                                         piece_rows, piece_inner, piece_columns)
                        col2im_rows(workspace[tid], 0, &w, od, row_start, row_stop, dx, image)
