"""Compiled convolution forward/backward, 1-D to 3-D: im2col over bands of output rows + BLAS
GEMM (one per group), parallel over tasks.

The Python front (fastconv/algorithms/im2col_gemm.py) allocates every output and workspace,
chooses the band height so one thread's im2col buffer stays within the workspace budget, and
limits BLAS to one thread when num_threads > 1 (the OpenMP threads here each run their own
single-threaded GEMM). Every convolution arrives as a 3-D one over 5-D views (_tiles.pxd).
"""
from cython cimport floating
from cython.parallel cimport parallel, prange, threadid
from libc.string cimport memcpy, memset

from ._epilogue cimport epilogue_filter
from ._gemm cimport gemm, gemm_blocked
from ._tiles cimport (Window, col2im_rows, im2col_rows, im2col_staged, unpack_window,
                      zero_image)


cdef inline void fill_bias(floating[:, :, ::1] out, const floating[::1] bias, Py_ssize_t image,
                           Py_ssize_t start, Py_ssize_t count, Py_ssize_t first,
                           Py_ssize_t stop) noexcept nogil:
    """Set out[image, f, start:start + count] = bias[f] for filters [first, stop); the GEMM
    then adds onto it (beta = 1)."""
    cdef Py_ssize_t f, j
    cdef floating value
    for f in range(first, stop):
        value = bias[f]
        for j in range(start, start + count):
            out[image, f, j] = value


cdef inline void epilogue(floating[:, :, ::1] out, Py_ssize_t image, Py_ssize_t start,
                          Py_ssize_t count, Py_ssize_t first, Py_ssize_t stop,
                          const double[::1] mean, const double[::1] scale,
                          const double[::1] shift, bint relu) noexcept nogil:
    """_epilogue.epilogue_filter on out[image, f, start:start + count] for filters
    [first, stop) (the batch norm's map when `mean` is not None, then a ReLU when `relu`),
    while the block is still in cache after its GEMM."""
    cdef Py_ssize_t f
    for f in range(first, stop):
        epilogue_filter(&out[image, f, start], count, f, mean, scale, shift, relu)


def apply_epilogue(floating[:, :, ::1] out, const double[::1] mean, const double[::1] scale,
                   const double[::1] shift, bint relu, int num_threads):
    """epilogue() over all of out (N, F, P) in place, for the algorithms whose kernels do not
    run it themselves: one task per (image, filter) row."""
    cdef Py_ssize_t filters = out.shape[1], row
    for row in prange(out.shape[0] * filters, nogil=True, schedule="static",
                      num_threads=num_threads):
        epilogue(out, row // filters, 0, out.shape[2], row % filters, row % filters + 1,
                 mean, scale, shift, relu)


