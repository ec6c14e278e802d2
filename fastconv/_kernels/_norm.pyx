"""Compiled normalisation loops: per-plane moments in one pass over memory, normalising, and the fused backward.

The Python front (fastconv.norm) views its arrays as 2-D: "planes" (rows that each belong
to one statistic's set, in memory order: the (n, c) planes of a batch norm, the (n, group)
runs of a group norm, the rows of a layer norm) or "columns" (an (N, D) batch norm, whose
statistics run down the columns). It allocates every output, checks every argument and
merges per-plane moments into per-channel ones; these kernels trust it.

Numerics: every sum is taken in double precision in 8 independent lanes (so the loops
vectorise without reassociation flags, and rounding errors grow with n/8, not n). The
moments of each block of at most CHUNK elements take two passes over the block while it
is in the L1 cache: its mean, then the sums of deviations d = x - mean and d*d, with
m2 = sum(d*d) - sum(d)**2 / n (the corrected two-pass formula). Blocks are merged with
Chan's formula, so the data is read from memory once and a large mean (1e4 + noise in
float32) costs no precision. Elementwise results are computed in double as well and
rounded once to the array's type.

Loops run in memory order: walking one channel's (n, c) planes one after another makes
every plane a fresh 4 KiB stream for the prefetcher and was 3-4x slower for (64, 64, 32, 32)
float32 than visiting the planes in order.
"""
from cython cimport floating
from cython.parallel cimport parallel, prange, threadid

cdef enum:
    LANES = 8
    # elements of a block whose two passes run while it is in L1 (16 KiB of float64)
    CHUNK = 2048
    # columns of an (N, D) batch norm a thread takes at a time, and rows per two-pass block
    COLUMN_BLOCK = 256
    ROW_BLOCK = 16


cdef inline double lane_total(const double* lanes) noexcept nogil:
    return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]))


