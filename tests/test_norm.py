"""fastconv.norm (batch, layer, group norm): compiled against the reference twins over many shapes,
dtypes and layouts, numerical stability on large means, numerical gradients (float64), running
statistics, threads, NaN, need_dx, and PyTorch when installed."""
import numpy as np
import pytest

import importlib

import fastconv
from fastconv import _compiled, reference
from fastconv._cache import NormCache
from fastconv.gradcheck import numerical_gradient_array, rel_error

from _helpers import LAYOUTS, with_layout

DTYPES = (np.float32, np.float64)
# per dtype: the compiled results against the twin, relative to the largest magnitude
TOLERANCE = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-12}

# (x shape, what it probes); the kernels see (N*C, S) planes, or (N, C) columns when S == 1
BATCH_SHAPES = [
    ((4, 3, 5, 7), "non-square maps"),
    ((1, 2, 6, 6), "N=1"),
    ((5, 1, 3, 3), "C=1"),
    ((6, 5), "(N, C): the column kernels"),
    ((40, 300), "columns in two blocks of 256, rows in several blocks of 16"),
    ((3, 4, 9), "(N, C, L)"),
    ((2, 3, 1, 1), "1x1 maps: columns"),
    ((2, 3, 50, 61), "planes longer than a 2048-value block"),
    ((3, 2, 2, 3, 2), "3-D maps"),
    ((7, 3, 1, 2), "odd sizes, S=2"),
]

LAYER_SHAPES = [  # (x shape, normalised trailing dimensions)
    ((4, 10), 1), ((1, 7), 1), ((3, 4, 5), 1), ((3, 4, 5), 2), ((2, 3, 4, 5), 3),
    ((2, 5000), 1),  # rows of several blocks
    ((6, 1), 1),     # one value per row: var 0
]

GROUP_CASES = [  # (x shape, num_groups)
    ((2, 6, 4, 5), 2), ((2, 6, 4, 5), 1), ((2, 6, 4, 5), 6), ((1, 4, 3), 4), ((3, 8), 2),
    ((2, 4, 30, 30), 2),  # groups of 1800 values
    ((2, 4, 40, 40), 1),  # groups longer than a block
]


def randn(shape, dtype=np.float64, seed=0, scale=1.0, shift=0.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale + shift).astype(dtype)


def assert_near(actual, expected, dtype=None):
    dtype = np.dtype(dtype or expected.dtype)
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    scale = max(float(np.max(np.abs(expected), initial=0.0)), 1.0)
    error = float(np.max(np.abs(actual.astype(np.float64) - expected), initial=0.0))
    assert error <= TOLERANCE[dtype] * scale, f"max error {error:.3e} (scale {scale:.3e})"


def batch_params(channels, dtype, seed=1):
    return randn(channels, dtype, seed) * 2, randn(channels, dtype, seed + 1)


def assert_grads_near(got, want):
    for actual, expected in zip(got, want):
        assert_near(actual, expected)


@pytest.fixture(params=["_norm", "_norm_avx2"])
def build(request, monkeypatch):
    """Each build of the kernels in turn: the baseline one and the AVX2/FMA one (x86-64)."""
    try:
        module = importlib.import_module(f"fastconv._kernels.{request.param}")
    except ImportError:
        pytest.skip(f"{request.param} is not built here")
    monkeypatch.setattr(_compiled, "norm", module)
    return module


def test_build_for_this_cpu(monkeypatch):
    from fastconv._kernels import _norm, _winograd

    expected = _norm if _compiled.winograd_for_this_cpu() is _winograd else importlib.import_module(
        "fastconv._kernels._norm_avx2")
    assert _compiled.norm is expected and _compiled.norm_for_this_cpu() is expected
    monkeypatch.setenv("FASTCONV_NO_AVX2", "1")
    assert _compiled.norm_for_this_cpu() is _norm