def forward(const floating[:, :, :, :, ::1] x, const floating[:, ::1] weight,
            const Py_ssize_t[::1] window, Py_ssize_t groups,
            const floating[::1] bias, floating[:, :, ::1] out,
            floating[:, :, ::1] workspace, floating[:, ::1] stage,
            Py_ssize_t band_rows, Py_ssize_t filter_blocks, bint direct,
            const int[::1] gemm_pieces, const double[::1] mean, const double[::1] scale,
            const double[::1] shift, bint relu, Py_ssize_t images_per_task,
            floating[:, :, ::1] products not None, int num_threads):
    """out (N, F, OD*OH*OW) = conv(x (N, C, D, H, W), weight) [+ bias (F,)], then the
    epilogue() (an evaluation-mode batch norm's mean, scale and shift (F,) or None, and a
    ReLU when `relu`) on each block after its GEMM.

    weight: (F, C/groups * KD*KH*KW), or with groups == 1 (F, C*KD*KH*KW + 1) with the bias as
    its last column: the im2col buffer then gets a row of ones and the GEMM adds the bias
    (`bias` is then None). window: the 16 values of _tiles.Window.
    A task is one band of output rows of one image (and depth slice) and one of
    `filter_blocks` blocks of each group's filters: with fewer images and bands than threads,
    the filters are shared out instead (each block's task makes its own copy of the band's
    columns, a small price beside its GEMM).
    workspace: (num_threads, weight rows of every group (+ 1), band_rows*OW), unused when
    `direct` (a 1x1x1, stride-1, unpadded convolution without groups: a plain GEMM on x).
    stage: (num_threads, stage size) for im2col_staged(), or (num_threads, 0) for im2col_rows().
    gemm_pieces: (rows, inner, columns), the most of each per GEMM call (0: no split).
    images_per_task > 1 (not `direct`; whole images per band, one depth slice, one filter
    block): a task is that many consecutive images, their columns side by side in the
    workspace (which then holds images_per_task * OH*OW columns), so that an image of few
    output pixels still makes a GEMM of many columns. Its product goes to products[tid]
    (num_threads, F/groups, images_per_task * OH*OW) and is copied out image by image, the bias
    added (unless folded into the weights) and the epilogue run on the way; with
    images_per_task 1, products may be empty (0, 0, 0).
    """
    if images_per_task > 1:
        if (direct or window[12] != 1 or workspace.shape[0] < num_threads
                or products.shape[0] < num_threads
                or products.shape[1] < weight.shape[0] // groups
                or products.shape[2] < images_per_task * out.shape[2]
                or workspace.shape[2] < images_per_task * out.shape[2]):
            raise ValueError("images_per_task > 1 needs a non-direct, one-slice convolution "
                             "and workspace and products of images_per_task * OH*OW columns")
        forward_images(x, weight, window, groups, bias, out, workspace, stage, images_per_task,
                       products, gemm_pieces, mean, scale, shift, relu, num_threads)
        return
    cdef Window w = unpack_window(window)
    cdef Py_ssize_t batch = x.shape[0], channels = x.shape[1]
    cdef Py_ssize_t filters = weight.shape[0]
    cdef Py_ssize_t bands = (w.out_h + band_rows - 1) // band_rows
    cdef Py_ssize_t slices = w.out_d * bands
    cdef Py_ssize_t task, image, slice_, block, od, row_start, row_stop, start, column, g
    cdef Py_ssize_t group_filters = filters // groups
    cdef Py_ssize_t block_filters = (group_filters + filter_blocks - 1) // filter_blocks
    cdef Py_ssize_t first, stop
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
    cdef bint has_epilogue = relu or mean is not None
    with nogil, parallel(num_threads=num_threads):
        tid = threadid()
        if not direct and depth > group_patch:
            for column in range(ld_work):
                workspace[tid, patch, column] = 1
        # dynamic: a thread that starts late (woken from sleep, or slowed by a busy core)
        # takes fewer tasks; every task is computed the same way whichever thread runs it,
        # so results do not change
        for task in prange(batch * slices * filter_blocks, schedule="dynamic"):
            block = task % filter_blocks
            slice_ = task // filter_blocks
            image = slice_ // slices
            od = (slice_ % slices) // bands
            row_start = (slice_ % bands) * band_rows
            row_stop = min(row_start + band_rows, w.out_h)
            ncols = (row_stop - row_start) * w.out_w
            start = (od * w.out_h + row_start) * w.out_w
            first = block * block_filters
            stop = min(first + block_filters, group_filters)
            if first >= stop:
                continue
            if direct:
                if has_bias:
                    fill_bias(out, bias, image, start, ncols, first, stop)
                gemm_blocked(False, stop - first, ncols, channels, 1, &weight[first, 0], channels,
                             &x[image, 0, 0, 0, 0] + start, in_plane,
                             beta, &out[image, first, start], plane,
                             piece_rows, piece_inner, piece_columns)
                if has_epilogue:
                    epilogue(out, image, start, ncols, first, stop, mean, scale, shift, relu)
                continue
            if stage.shape[1] > 0:
                im2col_staged(x, image, &w, od, row_start, row_stop, workspace[tid], 0,
                              stage[tid])
            else:
                im2col_rows(x, image, &w, od, row_start, row_stop, workspace[tid], 0)
            for g in range(groups):
                if has_bias:
                    fill_bias(out, bias, image, start, ncols, g * group_filters + first,
                              g * group_filters + stop)
                gemm_blocked(False, stop - first, ncols, depth, 1,
                             &weight[g * group_filters + first, 0], depth,
                             &workspace[tid, g * group_patch, 0], ld_work, beta,
                             &out[image, g * group_filters + first, start], plane, piece_rows,
                             piece_inner, piece_columns)
                if has_epilogue:
                    epilogue(out, image, start, ncols, g * group_filters + first,
                             g * group_filters + stop, mean, scale, shift, relu)


