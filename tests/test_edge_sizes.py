"""Edge sizes: empty batches and channels, sizes past 32-bit index arithmetic, NaN and Inf.

Every result is compared with the reference twin (or, for the 32-bit limits, required to
be a clear ValueError raised before any large allocation).
"""
import json

import numpy as np
import pytest

import fastconv
from fastconv import reference
from fastconv._geometry import INDEX_MAX, window2d
from fastconv.reference.pool import argmax_dtype

DTYPES = (np.float32, np.float64)
TOLERANCE = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}


def _random(shape, dtype, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def assert_same(got, want):
    """Same shape and dtype; the same NaN and +-Inf positions; finite values equal to rounding."""
    assert got.shape == want.shape, (got.shape, want.shape)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    for name, test in (("NaN", np.isnan), ("+Inf", np.isposinf), ("-Inf", np.isneginf)):
        differ = test(got) != test(want)
        assert not differ.any(), (
            f"{name} positions differ at {np.argwhere(differ)[:5].tolist()}: got "
            f"{got[differ][:5]}, reference {want[differ][:5]}"
        )
    finite = np.isfinite(want)
    scale = max(1.0, float(np.max(np.abs(want[finite]), initial=0.0)))
    error = float(np.max(np.abs(got[finite].astype(np.float64) - want[finite]), initial=0.0))
    assert error <= TOLERANCE[want.dtype] * scale, f"max error {error:.3e} (scale {scale:.3e})"


def _conv_both(x, w, b, stride, padding, dout_fill=None, algorithm="auto"):
    """Compiled and reference forward + backward: ((out, dx, dw, db), (out, dx, dw, db))."""
    results = []
    for backend in ("cython", "reference"):
        out, cache = fastconv.conv2d_forward(
            x, w, b, stride, padding, backend=backend,
            algorithm=algorithm if backend == "cython" else "auto",
        )
        dout = _random(out.shape, x.dtype, 7) if dout_fill is None else dout_fill(out.shape, x.dtype)
        results.append((out,) + tuple(fastconv.conv2d_backward(dout, cache)))
    return results


# ---- zero-sized batch, channels, filters, height -------------------------------------

# (x shape, w shape, stride, padding, algorithm)
EMPTY_CONV_CASES = [
    ((0, 3, 8, 8), (4, 3, 3, 3), 1, 1, "auto"),          # no images
    ((0, 3, 8, 8), (4, 3, 3, 3), 1, 1, "im2col"),
    ((0, 16, 8, 8), (16, 16, 3, 3), 1, 1, "winograd"),
    ((0, 3, 8, 8), (4, 3, 1, 1), 1, 0, "gemm-1x1"),
    ((2, 0, 8, 8), (4, 0, 3, 3), 1, 1, "auto"),          # no channels: out is the bias
    ((2, 0, 8, 8), (4, 0, 3, 3), 1, 1, "winograd"),
    ((2, 0, 8, 8), (4, 0, 1, 1), 1, 0, "gemm-1x1"),
    ((2, 3, 8, 8), (0, 3, 3, 3), 2, 1, "auto"),          # no filters
    ((2, 3, 8, 8), (0, 3, 3, 3), 1, 1, "winograd"),
    ((2, 3, 0, 5), (4, 3, 3, 3), 1, 2, "auto"),          # no rows, padding makes room
    ((2, 3, 5, 0), (4, 3, 2, 3), (1, 2), (1, 2), "im2col"),
    ((0, 0, 4, 4), (0, 0, 2, 2), 1, 0, "auto"),          # nothing at all
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("x_shape, w_shape, stride, padding, algorithm", EMPTY_CONV_CASES)
def test_conv_with_empty_dimensions(x_shape, w_shape, stride, padding, algorithm, bias, dtype):
    x, w = _random(x_shape, dtype), _random(w_shape, dtype, 1)
    b = _random(w_shape[:1], dtype, 2) if bias else None
    window = window2d(x_shape, w_shape[2:], stride, padding)
    compiled, expected = _conv_both(x, w, b, stride, padding, algorithm=algorithm)
    out, dx, dw, db = compiled
    assert out.shape == (x_shape[0], w_shape[0], window.out_height, window.out_width)
    assert dx.shape == x_shape and dw.shape == w_shape
    assert db is None if b is None else db.shape == (w_shape[0],)
    for got, want in zip(compiled, expected):
        if want is None:
            assert got is None
        else:
            assert_same(got, want)
    if b is not None and x_shape[1] == 0:  # a convolution over no channels is its bias
        np.testing.assert_array_equal(out, np.broadcast_to(b.reshape(1, b.size, 1, 1), out.shape))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape, kernel, stride, padding", [
    ((0, 3, 6, 6), 3, 1, 1),
    ((2, 0, 6, 6), (2, 3), 1, 0),
    ((2, 3, 0, 4), 3, 1, 2),
    ((0, 0, 1, 1), 1, 1, 0),
])
def test_im2col_col2im_with_empty_dimensions(x_shape, kernel, stride, padding, dtype):
    x = _random(x_shape, dtype)
    cols = fastconv.im2col(x, kernel, stride, padding, backend="cython")
    expected = reference.im2col(x, kernel, stride, padding)
    window = window2d(x_shape, kernel, stride, padding)
    assert cols.shape == (x_shape[1] * window.kernel_height * window.kernel_width,
                          x_shape[0] * window.out_height * window.out_width)
    assert_same(cols, expected)
    y = _random(cols.shape, dtype, 3)
    assert_same(fastconv.col2im(y, x_shape, kernel, stride, padding, backend="cython"),
                reference.col2im(y, x_shape, kernel, stride, padding))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("x_shape", [(0, 3, 6, 6), (2, 0, 6, 6), (0, 0, 1, 1)])