cdef double lane_sum(const floating[::1] v, Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    """sum(v[start:stop]) in double."""
    cdef double lanes[LANES]
    cdef double total
    cdef Py_ssize_t group, i, j, full = stop - (stop - start) % LANES
    for j in range(LANES):
        lanes[j] = 0
    for group in range((full - start) // LANES):
        i = start + group * LANES
        for j in range(LANES):
            lanes[j] += v[i + j]
    total = lane_total(lanes)
    for i in range(full, stop):
        total += v[i]
    return total


cdef void lane_deviations(const floating[::1] v, Py_ssize_t start, Py_ssize_t stop, double centre,
                          double* deviation_sum, double* square_sum) noexcept nogil:
    """sum(d) and sum(d*d) over v[start:stop], d = v - centre, in double."""
    cdef double linear[LANES]
    cdef double squares[LANES]
    cdef double d, linear_tail = 0, square_tail = 0
    cdef Py_ssize_t group, i, j, full = stop - (stop - start) % LANES
    for j in range(LANES):
        linear[j] = 0
        squares[j] = 0
    for group in range((full - start) // LANES):
        i = start + group * LANES
        for j in range(LANES):
            d = v[i + j] - centre
            linear[j] += d
            squares[j] += d * d
    for i in range(full, stop):
        d = v[i] - centre
        linear_tail += d
        square_tail += d * d
    deviation_sum[0] = lane_total(linear) + linear_tail
    square_sum[0] = lane_total(squares) + square_tail


cdef inline void merge_moments(double* count, double* mean, double* m2,
                               double block_count, double block_mean, double block_m2) noexcept nogil:
    """Chan et al.'s update: the moments of two disjoint sets from each set's (count, mean, m2)."""
    cdef double total = count[0] + block_count
    cdef double delta = block_mean - mean[0]
    if block_count == 0:
        return
    mean[0] = mean[0] + delta * (block_count / total)
    m2[0] = m2[0] + block_m2 + delta * delta * (count[0] * (block_count / total))
    count[0] = total


cdef void run_moments(const floating[::1] v, double* mean, double* m2) noexcept nogil:
    """Mean and sum of squared deviations of a contiguous run (length >= 1), block by block."""
    cdef Py_ssize_t n = v.shape[0], block, start, stop
    cdef double count = 0, block_mean, block_count, deviation_sum, square_sum
    mean[0] = 0
    m2[0] = 0
    for block in range((n + CHUNK - 1) // CHUNK):
        start = block * CHUNK
        stop = start + CHUNK if start + CHUNK < n else n
        block_count = stop - start
        block_mean = lane_sum(v, start, stop) / block_count
        lane_deviations(v, start, stop, block_mean, &deviation_sum, &square_sum)
        merge_moments(&count, mean, m2, block_count, block_mean + deviation_sum / block_count,
                      square_sum - deviation_sum * deviation_sum / block_count)


def plane_moments(const floating[:, ::1] x, double[::1] mean, double[::1] m2, int num_threads):
    """mean[p] and m2[p] = sum((x[p] - mean[p])**2) of every row p of x (P, L), L >= 1."""
    cdef Py_ssize_t plane
    for plane in prange(x.shape[0], nogil=True, schedule="static", num_threads=num_threads):
        run_moments(x[plane], &mean[plane], &m2[plane])


def plane_affine(const floating[:, ::1] x, const double[::1] mean, const double[::1] scale,
                 const double[::1] shift, floating[:, ::1] out, int num_threads):
    """out[p] = (x[p] - mean[p]) * scale[p] + shift[p] for every row p of x (P, L)."""
    cdef Py_ssize_t plane, i, length = x.shape[1]
    cdef double centre, factor, offset
    for plane in prange(x.shape[0], nogil=True, schedule="static", num_threads=num_threads):
        centre = mean[plane]
        factor = scale[plane]
        offset = shift[plane]
        for i in range(length):
            out[plane, i] = <floating>((x[plane, i] - centre) * factor + offset)


cdef void lane_gradient_sums(const floating[::1] dout, const floating[::1] x, double centre,
                             double* dout_sum, double* centred_sum) noexcept nogil:
    """sum(dout) and sum(dout * (x - centre)) over a row, in double."""
    cdef double plain[LANES]
    cdef double weighted[LANES]
    cdef double plain_tail = 0, weighted_tail = 0
    cdef Py_ssize_t group, i, j, n = dout.shape[0], full = n - n % LANES
    for j in range(LANES):
        plain[j] = 0
        weighted[j] = 0
    for group in range(full // LANES):
        i = group * LANES
        for j in range(LANES):
            plain[j] += dout[i + j]
            weighted[j] += dout[i + j] * (x[i + j] - centre)
    for i in range(full, n):
        plain_tail += dout[i]
        weighted_tail += dout[i] * (x[i] - centre)
    dout_sum[0] = lane_total(plain) + plain_tail
    centred_sum[0] = lane_total(weighted) + weighted_tail


def plane_gradient_sums(const floating[:, ::1] dout, const floating[:, ::1] x, const double[::1] mean,
                        double[::1] dout_sum, double[::1] centred_sum, int num_threads):
    """dout_sum[p] = sum(dout[p]) and centred_sum[p] = sum(dout[p] * (x[p] - mean[p]))."""
    cdef Py_ssize_t plane
    for plane in prange(x.shape[0], nogil=True, schedule="static", num_threads=num_threads):
        lane_gradient_sums(dout[plane], x[plane], mean[plane], &dout_sum[plane], &centred_sum[plane])


def plane_input_gradient(const floating[:, ::1] dout, const floating[:, ::1] x, const double[::1] mean,
                         const double[::1] dout_scale, const double[::1] centred_scale,
                         const double[::1] shift, floating[:, ::1] dx, int num_threads):
    """dx[p] = dout_scale[p] * dout[p] + centred_scale[p] * (x[p] - mean[p]) + shift[p]."""
    cdef Py_ssize_t plane, i, length = x.shape[1]
    cdef double centre, a, b, c
    for plane in prange(x.shape[0], nogil=True, schedule="static", num_threads=num_threads):
        centre = mean[plane]
        a = dout_scale[plane]
        b = centred_scale[plane]
        c = shift[plane]
        if b == 0:  # statistics that do not depend on x (evaluation): x is not read
            for i in range(length):
                dx[plane, i] = <floating>(a * dout[plane, i] + c)
        else:
            for i in range(length):
                dx[plane, i] = <floating>(a * dout[plane, i] + b * (x[plane, i] - centre) + c)


# --- columns: an (N, D) batch norm, one statistic per column --------------------------------

cdef void column_block_moments(const floating[:, ::1] x, Py_ssize_t first, Py_ssize_t stop,
                               double[::1] mean, double[::1] m2) noexcept nogil:
    """Moments of columns [first, stop) (at most COLUMN_BLOCK), ROW_BLOCK rows at a time."""
    cdef double block_sum[COLUMN_BLOCK]
    cdef double deviations[COLUMN_BLOCK]
    cdef double squares[COLUMN_BLOCK]
    cdef Py_ssize_t rows = x.shape[0], width = stop - first, block, row_first, row_stop, row, j
    cdef double count = 0, block_count, ratio, cross, d, block_mean, delta
    for block in range((rows + ROW_BLOCK - 1) // ROW_BLOCK):
        row_first = block * ROW_BLOCK
        row_stop = row_first + ROW_BLOCK if row_first + ROW_BLOCK < rows else rows
        block_count = row_stop - row_first
        for j in range(width):
            block_sum[j] = 0
            deviations[j] = 0
            squares[j] = 0
        for row in range(row_first, row_stop):
            for j in range(width):
                block_sum[j] += x[row, first + j]
        for j in range(width):
            block_sum[j] = block_sum[j] / block_count  # now the block's mean
        for row in range(row_first, row_stop):
            for j in range(width):
                d = x[row, first + j] - block_sum[j]
                deviations[j] += d
                squares[j] += d * d
        # Chan's merge, with one count for every column
        ratio = block_count / (count + block_count)
        cross = count * ratio
        for j in range(width):
            block_mean = block_sum[j] + deviations[j] / block_count
            if count == 0:
                mean[first + j] = block_mean
                m2[first + j] = squares[j] - deviations[j] * deviations[j] / block_count
            else:
                delta = block_mean - mean[first + j]
                mean[first + j] = mean[first + j] + delta * ratio
                m2[first + j] = (m2[first + j] + squares[j] - deviations[j] * deviations[j] / block_count
                                 + delta * delta * cross)
        count = count + block_count


def column_moments(const floating[:, ::1] x, double[::1] mean, double[::1] m2, int num_threads):
    """mean[j] and m2[j] = sum((x[:, j] - mean[j])**2) of every column of x (N, D), N >= 1."""
    cdef Py_ssize_t block, first, columns = x.shape[1]
    cdef Py_ssize_t blocks = (columns + COLUMN_BLOCK - 1) // COLUMN_BLOCK
    for block in prange(blocks, nogil=True, schedule="static", num_threads=num_threads):
        first = block * COLUMN_BLOCK
        column_block_moments(x, first, first + COLUMN_BLOCK if first + COLUMN_BLOCK < columns else columns,
                             mean, m2)


def column_affine(const floating[:, ::1] x, const double[::1] mean, const double[::1] scale,
                  const double[::1] shift, floating[:, ::1] out, int num_threads):
    """out[:, j] = (x[:, j] - mean[j]) * scale[j] + shift[j]."""
    cdef Py_ssize_t row, j, columns = x.shape[1]
    for row in prange(x.shape[0], nogil=True, schedule="static", num_threads=num_threads):
        for j in range(columns):
            out[row, j] = <floating>((x[row, j] - mean[j]) * scale[j] + shift[j])


def column_gradient_sums(const floating[:, ::1] dout, const floating[:, ::1] x, const double[::1] mean,
                         double[::1] dout_sum, double[::1] centred_sum, int num_threads):
    """dout_sum[j] = sum(dout[:, j]), centred_sum[j] = sum(dout[:, j] * (x[:, j] - mean[j]))."""
    cdef Py_ssize_t block, first, stop, row, j, columns = x.shape[1], rows = x.shape[0]
    cdef Py_ssize_t blocks = (columns + COLUMN_BLOCK - 1) // COLUMN_BLOCK
    for block in prange(blocks, nogil=True, schedule="static", num_threads=num_threads):
        first = block * COLUMN_BLOCK
        stop = first + COLUMN_BLOCK if first + COLUMN_BLOCK < columns else columns
        for j in range(first, stop):
            dout_sum[j] = 0
            centred_sum[j] = 0
        for row in range(rows):
            for j in range(first, stop):
                dout_sum[j] += dout[row, j]
                centred_sum[j] += dout[row, j] * (x[row, j] - mean[j])


def column_input_gradient(const floating[:, ::1] dout, const floating[:, ::1] x, const double[::1] mean,
                          const double[::1] dout_scale, const double[::1] centred_scale,
                          const double[::1] shift, floating[:, ::1] dx, int num_threads):
    """dx[:, j] = dout_scale[j] * dout[:, j] + centred_scale[j] * (x[:, j] - mean[j]) + shift[j]."""
    cdef Py_ssize_t row, j, columns = x.shape[1]
    for row in prange(x.shape[0], nogil=True, schedule="static", num_threads=num_threads):
        for j in range(columns):
            dx[row, j] = <floating>(dout_scale[j] * dout[row, j]
                                    + centred_scale[j] * (x[row, j] - mean[j]) + shift[j])


# --- rows with an elementwise affine: layer norm --------------------------------------------

def row_affine(const floating[:, ::1] x, const double[::1] mean, const double[::1] inv_std,
               const floating[::1] weight, const floating[::1] bias, floating[:, ::1] out, int num_threads):
    """out[m, j] = (x[m, j] - mean[m]) * inv_std[m] * weight[j] + bias[j]."""
    cdef Py_ssize_t row, j, columns = x.shape[1]
    cdef double centre, factor
    for row in prange(x.shape[0], nogil=True, schedule="static", num_threads=num_threads):
        centre = mean[row]
        factor = inv_std[row]
        for j in range(columns):
            out[row, j] = <floating>((x[row, j] - centre) * factor * weight[j] + bias[j])


cdef void lane_weighted_sums(const floating[::1] dout, const floating[::1] x, const floating[::1] weight,
                             double centre, double* weighted_sum, double* centred_sum) noexcept nogil:
    """sum(weight * dout) and sum(weight * dout * (x - centre)) over a row, in double."""
    cdef double plain[LANES]
    cdef double centred[LANES]
    cdef double g, plain_tail = 0, centred_tail = 0
    cdef Py_ssize_t group, i, j, n = dout.shape[0], full = n - n % LANES
    for j in range(LANES):
        plain[j] = 0
        centred[j] = 0
    for group in range(full // LANES):
        i = group * LANES
        for j in range(LANES):
            g = <double>weight[i + j] * dout[i + j]
            plain[j] += g
            centred[j] += g * (x[i + j] - centre)
    for i in range(full, n):
        g = <double>weight[i] * dout[i]
        plain_tail += g
        centred_tail += g * (x[i] - centre)
    weighted_sum[0] = lane_total(plain) + plain_tail
    centred_sum[0] = lane_total(centred) + centred_tail


def row_backward(const floating[:, ::1] dout, const floating[:, ::1] x, const double[::1] mean,
                 const double[::1] inv_std, const floating[::1] weight, floating[:, ::1] dx,
                 double[:, ::1] weight_partial, double[:, ::1] bias_partial, bint need_dx, int num_threads):
    """Layer norm backward over rows of x (M, D).

    weight_partial and bias_partial (threads, D), zeroed by the caller, receive each
    thread's sums of dout * xhat and dout over its rows. With need_dx, dx is
    inv_std * (weight * dout - mean(weight * dout) - xhat * mean(weight * dout * xhat)).
    """
    cdef Py_ssize_t row, j, columns = x.shape[1]
    cdef int thread
    cdef double centre, factor, weighted_sum, centred_sum, offset, slope
    with nogil, parallel(num_threads=num_threads):
        thread = threadid()
        for row in prange(x.shape[0], schedule="static"):
            centre = mean[row]
            factor = inv_std[row]
            for j in range(columns):
                bias_partial[thread, j] += dout[row, j]
                weight_partial[thread, j] += dout[row, j] * ((x[row, j] - centre) * factor)
            if need_dx:
                # assigned here, so that each thread has its own (a variable only written
                # through its address would be shared by the threads of the prange)
                weighted_sum = 0
                centred_sum = 0
                lane_weighted_sums(dout[row], x[row], weight, centre, &weighted_sum, &centred_sum)
                offset = -factor * weighted_sum / columns
                slope = -factor * factor * factor * centred_sum / columns
                for j in range(columns):
                    dx[row, j] = <floating>(factor * weight[j] * dout[row, j]
                                            + slope * (x[row, j] - centre) + offset)
