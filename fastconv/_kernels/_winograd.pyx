"""Winograd convolution for 3x3 kernels: F(2x2, 3x3) and F(4x4, 3x3) at stride 1, and a
stride-2 counterpart of F(2x2, 3x3) (further down).

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

F(4x4, 3x3) does a 4x4 tile from a 6x6 input block in 36 multiplications per channel instead
of 144 (4x fewer), with the transforms for the points 0, 1, -1, 2, -2 and infinity:

    B^T = [4  0 -5  0  1  0]     G = [ 1/4     0     0 ]     A^T = [1  1  1  1  1  0]
          [0 -4 -4  1  1  0]         [-1/6  -1/6  -1/6 ]           [0  1 -1  2 -2  0]
          [0  4 -4 -1  1  0]         [-1/6   1/6  -1/6 ]           [0  1  1  4  4  0]
          [0 -2 -1  2  1  0]         [1/24  1/12   1/6 ]           [0  1 -1  8 -8  1]
          [0  2 -1 -2  1  0]         [1/24 -1/12   1/6 ]
          [0  4  0 -5  0  1]         [ 0     0     1   ]

Its coefficients reach 8 (A) and 5 (B): its float32 error is several times F(2x2, 3x3)'s.
"""
from cython cimport floating
from cython.parallel cimport parallel, prange, threadid
from libc.string cimport memset

from ._epilogue cimport epilogue_filter
from ._gemm cimport gemm_blocked


cdef extern from *:
    """
    static int fastconv_cpu_has_avx2_fma(void) {
    #if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
        /* GCC's and clang's checks also ask the OS (XGETBV) whether it saves AVX state */
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    #else
        return 0;
    #endif
    }
    """
    int fastconv_cpu_has_avx2_fma() noexcept nogil


def cpu_has_avx2_fma():
    """Whether this CPU (and its operating system) can run the module built for AVX2 and FMA
    (_winograd_avx2)."""
    return fastconv_cpu_has_avx2_fma() != 0


# The transforms work through small local arrays, CHUNK tiles of a tile row (or kernels of a
# filter) at a time.
cdef enum:
    CHUNK = 32


# The three transform sets, by the `variant` argument of the functions below: tiles of 2x2 or
# 4x4 outputs at stride 1, or of 2x2 outputs at stride 2.
cpdef enum Variant:
    F2X2 = 0
    STRIDE_TWO = 1
    F4X4 = 2


cdef inline Py_ssize_t variant_elements(int variant) noexcept nogil:
    """Transformed values per tile (and per kernel): 16, 25 or 36."""
    return 36 if variant == F4X4 else 25 if variant == STRIDE_TWO else 16


cdef inline Py_ssize_t variant_tile(int variant) noexcept nogil:
    """Outputs per side of a tile: 4 for F4X4, else 2."""
    return 4 if variant == F4X4 else 2


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


cdef inline void transform_kernel_f4(const floating* g, Py_ssize_t k,
                                     floating* u) noexcept nogil:
    """u[e * CHUNK + k] = (G g G^T)[e // 6, e % 6] for F(4x4, 3x3)'s G, 3x3 kernel g."""
    cdef Py_ssize_t i, j
    cdef floating t[6][3]   # G g
    for j in range(3):
        t[0][j] = g[j] / 4
        t[1][j] = -(g[j] + g[3 + j] + g[6 + j]) / 6
        t[2][j] = -(g[j] - g[3 + j] + g[6 + j]) / 6
        t[3][j] = g[j] / 24 + g[3 + j] / 12 + g[6 + j] / 6
        t[4][j] = g[j] / 24 - g[3 + j] / 12 + g[6 + j] / 6
        t[5][j] = g[6 + j]
    for i in range(6):  # (G g) G^T
        u[(6 * i + 0) * CHUNK + k] = t[i][0] / 4
        u[(6 * i + 1) * CHUNK + k] = -(t[i][0] + t[i][1] + t[i][2]) / 6
        u[(6 * i + 2) * CHUNK + k] = -(t[i][0] - t[i][1] + t[i][2]) / 6
        u[(6 * i + 3) * CHUNK + k] = t[i][0] / 24 + t[i][1] / 12 + t[i][2] / 6
        u[(6 * i + 4) * CHUNK + k] = t[i][0] / 24 - t[i][1] / 12 + t[i][2] / 6
        u[(6 * i + 5) * CHUNK + k] = t[i][2]


