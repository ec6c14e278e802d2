"""Winograd F(2x2, 3x3) convolution for 3x3, stride-1 kernels.

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
from libc.string cimport memcpy, memset

from ._gemm cimport gemm, gemm_blocked


def transform_weights(const floating[:, :, :, ::1] weight, floating[:, :, ::1] transformed):
    """transformed (16, F, C) = G g G^T for every 3x3 kernel g = weight[f, c] (F, C, 3, 3)."""
    cdef Py_ssize_t filters = weight.shape[0], channels = weight.shape[1], f, c, i, j
    cdef floating g[3][3]
    cdef floating t[4][3]   # G g
    for f in range(filters):
        for c in range(channels):
            for i in range(3):
                for j in range(3):
                    g[i][j] = weight[f, c, i, j]
            for j in range(3):
                t[0][j] = g[0][j]
                t[1][j] = (g[0][j] + g[1][j] + g[2][j]) * 0.5
                t[2][j] = (g[0][j] - g[1][j] + g[2][j]) * 0.5
                t[3][j] = g[2][j]
            for i in range(4):  # (G g) G^T
                transformed[4 * i + 0, f, c] = t[i][0]
                transformed[4 * i + 1, f, c] = (t[i][0] + t[i][1] + t[i][2]) * 0.5
                transformed[4 * i + 2, f, c] = (t[i][0] - t[i][1] + t[i][2]) * 0.5
                transformed[4 * i + 3, f, c] = t[i][2]


# Tiles are transformed a chunk of one tile row at a time, through small local arrays: every
# loop then runs along the row (contiguous, or stride 2 into the local array), which the
# compiler vectorises, and no store can alias a load.
cdef enum:
    CHUNK = 32  # tiles per chunk of a tile row


cdef inline void transform_input_tiles(
        const floating[:, :, :, ::1] x, Py_ssize_t pad_h, Py_ssize_t pad_w,
        Py_ssize_t band_start, Py_ssize_t band_stop, Py_ssize_t tiles_h, Py_ssize_t tiles_w,
        floating[:, :, :] v) noexcept nogil:
    """v[(i, j), c, t] = (B^T d B)[i, j] for the 4x4 input block d of each tile t in the band.

    A band is the rows of tiles [band_start, band_stop) counted across the whole batch.
    B^T d is taken along whole rows (s below), then B along the columns, two apart per tile.
    """
    cdef Py_ssize_t channels = x.shape[1], height = x.shape[2], width = x.shape[3]
    cdef Py_ssize_t c, band_row, image, tile_row, t, i, q, r, row0, chunk, n, span, first, lo, hi
    cdef floating zeros[2 * CHUNK + 2]  # stands in for an input row in the padding
    cdef const floating* d[4]           # the chunk's four input rows, from column first + lo
    cdef floating s[4][2 * CHUNK + 2]   # B^T d, column by column (zero in the padding)
    cdef floating* plane
    memset(zeros, 0, sizeof(zeros))
    for c in range(channels):
        t = 0
        for band_row in range(band_start, band_stop):  # rows of tiles, across images
            image = band_row // tiles_h
            tile_row = band_row - image * tiles_h
            row0 = 2 * tile_row - pad_h
            for chunk in range(0, tiles_w, 32):  # CHUNK (range needs a literal step)
                n = min(<Py_ssize_t> CHUNK, tiles_w - chunk)
                span = 2 * n + 2
                # chunk columns q in [lo, hi) read input column first + q; the rest is padding
                first = 2 * chunk - pad_w
                lo = min(max(-first, 0), span)
                hi = max(min(width - first, span), lo)
                for i in range(4):
                    r = row0 + i
                    d[i] = &x[image, c, r, first + lo] if 0 <= r < height and hi > lo else zeros
                for q in range(lo):
                    s[0][q] = s[1][q] = s[2][q] = s[3][q] = 0
                for q in range(hi - lo):
                    s[0][lo + q] = d[0][q] - d[2][q]
                    s[1][lo + q] = d[1][q] + d[2][q]
                    s[2][lo + q] = d[2][q] - d[1][q]
                    s[3][lo + q] = d[1][q] - d[3][q]
                for q in range(hi, span):
                    s[0][q] = s[1][q] = s[2][q] = s[3][q] = 0
                for i in range(4):  # tile k of the chunk reads s[i][2k : 2k + 4]
                    plane = &v[4 * i + 0, c, t]
                    for q in range(n):
                        plane[q] = s[i][2 * q] - s[i][2 * q + 2]
                    plane = &v[4 * i + 1, c, t]
                    for q in range(n):
                        plane[q] = s[i][2 * q + 1] + s[i][2 * q + 2]
                    plane = &v[4 * i + 2, c, t]
                    for q in range(n):
                        plane[q] = s[i][2 * q + 2] - s[i][2 * q + 1]
                    plane = &v[4 * i + 3, c, t]
                    for q in range(n):
                        plane[q] = s[i][2 * q + 1] - s[i][2 * q + 3]
                t = t + n


cdef inline void transform_output_tiles(
        const floating[:, :, :] m, const floating[::1] bias, bint has_bias,
        Py_ssize_t band_start, Py_ssize_t band_stop, Py_ssize_t tiles_h, Py_ssize_t tiles_w,
        floating[:, :, :, ::1] out) noexcept nogil:
    """out[image, f, 2x2 tile] = A^T m A (+ bias), dropping the rows/columns past the output edge."""
    cdef Py_ssize_t filters = out.shape[1], out_height = out.shape[2], out_width = out.shape[3]
    cdef Py_ssize_t f, band_row, image, tile_row, t, q, k, row0, chunk, n, pairs
    cdef const floating* p[16]          # the 16 planes of m at the chunk's first tile
    cdef floating y[4][CHUNK]           # y00, y01, y10, y11 of each tile of the chunk
    cdef floating s0, s1, s2, s3, offset
    cdef floating* row
    for f in range(filters):
        offset = bias[f] if has_bias else 0
        t = 0
        for band_row in range(band_start, band_stop):  # rows of tiles, across images
            image = band_row // tiles_h
            tile_row = band_row - image * tiles_h
            row0 = 2 * tile_row
            for chunk in range(0, tiles_w, 32):  # CHUNK (range needs a literal step)
                n = min(<Py_ssize_t> CHUNK, tiles_w - chunk)
                for k in range(16):
                    p[k] = &m[k, f, t]
                for q in range(n):  # A^T m: rows 0 and 1, then A along them
                    s0 = p[0][q] + p[4][q] + p[8][q]
                    s1 = p[1][q] + p[5][q] + p[9][q]
                    s2 = p[2][q] + p[6][q] + p[10][q]
                    s3 = p[3][q] + p[7][q] + p[11][q]
                    y[0][q] = s0 + s1 + s2 + offset
                    y[1][q] = s1 - s2 - s3 + offset
                for q in range(n):
                    s0 = p[4][q] - p[8][q] - p[12][q]
                    s1 = p[5][q] - p[9][q] - p[13][q]
                    s2 = p[6][q] - p[10][q] - p[14][q]
                    s3 = p[7][q] - p[11][q] - p[15][q]
                    y[2][q] = s0 + s1 + s2 + offset
                    y[3][q] = s1 - s2 - s3 + offset
                # whole tiles, then the last tile's left column if the output width is odd
                pairs = min(n, (out_width - 2 * chunk) // 2)
                row = &out[image, f, row0, 2 * chunk]
                for q in range(pairs):
                    row[2 * q] = y[0][q]
                    row[2 * q + 1] = y[1][q]
                if pairs < n:
                    row[2 * pairs] = y[0][pairs]
                if row0 + 1 < out_height:
                    row = &out[image, f, row0 + 1, 2 * chunk]
                    for q in range(pairs):
                        row[2 * q] = y[2][q]
                        row[2 * q + 1] = y[3][q]
                    if pairs < n:
                        row[2 * pairs] = y[2][pairs]
                t = t + n


def forward(const floating[:, :, :, ::1] x, const floating[:, :, ::1] transformed_weight,
            const floating[::1] bias, floating[:, :, :, ::1] out,
            floating[:, :, :, :] input_work, floating[:, :, :, :] product_work,
            Py_ssize_t pad_h, Py_ssize_t pad_w, Py_ssize_t band_tile_rows,
            const int[::1] gemm_pieces, int num_threads):
    """out (N, F, OH, OW) = 3x3 stride-1 conv of x (N, C, H, W) [+ bias], via F(2x2, 3x3).

    transformed_weight: (16, F, C) from transform_weights. Work buffers per thread:
    input_work (threads, 16, C, band tiles), product_work (threads, 16, F, band tiles),
    band tiles = band_tile_rows * ceil(OW / 2); bands of tile rows run on across images.
    Their rows must be contiguous; the planes may be spaced
    freely (the caller skews them apart to avoid cache-set conflicts).
    gemm_pieces: (rows, inner, columns), the most of each per GEMM call (0: no split).
    """
    cdef Py_ssize_t batch = x.shape[0], channels = x.shape[1]
    cdef Py_ssize_t filters = out.shape[1]
    cdef Py_ssize_t tiles_h = (out.shape[2] + 1) // 2, tiles_w = (out.shape[3] + 1) // 2
    cdef Py_ssize_t task, band_start, band_stop, element
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
                                  input_work[tid])
            for element in range(16):
                gemm_blocked(False, filters, ntiles, channels, 1,
                             &transformed_weight[element, 0, 0], channels,
                             &input_work[tid, element, 0, 0], ld_input,
                             0, &product_work[tid, element, 0, 0], ld_product,
                             piece_rows, piece_inner, piece_columns)
            transform_output_tiles(product_work[tid], bias, has_bias, band_start, band_stop,
                                   tiles_h, tiles_w, out)


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
                                  input_work[tid])
            transform_dout_tiles(dout, band_start, band_stop, tiles_h, tiles_w, dout_work[tid],
                                 dbias)
            for element in range(16):
                # (C, tiles) @ (tiles, F), added onto this thread's (C, F) sums
                gemm_blocked(False, channels, filters, ntiles, 1,
                             &input_work[tid, element, 0, 0], ld_input,
                             &dout_work[tid, element, 0, 0], ld_dout,
                             1, &products_per_thread[tid, element, 0, 0], filters,
                             piece_rows, piece_inner, piece_columns)