cdef void forward_images(const floating[:, :, :, :, ::1] x, const floating[:, ::1] weight,
                         const Py_ssize_t[::1] window, Py_ssize_t groups,
                         const floating[::1] bias, floating[:, :, ::1] out,
                         floating[:, :, ::1] workspace, floating[:, ::1] stage,
                         Py_ssize_t images_per_task, floating[:, :, ::1] products,
                         const int[::1] gemm_pieces, const double[::1] mean,
                         const double[::1] scale, const double[::1] shift, bint relu,
                         int num_threads) noexcept:
    """forward() with images_per_task > 1 (see there)."""
    cdef Window w = unpack_window(window)
    cdef Py_ssize_t batch = x.shape[0], channels = x.shape[1]
    cdef Py_ssize_t filters = weight.shape[0]
    cdef Py_ssize_t group_filters = filters // groups
    cdef Py_ssize_t tasks = (batch + images_per_task - 1) // images_per_task
    cdef Py_ssize_t task, first_image, count, i, f, j, g, column
    cdef int patch = channels * w.kernel_d * w.kernel_h * w.kernel_w
    cdef int group_patch = patch // groups
    cdef int depth = weight.shape[1]
    cdef int plane = out.shape[2]
    cdef int ld_work = workspace.shape[2], ld_products = products.shape[2]
    cdef int tid = 0
    cdef bint has_bias = bias is not None
    cdef bint has_epilogue = relu or mean is not None
    cdef floating value
    cdef floating* source
    cdef floating* target
    with nogil, parallel(num_threads=num_threads):
        tid = threadid()
        if depth > group_patch:
            for column in range(ld_work):
                workspace[tid, patch, column] = 1
        for task in prange(tasks, schedule="dynamic"):
            first_image = task * images_per_task
            count = min(images_per_task, batch - first_image)
            for i in range(count):
                if stage.shape[1] > 0:
                    im2col_staged(x, first_image + i, &w, 0, 0, w.out_h, workspace[tid],
                                  i * plane, stage[tid])
                else:
                    im2col_rows(x, first_image + i, &w, 0, 0, w.out_h, workspace[tid], i * plane)
            for g in range(groups):
                gemm_blocked(False, group_filters, count * plane, depth, 1,
                             &weight[g * group_filters, 0], depth,
                             &workspace[tid, g * group_patch, 0], ld_work, 0,
                             &products[tid, 0, 0], ld_products, gemm_pieces[0], gemm_pieces[1],
                             gemm_pieces[2])
                for i in range(count):
                    for f in range(group_filters):
                        source = &products[tid, f, i * plane]
                        target = &out[first_image + i, g * group_filters + f, 0]
                        if has_bias:
                            value = bias[g * group_filters + f]
                            for j in range(plane):
                                target[j] = source[j] + value
                        else:
                            memcpy(target, source, plane * sizeof(floating))
                    if has_epilogue:
                        epilogue(out, first_image + i, 0, plane, g * group_filters,
                                 (g + 1) * group_filters, mean, scale, shift, relu)


