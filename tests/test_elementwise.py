"""relu / leaky_relu / dropout forward and backward: the compiled kernels against their NumPy twins
(shapes, dtypes, layouts, NaN and infinities, the bit masks, in place, threads), numerical
gradients in float64, and bad input."""
import numpy as np
import pytest

import fastconv
from fastconv import elementwise, reference
from fastconv._cache import MaskCache
from fastconv.gradcheck import numerical_gradient_array, rel_error

from _helpers import LAYOUTS, with_layout

DTYPES = (np.float32, np.float64)
# non-square, single elements, odd sizes, a partial last mask byte, several kernel chunks
# (2**15 elements each) and one with a partial last chunk
SHAPES = [(1,), (7,), (8,), (9,), (3, 5), (2, 3, 4, 5), (1, 1, 1, 1), (4, 1, 7, 3),
          (2**15,), (3, 2**14 + 5), (0,), (0, 4)]


def _values(shape, dtype, seed=0, specials=True):
    """Random values with (where room) 0, -0, NaN and +-inf among them."""
    x = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    if specials and x.size >= 8:
        flat = x.reshape(-1)
        flat[[0, 1, 2, 3, 4]] = [0.0, -0.0, np.nan, np.inf, -np.inf]
    return x


def _same(actual, expected):
    """Equal bit for bit: values, NaN positions and the signs of zeros."""
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    assert np.array_equal(actual, expected, equal_nan=True)
    assert np.array_equal(np.signbit(actual), np.signbit(expected))


OPS = {
    "relu": (lambda x, **kw: fastconv.relu_forward(x, **kw), fastconv.relu_backward,
             reference.relu_forward, reference.relu_backward),
    "leaky_relu": (lambda x, **kw: fastconv.leaky_relu_forward(x, 0.15, **kw), fastconv.leaky_relu_backward,
                   lambda x: reference.leaky_relu_forward(x, 0.15), reference.leaky_relu_backward),
    "leaky_relu alpha 0": (lambda x, **kw: fastconv.leaky_relu_forward(x, 0.0, **kw),
                           fastconv.leaky_relu_backward,
                           lambda x: reference.leaky_relu_forward(x, 0.0), reference.leaky_relu_backward),
}


@pytest.mark.filterwarnings("ignore:invalid value")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", OPS)
def test_activation_matches_reference(name, shape, dtype):
    forward, backward, reference_forward, reference_backward = OPS[name]
    x = _values(shape, dtype)
    dout = _values(shape, dtype, seed=1)
    out, cache = forward(x, backend="cython")
    expected, expected_cache = reference_forward(x)
    _same(out, expected)
    assert cache.backend == "cython" and cache.mask.dtype == np.uint8
    # one bit per element, set where x > 0 (not for 0, -0 or NaN), little-endian in each byte
    assert np.array_equal(cache.mask, np.packbits(x.reshape(-1) > 0, bitorder="little"))
    _same(backward(dout, cache), reference_backward(dout, expected_cache))


@pytest.mark.filterwarnings("ignore:invalid value")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_dropout_matches_reference(shape, dtype):
    x = _values(shape, dtype)
    dout = _values(shape, dtype, seed=1)
    uniform = np.random.default_rng(2).random(shape)
    for p in (0.0, 0.3, 0.999):
        out, cache = fastconv.dropout_forward(x, p, uniform, backend="cython")
        expected, expected_cache = reference.dropout_forward(x, p, uniform)
        _same(out, expected)
        assert np.array_equal(cache.mask, np.packbits(uniform.reshape(-1) >= p, bitorder="little"))
        _same(fastconv.dropout_backward(dout, cache), reference.dropout_backward(dout, expected_cache))


def test_nan_stays_nan_and_masked_gradients_are_zero_even_for_nan_dout():
    x = np.array([np.nan, -1.0, 2.0, 0.0, -np.inf, np.inf], np.float32)
    out, cache = fastconv.relu_forward(x)
    assert np.isnan(out[0]) and list(out[1:]) == [0, 2, 0, 0, np.inf]
    dx = fastconv.relu_backward(np.full(6, np.nan, np.float32), cache)
    assert np.isnan(dx[[2, 5]]).all() and not dx[[0, 1, 3, 4]].any()
    leaky, _ = fastconv.leaky_relu_forward(x, 0.5)
    assert np.isnan(leaky[0]) and list(leaky[1:]) == [-0.5, 2, 0, -np.inf, np.inf]


