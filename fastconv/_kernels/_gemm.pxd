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


cdef inline int even_piece(int total, int most) noexcept nogil:
    """The size of ceil(total / most) near-equal pieces of total (each at most `most`)."""
    cdef int pieces = (total + most - 1) // most
    return (total + pieces - 1) // pieces


cdef inline void gemm_blocked(bint trans_a, int m, int n, int k,
                              floating alpha, const floating* a, int lda,
                              const floating* b, int ldb,
                              floating beta, floating* c, int ldc,
                              int rows, int inner, int columns) noexcept nogil:
    """gemm(trans_a, False, ...) as a sum of products of at most rows x inner x columns each
    (0: that dimension is not split), so that every call stays on the BLAS's small-matrix
    path. Pieces are evened out; column pieces are kept at multiples of 16 (whole 512-bit
    vectors of floats) and `columns` must be one. Products over later pieces of the inner
    dimension add onto C (beta = 1)."""
    cdef int row_piece = m, inner_piece = k, column_piece = n
    cdef int i, j, l
    cdef const floating* a_piece
    if k == 0:  # C = beta * C
        gemm(trans_a, False, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
        return
    if rows > 0 and m > rows:
        row_piece = even_piece(m, rows)
    if inner > 0 and k > inner:
        inner_piece = even_piece(k, inner)
    if columns > 0 and n > columns:
        column_piece = (even_piece(n, columns) + 15) // 16 * 16
    j = 0
    while j < n:
        i = 0
        while i < m:
            l = 0
            while l < k:
                # op(A) rows i.., inner l..: A is (m, k) row-major, or (k, m) when transposed
                a_piece = a + (l * lda + i if trans_a else i * lda + l)
                gemm(trans_a, False, min(row_piece, m - i), min(column_piece, n - j),
                     min(inner_piece, k - l), alpha, a_piece, lda, b + l * ldb + j, ldb,
                     beta if l == 0 else 1, c + i * ldc + j, ldc)
                l = l + inner_piece
            i = i + row_piece
        j = j + column_piece
