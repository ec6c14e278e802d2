"""Winograd convolution for 3x3 kernels: F(2x2, 3x3) at stride 1, and its stride-2
counterpart (further down).

Each 2x2 block of outputs ("tile") comes from a 4x4 block of padded input. With the
transforms of Lavin & Gray (2015),  Y = A^T [ (G g G^T) * (B^T d B) ] A,  the 36
multiplications per tile and channel of a direct 3x3 convolution become 16, done as 16
GEMMs over (filters x channels) @ (channels x tiles): 2.25x fewer multiplications.

    B^T = [1  0 -1  0]      G = [ 1    0    0 ]      A^T = [1  1  1  0]
          [0  1  1  0]          [1/2  1/2  1/2]            [0  1 -1 -1]
          [0 -1  1  0]          [1/2 -1/2  1/2]
          [0  1  0 -1]          [ 0    0    1 ]

The transforms add and subtract, G halves: rounding error stays within a few times that of
the direct method (the tests state the tolerance).
"""
from cython cimport floating
from cython.parallel cimport parallel, prange, threadid
from libc.string cimport memset

from ._gemm cimport gemm_blocked


# The transforms work through small local arrays, CHUNK tiles of a tile row (or kernels of a
# filter) at a time.
cdef enum:
    CHUNK = 32


# Stride 2. A 2x2 block of outputs of a 3x3 stride-2 convolution reads a 5x5 block of padded
# input (rows and columns 4t .. 4t + 4 for tile t). Along each dimension, the even taps
# (g0, g2) meet the even inputs (d0, d2, d4) as a stride-1 two-tap filter, which F(2, 2) does
# in 3 multiplications, and the odd tap g1 meets d1 and d3 directly (2 more): 5 instead of 6,
#     y0 = (d0 - d2) g0 + d2 (g0 + g2) + d1 g1,   y1 = d2 (g0 + g2) + (d4 - d2) g2 + d3 g1,
# so 25 instead of 36 per tile and channel in 2-D (1.44x fewer), with the same three
# transforms as above: V = S^T d S, U = R g R^T, y = Q^T (U * V) Q for
#
#     S^T = [1  0 -1  0  0]      R = [1  0  0]      Q^T = [1  1  0  1  0]
#           [0  0  1  0  0]          [1  0  1]            [0  1  1  0  1]
#           [0  0 -1  0  1]          [0  0  1]
#           [0  1  0  0  0]          [0  1  0]
#           [0  0  0  1  0]          [0  1  0]
#
# Every coefficient is 0 or +-1: the rounding error is that of the direct method's order.


cdef inline void store_weight_planes(floating[:, :, ::1] transformed, Py_ssize_t f,
                                     Py_ssize_t first, Py_ssize_t n, Py_ssize_t elements,
                                     const floating* u) noexcept nogil:
    """transformed[e, f, first + k] = u[e * CHUNK + k] for e < elements, k < n: each plane
    written in one contiguous run (the planes lie a multiple of 4 KiB apart when F*C is a
    power of two, so one kernel's values written plane by plane would miss in cache)."""
    cdef Py_ssize_t e, k
    cdef floating* plane
    for e in range(elements):
        plane = &transformed[e, f, first]
        for k in range(n):
            plane[k] = u[e * CHUNK + k]


cdef inline void transform_kernel(const floating* g, Py_ssize_t k, floating* u) noexcept nogil:
    """u[e * CHUNK + k] = (G g G^T)[e // 4, e % 4] for the 3x3 kernel g (row-major)."""
    cdef Py_ssize_t i, j
    cdef floating t[4][3]   # G g
    for j in range(3):
        t[0][j] = g[j]
        t[1][j] = (g[j] + g[3 + j] + g[6 + j]) * 0.5
        t[2][j] = (g[j] - g[3 + j] + g[6 + j]) * 0.5
        t[3][j] = g[6 + j]
    for i in range(4):  # (G g) G^T
        u[(4 * i + 0) * CHUNK + k] = t[i][0]
        u[(4 * i + 1) * CHUNK + k] = (t[i][0] + t[i][1] + t[i][2]) * 0.5
        u[(4 * i + 2) * CHUNK + k] = (t[i][0] - t[i][1] + t[i][2]) * 0.5
        u[(4 * i + 3) * CHUNK + k] = t[i][2]