def _every_layout_case():
    for dtype in DTYPES:
        for layout in LAYOUTS:
            yield dtype, layout


@pytest.mark.parametrize("dtype, layout", list(_every_layout_case()))
def test_any_layout_gives_the_reference_result_and_inputs_are_not_written(dtype, layout):
    x = with_layout(_values((4, 3, 5, 6), dtype, specials=False), layout)
    dout = with_layout(_values((4, 3, 5, 6), dtype, seed=3, specials=False), layout)
    uniform = with_layout(np.random.default_rng(4).random((4, 3, 5, 6)), layout)
    saved = [a.copy() for a in (x, dout, uniform)]
    for name, (forward, backward, reference_forward, reference_backward) in OPS.items():
        out, cache = forward(x)
        expected, expected_cache = reference_forward(np.ascontiguousarray(x))
        _same(out, expected)
        _same(backward(dout, cache), reference_backward(np.ascontiguousarray(dout), expected_cache))
    out, cache = fastconv.dropout_forward(x, 0.4, uniform)
    expected, expected_cache = reference.dropout_forward(x, 0.4, uniform)
    _same(out, expected)
    _same(fastconv.dropout_backward(dout, cache), reference.dropout_backward(dout, expected_cache))
    for array, before in zip((x, dout, uniform), saved):
        assert np.array_equal(array, before)


def test_fortran_order_is_kept_and_dout_of_another_order_is_accepted():
    x = np.asfortranarray(_values((5, 6, 7), np.float64, specials=False))
    out, cache = fastconv.relu_forward(x)
    assert out.flags.f_contiguous and cache.order == "F"
    dout = np.ascontiguousarray(_values((5, 6, 7), np.float64, seed=2, specials=False))
    _same(fastconv.relu_backward(dout, cache), np.where(x > 0, dout, 0.0))


@pytest.mark.parametrize("backend", ["cython", "reference"])
@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_inplace_writes_x_and_returns_it(backend, layout):
    source = _values((3, 4, 5), np.float64, specials=False)
    for name, forward, reference_forward in [
        ("relu", lambda x: fastconv.relu_forward(x, inplace=True, backend=backend), reference.relu_forward),
        ("leaky", lambda x: fastconv.leaky_relu_forward(x, 0.2, inplace=True, backend=backend),
         lambda x: reference.leaky_relu_forward(x, 0.2)),
    ]:
        x = with_layout(source, layout)
        out, cache = forward(x)
        assert out is x, name
        _same(np.ascontiguousarray(x), reference_forward(source)[0])
        assert np.array_equal(np.asarray(cache.mask, bool) if backend == "reference" else cache.mask,
                              source > 0 if backend == "reference" else
                              np.packbits((source > 0).reshape(-1, order=cache.order), bitorder="little"))


def test_inplace_on_a_read_only_array_is_an_error():
    x = with_layout(np.ones((2, 3)), "readonly")
    with pytest.raises(ValueError, match=r"inplace=True writes the result into x, but x \(shape \(2, 3\)\) is read-only"):
        fastconv.relu_forward(x, inplace=True)
    with pytest.raises(ValueError, match="read-only"):
        fastconv.leaky_relu_forward(x, inplace=True)


@pytest.mark.filterwarnings("ignore:invalid value")
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_results_do_not_depend_on_the_thread_count(threads):
    before = fastconv.get_num_threads()
    x = _values((2, 2**21 + 2**15 + 3), np.float32)  # past the parallel threshold, a partial chunk
    dout = _values(x.shape, np.float32, seed=1)
    uniform = np.random.default_rng(5).random(x.shape)
    try:
        fastconv.set_num_threads(threads)
        used = elementwise._threads(x.size)
        out, cache = fastconv.relu_forward(x)
        dx = fastconv.relu_backward(dout, cache)
        dropped, dropout_cache = fastconv.dropout_forward(x, 0.5, uniform)
    finally:
        fastconv.set_num_threads(before)
    expected, expected_cache = reference.relu_forward(x)
    _same(out, expected)
    _same(dx, reference.relu_backward(dout, expected_cache))
    _same(dropped, reference.dropout_forward(x, 0.5, uniform)[0])
    assert used == threads