cdef inline void transform_filter(const floating[:, :, :, ::1] weight, Py_ssize_t f, int variant,
                                  floating[:, :, ::1] transformed) noexcept nogil:
    """transformed[:, f, :] for the kernels of filter f (see transform_weights), through a
    local array of this call's own: threads may run filters side by side."""
    cdef Py_ssize_t channels = weight.shape[1], first, k, n
    cdef floating u[36 * CHUNK]
    for first in range(0, channels, 32):  # CHUNK (a literal: Cython's range takes no enum step)
        n = min(<Py_ssize_t> CHUNK, channels - first)
        if variant == STRIDE_TWO:
            for k in range(n):
                transform_kernel_s2(&weight[f, first + k, 0, 0], k, u)
        elif variant == F4X4:
            for k in range(n):
                transform_kernel_f4(&weight[f, first + k, 0, 0], k, u)
        else:
            for k in range(n):
                transform_kernel(&weight[f, first + k, 0, 0], k, u)
        store_weight_planes(transformed, f, first, n, variant_elements(variant), u)


def transform_weights(const floating[:, :, :, ::1] weight, int variant,
                      floating[:, :, ::1] transformed, int num_threads=1):
    """transformed (E, F, C) = G g G^T for every 3x3 kernel g = weight[f, c] (F, C, 3, 3):
    E = 16 for F2X2, 36 for F4X4 (its G), or 25 = R g R^T for STRIDE_TWO. Filters are shared
    out over num_threads threads; each is transformed the same way on any thread."""
    cdef Py_ssize_t filters = weight.shape[0], f
    if (transformed.shape[0] != variant_elements(variant) or transformed.shape[1] != filters
            or transformed.shape[2] != weight.shape[1]):
        raise ValueError("transformed must have shape (E, F, C) for weight (F, C, 3, 3)")
    for f in prange(filters, nogil=True, schedule="static", num_threads=num_threads):
        transform_filter(weight, f, variant, transformed)


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
                             Py_ssize_t row0, Py_ssize_t col0, Py_ssize_t n, Py_ssize_t tile,
                             const floating* y) noexcept nogil:
    """Write n tiles of tile x tile outputs (tile 2 or 4), y[(tile * i + j) * CHUNK + q] =
    output (i, j) of tile q, to out[image, f] from (row0, col0), dropping the rows/columns
    past the output edge."""
    cdef Py_ssize_t out_height = out.shape[2], out_width = out.shape[3], q, i, j
    cdef Py_ssize_t whole = min(n, (out_width - col0) // tile)  # tiles with all columns
    cdef const floating* z
    cdef floating* row
    for i in range(min(tile, out_height - row0)):
        row = &out[image, f, row0 + i, col0]
        z = &y[tile * i * CHUNK]
        if tile == 2:
            for q in range(whole):
                row[2 * q] = z[q]
                row[2 * q + 1] = z[CHUNK + q]
        else:
            for q in range(whole):
                row[4 * q] = z[q]
                row[4 * q + 1] = z[CHUNK + q]
                row[4 * q + 2] = z[2 * CHUNK + q]
                row[4 * q + 3] = z[3 * CHUNK + q]
        if whole < n:  # the last tile, cut by the edge
            for j in range(out_width - col0 - tile * whole):
                row[tile * whole + j] = z[j * CHUNK + whole]


cdef enum:
    SPAN = 4 * CHUNK + 2  # input columns of a chunk of tiles, at most (F4X4)


cdef inline void combine_input_rows(const floating** d, Py_ssize_t count, int variant,
                                    floating* s) noexcept nogil:
    """Rows of s (SPAN apart) = B^T d (4 rows; 6 for F4X4), or S^T d (5 rows) for STRIDE_TWO,
    for columns 0 .. count - 1 of the input rows d."""
    cdef Py_ssize_t q
    cdef floating two = 2, four = 4, five = 5  # typed: a literal would make float math double
    if variant == F4X4:
        for q in range(count):
            s[q] = four * d[0][q] - five * d[2][q] + d[4][q]
            s[SPAN + q] = d[3][q] + d[4][q] - four * (d[1][q] + d[2][q])
            s[2 * SPAN + q] = four * (d[1][q] - d[2][q]) + d[4][q] - d[3][q]
            s[3 * SPAN + q] = two * (d[3][q] - d[1][q]) + d[4][q] - d[2][q]
            s[4 * SPAN + q] = two * (d[1][q] - d[3][q]) + d[4][q] - d[2][q]
            s[5 * SPAN + q] = four * d[1][q] - five * d[3][q] + d[5][q]
    elif variant == STRIDE_TWO:
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


cdef inline void combine_input_columns(const floating* row, Py_ssize_t n, int variant,
                                       floating** planes) noexcept nogil:
    """planes[j][k] = (row B)[j] for tile k of the chunk (row[2k : 2k + 4]; F4X4:
    row[4k : 4k + 6]), or (row S)[j] for STRIDE_TWO (row[4k : 4k + 5])."""
    cdef Py_ssize_t q
    cdef floating two = 2, four = 4, five = 5
    # F4X4: row[4q + k] as e[k * (CHUNK + 1) + q], so that the sums below read contiguously
    cdef floating e[4 * (CHUNK + 1)]
    cdef floating* e0 = e
    cdef floating* e1 = &e[CHUNK + 1]
    cdef floating* e2 = &e[2 * (CHUNK + 1)]
    cdef floating* e3 = &e[3 * (CHUNK + 1)]
    if variant == F4X4:
        for q in range(n):
            e0[q] = row[4 * q]
            e1[q] = row[4 * q + 1]
            e2[q] = row[4 * q + 2]
            e3[q] = row[4 * q + 3]
        e0[n] = row[4 * n]
        e1[n] = row[4 * n + 1]
        # tile q reads row[4q : 4q + 6]: e0, e1, e2, e3 at q, then e0, e1 at q + 1
        for q in range(n):
            planes[0][q] = four * e0[q] - five * e2[q] + e0[q + 1]
        for q in range(n):
            planes[1][q] = e3[q] + e0[q + 1] - four * (e1[q] + e2[q])
        for q in range(n):
            planes[2][q] = four * (e1[q] - e2[q]) + e0[q + 1] - e3[q]
        for q in range(n):
            planes[3][q] = two * (e3[q] - e1[q]) + e0[q + 1] - e2[q]
        for q in range(n):
            planes[4][q] = two * (e1[q] - e3[q]) + e0[q + 1] - e2[q]
        for q in range(n):
            planes[5][q] = four * e1[q] - five * e3[q] + e1[q + 1]
    elif variant == STRIDE_TWO:
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
        int variant, floating[:, :, :] v, Py_ssize_t c_start, Py_ssize_t c_stop) noexcept nogil:
    """v[(i, j), c, t] = (B^T d B)[i, j] for the 4x4 input block d of each tile t in the band
    (F4X4: its 6x6 block), or (S^T d S)[i, j] for its 5x5 block (STRIDE_TWO), for the
    channels c_start <= c < c_stop.

    A band is the rows of tiles [band_start, band_stop) counted across the whole batch.
    B^T d (S^T d) is taken along whole rows (s below), then B (S) along the columns.
    """
    # rows and columns of an input block, and from one tile's block to the next
    cdef Py_ssize_t size = 6 if variant == F4X4 else 5 if variant == STRIDE_TWO else 4
    cdef Py_ssize_t step = 2 if variant == F2X2 else 4
    cdef Py_ssize_t c, band_row, image, tile_row, t, i, j, q, chunk, n, span, first, lo, hi
    cdef floating zeros[SPAN]      # stands in for an input row in the padding
    cdef const floating* d[6]      # the chunk's input rows (chunk_rows)
    cdef floating s[6 * SPAN]      # B^T d or S^T d, rows SPAN apart (zero in the padding)
    cdef floating* planes[6]
    memset(zeros, 0, sizeof(zeros))
    for c in range(c_start, c_stop):
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
                combine_input_rows(d, hi - lo, variant, &s[lo])
                for i in range(size):
                    for j in range(size):
                        planes[j] = &v[size * i + j, c, t]
                    combine_input_columns(&s[i * SPAN], n, variant, planes)
                t = t + n