def test_pooling_with_empty_batch_or_channels(x_shape, kind, dtype):
    x = _random(x_shape, dtype)
    forward = getattr(fastconv, f"{kind}_pool2d_forward")
    backward = getattr(fastconv, f"{kind}_pool2d_backward")
    results = []
    for backend in ("cython", "reference"):
        out, cache = forward(x, 3, 2, 1, backend=backend)
        results.append((out, backward(np.ones(out.shape, dtype), cache)))
    (out, dx), (expected, expected_dx) = results
    out_size = (x_shape[2] + 2 - 3) // 2 + 1
    assert out.shape == x_shape[:2] + (out_size, out_size)
    assert dx.shape == x_shape
    assert_same(out, expected)
    assert_same(dx, expected_dx)


# ---- sizes past 32-bit index arithmetic ------------------------------------------------
# The compiled conv hands sizes to BLAS as 32-bit ints. Past 2**31 - 1 it must refuse with a
# clear ValueError *before* copying its inputs or allocating its output. The inputs below
# are zero-stride views of one element, so they cost no memory; a child process with a
# 2 GiB address-space limit turns any large allocation into a MemoryError, which fails.

SIDE = 46341  # SIDE**2 = 2_147_488_281 > 2**31 - 1

OVERFLOW_CASES = {
    "H*W of x": "x = huge((1, 1, SIDE, SIDE)); w = np.ones((1, 1, 1, 1), np.float32); padding = 0",
    "C*KH*KW of w": "x = np.ones((1, 1, 1, 1), np.float32); w = huge((1, 1, SIDE, SIDE)); padding = SIDE // 2",
    "OH*OW of the output": "x = np.ones((1, 1, 1, 1), np.float32); w = np.ones((1, 1, 1, 1), np.float32); "
                          "padding = SIDE // 2",
    "F, the filters": "x = np.ones((1, 1, 1, 1), np.float32); w = huge((2**31, 1, 1, 1)); padding = 0",
}

OVERFLOW_CHILD = """
import json, resource
import numpy as np
import fastconv
resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30, 2 * 2**30))
SIDE = {side}

def huge(shape):
    return np.broadcast_to(np.ones(1, np.float32).reshape(1, 1, 1, 1), shape)

{setup}
try:
    out, _ = fastconv.conv2d_forward(x, w, None, 1, padding, backend="cython")
    outcome = {{"returned": list(out.shape)}}
except Exception as error:
    outcome = {{"raised": type(error).__name__, "message": str(error)}}
print("@@" + json.dumps(outcome))
"""


@pytest.mark.parametrize("case", list(OVERFLOW_CASES))
def test_32_bit_blas_sizes_are_refused_before_any_allocation(case, run_python):
    process = run_python(OVERFLOW_CHILD.format(side=SIDE, setup=OVERFLOW_CASES[case]), timeout=120)
    assert process.returncode == 0, f"child died ({process.returncode}): {process.stderr[-2000:]}"
    outcome = json.loads(process.stdout.split("@@")[-1])
    assert outcome.get("raised") == "ValueError", (
        f"expected a ValueError naming the 32-bit limit before any large allocation, got {outcome}"
    )
    assert "32-bit" in outcome["message"], outcome["message"]


def test_shape_arithmetic_is_exact_beyond_32_bits():
    """Output sizes are Python ints: nothing wraps at 2**31 or 2**32."""
    window = window2d((3, 5, 2**31 + 5, 2**32 + 1), (3, 2), (1, 2), (1, 0))
    assert window.out_height == 2**31 + 5 and window.out_width == 2**31
    assert isinstance(window.out_height, int) and isinstance(window.out_width, int)