# dst (columns, rows), contiguous = src^T, src (rows, columns) with row stride ld_src, in
# blocks of 16 x 16 so the cache lines of both sides stay in use. Within a block, 4 x 4 (float)
# or 2 x 2 (double) tiles go through SSE2 registers (every x86-64 CPU has it, so the portable
# build keeps it): four row loads, the shuffles, four column stores, where the scalar loop
# stalled on one load and one scattered store per element. The block is walked a source row
# (of tiles) at a time: walking a source column read 16 rows ld_src apart per step, and at
# ld_src = 1024 floats (a 32x32 output plane) those lines, 4 KiB apart, all fall in one set of
# an 8-way L1 cache and evicted each other on every column. Scalar transposition was 15% of
# cnn-cifar's weight gradient in perf (docs/performance.md, "The weight gradient's product,
# transposed").
cdef extern from *:
    """
    /* name(dst, src, rows, columns, ld_src): 16 x 16 blocks of tile x tile tiles, each
       moved by the statements after `tile`, then the block's scalar edges */
    #define FASTCONV_TRANSPOSE(name, type, tile, ...)                                   \
    static inline void name(type* dst, const type* src, Py_ssize_t rows,               \
                            Py_ssize_t columns, Py_ssize_t ld_src) {                   \
        for (Py_ssize_t cb = 0; cb < columns; cb += 16) {                               \
            Py_ssize_t cstop = cb + 16 < columns ? cb + 16 : columns;                  \
            for (Py_ssize_t rb = 0; rb < rows; rb += 16) {                              \
                Py_ssize_t rstop = rb + 16 < rows ? rb + 16 : rows, i = rb, j;          \
                for (; i + tile <= rstop; i += tile) {                                  \
                    for (j = cb; j + tile <= cstop; j += tile) { __VA_ARGS__ }         \
                    for (; j < cstop; j++)                                             \
                        for (Py_ssize_t k = 0; k < tile; k++)                          \
                            dst[j * rows + i + k] = src[(i + k) * ld_src + j];         \
                }                                                                      \
                for (; i < rstop; i++)                                                 \
                    for (j = cb; j < cstop; j++)                                       \
                        dst[j * rows + i] = src[i * ld_src + j];                       \
            }                                                                          \
        }                                                                              \
    }
    #if defined(__SSE2__)
    #include <emmintrin.h>
    FASTCONV_TRANSPOSE(fastconv_transpose_float, float, 4,
        __m128 r0 = _mm_loadu_ps(src + i * ld_src + j);
        __m128 r1 = _mm_loadu_ps(src + (i + 1) * ld_src + j);
        __m128 r2 = _mm_loadu_ps(src + (i + 2) * ld_src + j);
        __m128 r3 = _mm_loadu_ps(src + (i + 3) * ld_src + j);
        _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
        _mm_storeu_ps(dst + j * rows + i, r0);
        _mm_storeu_ps(dst + (j + 1) * rows + i, r1);
        _mm_storeu_ps(dst + (j + 2) * rows + i, r2);
        _mm_storeu_ps(dst + (j + 3) * rows + i, r3);)
    FASTCONV_TRANSPOSE(fastconv_transpose_double, double, 2,
        __m128d r0 = _mm_loadu_pd(src + i * ld_src + j);
        __m128d r1 = _mm_loadu_pd(src + (i + 1) * ld_src + j);
        _mm_storeu_pd(dst + j * rows + i, _mm_unpacklo_pd(r0, r1));
        _mm_storeu_pd(dst + (j + 1) * rows + i, _mm_unpackhi_pd(r0, r1));)
    #else
    FASTCONV_TRANSPOSE(fastconv_transpose_float, float, 1, dst[j * rows + i] = src[i * ld_src + j];)
    FASTCONV_TRANSPOSE(fastconv_transpose_double, double, 1, dst[j * rows + i] = src[i * ld_src + j];)
    #endif
    """
    void fastconv_transpose_float(float* dst, const float* src, Py_ssize_t rows,
                                  Py_ssize_t columns, Py_ssize_t ld_src) noexcept nogil
    void fastconv_transpose_double(double* dst, const double* src, Py_ssize_t rows,
                                   Py_ssize_t columns, Py_ssize_t ld_src) noexcept nogil


cdef inline void transpose_into(floating* dst, const floating* src, Py_ssize_t rows,
                                Py_ssize_t columns, Py_ssize_t ld_src) noexcept nogil:
    """dst (columns, rows), contiguous = src^T, src (rows, columns) with row stride ld_src
    (see fastconv_transpose_float above)."""
    if floating is float:
        fastconv_transpose_float(dst, src, rows, columns, ld_src)
    else:
        fastconv_transpose_double(dst, src, rows, columns, ld_src)


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


