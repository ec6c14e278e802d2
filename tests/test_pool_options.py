"""Pooling options (issue 23): dilation, ceil_mode, indices, count_include_pad, divisor_override,
1-D and 3-D pools, adaptive and global pools, max-unpooling; compiled vs reference, torch,
gradients, rules, kernels, layers."""
import copy
import pickle

import numpy as np
import pytest
from _helpers import LAYOUTS, assert_close, numerical_gradient, rel_error, with_layout

import fastconv
import fastconv._tuning
from fastconv import reference
from fastconv._geometry import pool_geometry
from fastconv.layers import (
    AdaptiveAvgPool2d,
    AdaptiveMaxPool2d,
    AvgPool1d,
    AvgPool2d,
    AvgPool3d,
    GlobalAvgPool2d,
    MaxPool1d,
    MaxPool2d,
    MaxPool3d,
    MaxUnpool2d,
)

DTYPES = [np.float32, np.float64]
# the tolerance against torch: float32 1e-6 of scale, float64 1e-12
TORCH_TOLERANCE = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-12}


def _random(shape, dtype, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _ops(module, kind, ndim):
    return getattr(module, f"{kind}_pool{ndim}d_forward"), getattr(module, f"{kind}_pool{ndim}d_backward")


# ---- cases ----------------------------------------------------------------------------
# (x shape, kernel_size, stride, padding, dilation, ceil_mode), each named for what it probes

MAX_CASES = [
    ((2, 3, 9, 9), 3, 2, 1, 2, False),                  # dilated 3x3/2, padded
    ((2, 3, 9, 9), 3, 2, 1, 1, True),                   # ceil_mode adds a last window
    ((1, 2, 7, 10), (3, 2), (2, 3), (1, 1), (2, 1), True),   # per-axis everything
    ((2, 1, 5, 5), 2, 2, 0, 1, True),                   # ceil overhang past the input
    ((1, 1, 6, 6), 3, 2, 1, 1, True),                   # ceil: last window starts in the input
    ((3, 2, 8, 5), 2, 1, 1, 3, False),                  # dilation 3 over kernel 2
    ((1, 3, 11, 13), (2, 4), (3, 1), (0, 2), (1, 2), True),
    ((2, 2, 4, 4), 2, 2, 0, 1, False),                  # 2x2/2 unrolled path, unchanged
    ((2, 2, 10, 9), 3, 2, 1, 1, True),                  # unrolled 3x3/2 with ceil overhang
    ((2, 2, 7, 7), 3, 1, 1, 1, True),                   # unrolled 3x3/1 under ceil_mode
    ((1, 1, 1, 1), 1, 1, 0, 1, True),
    ((2, 3, 12, 1), (3, 1), (2, 1), (1, 0), (2, 1), True),   # width 1
]
MAX_1D_CASES = [
    ((2, 3, 17), 4, 3, 2, 2, True),
    ((1, 1, 9), 3, 1, 1, 1, False),
    ((3, 2, 8), 2, 2, 0, 1, True),
    ((2, 1, 13), 5, 4, 2, 3, True),
]
MAX_3D_CASES = [
    ((2, 2, 7, 6, 5), (3, 2, 2), (2, 2, 1), (1, 1, 0), (1, 2, 1), True),
    ((1, 3, 4, 8, 8), (1, 2, 2), (1, 2, 2), 0, 1, False),   # one depth per window (unrolled 2x2/2)
    ((1, 2, 5, 9, 9), (1, 3, 3), (2, 2, 2), (0, 1, 1), 1, True),  # one depth, 3x3/2, ceil
    ((2, 1, 6, 6, 6), 2, 2, 0, 1, False),
    ((1, 2, 5, 5, 7), 3, 2, 1, 2, False),
    ((2, 2, 3, 4, 5), (2, 3, 2), (1, 2, 3), (1, 1, 1), 1, True),
    # unrolled (H, W) windows over several input depths (each depth unrolled, then combined)
    ((2, 2, 7, 9, 8), 3, 2, 1, 1, True),
    ((1, 2, 7, 6, 6), 2, 2, (1, 0, 0), (3, 1, 1), False),
    ((1, 2, 5, 7, 7), (3, 3, 3), 1, 1, 1, False),
]
# (x shape, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
AVG_CASES = [
    ((2, 3, 9, 9), 3, 2, 1, False, False, None),
    ((2, 3, 9, 9), 3, 2, 1, True, True, None),          # ceil window cut at the padding's end
    ((2, 3, 9, 9), 3, 2, 1, True, False, None),
    ((1, 2, 5, 5), 2, 2, 0, True, True, None),           # overhang with no padding at all
    ((2, 2, 6, 6), 3, 2, 1, True, True, 5),
    ((1, 2, 7, 10), (3, 2), (2, 3), (1, 1), True, False, None),
    ((3, 1, 8, 8), (4, 2), (3, 2), (2, 1), False, True, 3),
    ((1, 1, 5, 6), (5, 6), 1, 0, False, True, None),    # whole plane: the plane-mean path
    ((2, 2, 5, 6), (5, 6), 1, 0, False, True, 7),       # whole plane with an override
    ((1, 1, 1, 1), 1, 1, 0, True, False, None),
]
AVG_1D_CASES = [
    ((2, 3, 17), 4, 3, 2, True, False, None),
    ((1, 2, 9), 3, 2, 1, True, True, None),
    ((2, 1, 8), 8, 1, 0, False, True, None),             # whole length
    ((1, 1, 7), 2, 2, 1, True, True, 4),
]
AVG_3D_CASES = [
    ((2, 2, 7, 6, 5), (3, 2, 2), (2, 2, 1), (1, 1, 0), True, False, None),
    ((1, 2, 5, 5, 5), 3, 2, 1, True, True, None),
    ((2, 1, 4, 6, 6), (1, 2, 2), (1, 2, 2), 0, False, True, None),
    ((1, 2, 4, 5, 3), 2, 1, 1, False, True, 9),
    ((1, 1, 4, 4, 4), 4, 1, 0, False, True, None),       # whole volume
]
MAX_BY_RANK = {1: MAX_1D_CASES, 2: MAX_CASES, 3: MAX_3D_CASES}
AVG_BY_RANK = {1: AVG_1D_CASES, 2: AVG_CASES, 3: AVG_3D_CASES}
ADAPTIVE_CASES = [((2, 3, 11, 9), 1), ((2, 3, 11, 9), (3, 4)), ((1, 2, 7, 7), (5, 2)),
                  ((2, 1, 5, 6), (13, 10)), ((1, 1, 1, 1), 1), ((3, 2, 7, 7), (7, 7)),
                  ((2, 2, 13, 13), 6), ((1, 1, 6, 1), (4, 1))]


def _random_max_cases(ndim, count, seed):
    """Random valid (shape, kernel, stride, padding, dilation, ceil_mode) in `ndim` axes."""
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        size = tuple(int(v) for v in rng.integers(1, 10 if ndim < 3 else 6, size=ndim))
        kernel = tuple(int(rng.integers(1, 4)) for _ in range(ndim))
        stride = tuple(int(rng.integers(1, 4)) for _ in range(ndim))
        padding = tuple(int(rng.integers(0, k // 2 + 1)) for k in kernel)
        dilation = tuple(int(rng.integers(1, 4)) for _ in range(ndim))
        ceil_mode = bool(rng.integers(0, 2))
        shape = (int(rng.integers(1, 4)), int(rng.integers(1, 4))) + size
        try:
            pool_geometry(shape, kernel, stride, padding, dilation=dilation, ceil_mode=ceil_mode)
        except ValueError:
            continue
        cases.append((shape, kernel, stride, padding, dilation, ceil_mode))
    return cases


def _random_avg_cases(ndim, count, seed):
    rng = np.random.default_rng(seed)
    cases = []
    for shape, kernel, stride, padding, _, ceil_mode in _random_max_cases(ndim, count, seed):
        divisor = None if rng.random() < 0.7 else int(rng.integers(1, 10))
        cases.append((shape, kernel, stride, padding, ceil_mode, bool(rng.integers(0, 2)), divisor))
    return cases


def _max_call(module, ndim, x, case, **options):
    _, kernel, stride, padding, dilation, ceil_mode = case
    forward, _ = _ops(module, "max", ndim)
    return forward(x, kernel, stride, padding, dilation=dilation, ceil_mode=ceil_mode, **options)


def _avg_call(module, ndim, x, case, **options):
    _, kernel, stride, padding, ceil_mode, count_include_pad, divisor = case
    forward, _ = _ops(module, "avg", ndim)
    return forward(x, kernel, stride, padding, ceil_mode=ceil_mode,
                   count_include_pad=count_include_pad, divisor_override=divisor, **options)


def _check_max_against_reference(ndim, case, dtype, seed=0, values=None):
    x = _random(case[0], dtype, seed) if values is None else values
    out, indices, cache = _max_call(fastconv, ndim, x, case, return_indices=True, backend="cython")
    expected, ref_indices, ref_cache = _max_call(reference, ndim, x, case, return_indices=True)
    assert out.dtype == x.dtype and indices.dtype == np.int64
    np.testing.assert_array_equal(out, expected)        # a max is one of the inputs: exact
    np.testing.assert_array_equal(indices, ref_indices)
    dout = _random(out.shape, dtype, seed + 1)
    _, backward = _ops(fastconv, "max", ndim)
    _, ref_backward = _ops(reference, "max", ndim)
    dx = backward(dout, cache)
    assert dx.shape == x.shape and dx.dtype == x.dtype
    np.testing.assert_array_equal(dx, ref_backward(dout, ref_cache))  # the same sums in one order


def _check_avg_against_reference(ndim, case, dtype, seed=0):
    x = _random(case[0], dtype, seed)
    out, cache = _avg_call(fastconv, ndim, x, case, backend="cython")
    expected, ref_cache = _avg_call(reference, ndim, x, case)
    assert out.dtype == x.dtype
    assert_close(out, expected, TORCH_TOLERANCE[np.dtype(dtype)])
    dout = _random(out.shape, dtype, seed + 1)
    _, backward = _ops(fastconv, "avg", ndim)
    _, ref_backward = _ops(reference, "avg", ndim)
    dx = backward(dout, cache)
    assert dx.shape == x.shape and dx.dtype == x.dtype
    assert_close(dx, ref_backward(dout, ref_cache), TORCH_TOLERANCE[np.dtype(dtype)])


# ---- compiled vs reference ------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ndim, case", [(n, c) for n, cases in MAX_BY_RANK.items() for c in cases])
def test_max_pool_matches_reference(ndim, case, dtype):
    _check_max_against_reference(ndim, case, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ndim, case", [(n, c) for n, cases in AVG_BY_RANK.items() for c in cases])
def test_avg_pool_matches_reference(ndim, case, dtype):
    _check_avg_against_reference(ndim, case, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_random_geometries_match_reference(ndim, dtype):
    for index, case in enumerate(_random_max_cases(ndim, 40, seed=10 + ndim)):
        _check_max_against_reference(ndim, case, dtype, seed=index)
    for index, case in enumerate(_random_avg_cases(ndim, 40, seed=20 + ndim)):
        _check_avg_against_reference(ndim, case, dtype, seed=index)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ndim, case", [(2, MAX_CASES[0]), (2, MAX_CASES[2]), (3, MAX_3D_CASES[0]),
                                        (3, MAX_3D_CASES[-3]), (3, MAX_3D_CASES[-2]),
                                        (3, MAX_3D_CASES[-1]), (1, MAX_1D_CASES[0])])
def test_max_ties_nan_and_infinities_match_reference(ndim, case, dtype):
    rng = np.random.default_rng(3)
    x = rng.integers(-1, 2, size=case[0]).astype(dtype)            # many ties
    specials = np.array([np.nan, np.inf, -np.inf], dtype=dtype)
    picks = rng.random(x.shape) < 0.1
    x[picks] = specials[rng.integers(0, 3, size=int(picks.sum()))]
    _check_max_against_reference(ndim, case, dtype, values=x)
    x[...] = -np.inf                                                # every window all -inf
    _check_max_against_reference(ndim, case, dtype, values=x)


# Dilated max pools whose stride is a multiple of the dilation, which the kernel runs as an
# undilated unrolled pool on the one phase of each plane their windows read (_pool.pyx)
PHASE_CASES = [  # (ndim, case)
    (2, ((16, 2, 55, 55), 3, 2, 1, 2, False)),              # pool-55-dil2 of the benchmark
    (2, ((2, 3, 10, 12), 3, 2, 1, 2, True)),                # even sizes, ceil_mode
    (2, ((1, 2, 13, 9), 3, 2, 0, 2, False)),                # no padding: phase 0
    (2, ((2, 1, 17, 16), 3, 3, 1, 3, True)),                # dilation 3: phase 2, sub-stride 1
    (2, ((1, 2, 19, 21), 3, 6, 1, 3, True)),                # sub-stride 2 (3x3/2)
    (2, ((2, 2, 12, 15), 2, 4, 1, 2, False)),               # kernel 2: 2x2/2 on the phase
    (2, ((1, 3, 8, 11), 3, (1, 2), 1, (1, 2), False)),      # dilated columns only
    (2, ((2, 1, 9, 7), 3, (2, 1), 1, (2, 1), True)),        # dilated rows only
    (2, ((1, 1, 5, 5), 3, 2, 1, 2, True)),                  # a 3x3 phase
    (1, ((2, 3, 40), 3, 2, 1, 2, True)),                    # 1-D 3/1 on the phase
    (1, ((1, 2, 31), 2, 6, 1, 3, False)),                   # 1-D 2/2 on the phase
    (1, ((2, 2, 25), 3, 4, 0, 2, False)),                   # 1-D 3/2 on the phase
    (3, ((1, 2, 4, 11, 10), (1, 3, 3), 2, (0, 1, 1), (1, 2, 2), False)),  # one depth a window
    (3, ((2, 1, 7, 9, 9), 3, 2, 1, 2, True)),               # depth windows of 3, dilated too
]


def _takes_phase(ndim, case):
    shape, kernel, stride, padding, dilation, ceil_mode = case
    geometry = pool_geometry(shape, kernel, stride, padding, dilation=dilation, ceil_mode=ceil_mode)
    return fastconv._compiled.pool.phase_shape(
        (1,) * (3 - ndim) + shape[2:], *fastconv.pool._window_3d(geometry)) is not None


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ndim, case", PHASE_CASES)
def test_dilated_max_on_one_phase_matches_reference(ndim, case, dtype):
    """Outputs, indices and gradients exactly as the reference's, on random values and on
    ties, NaN and infinities; the phase is taken from every layout without writing x."""
    assert _takes_phase(ndim, case)
    _check_max_against_reference(ndim, case, dtype, seed=ndim)
    rng = np.random.default_rng(5)
    x = rng.integers(-1, 2, size=case[0]).astype(dtype)
    specials = np.array([np.nan, np.inf, -np.inf], dtype=dtype)
    picks = rng.random(x.shape) < 0.1
    x[picks] = specials[rng.integers(0, 3, size=int(picks.sum()))]
    _check_max_against_reference(ndim, case, dtype, values=x)
    expected, ref_indices, _ = _max_call(reference, ndim, x, case, return_indices=True)
    for layout in LAYOUTS[1:]:
        arranged = with_layout(x, layout)
        before = arranged.copy()
        out, indices, _ = _max_call(fastconv, ndim, arranged, case, return_indices=True)
        np.testing.assert_array_equal(out, expected)
        np.testing.assert_array_equal(indices, ref_indices)
        np.testing.assert_array_equal(arranged, before)


def test_max_kernel_rejects_phase_scratch_of_the_wrong_shape():
    kernels = fastconv._compiled.pool
    x = _random((6, 1, 9, 9), np.float32)
    out, argmax = np.empty((6, 1, 4, 4), np.float32), np.empty((6, 1, 4, 4), np.int64)
    window = ((1, 3, 3), (1, 2, 2), (0, 1, 1), (1, 2, 2))
    assert kernels.phase_shape((1, 9, 9), *window) == (1, 4, 4)  # rows and columns 1, 3, 5, 7
    scratch = np.empty((1, 1, 1), np.float32), np.empty((1, 1, 1), np.int64)
    for phased in (np.empty((1, 1, 1, 1), np.float32), np.empty((1, 1, 5, 5), np.float32),
                   np.empty((2, 1, 5, 4), np.float32)):
        with pytest.raises(ValueError, match="phased scratch"):
            kernels.max_forward(x, out, argmax, *window, *scratch, phased, 2)
    kernels.max_forward(x, out, argmax, *window, *scratch, np.empty((2, 1, 4, 4), np.float32), 2)
    expected, indices, _ = reference.max_pool2d_forward(x.reshape(6, 1, 9, 9), 3, 2, 1,
                                                        dilation=2, return_indices=True)
    np.testing.assert_array_equal(out.reshape(expected.shape), expected)
    np.testing.assert_array_equal(argmax.reshape(indices.shape), indices)


def test_phase_only_where_stride_is_a_multiple_of_dilation():
    assert not _takes_phase(2, ((1, 1, 9, 9), 3, 1, 1, 2, False))     # stride 1: every phase read
    assert not _takes_phase(2, ((1, 1, 9, 9), 3, 3, 1, 2, False))     # 3 % 2
    assert not _takes_phase(2, ((1, 1, 20, 20), 4, 2, 1, 2, False))   # 4x4/1 is not unrolled
    assert not _takes_phase(2, ((1, 1, 9, 9), 3, 2, 1, 1, False))     # undilated: direct
    assert not _takes_phase(2, ((1, 1, 9, 9), 3, (2, 1), 1, (2, 2), False))  # columns: 1 % 2
    assert _takes_phase(2, ((1, 1, 9, 9), 3, 2, 1, 2, False))


@pytest.mark.parametrize("kind", ["avg", "max"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, output_size", ADAPTIVE_CASES)
def test_adaptive_matches_reference(shape, output_size, dtype, kind):
    x = _random(shape, dtype)
    forward = getattr(fastconv, f"adaptive_{kind}_pool2d_forward")
    backward = getattr(fastconv, f"adaptive_{kind}_pool2d_backward")
    ref_forward = getattr(reference, f"adaptive_{kind}_pool2d_forward")
    ref_backward = getattr(reference, f"adaptive_{kind}_pool2d_backward")
    out, cache = forward(x, output_size, backend="cython")
    expected, ref_cache = ref_forward(x, output_size)
    dout = _random(out.shape, dtype, 1)
    if kind == "max":
        np.testing.assert_array_equal(out, expected)
        np.testing.assert_array_equal(cache.argmax, ref_cache.argmax)
        np.testing.assert_array_equal(backward(dout, cache), ref_backward(dout, ref_cache))
    else:
        assert_close(out, expected, TORCH_TOLERANCE[np.dtype(dtype)])
        assert_close(backward(dout, cache), ref_backward(dout, ref_cache), TORCH_TOLERANCE[np.dtype(dtype)])
    assert out.dtype == dtype and out.shape == shape[:2] + fastconv._geometry.as_pair(output_size, "o", minimum=0)


UNPOOL_CASES = [  # (x shape of the pooled input, kernel, stride, padding, output_size)
    ((2, 3, 12, 10), 2, None, 0, None),
    ((2, 3, 11, 9), 2, 2, 0, (11, 9)),
    ((1, 2, 9, 9), 3, 2, 1, None),               # overlapping windows: repeated indices
    ((2, 2, 7, 8), (3, 2), (2, 1), (1, 0), (1, 1, 7, 8)),
    ((1, 1, 6, 6), 3, 1, 1, None),               # stride 1: many repeats
]


def _pooled_with_indices(shape, kernel, stride, padding, dtype, seed=0):
    x = _random(shape, dtype, seed)
    pooled, indices, _ = fastconv.max_pool2d_forward(x, kernel, stride, padding, return_indices=True)
    return pooled, indices


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, kernel, stride, padding, output_size", UNPOOL_CASES)
def test_unpool_matches_reference(shape, kernel, stride, padding, output_size, dtype):
    pooled, indices = _pooled_with_indices(shape, kernel, stride, padding, dtype)
    x = _random(pooled.shape, dtype, 5)  # other values than the pooled ones: repeats matter
    out, cache = fastconv.max_unpool2d_forward(x, indices, kernel, stride, padding, output_size,
                                               backend="cython")
    expected, ref_cache = reference.max_unpool2d_forward(x, indices, kernel, stride, padding, output_size)
    np.testing.assert_array_equal(out, expected)
    dout = _random(out.shape, dtype, 6)
    np.testing.assert_array_equal(fastconv.max_unpool2d_backward(dout, cache),
                                  reference.max_unpool2d_backward(dout, ref_cache))


@pytest.mark.parametrize("op", ["max", "avg", "adaptive", "unpool", "global"])
def test_many_planes_and_threads_agree(op, monkeypatch):
    """Above the parallel threshold, 1 and 2 threads give the same bits as each other."""
    monkeypatch.setattr(fastconv._tuning, "POOL_PARALLEL_MIN_ELEMENTS", 0)
    x = _random((5, 7, 13, 12), np.float32, 9)
    pooled, indices = _pooled_with_indices(x.shape, 3, 2, 1, np.float32)

    def run():
        if op == "max":
            out, _, cache = fastconv.max_pool2d_forward(x, 3, 2, 1, dilation=2, ceil_mode=True,
                                                        return_indices=True)
            return out, fastconv.max_pool2d_backward(np.cos(out), cache)
        if op == "avg":
            out, cache = fastconv.avg_pool2d_forward(x, 3, 2, 1, ceil_mode=True, count_include_pad=False)
            return out, fastconv.avg_pool2d_backward(np.cos(out), cache)
        if op in ("adaptive", "global"):
            out, cache = fastconv.adaptive_avg_pool2d_forward(x, (5, 4) if op == "adaptive" else 1)
            return out, fastconv.adaptive_avg_pool2d_backward(np.cos(out), cache)
        out, cache = fastconv.max_unpool2d_forward(pooled, indices, 3, 2, 1, (13, 12))
        return out, fastconv.max_unpool2d_backward(np.cos(out), cache)

    results = []
    for threads in (1, 2):
        monkeypatch.setattr(fastconv._settings, "_num_threads", threads)
        results.append(run())
    for got, want in zip(*results):
        np.testing.assert_array_equal(got, want)


# ---- layouts, dtypes, inputs untouched ------------------------------------------------

LAYOUT_CALLS = {
    "max1d": lambda x, b: fastconv.max_pool1d_forward(x[:, :, 0, 0], 3, 2, 1, dilation=2, ceil_mode=True, backend=b),
    "max2d": lambda x, b: fastconv.max_pool2d_forward(x[:, :, 0], 3, 2, 1, ceil_mode=True, backend=b),
    "max3d": lambda x, b: fastconv.max_pool3d_forward(x, (2, 3, 2), (1, 2, 2), (1, 1, 0), ceil_mode=True,
                                                      backend=b),
    "avg1d": lambda x, b: fastconv.avg_pool1d_forward(x[:, :, 0, 0], 3, 2, 1, ceil_mode=True,
                                                      count_include_pad=False, backend=b),
    "avg2d": lambda x, b: fastconv.avg_pool2d_forward(x[:, :, 0], 3, 2, 1, divisor_override=4, backend=b),
    "avg3d": lambda x, b: fastconv.avg_pool3d_forward(x, 2, 2, 1, ceil_mode=True, backend=b),
    "adaptive-avg": lambda x, b: fastconv.adaptive_avg_pool2d_forward(x[:, :, 0], (3, 2), backend=b),
    "adaptive-max": lambda x, b: fastconv.adaptive_max_pool2d_forward(x[:, :, 0], (2, 3), backend=b),
    "global": lambda x, b: fastconv.adaptive_avg_pool2d_forward(x[:, :, 0], 1, backend=b),
}
BACKWARDS = {"max1d": fastconv.max_pool1d_backward, "max2d": fastconv.max_pool2d_backward,
             "max3d": fastconv.max_pool3d_backward, "avg1d": fastconv.avg_pool1d_backward,
             "avg2d": fastconv.avg_pool2d_backward, "avg3d": fastconv.avg_pool3d_backward,
             "adaptive-avg": fastconv.adaptive_avg_pool2d_backward,
             "adaptive-max": fastconv.adaptive_max_pool2d_backward,
             "global": fastconv.adaptive_avg_pool2d_backward}


@pytest.mark.parametrize("backend", ["cython", "reference"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", list(LAYOUT_CALLS))
def test_any_layout_gives_identical_results_and_inputs_untouched(op, dtype, layout, backend):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 2, 5, 7, 6)).astype(dtype)
    out, cache = LAYOUT_CALLS[op](x, backend)
    dout = rng.standard_normal(out.shape).astype(dtype)
    dx = BACKWARDS[op](dout, cache)
    layout_x, layout_dout = with_layout(x, layout), with_layout(dout, layout)
    x_before, dout_before = layout_x.copy(), layout_dout.copy()
    out2, cache2 = LAYOUT_CALLS[op](layout_x, backend)
    dx2 = BACKWARDS[op](layout_dout, cache2)
    np.testing.assert_array_equal(out2, out)
    np.testing.assert_array_equal(dx2, dx)
    assert out2.dtype == dx2.dtype == dtype
    np.testing.assert_array_equal(layout_x, x_before)
    np.testing.assert_array_equal(layout_dout, dout_before)


@pytest.mark.parametrize("backend", ["cython", "reference"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_unpool_any_layout_and_inputs_untouched(layout, backend):
    pooled, indices = _pooled_with_indices((2, 3, 9, 8), 3, 2, 1, np.float64)
    out, cache = fastconv.max_unpool2d_forward(pooled, indices, 3, 2, 1, (9, 8), backend=backend)
    dx = fastconv.max_unpool2d_backward(np.cos(out), cache)
    layout_x = with_layout(pooled, layout)
    layout_indices = with_layout(indices.astype(np.int32), layout)  # any integer dtype works
    before = layout_indices.copy()
    out2, cache2 = fastconv.max_unpool2d_forward(layout_x, layout_indices, 3, 2, 1, (9, 8), backend=backend)
    np.testing.assert_array_equal(out2, out)
    np.testing.assert_array_equal(fastconv.max_unpool2d_backward(with_layout(np.cos(out), layout), cache2), dx)
    np.testing.assert_array_equal(layout_indices, before)


@pytest.mark.parametrize("backend", ["cython", "reference"])
def test_unpool_keeps_its_own_copy_of_the_indices(backend):
    """Changing the caller's indices after the forward cannot make the backward write wild."""
    pooled, indices = _pooled_with_indices((2, 2, 8, 8), 2, 2, 0, np.float64)
    out, cache = fastconv.max_unpool2d_forward(pooled, indices, 2, backend=backend)
    dx = fastconv.max_unpool2d_backward(np.cos(out), cache)
    indices[...] = 10**9
    np.testing.assert_array_equal(fastconv.max_unpool2d_backward(np.cos(out), cache), dx)
    assert not np.shares_memory(cache.argmax, indices)
    with pytest.raises(ValueError, match="read-only"):
        cache.argmax[0, 0, 0, 0] = 10**9


@pytest.mark.parametrize("backend", ["cython", "reference"])
@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("ndim, shape", [(1, (0, 3, 8)), (1, (2, 0, 8)), (3, (0, 2, 4, 4, 4)),
                                         (3, (2, 0, 4, 4, 4))])
def test_zero_batch_or_channels_give_empty_results(ndim, shape, kind, backend):
    forward, backward = _ops(fastconv, kind, ndim)
    out, cache = forward(np.zeros(shape, np.float32), 3, 2, 1, ceil_mode=True, backend=backend)
    dx = backward(np.zeros(out.shape, np.float32), cache)
    assert dx.shape == shape and dx.dtype == np.float32 and out.shape[:2] == shape[:2]


@pytest.mark.parametrize("backend", ["cython", "reference"])
def test_empty_adaptive_and_unpool_results(backend):
    x = np.zeros((0, 3, 5, 5), np.float64)
    for forward, backward in ((fastconv.adaptive_avg_pool2d_forward, fastconv.adaptive_avg_pool2d_backward),
                              (fastconv.adaptive_max_pool2d_forward, fastconv.adaptive_max_pool2d_backward)):
        out, cache = forward(x, (2, 3), backend=backend)
        assert out.shape == (0, 3, 2, 3) and backward(out, cache).shape == x.shape
        out, cache = forward(np.ones((2, 3, 5, 5)), 0, backend=backend)  # output_size 0 (as PyTorch)
        assert out.shape == (2, 3, 0, 0)
        assert np.array_equal(backward(out, cache), np.zeros((2, 3, 5, 5)))
    out, cache = fastconv.max_unpool2d_forward(x, np.zeros(x.shape, np.int64), 2, backend=backend)
    assert out.shape == (0, 3, 10, 10) and fastconv.max_unpool2d_backward(out, cache).shape == x.shape


# ---- against torch --------------------------------------------------------------------

def _torch_close(got, want, dtype):
    assert_close(got, want.detach().numpy(), TORCH_TOLERANCE[np.dtype(dtype)])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ndim, case", [(n, c) for n, cases in MAX_BY_RANK.items() for c in cases])
def test_max_pool_matches_torch(ndim, case, dtype):
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    x = _random(case[0], dtype)
    out, indices, cache = _max_call(fastconv, ndim, x, case, return_indices=True)
    dout = _random(out.shape, dtype, 1)
    dx = _ops(fastconv, "max", ndim)[1](dout, cache)
    _, kernel, stride, padding, dilation, ceil_mode = case
    leaf = torch.tensor(x, requires_grad=True)
    torch_out, torch_indices = getattr(functional, f"max_pool{ndim}d")(
        leaf, kernel, stride, padding, dilation, ceil_mode=ceil_mode, return_indices=True)
    torch_out.backward(torch.from_numpy(dout))
    np.testing.assert_array_equal(out, torch_out.detach().numpy())
    np.testing.assert_array_equal(indices, torch_indices.numpy())
    _torch_close(dx, leaf.grad, dtype)


def _torch_avg(torch, ndim, leaf, case):
    _, kernel, stride, padding, ceil_mode, count_include_pad, divisor = case
    functional = torch.nn.functional
    if ndim == 1:  # torch's avg_pool1d has no divisor_override: its 2-D pool over (N, C, 1, L)
        as_pair = lambda v: (1, v if isinstance(v, int) else v[0])  # noqa: E731
        out = functional.avg_pool2d(leaf[:, :, None], as_pair(kernel), as_pair(stride),
                                    (0, padding if isinstance(padding, int) else padding[0]),
                                    ceil_mode, count_include_pad, divisor)
        return out[:, :, 0]
    return getattr(functional, f"avg_pool{ndim}d")(leaf, kernel, stride, padding, ceil_mode,
                                                    count_include_pad, divisor)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ndim, case", [(n, c) for n, cases in AVG_BY_RANK.items() for c in cases])
def test_avg_pool_matches_torch(ndim, case, dtype):
    torch = pytest.importorskip("torch")
    x = _random(case[0], dtype)
    out, cache = _avg_call(fastconv, ndim, x, case)
    dout = _random(out.shape, dtype, 1)
    dx = _ops(fastconv, "avg", ndim)[1](dout, cache)
    leaf = torch.tensor(x, requires_grad=True)
    torch_out = _torch_avg(torch, ndim, leaf, case)
    torch_out.backward(torch.from_numpy(dout))
    _torch_close(out, torch_out, dtype)
    _torch_close(dx, leaf.grad, dtype)


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_random_geometries_match_torch(ndim):
    torch = pytest.importorskip("torch")
    for index, case in enumerate(_random_max_cases(ndim, 30, seed=40 + ndim)):
        x = _random(case[0], np.float64, index)
        out, indices, _ = _max_call(fastconv, ndim, x, case, return_indices=True)
        _, kernel, stride, padding, dilation, ceil_mode = case
        want, want_indices = getattr(torch.nn.functional, f"max_pool{ndim}d")(
            torch.from_numpy(x), kernel, stride, padding, dilation, ceil_mode=ceil_mode, return_indices=True)
        np.testing.assert_array_equal(out, want.numpy(), err_msg=str(case))
        np.testing.assert_array_equal(indices, want_indices.numpy(), err_msg=str(case))
    for index, case in enumerate(_random_avg_cases(ndim, 30, seed=50 + ndim)):
        x = _random(case[0], np.float64, index)
        out, _ = _avg_call(fastconv, ndim, x, case)
        if ndim == 3 and any(s < k for s, k in zip(case[0][2:], np.broadcast_to(case[1], 3))):
            # torch's avg_pool3d (alone) rejects an input smaller than the kernel even where
            # padding makes it fit ("smaller than kernel size"); fastconv pools it as its (and
            # torch's) 2-D pools do. Not called: a C++ exception from torch aborts the ASan run.
            continue
        _torch_close(out, _torch_avg(torch, ndim, torch.from_numpy(x), case), np.float64)


def test_avg_pool1d_matches_torchs_own_avg_pool1d():
    torch = pytest.importorskip("torch")
    for index, case in enumerate(_random_avg_cases(1, 30, seed=61)):
        _, kernel, stride, padding, ceil_mode, count_include_pad, _ = case
        x = _random(case[0], np.float64, index)
        out, _ = fastconv.avg_pool1d_forward(x, kernel, stride, padding, ceil_mode=ceil_mode,
                                             count_include_pad=count_include_pad)
        want = torch.nn.functional.avg_pool1d(torch.from_numpy(x), kernel, stride, padding, ceil_mode,
                                              count_include_pad)
        _torch_close(out, want, np.float64)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["avg", "max"])
@pytest.mark.parametrize("shape, output_size", ADAPTIVE_CASES)
def test_adaptive_matches_torch(shape, output_size, kind, dtype):
    torch = pytest.importorskip("torch")
    x = _random(shape, dtype)
    out, cache = getattr(fastconv, f"adaptive_{kind}_pool2d_forward")(x, output_size)
    dout = _random(out.shape, dtype, 1)
    dx = getattr(fastconv, f"adaptive_{kind}_pool2d_backward")(dout, cache)
    leaf = torch.tensor(x, requires_grad=True)
    if kind == "max":
        torch_out, torch_indices = torch.nn.functional.adaptive_max_pool2d(leaf, output_size, True)
        np.testing.assert_array_equal(cache.argmax, torch_indices.numpy())
        np.testing.assert_array_equal(out, torch_out.detach().numpy())
    else:
        torch_out = torch.nn.functional.adaptive_avg_pool2d(leaf, output_size)
        _torch_close(out, torch_out, dtype)
    torch_out.backward(torch.from_numpy(dout))
    _torch_close(dx, leaf.grad, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_adaptive_max_ties_and_nan_match_torch(dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    x = rng.integers(0, 3, size=(2, 3, 9, 7)).astype(dtype)
    x[rng.random(x.shape) < 0.05] = np.nan
    for output_size in (1, (3, 2), (4, 5), (9, 7)):
        out, cache = fastconv.adaptive_max_pool2d_forward(x, output_size)
        want, want_indices = torch.nn.functional.adaptive_max_pool2d(torch.from_numpy(x), output_size, True)
        np.testing.assert_array_equal(out, want.numpy())
        np.testing.assert_array_equal(cache.argmax, want_indices.numpy())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, kernel, stride, padding, output_size",
                         [case for case in UNPOOL_CASES if case[3] == 0 or case[1] == 2])
def test_unpool_matches_torch_without_repeats(shape, kernel, stride, padding, output_size, dtype):
    torch = pytest.importorskip("torch")
    pooled, indices = _pooled_with_indices(shape, kernel, stride, padding, dtype)
    out, cache = fastconv.max_unpool2d_forward(pooled, indices, kernel, stride, padding, output_size)
    dout = _random(out.shape, dtype, 2)
    dx = fastconv.max_unpool2d_backward(dout, cache)
    leaf = torch.tensor(pooled, requires_grad=True)
    torch_out = torch.nn.functional.max_unpool2d(leaf, torch.from_numpy(indices), kernel, stride, padding,
                                                 output_size)
    torch_out.backward(torch.from_numpy(dout))
    np.testing.assert_array_equal(out, torch_out.detach().numpy())
    np.testing.assert_array_equal(dx, leaf.grad.numpy())


def test_pool_then_unpool_restores_the_maxima_as_torch():
    """SegNet's round trip, repeats included: the kept value is the same as torch's (both are
    the pooled max), and our rule (the last repeat keeps it) is what torch's CPU does here."""
    torch = pytest.importorskip("torch")
    x = _random((2, 3, 9, 9), np.float64, 4)
    pooled, indices, _ = fastconv.max_pool2d_forward(x, 3, 2, 1, return_indices=True)
    out, _ = fastconv.max_unpool2d_forward(pooled, indices, 3, 2, 1, (9, 9))
    want = torch.nn.functional.max_unpool2d(torch.from_numpy(pooled), torch.from_numpy(indices), 3, 2, 1, (9, 9))
    np.testing.assert_array_equal(out, want.numpy())


# ---- gradients ------------------------------------------------------------------------

def _distinct_values(shape, seed):
    """float64 input whose values are at least 0.01 apart: no window has a near-tie."""
    rng = np.random.default_rng(seed)
    size = int(np.prod(shape))
    return (rng.permutation(size) * 0.01 - size * 0.005).reshape(shape)


GRADIENT_OPS = {
    "max1d": (lambda x, b: fastconv.max_pool1d_forward(x, 3, 2, 1, dilation=2, ceil_mode=True, backend=b),
              fastconv.max_pool1d_backward, (2, 2, 11)),
    "max2d": (lambda x, b: fastconv.max_pool2d_forward(x, 3, 2, 1, dilation=(1, 2), ceil_mode=True, backend=b),
              fastconv.max_pool2d_backward, (1, 2, 8, 9)),
    "max3d": (lambda x, b: fastconv.max_pool3d_forward(x, 2, (1, 2, 2), 1, ceil_mode=True, backend=b),
              fastconv.max_pool3d_backward, (1, 2, 4, 5, 4)),
    "avg1d": (lambda x, b: fastconv.avg_pool1d_forward(x, 3, 2, 1, ceil_mode=True, count_include_pad=False,
                                                       backend=b),
              fastconv.avg_pool1d_backward, (2, 2, 10)),
    "avg2d": (lambda x, b: fastconv.avg_pool2d_forward(x, (3, 2), 2, 1, ceil_mode=True, count_include_pad=False,
                                                       backend=b),
              fastconv.avg_pool2d_backward, (1, 2, 8, 7)),
    "avg2d-override": (lambda x, b: fastconv.avg_pool2d_forward(x, 3, 2, 1, ceil_mode=True, divisor_override=4,
                                                                backend=b),
                       fastconv.avg_pool2d_backward, (1, 2, 6, 6)),
    "avg3d": (lambda x, b: fastconv.avg_pool3d_forward(x, 2, 2, 1, ceil_mode=True, backend=b),
              fastconv.avg_pool3d_backward, (1, 2, 5, 4, 5)),
    "adaptive-avg": (lambda x, b: fastconv.adaptive_avg_pool2d_forward(x, (3, 4), backend=b),
                     fastconv.adaptive_avg_pool2d_backward, (2, 2, 7, 6)),
    "adaptive-avg-up": (lambda x, b: fastconv.adaptive_avg_pool2d_forward(x, (5, 7), backend=b),
                        fastconv.adaptive_avg_pool2d_backward, (1, 2, 3, 4)),
    "adaptive-max": (lambda x, b: fastconv.adaptive_max_pool2d_forward(x, (3, 2), backend=b),
                     fastconv.adaptive_max_pool2d_backward, (2, 2, 7, 5)),
    "global": (lambda x, b: fastconv.adaptive_avg_pool2d_forward(x, 1, backend=b),
               fastconv.adaptive_avg_pool2d_backward, (2, 3, 4, 5)),
}


@pytest.mark.parametrize("backend", ["cython", "reference"])
@pytest.mark.parametrize("op", list(GRADIENT_OPS))
def test_gradient_matches_centred_differences(op, backend):
    forward, backward, shape = GRADIENT_OPS[op]
    x = _distinct_values(shape, seed=0)
    out, cache = forward(x, backend)
    dout = np.random.default_rng(1).standard_normal(out.shape)
    dx = backward(dout, cache)
    numeric = numerical_gradient(lambda v: forward(v, backend)[0], x.copy(), dout, h=1e-4)
    assert rel_error(dx, numeric) < 1e-8
    assert np.any(dx != 0)


@pytest.mark.parametrize("backend", ["cython", "reference"])
def test_unpool_gradient_matches_centred_differences_with_repeats(backend):
    """Repeated indices: the overwritten x elements have no effect, so a zero gradient."""
    _, indices = _pooled_with_indices((1, 2, 6, 6), 3, 1, 1, np.float64)
    assert len(np.unique(indices[0, 0])) < indices[0, 0].size  # there are repeats
    x = _distinct_values(indices.shape, 3)
    out, cache = fastconv.max_unpool2d_forward(x, indices, 3, 1, 1, backend=backend)
    dout = np.random.default_rng(1).standard_normal(out.shape)
    dx = fastconv.max_unpool2d_backward(dout, cache)
    numeric = numerical_gradient(lambda v: fastconv.max_unpool2d_forward(v, indices, 3, 1, 1, backend=backend)[0],
                                 x.copy(), dout)
    assert rel_error(dx, numeric) < 1e-8
    assert np.sum(dx == 0) > 0 and np.any(dx != 0)


# ---- rules, written out ---------------------------------------------------------------

def test_ceil_mode_output_sizes_follow_pytorchs_rule():
    cases = [  # (size, kernel, stride, padding, dilation, floor size, ceil size)
        (5, 2, 2, 0, 1, 2, 3),     # the overhang window starts inside the input: kept
        (6, 3, 2, 1, 1, 3, 4),     # starts at 5, inside: kept
        (4, 3, 2, 1, 1, 2, 3),     # starts at 3, inside: kept
        (5, 2, 2, 1, 1, 3, 3),     # ceil would give 4, whose window starts at 5, in the trailing padding: dropped
        (7, 2, 3, 1, 1, 3, 3),
        (9, 3, 2, 1, 2, 4, 4),     # dilated: the rounded-up window would start at 7 and end past the padding
        (1, 1, 1, 0, 1, 1, 1),
    ]
    for size, kernel, stride, padding, dilation, floor_size, ceil_size in cases:
        for ceil_mode, expected in ((False, floor_size), (True, ceil_size)):
            x = np.zeros((1, 1, size))
            out, _ = fastconv.max_pool1d_forward(x, kernel, stride, padding, dilation=dilation, ceil_mode=ceil_mode)
            assert out.shape[-1] == expected, (size, kernel, stride, padding, dilation, ceil_mode)
            start = (expected - 1) * stride - padding
            assert start < size  # the last window starts inside the input or the leading padding


@pytest.mark.parametrize("backend", ["cython", "reference"])
def test_average_divisors_written_out(backend):
    """ones (1, 1, 6, 6), 3x3/2, padding 1, ceil_mode: 4x4 windows. Rows of window i cover
    [2i - 1, 2i + 2) in padded coordinates, cut at the padding's end (row 7)."""
    x = np.ones((1, 1, 6, 6))
    included = np.array([3, 3, 3, 2])       # window 3 covers rows 5, 6 (padding), and 7 which is past it
    inside = np.array([2, 3, 3, 1])
    for count_include_pad, per_axis in ((True, included), (False, inside)):
        out, _ = fastconv.avg_pool2d_forward(x, 3, 2, 1, ceil_mode=True, count_include_pad=count_include_pad,
                                             backend=backend)
        np.testing.assert_allclose(out[0, 0], np.outer(inside, inside) / np.outer(per_axis, per_axis), rtol=1e-15)
    out, _ = fastconv.avg_pool2d_forward(x, 3, 2, 1, ceil_mode=True, divisor_override=2, backend=backend)
    np.testing.assert_allclose(out[0, 0], np.outer(inside, inside) / 2, rtol=1e-15)


@pytest.mark.parametrize("backend", ["cython", "reference"])
def test_dilated_max_reads_only_its_taps(backend):
    x = np.arange(1.0, 10.0).reshape(1, 1, 9)
    out, indices, cache = fastconv.max_pool1d_forward(x, 3, 3, 0, dilation=3, return_indices=True,
                                                      backend=backend)
    np.testing.assert_array_equal(out, [[[7.0]]])            # taps 0, 3, 6 (values 1, 4, 7)
    np.testing.assert_array_equal(indices, [[[6]]])
    x[0, 0, 8] = 100.0                                        # not a tap: changes nothing
    np.testing.assert_array_equal(fastconv.max_pool1d_forward(x, 3, 3, 0, dilation=3, backend=backend)[0], out)
    # padding never wins, also where the first tap is in the padding
    out, indices, _ = fastconv.max_pool1d_forward(-np.ones((1, 1, 5)), 2, 1, 1, dilation=2, return_indices=True,
                                                  backend=backend)
    np.testing.assert_array_equal(out, -np.ones((1, 1, 5)))
    np.testing.assert_array_equal(indices, [[[1, 0, 1, 2, 3]]])  # window 0 reads -1 (padding) and 1


@pytest.mark.parametrize("backend", ["cython", "reference"])
def test_indices_are_int64_copies_the_caller_may_change(backend):
    x = _random((2, 3, 8, 8), np.float32)
    out, indices, cache = fastconv.max_pool2d_forward(x, 2, return_indices=True, backend=backend)
    assert indices.dtype == np.int64 and indices.shape == out.shape and indices.flags.writeable
    assert cache.argmax.dtype == np.int64 and not np.shares_memory(indices, cache.argmax)
    dx = fastconv.max_pool2d_backward(np.ones_like(out), cache)
    indices[...] = 10**9
    np.testing.assert_array_equal(fastconv.max_pool2d_backward(np.ones_like(out), cache), dx)
    _, plain_cache = fastconv.max_pool2d_forward(x, 2, backend=backend)
    assert plain_cache.argmax.dtype == np.int32   # without return_indices the cache keeps int32
    # indices index each H*W plane, row-major
    plane = x.reshape(6, 64)
    np.testing.assert_array_equal(np.take_along_axis(plane, cache.argmax.reshape(6, -1).astype(np.int64), 1),
                                  out.reshape(6, -1))


@pytest.mark.parametrize("backend", ["cython", "reference"])
def test_unpool_repeats_keep_the_last_in_plane_order(backend):
    x = np.array([[[[1.0, 2.0, 3.0, 4.0]]]])
    indices = np.array([[[[0, 1, 0, 2]]]])
    out, cache = fastconv.max_unpool2d_forward(x, indices, (1, 2), output_size=(1, 8), backend=backend)
    np.testing.assert_array_equal(out, [[[[3.0, 2.0, 4.0, 0, 0, 0, 0, 0]]]])
    dx = fastconv.max_unpool2d_backward(np.arange(8.0).reshape(1, 1, 1, 8), cache)
    np.testing.assert_array_equal(dx, [[[[0.0, 1.0, 0.0, 2.0]]]])  # x[0] was overwritten: 0


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("repeated_plane", [None, 0, 137, 255])
def test_unpool_backward_finds_the_one_plane_with_a_repeat(repeated_plane, threads):
    """The compiled forward notes whether any plane names a position twice; without one the
    backward is a plain gather. A single repeating plane among 256 (parallel calls) must
    still give its overwritten element a zero gradient, as the reference does."""
    source = _random((4, 64, 16, 16), np.float32, 8)
    pooled, indices, _ = fastconv.max_pool2d_forward(source, 2, 2, return_indices=True)
    x = _random(pooled.shape, np.float32, 9)
    if repeated_plane is not None:
        batch, channel = divmod(repeated_plane, 64)
        indices[batch, channel, 3, 4] = indices[batch, channel, 5, 6]  # the later one is kept
    previous = fastconv.get_num_threads()
    fastconv.set_num_threads(threads)
    try:
        out, cache = fastconv.max_unpool2d_forward(x, indices, 2, 2)
        dout = _random(out.shape, np.float32, 10)
        dx = fastconv.max_unpool2d_backward(dout, cache)
    finally:
        fastconv.set_num_threads(previous)
    assert cache.repeats == (repeated_plane is not None)
    ref_out, ref_cache = reference.max_unpool2d_forward(x, indices, 2, 2)
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(dx, reference.max_unpool2d_backward(dout, ref_cache))
    if repeated_plane is not None:
        assert dx[batch, channel, 3, 4] == 0 and dx[batch, channel, 5, 6] != 0


@pytest.mark.parametrize("backend", ["cython", "reference"])
def test_global_average_is_the_plane_mean(backend):
    x = _random((4, 5, 7, 7), np.float32, 3)
    out, cache = fastconv.adaptive_avg_pool2d_forward(x, 1, backend=backend)
    np.testing.assert_allclose(out, x.astype(np.float64).mean(axis=(2, 3), keepdims=True), rtol=0, atol=1e-6)
    dx = fastconv.adaptive_avg_pool2d_backward(np.full(out.shape, 49.0, np.float32), cache)
    np.testing.assert_array_equal(dx, np.ones_like(x))
    # the same plane-mean path through avg_pool2d with the whole plane as its window
    np.testing.assert_array_equal(fastconv.avg_pool2d_forward(x, 7, backend=backend)[0], out)


def test_plane_sums_are_accurate_in_float32():
    """Long planes summed in blocks with double totals: far closer than a float32 running sum."""
    x = (1.0 + _random((2, 3, 100, 100), np.float32) * 1e-3).astype(np.float32)
    out, _ = fastconv.adaptive_avg_pool2d_forward(x, 1)
    exact = x.astype(np.float64).mean(axis=(2, 3), keepdims=True)
    assert np.max(np.abs(out - exact)) <= 2 * np.finfo(np.float32).eps


@pytest.mark.parametrize("dtype", DTYPES)
def test_plane_means_over_every_tail_and_block_boundary(dtype):
    """The vector sums take 16 (float32) or 8 (float64) values a step, then 4 or 2, then one
    at a time, in blocks of 256: plane lengths on each side of every boundary, against
    float64 means; a NaN or an infinity anywhere in a plane reaches its mean."""
    tolerance = 4 * np.finfo(dtype).eps
    for length in (1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 49, 255, 256, 257, 511, 513, 1000):
        x = (1.0 + _random((3, 2, 1, length), dtype, length)).astype(dtype)
        means = fastconv._compiled.pool.plane_means(x.reshape(6, length), out := np.empty(6, dtype), 2)
        assert means is None
        exact = x.astype(np.float64).reshape(6, length).mean(axis=1)
        assert np.max(np.abs(out - exact) / np.abs(exact)) <= tolerance, length
        x.reshape(6, length)[1, length // 2] = np.nan
        x.reshape(6, length)[4, length - 1] = np.inf
        out = fastconv.adaptive_avg_pool2d_forward(x, 1)[0].reshape(6)
        assert np.isnan(out[1]) and out[4] == np.inf and np.isfinite(np.delete(out, [1, 4])).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_kernels_write_every_output_element(dtype):
    """New kernels on outputs pre-filled with NaN / -1: no element may be left unwritten."""
    kernels = fastconv._compiled.pool
    x = _random((6, 3, 9, 8), dtype)
    out = np.full((6, 2, 5, 4), np.nan, dtype)
    argmax = np.full(out.shape, -1, np.int64)
    unused = np.empty((1, 1, 1, 1), dtype)
    kernels.max_forward(x, out, argmax, (2, 3, 3), (2, 2, 2), (1, 1, 1), (1, 1, 2),
                        np.empty((2, 5, 4), dtype), np.empty((2, 5, 4), np.int64), unused, 2)
    assert not np.isnan(out).any() and (argmax >= 0).all() and (argmax < 9 * 8 * 3).all()
    out[...], argmax[...] = np.nan, -1  # an unrolled (H, W) window over two depths
    kernels.max_forward(x, out, argmax, (2, 3, 3), (2, 2, 2), (1, 1, 1), (1, 1, 1),
                        np.full((2, 5, 4), np.nan, dtype), np.full((2, 5, 4), -1, np.int64), unused, 2)
    assert not np.isnan(out).any() and (argmax >= 0).all() and (argmax < 9 * 8 * 3).all()
    # the same on one phase of each plane (dilation 2 = stride), scratch of NaN
    phase = kernels.phase_shape((3, 9, 8), (2, 3, 3), (2, 2, 2), (1, 1, 1), (1, 2, 2))
    assert phase == (3, 4, 4)
    out, argmax = np.full((6, 2, 4, 3), np.nan, dtype), np.full((6, 2, 4, 3), -1, np.int64)
    kernels.max_forward(x, out, argmax, (2, 3, 3), (2, 2, 2), (1, 1, 1), (1, 2, 2),
                        np.full((2, 4, 3), np.nan, dtype), np.full((2, 4, 3), -1, np.int64),
                        np.full((2,) + phase, np.nan, dtype), 2)
    assert not np.isnan(out).any() and (argmax >= 0).all() and (argmax < 9 * 8 * 3).all()
    # odd rows and columns only: the phase of padding 1 at dilation 2
    assert ((argmax // 8 % 9) % 2 == 1).all() and ((argmax % 8) % 2 == 1).all()
    out[...] = np.nan
    # padded rows: max(pad 1 + W 8, (OW 4 - 1)*2 + 3) = 9 (scratch of NaN: read only what is written)
    kernels.avg_forward(x, out, (2, 3, 3), (2, 2, 2), (1, 1, 1), False, 0, np.full((2, 9), np.nan, dtype),
                        np.full(4, np.nan, dtype), 2)
    assert not np.isnan(out).any()
    dx = np.full(x.shape, np.nan, dtype)
    kernels.avg_backward(np.ones(out.shape, dtype), dx, (2, 3, 3), (2, 2, 2), (1, 1, 1), True, 0,
                         np.full((2, 9 + 4 + 2 * 3), np.nan, dtype), np.full(4, np.nan, dtype), 2)
    assert not np.isnan(dx).any()
    means = np.full(18, np.nan, dtype)
    kernels.plane_means(x.reshape(18, 72), means, 2)
    dx = np.full((18, 72), np.nan, dtype)
    kernels.spread_means(means, dx, 2)
    assert not np.isnan(means).any() and not np.isnan(dx).any()
    planes = x.reshape(18, 9, 8)
    adaptive = np.full((18, 4, 3), np.nan, dtype)
    bounds = fastconv.pool._adaptive_bounds(fastconv._geometry.adaptive_geometry(planes[None].shape, (4, 3)))
    kernels.adaptive_avg_forward(planes, adaptive, *bounds, np.full((2, 8), np.nan, dtype), 2)
    assert not np.isnan(adaptive).any()
    adaptive_argmax = np.full(adaptive.shape, -1, np.int32)
    adaptive[...] = np.nan
    kernels.adaptive_max_forward(planes, adaptive, adaptive_argmax, *bounds, 2)
    assert not np.isnan(adaptive).any() and (adaptive_argmax >= 0).all()
    dx = np.full(planes.shape, np.nan, dtype)
    kernels.adaptive_avg_backward(np.ones(adaptive.shape, dtype), dx, *bounds, np.full((2, 8), np.nan, dtype), 2)
    assert not np.isnan(dx).any()
    indices = np.tile(np.arange(72, dtype=np.int64)[::-1] * 2, (18, 1))
    unpooled = np.full((18, 144), np.nan, dtype)
    assert kernels.unpool_forward(x.reshape(18, 72), indices, unpooled, np.empty((2, 144), np.uint8), 2) == 0
    assert not np.isnan(unpooled).any()
    for repeats in (False, True):  # the plain gather and the one that finds overwritten elements
        dx = np.full((18, 72), np.nan, dtype)
        kernels.unpool_backward(unpooled, indices, dx, np.empty((2, 144), np.uint8), repeats, 2)
        np.testing.assert_array_equal(dx, x.reshape(18, 72))


# ---- errors (the bad-input table in test_bad_inputs.py covers every op; these name the rules)

@pytest.mark.parametrize("module, options", [(fastconv, {"backend": "cython"}), (reference, {})])
def test_rule_errors(module, options):
    x = np.zeros((1, 2, 8, 8))
    with pytest.raises(ValueError, match="dilation must be >= 1"):
        module.max_pool2d_forward(x, 2, dilation=0, **options)
    with pytest.raises(ValueError, match=r"padding \(2, 2\) must be at most half of kernel_size \(3, 3\)"):
        module.max_pool2d_forward(x, 3, 1, 2, dilation=2, **options)   # PyTorch's rule: the undilated kernel
    with pytest.raises(ValueError, match="holds no input element"):
        module.max_pool2d_forward(np.zeros((1, 1, 4, 4)), 2, 1, 1, dilation=5, **options)
    with pytest.raises(ValueError, match=r"dilated by \(4, 4\): \(9, 9\)\) is larger than the padded input"):
        module.max_pool2d_forward(x, 3, dilation=4, **options)
    with pytest.raises(TypeError, match="ceil_mode must be True or False"):
        module.avg_pool2d_forward(x, 2, ceil_mode=1, **options)
    with pytest.raises(ValueError, match="divisor_override must be >= 1"):
        module.avg_pool2d_forward(x, 2, divisor_override=0, **options)
    with pytest.raises(ValueError, match="output_size must be >= 0"):
        module.adaptive_avg_pool2d_forward(x, -1, **options)
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 16\)"):
        module.max_unpool2d_forward(np.zeros((1, 1, 2, 2)), np.full((1, 1, 2, 2), 16), 2, **options)
    with pytest.raises(ValueError, match="strictly between 2 and 6"):
        module.max_unpool2d_forward(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 2, 2), np.int64), 2,
                                    output_size=(6, 4), **options)
    with pytest.raises(TypeError, match="cache must be the PoolCache returned by max_pool1d_forward, got one "
                                        "from max_pool2d_forward"):
        module.max_pool1d_backward(np.zeros((1, 2, 4)), module.max_pool2d_forward(x, 2, **options)[1])


@pytest.mark.parametrize("backend", ["cython", "reference"])
def test_caches_are_read_only_and_copies_work(backend):
    x = _random((2, 3, 8, 8), np.float64)
    pooled, indices = _pooled_with_indices(x.shape, 2, 2, 0, np.float64)
    runs = [
        (lambda: fastconv.max_pool3d_forward(x[:, :, None].repeat(3, 2), 2, ceil_mode=True, backend=backend),
         fastconv.max_pool3d_backward),
        (lambda: fastconv.avg_pool1d_forward(x[:, :, 0], 3, 2, 1, count_include_pad=False, backend=backend),
         fastconv.avg_pool1d_backward),
        (lambda: fastconv.adaptive_max_pool2d_forward(x, (3, 3), backend=backend),
         fastconv.adaptive_max_pool2d_backward),
        (lambda: fastconv.max_unpool2d_forward(pooled, indices, 2, backend=backend),
         fastconv.max_unpool2d_backward),
    ]
    for forward, backward in runs:
        out, cache = forward()
        dout = np.cos(out)
        dx = backward(dout, cache)
        with pytest.raises(TypeError, match="read-only"):
            cache.count_include_pad = False
        for copied in (copy.copy(cache), copy.deepcopy(cache), pickle.loads(pickle.dumps(cache))):
            np.testing.assert_array_equal(backward(dout, copied), dx)
        assert cache.window.describe() in repr(cache)


def test_public_names_exported():
    names = [f"{kind}_pool{n}d_{side}" for kind in ("max", "avg") for n in (1, 2, 3)
             for side in ("forward", "backward")]
    names += [f"adaptive_{kind}_pool2d_{side}" for kind in ("avg", "max") for side in ("forward", "backward")]
    names += ["max_unpool2d_forward", "max_unpool2d_backward"]
    for module in (fastconv, reference):
        for name in names:
            assert name in module.__all__ and callable(getattr(module, name))
    assert fastconv.max_pool3d_forward.__doc__.startswith("3-D max pooling")
    assert "(N, C, L)" in fastconv.avg_pool1d_backward.__doc__


# ---- layers ---------------------------------------------------------------------------

LAYER_CASES = [
    (MaxPool1d(3, 2, 1, dilation=2, ceil_mode=True), fastconv.max_pool1d_forward,
     dict(kernel_size=3, stride=2, padding=1, dilation=2, ceil_mode=True), (2, 3, 11)),
    (MaxPool2d((3, 2), 2, (1, 0), ceil_mode=True), fastconv.max_pool2d_forward,
     dict(kernel_size=(3, 2), stride=2, padding=(1, 0), ceil_mode=True), (2, 3, 9, 8)),
    (MaxPool3d(2, ceil_mode=True), fastconv.max_pool3d_forward, dict(kernel_size=2, ceil_mode=True),
     (1, 2, 5, 5, 5)),
    (AvgPool1d(3, 2, 1, count_include_pad=False), fastconv.avg_pool1d_forward,
     dict(kernel_size=3, stride=2, padding=1, count_include_pad=False), (2, 3, 11)),
    (AvgPool2d(3, 2, 1, ceil_mode=True, divisor_override=5), fastconv.avg_pool2d_forward,
     dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, divisor_override=5), (2, 3, 9, 8)),
    (AvgPool3d(2, 1, 1), fastconv.avg_pool3d_forward, dict(kernel_size=2, stride=1, padding=1), (1, 2, 4, 3, 4)),
    (AdaptiveAvgPool2d((3, 2)), fastconv.adaptive_avg_pool2d_forward, dict(output_size=(3, 2)), (2, 3, 7, 7)),
    (AdaptiveMaxPool2d(2), fastconv.adaptive_max_pool2d_forward, dict(output_size=2), (2, 3, 7, 5)),
    (GlobalAvgPool2d(), fastconv.adaptive_avg_pool2d_forward, dict(output_size=1), (2, 3, 7, 7)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layer, forward, arguments, shape", LAYER_CASES, ids=lambda v: repr(v)[:40])
def test_layers_match_the_functional_ops(layer, forward, arguments, shape, dtype):
    x = _random(shape, dtype)
    out = layer.forward(x)
    expected, cache = forward(x, **arguments)
    np.testing.assert_array_equal(out, expected)
    dout = _random(out.shape, dtype, 1)
    dx = layer.backward(dout)
    backward = getattr(fastconv, forward.__name__.replace("forward", "backward"))
    np.testing.assert_array_equal(dx, backward(dout, cache))
    assert dx.dtype == dtype and layer.params == {} and layer.grads == {}
    assert layer.backward(dout, need_dx=False) is None


def test_layer_gradients_float64():
    for layer, _, _, shape in LAYER_CASES:
        x = _distinct_values(shape, 2)
        dout = np.random.default_rng(3).standard_normal(layer.forward(x).shape)
        layer.forward(x)
        dx = layer.backward(dout)
        # h = 1e-3: values are 0.01 apart, so no window's winner changes, and rounding shrinks
        assert rel_error(dx, numerical_gradient(layer.forward, x, dout, h=1e-3)) < 1e-8, repr(layer)


def test_max_pool_layer_with_indices_feeds_unpool():
    pool, unpool = MaxPool2d(2, return_indices=True), MaxUnpool2d(2)
    x = _random((2, 3, 8, 8), np.float64)
    out, indices = pool.forward(x)
    restored = unpool.forward(out, indices)
    mask = restored != 0
    np.testing.assert_array_equal(restored[mask], x[mask])
    assert mask.sum() == out.size
    dx = unpool.backward(np.ones_like(restored))
    np.testing.assert_array_equal(dx, np.ones_like(out))
    np.testing.assert_array_equal(pool.backward(dx), mask.astype(np.float64))
    assert unpool.backward(np.ones_like(restored), need_dx=False) is None
    assert unpool.forward(out, indices, output_size=(9, 9)).shape == (2, 3, 9, 9)


def test_layer_reprs_and_constructor_errors():
    assert repr(MaxPool2d(2)) == "MaxPool2d(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0))"
    assert repr(MaxPool2d(3, 2, 1, dilation=2, ceil_mode=True)) == (
        "MaxPool2d(kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), dilation=(2, 2), ceil_mode=True)")
    assert repr(AvgPool1d(3, count_include_pad=False)) == (
        "AvgPool1d(kernel_size=(3,), stride=(3,), padding=(0,), count_include_pad=False)")
    assert repr(GlobalAvgPool2d()) == "GlobalAvgPool2d()"
    assert repr(AdaptiveAvgPool2d(7)) == "AdaptiveAvgPool2d(output_size=(7, 7))"
    assert repr(MaxUnpool2d(2)) == "MaxUnpool2d(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0))"
    for make, error, words in [
        (lambda: MaxPool3d((2, 2)), ValueError, "kernel_size must be an int or a .*got 2 values"),
        (lambda: MaxPool1d(2, dilation=0), ValueError, "dilation must be >= 1"),
        (lambda: MaxPool2d(2, ceil_mode="yes"), TypeError, "ceil_mode must be True or False"),
        (lambda: AvgPool2d(2, divisor_override=0), ValueError, "divisor_override must be >= 1"),
        (lambda: AvgPool2d(2, count_include_pad=None), TypeError, "count_include_pad"),
        (lambda: AdaptiveMaxPool2d((2, -1)), ValueError, "output_size must be >= 0"),
        (lambda: MaxUnpool2d(0), ValueError, "kernel_size must be >= 1"),
        (lambda: GlobalAvgPool2d(backend="gpu"), ValueError, "valid names are"),
    ]:
        with pytest.raises(error, match=words):
            make()
    with pytest.raises(RuntimeError, match="AdaptiveAvgPool2d.backward called before forward"):
        AdaptiveAvgPool2d(2).backward(np.zeros((1, 1, 2, 2)))


# ---- the benchmark's pool option families ---------------------------------------------

def test_bench_pool_option_cases_compute_what_the_reference_and_torch_compute():
    """Every timed call of the pool option families does the real work: fastconv, the twin and
    (where installed) torch agree, on the suite's geometries with one image and two channels."""
    import dataclasses

    from fastconv.bench import operations, suite

    try:
        import torch
    except ImportError:
        torch = None
    assert {case.family for case in suite.POOL_OPTION_CASES} == set(suite.POOL_OPTION_FAMILIES)
    for family in suite.POOL_OPTION_FAMILIES:
        assert [c.name for c in suite.select(family, quick=True)] == [
            c.name for c in suite.POOL_OPTION_CASES if c.family == family]
    for case in suite.POOL_OPTION_CASES:
        small = dataclasses.replace(case, x_shape=(1, 2) + case.x_shape[2:])
        inputs = operations.make_inputs(small, np.float64)
        assert inputs["dout"].shape == small.out_shape
        for pass_name in operations.PASSES:
            calls = operations.implementations(small, pass_name, inputs, torch)
            fast, slow = calls["fastconv"](), calls["reference"]()
            if pass_name == "forward":
                fast, slow = fast[0], slow[0]
            np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=1e-12, err_msg=case.name)
            if torch is not None:
                result = calls["torch"]()
                result = result if pass_name == "forward" else result[0]
                np.testing.assert_allclose(fast, result.detach().numpy(), rtol=1e-12, atol=1e-12,
                                           err_msg=case.name)


@pytest.mark.parametrize("backend", ["cython", "reference"])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64, np.int16])
def test_unpool_copies_indices_into_int32_and_checks_every_one(backend, index_dtype):
    """The one-pass copy and check (C-contiguous int32/int64) and NumPy's (any other integer
    indices) agree: int32 copies, and any index out of range named, in any plane."""
    pooled, indices = _pooled_with_indices((2, 3, 8, 8), 2, 2, 0, np.float32)
    given = indices.astype(index_dtype)
    out, cache = fastconv.max_unpool2d_forward(pooled, given, 2, backend=backend)
    assert cache.argmax.dtype == np.int32 and not np.shares_memory(cache.argmax, given)
    np.testing.assert_array_equal(cache.argmax, indices)
    for bad in (-1, 64):
        wrong = given.copy()
        wrong[1, 2, 3, 1] = bad
        with pytest.raises(ValueError, match=rf"got {bad} \(values range"):
            fastconv.max_unpool2d_forward(pooled, wrong, 2, backend=backend)


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_average_pooling_paths_match_the_reference_on_random_windows(ndim):
    """The two-pass kernel's paths (literal 3/1, 3/2, 2/2, 4/4 windows, kernel == stride,
    windows with gaps, disjoint rows written once) against the twin, float64, many windows."""
    rng = np.random.default_rng(ndim)
    checked = 0
    for _ in range(60):
        kernel = tuple(int(rng.integers(1, 5)) for _ in range(ndim))
        stride = tuple(int(k + rng.integers(-1, 3)) or 1 for k in kernel)
        padding = tuple(int(rng.integers(0, k // 2 + 1)) for k in kernel)
        size = tuple(int(rng.integers(k, 12)) for k in kernel)
        options = dict(ceil_mode=bool(rng.integers(0, 2)), count_include_pad=bool(rng.integers(0, 2)))
        x = rng.standard_normal((2, 3) + size)
        forward, backward = _ops(fastconv, "avg", ndim)
        ref_forward, ref_backward = _ops(reference, "avg", ndim)
        out, cache = forward(x, kernel, stride, padding, backend="cython", **options)
        expected, ref_cache = ref_forward(x, kernel, stride, padding, **options)
        dout = rng.standard_normal(out.shape)
        np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(backward(dout, cache), ref_backward(dout, ref_cache),
                                   rtol=1e-12, atol=1e-12)
        checked += 1
    assert checked == 60


def test_kernels_refuse_scratch_too_small_for_their_threads():
    """A scratch row per thread, each at least an output plane long: anything less is a
    ValueError before a thread writes past its row."""
    kernels = fastconv._compiled.pool
    x = _random((4, 8), np.float32)
    indices = np.tile(np.arange(8, dtype=np.int32), (4, 1))
    out = np.empty((4, 16), np.float32)
    for claimed in (np.empty((1, 16), np.uint8), np.empty((2, 15), np.uint8)):
        with pytest.raises(ValueError, match="claimed"):
            kernels.unpool_forward(x, indices, out, claimed, 2)
        with pytest.raises(ValueError, match="claimed"):
            kernels.unpool_backward(out, indices, np.empty_like(x), claimed, True, 2)
    # the plain gather takes no scratch
    kernels.unpool_backward(out, indices, dx := np.empty_like(x), np.empty((0, 16), np.uint8), False, 2)
    np.testing.assert_array_equal(dx, out[:, :8])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel, stride", [(2, 2), (3, 2), (3, 1)])
def test_one_row_max_pools_on_the_unrolled_path_match_the_twin(kernel, stride, dtype):
    """1-D pools (and 2-D 1xK windows) with 2/2, 3/2 and 3/1 columns run the unrolled
    fixed-window kernel: values, indices and gradients as the twin's, ties (the first wins),
    NaN (it wins), padding and the ceil_mode overhang included."""
    for length, padding, ceil_mode in ((1, 0, False), (2, 1, True), (9, 1, False), (10, 0, True),
                                       (33, 1, True), (64, 0, False)):
        if padding > kernel // 2 or length + 2 * padding < kernel:
            continue
        x = np.round(_random((2, 3, length), dtype, length) * 2) / 2  # ties
        x[1, 2, length // 2] = np.nan
        for backend_x in (x, x.transpose(1, 0, 2).copy().transpose(1, 0, 2)):  # two layouts
            out, indices, cache = fastconv.max_pool1d_forward(
                backend_x, kernel, stride, padding, ceil_mode=ceil_mode, return_indices=True)
            ref_out, ref_indices, ref_cache = reference.max_pool1d_forward(
                backend_x, kernel, stride, padding, ceil_mode=ceil_mode, return_indices=True)
            np.testing.assert_array_equal(out, ref_out)
            np.testing.assert_array_equal(indices, ref_indices)
            dout = _random(out.shape, dtype, 3)
            np.testing.assert_array_equal(fastconv.max_pool1d_backward(dout, cache),
                                          reference.max_pool1d_backward(dout, ref_cache))
    x2 = _random((2, 2, 5, 12), dtype, 4)
    out, indices, _ = fastconv.max_pool2d_forward(x2, (1, kernel), (1, stride), (0, 1),
                                                  return_indices=True)
    ref_out, ref_indices, _ = reference.max_pool2d_forward(x2, (1, kernel), (1, stride), (0, 1),
                                                           return_indices=True)
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(indices, ref_indices)


@pytest.mark.parametrize("backend", ["cython", "reference"])
def test_unpool_of_an_empty_input_is_all_zeros(backend):
    """x with an empty axis and an output_size that is not empty: every output position is
    one no x element names, so zero (the compiled path once left it unwritten)."""
    x = np.zeros((2, 3, 0, 3), np.float32)
    indices = np.zeros(x.shape, np.int64)
    out, cache = fastconv.max_unpool2d_forward(x, indices, 2, 2, output_size=(1, 6), backend=backend)
    np.testing.assert_array_equal(out, np.zeros((2, 3, 1, 6), np.float32))
    assert fastconv.max_unpool2d_backward(np.ones_like(out), cache).shape == x.shape