cdef inline void transform_kernel_s2(const floating* g, Py_ssize_t k, floating* u) noexcept nogil:
    """u[e * CHUNK + k] = (R g R^T)[e // 5, e % 5] for the 3x3 kernel g (row-major)."""
    cdef Py_ssize_t i, j
    cdef floating t[5][3]   # R g
    for j in range(3):
        t[0][j] = g[j]
        t[1][j] = g[j] + g[6 + j]
        t[2][j] = g[6 + j]
        t[3][j] = g[3 + j]
        t[4][j] = g[3 + j]
    for i in range(5):  # (R g) R^T
        u[(5 * i + 0) * CHUNK + k] = t[i][0]
        u[(5 * i + 1) * CHUNK + k] = t[i][0] + t[i][2]
        u[(5 * i + 2) * CHUNK + k] = t[i][2]
        u[(5 * i + 3) * CHUNK + k] = t[i][1]
        u[(5 * i + 4) * CHUNK + k] = t[i][1]


def transform_weights(const floating[:, :, :, ::1] weight, bint stride_two,
                      floating[:, :, ::1] transformed):
    """transformed (16, F, C) = G g G^T for every 3x3 kernel g = weight[f, c] (F, C, 3, 3),
    or (25, F, C) = R g R^T with `stride_two`."""
    cdef Py_ssize_t filters = weight.shape[0], channels = weight.shape[1], f, first, k, n
    cdef floating u[25 * CHUNK]
    for f in range(filters):
        for first in range(0, channels, 32):  # CHUNK
            n = min(<Py_ssize_t> CHUNK, channels - first)
            if stride_two:
                for k in range(n):
                    transform_kernel_s2(&weight[f, first + k, 0, 0], k, u)
            else:
                for k in range(n):
                    transform_kernel(&weight[f, first + k, 0, 0], k, u)
            store_weight_planes(transformed, f, first, n, 25 if stride_two else 16, u)


# Tiles are transformed a chunk of one tile row at a time, through small local arrays: every
# loop then runs along the row (contiguous, or every 2nd or 4th element of a local array),
# which the compiler vectorises, and no store can alias a load.


cdef inline void chunk_rows(const floating[:, :, :, ::1] x, Py_ssize_t image, Py_ssize_t c,
                            Py_ssize_t row0, Py_ssize_t rows, Py_ssize_t first, Py_ssize_t span,
                            const floating* zeros, const floating** d,
                            Py_ssize_t* lo, Py_ssize_t* hi) noexcept nogil:
    """For a chunk of `span` columns from input column `first`, rows row0 .. row0 + rows - 1
    of x[image, c]: columns q in [lo, hi) read input column first + q, the rest lie in the
    padding; d[i] points at row row0 + i from column first + lo, or at `zeros` (at least span
    elements) for a row in the padding."""
    cdef Py_ssize_t height = x.shape[2], width = x.shape[3], i, r
    lo[0] = min(max(-first, 0), span)
    hi[0] = max(min(width - first, span), lo[0])
    for i in range(rows):
        r = row0 + i
        d[i] = &x[image, c, r, first + lo[0]] if 0 <= r < height and hi[0] > lo[0] else zeros


