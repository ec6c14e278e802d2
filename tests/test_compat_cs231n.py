"""fastconv.compat.cs231n: the course's names against the reference twins, numerical gradients,
PyTorch (when installed), dtypes, and bad input."""
import numpy as np
import pytest

import fastconv
from fastconv import _backend, _compiled, reference
from fastconv.compat import cs231n
from fastconv.compat.cs231n import (
    conv_backward_fast,
    conv_backward_naive,
    conv_forward_fast,
    conv_forward_naive,
    conv_relu_backward,
    conv_relu_forward,
    conv_relu_pool_backward,
    conv_relu_pool_forward,
    max_pool_backward_fast,
    max_pool_backward_naive,
    max_pool_forward_fast,
    max_pool_forward_naive,
)

from _helpers import assert_close, numerical_gradient, rel_error

DTYPES = (np.float32, np.float64)

# (x shape, w shape, conv_param), each probing what its comment names
CONV_CASES = [
    ((2, 3, 8, 8), (4, 3, 3, 3), {"stride": 1, "pad": 1}),              # the course's usual setting
    ((2, 3, 5, 5), (3, 3, 4, 4), {"stride": 2, "pad": 1}),              # the notebook's forward test shape
    ((2, 2, 7, 9), (3, 2, 2, 5), {"stride": 1, "pad": 0}),              # non-square kernel
    ((1, 1, 9, 7), (2, 1, 3, 2), {"stride": (2, 1), "pad": (1, 0)}),    # (h, w) stride and pad pairs
    ((3, 2, 10, 11), (2, 2, 3, 3), {"stride": 3, "pad": 0}),            # stride does not divide: floor
]

# (x shape, pool_param)
POOL_CASES = [
    ((2, 3, 8, 8), {"pool_height": 2, "pool_width": 2, "stride": 2}),   # the course's usual setting
    ((2, 2, 7, 9), {"pool_height": 3, "pool_width": 3, "stride": 1}),   # overlapping windows
    ((1, 3, 6, 9), {"pool_height": 2, "pool_width": 3, "stride": 2}),   # non-square, overlapping in w
    ((2, 1, 9, 8), {"pool_height": 3, "pool_width": 2, "stride": (2, 1)}),
    ((3, 2, 7, 7), {"pool_height": 2, "pool_width": 2, "stride": 2}),   # odd size: last row dropped
]