# --- compiled against the twin ----------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape, probe", BATCH_SHAPES, ids=[probe for _, probe in BATCH_SHAPES])
def test_batch_norm_matches_reference(shape, probe, training, dtype, build):
    x = randn(shape, dtype, 0, 3.0, 2.0)
    weight, bias = batch_params(shape[1], dtype)
    running = [randn(shape[1], dtype, 5), np.abs(randn(shape[1], dtype, 6)) + 0.5]
    running_ref = [a.copy() for a in running]
    out, cache = fastconv.batch_norm_forward(x, weight, bias, *running, training=training, backend="cython")
    expected, ref_cache = reference.batch_norm_forward(x, weight, bias, *running_ref, training=training)
    assert cache.backend == "cython" and ref_cache.backend == "reference"
    assert_near(out, expected)
    np.testing.assert_allclose(cache.mean, ref_cache.mean, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(cache.var, ref_cache.var, rtol=1e-12, atol=1e-14)
    for got, want in zip(running, running_ref):
        assert_near(got, want)
    dout = randn(shape, dtype, 9)
    assert_grads_near(fastconv.batch_norm_backward(dout, cache), reference.batch_norm_backward(dout, ref_cache))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, trailing", LAYER_SHAPES)
def test_layer_norm_matches_reference(shape, trailing, dtype, build):
    x = randn(shape, dtype, 0, 2.0, -1.0)
    weight = randn(shape[len(shape) - trailing:], dtype, 1)
    bias = randn(weight.shape, dtype, 2)
    out, cache = fastconv.layer_norm_forward(x, weight, bias, backend="cython")
    expected, ref_cache = reference.layer_norm_forward(x, weight, bias)
    assert_near(out, expected)
    dout = randn(shape, dtype, 9)
    assert_grads_near(fastconv.layer_norm_backward(dout, cache), reference.layer_norm_backward(dout, ref_cache))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, groups", GROUP_CASES)
def test_group_norm_matches_reference(shape, groups, dtype, build):
    x = randn(shape, dtype, 0, 2.0, 3.0)
    weight, bias = batch_params(shape[1], dtype)
    out, cache = fastconv.group_norm_forward(x, weight, bias, groups, backend="cython")
    expected, ref_cache = reference.group_norm_forward(x, weight, bias, groups)
    assert_near(out, expected)
    assert cache.mean.shape == (shape[0], groups)
    dout = randn(shape, dtype, 9)
    assert_grads_near(fastconv.group_norm_backward(dout, cache), reference.group_norm_backward(dout, ref_cache))


def _three_ops(x, dtype):
    channels = x.shape[1]
    weight, bias = batch_params(channels, dtype)
    layer_weight, layer_bias = randn(x.shape[1:], dtype, 3), randn(x.shape[1:], dtype, 4)
    return [
        (lambda a, **o: fastconv.batch_norm_forward(a, weight, bias, **o), fastconv.batch_norm_backward),
        (lambda a, **o: fastconv.layer_norm_forward(a, layer_weight, layer_bias, **o), fastconv.layer_norm_backward),
        (lambda a, **o: fastconv.group_norm_forward(a, weight, bias, 3, **o), fastconv.group_norm_backward),
    ]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_every_layout_gives_the_same_result_and_nothing_is_written(layout, dtype):
    x = randn((3, 6, 5, 4), dtype, 0, 2.0, 1.0)
    dout = randn(x.shape, dtype, 1)
    for forward, backward in _three_ops(x, dtype):
        expected, cache = forward(x)
        expected_grads = backward(dout, cache)
        x_laid, dout_laid = with_layout(x, layout), with_layout(dout, layout)
        x_before, dout_before = x_laid.copy(), dout_laid.copy()
        out, cache = forward(x_laid)
        np.testing.assert_array_equal(out, expected)
        for got, want in zip(backward(dout_laid, cache), expected_grads):
            np.testing.assert_array_equal(got, want)
            assert got.dtype == dtype
        np.testing.assert_array_equal(x_laid, x_before)
        np.testing.assert_array_equal(dout_laid, dout_before)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_threads_give_the_same_result(threads, monkeypatch, build):
    monkeypatch.setattr(fastconv.norm, "_PARALLEL_MIN_ELEMENTS", 0)
    for shape in [(4, 6, 9, 7), (50, 600)]:
        x = randn(shape, np.float32, 0, 2.0, 1.0)
        dout = randn(shape, np.float32, 1)
        results = {}
        for count in (1, threads):
            fastconv.set_num_threads(count)
            try:
                results[count] = []
                for forward, backward in _three_ops(x, np.float32)[:2 if len(shape) == 2 else 3]:
                    out, cache = forward(x, backend="cython")
                    results[count].append((out,) + backward(dout, cache))
            finally:
                fastconv.set_num_threads(fastconv._settings._default_threads())
        for single, multi in zip(results[1], results[threads]):
            for a, b in zip(single, multi):
                # layer norm's parameter gradients add per-thread sums: rounding may differ
                np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


# --- numerical stability ---------------------------------------------------------------------

@pytest.mark.parametrize("noise", [1.0, 0.05])
def test_large_mean_in_float32_against_a_float64_two_pass_reference(noise, build):
    # 1e4 + noise in float32: a one-pass E[x^2] - E[x]^2 in float32 loses every digit of the
    # variance here; the kernels' statistics match float64 two-pass ones on the same values
    x = randn((16, 8, 12, 12), np.float64, 3, noise, 1e4).astype(np.float32)
    x64 = x.astype(np.float64)
    weight, bias = np.ones(8, np.float32), np.zeros(8, np.float32)
    axes = (0, 2, 3)
    mean = x64.mean(axis=axes)
    var = ((x64 - mean[None, :, None, None]) ** 2).mean(axis=axes)
    naive_var = (x * x).mean(axis=axes, dtype=np.float32) - x.mean(axis=axes, dtype=np.float32) ** 2
    assert np.max(np.abs(naive_var - var) / var) > 0.1  # the test data defeats the naive formula
    out, cache = fastconv.batch_norm_forward(x, weight, bias, backend="cython")
    np.testing.assert_allclose(cache.mean, mean, rtol=1e-15, atol=0)
    np.testing.assert_allclose(cache.var, var, rtol=1e-9)
    expected = (x64 - mean[None, :, None, None]) / np.sqrt(var + 1e-5)[None, :, None, None]
    assert np.max(np.abs(out - expected)) < 1e-5
    dout = randn(x.shape, np.float32, 4)
    dx, dweight, dbias = fastconv.batch_norm_backward(dout, cache)
    _, ref_cache = reference.batch_norm_forward(x, weight, bias)
    ref_dx, ref_dweight, _ = reference.batch_norm_backward(dout, ref_cache)
    assert np.max(np.abs(dx - ref_dx)) <= 1e-6 * np.max(np.abs(ref_dx))
    assert np.max(np.abs(dweight - ref_dweight)) <= 1e-6 * np.max(np.abs(ref_dweight))
    # layer and group norm share the moment kernel: the same precision
    rows = x.reshape(16, -1)
    _, layer_cache = fastconv.layer_norm_forward(rows, np.ones(rows.shape[1], np.float32),
                                                 np.zeros(rows.shape[1], np.float32), backend="cython")
    np.testing.assert_allclose(layer_cache.var, rows.astype(np.float64).var(axis=1), rtol=1e-9)
    _, group_cache = fastconv.group_norm_forward(x, weight, bias, 4, backend="cython")
    np.testing.assert_allclose(group_cache.var, x64.reshape(16, 4, -1).var(axis=2), rtol=1e-9)


def test_column_statistics_merge_many_blocks_exactly():
    # 1000 rows = 63 blocks of 16 merged by Chan's formula, with a drifting mean
    x = randn((1000, 300), np.float64, 5, 1.0, 0.0) + np.linspace(0, 1e6, 1000)[:, None]
    _, cache = fastconv.batch_norm_forward(x, np.ones(300), np.zeros(300), backend="cython")
    np.testing.assert_allclose(cache.mean, x.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(cache.var, x.var(axis=0), rtol=1e-12)


# --- numerical gradients (float64) -----------------------------------------------------------

def norm_error(a, b):
    """||a - b|| / (||a|| + ||b||): the elementwise rel_error of centred differences is
    dominated by rounding on entries near zero."""
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-300))