cdef inline void combine_output_f4(const floating** p, Py_ssize_t n, floating offset,
                                   floating* y) noexcept nogil:
    """y[(4 * i + j) * CHUNK + q] = output (i, j) of tile q (+ offset): A^T m A for
    F(4x4, 3x3) from the 36 planes p of m (rows of A^T m, then A)."""
    cdef Py_ssize_t q, i, j
    cdef floating a[24 * CHUNK]     # A^T m: row i, column j at a[(6 * i + j) * CHUNK]
    cdef floating sum12, diff12, sum34, diff34
    cdef floating two = 2, four = 4, eight = 8  # typed: a literal would make float math double
    cdef const floating** m
    cdef const floating* r
    for j in range(6):
        m = &p[j]  # column j of m: m[6 * i][q] is m[i, j] of tile q
        for q in range(n):
            sum12 = m[6][q] + m[12][q]
            diff12 = m[6][q] - m[12][q]
            sum34 = m[18][q] + m[24][q]
            diff34 = m[18][q] - m[24][q]
            a[j * CHUNK + q] = m[0][q] + sum12 + sum34
            a[(6 + j) * CHUNK + q] = diff12 + two * diff34
            a[(12 + j) * CHUNK + q] = sum12 + four * sum34
            a[(18 + j) * CHUNK + q] = diff12 + eight * diff34 + m[30][q]
    for i in range(4):
        r = &a[6 * i * CHUNK]
        for q in range(n):
            sum12 = r[CHUNK + q] + r[2 * CHUNK + q]
            diff12 = r[CHUNK + q] - r[2 * CHUNK + q]
            sum34 = r[3 * CHUNK + q] + r[4 * CHUNK + q]
            diff34 = r[3 * CHUNK + q] - r[4 * CHUNK + q]
            y[4 * i * CHUNK + q] = r[q] + sum12 + sum34 + offset
            y[(4 * i + 1) * CHUNK + q] = diff12 + two * diff34 + offset
            y[(4 * i + 2) * CHUNK + q] = sum12 + four * sum34 + offset
            y[(4 * i + 3) * CHUNK + q] = diff12 + eight * diff34 + r[5 * CHUNK + q] + offset