def randn(shape, dtype=np.float64, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def conv_inputs(x_shape, w_shape, dtype=np.float64, seed=0):
    return randn(x_shape, dtype, seed), randn(w_shape, dtype, seed + 1), randn(w_shape[0], dtype, seed + 2)


def pool_kernel(pool_param):
    return pool_param["pool_height"], pool_param["pool_width"]


@pytest.fixture(autouse=True)
def clean_dispatch(monkeypatch):
    monkeypatch.delenv("FASTCONV_BACKEND", raising=False)
    monkeypatch.setattr(_backend, "_default", None)
    monkeypatch.setattr(_backend, "_warned", False)


def test_star_import_exports_the_course_names():
    namespace = {}
    exec("from fastconv.compat.cs231n import *", namespace)
    exported = {name for name in namespace if not name.startswith("__")}
    assert exported == {
        "conv_forward_naive", "conv_backward_naive", "conv_forward_fast", "conv_backward_fast",
        "max_pool_forward_naive", "max_pool_backward_naive", "max_pool_forward_fast",
        "max_pool_backward_fast", "conv_relu_forward", "conv_relu_backward",
        "conv_relu_pool_forward", "conv_relu_pool_backward",
    }
    for name in exported:
        assert callable(namespace[name]) and namespace[name].__doc__


# --- conv: naive is the reference twin, fast agrees with it -----------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape, w_shape, conv_param", CONV_CASES)
def test_conv_naive_is_the_reference(x_shape, w_shape, conv_param, dtype):
    x, w, b = conv_inputs(x_shape, w_shape, dtype)
    out, cache = conv_forward_naive(x, w, b, conv_param)
    expected, expected_cache = reference.conv2d_forward(x, w, b, conv_param["stride"], conv_param["pad"])
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == dtype and cache.backend == "reference"
    dout = randn(out.shape, dtype, 9)
    grads = conv_backward_naive(dout, cache)
    assert len(grads) == 3
    for got, want in zip(grads, reference.conv2d_backward(dout, expected_cache)):
        np.testing.assert_array_equal(got, want)
        assert got.dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape, w_shape, conv_param", CONV_CASES)
def test_conv_fast_matches_naive(x_shape, w_shape, conv_param, dtype):
    x, w, b = conv_inputs(x_shape, w_shape, dtype)
    out_naive, cache_naive = conv_forward_naive(x, w, b, conv_param)
    out_fast, cache_fast = conv_forward_fast(x, w, b, conv_param)
    assert cache_fast.backend == "cython"
    assert_close(out_fast, out_naive)
    dout = randn(out_fast.shape, dtype, 9)
    for fast, naive in zip(conv_backward_fast(dout, cache_fast), conv_backward_naive(dout, cache_naive)):
        assert_close(fast, naive)


def test_conv_naive_numerical_gradients():
    x, w, b = conv_inputs((2, 3, 6, 5), (2, 3, 3, 2), seed=3)
    conv_param = {"stride": (2, 1), "pad": 1}
    out, cache = conv_forward_naive(x, w, b, conv_param)
    dout = randn(out.shape, seed=4)
    dx, dw, db = conv_backward_naive(dout, cache)
    assert rel_error(dx, numerical_gradient(lambda v: conv_forward_naive(v, w, b, conv_param)[0], x, dout)) < 1e-8
    assert rel_error(dw, numerical_gradient(lambda v: conv_forward_naive(x, v, b, conv_param)[0], w, dout)) < 1e-8
    assert rel_error(db, numerical_gradient(lambda v: conv_forward_naive(x, w, v, conv_param)[0], b, dout)) < 1e-8


def test_conv_fast_backend_can_be_chosen():
    x, w, b = conv_inputs((1, 2, 5, 5), (2, 2, 3, 3))
    _, cache = conv_forward_fast(x, w, b, {"stride": 1, "pad": 0}, backend="reference")
    assert cache.backend == "reference"


# --- max pooling ------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape, pool_param", POOL_CASES)
def test_max_pool_naive_is_the_reference(x_shape, pool_param, dtype):
    x = randn(x_shape, dtype)
    out, cache = max_pool_forward_naive(x, pool_param)
    expected, expected_cache = reference.max_pool2d_forward(x, pool_kernel(pool_param), pool_param["stride"])
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == dtype and cache.backend == "reference"
    dout = randn(out.shape, dtype, 9)
    dx = max_pool_backward_naive(dout, cache)
    np.testing.assert_array_equal(dx, reference.max_pool2d_backward(dout, expected_cache))
    assert dx.dtype == dtype and dx.shape == x_shape


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape, pool_param", POOL_CASES)
def test_max_pool_fast_matches_naive(x_shape, pool_param, dtype):
    x = randn(x_shape, dtype)
    out_naive, cache_naive = max_pool_forward_naive(x, pool_param)
    out_fast, cache_fast = max_pool_forward_fast(x, pool_param)
    assert cache_fast.backend == "cython"
    np.testing.assert_array_equal(out_fast, out_naive)  # a max is exact
    dout = randn(out_fast.shape, dtype, 9)
    np.testing.assert_array_equal(max_pool_backward_fast(dout, cache_fast),
                                  max_pool_backward_naive(dout, cache_naive))


def test_max_pool_output_size_and_values_by_hand():
    x = np.arange(2 * 5 * 7, dtype=np.float64).reshape(1, 2, 5, 7)
    out, _ = max_pool_forward_naive(x, {"pool_height": 2, "pool_width": 3, "stride": 2})
    # H' = (5 - 2) // 2 + 1 = 2, W' = (7 - 3) // 2 + 1 = 3; x increases along rows and columns,
    # so each window's max is its bottom-right element
    assert out.shape == (1, 2, 2, 3)
    np.testing.assert_array_equal(out[0, 0], [[9, 11, 13], [23, 25, 27]])
    np.testing.assert_array_equal(out[0, 1], out[0, 0] + 35)


@pytest.mark.parametrize("pool_param", [p for _, p in POOL_CASES[1:4]])
def test_max_pool_numerical_gradient_overlapping_and_non_square(pool_param):
    x = randn((2, 2, 7, 9), seed=5)
    out, cache = max_pool_forward_naive(x, pool_param)
    dout = randn(out.shape, seed=6)
    dx = max_pool_backward_naive(dout, cache)
    expected = numerical_gradient(lambda v: max_pool_forward_naive(v, pool_param)[0], x, dout)
    assert rel_error(dx, expected) < 1e-8


# --- sandwich layers --------------------------------------------------------------------------

CONV_PARAM = {"stride": 1, "pad": 1}
POOL_PARAM = {"pool_height": 2, "pool_width": 2, "stride": 2}


@pytest.mark.parametrize("backend", ["cython", "reference"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_relu_is_conv_then_relu(dtype, backend):
    x, w, b = conv_inputs((2, 3, 6, 7), (4, 3, 3, 2), dtype)
    out, cache = conv_relu_forward(x, w, b, CONV_PARAM, backend=backend)
    conv_out, conv_cache = fastconv.conv2d_forward(x, w, b, 1, 1, backend=backend)
    np.testing.assert_array_equal(out, np.maximum(conv_out, 0))
    assert out.dtype == dtype and (out == 0).any() and (out > 0).any()
    dout = randn(out.shape, dtype, 7)
    dx, dw, db = conv_relu_backward(dout, cache)
    expected = fastconv.conv2d_backward(np.where(conv_out > 0, dout, 0).astype(dtype), conv_cache)
    for got, want in zip((dx, dw, db), expected):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_relu_pool_matches_naive_composition(dtype):
    x, w, b = conv_inputs((2, 3, 8, 8), (3, 3, 3, 3), dtype, seed=2)
    out, cache = conv_relu_pool_forward(x, w, b, CONV_PARAM, POOL_PARAM)
    conv_out, conv_cache = conv_forward_naive(x, w, b, CONV_PARAM)
    relu_out = np.maximum(conv_out, 0)
    expected, pool_cache = max_pool_forward_naive(relu_out, POOL_PARAM)
    assert out.shape == (2, 3, 4, 4) and out.dtype == dtype
    assert_close(out, expected)
    dout = randn(out.shape, dtype, 3)
    drelu = max_pool_backward_naive(dout, pool_cache) * (conv_out > 0)
    for got, want in zip(conv_relu_pool_backward(dout, cache), conv_backward_naive(drelu, conv_cache)):
        assert_close(got, want)


@pytest.mark.parametrize("backend", ["cython", "reference"])
def test_sandwich_numerical_gradients(backend):
    x, w, b = conv_inputs((2, 3, 8, 6), (3, 3, 3, 2), seed=4)
    pool_param = {"pool_height": 3, "pool_width": 2, "stride": (2, 1)}  # overlapping, non-square

    def relu_pool(x_, w_, b_):
        return conv_relu_pool_forward(x_, w_, b_, CONV_PARAM, pool_param, backend=backend)[0]

    def relu_only(x_, w_, b_):
        return conv_relu_forward(x_, w_, b_, CONV_PARAM, backend=backend)[0]

    for forward, backward in ((relu_pool, conv_relu_pool_backward), (relu_only, conv_relu_backward)):
        out, cache = (conv_relu_pool_forward(x, w, b, CONV_PARAM, pool_param, backend=backend)
                      if forward is relu_pool else conv_relu_forward(x, w, b, CONV_PARAM, backend=backend))
        np.testing.assert_array_equal(out, forward(x, w, b))
        dout = randn(out.shape, seed=5)
        dx, dw, db = backward(dout, cache)
        assert rel_error(dx, numerical_gradient(lambda v: forward(v, w, b), x, dout)) < 1e-7
        assert rel_error(dw, numerical_gradient(lambda v: forward(x, v, b), w, dout)) < 1e-7
        assert rel_error(db, numerical_gradient(lambda v: forward(x, w, v), b, dout)) < 1e-7


def test_sandwich_uses_default_backend(monkeypatch):
    x, w, b = conv_inputs((1, 2, 6, 6), (2, 2, 3, 3))
    _, cache = conv_relu_pool_forward(x, w, b, CONV_PARAM, POOL_PARAM)
    assert cache.conv.backend == "cython" and cache.pool.backend == "cython"
    monkeypatch.setenv("FASTCONV_BACKEND", "reference")
    _, cache = conv_relu_pool_forward(x, w, b, CONV_PARAM, POOL_PARAM)
    assert cache.conv.backend == "reference" and cache.pool.backend == "reference"
    _, cache = conv_relu_forward(x, w, b, CONV_PARAM)
    assert cache.conv.backend == "reference"


def test_relu_keeps_nan():
    x, w, b = conv_inputs((1, 1, 4, 4), (1, 1, 1, 1))
    x[0, 0, 1, 2] = np.nan
    out, _ = conv_relu_forward(x, w, b, {"stride": 1, "pad": 0})
    assert np.isnan(out[0, 0, 1, 2])  # a diverging net must not be hidden by the ReLU
    assert np.isnan(out).sum() == 1


# --- dtypes -----------------------------------------------------------------------------------

@pytest.mark.parametrize("function", [conv_forward_naive, conv_forward_fast, conv_relu_forward])
def test_mixed_dtypes_compute_in_float64(function):
    x64, w64, b64 = conv_inputs((2, 2, 5, 5), (3, 2, 3, 3))
    expected, _ = function(x64, w64, b64, CONV_PARAM)
    for x, w, b in [(x64.astype(np.float32), w64, b64), (x64, w64.astype(np.float32), b64),
                    (x64, w64, b64.astype(np.float32))]:
        x_before = x.copy()
        out, cache = function(x, w, b, CONV_PARAM)
        assert out.dtype == np.float64
        # the float32 array's values, computed in float64
        reference_out, _ = function(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), CONV_PARAM)
        np.testing.assert_array_equal(out, reference_out)
        np.testing.assert_array_equal(x, x_before)
        assert x.dtype == x_before.dtype


def test_float32_stays_float32_everywhere():
    x, w, b = conv_inputs((2, 3, 6, 6), (2, 3, 3, 3), np.float32)
    out, cache = conv_relu_pool_forward(x, w, b, CONV_PARAM, POOL_PARAM)
    assert out.dtype == np.float32
    grads = conv_relu_pool_backward(np.ones_like(out), cache)
    assert all(g.dtype == np.float32 for g in grads)


@pytest.mark.parametrize("forward_dtype, dout_dtype", [(np.float32, np.float64), (np.float64, np.float32)])
def test_dout_of_other_float_dtype_is_converted(forward_dtype, dout_dtype):
    x, w, b = conv_inputs((2, 2, 6, 6), (2, 2, 3, 3), forward_dtype)
    out, cache = conv_forward_fast(x, w, b, CONV_PARAM)
    dout = randn(out.shape, dout_dtype, 3)
    for got, want in zip(conv_backward_fast(dout, cache), conv_backward_fast(dout.astype(forward_dtype), cache)):
        assert got.dtype == forward_dtype
        np.testing.assert_array_equal(got, want)
    pooled, pool_cache = max_pool_forward_fast(x, POOL_PARAM)
    dpool = randn(pooled.shape, dout_dtype, 4)
    assert max_pool_backward_fast(dpool, pool_cache).dtype == forward_dtype
    sandwich_out, sandwich_cache = conv_relu_forward(x, w, b, CONV_PARAM)
    assert conv_relu_backward(dout, sandwich_cache)[0].dtype == forward_dtype


def test_inputs_never_written():
    x, w, b = conv_inputs((2, 3, 6, 6), (2, 3, 3, 3))
    for a in (x, w, b):
        a.flags.writeable = False
    saved = [a.copy() for a in (x, w, b)]
    out, cache = conv_relu_pool_forward(x, w, b, CONV_PARAM, POOL_PARAM)
    dout = np.ones_like(out)
    dout.flags.writeable = False
    conv_relu_pool_backward(dout, cache)
    out, cache = conv_relu_forward(x, w, b, CONV_PARAM)
    conv_relu_backward(np.ones_like(out), cache)
    for a, before in zip((x, w, b), saved):
        np.testing.assert_array_equal(a, before)


# --- bad input: ValueError / TypeError naming the problem, never an assert ---------------------

X, W, B = conv_inputs((2, 3, 6, 6), (2, 3, 3, 3))


@pytest.mark.parametrize("conv_param, error, match", [
    ([("stride", 1), ("pad", 1)], TypeError, "conv_param must be a dict with keys 'stride', 'pad'"),
    (None, TypeError, "conv_param must be a dict"),
    ({"stride": 1}, ValueError, "conv_param is missing the key 'pad'"),
    ({"pad": 1}, ValueError, "conv_param is missing the key 'stride'"),
    ({"stride": 1, "pad": 1, "padding": 1}, ValueError, "unknown key 'padding'"),
    ({"stride": 1.0, "pad": 1}, TypeError, r"conv_param\['stride'\] must be an int"),
    ({"stride": 1, "pad": "1"}, TypeError, r"conv_param\['pad'\] must be an int"),
    ({"stride": 0, "pad": 1}, ValueError, r"conv_param\['stride'\] must be >= 1"),
    ({"stride": 1, "pad": -1}, ValueError, r"conv_param\['pad'\] must be >= 0"),
    ({"stride": (1, 2, 3), "pad": 0}, ValueError, r"conv_param\['stride'\] must be an int or a \(height, width\) pair"),
])
@pytest.mark.parametrize("function", [conv_forward_naive, conv_forward_fast, conv_relu_forward])
def test_bad_conv_param(function, conv_param, error, match):
    with pytest.raises(error, match=match):
        function(X, W, B, conv_param)


@pytest.mark.parametrize("pool_param, error, match", [
    ("2x2", TypeError, "pool_param must be a dict with keys 'pool_height', 'pool_width', 'stride'"),
    ({"pool_height": 2, "stride": 2}, ValueError, "pool_param is missing the key 'pool_width'"),
    ({"pool_height": 2, "pool_width": 2}, ValueError, "pool_param is missing the key 'stride'"),
    ({"pool_height": 2, "pool_width": 2, "stride": 2, "pad": 0}, ValueError, "unknown key 'pad'"),
    ({"pool_height": 2.0, "pool_width": 2, "stride": 2}, TypeError, r"pool_param\['pool_height'\] must be an int"),
    ({"pool_height": 2, "pool_width": (2, 2), "stride": 2}, TypeError, r"pool_param\['pool_width'\] must be an int"),
    ({"pool_height": 0, "pool_width": 2, "stride": 2}, ValueError, r"pool_param\['pool_height'\] must be >= 1"),
    ({"pool_height": 2, "pool_width": 2, "stride": 0}, ValueError, r"pool_param\['stride'\] must be >= 1"),
    ({"pool_height": 7, "pool_width": 2, "stride": 1}, ValueError, "larger than the padded input"),
])
@pytest.mark.parametrize("function", [max_pool_forward_naive, max_pool_forward_fast])
def test_bad_pool_param(function, pool_param, error, match):
    with pytest.raises(error, match=match):
        function(X, pool_param)


def test_bad_pool_param_checked_before_the_conv_in_the_sandwich(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the conv ran before pool_param was checked")

    monkeypatch.setattr(cs231n, "conv2d_forward", fail)
    with pytest.raises(ValueError, match="pool_param is missing the key 'stride'"):
        conv_relu_pool_forward(X, W, B, CONV_PARAM, {"pool_height": 2, "pool_width": 2})


@pytest.mark.parametrize("args, error, match", [
    ((X, W, None), TypeError, r"b must be an ndarray of shape \(F,\)"),
    ((X, W, np.zeros(3)), ValueError, "one entry per filter"),
    ((X[:, :2], W, B), ValueError, "channel mismatch"),
    ((X.astype(np.int64), W, B), TypeError, "dtype float32 or float64"),
    ((X.tolist(), W, B), TypeError, "x must be a numpy.ndarray"),
    ((X[0], W, B), ValueError, "x must be 4-D"),
    ((X[:, :, :2], W, B), ValueError, "larger than the padded input"),
])
@pytest.mark.parametrize("function", [conv_forward_naive, conv_forward_fast, conv_relu_forward])
def test_bad_conv_arrays(function, args, error, match):
    conv_param = {"stride": 1, "pad": 0}
    with pytest.raises(error, match=match):
        function(*args, conv_param)


def test_bad_backward_arguments():
    out, conv_cache = conv_forward_fast(X, W, B, CONV_PARAM)
    _, pool_cache = max_pool_forward_fast(X, POOL_PARAM)
    _, sandwich_cache = conv_relu_pool_forward(X, W, B, CONV_PARAM, POOL_PARAM)
    _, relu_cache = conv_relu_forward(X, W, B, CONV_PARAM)
    with pytest.raises(TypeError, match="cache must be the ConvCache"):
        conv_backward_fast(out, pool_cache)
    with pytest.raises(TypeError, match="cache must be the ConvCache"):
        conv_backward_naive(out, (X, W, B, CONV_PARAM))  # a course-style tuple cache
    with pytest.raises(TypeError, match="cache must be the PoolCache"):
        max_pool_backward_naive(out, conv_cache)
    with pytest.raises(TypeError, match="cache must be the ConvReluPoolCache"):
        conv_relu_pool_backward(out, relu_cache)
    with pytest.raises(TypeError, match="cache must be the ConvReluCache"):
        conv_relu_backward(out, sandwich_cache)
    with pytest.raises(ValueError, match=r"forward output's shape \(2, 2, 6, 6\)"):
        conv_backward_fast(out[:, :, :5], conv_cache)
    with pytest.raises(ValueError, match=r"forward output's shape \(2, 2, 6, 6\)"):
        conv_relu_backward(out[:1], relu_cache)
    with pytest.raises(ValueError, match=r"forward output's shape \(2, 2, 3, 3\)"):
        conv_relu_pool_backward(out, sandwich_cache)
    with pytest.raises(TypeError, match="dtype"):
        conv_backward_fast(out.astype(np.int64), conv_cache)


def test_fast_without_build_says_how_to_build(monkeypatch):
    monkeypatch.setattr(_compiled, "IMPORT_ERROR", ImportError("simulated"))
    with pytest.raises(RuntimeError, match="build_ext --inplace"):
        conv_forward_fast(X, W, B, CONV_PARAM)
    with pytest.raises(RuntimeError, match="build_ext --inplace"):
        max_pool_forward_fast(X, POOL_PARAM)
    out, cache = conv_forward_naive(X, W, B, CONV_PARAM)  # naive needs no build
    assert cache.backend == "reference"


# --- against PyTorch --------------------------------------------------------------------------

def torch_conv_relu_pool(x, w, b, stride, pad, pool, pool_stride, dout, *, relu=True, pooling=True):
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    out = functional.conv2d(tx, tw, tb, stride=stride, padding=pad)
    if relu:
        out = functional.relu(out)
    if pooling:
        out = functional.max_pool2d(out, pool, stride=pool_stride)
    out.backward(torch.from_numpy(dout))
    return out.detach().numpy(), tx.grad.numpy(), tw.grad.numpy(), tb.grad.numpy()


@pytest.mark.parametrize("x_shape, w_shape, conv_param", CONV_CASES)
@pytest.mark.parametrize("forward, backward", [(conv_forward_naive, conv_backward_naive),
                                               (conv_forward_fast, conv_backward_fast)])
def test_conv_matches_torch(forward, backward, x_shape, w_shape, conv_param):
    pytest.importorskip("torch")
    x, w, b = conv_inputs(x_shape, w_shape, seed=11)
    out, cache = forward(x, w, b, conv_param)
    dout = randn(out.shape, seed=12)
    grads = backward(dout, cache)
    stride, pad = conv_param["stride"], conv_param["pad"]
    expected = torch_conv_relu_pool(x, w, b, stride, pad, None, None, dout, relu=False, pooling=False)
    for got, want in zip((out,) + tuple(grads), expected):
        assert got.shape == want.shape
        assert rel_error(got, want) < 1e-9


@pytest.mark.parametrize("x_shape, pool_param", POOL_CASES)
@pytest.mark.parametrize("forward, backward", [(max_pool_forward_naive, max_pool_backward_naive),
                                               (max_pool_forward_fast, max_pool_backward_fast)])
def test_max_pool_matches_torch(forward, backward, x_shape, pool_param):
    torch = pytest.importorskip("torch")
    x = randn(x_shape, seed=13)
    out, cache = forward(x, pool_param)
    dout = randn(out.shape, seed=14)
    dx = backward(dout, cache)
    tx = torch.tensor(x, requires_grad=True)
    tout = torch.nn.functional.max_pool2d(tx, pool_kernel(pool_param), stride=pool_param["stride"])
    tout.backward(torch.from_numpy(dout))
    np.testing.assert_array_equal(out, tout.detach().numpy())
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype, tolerance", [(np.float64, 1e-9), (np.float32, 1e-4)])
def test_sandwiches_match_torch(dtype, tolerance):
    pytest.importorskip("torch")
    x, w, b = conv_inputs((2, 3, 9, 8), (4, 3, 3, 2), dtype, seed=15)
    conv_param = {"stride": (1, 2), "pad": (1, 0)}
    pool_param = {"pool_height": 3, "pool_width": 2, "stride": (2, 1)}
    out, cache = conv_relu_pool_forward(x, w, b, conv_param, pool_param)
    dout = randn(out.shape, dtype, 16)
    expected = torch_conv_relu_pool(x, w, b, (1, 2), (1, 0), (3, 2), (2, 1), dout)
    for got, want in zip((out,) + tuple(conv_relu_pool_backward(dout, cache)), expected):
        assert got.shape == want.shape and got.dtype == dtype
        assert np.max(np.abs(got - want)) <= tolerance * max(1.0, np.max(np.abs(want)))
    out, cache = conv_relu_forward(x, w, b, conv_param)
    dout = randn(out.shape, dtype, 17)
    expected = torch_conv_relu_pool(x, w, b, (1, 2), (1, 0), None, None, dout, pooling=False)
    for got, want in zip((out,) + tuple(conv_relu_backward(dout, cache)), expected):
        assert got.shape == want.shape and got.dtype == dtype
        assert np.max(np.abs(got - want)) <= tolerance * max(1.0, np.max(np.abs(want)))


# --- the README's "Three ways in" snippets ---------------------------------------------------

def test_readme_three_ways_in_snippets_run():
    import pathlib
    import re

    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    start = readme.index("## Three ways in")
    section = readme[start:readme.index("\n## ", start + 1)]
    functional, layers, drop_in = ({}, {}, {})
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 3
    for code, namespace in zip(blocks, (functional, layers, drop_in)):
        exec(compile(code, "README.md", "exec"), namespace)
    assert functional["y"].shape == (4, 8, 16, 16) and functional["y2"].shape == (4, 8, 8, 8)
    assert functional["dw_only"][0] is None and functional["dw_only"][1].shape == (8, 3, 3, 3)
    assert functional["out"].shape == (4, 3, 8, 15) and functional["dx"].shape == (4, 3, 16, 16)
    assert layers["scores"].shape == (4, 10) and layers["scores"].dtype == np.float32
    assert set(layers["model"].grads) == set(layers["model"].params)
    assert drop_in["out_naive"].shape == (2, 4, 8, 9)
    assert np.max(np.abs(drop_in["out_naive"] - drop_in["out_fast"])) < 1e-12
    assert drop_in["dw"].shape == (4, 3, 3, 2)