def test_stride_and_padding_limits_sit_exactly_at_the_index_limit():
    window2d((1, 1, 1, 1), 1, INDEX_MAX, 0)  # the largest stride is fine
    with pytest.raises(ValueError, match="stride"):
        window2d((1, 1, 1, 1), 1, INDEX_MAX + 1, 0)
    # an output plane of INDEX_MAX elements is addressable, one more row is not
    window2d((1, 1, 1, 1), 1, 1, (0, (INDEX_MAX - 1) // 2))
    with pytest.raises(ValueError, match="padding"):
        window2d((1, 1, 2, 1), 1, 1, (0, (INDEX_MAX - 1) // 2))


def test_max_pool_argmax_switches_to_int64_past_2_31():
    assert argmax_dtype(window2d((1, 1, 2**31 - 1, 1), 1, 1, 0)) == np.int32
    assert argmax_dtype(window2d((1, 1, 2**16, 2**15), 1, 1, 0)) == np.int64  # exactly 2**31
    x = _random((1, 2, 4, 4), np.float32)
    _, cache = fastconv.max_pool2d_forward(x, 2)
    assert cache.argmax.dtype == np.int32


# ---- NaN and Inf ----------------------------------------------------------------------

def _with_specials(shape, dtype, seed):
    """Random values with NaN, +Inf and -Inf at the corners and a few random places."""
    a = _random(shape, dtype, seed)
    rng = np.random.default_rng(seed + 100)
    flat = a.reshape(-1)
    if flat.size:
        flat[0], flat[-1] = np.nan, np.inf
        for value in (np.nan, np.inf, -np.inf, np.inf):
            flat[rng.integers(flat.size)] = value
    return a


def _dout_with_specials(shape, dtype):
    return _with_specials(shape, dtype, 11)


# (x shape, w shape, stride, padding, algorithm)
SPECIAL_CONV_CASES = [
    ((2, 3, 7, 6), (4, 3, 3, 2), (2, 1), (1, 0), "im2col"),
    ((2, 3, 7, 6), (4, 3, 2, 3), 1, 1, "im2col"),
    ((2, 5, 6, 6), (3, 5, 1, 1), 1, 0, "gemm-1x1"),
    # a Winograd-sized layer: "auto" keeps the direct method when an input is not finite
    # (explicit Winograd may turn an infinity into NaN: see tests/test_conv.py)
    ((2, 16, 8, 8), (16, 16, 3, 3), 1, 1, "auto"),
]


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # NumPy on inf - inf
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape, w_shape, stride, padding, algorithm", SPECIAL_CONV_CASES)
@pytest.mark.parametrize("where", ["x", "w", "dout"])
def test_conv_nan_and_inf_propagate_as_in_the_reference(where, x_shape, w_shape, stride, padding,
                                                        algorithm, dtype):
    x = _with_specials(x_shape, dtype, 1) if where == "x" else _random(x_shape, dtype, 1)
    w = _with_specials(w_shape, dtype, 2) if where == "w" else _random(w_shape, dtype, 2)
    b = _random(w_shape[:1], dtype, 3)
    compiled, expected = _conv_both(
        x, w, b, stride, padding, algorithm=algorithm,
        dout_fill=_dout_with_specials if where == "dout" else None,
    )
    for name, got, want in zip(("out", "dx", "dw", "db"), compiled, expected):
        try:
            assert_same(got, want)
        except AssertionError as error:
            raise AssertionError(f"{name} ({algorithm}): {error}") from None


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("dtype", DTYPES)
def test_im2col_col2im_carry_nan_and_inf(dtype):
    x = _with_specials((2, 3, 6, 7), dtype, 4)
    cols = fastconv.im2col(x, (3, 2), (1, 2), 1, backend="cython")
    np.testing.assert_array_equal(cols, reference.im2col(x, (3, 2), (1, 2), 1))  # NaN == NaN here
    y = _with_specials(cols.shape, dtype, 5)
    assert_same(fastconv.col2im(y, x.shape, (3, 2), (1, 2), 1, backend="cython"),
                reference.col2im(y, x.shape, (3, 2), (1, 2), 1))


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("kernel, stride, padding", [(2, None, 0), (3, 1, 1), ((3, 2), (2, 1), (1, 0))])
def test_pooling_nan_and_inf_propagate_as_in_the_reference(kind, kernel, stride, padding, dtype):
    x = _with_specials((2, 3, 7, 6), dtype, 6)
    x[1, 2, 2:4, 2:4] = [[np.nan, 1.0], [np.nan, np.inf]]  # two NaN in one window
    x[0, 1] = -np.inf  # a whole plane of -Inf
    forward = getattr(fastconv, f"{kind}_pool2d_forward")
    backward = getattr(fastconv, f"{kind}_pool2d_backward")
    results = []
    for backend in ("cython", "reference"):
        out, cache = forward(x, kernel, stride, padding, backend=backend)
        results.append((out, backward(_with_specials(out.shape, dtype, 8), cache)))
    (out, dx), (expected, expected_dx) = results
    assert_same(out, expected)
    assert_same(dx, expected_dx)
    if kind == "max":  # the same element chosen: bit-identical
        np.testing.assert_array_equal(out, expected)
        np.testing.assert_array_equal(dx, expected_dx)