cdef inline void combine_output(const floating** p, Py_ssize_t n, floating offset,
                                int variant, floating* y) noexcept nogil:
    """y[k * CHUNK + q] = output (k // 2, k % 2) of tile q (+ offset): A^T m A from the 16
    planes p of m, or Q^T m Q from its 25 for STRIDE_TWO (rows of A^T m, then A); for F4X4,
    combine_output_f4."""
    cdef Py_ssize_t q, r
    cdef floating s0, s1, s2, s3, s4
    cdef const floating** c
    if variant == F4X4:
        combine_output_f4(p, n, offset, y)
    elif variant == STRIDE_TWO:
        for r in range(2):
            # output row r: rows r, r + 1 and r + 3 of m (row r of Q^T), then the same columns
            c = &p[5 * r]
            for q in range(n):
                s0 = c[0][q] + c[5][q] + c[15][q]
                s1 = c[1][q] + c[6][q] + c[16][q]
                s2 = c[2][q] + c[7][q] + c[17][q]
                s3 = c[3][q] + c[8][q] + c[18][q]
                s4 = c[4][q] + c[9][q] + c[19][q]
                y[2 * r * CHUNK + q] = s0 + s1 + s3 + offset
                y[(2 * r + 1) * CHUNK + q] = s1 + s2 + s4 + offset
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