cdef inline void backward_band(
        const floating[:, :, ::1] dout, const floating[:, :, :, :, ::1] x,
        const floating[:, ::1] weight, floating[:, :, :, :, ::1] dx, floating* dweight,
        floating* dbias, floating[:, ::1] work, floating* dout_band, const Window* w,
        Py_ssize_t groups, Py_ssize_t image, Py_ssize_t od, Py_ssize_t row_start,
        Py_ssize_t row_stop, bint need_dw, bint need_dx, bint transposed,
        const int[::1] gemm_pieces, const int[::1] dweight_pieces) noexcept nogil:
    """One band's share of the backward: its columns (im2col) and their dW product, then
    dcols = W^T @ dout scattered back into dx[image] (col2im)."""
    cdef Py_ssize_t g
    cdef int filters = weight.shape[0], group_filters = filters // groups
    cdef int group_patch = weight.shape[1]
    cdef int plane = dout.shape[2], ld_work = work.shape[1]
    cdef int ncols = (row_stop - row_start) * w.out_w
    cdef Py_ssize_t start = (od * w.out_h + row_start) * w.out_w
    if need_dw:
        im2col_rows(x, image, w, od, row_start, row_stop, work, 0)
        for g in range(groups):
            add_weight_gradient(dweight + g * group_filters * group_patch,
                                dbias + g * group_filters if dbias != NULL else NULL,
                                &work[g * group_patch, 0], ld_work, group_patch,
                                &dout[image, g * group_filters, start], plane, group_filters,
                                ncols, dout_band, transposed, dweight_pieces)
    if need_dx:
        # dcols (patch, ncols) = W^T (patch, F) @ dout band (F, ncols) per group, reusing
        # the buffer
        for g in range(groups):
            gemm_blocked(True, group_patch, ncols, group_filters, 1, &weight[g * group_filters, 0],
                         group_patch, &dout[image, g * group_filters, start], plane, 0,
                         &work[g * group_patch, 0], ld_work, gemm_pieces[0], gemm_pieces[1],
                         gemm_pieces[2])
        col2im_rows(work, 0, w, od, row_start, row_stop, dx, image)