cdef inline void store_tiles(floating[:, :, :, ::1] out, Py_ssize_t image, Py_ssize_t f,
                             Py_ssize_t row0, Py_ssize_t col0, Py_ssize_t n,
                             const floating* y) noexcept nogil:
    """Write n 2x2 tiles, y[k * CHUNK + q] = output (k // 2, k % 2) of tile q, to
    out[image, f] from (row0, col0), dropping the rows/columns past the output edge."""
    cdef Py_ssize_t out_height = out.shape[2], out_width = out.shape[3], q, k
    cdef Py_ssize_t pairs = min(n, (out_width - col0) // 2)  # tiles with both columns
    cdef floating* row
    for k in range(0, 4, 2):
        if row0 + k // 2 >= out_height:
            break
        row = &out[image, f, row0 + k // 2, col0]
        for q in range(pairs):
            row[2 * q] = y[k * CHUNK + q]
            row[2 * q + 1] = y[(k + 1) * CHUNK + q]
        if pairs < n:
            row[2 * pairs] = y[k * CHUNK + pairs]


cdef enum:
    SPAN = 4 * CHUNK + 1  # input columns of a chunk of tiles, at most (stride 2)


cdef inline void combine_input_rows(const floating** d, Py_ssize_t count, bint stride_two,
                                    floating* s) noexcept nogil:
    """Rows of s (SPAN apart) = B^T d (4 rows), or S^T d (5 rows) with `stride_two`, for
    columns 0 .. count - 1 of the input rows d."""
    cdef Py_ssize_t q
    if stride_two:
        for q in range(count):
            s[q] = d[0][q] - d[2][q]
            s[SPAN + q] = d[2][q]
            s[2 * SPAN + q] = d[4][q] - d[2][q]
            s[3 * SPAN + q] = d[1][q]
            s[4 * SPAN + q] = d[3][q]
    else:
        for q in range(count):
            s[q] = d[0][q] - d[2][q]
            s[SPAN + q] = d[1][q] + d[2][q]
            s[2 * SPAN + q] = d[2][q] - d[1][q]
            s[3 * SPAN + q] = d[1][q] - d[3][q]


cdef inline void combine_input_columns(const floating* row, Py_ssize_t n, bint stride_two,
                                       floating** planes) noexcept nogil:
    """planes[j][k] = (row B)[j] for tile k of the chunk (row[2k : 2k + 4]), or (row S)[j]
    with `stride_two` (row[4k : 4k + 5])."""
    cdef Py_ssize_t q
    if stride_two:
        for q in range(n):
            planes[0][q] = row[4 * q] - row[4 * q + 2]
        for q in range(n):
            planes[1][q] = row[4 * q + 2]
        for q in range(n):
            planes[2][q] = row[4 * q + 4] - row[4 * q + 2]
        for q in range(n):
            planes[3][q] = row[4 * q + 1]
        for q in range(n):
            planes[4][q] = row[4 * q + 3]
    else:
        for q in range(n):
            planes[0][q] = row[2 * q] - row[2 * q + 2]
        for q in range(n):
            planes[1][q] = row[2 * q + 1] + row[2 * q + 2]
        for q in range(n):
            planes[2][q] = row[2 * q + 2] - row[2 * q + 1]
        for q in range(n):
            planes[3][q] = row[2 * q + 1] - row[2 * q + 3]


cdef inline void transform_input_tiles(
        const floating[:, :, :, ::1] x, Py_ssize_t pad_h, Py_ssize_t pad_w,
        Py_ssize_t band_start, Py_ssize_t band_stop, Py_ssize_t tiles_h, Py_ssize_t tiles_w,
        bint stride_two, floating[:, :, :] v) noexcept nogil:
    """v[(i, j), c, t] = (B^T d B)[i, j] for the 4x4 input block d of each tile t in the band,
    or (S^T d S)[i, j] for its 5x5 block with `stride_two`.

    A band is the rows of tiles [band_start, band_stop) counted across the whole batch.
    B^T d (S^T d) is taken along whole rows (s below), then B (S) along the columns.
    """
    cdef Py_ssize_t channels = x.shape[1]
    cdef Py_ssize_t size = 5 if stride_two else 4  # rows and columns of an input block
    cdef Py_ssize_t step = 4 if stride_two else 2  # input rows and columns from tile to tile
    cdef Py_ssize_t c, band_row, image, tile_row, t, i, j, q, chunk, n, span, first, lo, hi
    cdef floating zeros[SPAN]      # stands in for an input row in the padding
    cdef const floating* d[5]      # the chunk's input rows (chunk_rows)
    cdef floating s[5 * SPAN]      # B^T d or S^T d, rows SPAN apart (zero in the padding)
    cdef floating* planes[5]
    memset(zeros, 0, sizeof(zeros))
    for c in range(channels):
        t = 0
        for band_row in range(band_start, band_stop):  # rows of tiles, across images
            image = band_row // tiles_h
            tile_row = band_row - image * tiles_h
            for chunk in range(0, tiles_w, 32):  # CHUNK (range needs a literal step)
                n = min(<Py_ssize_t> CHUNK, tiles_w - chunk)
                span = step * n + size - step
                first = step * chunk - pad_w
                chunk_rows(x, image, c, step * tile_row - pad_h, size, first, span, zeros, d,
                           &lo, &hi)
                for i in range(size):
                    memset(&s[i * SPAN], 0, lo * sizeof(floating))
                    memset(&s[i * SPAN + hi], 0, (span - hi) * sizeof(floating))
                combine_input_rows(d, hi - lo, stride_two, &s[lo])
                for i in range(size):
                    for j in range(size):
                        planes[j] = &v[size * i + j, c, t]
                    combine_input_columns(&s[i * SPAN], n, stride_two, planes)
                t = t + n


cdef inline void combine_output(const floating** p, Py_ssize_t n, floating offset,
                                bint stride_two, floating* y) noexcept nogil:
    """y[k * CHUNK + q] = output (k // 2, k % 2) of tile q (+ offset): A^T m A from the 16
    planes p of m, or Q^T m Q from its 25 with `stride_two` (rows of A^T m, then A)."""
    cdef Py_ssize_t q
    cdef floating s0, s1, s2, s3, s4
    if stride_two:
        for q in range(n):
            s0 = p[0][q] + p[5][q] + p[15][q]
            s1 = p[1][q] + p[6][q] + p[16][q]
            s2 = p[2][q] + p[7][q] + p[17][q]
            s3 = p[3][q] + p[8][q] + p[18][q]
            s4 = p[4][q] + p[9][q] + p[19][q]
            y[q] = s0 + s1 + s3 + offset
            y[CHUNK + q] = s1 + s2 + s4 + offset
        for q in range(n):
            s0 = p[5][q] + p[10][q] + p[20][q]
            s1 = p[6][q] + p[11][q] + p[21][q]
            s2 = p[7][q] + p[12][q] + p[22][q]
            s3 = p[8][q] + p[13][q] + p[23][q]
            s4 = p[9][q] + p[14][q] + p[24][q]
            y[2 * CHUNK + q] = s0 + s1 + s3 + offset
            y[3 * CHUNK + q] = s1 + s2 + s4 + offset
    else:
        for q in range(n):
            s0 = p[0][q] + p[4][q] + p[8][q]
            s1 = p[1][q] + p[5][q] + p[9][q]
            s2 = p[2][q] + p[6][q] + p[10][q]
            s3 = p[3][q] + p[7][q] + p[11][q]
            y[q] = s0 + s1 + s2 + offset
            y[CHUNK + q] = s1 - s2 - s3 + offset
        for q in range(n):
            s0 = p[4][q] - p[8][q] - p[12][q]
            s1 = p[5][q] - p[9][q] - p[13][q]
            s2 = p[6][q] - p[10][q] - p[14][q]
            s3 = p[7][q] - p[11][q] - p[15][q]
            y[2 * CHUNK + q] = s0 + s1 + s2 + offset
            y[3 * CHUNK + q] = s1 - s2 - s3 + offset


cdef inline void transform_output_tiles(
        const floating[:, :, :] m, const floating[::1] bias, bint has_bias,
        Py_ssize_t band_start, Py_ssize_t band_stop, Py_ssize_t tiles_h, Py_ssize_t tiles_w,
        bint stride_two, floating[:, :, :, ::1] out) noexcept nogil:
    """out[image, f, 2x2 tile] = A^T m A, or Q^T m Q with `stride_two` (+ bias), dropping the
    rows/columns past the output edge."""
    cdef Py_ssize_t filters = out.shape[1], elements = 25 if stride_two else 16
    cdef Py_ssize_t f, band_row, image, tile_row, t, k, chunk, n
    cdef const floating* p[25]          # the planes of m at the chunk's first tile
    cdef floating y[4 * CHUNK]          # y00, y01, y10, y11 of each tile (store_tiles)
    cdef floating offset
    for f in range(filters):
        offset = bias[f] if has_bias else 0
        t = 0
        for band_row in range(band_start, band_stop):  # rows of tiles, across images
            image = band_row // tiles_h
            tile_row = band_row - image * tiles_h
            for chunk in range(0, tiles_w, 32):  # CHUNK
                n = min(<Py_ssize_t> CHUNK, tiles_w - chunk)
                for k in range(elements):
                    p[k] = &m[k, f, t]
                combine_output(p, n, offset, stride_two, y)
                store_tiles(out, image, f, 2 * tile_row, 2 * chunk, n, y)
                t = t + n


def forward(const floating[:, :, :, ::1] x, const floating[:, :, ::1] transformed_weight,
            const floating[::1] bias, floating[:, :, :, ::1] out,
            floating[:, :, :, :] input_work, floating[:, :, :, :] product_work,
            Py_ssize_t pad_h, Py_ssize_t pad_w, bint stride_two, Py_ssize_t band_tile_rows,
            const int[::1] gemm_pieces, int num_threads):
    """out (N, F, OH, OW) = 3x3 conv of x (N, C, H, W) [+ bias], stride 1 by F(2x2, 3x3),
    or stride 2 (`stride_two`) by the 25-element transforms above.

    transformed_weight: (E, F, C) from transform_weights, E = 16, or 25 with `stride_two`.
    Work buffers per thread: input_work (threads, E, C, band tiles), product_work
    (threads, E, F, band tiles), band tiles = band_tile_rows * ceil(OW / 2); bands of tile
    rows run on across images. Their rows must be contiguous; the planes may be spaced
    freely (the caller skews them apart to avoid cache-set conflicts).
    gemm_pieces: (rows, inner, columns), the most of each per GEMM call (0: no split).
    """
    cdef Py_ssize_t batch = x.shape[0], channels = x.shape[1]
    cdef Py_ssize_t filters = out.shape[1]
    cdef Py_ssize_t tiles_h = (out.shape[2] + 1) // 2, tiles_w = (out.shape[3] + 1) // 2
    cdef Py_ssize_t task, band_start, band_stop, element
    cdef Py_ssize_t elements = 25 if stride_two else 16
    cdef Py_ssize_t rows = batch * tiles_h
    cdef Py_ssize_t bands = (rows + band_tile_rows - 1) // band_tile_rows
    cdef int ntiles, tid = 0
    cdef int piece_rows = gemm_pieces[0], piece_inner = gemm_pieces[1]
    cdef int piece_columns = gemm_pieces[2]
    cdef int ld_input = input_work.strides[2] // sizeof(floating)
    cdef int ld_product = product_work.strides[2] // sizeof(floating)
    cdef bint has_bias = bias is not None
    with nogil, parallel(num_threads=num_threads):
        tid = threadid()
        for task in prange(bands, schedule="static"):
            band_start = task * band_tile_rows
            band_stop = min(band_start + band_tile_rows, rows)
            ntiles = (band_stop - band_start) * tiles_w
            transform_input_tiles(x, pad_h, pad_w, band_start, band_stop, tiles_h, tiles_w,
                                  stride_two, input_work[tid])
            for element in range(elements):
                gemm_blocked(False, filters, ntiles, channels, 1,
                             &transformed_weight[element, 0, 0], channels,
                             &input_work[tid, element, 0, 0], ld_input,
                             0, &product_work[tid, element, 0, 0], ld_product,
                             piece_rows, piece_inner, piece_columns)
            transform_output_tiles(product_work[tid], bias, has_bias, band_start, band_stop,
                                   tiles_h, tiles_w, stride_two, out)


cdef inline void transform_dout_tiles(
        const floating[:, :, :, ::1] dout, Py_ssize_t band_start, Py_ssize_t band_stop,
        Py_ssize_t tiles_h, Py_ssize_t tiles_w, floating[:, :, :] u,
        floating* dbias) noexcept nogil:
    """u[(i, j), t, f] = (A dy A^T)[i, j] for the 2x2 block dy of dout[:, f] under each tile t
    of the band (zero past the output edge), with A = (A^T)^T the forward's output transform:
    a row [p, q] of dy becomes [p, p + q, p - q, -q], and so do the columns.
    Filters are innermost, so that each of the 16 planes is written in contiguous runs.
    Unless dbias is NULL, dbias[f] += the sum of the band's dout[:, f] (each block's sum)."""
    cdef Py_ssize_t filters = dout.shape[1], out_height = dout.shape[2], out_width = dout.shape[3]
    cdef Py_ssize_t f, band_row, image, tile_row, tile_col, t = 0, i, row0, col0
    cdef floating y00, y01, y10, y11
    cdef floating s[4][2]   # A dy
    cdef bint has_right, has_below
    for band_row in range(band_start, band_stop):  # rows of tiles, across images
        image = band_row // tiles_h
        tile_row = band_row - image * tiles_h
        row0 = 2 * tile_row
        has_below = row0 + 1 < out_height
        for tile_col in range(tiles_w):
            col0 = 2 * tile_col
            has_right = col0 + 1 < out_width
            for f in range(filters):
                y00 = dout[image, f, row0, col0]
                y01 = dout[image, f, row0, col0 + 1] if has_right else 0
                y10 = y11 = 0
                if has_below:
                    y10 = dout[image, f, row0 + 1, col0]
                    if has_right:
                        y11 = dout[image, f, row0 + 1, col0 + 1]
                s[0][0] = y00
                s[0][1] = y01
                s[1][0] = y00 + y10
                s[1][1] = y01 + y11
                s[2][0] = y00 - y10
                s[2][1] = y01 - y11
                s[3][0] = -y10
                s[3][1] = -y11
                if dbias != NULL:
                    dbias[f] += s[1][0] + s[1][1]
                for i in range(4):
                    u[4 * i + 0, t, f] = s[i][0]
                    u[4 * i + 1, t, f] = s[i][0] + s[i][1]
                    u[4 * i + 2, t, f] = s[i][0] - s[i][1]
                    u[4 * i + 3, t, f] = -s[i][1]
            t = t + 1


def weight_gradient(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] dout,
                    floating[:, :, :, ::1] products_per_thread, floating[:, ::1] dbias_per_thread,
                    floating[:, :, :, :] input_work, floating[:, :, :, :] dout_work,
                    Py_ssize_t pad_h, Py_ssize_t pad_w, Py_ssize_t band_tile_rows,
                    const int[::1] gemm_pieces, int num_threads):
    """Per-thread sums over the tiles, products_per_thread[thread, (i, j), c, f] =
    sum over tiles of (B^T d B)[i, j] * (A dy A^T)[i, j]: the transformed gradient of the
    weights (transposed) of a 3x3 stride-1 conv of x (N, C, H, W) giving dout (N, F, OH, OW).
    dW[f, c] = G^T (summed over threads) G, done by the caller.

    products_per_thread: (threads, 16, C, F), and dbias_per_thread (threads, F) (per-thread
    sums of dout over all but its filter axis; None: not wanted), zero on entry. Work buffers per thread:
    input_work (threads, 16, C, band tiles) as for forward(), dout_work (threads, 16,
    band tiles, F), rows contiguous. Each product is then (C, tiles) @ (tiles, F), which
    BLAS runs unpacked in gemm_pieces (rows, inner, columns; 0: not split).
    """
    cdef Py_ssize_t batch = x.shape[0], channels = x.shape[1]
    cdef Py_ssize_t filters = dout.shape[1]
    cdef Py_ssize_t tiles_h = (dout.shape[2] + 1) // 2, tiles_w = (dout.shape[3] + 1) // 2
    cdef Py_ssize_t task, band_start, band_stop, element
    cdef Py_ssize_t rows = batch * tiles_h
    cdef Py_ssize_t bands = (rows + band_tile_rows - 1) // band_tile_rows
    cdef int ntiles, tid = 0
    cdef int ld_input = input_work.strides[2] // sizeof(floating)
    cdef int ld_dout = dout_work.strides[2] // sizeof(floating)
    cdef int piece_rows = gemm_pieces[0], piece_inner = gemm_pieces[1]
    cdef int piece_columns = gemm_pieces[2]
    cdef bint has_bias = dbias_per_thread is not None
    cdef floating* dbias
    with nogil, parallel(num_threads=num_threads):
        tid = threadid()
        dbias = &dbias_per_thread[tid, 0] if has_bias else NULL
        for task in prange(bands, schedule="static"):
            band_start = task * band_tile_rows
            band_stop = min(band_start + band_tile_rows, rows)
            ntiles = (band_stop - band_start) * tiles_w
            transform_input_tiles(x, pad_h, pad_w, band_start, band_stop, tiles_h, tiles_w,
                                  False, input_work[tid])
            transform_dout_tiles(dout, band_start, band_stop, tiles_h, tiles_w, dout_work[tid],
                                 dbias)
            for element in range(16):
                # (C, tiles) @ (tiles, F), added onto this thread's (C, F) sums
                gemm_blocked(False, channels, filters, ntiles, 1,
                             &input_work[tid, element, 0, 0], ld_input,
                             &dout_work[tid, element, 0, 0], ld_dout,
                             1, &products_per_thread[tid, element, 0, 0], filters,
                             piece_rows, piece_inner, piece_columns)