def _gradient_check(forward, backward, x, params, seed=7):
    out, cache = forward(x)
    dout = randn(out.shape, np.float64, seed)
    dx, *param_grads = backward(dout, cache)
    numerical = numerical_gradient_array(lambda v: forward(v)[0], x, dout)
    assert norm_error(dx, numerical) < 1e-9 and rel_error(dx, numerical) < 1e-6
    for param, grad in zip(params, param_grads):
        numerical = numerical_gradient_array(lambda v: forward(x)[0], param, dout)
        assert norm_error(grad, numerical) < 1e-9 and rel_error(grad, numerical) < 1e-6


@pytest.mark.parametrize("backend", ["cython", "reference"])
@pytest.mark.parametrize("shape", [(4, 3, 3, 2), (5, 4), (3, 2, 5)])
def test_batch_norm_numerical_gradients(shape, backend):
    x = randn(shape, np.float64, 1, 3.0, 1.0)
    weight, bias = batch_params(shape[1], np.float64)
    _gradient_check(lambda a: fastconv.batch_norm_forward(a, weight, bias, backend=backend),
                    fastconv.batch_norm_backward, x, (weight, bias))
    running = (randn(shape[1], seed=3), np.abs(randn(shape[1], seed=4)) + 0.5)
    _gradient_check(lambda a: fastconv.batch_norm_forward(a, weight, bias, *running, training=False, backend=backend),
                    fastconv.batch_norm_backward, x, (weight, bias))