def backward(const floating[:, :, ::1] dout, const floating[:, :, :, :, ::1] x,
             const floating[:, ::1] weight, floating[:, :, :, :, ::1] dx,
             floating[:, :, :, :, :, ::1] dx_per_thread,
             floating[:, :, ::1] dweight_per_thread, floating[:, ::1] dbias_per_thread,
             floating[:, :, ::1] workspace, floating[:, :, ::1] dout_band,
             const Py_ssize_t[::1] window, Py_ssize_t groups,
             Py_ssize_t band_rows, bint direct, bint transposed,
             const int[::1] gemm_pieces, const int[::1] dweight_pieces, int num_threads):
    """dx (N, C, D, H, W) and per-thread partial sums of dweight and dbias, for dout
    (N, F, OD*OH*OW) and weight (F, C/groups * KD*KH*KW).

    x None: no weight gradient (dweight_per_thread and dbias_per_thread unused); dx None: no
    input gradient. dweight_per_thread, (num_threads, F, C/groups*K), or with `transposed`
    (groups == 1 only) (num_threads, C*K, F), and dbias_per_thread (num_threads, F), or None
    for no bias, are zeroed here, each by its thread; the caller sums them.

    Two ways to share the work, both with a fixed (static) task order, so that a thread count
    always gives the same sums: dx_per_thread None, each thread owns whole images and writes
    dx directly (dx is overwritten); with dx_per_thread (num_threads, N, C, D, H, W), for fewer
    images than threads, tasks are bands and each thread adds its bands' dx into its own copy,
    which it zeroes first and the caller sums (for `direct`, whose bands never overlap, dx
    itself is written).
    dout_band: (num_threads, band_rows*OW, F) with `transposed` (see add_weight_gradient,
    whose pieces are dweight_pieces), else unused. gemm_pieces: those of the dcols product.
    """
    cdef Window w = unpack_window(window)
    cdef bint need_dw = x is not None, need_dx = dx is not None
    cdef bint by_bands = dx_per_thread is not None or (direct and dout.shape[0] < num_threads)
    cdef Py_ssize_t batch = dout.shape[0]
    cdef Py_ssize_t channels = dx.shape[1] if need_dx else x.shape[1]
    cdef Py_ssize_t filters = weight.shape[0]
    cdef Py_ssize_t bands = (w.out_h + band_rows - 1) // band_rows
    cdef Py_ssize_t slices = w.out_d * bands
    cdef Py_ssize_t image, od, band_index, row_start, row_stop, start, task, count
    cdef int plane = dout.shape[2]
    cdef int ncols, tid = 0
    cdef bint has_bias = need_dw and dbias_per_thread is not None
    cdef floating* dweight
    cdef floating* dbias
    cdef floating* band
    cdef floating* own
    with nogil, parallel(num_threads=num_threads):
        tid = threadid()
        dweight = &dweight_per_thread[tid, 0, 0] if need_dw else NULL
        dbias = &dbias_per_thread[tid, 0] if has_bias else NULL
        # each thread zeroes its own sums: scratch memory, never fresh pages that both
        # threads would fault in at once (on a VM that took a batch-1 backward from 1.2 to
        # 40 ms, docs/performance.md "Per-thread sums")
        if need_dw:
            memset(dweight, 0, dweight_per_thread.shape[1] * dweight_per_thread.shape[2]
                   * sizeof(floating))
        if has_bias:
            memset(dbias, 0, dbias_per_thread.shape[1] * sizeof(floating))
        band = &dout_band[tid, 0, 0] if transposed else NULL
        if dx_per_thread is not None:
            count = dx_per_thread.shape[1] * dx_per_thread.shape[2] * dx_per_thread.shape[3] \
                * dx_per_thread.shape[4] * dx_per_thread.shape[5]
            if count > 0:
                own = &dx_per_thread[tid, 0, 0, 0, 0, 0]
                memset(own, 0, count * sizeof(floating))
        if direct:
            # dW += dout (F, cols) @ x^T (cols, C);  dx = W^T (C, F) @ dout (F, cols), by image
            # or, for fewer images than threads, by band of columns
            for task in prange(batch * (slices if by_bands else 1), schedule="static"):
                image = task // slices if by_bands else task
                start, ncols = 0, plane
                if by_bands:
                    od = (task % slices) // bands
                    row_start = (task % bands) * band_rows
                    row_stop = min(row_start + band_rows, w.out_h)
                    start = (od * w.out_h + row_start) * w.out_w
                    ncols = (row_stop - row_start) * w.out_w
                if need_dw:
                    add_weight_gradient(dweight, dbias, &x[image, 0, 0, 0, 0] + start, plane,
                                        channels, &dout[image, 0, start], plane, filters, ncols,
                                        band, transposed, dweight_pieces)
                if need_dx:
                    gemm_blocked(True, channels, ncols, filters, 1, &weight[0, 0], channels,
                                 &dout[image, 0, start], plane, 0,
                                 &dx[image, 0, 0, 0, 0] + start, plane,
                                 gemm_pieces[0], gemm_pieces[1], gemm_pieces[2])
        elif dx_per_thread is not None:
            for task in prange(batch * slices, schedule="static"):
                image = task // slices
                od = (task % slices) // bands
                row_start = (task % bands) * band_rows
                backward_band(dout, x, weight, dx_per_thread[tid], dweight, dbias,
                              workspace[tid], band, &w, groups, image, od, row_start,
                              min(row_start + band_rows, w.out_h), need_dw, need_dx,
                              transposed, gemm_pieces, dweight_pieces)
        else:
            for image in prange(batch, schedule="static"):
                if need_dx:
                    zero_image(dx, image)
                for od in range(w.out_d):
                    for band_index in range(bands):
                        row_start = band_index * band_rows
                        backward_band(dout, x, weight, dx, dweight, dbias, workspace[tid], band,
                                      &w, groups, image, od, row_start,
                                      min(row_start + band_rows, w.out_h), need_dw, need_dx,
                                      transposed, gemm_pieces, dweight_pieces)


cdef int check_side_by_side(str kernel, const Window* w, Py_ssize_t plane,
                            Py_ssize_t images_per_task, Py_ssize_t batch, Py_ssize_t held,
                            Py_ssize_t channels, Py_ssize_t filters, int num_threads,
                            const Py_ssize_t* workspace, const Py_ssize_t* gathered) except -1:
    """ValueError unless the convolution has one output slice of `plane` pixels, the
    caller's array holds `held` >= batch images, and the workspace (threads, C*K, columns)
    and gathered (threads, F, columns) shapes give every thread images_per_task * plane
    columns: the buffer checks of weight_gradient_images and input_gradient_images."""
    cdef Py_ssize_t columns = images_per_task * plane
    if (images_per_task < 1 or w.out_d != 1 or w.out_h * w.out_w != plane or held < batch
            or workspace[0] < num_threads
            or workspace[1] < channels * w.kernel_d * w.kernel_h * w.kernel_w
            or workspace[2] < columns or gathered[0] < num_threads or gathered[1] < filters
            or gathered[2] < columns):
        raise ValueError(f"{kernel} needs a one-slice convolution and workspace and gathered "
                         "buffers of images_per_task * OH*OW columns for every thread")
    return 0


