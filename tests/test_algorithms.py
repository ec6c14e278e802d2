"""The algorithm registry: every algorithm against the reference twin on every geometry it
supports from a common pool, UnsupportedAlgorithm on every one it does not, and the registry's
invariants."""
import numpy as np
import pytest

import fastconv
from fastconv import algorithms, reference
from fastconv._geometry import conv_geometry

from _helpers import assert_close

# (x shape, w shape, options): a pool of geometries wide enough that each algorithm supports
# several and refuses several
POOL = [
    ((2, 3, 9, 8), (4, 3, 3, 3), dict(padding=1)),
    ((2, 16, 9, 10), (16, 16, 3, 3), dict(padding=1)),
    ((1, 16, 7, 7), (8, 16, 3, 3), dict(padding=2)),
    ((2, 16, 9, 11), (18, 16, 3, 3), dict(stride=2, padding=1)),
    ((1, 4, 8, 7), (3, 4, 3, 3), dict(stride=2)),
    ((1, 3, 27, 27), (16, 3, 11, 11), dict(stride=4)),
    ((2, 4, 13, 12), (6, 4, 5, 4), dict(stride=(2, 3), padding=(1, 2))),
    ((2, 8, 6, 7), (5, 8, 1, 1), dict()),
    ((2, 6, 8, 7), (6, 1, 3, 3), dict(padding=1, groups=6)),
    ((1, 4, 9, 9), (8, 1, 3, 3), dict(stride=2, padding=(0, 1, 1, 2), groups=4, dilation=2)),
    ((2, 3, 15), (6, 3, 1), dict()),
    ((2, 4, 15), (4, 1, 5), dict(padding="same", groups=4, padding_mode="reflect")),
    ((2, 4, 4, 5, 6), (6, 2, 3, 2, 3), dict(padding=1, groups=2)),
    ((2, 3, 8, 9), (4, 3, 3, 3), dict(padding=1, padding_mode="replicate")),
    ((2, 16, 8, 8), (16, 16, 3, 3), dict(padding=1, dilation=2)),
    ((1, 5, 11, 9), (3, 5, 3, 3), dict(padding=(2, 0, 1, 3), dilation=(3, 2))),
    ((2, 16, 8, 8), (16, 16, 3, 3), dict(padding=(1, 0, 1, 1))),
]

TOLERANCE = {  # float32, relative to the output's scale: tests/test_conv.py's bounds
    "winograd-2x2": 5e-5, "winograd-s2": 5e-5, "winograd-4x4": 1e-4, "s2d-winograd": 1e-4,
    "s2b-winograd": 1e-4,
}


def _geometry(x_shape, w_shape, options):
    return conv_geometry(x_shape, w_shape, options.get("stride", 1), options.get("padding", 0),
                         dilation=options.get("dilation", 1), groups=options.get("groups", 1),
                         padding_mode=options.get("padding_mode", "zeros"))


def _pairs(supported):
    return [(name, case) for name, module in algorithms.REGISTRY.items() for case in POOL
            if (module.supports(_geometry(*case)) is None) == supported]


def _id(pair):
    name, (x_shape, w_shape, options) = pair
    return f"{name}-{x_shape}-{w_shape}-{options}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name, case", _pairs(True), ids=[_id(p) for p in _pairs(True)])
def test_every_algorithm_matches_the_reference_where_it_claims_support(name, case, dtype):
    x_shape, w_shape, options = case
    ndim = len(x_shape) - 2
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    out, cache = getattr(fastconv, f"conv{ndim}d_forward")(x, w, b, **options, algorithm=name)
    assert cache.algorithm == name
    expected, ref_cache = getattr(reference, f"conv{ndim}d_forward")(x, w, b, **options)
    tolerance = TOLERANCE.get(name) if dtype == np.float32 else None
    assert_close(out, expected, tolerance)
    dout = rng.standard_normal(out.shape).astype(dtype)
    got = getattr(fastconv, f"conv{ndim}d_backward")(dout, cache)
    want = getattr(reference, f"conv{ndim}d_backward")(dout, ref_cache)
    for g, e in zip(got, want):
        assert_close(g, e, tolerance)
    # dx alone and dW alone: the pieces transposed convolutions use
    dx_only = algorithms.REGISTRY[name].backward(dout, None, w, False, cache.window, True, False)[0]
    assert dx_only[1] is None and dx_only[2] is None
    assert_close(dx_only[0], want[0], tolerance)
    dw_only = algorithms.REGISTRY[name].backward(dout, x, w, True, cache.window, False, True)[0]
    assert dw_only[0] is None
    assert_close(dw_only[1], want[1], tolerance)


@pytest.mark.parametrize("name, case", _pairs(False), ids=[_id(p) for p in _pairs(False)])
def test_every_unsupported_geometry_raises_unsupported_algorithm(name, case):
    x_shape, w_shape, options = case
    ndim = len(x_shape) - 2
    x = np.zeros(x_shape)
    w = np.zeros(w_shape)
    with pytest.raises(fastconv.UnsupportedAlgorithm, match=rf"algorithm '{name}' does not support"):
        getattr(fastconv, f"conv{ndim}d_forward")(x, w, None, **options, algorithm=name)


def test_every_algorithm_is_tested_on_several_geometries_and_refuses_some():
    supported = {name: sum(1 for n, _ in _pairs(True) if n == name) for name in algorithms.REGISTRY}
    assert all(count >= 2 for count in supported.values()), supported
    refused = {name for name, _ in _pairs(False)}
    assert refused == set(algorithms.REGISTRY) - {"im2col"}  # im2col does every convolution


def test_registry_invariants():
    for name, module in algorithms.REGISTRY.items():
        assert module.NAME == name
        assert isinstance(module.HANDLES, str) and module.HANDLES
        for function in ("supports", "forward", "backward"):
            assert callable(getattr(module, function)), (name, function)
        assert module.__doc__, name
    assert algorithms.DIRECT.supports(_geometry(*POOL[0])) is None
    assert issubclass(fastconv.UnsupportedAlgorithm, ValueError)
    # the alias resolves by geometry
    assert algorithms.lookup("winograd", _geometry(*POOL[1])).NAME == "winograd-2x2"
    assert algorithms.lookup("winograd", _geometry(*POOL[3])).NAME == "winograd-s2"
    with pytest.raises(ValueError, match="unknown algorithm 'fft'"):
        algorithms.lookup("fft", _geometry(*POOL[0]))
