# Row-major GEMM on top of the BLAS that SciPy ships (scipy.linalg.cython_blas), callable without the GIL.
from cython cimport floating
from scipy.linalg.cython_blas cimport dgemm, sgemm


cdef inline void gemm(bint trans_a, bint trans_b, int m, int n, int k,
                      floating alpha, const floating* a, int lda,
                      const floating* b, int ldb,
                      floating beta, floating* c, int ldc) noexcept nogil:
    """C (m, n) = alpha * op(A) @ op(B) + beta * C, every matrix row-major.

    lda, ldb, ldc are row strides in elements. BLAS is column-major, and a row-major
    matrix read column-major is its transpose, so this computes C^T = op(B)^T op(A)^T.
    """
    cdef char trans_a_char = b'T' if trans_a else b'N'
    cdef char trans_b_char = b'T' if trans_b else b'N'
    if floating is float:
        sgemm(&trans_b_char, &trans_a_char, &n, &m, &k, &alpha, <float*> b, &ldb,
              <float*> a, &lda, &beta, c, &ldc)
    else:
        dgemm(&trans_b_char, &trans_a_char, &n, &m, &k, &alpha, <double*> b, &ldb,
              <double*> a, &lda, &beta, c, &ldc)


cdef inline void gemm_by_columns(bint trans_a, int m, int n, int k,
                                 floating alpha, const floating* a, int lda,
                                 const floating* b, int ldb,
                                 floating beta, floating* c, int ldc, int columns) noexcept nogil:
    """gemm(trans_a, False, ...) as products of at most `columns` columns of B and C each
    (one product when columns is 0). `columns` is a multiple of 16: the pieces are evened
    out and kept at multiples of 16 columns, a whole number of 512-bit vectors of floats."""
    cdef int pieces, width, start = 0
    if columns <= 0 or n <= columns:
        gemm(trans_a, False, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
        return
    pieces = (n + columns - 1) // columns
    width = (n + pieces - 1) // pieces
    width = (width + 15) // 16 * 16
    while start < n:
        gemm(trans_a, False, m, min(width, n - start), k, alpha, a, lda, b + start, ldb,
             beta, c + start, ldc)
        start = start + width