@pytest.mark.parametrize("backend", ["cython", "reference"])
@pytest.mark.parametrize("shape, trailing", [((4, 6), 1), ((2, 3, 4), 2)])
def test_layer_norm_numerical_gradients(shape, trailing, backend):
    x = randn(shape, np.float64, 1, 3.0, 1.0)
    weight, bias = randn(shape[len(shape) - trailing:], seed=2), randn(shape[len(shape) - trailing:], seed=3)
    _gradient_check(lambda a: fastconv.layer_norm_forward(a, weight, bias, backend=backend),
                    fastconv.layer_norm_backward, x, (weight, bias))


@pytest.mark.parametrize("backend", ["cython", "reference"])
@pytest.mark.parametrize("shape, groups", [((2, 6, 3, 2), 2), ((3, 4, 5), 4), ((2, 4), 1)])
def test_group_norm_numerical_gradients(shape, groups, backend):
    x = randn(shape, np.float64, 1, 3.0, 1.0)
    weight, bias = batch_params(shape[1], np.float64)
    _gradient_check(lambda a: fastconv.group_norm_forward(a, weight, bias, groups, backend=backend),
                    fastconv.group_norm_backward, x, (weight, bias))


@pytest.mark.parametrize("backend", ["cython", "reference"])
def test_need_dx_false_skips_dx_only(backend):
    x = randn((3, 6, 4, 4), np.float64, 0)
    dout = randn(x.shape, np.float64, 1)
    for forward, backward in _three_ops(x, np.float64):
        _, cache = forward(x, backend=backend)
        full = backward(dout, cache)
        dx, dweight, dbias = backward(dout, cache, need_dx=False)
        assert dx is None
        np.testing.assert_array_equal(dweight, full[1])
        np.testing.assert_array_equal(dbias, full[2])


