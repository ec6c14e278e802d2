"""linear_forward / linear_backward: the compiled BLAS kernel against the NumPy twin (shapes with
N, in or out features of 1, odd sizes, both dtypes, layouts, threads), numerical gradients in
float64, need_dx, the thread policy (BLAS held to one thread during the call), bad input."""
import numpy as np
import pytest
from threadpoolctl import threadpool_info

import fastconv
from fastconv import reference
from fastconv._cache import LinearCache
from fastconv.gradcheck import numerical_gradient_array, rel_error

from _helpers import LAYOUTS, assert_close, with_layout

DTYPES = (np.float32, np.float64)
# (N, in_features, out_features): N=1, one feature, one output, odd sizes, rows >= columns
# and the other way (the kernel splits the larger of N and out_features), the CS231n sizes
SHAPES = [(1, 1, 1), (1, 512, 1000), (7, 3, 5), (64, 33, 1), (5, 1, 9), (50, 8192, 100),
          (100, 37, 17), (3, 200, 2)]


def _inputs(shape, dtype, seed=0):
    batch, features, outputs = shape
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((batch, features)).astype(dtype),
            rng.standard_normal((outputs, features)).astype(dtype),
            rng.standard_normal(outputs).astype(dtype),
            rng.standard_normal((batch, outputs)).astype(dtype))


# GEMMs sum in another order than NumPy's matmul: float32 within a few ulps of the sums
TOLERANCE = {np.float32: 2e-5, np.float64: 1e-12}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("with_bias", [True, False])
def test_matches_reference(shape, dtype, with_bias):
    x, w, b, dout = _inputs(shape, dtype)
    b = b if with_bias else None
    out, cache = fastconv.linear_forward(x, w, b, backend="cython")
    expected, expected_cache = reference.linear_forward(x, w, b)
    assert cache.backend == "cython" and expected_cache.backend == "reference"
    assert_close(out, expected, TOLERANCE[dtype])
    dx, dw, db = fastconv.linear_backward(dout, cache)
    expected_dx, expected_dw, expected_db = reference.linear_backward(dout, expected_cache)
    assert_close(dx, expected_dx, TOLERANCE[dtype])
    assert_close(dw, expected_dw, TOLERANCE[dtype])
    if with_bias:
        assert_close(db, expected_db, TOLERANCE[dtype])
    else:
        assert db is None and expected_db is None


@pytest.mark.parametrize("backend", ["cython", "reference"])
def test_need_dx_false_skips_dx_only(backend):
    x, w, b, dout = _inputs((6, 5, 4), np.float64)
    _, cache = fastconv.linear_forward(x, w, b, backend=backend)
    dx, dw, db = fastconv.linear_backward(dout, cache, need_dx=False)
    full = fastconv.linear_backward(dout, cache)
    assert dx is None
    assert np.array_equal(dw, full[1]) and np.array_equal(db, full[2])


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_any_layout_gives_the_same_result_and_inputs_are_not_written(layout, dtype):
    x, w, b, dout = _inputs((9, 13, 6), dtype)
    out, cache = fastconv.linear_forward(x, w, b)
    gradients = fastconv.linear_backward(dout, cache)
    arrays = [with_layout(a, layout) for a in (x, w, b, dout)]
    saved = [a.copy() for a in arrays]
    out_other, cache_other = fastconv.linear_forward(*arrays[:3])
    assert np.array_equal(out_other, out)
    for got, expected in zip(fastconv.linear_backward(arrays[3], cache_other), gradients):
        assert np.array_equal(got, expected)
    for array, before in zip(arrays, saved):
        assert np.array_equal(array, before)