cdef inline void gather_images(const floating[:, :, ::1] dout, Py_ssize_t first_image,
                               Py_ssize_t count, floating[:, ::1] gathered) noexcept nogil:
    """gathered[f, i*P:(i+1)*P] = dout[first_image + i, f, :] for the `count` images from
    first_image (P = dout.shape[2]): their dout rows side by side."""
    cdef Py_ssize_t i, f
    cdef Py_ssize_t plane = dout.shape[2]
    for i in range(count):
        for f in range(dout.shape[1]):
            memcpy(&gathered[f, i * plane], &dout[first_image + i, f, 0],
                   plane * sizeof(floating))


def weight_gradient_images(const floating[:, :, ::1] dout, const floating[:, :, :, :, ::1] x,
                           floating[:, :, ::1] dweight_per_thread,
                           floating[:, ::1] dbias_per_thread, floating[:, :, ::1] workspace,
                           floating[:, :, ::1] gathered, floating[:, :, ::1] dout_band,
                           const Py_ssize_t[::1] window, Py_ssize_t groups,
                           Py_ssize_t images_per_task, bint transposed,
                           const int[::1] dweight_pieces, int num_threads):
    """Per-thread partial sums of dweight and dbias, as backward() gives them, for a one-slice
    convolution whose images have few output pixels (dout (N, F, OH*OW), x (N, C, 1, H, W)).

    A task is `images_per_task` consecutive images: their im2col columns side by side in
    workspace[tid] (weight rows of every group, images_per_task * OH*OW) and their dout rows
    gathered beside each other in gathered[tid] (F, images_per_task * OH*OW), so that each dW
    product's inner dimension is that many columns instead of one image's few. One image of a
    4x4 output made products of 16 columns, each reading and writing all of dW.
    dweight_per_thread (num_threads, F, C/groups*K), or with `transposed` (num_threads, C*K, F),
    and dbias_per_thread (num_threads, F) or None, are zeroed here, each by its thread.
    dout_band: (num_threads, images_per_task * OH*OW, F) with `transposed`, else unused.
    Static task order: a thread count always gives the same sums.
    """
    cdef Window w = unpack_window(window)
    cdef Py_ssize_t batch = dout.shape[0], filters = dout.shape[1]
    cdef int plane = dout.shape[2]
    check_side_by_side("weight_gradient_images", &w, plane, images_per_task, batch,
                       x.shape[0], x.shape[1], filters, num_threads, workspace.shape,
                       gathered.shape)
    if (dweight_per_thread.shape[0] < num_threads
            or (transposed and (dout_band.shape[0] < num_threads
                                or dout_band.shape[1] < images_per_task * plane
                                or dout_band.shape[2] < filters))):
        raise ValueError("weight_gradient_images needs dweight sums (and with `transposed`, "
                         "a dout_band of images_per_task * OH*OW rows) for every thread")
    cdef Py_ssize_t tasks = (batch + images_per_task - 1) // images_per_task
    cdef Py_ssize_t task, first_image, count, i, g
    cdef int group_filters = filters // groups
    cdef int group_patch = dweight_per_thread.shape[2] if not transposed \
        else dweight_per_thread.shape[1] // groups
    cdef int ld_work = workspace.shape[2], ld_gathered = gathered.shape[2]
    cdef int ncols, tid = 0
    cdef bint has_bias = dbias_per_thread is not None
    cdef floating* dweight
    cdef floating* dbias
    cdef floating* band
    with nogil, parallel(num_threads=num_threads):
        tid = threadid()
        dweight = &dweight_per_thread[tid, 0, 0]
        dbias = &dbias_per_thread[tid, 0] if has_bias else NULL
        memset(dweight, 0, dweight_per_thread.shape[1] * dweight_per_thread.shape[2]
               * sizeof(floating))
        if has_bias:
            memset(dbias, 0, dbias_per_thread.shape[1] * sizeof(floating))
        band = &dout_band[tid, 0, 0] if transposed else NULL
        for task in prange(tasks, schedule="static"):
            first_image = task * images_per_task
            count = min(images_per_task, batch - first_image)
            ncols = count * plane
            for i in range(count):
                im2col_rows(x, first_image + i, &w, 0, 0, w.out_h, workspace[tid], i * plane)
            gather_images(dout, first_image, count, gathered[tid])
            for g in range(groups):
                add_weight_gradient(dweight + g * group_filters * group_patch,
                                    dbias + g * group_filters if has_bias else NULL,
                                    &workspace[tid, g * group_patch, 0], ld_work, group_patch,
                                    &gathered[tid, g * group_filters, 0], ld_gathered,
                                    group_filters, ncols, band, transposed, dweight_pieces)