# --- semantics -------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["cython", "reference"])
def test_running_statistics_hand_computed(backend):
    # one channel, values 1, 2, 3, 6: mean 3, biased var 3.5, unbiased var 14/3
    x = np.array([1.0, 2.0, 3.0, 6.0]).reshape(2, 1, 2)
    running_mean, running_var = np.array([1.0]), np.array([2.0])
    out, cache = fastconv.batch_norm_forward(x, np.ones(1), np.zeros(1), running_mean, running_var,
                                             momentum=0.25, backend=backend)
    np.testing.assert_allclose(running_mean, [0.75 * 1 + 0.25 * 3])
    np.testing.assert_allclose(running_var, [0.75 * 2 + 0.25 * 14 / 3])
    np.testing.assert_allclose(cache.mean, [3.0])
    np.testing.assert_allclose(cache.var, [3.5])
    np.testing.assert_allclose(out.ravel(), (np.array([1, 2, 3, 6]) - 3) / np.sqrt(3.5 + 1e-5))
    # evaluation uses and keeps the running statistics
    out, _ = fastconv.batch_norm_forward(x, np.ones(1), np.zeros(1), running_mean, running_var,
                                         training=False, backend=backend)
    np.testing.assert_allclose(out.ravel(), (np.array([1, 2, 3, 6]) - 1.5) / np.sqrt(running_var[0] + 1e-5))
    np.testing.assert_allclose(running_mean, [1.5])


def test_group_norm_by_hand_and_special_cases():
    x = randn((2, 4, 3, 3), seed=2, scale=2.0, shift=5.0)
    weight, bias = np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.0, 1.0, -1.0, 0.5])
    out, _ = fastconv.group_norm_forward(x, weight, bias, 2)
    for n in range(2):
        for g in range(2):
            values = x[n, 2 * g:2 * g + 2]
            normalised = (values - values.mean()) / np.sqrt(values.var() + 1e-5)
            expected = normalised * weight[2 * g:2 * g + 2, None, None] + bias[2 * g:2 * g + 2, None, None]
            np.testing.assert_allclose(out[n, 2 * g:2 * g + 2], expected, rtol=1e-12, atol=1e-12)
    # one group is a layer norm over (C, H, W) with per-channel parameters
    ones, zeros = np.ones(4), np.zeros(4)
    grouped, _ = fastconv.group_norm_forward(x, ones, zeros, 1)
    layered, _ = fastconv.layer_norm_forward(x, np.ones(x.shape[1:]), np.zeros(x.shape[1:]))
    np.testing.assert_allclose(grouped, layered, rtol=1e-12, atol=1e-12)


def test_nan_spreads_over_its_own_normalised_set_only():
    x = randn((3, 4, 5, 5), seed=3)
    x[1, 2, 3, 1] = np.nan
    ones, zeros = np.ones(4), np.zeros(4)
    out, _ = fastconv.batch_norm_forward(x, ones, zeros)
    assert np.isnan(out[:, 2]).all() and not np.isnan(np.delete(out, 2, axis=1)).any()
    out, _ = fastconv.group_norm_forward(x, ones, zeros, 2)
    assert np.isnan(out[1, 2:]).all() and np.isnan(out).sum() == 2 * 25
    out, _ = fastconv.layer_norm_forward(x, np.ones((5, 5)), np.zeros((5, 5)))
    assert np.isnan(out[1, 2]).all() and np.isnan(out).sum() == 25


def test_empty_batches():
    x = np.zeros((0, 3, 4, 4), np.float32)
    ones, zeros = np.ones(3, np.float32), np.zeros(3, np.float32)
    out, cache = fastconv.batch_norm_forward(x, ones, zeros, zeros.copy(), ones.copy(), training=False)
    assert out.shape == x.shape
    dx, dweight, _ = fastconv.batch_norm_backward(out, cache)
    assert dx.shape == x.shape and np.array_equal(dweight, zeros)
    for backend in ("cython", "reference"):
        out, cache = fastconv.group_norm_forward(x, ones, zeros, 3, backend=backend)
        assert out.shape == x.shape
        assert fastconv.group_norm_backward(out, cache)[0].shape == x.shape
        out, cache = fastconv.layer_norm_forward(x, np.ones((3, 4, 4), np.float32), np.zeros((3, 4, 4), np.float32),
                                                 backend=backend)
        assert out.shape == x.shape and fastconv.layer_norm_backward(out, cache)[0].shape == x.shape


