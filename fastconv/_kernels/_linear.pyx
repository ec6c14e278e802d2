"""Compiled linear (fully connected) layer: out = x @ weight^T + bias and its gradients, as BLAS
GEMMs split over fastconv's own threads.

The Python front (fastconv/linear.py) allocates every output, checks every argument and holds
BLAS to one thread around these calls (fastconv._config.single_threaded_blas), as for the
convolutions: each OpenMP thread here runs single-threaded GEMMs on its own piece, so BLAS's
pool never starts, and never spins on a core afterwards while the next kernel wants it.
"""
from cython cimport floating
from cython.parallel cimport prange

from ._gemm cimport even_piece, gemm


cdef inline int piece_of(int total, int pieces) noexcept nogil:
    """A piece size splitting total into about `pieces` parts, rounded up to whole 16s
    (a 512-bit vector of floats) when that leaves pieces; at least 1."""
    cdef int size = even_piece(total, max(1, (total + pieces - 1) // pieces))
    if size > 16:
        size = (size + 15) // 16 * 16
    return max(1, size)


def forward(const floating[:, ::1] x, const floating[:, ::1] weight, const floating[::1] bias,
            floating[:, ::1] out, int num_threads):
    """out (N, F) = x (N, D) @ weight (F, D)^T [+ bias (F,)]: pieces of rows of out when N >= F,
    else of its columns, one per thread."""
    cdef int batch = x.shape[0], features = x.shape[1], outputs = weight.shape[0]
    cdef bint by_rows = batch >= outputs
    cdef int piece = piece_of(batch if by_rows else outputs, num_threads)
    cdef int tasks = ((batch if by_rows else outputs) + piece - 1) // piece
    cdef int task, start, size, row, column
    cdef bint has_bias = bias is not None
    cdef floating beta = 1 if has_bias else 0
    for task in prange(tasks, nogil=True, schedule="static", num_threads=num_threads):
        start = task * piece
        if by_rows:
            size = min(piece, batch - start)
            if has_bias:
                for row in range(start, start + size):
                    for column in range(outputs):
                        out[row, column] = bias[column]
            gemm(False, True, size, outputs, features, 1, &x[start, 0], features,
                 &weight[0, 0], features, beta, &out[start, 0], outputs)
        else:
            size = min(piece, outputs - start)
            if has_bias:
                for row in range(batch):
                    for column in range(start, start + size):
                        out[row, column] = bias[column]
            gemm(False, True, batch, size, features, 1, &x[0, 0], features,
                 &weight[start, 0], features, beta, &out[0, start], outputs)


def backward(const floating[:, ::1] dout, const floating[:, ::1] x,
             const floating[:, ::1] weight, floating[:, ::1] dx, floating[:, ::1] dweight,
             floating[::1] dbias, int num_threads):
    """dweight (F, D) = dout (N, F)^T @ x (N, D); dx (N, D) = dout @ weight (F, D), skipped
    when dx is None; dbias (F,) = dout summed over N, skipped when None. dweight and dx are
    split into pieces of columns (of D), one per thread each."""
    cdef int batch = x.shape[0], features = x.shape[1], outputs = weight.shape[0]
    cdef int piece = piece_of(features, num_threads)
    cdef int pieces = (features + piece - 1) // piece
    cdef bint with_dx = dx is not None
    cdef int task, start, size, row, column
    if dbias is not None:
        for column in range(outputs):
            dbias[column] = 0
        for row in range(batch):
            for column in range(outputs):
                dbias[column] += dout[row, column]
    for task in prange(2 * pieces if with_dx else pieces, nogil=True, schedule="static",
                       num_threads=num_threads):
        start = (task % pieces) * piece
        size = min(piece, features - start)
        if task < pieces:
            gemm(True, False, outputs, size, batch, 1, &dout[0, 0], outputs, &x[0, start],
                 features, 0, &dweight[0, start], features)
        else:
            gemm(False, False, batch, size, outputs, 1, &dout[0, 0], outputs,
                 &weight[0, start], features, 0, &dx[0, start], features)
