"""Compiled elementwise kernels: ReLU / LeakyReLU and dropout with bit masks, softmax and SVM losses.

The Python front (fastconv/elementwise.py, fastconv/losses.py) checks every argument,
allocates every output and passes flat arrays in one memory order; these kernels trust them.
A mask holds one bit per element (bit i % 8 of byte i // 8: set where the element was
positive, or kept by dropout), 1/32 of a float32 array, so the backward reads little beyond
dout. Work is split into chunks of whole mask bytes, so no two threads write one byte.
Outputs may be the inputs themselves (in place): each element is read before it is written.
NaN: ReLU and LeakyReLU keep a NaN input as NaN in the forward, and its bit is clear (NaN > 0
is false), as in fastconv.reference.elementwise.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport exp, expf, log, logf
from libc.stdint cimport int64_t, uint8_t

# Elements per parallel task: a multiple of 8, large enough that a task outlasts its scheduling.
cdef enum:
    CHUNK = 1 << 15


# Eight elements (one mask byte) at a time. With SSE2 (every x86-64 CPU) the comparisons give
# their bits by movemask and the masks back by a table; elsewhere a plain loop. Results are the
# same either way: selections and single IEEE products, no other arithmetic. In place is safe:
# each group of elements is loaded before it is stored.
cdef extern from *:
    """
    #if defined(__SSE2__)
    #include <emmintrin.h>
    /* lanes of all ones where a bit is set: floats by 4 bits, doubles by 2 */
    static const unsigned int fastconv_lanes_f[16][4] = {
        {0u,0u,0u,0u}, {~0u,0u,0u,0u}, {0u,~0u,0u,0u}, {~0u,~0u,0u,0u},
        {0u,0u,~0u,0u}, {~0u,0u,~0u,0u}, {0u,~0u,~0u,0u}, {~0u,~0u,~0u,0u},
        {0u,0u,0u,~0u}, {~0u,0u,0u,~0u}, {0u,~0u,0u,~0u}, {~0u,~0u,0u,~0u},
        {0u,0u,~0u,~0u}, {~0u,0u,~0u,~0u}, {0u,~0u,~0u,~0u}, {~0u,~0u,~0u,~0u}};
    static const unsigned long long fastconv_lanes_d[4][2] = {
        {0ull,0ull}, {~0ull,0ull}, {0ull,~0ull}, {~0ull,~0ull}};
    #endif

    /* out = relu(x) (0 where not x > 0 unless NaN) or, leaky, x * (x > 0 ? 1 : slope);
       returns the bits of x > 0 */
    static inline unsigned char fastconv_relu8_f(const float* x, float* out, float slope, int leaky) {
    #if defined(__SSE2__)
        unsigned char bits = 0;
        int k;
        for (k = 0; k < 8; k += 4) {
            __m128 v = _mm_loadu_ps(x + k), zero = _mm_setzero_ps();
            __m128 positive = _mm_cmpgt_ps(v, zero);
            bits |= (unsigned char)(_mm_movemask_ps(positive) << k);
            if (leaky)
                v = _mm_mul_ps(v, _mm_or_ps(_mm_and_ps(positive, _mm_set1_ps(1.0f)),
                                            _mm_andnot_ps(positive, _mm_set1_ps(slope))));
            else
                v = _mm_andnot_ps(_mm_cmple_ps(v, zero), v);
            _mm_storeu_ps(out + k, v);
        }
        return bits;
    #else
        unsigned char bits = 0;
        int j;
        for (j = 0; j < 8; j++) {
            float v = x[j];
            int positive = v > 0;
            bits |= (unsigned char)(positive << j);
            out[j] = leaky ? v * (positive ? 1.0f : slope) : (v <= 0 ? 0.0f : v);
        }
        return bits;
    #endif
    }

    static inline unsigned char fastconv_relu8_d(const double* x, double* out, double slope, int leaky) {
    #if defined(__SSE2__)
        unsigned char bits = 0;
        int k;
        for (k = 0; k < 8; k += 2) {
            __m128d v = _mm_loadu_pd(x + k), zero = _mm_setzero_pd();
            __m128d positive = _mm_cmpgt_pd(v, zero);
            bits |= (unsigned char)(_mm_movemask_pd(positive) << k);
            if (leaky)
                v = _mm_mul_pd(v, _mm_or_pd(_mm_and_pd(positive, _mm_set1_pd(1.0)),
                                            _mm_andnot_pd(positive, _mm_set1_pd(slope))));
            else
                v = _mm_andnot_pd(_mm_cmple_pd(v, zero), v);
            _mm_storeu_pd(out + k, v);
        }
        return bits;
    #else
        unsigned char bits = 0;
        int j;
        for (j = 0; j < 8; j++) {
            double v = x[j];
            int positive = v > 0;
            bits |= (unsigned char)(positive << j);
            out[j] = leaky ? v * (positive ? 1.0 : slope) : (v <= 0 ? 0.0 : v);
        }
        return bits;
    #endif
    }

    /* product: out = a * (bit ? on : off); else out = bit ? a : 0 */
    static inline void fastconv_masked8_f(const float* a, unsigned char bits, float* out,
                                          float on, float off, int product) {
    #if defined(__SSE2__)
        int k;
        for (k = 0; k < 8; k += 4) {
            __m128 lanes = _mm_loadu_ps((const float*)fastconv_lanes_f[(bits >> k) & 15]);
            __m128 v = _mm_loadu_ps(a + k);
            if (product)
                v = _mm_mul_ps(v, _mm_or_ps(_mm_and_ps(lanes, _mm_set1_ps(on)),
                                            _mm_andnot_ps(lanes, _mm_set1_ps(off))));
            else
                v = _mm_and_ps(lanes, v);
            _mm_storeu_ps(out + k, v);
        }
    #else
        int j;
        for (j = 0; j < 8; j++) {
            int set = (bits >> j) & 1;
            out[j] = product ? a[j] * (set ? on : off) : (set ? a[j] : 0.0f);
        }
    #endif
    }

    static inline void fastconv_masked8_d(const double* a, unsigned char bits, double* out,
                                          double on, double off, int product) {
    #if defined(__SSE2__)
        int k;
        for (k = 0; k < 8; k += 2) {
            __m128d lanes = _mm_loadu_pd((const double*)fastconv_lanes_d[(bits >> k) & 3]);
            __m128d v = _mm_loadu_pd(a + k);
            if (product)
                v = _mm_mul_pd(v, _mm_or_pd(_mm_and_pd(lanes, _mm_set1_pd(on)),
                                            _mm_andnot_pd(lanes, _mm_set1_pd(off))));
            else
                v = _mm_and_pd(lanes, v);
            _mm_storeu_pd(out + k, v);
        }
    #else
        int j;
        for (j = 0; j < 8; j++) {
            int set = (bits >> j) & 1;
            out[j] = product ? a[j] * (set ? on : off) : (set ? a[j] : 0.0);
        }
    #endif
    }

    /* the bits of uniform >= p, eight numbers */
    static inline unsigned char fastconv_keep8(const double* uniform, double p) {
    #if defined(__SSE2__)
        unsigned char bits = 0;
        int k;
        __m128d threshold = _mm_set1_pd(p);
        for (k = 0; k < 8; k += 2)
            bits |= (unsigned char)(_mm_movemask_pd(_mm_cmpge_pd(_mm_loadu_pd(uniform + k), threshold)) << k);
        return bits;
    #else
        unsigned char bits = 0;
        int j;
        for (j = 0; j < 8; j++)
            bits |= (unsigned char)((uniform[j] >= p) << j);
        return bits;
    #endif
    }
    """
    uint8_t fastconv_relu8_f(const float* x, float* out, float slope, int leaky) noexcept nogil
    uint8_t fastconv_relu8_d(const double* x, double* out, double slope, int leaky) noexcept nogil
    void fastconv_masked8_f(const float* a, uint8_t bits, float* out, float on, float off,
                            int product) noexcept nogil
    void fastconv_masked8_d(const double* a, uint8_t bits, double* out, double on, double off,
                            int product) noexcept nogil
    uint8_t fastconv_keep8(const double* uniform, double p) noexcept nogil


cdef inline Py_ssize_t chunks_of(Py_ssize_t size) noexcept nogil:
    return (size + CHUNK - 1) // CHUNK


cdef inline uint8_t relu8(const floating* x, floating* out, floating slope, bint leaky) noexcept nogil:
    if floating is float:
        return fastconv_relu8_f(x, out, slope, leaky)
    else:
        return fastconv_relu8_d(x, out, slope, leaky)


cdef inline void masked8(const floating* a, uint8_t bits, floating* out, floating on, floating off,
                         bint product) noexcept nogil:
    if floating is float:
        fastconv_masked8_f(a, bits, out, on, off, product)
    else:
        fastconv_masked8_d(a, bits, out, on, off, product)


cdef inline void relu_chunk(const floating* x, floating* out, uint8_t* mask, Py_ssize_t start,
                            Py_ssize_t stop, floating slope, bint leaky) noexcept nogil:
    """out[i] and the mask bits of elements [start, stop); start is a multiple of 8."""
    cdef Py_ssize_t i = start, j
    cdef uint8_t bits
    cdef floating value
    cdef bint positive
    while i + 8 <= stop:
        mask[i // 8] = relu8(x + i, out + i, slope, leaky)
        i = i + 8
    if i < stop:  # the last, partial byte
        bits = 0
        for j in range(stop - i):
            value = x[i + j]
            positive = value > 0
            bits = bits | (<uint8_t>positive << j)
            if leaky:
                out[i + j] = value * (1 if positive else slope)
            else:
                out[i + j] = 0 if value <= 0 else value
        mask[i // 8] = bits


def relu_forward(const floating[::1] x, floating[::1] out, uint8_t[::1] mask, floating slope,
                 bint leaky, int num_threads):
    """out = relu(x) (leaky: x * (1 where x > 0, else slope)) and mask bits (x > 0).

    x, out : (size,), out may be x itself; mask : ((size + 7) // 8,).
    """
    cdef Py_ssize_t size = x.shape[0], task, start
    if size == 0:
        return
    for task in prange(chunks_of(size), nogil=True, schedule="dynamic", num_threads=num_threads):
        start = task * CHUNK
        relu_chunk(&x[0], &out[0], &mask[0], start, min(start + CHUNK, size), slope, leaky)


cdef inline void masked_chunk(const floating* a, const uint8_t* mask, floating* out,
                              Py_ssize_t start, Py_ssize_t stop, floating on, floating off,
                              bint product) noexcept nogil:
    """out[i] = a[i] * (on if the bit is set, else off) with `product`, else a[i] where the bit
    is set and 0 elsewhere; elements [start, stop), start a multiple of 8."""
    cdef Py_ssize_t i = start, j
    cdef bint set_bit
    while i + 8 <= stop:
        masked8(a + i, mask[i // 8], out + i, on, off, product)
        i = i + 8
    for j in range(stop - i):  # the last, partial byte
        set_bit = (mask[i // 8] >> j) & 1
        if product:
            out[i + j] = a[i + j] * (on if set_bit else off)
        else:
            out[i + j] = a[i + j] if set_bit else 0


def relu_backward(const floating[::1] dout, const uint8_t[::1] mask, floating[::1] dx,
                  floating slope, bint leaky, int num_threads):
    """dx = dout where the bit is set; elsewhere 0 (ReLU: even for a NaN dout, as np.where)
    or, leaky, dout * slope (where set, dout * 1). dx may be dout itself."""
    cdef Py_ssize_t size = dout.shape[0], task, start
    if size == 0:
        return
    for task in prange(chunks_of(size), nogil=True, schedule="dynamic", num_threads=num_threads):
        start = task * CHUNK
        masked_chunk(&dout[0], &mask[0], &dx[0], start, min(start + CHUNK, size), 1, slope, leaky)


cdef inline void dropout_chunk(const floating* x, const double* uniform, double p, floating scale,
                               floating* out, uint8_t* mask, Py_ssize_t start,
                               Py_ssize_t stop) noexcept nogil:
    cdef Py_ssize_t i = start, j
    cdef uint8_t bits
    while i + 8 <= stop:
        mask[i // 8] = fastconv_keep8(uniform + i, p)
        i = i + 8
    if i < stop:
        bits = 0
        for j in range(stop - i):
            bits = bits | (<uint8_t>(uniform[i + j] >= p) << j)
        mask[i // 8] = bits
    # x * 0 for a dropped element (not 0): a NaN or an infinity in x still shows
    masked_chunk(x, mask, out, start, stop, scale, 0, True)


def dropout_forward(const floating[::1] x, const double[::1] uniform, double p, floating scale,
                    floating[::1] out, uint8_t[::1] mask, int num_threads):
    """Keep element i where uniform[i] >= p: out = x * scale there, x * 0 elsewhere; the
    kept elements' mask bits set. x, uniform, out : (size,); mask : ((size + 7) // 8,)."""
    cdef Py_ssize_t size = x.shape[0], task, start
    if size == 0:
        return
    for task in prange(chunks_of(size), nogil=True, schedule="dynamic", num_threads=num_threads):
        start = task * CHUNK
        dropout_chunk(&x[0], &uniform[0], p, scale, &out[0], &mask[0], start,
                      min(start + CHUNK, size))


def dropout_backward(const floating[::1] dout, const uint8_t[::1] mask, floating scale,
                     floating[::1] dx, int num_threads):
    """dx = dout * scale where the bit is set, dout * 0 elsewhere."""
    cdef Py_ssize_t size = dout.shape[0], task, start
    if size == 0:
        return
    for task in prange(chunks_of(size), nogil=True, schedule="dynamic", num_threads=num_threads):
        start = task * CHUNK
        masked_chunk(&dout[0], &mask[0], &dx[0], start, min(start + CHUNK, size), scale, 0, True)


cdef inline floating exp_of(floating value) noexcept nogil:
    if floating is float:
        return expf(value)
    else:
        return exp(value)


cdef inline floating log_of(floating value) noexcept nogil:
    if floating is float:
        return logf(value)
    else:
        return log(value)


cdef double softmax_row(const floating[:, ::1] scores, Py_ssize_t row, Py_ssize_t label,
                        floating[:, ::1] dscores, floating count) noexcept nogil:
    """Row `row`'s -log softmax(scores)[label]; its gradient row / count (N) into dscores."""
    cdef Py_ssize_t classes = scores.shape[1], j
    cdef floating best = scores[row, 0], value, total = 0, log_norm
    for j in range(1, classes):
        value = scores[row, j]
        # a NaN takes over, as in np.max: the whole row becomes NaN
        if value > best or value != value:
            best = value
    for j in range(classes):
        value = exp_of(scores[row, j] - best)
        dscores[row, j] = value
        total = total + value
    log_norm = log_of(total)
    for j in range(classes):
        dscores[row, j] = exp_of((scores[row, j] - best) - log_norm)
    dscores[row, label] = dscores[row, label] - 1
    for j in range(classes):
        dscores[row, j] = dscores[row, j] / count
    return -((scores[row, label] - best) - log_norm)


def softmax_loss(const floating[:, ::1] scores, const Py_ssize_t[::1] labels,
                 floating[:, ::1] dscores, int num_threads):
    """Mean softmax cross-entropy of scores (N, C) against labels (N,) in [0, C); writes its
    gradient into dscores (N, C). Returns the loss (a float)."""
    cdef Py_ssize_t rows = scores.shape[0], row
    cdef double total = 0
    cdef floating count = rows
    for row in prange(rows, nogil=True, schedule="static", num_threads=num_threads):
        total += softmax_row(scores, row, labels[row], dscores, count)
    return total / rows


cdef double svm_row(const floating[:, ::1] scores, Py_ssize_t row, Py_ssize_t label,
                    floating margin, floating[:, ::1] dscores, floating count) noexcept nogil:
    """Row `row`'s hinge loss sum over j != label of max(0, s_j - s_label + margin); its
    (sub)gradient row / count (N) into dscores (0 at a kink, and for a NaN margin)."""
    cdef Py_ssize_t classes = scores.shape[1], j
    cdef floating correct = scores[row, label], value
    cdef double total = 0
    cdef Py_ssize_t violated = 0
    for j in range(classes):
        dscores[row, j] = 0
        if j == label:
            continue
        value = scores[row, j] - correct + margin
        if value > 0:
            total = total + value
            dscores[row, j] = 1 / count
            violated = violated + 1
        elif value != value:
            total = total + value  # a NaN margin makes the loss NaN, as np.maximum does
    dscores[row, label] = -(<floating>violated) / count
    return total


def svm_loss(const floating[:, ::1] scores, const Py_ssize_t[::1] labels, floating margin,
             floating[:, ::1] dscores, int num_threads):
    """Mean multiclass hinge loss of scores (N, C) against labels (N,); its gradient into
    dscores (N, C). Returns the loss."""
    cdef Py_ssize_t rows = scores.shape[0], row
    cdef double total = 0
    cdef floating count = rows
    for row in prange(rows, nogil=True, schedule="static", num_threads=num_threads):
        total += svm_row(scores, row, labels[row], margin, dscores, count)
    return total / rows