def test_cache_is_read_only_and_its_own():
    x = randn((2, 3, 4, 4))
    weight, bias = np.ones(3), np.zeros(3)
    _, cache = fastconv.batch_norm_forward(x, weight, bias)
    assert isinstance(cache, NormCache) and "batch" in repr(cache)
    with pytest.raises(TypeError, match="read-only"):
        cache.mean = np.zeros(3)
    with pytest.raises(ValueError):
        cache.inv_std[0] = 1.0
    weight[0] = 5.0  # an optimiser step between forward and backward does not reach the cache
    assert cache.weight[0] == 1.0
    _, group_cache = fastconv.group_norm_forward(x, np.ones(3), bias, 3)
    with pytest.raises(TypeError, match="NormCache returned by batch_norm_forward, got one from group"):
        fastconv.batch_norm_backward(x, group_cache)


# --- against PyTorch -------------------------------------------------------------------------

def _torch_grads(function, x, params, dout):
    torch = pytest.importorskip("torch")
    tensors = [torch.tensor(a, requires_grad=True) for a in (x,) + params]
    out = function(*tensors)
    out.backward(torch.from_numpy(dout))
    return [out.detach().numpy()] + [t.grad.numpy() for t in tensors]


@pytest.mark.parametrize("dtype, tolerance", [(np.float64, 1e-10), (np.float32, 2e-5)])
def test_matches_torch(dtype, tolerance):
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    x = randn((4, 6, 5, 3), dtype, 0, 2.0, 3.0)
    dout = randn(x.shape, dtype, 1)
    weight, bias = batch_params(6, dtype)
    layer_weight, layer_bias = randn((5, 3), dtype, 3), randn((5, 3), dtype, 4)
    cases = [
        (lambda a: fastconv.batch_norm_forward(a, weight, bias), fastconv.batch_norm_backward,
         lambda t, w, b: functional.batch_norm(t, None, None, w, b, training=True), (weight, bias)),
        (lambda a: fastconv.layer_norm_forward(a, layer_weight, layer_bias), fastconv.layer_norm_backward,
         lambda t, w, b: functional.layer_norm(t, (5, 3), w, b), (layer_weight, layer_bias)),
        (lambda a: fastconv.group_norm_forward(a, weight, bias, 3), fastconv.group_norm_backward,
         lambda t, w, b: functional.group_norm(t, 3, w, b), (weight, bias)),
    ]
    for forward, backward, torch_function, params in cases:
        out, cache = forward(x)
        ours = [out] + list(backward(dout, cache))
        theirs = _torch_grads(torch_function, x, params, dout)
        for got, want in zip(ours, theirs):
            assert got.dtype == dtype
            assert np.max(np.abs(got - want)) <= tolerance * max(1.0, np.max(np.abs(want)))
    # running statistics as torch keeps them
    running = [np.zeros(6, dtype), np.ones(6, dtype)]
    torch_running = [torch.zeros(6, dtype=torch.from_numpy(x).dtype), torch.ones(6, dtype=torch.from_numpy(x).dtype)]
    fastconv.batch_norm_forward(x, weight, bias, *running, momentum=0.3)
    functional.batch_norm(torch.from_numpy(x), *torch_running, torch.from_numpy(weight), torch.from_numpy(bias),
                          training=True, momentum=0.3)
    for got, want in zip(running, torch_running):
        np.testing.assert_allclose(got, want.numpy(), rtol=tolerance, atol=tolerance)


def test_the_docs_example_runs():
    import pathlib
    import re

    text = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "normalization.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 1
    namespace = {}
    exec(compile(blocks[0], "docs/normalization.md", "exec"), namespace)
    assert namespace["dx"].shape == (64, 32, 16, 16) and namespace["running_mean"].any()
