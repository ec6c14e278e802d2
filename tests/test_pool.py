"""max/avg pool2d forward and backward: compiled vs reference, gradients, ties, NaN, torch, errors."""
import copy
import pickle

import numpy as np
import pytest

import fastconv
import fastconv._tuning
from fastconv import reference
from fastconv.reference import pool as reference_pool

from _helpers import LAYOUTS, assert_close, numerical_gradient, rel_error, with_layout

DTYPES = [np.float32, np.float64]
KINDS = ["max", "avg"]

# (x shape, kernel_size, stride, padding), each probing an edge case its comment names
CASES = [
    ((2, 3, 8, 8), 2, None, 0),                  # 2x2/2 tiling (the unrolled path)
    ((2, 3, 9, 11), 2, 2, 0),                    # 2x2/2 that does not tile: last row/column unused
    ((2, 3, 8, 8), 2, 2, 1),                     # 2x2/2 with padding (general path)
    ((2, 3, 9, 9), 3, 2, 1),                     # 3x3/2 overlapping, padded
    ((2, 4, 11, 10), 3, 2, 0),                   # 3x3/2 overlapping, no padding
    ((1, 1, 7, 7), 3, 1, 1),                     # 3x3/1: every input in up to 9 windows
    ((2, 2, 10, 7), (3, 2), (1, 2), (1, 1)),     # non-square window, strides differ
    ((1, 3, 11, 13), (2, 4), (3, 1), (0, 2)),    # non-square, padding only in width
    ((3, 1, 5, 6), (5, 6), 1, 0),                # global pooling: one window
    ((2, 3, 4, 4), 4, 3, 2),                     # padding exactly half the window
    ((1, 1, 1, 1), 1, 1, 0),                     # 1x1 everything
    ((4, 2, 13, 8), 3, (2, 3), (0, 1)),
    ((2, 2, 6, 5), (1, 3), (2, 1), (0, 1)),      # one-row windows
    ((3, 2, 12, 1), (3, 1), (2, 1), (1, 0)),     # width 1
    ((1, 5, 9, 9), 5, 4, 2),                     # big stride, windows do not tile
    ((2, 3, 10, 9), 3, 2, (1, 0)),               # unrolled 3x3/2: padded top/bottom, odd width
    ((2, 2, 7, 6), 2, 2, (1, 0)),                # unrolled 2x2/2: padded top/bottom only
    ((2, 2, 2, 3), 3, 1, 1),                     # unrolled 3x3/1: no window wholly inside
    ((1, 2, 3, 2), 3, 2, 1),                     # unrolled 3x3/2: no window wholly inside
    ((1, 2, 12, 5), 3, 1, (0, 1)),               # unrolled 3x3/1: padded left/right only
]


def _forward(kind):
    return getattr(fastconv, f"{kind}_pool2d_forward"), getattr(fastconv, f"{kind}_pool2d_backward")


def _reference(kind):
    return getattr(reference, f"{kind}_pool2d_forward"), getattr(reference, f"{kind}_pool2d_backward")


def _assert_same(kind, got, want):
    """Max pooling picks elements and sums dout in the same order on both paths: bit-equal."""
    if kind == "max":
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    else:
        assert_close(got, want)


def _check_compiled_against_reference(kind, x, kernel_size, stride, padding, seed=1):
    forward, backward = _forward(kind)
    ref_forward, ref_backward = _reference(kind)
    out, cache = forward(x, kernel_size, stride, padding, backend="cython")
    expected, ref_cache = ref_forward(x, kernel_size, stride, padding)
    assert out.shape == expected.shape and out.dtype == x.dtype
    _assert_same(kind, out, expected)
    if kind == "max":
        np.testing.assert_array_equal(cache.argmax, ref_cache.argmax)
    dout = np.random.default_rng(seed).standard_normal(out.shape).astype(x.dtype)
    dx = backward(dout, cache)
    assert dx.shape == x.shape and dx.dtype == x.dtype
    _assert_same(kind, dx, ref_backward(dout, ref_cache))


