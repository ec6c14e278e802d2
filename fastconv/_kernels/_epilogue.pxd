# The arithmetic of a convolution's epilogue (fastconv/_epilogue.py), shared by the kernels
# that run it on their output blocks (_conv.pyx, _winograd.pyx).
from cython cimport floating


cdef inline void epilogue_row(floating* row, Py_ssize_t count, bint affine, double centre,
                              double factor, double offset, bint relu) noexcept nogil:
    """row[:count] in place: with `affine` an evaluation-mode batch norm's map,
    (v - centre) * factor + offset in double, rounded once (as _norm.plane_affine); then with
    `relu` v <= 0 -> 0, which keeps NaN and turns -0 into 0 (as _elementwise.relu_forward).
    One branch-free loop per case, so each vectorises."""
    cdef Py_ssize_t j
    cdef floating value
    if not affine:
        if relu:
            for j in range(count):
                value = row[j]
                row[j] = 0 if value <= 0 else value
        return
    if relu:
        for j in range(count):
            value = <floating>((row[j] - centre) * factor + offset)
            row[j] = 0 if value <= 0 else value
    else:
        for j in range(count):
            row[j] = <floating>((row[j] - centre) * factor + offset)


cdef inline void epilogue_filter(floating* row, Py_ssize_t count, Py_ssize_t f,
                                 const double[::1] mean, const double[::1] scale,
                                 const double[::1] shift, bint relu) noexcept nogil:
    """epilogue_row on a row of filter f's output: filter f's batch norm map when `mean` is
    not None, then a ReLU when `relu`."""
    if mean is None:
        epilogue_row(row, count, False, 0, 1, 0, relu)
    else:
        epilogue_row(row, count, True, mean[f], scale[f], shift[f], relu)
