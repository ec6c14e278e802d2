"""No data loss: inputs are never written, outputs never alias inputs (or each other, or a
later call's outputs), and a failed call changes nothing a caller could mistake for a result."""
import numpy as np
import pytest
from threadpoolctl import threadpool_info

import fastconv

from _helpers import with_layout

BACKENDS = ("cython", "reference")
LAYOUTS = ("C", "F", "strided", "broadcast", "readonly")


def _laid_out(values, layout):
    if layout == "broadcast":  # read-only, zero stride along the first axis
        return np.broadcast_to(values[:1], values.shape)
    return with_layout(values, layout)


def _random(shape, seed, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


class Inputs(dict):
    """The inputs of a scenario, each laid out as asked, with a copy of its values taken
    when it was made (before any call saw it)."""

    def __init__(self, layout):
        super().__init__()
        self.layout, self.originals = layout, {}

    def add(self, name, values):
        self[name] = _laid_out(values, self.layout)
        self.originals[name] = np.array(self[name], copy=True)
        return self[name]


def _arrays(cache):
    """The arrays a cache holds."""
    return [getattr(cache, name) for name in cache.__slots__ if isinstance(getattr(cache, name), np.ndarray)]


# Each scenario runs one op family forward and backward: (inputs, outputs, caches).

def _conv(backend, layout, algorithm="auto", w_shape=(4, 3, 3, 2), stride=(2, 1), padding=1):
    inputs = Inputs(layout)
    x, w, b = (inputs.add("x", _random((3, w_shape[1], 8, 7), 1)), inputs.add("w", _random(w_shape, 2)),
               inputs.add("b", _random(w_shape[:1], 3)))
    out, cache = fastconv.conv2d_forward(x, w, b, stride, padding, backend=backend, algorithm=algorithm)
    dx, dw, db = fastconv.conv2d_backward(inputs.add("dout", _random(out.shape, 4)), cache)
    return inputs, {"out": out, "dx": dx, "dw": dw, "db": db}, [cache]


def _conv_winograd(backend, layout):
    return _conv(backend, layout, "winograd" if backend == "cython" else "auto", (16, 16, 3, 3), 1, 1)


def _conv_1x1(backend, layout):
    return _conv(backend, layout, "gemm-1x1" if backend == "cython" else "auto", (5, 3, 1, 1), 1, 0)


def _columns(backend, layout):
    inputs = Inputs(layout)
    cols = fastconv.im2col(inputs.add("x", _random((2, 3, 7, 6), 5)), (3, 2), (1, 2), 1, backend=backend)
    y = inputs.add("y", _random(cols.shape, 6))
    folded = fastconv.col2im(y, (2, 3, 7, 6), (3, 2), (1, 2), 1, backend=backend)
    return inputs, {"cols": cols, "folded": folded}, []


def _pool(kind):
    def scenario(backend, layout):
        inputs = Inputs(layout)
        x = inputs.add("x", _random((2, 3, 9, 8), 7))
        out, cache = getattr(fastconv, f"{kind}_pool2d_forward")(x, 3, 2, 1, backend=backend)
        dx = getattr(fastconv, f"{kind}_pool2d_backward")(inputs.add("dout", _random(out.shape, 8)), cache)
        return inputs, {"out": out, "dx": dx}, [cache]
    return scenario


SCENARIOS = {
    "conv": _conv, "conv winograd": _conv_winograd, "conv 1x1": _conv_1x1,
    "im2col/col2im": _columns, "max pool": _pool("max"), "avg pool": _pool("avg"),
}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_inputs_are_untouched_and_outputs_are_fresh(scenario, backend, layout):
    inputs, outputs, caches = SCENARIOS[scenario](backend, layout)
    for name, a in inputs.items():
        np.testing.assert_array_equal(a, inputs.originals[name], err_msg=f"input {name} was written")
    for name, result in outputs.items():
        assert result.flags.writeable, f"output {name} is read-only"
        for source_name, source in inputs.items():
            assert not np.shares_memory(result, source), f"output {name} aliases input {source_name}"
        for other_name, other in outputs.items():
            if other_name != name:
                assert not np.shares_memory(result, other), f"outputs {name} and {other_name} overlap"
        for cache in caches:
            for held in _arrays(cache):
                assert not np.shares_memory(result, held), f"output {name} aliases the cache"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_a_later_call_does_not_overwrite_earlier_results(scenario, backend):
    """Buffers kept between calls (scratch space) never end up in a returned result."""
    _, first, _ = SCENARIOS[scenario](backend, "C")
    kept = {name: a.copy() for name, a in first.items()}
    _, second, _ = SCENARIOS[scenario](backend, "C")
    for name in first:
        np.testing.assert_array_equal(first[name], kept[name], err_msg=f"{name} changed by a later call")
        assert not np.shares_memory(first[name], second[name]), f"{name} reuses the earlier result's memory"


@pytest.mark.parametrize("backend", BACKENDS)
def test_writing_into_results_changes_nothing_else(backend):
    """Clobbering every result (as an in-place ReLU would) leaves the caches intact."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    out, conv_cache = fastconv.conv2d_forward(x, w, None, 1, 1, backend=backend)
    pooled, pool_cache = fastconv.max_pool2d_forward(out, 2, backend=backend)
    dout = rng.standard_normal(pooled.shape).astype(np.float32)
    expected_pool = fastconv.max_pool2d_backward(dout, pool_cache)
    expected_conv = fastconv.conv2d_backward(expected_pool, conv_cache)
    pooled[...] = np.nan
    out[...] = np.nan
    again_pool = fastconv.max_pool2d_backward(dout, pool_cache)
    np.testing.assert_array_equal(again_pool, expected_pool)
    for got, want in zip(fastconv.conv2d_backward(again_pool, conv_cache), expected_conv):
        assert (got is None and want is None) or np.array_equal(got, want)
    again_pool[...] = np.nan  # a result is the caller's to overwrite
    np.testing.assert_array_equal(fastconv.max_pool2d_backward(dout, pool_cache), expected_pool)


# ---- failed calls ----------------------------------------------------------------------

def _state():
    """Everything a call could leave changed behind it."""
    blas = sorted((info["filepath"], info["num_threads"]) for info in threadpool_info())
    return (fastconv.get_backend(), fastconv.get_num_threads(), fastconv.get_workspace_limit(), blas)


def _failing_calls(backend):
    """(label, call) pairs that must raise, over one set of shared inputs and caches."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 16, 12, 12)).astype(np.float32)  # large enough for two threads
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)
    out, conv_cache = fastconv.conv2d_forward(x, w, b, 1, 1, backend=backend)
    pooled, pool_cache = fastconv.max_pool2d_forward(x, 2, backend=backend)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    arrays = {"x": x, "w": w, "b": b, "out": out, "pooled": pooled, "dout": dout}
    caches = {"conv": (conv_cache, dout), "pool": (pool_cache, pooled)}
    calls = [
        ("conv channel mismatch", lambda: fastconv.conv2d_forward(x, w[:, :3], b, backend=backend)),
        ("conv bad algorithm", lambda: fastconv.conv2d_forward(x, w, b, 3, 1, backend=backend, algorithm="winograd")),
        ("conv backward wrong dout", lambda: fastconv.conv2d_backward(dout[:, :, 1:], conv_cache)),
        ("conv backward wrong dtype", lambda: fastconv.conv2d_backward(dout.astype(np.float64), conv_cache)),
        ("conv backward pool cache", lambda: fastconv.conv2d_backward(dout, pool_cache)),
        ("pool padding too large", lambda: fastconv.max_pool2d_forward(x, 2, 1, 2, backend=backend)),
        ("pool backward wrong dout", lambda: fastconv.max_pool2d_backward(dout, pool_cache)),
        ("im2col kernel too large", lambda: fastconv.im2col(x, 20, backend=backend)),
        ("col2im wrong columns", lambda: fastconv.col2im(x[0, 0], x.shape, 3, backend=backend)),
    ]
    return calls, arrays, caches