cdef inline floating transform_output_tiles(
        const floating[:, :, :] m, const floating[::1] bias, bint has_bias,
        Py_ssize_t band_start, Py_ssize_t band_stop, Py_ssize_t tiles_h, Py_ssize_t tiles_w,
        int variant, floating[:, :, :, ::1] out, Py_ssize_t f_start,
        Py_ssize_t f_stop) noexcept nogil:
    """out[image, f, tile] = A^T m A, or Q^T m Q for STRIDE_TWO (+ bias), dropping the
    rows/columns past the output edge, for the filters f_start <= f < f_stop; tiles of 2x2
    outputs, or 4x4 for F4X4.

    Returns the sum of every output computed, those past the edge included: it is finite
    only if they all are (or their sum overflows), see forward()."""
    cdef Py_ssize_t elements = variant_elements(variant)
    cdef Py_ssize_t tile = variant_tile(variant)
    cdef Py_ssize_t ntiles = (band_stop - band_start) * tiles_w
    cdef Py_ssize_t f, band_row, image, tile_row, tile_col, t, k, n, done, count, q
    cdef const floating* p[36]          # the planes of m at the chunk's first tile
    cdef floating y[16 * CHUNK]         # the outputs of each tile (store_tiles)
    cdef floating lanes[CHUNK]          # running sums of the outputs, one per tile position
    cdef floating offset, total = 0
    for q in range(CHUNK):
        lanes[q] = 0
    for f in range(f_start, f_stop):
        offset = bias[f] if has_bias else 0
        # chunks of the band's tiles in order, run on from one tile row to the next (rows
        # of few tiles would make short loops), then stored one tile row at a time
        for t in range(0, ntiles, 32):  # CHUNK (range needs a literal step)
            n = min(<Py_ssize_t> CHUNK, ntiles - t)
            for k in range(elements):
                p[k] = &m[k, f, t]
            combine_output(p, n, offset, variant, y)
            for k in range(tile * tile):
                for q in range(n):
                    lanes[q] += y[k * CHUNK + q]
            done = 0
            while done < n:
                band_row = band_start + (t + done) // tiles_w
                tile_col = (t + done) % tiles_w
                count = min(n - done, tiles_w - tile_col)
                image = band_row // tiles_h
                tile_row = band_row - image * tiles_h
                store_tiles(out, image, f, tile * tile_row, tile * tile_col, count, tile,
                            &y[done])
                done = done + count
    for q in range(CHUNK):
        total += lanes[q]
    return total


cdef inline void band_epilogue(floating[:, :, :, ::1] out, Py_ssize_t band_start,
                               Py_ssize_t band_stop, Py_ssize_t tiles_h, Py_ssize_t tile,
                               const double[::1] mean, const double[::1] scale,
                               const double[::1] shift, bint relu, Py_ssize_t f_start,
                               Py_ssize_t f_stop) noexcept nogil:
    """_epilogue.epilogue_filter on every output row of the band's tile rows [band_start,
    band_stop) (which run on across images), for the filters f_start <= f < f_stop: after
    the band's output transform, while those rows are still in cache."""
    cdef Py_ssize_t band_row, image, y, f
    for band_row in range(band_start, band_stop):
        image = band_row // tiles_h
        for f in range(f_start, f_stop):
            for y in range(tile * (band_row % tiles_h),
                           min(tile * (band_row % tiles_h + 1), out.shape[2])):
                epilogue_filter(&out[image, f, y, 0], out.shape[3], f, mean, scale, shift,
                                relu)