def input_gradient_images(const floating[:, :, ::1] dout, const floating[:, ::1] weight,
                          floating[:, :, :, :, ::1] dx, floating[:, :, ::1] workspace,
                          floating[:, :, ::1] gathered, const Py_ssize_t[::1] window,
                          Py_ssize_t groups, Py_ssize_t images_per_task,
                          const int[::1] gemm_pieces, int num_threads):
    """dx (N, C, 1, H, W) for dout (N, F, OH*OW) and weight (F, C/groups * KH*KW), as
    backward() gives it, for a one-slice convolution whose images have few output pixels.

    A task is `images_per_task` consecutive images: their dout rows gathered side by side in
    gathered[tid] (F, images_per_task * OH*OW), dcols = W^T @ that in one product per group
    into workspace[tid] (weight rows of every group, images_per_task * OH*OW), so that W is
    read once for all of them instead of once per image; then each image's columns are
    scattered into its own dx (col2im), which the task zeroes first.
    """
    cdef Window w = unpack_window(window)
    cdef Py_ssize_t batch = dout.shape[0], filters = dout.shape[1]
    cdef int plane = dout.shape[2]
    check_side_by_side("input_gradient_images", &w, plane, images_per_task, batch,
                       dx.shape[0], dx.shape[1], filters, num_threads, workspace.shape,
                       gathered.shape)
    cdef Py_ssize_t tasks = (batch + images_per_task - 1) // images_per_task
    cdef Py_ssize_t task, first_image, count, i, g
    cdef int group_filters = filters // groups
    cdef int group_patch = weight.shape[1]
    cdef int ld_work = workspace.shape[2], ld_gathered = gathered.shape[2]
    cdef int tid = 0
    with nogil, parallel(num_threads=num_threads):
        tid = threadid()
        for task in prange(tasks, schedule="static"):
            first_image = task * images_per_task
            count = min(images_per_task, batch - first_image)
            gather_images(dout, first_image, count, gathered[tid])
            for g in range(groups):
                gemm_blocked(True, group_patch, count * plane, group_filters, 1,
                             &weight[g * group_filters, 0], group_patch,
                             &gathered[tid, g * group_filters, 0], ld_gathered, 0,
                             &workspace[tid, g * group_patch, 0], ld_work, gemm_pieces[0],
                             gemm_pieces[1], gemm_pieces[2])
            for i in range(count):
                zero_image(dx, first_image + i)
                col2im_rows(workspace[tid], i * plane, &w, 0, 0, w.out_h, dx, first_image + i)


def time_gemm(const floating[::1] a, const floating[::1] b, floating[::1] c, int m, int n, int k,
              bint trans_a, bint trans_b, const int[::1] pieces, int repeats):
    """Run C (m, n) = op(A) @ op(B) `repeats` times without the GIL, on one thread, as the
    kernels call BLAS (gemm_blocked with these pieces for untransposed B, plain gemm else):
    the planner's calibration times GEMMs of the sizes its algorithms make (tools/calibrate.py)."""
    cdef int r
    cdef int lda = m if trans_a else k
    cdef int ldb = k if trans_b else n
    with nogil:
        for r in range(repeats):
            if trans_b:
                gemm(trans_a, True, m, n, k, 1, &a[0], lda, &b[0], ldb, 0, &c[0], n)
            else:
                gemm_blocked(trans_a, m, n, k, 1, &a[0], lda, &b[0], ldb, 0, &c[0], n,
                             pieces[0], pieces[1], pieces[2])