def _gradients(kind, cache, dout):
    if kind == "conv":
        return fastconv.conv2d_backward(dout, cache)
    return (fastconv.max_pool2d_backward(dout, cache),)


@pytest.mark.parametrize("backend", BACKENDS)
def test_failed_calls_change_nothing(backend):
    calls, arrays, caches = _failing_calls(backend)
    snapshots = {name: a.copy() for name, a in arrays.items()}
    expected = {kind: _gradients(kind, cache, dout) for kind, (cache, dout) in caches.items()}
    before = _state()
    for label, call in calls:
        with pytest.raises((ValueError, TypeError)):
            call()
        assert _state() == before, f"{label}: settings or BLAS thread limits changed"
        for name, a in arrays.items():
            np.testing.assert_array_equal(a, snapshots[name], err_msg=f"{label}: {name} was written")
    # the caches still give exactly the gradients they gave before the failures
    for kind, (cache, dout) in caches.items():
        for got, want in zip(_gradients(kind, cache, dout), expected[kind]):
            np.testing.assert_array_equal(got, want, err_msg=f"{kind} cache changed by a failed call")


class _Interrupt(Exception):
    pass


def test_an_exception_inside_a_kernel_call_restores_every_setting(monkeypatch):
    """A kernel that fails midway (here: raises) leaves BLAS limits and settings as they were."""
    from fastconv import _compiled

    class FailingKernels:
        def __getattr__(self, name):
            def fail(*args, **kwargs):
                raise _Interrupt(name)
            return fail

    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 16, 24, 24)).astype(np.float32)  # multi-threaded path
    w = rng.standard_normal((32, 16, 3, 3)).astype(np.float32)
    saved = fastconv.get_num_threads()
    fastconv.set_num_threads(2)
    try:
        expected, _ = fastconv.conv2d_forward(x, w, None, 1, 1, algorithm="im2col")
        before = _state()
        monkeypatch.setattr(_compiled, "conv", FailingKernels())
        with pytest.raises(_Interrupt):
            fastconv.conv2d_forward(x, w, None, 1, 1, algorithm="im2col")
        assert _state() == before
        monkeypatch.undo()
        again, _ = fastconv.conv2d_forward(x, w, None, 1, 1, algorithm="im2col")
    finally:
        fastconv.set_num_threads(saved)
    np.testing.assert_array_equal(again, expected)