def forward(const floating[:, :, :, ::1] x, const floating[:, :, ::1] transformed_weight,
            const floating[::1] bias, floating[:, :, :, ::1] out,
            floating[:, :, :, :] input_work, floating[:, :, :, :] product_work,
            Py_ssize_t pad_h, Py_ssize_t pad_w, int variant, Py_ssize_t band_tile_rows,
            bint cooperative, const int[::1] gemm_pieces, floating[::1] totals,
            const double[::1] mean, const double[::1] scale, const double[::1] shift,
            bint relu, int num_threads):
    """out (N, F, OH, OW) = 3x3 conv of x (N, C, H, W) [+ bias], stride 1 by F(2x2, 3x3)
    (variant F2X2) or F(4x4, 3x3) (F4X4), or stride 2 (STRIDE_TWO) by the 25-element
    transforms above.

    totals (threads,), zero on entry: each thread adds the sum of the outputs it computed
    (those of tiles cut by the edge included). Their sum is finite only if every output is.
    A NaN or infinity in x's block of a tile (or in w) reaches some output of that tile,
    since each input of a block feeds some transformed value and each of those some output
    (no column of B^T or A^T is all zero); so when the sum is finite, no such value took
    part and the result is the direct method's.

    transformed_weight: (E, F, C) from transform_weights with the same variant, E = 16, 36
    or 25. Work buffers per thread: input_work (threads, E, C, band tiles), product_work
    (threads, E, F, band tiles), band tiles = band_tile_rows * ceil(OW / tile), tile = 4
    for F4X4, else 2; bands of tile rows run on across images. Their rows must be
    contiguous; the planes may be spaced freely (the caller skews them apart to avoid
    cache-set conflicts).
    cooperative: every thread works on every band, the bands one after the other: the
    input transform shared out by channels, then the GEMMs, output transform and epilogue by
    filters, in input_work[0] and product_work[0] (only these are used). For a small batch
    (algorithms/_winograd.py's plan): rows of tiles the threads cannot share out evenly,
    where whole bands would leave a thread idle for part of the call, or whole bands of so
    few tiles that their GEMMs run far below speed.
    gemm_pieces: (rows, inner, columns), the most of each per GEMM call (0: no split).
    mean, scale, shift (F,) or None, relu: the epilogue (fastconv/_epilogue.py) run on each
    band's outputs after its output transform (the totals are of the outputs before it).
    """
    cdef Py_ssize_t batch = x.shape[0], channels = x.shape[1]
    cdef Py_ssize_t filters = out.shape[1]
    cdef Py_ssize_t tile = variant_tile(variant)
    cdef Py_ssize_t tiles_h = (out.shape[2] + tile - 1) // tile
    cdef Py_ssize_t tiles_w = (out.shape[3] + tile - 1) // tile
    cdef Py_ssize_t task, band, part, band_start, band_stop
    cdef Py_ssize_t rows = batch * tiles_h
    cdef Py_ssize_t bands = (rows + band_tile_rows - 1) // band_tile_rows
    cdef int tid = 0
    if not cooperative:
        with nogil, parallel(num_threads=num_threads):
            tid = threadid()
            # dynamic: a thread slowed by a busy core takes fewer bands (each band is computed
            # the same way whichever thread runs it, so the outputs do not change; only the
            # split of the finite-check totals does)
            for task in prange(bands, schedule="dynamic"):
                band_start = task * band_tile_rows
                band_stop = min(band_start + band_tile_rows, rows)
                transform_input_tiles(x, pad_h, pad_w, band_start, band_stop, tiles_h, tiles_w,
                                      variant, input_work[tid], 0, channels)
                totals[tid] += band_products(transformed_weight, bias, out, input_work[tid],
                                             product_work[tid], band_start, band_stop, tiles_h,
                                             tiles_w, variant, 0, filters, gemm_pieces, mean,
                                             scale, shift, relu)
        return
    # cooperative: each band in two parallel loops, each part of the first writing its own
    # channels of the shared transformed tiles, the second reading them all after the first
    # loop's closing barrier
    with nogil:
        for band in range(bands):
            band_start = band * band_tile_rows
            band_stop = min(band_start + band_tile_rows, rows)
            for part in prange(num_threads, schedule="static", num_threads=num_threads):
                transform_input_tiles(x, pad_h, pad_w, band_start, band_stop, tiles_h, tiles_w,
                                      variant, input_work[0], part * channels // num_threads,
                                      (part + 1) * channels // num_threads)
            for part in prange(num_threads, schedule="static", num_threads=num_threads):
                totals[part] += band_products(transformed_weight, bias, out, input_work[0],
                                              product_work[0], band_start, band_stop, tiles_h,
                                              tiles_w, variant,
                                              part * filters // num_threads,
                                              (part + 1) * filters // num_threads,
                                              gemm_pieces, mean, scale, shift, relu)


cdef inline floating band_products(
        const floating[:, :, ::1] transformed_weight, const floating[::1] bias,
        floating[:, :, :, ::1] out, floating[:, :, :] inputs, floating[:, :, :] products,
        Py_ssize_t band_start, Py_ssize_t band_stop, Py_ssize_t tiles_h, Py_ssize_t tiles_w,
        int variant, Py_ssize_t f_start, Py_ssize_t f_stop, const int[::1] gemm_pieces,
        const double[::1] mean, const double[::1] scale, const double[::1] shift,
        bint relu) noexcept nogil:
    """For the filters f_start <= f < f_stop of a band whose tiles `inputs` (E, C, band
    tiles) holds transformed: the E GEMMs into products (E, F, band tiles), the output
    transform into out and the epilogue, if any. Returns the output transform's sum."""
    cdef Py_ssize_t element, channels = inputs.shape[1]
    cdef int ntiles = (band_stop - band_start) * tiles_w
    cdef int ld_input = inputs.strides[1] // sizeof(floating)
    cdef int ld_product = products.strides[1] // sizeof(floating)
    cdef floating total
    if f_stop <= f_start:
        return 0
    for element in range(variant_elements(variant)):
        gemm_blocked(False, f_stop - f_start, ntiles, channels, 1,
                     &transformed_weight[element, f_start, 0], channels,
                     &inputs[element, 0, 0], ld_input,
                     0, &products[element, f_start, 0], ld_product,
                     gemm_pieces[0], gemm_pieces[1], gemm_pieces[2])
    total = transform_output_tiles(products, bias, bias is not None, band_start, band_stop,
                                   tiles_h, tiles_w, variant, out, f_start, f_stop)
    if relu or mean is not None:
        band_epilogue(out, band_start, band_stop, tiles_h, variant_tile(variant), mean, scale,
                      shift, relu, f_start, f_stop)
    return total


cdef inline void transform_dout_tiles_2x2(
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


cdef inline void transform_dout_tiles_4x4(
        const floating[:, :, :, ::1] dout, Py_ssize_t band_start, Py_ssize_t band_stop,
        Py_ssize_t tiles_h, Py_ssize_t tiles_w, floating[:, :, :] u,
        floating* dbias) noexcept nogil:
    """transform_dout_tiles_2x2 for F(4x4, 3x3): 4x4 blocks dy of dout (zero past the output
    edge), u[(i, j), t, f] = (A dy A^T)[i, j] for its A, which makes a row [p0, p1, p2, p3]
    of dy [p0, p0 + p1 + p2 + p3, p0 - p1 + p2 - p3, p0 + 2 p1 + 4 p2 + 8 p3,
    p0 - 2 p1 + 4 p2 - 8 p3, p3], and so the columns.

    One filter's tile row at a time, a chunk of its tiles at once: A along the rows over
    whole output rows, then along the columns through four phase arrays (as the input
    transform does), so that both loops run along contiguous memory."""
    cdef Py_ssize_t filters = dout.shape[1], out_height = dout.shape[2], out_width = dout.shape[3]
    cdef Py_ssize_t step = u.strides[1] // sizeof(floating)  # from one tile to the next
    cdef Py_ssize_t f, band_row, image, tile_row, t = 0, i, q, row0, rows, chunk, n, width
    cdef floating zeros[4 * CHUNK]
    cdef const floating* d[4]           # the tile row's output rows, or zeros past the edge
    cdef floating s[6][4 * CHUNK]       # A dy, along the rows
    cdef floating e[4][CHUNK]           # a row of s as phase arrays: e[k][q] = row[4q + k]
    cdef floating* plane
    cdef floating total
    cdef floating two = 2, four = 4, eight = 8  # typed: a literal would make float math double
    memset(zeros, 0, sizeof(zeros))
    for band_row in range(band_start, band_stop):  # rows of tiles, across images
        image = band_row // tiles_h
        tile_row = band_row - image * tiles_h
        row0 = 4 * tile_row
        rows = min(4, out_height - row0)
        for f in range(filters):
            total = 0
            for chunk in range(0, tiles_w, 32):  # CHUNK (range needs a literal step)
                n = min(<Py_ssize_t> CHUNK, tiles_w - chunk)
                width = min(4 * n, out_width - 4 * chunk)  # columns inside the output
                for i in range(4):
                    d[i] = &dout[image, f, row0 + i, 4 * chunk] if i < rows else zeros
                for q in range(width):
                    s[0][q] = d[0][q]
                    s[1][q] = d[0][q] + d[1][q] + d[2][q] + d[3][q]
                    s[2][q] = d[0][q] - d[1][q] + d[2][q] - d[3][q]
                    s[3][q] = d[0][q] + two * d[1][q] + four * d[2][q] + eight * d[3][q]
                    s[4][q] = d[0][q] - two * d[1][q] + four * d[2][q] - eight * d[3][q]
                    s[5][q] = d[3][q]
                for i in range(6):
                    for q in range(width, 4 * n):  # past the output edge
                        s[i][q] = 0
                for i in range(6):
                    for q in range(n):
                        e[0][q] = s[i][4 * q]
                        e[1][q] = s[i][4 * q + 1]
                        e[2][q] = s[i][4 * q + 2]
                        e[3][q] = s[i][4 * q + 3]
                    plane = &u[6 * i, t + chunk, f]
                    for q in range(n):
                        plane[q * step] = e[0][q]
                    plane = &u[6 * i + 1, t + chunk, f]
                    for q in range(n):
                        plane[q * step] = e[0][q] + e[1][q] + e[2][q] + e[3][q]
                    if i == 1 and dbias != NULL:  # row 1 of A sums the rows, column 1 the columns
                        for q in range(n):
                            total += plane[q * step]
                    plane = &u[6 * i + 2, t + chunk, f]
                    for q in range(n):
                        plane[q * step] = e[0][q] - e[1][q] + e[2][q] - e[3][q]
                    plane = &u[6 * i + 3, t + chunk, f]
                    for q in range(n):
                        plane[q * step] = e[0][q] + two * e[1][q] + four * e[2][q] + eight * e[3][q]
                    plane = &u[6 * i + 4, t + chunk, f]
                    for q in range(n):
                        plane[q * step] = e[0][q] - two * e[1][q] + four * e[2][q] - eight * e[3][q]
                    plane = &u[6 * i + 5, t + chunk, f]
                    for q in range(n):
                        plane[q * step] = e[3][q]
            if dbias != NULL:
                dbias[f] += total
        t = t + tiles_w


def weight_gradient(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] dout,
                    floating[:, :, :, ::1] products_per_thread, floating[:, ::1] dbias_per_thread,
                    floating[:, :, :, :] input_work, floating[:, :, :, :] dout_work,
                    Py_ssize_t pad_h, Py_ssize_t pad_w, int variant, Py_ssize_t band_tile_rows,
                    const int[::1] gemm_pieces, int num_threads):
    """Per-thread sums over the tiles, products_per_thread[thread, (i, j), c, f] =
    sum over tiles of (B^T d B)[i, j] * (A dy A^T)[i, j]: the transformed gradient of the
    weights (transposed) of a 3x3 stride-1 conv of x (N, C, H, W) giving dout (N, F, OH, OW),
    by F(2x2, 3x3) (variant F2X2) or F(4x4, 3x3) (F4X4).
    dW[f, c] = G^T (summed over threads) G, done by the caller.

    products_per_thread: (threads, E, C, F), E = 16 or 36, C-contiguous (each thread zeroes
    its own part first), and dbias_per_thread (threads, F) (per-thread sums of dout over all
    but its filter axis; None: not wanted), zero on entry.
    Work buffers per thread: input_work (threads, E, C, band tiles) as for forward(),
    dout_work (threads, E, band tiles, F), rows contiguous. Each product is then
    (C, tiles) @ (tiles, F), which BLAS runs unpacked in gemm_pieces (rows, inner, columns;
    0: not split).
    """
    cdef Py_ssize_t batch = x.shape[0], channels = x.shape[1]
    cdef Py_ssize_t filters = dout.shape[1]
    cdef Py_ssize_t tile = variant_tile(variant)
    cdef Py_ssize_t tiles_h = (dout.shape[2] + tile - 1) // tile
    cdef Py_ssize_t tiles_w = (dout.shape[3] + tile - 1) // tile
    cdef Py_ssize_t elements = variant_elements(variant)
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
    cdef size_t sums_bytes = elements * channels * filters * sizeof(floating)
    with nogil, parallel(num_threads=num_threads):
        tid = threadid()
        dbias = &dbias_per_thread[tid, 0] if has_bias else NULL
        memset(&products_per_thread[tid, 0, 0, 0], 0, sums_bytes)
        for task in prange(bands, schedule="static"):
            band_start = task * band_tile_rows
            band_stop = min(band_start + band_tile_rows, rows)
            ntiles = (band_stop - band_start) * tiles_w
            transform_input_tiles(x, pad_h, pad_w, band_start, band_stop, tiles_h, tiles_w,
                                  variant, input_work[tid], 0, channels)
            if variant == F4X4:
                transform_dout_tiles_4x4(dout, band_start, band_stop, tiles_h, tiles_w,
                                         dout_work[tid], dbias)
            else:
                transform_dout_tiles_2x2(dout, band_start, band_stop, tiles_h, tiles_w,
                                         dout_work[tid], dbias)
            for element in range(elements):
                # (C, tiles) @ (tiles, F), added onto this thread's (C, F) sums
                gemm_blocked(False, channels, filters, ntiles, 1,
                             &input_work[tid, element, 0, 0], ld_input,
                             &dout_work[tid, element, 0, 0], ld_dout,
                             1, &products_per_thread[tid, element, 0, 0], filters,
                             piece_rows, piece_inner, piece_columns)