def test_empty_products():
    for shape in [(0, 4, 3), (2, 0, 3)]:
        x, w, b, dout = _inputs(shape, np.float64)
        out, cache = fastconv.linear_forward(x, w, b)
        assert np.array_equal(out, np.broadcast_to(b, out.shape))
        dx, dw, db = fastconv.linear_backward(dout, cache)
        assert dx.shape == x.shape and not dw.any() and dw.shape == w.shape
        assert np.array_equal(db, dout.sum(axis=0))


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_threads_give_the_reference_result(threads):
    before = fastconv.get_num_threads()
    x, w, b, dout = _inputs((40, 3000, 90), np.float64)  # above the parallel threshold
    try:
        fastconv.set_num_threads(threads)
        out, cache = fastconv.linear_forward(x, w, b)
        gradients = fastconv.linear_backward(dout, cache)
    finally:
        fastconv.set_num_threads(before)
    expected, expected_cache = reference.linear_forward(x, w, b)
    assert_close(out, expected)
    for got, want in zip(gradients, reference.linear_backward(dout, expected_cache)):
        assert_close(got, want)


@pytest.mark.parametrize("shape, held", [((40, 80, 90), True), ((4, 5, 3), False)])
def test_blas_is_held_to_one_thread_during_the_call_and_restored_after(monkeypatch, shape, held):
    # held for a product BLAS would run on several threads; a small one (fewer than 64**3
    # multiply-adds, which OpenBLAS runs on the calling thread) is not worth the switch
    from fastconv import _compiled

    seen = []
    for name in ("forward", "backward"):
        real = getattr(_compiled.linear, name)

        def spy(*args, real=real):
            seen.append([info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"])
            return real(*args)

        monkeypatch.setattr(_compiled.linear, name, spy)
    counts = [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]
    x, w, b, dout = _inputs(shape, np.float32)
    _, cache = fastconv.linear_forward(x, w, b)
    fastconv.linear_backward(dout, cache)
    assert seen == [[1] * len(counts) if held else counts] * 2
    assert [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"] == counts


@pytest.mark.parametrize("backend", ["cython", "reference"])
def test_numerical_gradients_float64(backend):
    x, w, b, dout = _inputs((4, 6, 3), np.float64, seed=3)
    _, cache = fastconv.linear_forward(x, w, b, backend=backend)
    dx, dw, db = fastconv.linear_backward(dout, cache)
    forward = lambda: fastconv.linear_forward(x, w, b, backend=backend)[0]  # noqa: E731
    assert rel_error(dx, numerical_gradient_array(lambda _: forward(), x, dout)) < 1e-7
    assert rel_error(dw, numerical_gradient_array(lambda _: forward(), w, dout)) < 1e-7
    assert rel_error(db, numerical_gradient_array(lambda _: forward(), b, dout)) < 1e-7


def test_bad_arguments():
    x, w, b, dout = _inputs((4, 6, 3), np.float32)
    with pytest.raises(ValueError, match=r"x has 5 features per row \(shape \(4, 5\)\) but w expects 6"):
        fastconv.linear_forward(x[:, :5], w, b)
    with pytest.raises(ValueError, match=r"x must be 2-D with shape \(N, in_features\)"):
        fastconv.linear_forward(x[None], w, b)
    with pytest.raises(ValueError, match="b must have one entry per output"):
        fastconv.linear_forward(x, w, b[:2])
    with pytest.raises(TypeError, match="one dtype"):
        fastconv.linear_forward(x, w.astype(np.float64), b)
    _, cache = fastconv.linear_forward(x, w, b)
    assert isinstance(cache, LinearCache) and "LinearCache" in repr(cache)
    with pytest.raises(ValueError, match=r"dout must have the forward output's shape \(4, 3\), got \(3, 4\)"):
        fastconv.linear_backward(dout.T.copy(), cache)
    with pytest.raises(TypeError, match="dout must have the forward output's dtype float32"):
        fastconv.linear_backward(dout.astype(np.float64), cache)
    with pytest.raises(TypeError, match="cache must be the LinearCache returned by .*linear_forward"):
        fastconv.linear_backward(dout, (x, w, b))