# ---------------------------------------------------------------- compiled vs reference

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("x_shape, kernel_size, stride, padding", CASES)
def test_compiled_matches_reference(x_shape, kernel_size, stride, padding, kind, dtype):
    x = np.random.default_rng(0).standard_normal(x_shape).astype(dtype)
    _check_compiled_against_reference(kind, x, kernel_size, stride, padding)


def _random_cases(count, seed):
    """Random valid (shape, kernel, stride, padding), different in h and w."""
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        height, width = (int(v) for v in rng.integers(1, 14, size=2))
        kernel = tuple(int(rng.integers(1, min(size, 6) + 1)) for size in (height, width))
        stride = tuple(int(v) for v in rng.integers(1, 4, size=2))
        padding = tuple(int(rng.integers(0, k // 2 + 1)) for k in kernel)
        shape = (int(rng.integers(1, 4)), int(rng.integers(1, 4)), height, width)
        cases.append((shape, kernel, stride, padding))
    return cases


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
def test_compiled_matches_reference_on_random_geometries(kind, dtype):
    for index, (shape, kernel, stride, padding) in enumerate(_random_cases(60, seed=7)):
        x = np.random.default_rng(index).standard_normal(shape).astype(dtype)
        _check_compiled_against_reference(kind, x, kernel, stride, padding, seed=index)


@pytest.mark.parametrize("kind", KINDS)
def test_output_size_formula(kind):
    forward, _ = _forward(kind)
    for shape, kernel, stride, padding in _random_cases(40, seed=3):
        out, _ = forward(np.ones(shape), kernel, stride, padding)
        kh, kw = kernel
        sh, sw = stride
        ph, pw = padding
        expected = (shape[0], shape[1], (shape[2] + 2 * ph - kh) // sh + 1, (shape[3] + 2 * pw - kw) // sw + 1)
        assert out.shape == expected


@pytest.mark.parametrize("kind", KINDS)
def test_stride_defaults_to_kernel_size(kind):
    forward, _ = _forward(kind)
    x = np.random.default_rng(0).standard_normal((2, 3, 9, 10))
    default, _ = forward(x, (3, 2))
    explicit, _ = forward(x, (3, 2), (3, 2))
    assert default.shape == (2, 3, 3, 5)
    np.testing.assert_array_equal(default, explicit)


@pytest.mark.parametrize("kind", KINDS)
def test_many_planes_and_threads_agree(kind, monkeypatch):
    """Above the parallel threshold, 1 and 2 threads give the same bits as the reference."""
    monkeypatch.setattr(fastconv._tuning, "POOL_PARALLEL_MIN_ELEMENTS", 0)  # small input, still parallel
    forward, backward = _forward(kind)
    x = np.random.default_rng(5).standard_normal((6, 7, 30, 29)).astype(np.float32)
    dout = None
    results = []
    for threads in (1, 2):
        monkeypatch.setattr(fastconv._settings, "_num_threads", threads)
        out, cache = forward(x, 3, 2, 1, backend="cython")
        assert fastconv.pool._threads(cache.window) == threads
        if dout is None:
            dout = np.random.default_rng(6).standard_normal(out.shape).astype(np.float32)
        results.append((out, backward(dout, cache)))
    for got, want in zip(results[0], results[1]):
        np.testing.assert_array_equal(got, want)
    _check_compiled_against_reference(kind, x, 3, 2, 1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel_size, stride, padding", [(2, 2, 0), (3, 2, 1), ((2, 3), (3, 1), (1, 0))])
def test_kernels_write_every_output_element(dtype, kernel_size, stride, padding):
    """Call the kernels on outputs pre-filled with NaN / -1: no element may be left unwritten."""
    kernels = fastconv._compiled.pool
    x = np.random.default_rng(0).standard_normal((2, 3, 10, 9)).astype(dtype)
    window = fastconv._validate.pool_inputs(x, 2, kernel_size, stride, padding)
    full = window.as_3d()
    planes = x.reshape(6, 1, 10, 9)
    out = np.full((6, 1, window.out_height, window.out_width), np.nan, dtype)
    argmax = np.full(out.shape, -1, np.int32)
    kernels.max_forward(planes, out, argmax, full.kernel, full.stride, full.padding, full.dilation,
                        np.empty((2, 1, 1), dtype), np.empty((2, 1, 1), np.int32),
                        np.empty((1, 1, 1, 1), dtype), 2)
    assert not np.isnan(out).any() and (argmax >= 0).all()
    dout = np.ones(out.shape, dtype)
    dx = np.full((6, 90), np.nan, dtype)
    kernels.max_backward(dout.reshape(6, -1), argmax.reshape(6, -1), dx, 2)
    assert not np.isnan(dx).any() and dx.sum() == dout.size
    # scratch full of NaN too: the kernels may read only what they wrote there
    padded = fastconv.pool._padded_width(window)
    kernels.avg_forward(planes, out, full.kernel, full.stride, full.padding, True, 0,
                        np.full((2, padded), np.nan, dtype), np.full(out.shape[-1], np.nan, dtype), 2)
    assert not np.isnan(out).any()
    dx = np.full((6, 1, 10, 9), np.nan, dtype)
    kernels.avg_backward(dout, dx, full.kernel, full.stride, full.padding, True, 0,
                         np.full((2, padded + out.shape[-1] + 2 * full.kernel[-1]), np.nan, dtype),
                         np.full(out.shape[-1], np.nan, dtype), 2)
    assert not np.isnan(dx).any()


def test_int64_argmax_path(monkeypatch):
    """Planes of 2**31 elements or more store int64 argmax; force that kernel on small input."""
    monkeypatch.setattr(reference_pool, "argmax_dtype", lambda window: np.dtype(np.int64))
    for dtype in DTYPES:
        for shape, kernel, stride, padding in [((2, 3, 8, 8), 2, 2, 0), ((2, 3, 9, 7), 3, 2, 1)]:
            x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
            out, cache = fastconv.max_pool2d_forward(x, kernel, stride, padding, backend="cython")
            assert cache.argmax.dtype == np.int64
            _check_compiled_against_reference("max", x, kernel, stride, padding)


def test_argmax_is_int32_for_ordinary_planes():
    _, cache = fastconv.max_pool2d_forward(np.zeros((1, 1, 4, 4)), 2)
    assert cache.argmax.dtype == np.int32


@pytest.mark.parametrize("backend", ["cython", "reference"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", [(0, 3, 8, 8), (2, 0, 8, 8), (0, 0, 8, 8)])
def test_zero_batch_or_channels_give_empty_results(shape, kind, backend):
    forward, backward = _forward(kind)
    x = np.zeros(shape, dtype=np.float32)
    out, cache = forward(x, 3, 2, 1, backend=backend)
    assert out.shape == (shape[0], shape[1], 4, 4) and out.dtype == np.float32
    dx = backward(np.zeros(out.shape, np.float32), cache)
    assert dx.shape == shape and dx.dtype == np.float32


# ---------------------------------------------------------------- layouts and dtypes

@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("backend", ["cython", "reference"])
def test_any_layout_gives_identical_results_and_inputs_untouched(backend, kind, layout, dtype):
    forward, backward = _forward(kind)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 4, 9, 8)).astype(dtype)
    out, cache = forward(x, (3, 2), (2, 1), (1, 0), backend=backend)
    dout = rng.standard_normal(out.shape).astype(dtype)
    dx = backward(dout, cache)

    layout_x, layout_dout = with_layout(x, layout), with_layout(dout, layout)
    x_before, dout_before = layout_x.copy(), layout_dout.copy()
    out2, cache2 = forward(layout_x, (3, 2), (2, 1), (1, 0), backend=backend)
    dx2 = backward(layout_dout, cache2)
    np.testing.assert_array_equal(out2, out)
    np.testing.assert_array_equal(dx2, dx)
    assert out2.dtype == dx2.dtype == dtype
    np.testing.assert_array_equal(layout_x, x_before)
    np.testing.assert_array_equal(layout_dout, dout_before)
    assert not np.shares_memory(out2, layout_x) and not np.shares_memory(dx2, layout_dout)


@pytest.mark.parametrize("kind", KINDS)
def test_cache_of_one_backend_works_with_the_others_backward(kind):
    forward, backward = _forward(kind)
    _, ref_backward = _reference(kind)
    x = np.random.default_rng(0).standard_normal((2, 3, 9, 9))
    out, cache = forward(x, 3, 2, 1, backend="cython")
    dout = np.random.default_rng(1).standard_normal(out.shape)
    _assert_same(kind, ref_backward(dout, cache), backward(dout, cache))


# ---------------------------------------------------------------- gradients

def _distinct_values(shape, seed):
    """float64 input whose values are at least 0.01 apart: no window has a near-tie."""
    rng = np.random.default_rng(seed)
    size = int(np.prod(shape))
    return (rng.permutation(size) * 0.01 - size * 0.005).reshape(shape)


GRADIENT_CASES = [
    ((2, 2, 6, 6), 2, 2, 0),
    ((1, 2, 7, 7), 3, 2, 1),
    ((1, 1, 6, 5), 3, 1, 1),
    ((2, 1, 7, 8), (3, 2), (1, 3), (1, 1)),
    ((1, 2, 5, 7), (2, 4), (3, 2), (1, 2)),
]


@pytest.mark.parametrize("backend", ["cython", "reference"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("x_shape, kernel_size, stride, padding", GRADIENT_CASES)
def test_gradient_matches_centred_differences(x_shape, kernel_size, stride, padding, kind, backend):
    forward, backward = _forward(kind)
    x = _distinct_values(x_shape, seed=0)
    out, cache = forward(x, kernel_size, stride, padding, backend=backend)
    dout = np.random.default_rng(1).standard_normal(out.shape)
    dx = backward(dout, cache)
    numeric = numerical_gradient(
        lambda v: forward(v, kernel_size, stride, padding, backend=backend)[0], x.copy(), dout, h=1e-4
    )
    assert rel_error(dx, numeric) < 1e-8
    assert np.any(dx != 0)


# ---------------------------------------------------------------- ties, NaN, infinities, padding

@pytest.mark.parametrize("backend", ["cython", "reference"])
def test_tie_goes_to_first_maximum_in_row_major_order(backend):
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 0, 1] = x[0, 0, 1, 0] = 5.0           # window (0, 0): tie between (0, 1) and (1, 0)
    x[0, 0, 3, 2] = x[0, 0, 3, 3] = 7.0           # window (1, 1): tie along the bottom row
    x[0, 0, 0, 3] = -0.0                          # window (0, 1): all zeros, -0.0 == 0.0
    x[0, 0, 2:, :2] = 1.0                         # window (1, 0): all equal
    out, cache = fastconv.max_pool2d_forward(x, 2, backend=backend)
    np.testing.assert_array_equal(out, [[[[5.0, 0.0], [1.0, 7.0]]]])
    dx = fastconv.max_pool2d_backward(np.ones_like(out), cache)
    expected = np.zeros_like(x)
    expected[0, 0, 0, 1] = expected[0, 0, 0, 2] = expected[0, 0, 2, 0] = expected[0, 0, 3, 2] = 1.0
    np.testing.assert_array_equal(dx, expected)


@pytest.mark.parametrize("backend", ["cython", "reference"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_constant_input_with_overlap_and_padding(backend, dtype):
    """Every window of a constant plane picks its first element; padding never wins (x < 0)."""
    x = np.full((1, 2, 5, 6), -3.0, dtype=dtype)
    out, cache = fastconv.max_pool2d_forward(x, 3, 1, 1, backend=backend)
    np.testing.assert_array_equal(out, np.full((1, 2, 5, 6), -3.0, dtype=dtype))
    dx = fastconv.max_pool2d_backward(np.ones_like(out), cache)
    expected = np.zeros_like(x)
    for oh in range(5):
        for ow in range(6):
            expected[:, :, max(oh - 1, 0), max(ow - 1, 0)] += 1
    np.testing.assert_array_equal(dx, expected)


@pytest.mark.parametrize("backend", ["cython", "reference"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel_size, stride", [(2, 2), (3, 2), ((2, 3), (2, 1))])
def test_padding_never_wins_a_max(backend, dtype, kernel_size, stride):
    x = -1.0 - np.random.default_rng(0).random((2, 3, 7, 8)).astype(dtype)
    out, cache = fastconv.max_pool2d_forward(x, kernel_size, stride, 1, backend=backend)
    assert np.all(out < 0)
    unpadded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    expected, _ = reference.max_pool2d_forward(unpadded, kernel_size, stride, 0)
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("backend", ["cython", "reference"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_gives_nan_and_gradient_goes_to_last_nan(backend, dtype):
    x = np.arange(32, dtype=dtype).reshape(1, 2, 4, 4)
    x[0, 0, 0, 0] = np.nan                         # window (0, 0): NaN first, max later
    x[0, 0, 0, 3] = x[0, 0, 1, 2] = np.nan         # window (0, 1): two NaN -> (1, 2) gets it
    x[0, 0, 3, 3] = np.nan                         # window (1, 1): NaN is the last element
    x[0, 1, 2, 2] = np.inf                         # window (1, 1) of channel 1: +inf, no NaN
    out, cache = fastconv.max_pool2d_forward(x, 2, backend=backend)
    assert np.isnan(out[0, 0, 0, 0]) and np.isnan(out[0, 0, 0, 1]) and np.isnan(out[0, 0, 1, 1])
    assert out[0, 0, 1, 0] == 13 and out[0, 1, 1, 1] == np.inf
    dx = fastconv.max_pool2d_backward(np.ones_like(out), cache)
    expected = np.zeros_like(x)
    expected[0, 0, 0, 0] = expected[0, 0, 1, 2] = expected[0, 0, 3, 1] = expected[0, 0, 3, 3] = 1
    expected[0, 1, 1, 1] = expected[0, 1, 1, 3] = expected[0, 1, 3, 1] = expected[0, 1, 2, 2] = 1
    np.testing.assert_array_equal(dx, expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel_size, stride, padding", [(2, 2, 0), (3, 2, 1), (3, 1, 1), ((2, 3), (1, 2), (1, 1))])
def test_nan_and_infinities_agree_with_reference(dtype, kernel_size, stride, padding):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 9, 10)).astype(dtype)
    specials = np.array([np.nan, np.inf, -np.inf], dtype=dtype)
    picks = rng.random(x.shape)
    x[picks < 0.08] = specials[rng.integers(0, 3, size=int(np.sum(picks < 0.08)))]
    x[1, 2] = -np.inf                              # a whole plane of -inf
    _check_compiled_against_reference("max", x, kernel_size, stride, padding)
    with np.errstate(invalid="ignore"):  # inf + -inf in a window sum
        expected, _ = reference.avg_pool2d_forward(x, kernel_size, stride, padding)
        out, _ = fastconv.avg_pool2d_forward(x, kernel_size, stride, padding, backend="cython")
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    np.testing.assert_array_equal(out[~np.isnan(out)] == np.inf, expected[~np.isnan(expected)] == np.inf)


@pytest.mark.parametrize("backend", ["cython", "reference"])
def test_average_counts_padding_as_zero(backend):
    x = np.arange(1.0, 17.0).reshape(1, 1, 4, 4)
    out, cache = fastconv.avg_pool2d_forward(x, 3, 2, 1, backend=backend)
    # windows cover padded rows/cols [-1, 2) and [1, 4); the divisor is always 9
    expected = np.array([[1 + 2 + 5 + 6, 3 + 4 + 7 + 8 + 2 + 6], [9 + 10 + 13 + 14 + 5 + 6, 0]]) / 9.0
    expected[1, 1] = (6 + 7 + 8 + 10 + 11 + 12 + 14 + 15 + 16) / 9.0
    np.testing.assert_allclose(out[0, 0], expected, rtol=1e-14)
    dx = fastconv.avg_pool2d_backward(np.ones_like(out), cache)
    # how many windows cover each input, divided by 9
    coverage = np.array([[1, 2, 1, 1], [2, 4, 2, 2], [1, 2, 1, 1], [1, 2, 1, 1]]) / 9.0
    np.testing.assert_allclose(dx[0, 0], coverage, rtol=1e-14)


# ---------------------------------------------------------------- against torch

TORCH_CASES = CASES + [
    ((3, 5, 16, 16), 3, 1, 1),
    ((2, 4, 15, 17), 3, 2, 0),
    ((2, 3, 10, 12), (4, 2), (2, 3), (2, 1)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("x_shape, kernel_size, stride, padding", TORCH_CASES)
def test_matches_torch_values_and_gradients(x_shape, kernel_size, stride, padding, kind, dtype):
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    forward, backward = _forward(kind)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(dtype)
    out, cache = forward(x, kernel_size, stride, padding)
    dout = rng.standard_normal(out.shape).astype(dtype)
    dx = backward(dout, cache)

    leaf = torch.tensor(x, requires_grad=True)
    pool = functional.max_pool2d if kind == "max" else functional.avg_pool2d
    torch_stride = kernel_size if stride is None else stride
    torch_out = pool(leaf, kernel_size, torch_stride, padding)
    torch_out.backward(torch.from_numpy(dout))
    assert_close(out, torch_out.detach().numpy())
    assert_close(dx, leaf.grad.numpy())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel_size, stride, padding", [(2, 2, 0), (3, 2, 1), (3, 1, 1)])
def test_ties_and_nan_match_torch(dtype, kernel_size, stride, padding):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    x = rng.integers(0, 3, size=(2, 3, 9, 8)).astype(dtype)   # many ties
    x[rng.random(x.shape) < 0.05] = np.nan
    out, cache = fastconv.max_pool2d_forward(x, kernel_size, stride, padding)
    dout = rng.standard_normal(out.shape).astype(dtype)
    dx = fastconv.max_pool2d_backward(dout, cache)
    leaf = torch.tensor(x, requires_grad=True)
    torch_out, indices = torch.nn.functional.max_pool2d(
        leaf, kernel_size, stride, padding, return_indices=True
    )
    torch_out.backward(torch.from_numpy(dout))
    np.testing.assert_array_equal(out, torch_out.detach().numpy())
    np.testing.assert_array_equal(cache.argmax, indices.numpy())
    assert_close(dx, leaf.grad.numpy())


# ---------------------------------------------------------------- bad input

MODULES = [
    pytest.param(fastconv, {"backend": "cython"}, id="cython"),
    pytest.param(fastconv, {"backend": "reference"}, id="front-reference"),
    pytest.param(reference, {}, id="reference"),
]


def _functions(module, kind):
    return getattr(module, f"{kind}_pool2d_forward"), getattr(module, f"{kind}_pool2d_backward")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("module, options", MODULES)
@pytest.mark.parametrize(
    "x, error, words",
    [
        (np.zeros((3, 8, 8)), ValueError, "4-D"),
        (np.zeros((1, 2, 3, 8, 8)), ValueError, "4-D"),
        (np.zeros((1, 2, 8, 8), dtype=np.int64), TypeError, "dtype"),
        (np.zeros((1, 2, 8, 8), dtype=np.float16), TypeError, "dtype"),
        (np.zeros((1, 2, 8, 8), dtype=np.complex128), TypeError, "dtype"),
        (np.zeros((1, 2, 8, 8), dtype=object), TypeError, "dtype"),
        (np.zeros((1, 2, 8, 8), dtype=bool), TypeError, "dtype"),
        (np.zeros((1, 2, 8, 8)).tolist(), TypeError, "ndarray"),
        (None, TypeError, "ndarray"),
        (np.zeros((1, 2, 0, 8)), ValueError, "non-zero height"),
    ],
)
def test_bad_x(module, options, kind, x, error, words):
    forward, _ = _functions(module, kind)
    with pytest.raises(error, match=words):
        forward(x, 2, **options)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("module, options", MODULES)
@pytest.mark.parametrize(
    "kernel_size, stride, padding, error, words",
    [
        (0, None, 0, ValueError, "kernel_size"),
        (-2, None, 0, ValueError, "kernel_size"),
        ((2, 0), None, 0, ValueError, "kernel_size"),
        (2.0, None, 0, TypeError, "kernel_size"),
        (True, None, 0, TypeError, "kernel_size"),
        ("2", None, 0, TypeError, "kernel_size"),
        ((2,), None, 0, ValueError, "kernel_size"),
        ((2, 2, 2), None, 0, ValueError, "kernel_size"),
        (None, None, 0, TypeError, "kernel_size"),
        (2, 0, 0, ValueError, "stride"),
        (2, (1, -1), 0, ValueError, "stride"),
        (2, 1.5, 0, TypeError, "stride"),
        (2, 2, -1, ValueError, "padding"),
        (2, 2, 2, ValueError, "half"),            # padding > kernel / 2
        (3, 2, (1, 2), ValueError, "half"),
        ((4, 2), 2, (2, 2), ValueError, "half"),
        (2, 2, None, TypeError, "padding"),
        (9, 1, 0, ValueError, "larger than the padded input"),
        ((2, 10), 1, (0, 1), ValueError, "larger than the padded input"),
    ],
)
def test_bad_window_arguments(module, options, kind, kernel_size, stride, padding, error, words):
    forward, _ = _functions(module, kind)
    x = np.zeros((1, 2, 8, 7))
    with pytest.raises(error, match=words):
        forward(x, kernel_size, stride, padding, **options)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("module, options", MODULES)
def test_bad_dout(module, options, kind):
    forward, backward = _functions(module, kind)
    out, cache = forward(np.zeros((2, 3, 8, 8), np.float32), 2, **options)
    with pytest.raises(ValueError, match=r"\(2, 3, 4, 4\)"):
        backward(np.zeros((2, 3, 4, 5), np.float32), cache)
    with pytest.raises(ValueError, match="4-D"):
        backward(np.zeros((2, 3, 16), np.float32), cache)
    with pytest.raises(TypeError, match="float32"):
        backward(np.zeros((2, 3, 4, 4), np.float64), cache)
    with pytest.raises(TypeError, match="dtype"):
        backward(np.zeros((2, 3, 4, 4), np.int32), cache)
    with pytest.raises(TypeError, match="ndarray"):
        backward(np.zeros((2, 3, 4, 4)).tolist(), cache)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("module, options", MODULES)
def test_foreign_cache(module, options, kind):
    _, backward = _functions(module, kind)
    other_kind = "avg" if kind == "max" else "max"
    other_forward, _ = _functions(module, other_kind)
    x = np.zeros((1, 2, 4, 4))
    dout = np.zeros((1, 2, 2, 2))
    _, conv_cache = fastconv.conv2d_forward(x, np.zeros((2, 2, 3, 3)), None, 1, 1)
    _, other_cache = other_forward(x, 2, **options)
    for cache in (conv_cache, (dout, x), None, {"kind": kind}):
        with pytest.raises(TypeError, match="PoolCache"):
            backward(dout, cache)
    with pytest.raises(TypeError, match=f"{other_kind}_pool2d_forward"):
        backward(dout, other_cache)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("backend", ["cython", "reference"])
def test_cache_is_read_only_and_copies_work(kind, backend):
    """The compiled backward scatters through argmax unchecked, so a cache cannot be changed."""
    forward, backward = _forward(kind)
    out, cache = forward(np.random.default_rng(0).standard_normal((2, 3, 8, 8)), 2, backend=backend)
    dout = np.random.default_rng(1).standard_normal(out.shape)
    dx = backward(dout, cache)
    with pytest.raises(TypeError, match="read-only"):
        cache.window = fastconv.max_pool2d_forward(np.zeros((2, 3, 40, 40)), 10)[1].window
    with pytest.raises(TypeError, match="read-only"):
        del cache.backend
    if kind == "max":
        with pytest.raises(ValueError, match="read-only"):
            cache.argmax[0, 0, 0, 0] = 10**6
    for copied in (copy.copy(cache), copy.deepcopy(cache), pickle.loads(pickle.dumps(cache))):
        assert copied.backend == backend and copied.kind == kind
        np.testing.assert_array_equal(backward(dout, copied), dx)
    np.testing.assert_array_equal(backward(dout, cache), dx)


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="backend"):
        fastconv.max_pool2d_forward(np.zeros((1, 1, 4, 4)), 2, backend="torch")


def test_public_names_exported():
    for module in (fastconv, reference):
        for name in ("max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward"):
            assert name in module.__all__ and callable(getattr(module, name))