@pytest.mark.parametrize("backend", ["cython", "reference"])
def test_numerical_gradients_float64(backend):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 5))
    x = np.where(np.abs(x) < 0.05, 0.5, x)  # no element near the kink
    dout = rng.standard_normal(x.shape)
    uniform = rng.random(x.shape)
    for forward, backward in [
        (lambda a: fastconv.relu_forward(a, backend=backend), fastconv.relu_backward),
        (lambda a: fastconv.leaky_relu_forward(a, 0.1, backend=backend), fastconv.leaky_relu_backward),
        (lambda a: fastconv.dropout_forward(a, 0.3, uniform, backend=backend), fastconv.dropout_backward),
    ]:
        _, cache = forward(x)
        analytic = backward(dout, cache)
        numeric = numerical_gradient_array(lambda a: forward(a)[0], x, dout)
        assert rel_error(analytic, numeric) < 1e-7


def test_caches_are_read_only_and_checked():
    x = _values((2, 3), np.float32, specials=False)
    _, cache = fastconv.relu_forward(x)
    assert isinstance(cache, MaskCache) and "relu" in repr(cache)
    with pytest.raises(TypeError, match="read-only"):
        cache.mask = np.zeros(1, np.uint8)
    with pytest.raises(ValueError, match="read-only"):
        cache.mask[...] = 255
    _, leaky_cache = fastconv.leaky_relu_forward(x)
    with pytest.raises(TypeError, match=r"cache must be the MaskCache returned by relu_forward, got one from leaky_relu_forward"):
        fastconv.relu_backward(np.ones((2, 3), np.float32), leaky_cache)
    with pytest.raises(TypeError, match="cache must be the MaskCache returned by .*dropout_forward"):
        fastconv.dropout_backward(np.ones((2, 3), np.float32), (x, 0.5))


def test_bad_arguments():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(TypeError, match="x must be a numpy.ndarray"):
        fastconv.relu_forward([1.0, 2.0])
    with pytest.raises(TypeError, match="x must have dtype float32 or float64, got int64"):
        fastconv.relu_forward(np.ones(3, np.int64))
    with pytest.raises(ValueError, match="alpha must be a number >= 0"):
        fastconv.leaky_relu_forward(x, -0.1)
    with pytest.raises(ValueError, match=r"p \(the drop probability\) must lie in \[0, 1\)"):
        fastconv.dropout_forward(x, 1.0, np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"uniform must have x's shape \(2, 3\), got \(3, 2\)"):
        fastconv.dropout_forward(x, 0.5, np.zeros((3, 2)))
    with pytest.raises(TypeError, match="uniform must have dtype float64"):
        fastconv.dropout_forward(x, 0.5, np.zeros((2, 3), np.float32))
    _, cache = fastconv.relu_forward(x)
    with pytest.raises(ValueError, match=r"dout must have the forward output's shape \(2, 3\), got \(3, 2\)"):
        fastconv.relu_backward(np.ones((3, 2), np.float32), cache)
    with pytest.raises(TypeError, match="dout must have the forward output's dtype float32, got float64"):
        fastconv.relu_backward(np.ones((2, 3)), cache)
    with pytest.raises(ValueError, match="unknown backend"):
        fastconv.relu_forward(x, backend="gpu")


def test_the_layers_run_these_ops():
    from fastconv.layers import Dropout, LeakyReLU, ReLU

    x = _values((3, 4), np.float32, specials=False)
    assert np.array_equal(ReLU().forward(x), fastconv.relu_forward(x)[0])
    assert np.array_equal(LeakyReLU(0.2).forward(x), fastconv.leaky_relu_forward(x, 0.2)[0])
    layer = Dropout(0.5, rng=np.random.default_rng(7))
    expected, _ = fastconv.dropout_forward(x, 0.5, np.random.default_rng(7).random(x.shape))
    assert np.array_equal(layer.forward(x), expected)
    assert elementwise._threads(10) == 1 and elementwise._threads(2**22 - 1) == 1
