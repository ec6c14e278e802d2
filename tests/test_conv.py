"""conv2d_forward / conv2d_backward: compiled path vs reference twin, gradients, errors."""
from contextlib import contextmanager

import numpy as np
import pytest

import fastconv
import fastconv._blas
import fastconv._tuning
from fastconv import algorithms, reference
from fastconv._geometry import conv_geometry
from fastconv.algorithms import _winograd, im2col_gemm

from _helpers import LAYOUTS, assert_close, numerical_gradient, rel_error, with_layout

# (x shape, w shape, stride, padding), each probing an edge case its comment names
CASES = [
    ((2, 3, 7, 8), (4, 3, 3, 3), 1, 1),                 # plain 3x3 "same"
    ((2, 3, 9, 7), (5, 3, 2, 3), (1, 2), (0, 1)),       # 2x3 kernel, strides and pads differ
    ((3, 2, 8, 9), (4, 2, 3, 2), (2, 1), (1, 0)),       # 3x2 kernel
    ((1, 1, 5, 5), (1, 1, 3, 3), 1, 0),                 # N=1, C=1, F=1
    ((1, 4, 11, 13), (3, 4, 11, 11), (3, 2), (3, 2)),   # 11x11 kernel, large padding
    ((2, 6, 7, 5), (3, 6, 1, 1), 1, 0),                 # 1x1 (direct GEMM path)
    ((2, 5, 9, 9), (4, 5, 1, 1), 2, 1),                 # 1x1 with stride and padding
    ((3, 2, 13, 11), (2, 2, 5, 4), 3, (2, 3)),          # stride 3, odd sizes, window does not tile
    ((2, 3, 4, 4), (2, 3, 4, 4), 1, 3),                 # padding 3 on both sides
    ((2, 2, 6, 7), (3, 2, 3, 3), (3, 1), (0, 2)),
    ((2, 3, 15, 19), (4, 3, 3, 5), (2, 4), (1, 2)),     # stride 4 along the width
    ((1, 3, 3, 3), (2, 3, 3, 3), 1, 0),                 # output 1x1
    ((4, 1, 10, 1), (2, 1, 3, 1), (2, 1), (1, 0)),      # width 1
    ((2, 3, 15, 19), (4, 3, 5, 5), (1, 2), (2, 1)),     # im2col through the stage, 2 phases
]

_KEEP = object()


@contextmanager
def _settings(threads=_KEEP, workspace=_KEEP):
    """Run the block with this fastconv thread count and workspace limit (None: the
    default), then restore both."""
    saved_threads, saved_workspace = fastconv.get_num_threads(), fastconv.get_workspace_limit()
    try:
        if threads is not _KEEP:
            fastconv.set_num_threads(threads)
        if workspace is not _KEEP:
            fastconv.set_workspace_limit(workspace)
        yield
    finally:
        fastconv.set_num_threads(saved_threads)
        fastconv.set_workspace_limit(saved_workspace)


def _inputs(x_shape, w_shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    return x, w, b


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, w_shape, stride, padding", CASES)
def test_compiled_matches_reference(x_shape, w_shape, stride, padding, dtype):
    x, w, b = _inputs(x_shape, w_shape, dtype)
    out, cache = fastconv.conv2d_forward(x, w, b, stride, padding, backend="cython")
    expected, ref_cache = reference.conv2d_forward(x, w, b, stride, padding)
    assert_close(out, expected)
    dout = np.random.default_rng(1).standard_normal(out.shape).astype(dtype)
    for got, want in zip(fastconv.conv2d_backward(dout, cache), reference.conv2d_backward(dout, ref_cache)):
        assert_close(got, want)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_any_layout_gives_identical_results(layout, dtype):
    x, w, b = _inputs((3, 4, 9, 8), (5, 4, 3, 2), dtype)
    out, cache = fastconv.conv2d_forward(x, w, b, (2, 1), (1, 0))
    dout = np.random.default_rng(2).standard_normal(out.shape).astype(dtype)
    grads = fastconv.conv2d_backward(dout, cache)
    lx, lw, lb, ldout = (with_layout(a, layout) for a in (x, w, b, dout))
    out2, cache2 = fastconv.conv2d_forward(lx, lw, lb, (2, 1), (1, 0))
    np.testing.assert_array_equal(out2, out)
    for got, want in zip(fastconv.conv2d_backward(ldout, cache2), grads):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_kept(dtype):
    x, w, b = _inputs((2, 3, 6, 6), (4, 3, 3, 3), dtype)
    out, cache = fastconv.conv2d_forward(x, w, b, 1, 1)
    dx, dw, db = fastconv.conv2d_backward(np.ones_like(out), cache)
    assert {out.dtype, dx.dtype, dw.dtype, db.dtype} == {np.dtype(dtype)}


@pytest.mark.parametrize("backend", ["cython", "reference"])
def test_no_bias_gives_no_db(backend):
    x, w, _ = _inputs((2, 3, 6, 6), (4, 3, 3, 3), np.float64)
    out, cache = fastconv.conv2d_forward(x, w, None, 1, 1, backend=backend)
    with_bias, _ = fastconv.conv2d_forward(x, w, np.zeros(4), 1, 1, backend=backend)
    np.testing.assert_array_equal(out, with_bias)
    dx, dw, db = fastconv.conv2d_backward(np.ones_like(out), cache)
    assert db is None and dx.shape == x.shape and dw.shape == w.shape


@pytest.mark.parametrize("x_shape, w_shape, stride, padding, algorithm", [
    ((2, 2, 5, 6), (3, 2, 2, 3), (1, 2), (1, 0), "im2col"),
    ((1, 3, 6, 5), (2, 3, 3, 2), (2, 1), (0, 1), "im2col"),
    ((2, 3, 4, 4), (2, 3, 1, 1), 1, 0, "gemm-1x1"),
    ((2, 3, 5, 6), (4, 3, 3, 3), 1, (1, 2), "winograd-2x2"),  # odd output height: half tiles
    ((1, 2, 9, 8), (3, 2, 5, 4), (2, 3), (1, 2), "s2d-winograd"),
])
def test_gradients_match_numerical(x_shape, w_shape, stride, padding, algorithm):
    x, w, b = _inputs(x_shape, w_shape, np.float64, seed=3)
    out, cache = fastconv.conv2d_forward(x, w, b, stride, padding, algorithm=algorithm)
    assert cache.algorithm == algorithm
    dout = np.random.default_rng(4).standard_normal(out.shape)
    dx, dw, db = fastconv.conv2d_backward(dout, cache)

    def forward(x_, w_, b_):
        return fastconv.conv2d_forward(x_, w_, b_, stride, padding, algorithm=algorithm)[0]

    assert rel_error(dx, numerical_gradient(lambda v: forward(v, w, b), x.copy(), dout)) < 1e-8
    assert rel_error(dw, numerical_gradient(lambda v: forward(x, v, b), w.copy(), dout)) < 1e-8
    assert rel_error(db, numerical_gradient(lambda v: forward(x, w, v), b.copy(), dout)) < 1e-8


def test_reference_gradients_match_numerical():
    x, w, b = _inputs((2, 2, 5, 4), (3, 2, 3, 2), np.float64, seed=5)
    out, cache = reference.conv2d_forward(x, w, b, (2, 1), (1, 1))
    dout = np.random.default_rng(6).standard_normal(out.shape)
    dx, dw, db = reference.conv2d_backward(dout, cache)
    f = lambda v: reference.conv2d_forward(v, w, b, (2, 1), (1, 1))[0]  # noqa: E731
    assert rel_error(dx, numerical_gradient(f, x.copy(), dout)) < 1e-8
    g = lambda v: reference.conv2d_forward(x, v, b, (2, 1), (1, 1))[0]  # noqa: E731
    assert rel_error(dw, numerical_gradient(g, w.copy(), dout)) < 1e-8


@pytest.mark.parametrize("algorithm", ["im2col", "gemm-1x1"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_explicit_algorithms_agree(algorithm, dtype):
    x, w, b = _inputs((3, 7, 5, 6), (4, 7, 1, 1), dtype)
    out, cache = fastconv.conv2d_forward(x, w, b, algorithm=algorithm)
    assert cache.algorithm == algorithm
    expected, ref_cache = reference.conv2d_forward(x, w, b)
    assert_close(out, expected)
    dout = np.random.default_rng(1).standard_normal(out.shape).astype(dtype)
    for got, want in zip(fastconv.conv2d_backward(dout, cache), reference.conv2d_backward(dout, ref_cache)):
        assert_close(got, want)


# Winograd adds and subtracts transformed values: a looser float32 bound than direct GEMM,
# and looser again for F(4x4, 3x3), whose transforms have coefficients up to 8.
WINOGRAD_TOLERANCE = {np.dtype(np.float32): 5e-5, np.dtype(np.float64): 1e-12}
WINOGRAD_4X4_TOLERANCE = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-12}


def _tolerance(algorithm, dtype):
    """The test bound of an algorithm's results (None: the direct method's)."""
    return {"winograd-2x2": WINOGRAD_TOLERANCE, "winograd-s2": WINOGRAD_TOLERANCE, "winograd-4x4": WINOGRAD_4X4_TOLERANCE,
            "s2d-winograd": WINOGRAD_4X4_TOLERANCE}.get(algorithm, {}).get(np.dtype(dtype))

# Stride 1: 4x4 input blocks at a step of 2. Stride 2: 5x5 input blocks at a step of 4, so odd
# sizes, paddings up to 3 (blocks wholly in the padding), rows of more than one chunk of 32
# tiles, N=1 and C=1.
WINOGRAD_CASES = [
    ((2, 16, 7, 8), (16, 16, 3, 3), 1, 1),  # odd output width: last tile half outside
    ((3, 17, 9, 6), (18, 17, 3, 3), 1, (0, 2)),  # paddings differ in h and w
    ((1, 20, 5, 5), (16, 20, 3, 3), 1, (2, 0)),
    ((1, 1, 3, 3), (1, 1, 3, 3), 1, 0),  # a single output, C=1, F=1
    ((2, 3, 4, 9), (5, 3, 3, 3), 1, 2),
    ((2, 32, 16, 16), (24, 32, 3, 3), 1, 1),  # several bands of tile rows per image
    ((1, 2, 6, 70), (3, 2, 3, 3), 1, 1),  # 35 tiles a row: a row in two chunks
    ((2, 3, 5, 69), (4, 3, 3, 3), 1, (1, 0)),  # two chunks, the last tile half outside
    ((2, 3, 9, 11), (4, 3, 3, 3), 2, 1),
    ((1, 1, 8, 7), (1, 1, 3, 3), 2, (0, 2)),  # C=1, F=1, paddings differ in h and w
    ((1, 2, 5, 5), (3, 2, 3, 3), 2, 0),  # one tile
    ((2, 3, 6, 9), (2, 3, 3, 3), 2, 3),  # blocks wholly in the padding
    ((1, 2, 7, 140), (3, 2, 3, 3), 2, 1),  # 70 output columns: a row in three chunks
    ((3, 16, 14, 14), (24, 16, 3, 3), 2, (1, 0)),  # several bands of tile rows per image
]
# F(4x4, 3x3): 6x6 input blocks at a step of 4, so output sizes of every remainder mod 4
WINOGRAD_4X4_CASES = [
    ((1, 2, 6, 140), (3, 2, 3, 3), 1, 1),  # 35 tiles a row: a row in two chunks
    ((2, 3, 10, 9), (4, 3, 3, 3), 1, (2, 0)),  # 12x7 outputs
    ((3, 5, 7, 13), (2, 5, 3, 3), 1, (0, 1)),  # 5x13 outputs, N=3
    ((1, 1, 5, 6), (1, 1, 3, 3), 1, (2, 1)),  # C=1, F=1, 7x6 outputs
]


# s2d-winograd: kernels of at most 3 strides a side, split over stride_h x stride_w phases
S2D_CASES = [
    ((2, 3, 35, 31), (16, 3, 11, 11), 4, (0, 1)),  # alexnet-c1's kernel, 7x6 outputs
    ((1, 1, 22, 23), (2, 1, 11, 11), 4, 0),  # rows and columns past the last window: dx = 0
    ((2, 2, 13, 17), (3, 2, 5, 7), (2, 3), (2, 1)),  # strides and paddings differ in h and w
    ((3, 4, 10, 9), (5, 4, 2, 2), 2, 0),  # a kernel within one stride: 1x1 phase kernels
    ((1, 2, 21, 11), (4, 2, 7, 3), (3, 1), (3, 1)),  # stride 1 along w
    ((1, 3, 30, 30), (2, 3, 7, 7), 3, 3),  # 10x10 outputs: last tiles cut by the edge
    ((2, 2, 9, 140), (3, 2, 3, 3), 2, 1),  # 70 output columns: 18 tiles a row
]


def _winograd_builds():
    """The Winograd kernel builds this machine can run: the baseline one, and the AVX2/FMA
    one where it was built and the CPU has both (fastconv uses that one then)."""
    from fastconv._kernels import _winograd

    builds = {"baseline": _winograd}
    try:
        from fastconv._kernels import _winograd_avx2
    except ImportError:
        return builds
    if _winograd.cpu_has_avx2_fma():
        builds["avx2"] = _winograd_avx2
    return builds


@pytest.fixture(params=["baseline", "avx2"])
def winograd_build(request, monkeypatch):
    """Run the test on each Winograd build (skipped for the AVX2 one where this machine
    cannot run it)."""
    builds = _winograd_builds()
    if request.param not in builds:
        pytest.skip(f"the {request.param} Winograd build does not run here")
    monkeypatch.setattr(fastconv._compiled, "winograd", builds[request.param])
    return request.param


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("variant", ["F2X2", "STRIDE_TWO", "F4X4"])
@pytest.mark.parametrize("filters, channels", [(1, 1), (3, 31), (2, 33), (33, 65), (5, 64)])
def test_weight_transform_the_same_on_any_thread_count(filters, channels, variant, dtype,
                                                       winograd_build):
    # the filters are shared out over the threads, each transformed in its own stack frame:
    # the values are bit for bit those of one thread, with whole and partial 32-kernel chunks
    w = np.random.default_rng(8).standard_normal((filters, channels, 3, 3)).astype(dtype)
    kernels = fastconv._compiled.winograd
    elements = {"F2X2": 16, "STRIDE_TWO": 25, "F4X4": 36}[variant]
    results = []
    for threads in (1, 2, 3):
        transformed = np.full((elements, filters, channels), np.nan, dtype)
        kernels.transform_weights(w, getattr(kernels.Variant, variant), transformed, threads)
        results.append(transformed)
    assert np.isfinite(results[0]).all()
    for other in results[1:]:
        assert np.array_equal(other, results[0])
    with pytest.raises(ValueError, match=r"transformed must have shape \(E, F, C\)"):
        kernels.transform_weights(w, getattr(kernels.Variant, variant),
                                  np.empty((elements, filters, channels + 1), dtype), 2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("algorithm, x_shape, w_shape, stride, padding",
                         [("s2d-winograd",) + case for case in S2D_CASES]
                         + [("winograd-2x2" if case[2] == 1 else "winograd-s2",) + case
                            for case in WINOGRAD_CASES]
                         + [("winograd-4x4",) + case for case in WINOGRAD_CASES + WINOGRAD_4X4_CASES
                            if case[2] == 1])
def test_winograd_matches_reference(algorithm, x_shape, w_shape, stride, padding, dtype,
                                    winograd_build):
    x, w, b = _inputs(x_shape, w_shape, dtype)
    out, cache = fastconv.conv2d_forward(x, w, b, stride, padding, algorithm=algorithm)
    expected, ref_cache = reference.conv2d_forward(x, w, b, stride, padding)
    assert cache.algorithm == algorithm
    tolerance = _tolerance(algorithm, dtype)
    assert_close(out, expected, tolerance)
    # stride 1's backward is Winograd's too, and s2d-winograd's; the stride-2 "winograd"
    # backward is im2col's, held to its own bound
    backward_tolerance = tolerance if stride == 1 or algorithm == "s2d-winograd" else None
    dout = np.random.default_rng(1).standard_normal(out.shape).astype(dtype)
    for got, want in zip(fastconv.conv2d_backward(dout, cache), reference.conv2d_backward(dout, ref_cache)):
        assert_close(got, want, backward_tolerance)
        assert got.flags.c_contiguous and got.flags.writeable


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, w_shape, stride, padding", S2D_CASES + [
    ((2, 2, 3, 4), (3, 2, 9, 9), (4, 3), (4, 3)),  # more padding than input: empty phases
    ((1, 2, 23, 5), (2, 2, 5, 2), (2, 1), (0, 0)),  # rows past the last window, stride 1 in w
])
def test_space_to_depth_kernels_match_their_numpy_twins(x_shape, w_shape, stride, padding,
                                                        dtype, threads):
    """The compiled phase copies of s2d-winograd against fastconv.reference.polyphase's NumPy ones:
    a whole batch and a pass of fewer images, and the adjoint writing over every pixel."""
    from fastconv import _compiled
    from fastconv.algorithms import s2d_winograd
    from fastconv.reference import polyphase
    from fastconv._validate import conv2d_inputs

    x, w, _ = _inputs(x_shape, w_shape, dtype)
    window = conv2d_inputs(x, w, None, stride, padding)
    shape = s2d_winograd.phase_shape(window)
    expected = np.full(shape, np.nan, dtype)
    polyphase.space_to_depth(x, window, expected)
    for images in {1, x_shape[0]}:
        phases = np.full((images,) + shape[1:], np.nan, dtype)
        _compiled.im2col.space_to_depth(x[-images:], phases, *window.stride, *window.padding,
                                         threads)
        np.testing.assert_array_equal(phases, expected[-images:])
    gradient = np.random.default_rng(2).standard_normal(shape).astype(dtype)
    want = np.full(x_shape, np.nan, dtype)
    polyphase.depth_to_space(gradient, window, want)
    got = np.full(x_shape, np.nan, dtype)
    _compiled.im2col.depth_to_space(gradient, got, *window.stride, *window.padding, threads)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("w_shape, stride", [
    ((5, 3, 4, 4), (2, 2)), ((1, 1, 11, 11), (4, 4)), ((3, 2, 5, 2), (2, 1)),
    ((2, 4, 3, 9), (1, 3)), ((4, 1, 6, 6), (2, 2)), ((2, 3, 1, 1), (3, 2)),
])
def test_split_kernels_match_their_numpy_twins(w_shape, stride, dtype):
    """s2d-winograd's compiled kernel split (w's own space-to-depth) and its adjoint against
    fastconv.reference.polyphase's NumPy ones, with a non-contiguous w left unchanged."""
    from fastconv.algorithms import s2d_winograd
    from fastconv.reference import polyphase
    from fastconv._validate import conv2d_inputs

    rng = np.random.default_rng(4)
    w = rng.standard_normal(w_shape[:2] + (w_shape[2], 2 * w_shape[3])).astype(dtype)[..., ::2]
    before = w.copy()
    x = np.zeros((1, w_shape[1], 3 * w_shape[2], 3 * w_shape[3]), dtype)
    window = conv2d_inputs(x, w, None, stride, 0)
    split = s2d_winograd.split_kernels(w, window)
    np.testing.assert_array_equal(split, polyphase.split_kernels(w, window))
    np.testing.assert_array_equal(w, before)
    gradient = rng.standard_normal(split.shape).astype(dtype)
    merged = s2d_winograd.merge_kernels(gradient, window)
    np.testing.assert_array_equal(merged, polyphase.merge_kernels(gradient, window))
    assert merged.shape == w_shape


def test_winograd_weight_gradient_sums_with_blas_on_one_thread(monkeypatch):
    # the closing G^T (sums) G is a GEMM; a multi-threaded BLAS call would leave its threads
    # spinning on the cores the next kernel call needs
    from threadpoolctl import threadpool_info, threadpool_limits

    seen = []
    untransform = _winograd.untransform

    def recording_untransform(*args):
        seen.append([lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"])
        return untransform(*args)

    x, w, b = _inputs((2, 16, 8, 8), (16, 16, 3, 3), np.float64)
    with threadpool_limits(2, user_api="blas"), _settings(threads=2):
        out, cache = fastconv.conv2d_forward(x, w, b, 1, 1, algorithm="winograd")
        monkeypatch.setattr(_winograd, "untransform", recording_untransform)
        fastconv.conv2d_backward(np.ones_like(out), cache)
    assert seen and all(count == 1 for counts in seen for count in counts)


@pytest.fixture
def auto_prefers_winograd(monkeypatch):
    """Make "auto" take a Winograd algorithm wherever one supports the geometry: the tests
    below test the fallback for non-finite results, not the cost model (test_planner.py)."""
    winograd = ("winograd-4x4", "winograd-s2", "s2d-winograd")

    def costs(geometry, dtype, pass_name="forward", threads=None):
        return {m.NAME: 0.0 if m.NAME in winograd else 1.0
                for m in fastconv.algorithms.supporting(geometry)}

    fastconv.forget_wisdom()
    monkeypatch.setattr(fastconv.planner, "costs", costs)
    yield
    fastconv.forget_wisdom()


def _with_infinity(shape, dtype, seed, index):
    a = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    a[index] = np.inf
    return a


def _assert_auto_direct_for_infinity(w, stride, index):
    """"auto" runs im2col for an x (2, 16, 8, 8) holding +inf at `index`, with the
    reference's NaN and inf positions."""
    x = _with_infinity((2, 16, 8, 8), np.float64, 3, index)
    out, cache = fastconv.conv2d_forward(x, w, None, stride, 1)
    assert cache.algorithm == "im2col"
    expected, _ = reference.conv2d_forward(x, w, None, stride, 1)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(out), np.isinf(expected))


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_auto_keeps_the_direct_method_for_non_finite_inputs(auto_prefers_winograd):
    w = np.random.default_rng(1).standard_normal((16, 16, 3, 3))
    finite = np.random.default_rng(2).standard_normal((2, 16, 8, 8))
    assert fastconv.conv2d_forward(finite, w, None, 1, 1)[1].algorithm == "winograd-4x4"
    _assert_auto_direct_for_infinity(w, 1, (0, 5, 3, 4))
    bad_w = w.copy()
    bad_w[3, 2, 1, 1] = -np.inf
    assert fastconv.conv2d_forward(finite, bad_w, None, 1, 1)[1].algorithm == "im2col"
    # likewise at stride 2 (an infinity where the stride-2 transforms subtract it from itself)
    assert fastconv.conv2d_forward(finite, w, None, 2, 1)[1].algorithm == "winograd-s2"
    _assert_auto_direct_for_infinity(w, 2, (0, 5, 5, 5))
    # and for s2d-winograd, forward and backward
    x = np.random.default_rng(5).standard_normal((1, 3, 47, 47))
    w11 = np.random.default_rng(6).standard_normal((16, 3, 11, 11))
    out, cache = fastconv.conv2d_forward(x, w11, None, 4, 0)
    assert cache.algorithm == "s2d-winograd"
    x[0, 1, 9, 10] = np.inf
    out, _ = fastconv.conv2d_forward(x, w11, None, 4, 0)
    expected, _ = reference.conv2d_forward(x, w11, None, 4, 0)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(out), np.isinf(expected))
    dout = _with_infinity(out.shape, np.float64, 7, (0, 3, 2, 1))
    x[0, 1, 9, 10] = 0
    _, ref_cache = reference.conv2d_forward(x, w11, None, 4, 0)
    for got, want in zip(fastconv.conv2d_backward(dout, cache)[:2],
                         reference.conv2d_backward(dout, ref_cache)[:2]):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    # a non-finite dout: backward-data leaves Winograd too, gradients as the reference's
    out, cache = fastconv.conv2d_forward(finite, w, None, 1, 1)
    _, ref_cache = reference.conv2d_forward(finite, w, None, 1, 1)
    dout = _with_infinity(out.shape, np.float64, 4, (1, 7, 2, 2))
    dx, dw, _ = fastconv.conv2d_backward(dout, cache)
    want_dx, want_dw, _ = reference.conv2d_backward(dout, ref_cache)
    for got, want in ((dx, want_dx), (dw, want_dw)):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(want))


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, w_shape, stride, index", [
    ((2, 16, 10, 9), (16, 16, 3, 3), 1, (1, 3, 4, 4)),  # winograd-4x4
    ((1, 16, 6, 6), (16, 16, 3, 3), 1, (0, 0, 0, 5)),  # a corner pixel, one output reads it
    ((2, 16, 11, 11), (16, 16, 3, 3), 2, (1, 7, 6, 3)),  # stride-2 winograd
    ((1, 3, 50, 50), (16, 3, 11, 11), 4, (0, 2, 20, 31)),  # s2d-winograd
])
def test_auto_recomputes_a_winograd_result_with_nan_by_im2col(x_shape, w_shape, stride, index,
                                                              dtype, winograd_build,
                                                              auto_prefers_winograd):
    """"auto" runs Winograd without first scanning x; a NaN in x makes Winograd's outputs
    around it NaN, which the kernel's running sum of its outputs shows, and the result is
    then the direct method's (the reference's NaN pattern; the backward by im2col too)."""
    x, w, b = _inputs(x_shape, w_shape, dtype)
    padding = 0 if stride == 4 else 1
    clean = fastconv.conv2d_forward(x, w, b, stride, padding)[1].algorithm
    assert clean in ("winograd-4x4", "winograd-2x2", "winograd-s2", "s2d-winograd")
    x[index] = np.nan
    out, cache = fastconv.conv2d_forward(x, w, b, stride, padding)
    expected, ref_cache = reference.conv2d_forward(x, w, b, stride, padding)
    assert cache.algorithm == "im2col"
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    finite = ~np.isnan(expected)
    assert_close(out[finite], expected[finite])
    dout = np.random.default_rng(3).standard_normal(out.shape).astype(dtype)
    for got, want in zip(fastconv.conv2d_backward(dout, cache), reference.conv2d_backward(dout, ref_cache)):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_auto_gives_the_direct_result_for_an_infinity_no_window_reads(dtype, winograd_build,
                                                                    auto_prefers_winograd):
    """Row 47 of a 50-row x lies past alexnet-like windows (11x11, stride 4: the last reads
    rows 36-46) but inside s2d-winograd's last tile of phase images: Winograd would spread the
    infinity into NaN, the direct method never reads it. "auto" gives the direct result."""
    x, w, b = _inputs((1, 3, 50, 50), (16, 3, 11, 11), dtype)
    x[0, 1, 47, 20] = np.inf
    with np.errstate(invalid="ignore"):
        explicit, _ = fastconv.conv2d_forward(x, w, b, 4, algorithm="s2d-winograd")
    assert np.isnan(explicit).any()  # what "auto" must not return
    out, cache = fastconv.conv2d_forward(x, w, b, 4)
    expected, _ = reference.conv2d_forward(x, w, b, 4)
    assert cache.algorithm == "im2col"
    assert np.isfinite(out).all()
    assert_close(out, expected)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_winograd_forward_reports_whether_its_outputs_are_finite(value, winograd_build):

    x, w, b = _inputs((2, 16, 9, 9), (16, 16, 3, 3), np.float64)
    out = np.empty((2, 16, 9, 9))
    assert _winograd.forward(x, w, b, out, (1, 1), "4x4")
    x[1, 4, 8, 8] = value  # a corner: the last tile, cut by the edge
    with np.errstate(invalid="ignore"):
        assert not _winograd.forward(x, w, b, out, (1, 1), "4x4")
        assert not _winograd.forward(x, w, b, out, (1, 1), "2x2")


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("algorithm", ["winograd-2x2", "winograd-4x4"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_explicit_winograd_never_makes_an_infinity_finite(dtype, algorithm):
    """Documented: explicit Winograd may give NaN where the direct method gives +-inf, and
    NaN in the outputs sharing an infinity's tile; it never turns them finite, and every
    finite output it gives is right."""
    x = _with_infinity((1, 16, 8, 8), dtype, 5, (0, 4, 3, 5))
    w = np.random.default_rng(6).standard_normal((16, 16, 3, 3)).astype(dtype)
    out, _ = fastconv.conv2d_forward(x, w, None, 1, 1, algorithm=algorithm)
    expected, _ = reference.conv2d_forward(x, w, None, 1, 1)
    assert np.all(~np.isfinite(out[~np.isfinite(expected)]))
    finite = np.isfinite(out)
    assert finite.sum() > out.size // 2
    assert_close(out[finite], expected[finite], _tolerance(algorithm, dtype))


@pytest.mark.parametrize("algorithm, stride, x_shape", [
    ("winograd-2x2", 1, (3, 16, 20, 18)), ("winograd-s2", 2, (3, 16, 21, 18)),
    ("winograd-4x4", 1, (3, 16, 22, 18)), ("winograd-4x4", 1, (7, 16, 9, 9)),
    ("s2d-winograd", 2, (5, 16, 21, 18)),  # workspace 1: one image per pass
])
def test_winograd_with_small_workspace_and_threads(algorithm, stride, x_shape, monkeypatch,
                                                   winograd_build):
    monkeypatch.setattr(fastconv._tuning, "MIN_PARALLEL_FLOPS", 0)
    x, w, b = _inputs(x_shape, (16, 16, 3, 3), np.float64)
    expected, ref_cache = reference.conv2d_forward(x, w, b, stride, 1)
    dout = np.random.default_rng(2).standard_normal(expected.shape)
    want = reference.conv2d_backward(dout, ref_cache)
    tolerance = _tolerance(algorithm, np.float64)
    for threads, workspace in [(1, None), (2, 1), (3, 50_000), (2, 200_000)]:
        with _settings(threads, workspace):
            out, cache = fastconv.conv2d_forward(x, w, b, stride, 1, algorithm=algorithm)
            got = fastconv.conv2d_backward(dout, cache)
        assert_close(out, expected, tolerance)
        for g, e in zip(got, want):
            assert_close(g, e, tolerance)


def test_available_algorithms():
    assert fastconv.available_algorithms() == ["depthwise", "gemm-1x1", "winograd-4x4",
                                               "winograd-2x2", "winograd-s2", "s2d-winograd",
                                               "s2b-winograd", "im2col", "winograd"]
    x, w, _ = _inputs((1, 16, 6, 6), (16, 16, 3, 3), np.float32)
    geometry = fastconv._validate.conv2d_inputs(x, w, None, 2, 1)
    assert fastconv.available_algorithms(geometry) == ["winograd-s2", "s2d-winograd", "im2col"]


def test_unsupported_algorithm_is_an_error_not_a_fallback():
    x, w, _ = _inputs((1, 2, 4, 4), (3, 2, 3, 3), np.float32)
    with pytest.raises(fastconv.UnsupportedAlgorithm, match=r"'gemm-1x1' does not support .*kernel \(3, 3\): only 1x1"):
        fastconv.conv2d_forward(x, w, algorithm="gemm-1x1")
    with pytest.raises(ValueError, match="unknown algorithm 'fft'.*im2col"):
        fastconv.conv2d_forward(x, w, algorithm="fft")
    with pytest.raises(ValueError, match=r"'winograd' does not support .*stride \(2, 1\): only 1.*3x3 kernels, stride 1"):
        fastconv.conv2d_forward(x, w, stride=(2, 1), algorithm="winograd")
    with pytest.raises(ValueError, match=r"'winograd' does not support .*padding \(3, 0\): at most 2"):
        fastconv.conv2d_forward(x, w, padding=(3, 0), algorithm="winograd")
    with pytest.raises(ValueError, match=r"'winograd' does not support .*stride \(3, 3\)"):
        fastconv.conv2d_forward(x, w, stride=3, algorithm="winograd")
    with pytest.raises(ValueError, match=r"'winograd-4x4' does not support .*stride \(2, 2\): only 1.*stride 1, padding <= 2"):
        fastconv.conv2d_forward(x, w, stride=2, algorithm="winograd-4x4")
    with pytest.raises(ValueError, match=r"'s2d-winograd' does not support .*stride \(1, 1\).*strides above 1"):
        fastconv.conv2d_forward(x, w, algorithm="s2d-winograd")
    x, w, _ = _inputs((1, 2, 9, 9), (3, 2, 7, 3), np.float32)
    with pytest.raises(ValueError, match=r"'s2d-winograd' does not support .*kernel \(7, 3\) spans more than 3 strides \(2, 2\).*KH <= 3\*stride_h"):
        fastconv.conv2d_forward(x, w, stride=2, algorithm="s2d-winograd")


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("workspace", [1, 4096, None])
def test_threads_and_workspace_bands_do_not_change_results(threads, workspace, monkeypatch):
    # small inputs normally run on one thread: lift that so the parallel path runs here
    monkeypatch.setattr(fastconv._tuning, "MIN_PARALLEL_FLOPS", 0)
    x, w, b = _inputs((5, 3, 12, 10), (4, 3, 3, 3), np.float64)
    expected, ref_cache = reference.conv2d_forward(x, w, b, (2, 1), 1)
    dout = np.random.default_rng(3).standard_normal(expected.shape)
    want = reference.conv2d_backward(dout, ref_cache)
    with _settings(threads, workspace):
        out, cache = fastconv.conv2d_forward(x, w, b, (2, 1), 1)
        got = fastconv.conv2d_backward(dout, cache)
    assert_close(out, expected)
    for g, e in zip(got, want):
        assert_close(g, e)


# Shapes for each algorithm whose GEMMs have more than 16 columns in a band.
SPLIT_CASES = CASES + [
    ((2, 16, 9, 11), (16, 16, 3, 3), 1, 1, "winograd-2x2"),
    ((2, 16, 13, 11), (18, 16, 3, 3), 2, 1, "winograd-s2"),
    ((2, 16, 9, 14), (16, 16, 3, 3), 1, 1, "winograd-4x4"),
    ((2, 20, 7, 9), (6, 20, 1, 1), 1, 0, "gemm-1x1"),
]


@pytest.mark.parametrize("workspace", [1, None])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", SPLIT_CASES)
def test_gemms_split_into_column_pieces_give_the_same_results(case, dtype, workspace, monkeypatch):
    # GEMMs split into pieces of at most 3 rows, 5 inner terms and 16 columns, so most
    # products split along every dimension into uneven pieces
    monkeypatch.setattr(fastconv._blas, "gemm_pieces",
                        lambda rows, inner: np.array((3, 5, 16), dtype=np.intc))
    x_shape, w_shape, stride, padding, *algorithm = case
    x, w, b = _inputs(x_shape, w_shape, dtype)
    expected, ref_cache = reference.conv2d_forward(x, w, b, stride, padding)
    dout = np.random.default_rng(4).standard_normal(expected.shape).astype(dtype)
    with _settings(workspace=workspace):  # 1: bands of one output row
        out, cache = fastconv.conv2d_forward(x, w, b, stride, padding,
                                             algorithm=(algorithm or ["auto"])[0])
        got = fastconv.conv2d_backward(dout, cache)
    tolerance = _tolerance((algorithm or ["auto"])[0], dtype)
    assert_close(out, expected, tolerance)
    for g, e in zip(got, reference.conv2d_backward(dout, ref_cache)):
        assert_close(g, e, tolerance)


@pytest.mark.parametrize("workspace", [1, None])
@pytest.mark.parametrize("pieces", [None, (3, 5, 16)])
@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", [c for c in SPLIT_CASES if c[4:] not in (("winograd-2x2",), ("winograd-s2",),
                                                                       ("winograd-4x4",))])
def test_weight_gradient_either_way_round(case, dtype, bias, transposed, pieces, workspace,
                                          monkeypatch):
    # dW summed as dout @ cols^T, or transposed as cols @ dout^T (split into pieces or not),
    # with db summed in the same pass; in bands of one output row (workspace 1) or whole images
    monkeypatch.setattr(im2col_gemm, "transposed_weight_gradient", lambda *_: transposed)
    if pieces:
        monkeypatch.setattr(fastconv._blas, "gemm_pieces",
                            lambda rows, inner: np.array(pieces, dtype=np.intc))
    x_shape, w_shape, stride, padding, *algorithm = case
    x, w, b = _inputs(x_shape, w_shape, dtype)
    b = b if bias else None
    expected, ref_cache = reference.conv2d_forward(x, w, b, stride, padding)
    dout = np.random.default_rng(5).standard_normal(expected.shape).astype(dtype)
    with _settings(workspace=workspace):
        _, cache = fastconv.conv2d_forward(x, w, b, stride, padding,
                                           algorithm=(algorithm or ["im2col"])[0])
        got = fastconv.conv2d_backward(dout, cache)
    want = reference.conv2d_backward(dout, ref_cache)
    assert (got[2] is None) == (not bias)
    for g, e in zip(got, want):
        if e is not None:
            assert g.flags.c_contiguous
            assert_close(g, e)


@pytest.mark.parametrize("workspace", [1, None])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("filters", [1, 2, 3, 4, 5, 7, 16, 17, 33])
@pytest.mark.parametrize("x_shape", [(1, 2, 5, 7), (3, 1, 9, 6), (2, 3, 17, 19), (1, 4, 33, 32)])
def test_weight_gradient_transposed_dout_every_tile_edge(x_shape, filters, dtype, workspace,
                                                         monkeypatch):
    # dout is copied transposed in 16 x 16 blocks of SSE2 tiles (4 x 4 floats, 2 x 2 doubles)
    # with scalar edges: filter counts and band widths (one output row with workspace 1, else
    # whole images) on and off every tile and block edge
    monkeypatch.setattr(im2col_gemm, "transposed_weight_gradient", lambda *_: True)
    x, w, b = _inputs(x_shape, (filters, x_shape[1], 3, 3), dtype)
    expected, ref_cache = reference.conv2d_forward(x, w, b, 1, 1)
    dout = np.random.default_rng(6).standard_normal(expected.shape).astype(dtype)
    with _settings(workspace=workspace):
        _, cache = fastconv.conv2d_forward(x, w, b, 1, 1, algorithm="im2col")
        got = fastconv.conv2d_backward(dout, cache)
    assert im2col_gemm._backward_recipe(cache.window, x.itemsize, False, True, True)[4]
    for g, e in zip(got, reference.conv2d_backward(dout, ref_cache)):
        assert_close(g, e)


def test_weight_gradient_transposed_only_where_blas_would_pack_and_dw_is_small(monkeypatch):
    monkeypatch.setattr(fastconv._blas, "small_gemm_limit", lambda: 100**3)
    transposed = im2col_gemm.transposed_weight_gradient
    assert not transposed(27, 25, 4)       # cs231n-nb: 675 results, already unpacked
    assert transposed(147, 32, 4)          # cnn-cifar
    assert transposed(363, 96, 8)          # alexnet-c1, float64: 272 KiB
    assert not transposed(1152, 256, 4)    # res-s2: 1.1 MiB, too big to stay in cache
    monkeypatch.setattr(fastconv._blas, "small_gemm_limit", lambda: 0)
    assert not transposed(147, 32, 4)      # no small-matrix path to reach


@pytest.mark.parametrize("limit, limited", [(100**3, False), (0, True)])
@pytest.mark.parametrize("algorithm", ["im2col", "winograd-2x2", "winograd-4x4", "gemm-1x1"])
def test_blas_limit_skipped_only_when_every_product_is_a_small_piece(algorithm, limit, limited,
                                                                     monkeypatch):
    # OpenBLAS runs its small-matrix path on the calling thread: a forward whose products are
    # all pieces on it (every forward, with the limit) has no BLAS threads to hold back
    entered = []

    @contextmanager
    def recording():
        entered.append(True)
        yield

    monkeypatch.setattr(fastconv._blas, "small_gemm_limit", lambda: limit)
    monkeypatch.setattr(fastconv._blas, "single_threaded_blas", recording)
    kernel = (1, 1) if algorithm == "gemm-1x1" else (3, 3)
    x, w, b = _inputs((4, 64, 24, 24), (64, 64) + kernel, np.float32)  # big enough for 2 threads
    padding = 0 if algorithm == "gemm-1x1" else 1
    with _settings(threads=2):
        out, _ = fastconv.conv2d_forward(x, w, b, 1, padding, algorithm=algorithm)
    assert bool(entered) == limited
    assert_close(out, reference.conv2d_forward(x, w, b, 1, padding)[0],
                 _tolerance(algorithm, np.float32))


def test_gemm_pieces_follow_the_blas_small_matrix_limit(monkeypatch):
    monkeypatch.setattr(fastconv._blas, "small_gemm_limit", lambda: 100**3)
    pieces = fastconv._blas.gemm_pieces
    assert pieces(32, 148).tolist() == [32, 74, 416]     # 100**3 // (32*74) = 422
    assert pieces(96, 364).tolist() == [48, 122, 160]    # 2 x 48 rows, 3 x 122 inner
    assert pieces(256, 1153).tolist() == [64, 116, 128]
    monkeypatch.setattr(fastconv._blas, "small_gemm_limit", lambda: 10_000)
    assert pieces(32, 148).tolist() == [0, 0, 0]         # 4 columns: not worth splitting
    monkeypatch.setattr(fastconv._blas, "small_gemm_limit", lambda: 0)
    assert pieces(32, 148).tolist() == [0, 0, 0]


@pytest.mark.parametrize("kernel, stride, staged", [
    ((3, 3), (1, 1), True), ((11, 11), (4, 4), True), ((2, 2), (2, 2), False),
    ((1, 1), (2, 2), False), ((3, 3), (2, 2), False), ((5, 5), (2, 2), True),
    ((2, 2), (1, 1), True), ((3, 1), (1, 1), False), ((3, 4), (1, 2), True),
])
def test_im2col_stage_only_where_windows_overlap_enough(kernel, stride, staged):
    # staged where each input pixel lands in at least 4 columns: KH*KW >= 4*stride_h*stride_w
    x, w, b = _inputs((2, 3, 13, 12), (4, 3) + kernel, np.float32)
    window = fastconv._validate.conv2d_inputs(x, w, b, stride, 1)
    assert (im2col_gemm.stage_size(window, 2) > 0) == staged
    out, _ = fastconv.conv2d_forward(x, w, b, stride, 1, algorithm="im2col")
    assert_close(out, reference.conv2d_forward(x, w, b, stride, 1)[0])


def test_single_image_and_batch_of_one_band_row():
    # one image: the kernel runs on one thread and BLAS keeps its own threads
    x, w, b = _inputs((1, 8, 33, 17), (6, 8, 3, 3), np.float32)
    out, cache = fastconv.conv2d_forward(x, w, b, 1, 1)
    expected, _ = reference.conv2d_forward(x, w, b, 1, 1)
    assert_close(out, expected)


def test_inputs_are_not_written_and_outputs_are_fresh():
    x, w, b = _inputs((2, 3, 7, 7), (4, 3, 3, 3), np.float32)
    copies = [a.copy() for a in (x, w, b)]
    out, cache = fastconv.conv2d_forward(x, w, b, 2, 1)
    dout = np.ones_like(out)
    dx, dw, db = fastconv.conv2d_backward(dout, cache)
    for original, copy in zip((x, w, b), copies):
        np.testing.assert_array_equal(original, copy)
    np.testing.assert_array_equal(dout, 1)
    for result in (out, dx, dw, db):
        for source in (x, w, b, dout):
            assert not np.shares_memory(result, source)


# ---- bad input -----------------------------------------------------------------------

def _good():
    return _inputs((2, 3, 8, 8), (4, 3, 3, 3), np.float32)


@pytest.mark.parametrize("mutate, error, message", [
    (lambda x, w, b: (x[0], w, b), ValueError, r"x must be 4-D.*\(N, C, H, W\).*3-D shape \(3, 8, 8\)"),
    (lambda x, w, b: (x, w[0], b), ValueError, r"w must be 4-D.*3-D shape"),
    (lambda x, w, b: (x, w, b[:, None]), ValueError, r"b must be 1-D"),
    (lambda x, w, b: (x[:, :2], w, b), ValueError, r"channel mismatch: x has 2 channels.*w expects 3"),
    (lambda x, w, b: (x, w, b[:3]), ValueError, r"b must have one entry per filter.*4 filters.*\(3,\)"),
    (lambda x, w, b: (x.astype(np.int64), w, b), TypeError, r"x must have dtype float32 or float64, got int64"),
    (lambda x, w, b: (x.astype(complex), w, b), TypeError, r"got complex128"),
    (lambda x, w, b: (x.astype(object), w, b), TypeError, r"got object"),
    (lambda x, w, b: (x.tolist(), w, b), TypeError, r"x must be a numpy.ndarray.*got list"),
    (lambda x, w, b: (x, w.astype(np.float64), b), TypeError, r"x: float32, w: float64, b: float32"),
    (lambda x, w, b: (x, w, b.astype(np.float64)), TypeError, r"b: float64"),
    (lambda x, w, b: (x[:, :, :2, :2], w, b), ValueError, r"larger than the padded input.*\(2, 2\)"),
])
def test_bad_arrays(mutate, error, message):
    x, w, b = mutate(*_good())
    for backend in ("cython", "reference"):
        with pytest.raises(error, match=message):
            fastconv.conv2d_forward(x, w, b, backend=backend)
    with pytest.raises(error, match=message):
        reference.conv2d_forward(x, w, b)


@pytest.mark.parametrize("stride, padding, error, message", [
    (0, 0, ValueError, r"stride must be >= 1"),
    (-1, 0, ValueError, r"stride must be >= 1"),
    ((1, 0), 0, ValueError, r"stride must be >= 1"),
    (1, -1, ValueError, r"padding must be >= 0"),
    (1.5, 0, TypeError, r"stride must be an int or a \(height, width\) pair"),
    (2.0, 0, TypeError, r"stride must be an int"),
    (True, 0, TypeError, r"stride must be an int"),
    ("2", 0, TypeError, r"stride must be an int"),
    ((1, 2, 3), 0, ValueError, r"stride must be an int or a \(height, width\) pair, got 3 values"),
    (1, (1,), ValueError, r"padding must be.*got 1 values"),
    (1, (1, 0.5), TypeError, r"padding must be an int"),
    (1, None, TypeError, r"padding must be an int"),
])
def test_bad_stride_and_padding(stride, padding, error, message):
    x, w, b = _good()
    with pytest.raises(error, match=message):
        fastconv.conv2d_forward(x, w, b, stride, padding)
    with pytest.raises(error, match=message):
        reference.conv2d_forward(x, w, b, stride, padding)


def test_numpy_integers_are_accepted_as_stride():
    x, w, b = _good()
    out, _ = fastconv.conv2d_forward(x, w, b, np.int64(2), (np.int32(1), 1))
    assert out.shape == (2, 4, 4, 4)


@pytest.mark.parametrize("backend", ["cython", "reference"])
def test_bad_dout_and_cache(backend):
    x, w, b = _good()
    out, cache = fastconv.conv2d_forward(x, w, b, 1, 1, backend=backend)
    with pytest.raises(ValueError, match=r"dout must have the forward output's shape \(2, 4, 8, 8\), got \(2, 4, 8, 7\)"):
        fastconv.conv2d_backward(out[..., :7], cache)
    with pytest.raises(ValueError, match=r"dout must be 4-D"):
        fastconv.conv2d_backward(out[0], cache)
    with pytest.raises(TypeError, match=r"dout must have the forward output's dtype float32, got float64"):
        fastconv.conv2d_backward(out.astype(np.float64), cache)
    with pytest.raises(TypeError, match=r"cache must be the ConvCache returned by .*conv2d_forward.*got tuple"):
        fastconv.conv2d_backward(out, (x, w, b, {"stride": 1, "pad": 1}))
    with pytest.raises(TypeError, match=r"cache must be the ConvCache.*got NoneType"):
        reference.conv2d_backward(out, None)


def test_output_size_floors_like_pytorch():
    x, w, b = _inputs((1, 1, 10, 9), (1, 1, 3, 2), np.float32)
    out, _ = fastconv.conv2d_forward(x, w, b, (4, 3), (1, 0))
    # floor((10 + 2 - 3) / 4) + 1 = 3, floor((9 - 2) / 3) + 1 = 3
    assert out.shape == (1, 1, 3, 3)


def test_compiled_backend_is_built_and_default():
    """An installed fastconv must have its compiled kernels: the tests would otherwise only
    exercise the reference twin against itself."""
    assert fastconv.available_backends() == ["cython", "reference"]
    assert fastconv.get_backend() == "cython"


def test_winograd_bands_come_in_whole_rounds_of_threads():
    # vgg-3x3 by F(4x4, 3x3) in float32: 128 rows of tiles; 4 MiB bands would make 5 of
    # them, 3 for one thread and 2 for the other
    with _settings(threads=2):
        threads, band_rows, tiles_w, shared = _winograd.plan(16, 64, 64, 32, 32, 4, 36, 4,
                                                             share_bands=True)
    assert (threads, tiles_w, shared) == (2, 8, False)
    assert -(-16 * 8 // band_rows) % 2 == 0


def test_winograd_bands_shared_where_whole_bands_leave_a_thread_idle_or_are_narrow():
    # one 14x14 image by F(2x2, 3x3): 7 rows of tiles, 4 and 3 in whole bands on 2 threads
    with _settings(threads=2):
        assert _winograd.plan(1, 64, 64, 14, 14, 4, share_bands=True)[3]
        assert not _winograd.plan(1, 64, 64, 14, 14, 4)[3]             # the weight gradient's
        assert not _winograd.plan(2, 64, 64, 14, 14, 4, share_bands=True)[3]  # 14 rows: 7 and 7
        assert not _winograd.plan(1, 8, 64, 14, 14, 4, share_bands=True)[3]   # 4 channels each
        # one 7x7 image: 4 rows of 4 tiles, 2 and 2, but 8 tiles are too few columns
        assert _winograd.plan(1, 256, 256, 7, 7, 4, share_bands=True)[3]
        assert not _winograd.plan(8, 256, 256, 7, 7, 4, share_bands=True)[3]  # 64 tiles each
    with _settings(threads=1):
        assert _winograd.plan(1, 64, 64, 14, 14, 4, share_bands=True)[:1] == (1,)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("algorithm, x_shape, w_shape, stride, threads", [
    ("winograd-2x2", (1, 37, 13, 11), (35, 37, 3, 3), 1, 2),  # 7 rows of tiles, odd widths
    ("winograd-2x2", (1, 49, 13, 9), (50, 49, 3, 3), 1, 3),   # 7 rows on 3 threads
    ("winograd-4x4", (1, 33, 27, 14), (40, 33, 3, 3), 1, 2),  # 7 rows of 4x4 tiles
    ("winograd-s2", (1, 34, 27, 26), (36, 34, 3, 3), 2, 2),   # 7 rows at stride 2
])
def test_winograd_shared_bands_match_the_reference(algorithm, x_shape, w_shape, stride, threads,
                                                   dtype, monkeypatch):
    """Batch 1 with rows of tiles the threads cannot share out evenly: every thread works on
    every band (its channels, then its filters), with a bias and an epilogue (a batch norm's
    map and a ReLU) run on each thread's filters. (Small layers, threaded all the same.)"""
    monkeypatch.setattr(fastconv._tuning, "MIN_PARALLEL_FLOPS", 0)
    from fastconv import _epilogue
    from fastconv.conv import conv_inference
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal(x_shape).astype(dtype), rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    filters = w_shape[0]
    mean, scale, shift = (rng.standard_normal(filters) for _ in range(3))
    _, elements, tile = _winograd.SETS[algorithms.REGISTRY[algorithm].TRANSFORMS]
    out_size = conv_geometry(x_shape, w_shape, stride, 1).out
    with _settings(threads=threads):
        assert _winograd.plan(1, x_shape[1], filters, *out_size, x.itemsize, elements, tile,
                              share_bands=True)[3]
        out, _ = fastconv.conv2d_forward(x, w, b, stride, 1, algorithm=algorithm)
        fused = conv_inference(2, x, w, b, stride, 1, algorithm=algorithm,
                               epilogue=_epilogue.batch_norm(mean, scale, shift, True))
    expected, _ = reference.conv2d_forward(x, w, b, stride, 1)
    assert_close(out, expected, _tolerance(algorithm, dtype))
    # the epilogue on each thread's filters: the unfused output mapped, within a rounding
    mapped = ((out - mean.reshape(1, -1, 1, 1)) * scale.reshape(1, -1, 1, 1)
              + shift.reshape(1, -1, 1, 1))
    assert_close(fused, np.maximum(mapped, 0).astype(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, w_shape", [
    ((3, 2, 9, 7), (5, 2, 3, 3)),    # patch 18 + 1 <= 3*9*7 outputs: the bias folded into the GEMM
    ((1, 24, 3, 4), (6, 24, 3, 3)),  # patch 216 + 1 > 12 outputs: the bias set in each band
])
def test_im2col_bias_folded_or_set_per_band_matches_the_reference(x_shape, w_shape, dtype):
    rng = np.random.default_rng(7)
    x, w = rng.standard_normal(x_shape).astype(dtype), rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    out, _ = fastconv.conv2d_forward(x, w, b, 1, 1, algorithm="im2col")
    expected, _ = reference.conv2d_forward(x, w, b, 1, 1)
    assert_close(out, expected)
    without, _ = fastconv.conv2d_forward(x, w, None, 1, 1, algorithm="im2col")
    assert_close(out - without, np.broadcast_to(b.reshape(1, -1, 1, 1), out.shape))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("x_shape, w_shape, stride, padding, kinds", [
    ((9, 3, 7, 6), (5, 3, 3, 3), 1, 1, {}),                       # odd batch: a short last task
    ((8, 4, 9, 9), (6, 2, 3, 2), (2, 1), (1, 0), {"groups": 2}),  # one GEMM per group
    ((7, 2, 7, 6), (3, 2, 3, 3), 1, 2, {"dilation": 2, "padding_mode": "reflect"}),
    ((6, 3, 6, 6), (4, 3, 5, 5), 1, 2, {}),                       # the staged im2col
    ((6, 1, 5, 4), (2, 1, 1, 1), 2, 0, {}),                       # 1x1 stride 2, C = 1
])
def test_im2col_forward_with_images_side_by_side_matches_the_reference(
        x_shape, w_shape, stride, padding, kinds, threads, dtype, monkeypatch):
    """Images of few output pixels go several to a task, their columns side by side in one
    GEMM, each image's outputs then copied out with the bias added (or folded into the GEMM)
    and the epilogue run: the reference's result, whichever thread takes which images."""
    from fastconv import _epilogue
    from fastconv.conv import conv_inference
    monkeypatch.setattr(fastconv._tuning, "MIN_PARALLEL_FLOPS", 0)
    monkeypatch.setattr(fastconv._tuning, "BAND_TASKS_PER_THREAD", 1)
    rng = np.random.default_rng(11)
    x = with_layout(rng.standard_normal(x_shape).astype(dtype), "F")
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    mean, scale, shift = (rng.standard_normal(w_shape[0]) for _ in range(3))
    geometry = conv_geometry(x_shape, w_shape, stride, padding, **kinds)
    x_before = x.copy()
    with _settings(threads=threads):
        plan = im2col_gemm.plan(geometry, x.itemsize)
        assert im2col_gemm.images_per_task(geometry, x.itemsize, *plan) > 1
        with_bias, _ = fastconv.conv2d_forward(x, w, b, stride, padding, algorithm="im2col", **kinds)
        without, _ = fastconv.conv2d_forward(x, w, None, stride, padding, algorithm="im2col",
                                             **kinds)
        fused = conv_inference(2, x, w, b, stride, padding, algorithm="im2col",
                               epilogue=_epilogue.batch_norm(mean, scale, shift, True), **kinds)
    np.testing.assert_array_equal(x, x_before)
    expected, _ = reference.conv2d_forward(x, w, b, stride, padding, **kinds)
    assert_close(with_bias, expected)
    assert_close(without, reference.conv2d_forward(x, w, None, stride, padding, **kinds)[0])
    mapped = ((with_bias - mean.reshape(1, -1, 1, 1)) * scale.reshape(1, -1, 1, 1)
              + shift.reshape(1, -1, 1, 1))
    assert_close(fused, np.maximum(mapped, 0).astype(dtype))


def test_images_side_by_side_only_where_an_image_has_few_outputs(monkeypatch):
    """The plan: images_per_task makes GEMMs of about BAND_MIN_COLUMNS columns from images
    of at most SIDE_BY_SIDE_MAX_PIXELS output pixels, keeping BAND_TASKS_PER_THREAD tasks a
    thread."""
    def images(x_shape, w_shape, stride=1, padding=1, threads=2):
        geometry = conv_geometry(x_shape, w_shape, stride, padding)
        with _settings(threads=threads):
            return im2col_gemm.images_per_task(geometry, 4, *im2col_gemm.plan(geometry, 4))

    assert images((16, 512, 7, 7), (512, 512, 3, 3)) == 4          # 49 pixels: 16 // (2 * 2)
    assert images((64, 512, 7, 7), (512, 512, 3, 3)) == 6          # ceil(256 / 49)
    assert images((16, 256, 14, 14), (512, 256, 1, 1), 2, 0) == 4  # 1x1 stride 2 onto 7x7
    assert images((16, 128, 14, 14), (128, 128, 3, 3)) == 1        # 196 pixels: copying costs more
    assert images((1, 512, 7, 7), (512, 512, 3, 3)) == 1           # batch 1
    assert images((3, 512, 7, 7), (512, 512, 3, 3)) == 1           # too few tasks to share
    assert images((16, 512, 7, 7), (512, 512, 3, 3), threads=1) == 6
    monkeypatch.setattr(fastconv._tuning, "BAND_MIN_COLUMNS", 64)
    assert images((16, 512, 7, 7), (512, 512, 3, 3)) == 2
    monkeypatch.setattr(fastconv._tuning, "SIDE_BY_SIDE_MAX_PIXELS", 196)
    assert images((16, 128, 14, 14), (128, 128, 3, 3)) == 1        # 196 pixels: enough columns
    monkeypatch.setattr(fastconv._tuning, "BAND_MIN_COLUMNS", 256)
    assert images((16, 128, 14, 14), (128, 128, 3, 3)) == 2



@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("x_shape, w_shape, stride, padding, kinds", [
    ((9, 3, 7, 6), (5, 3, 3, 3), 1, 1, {}),                       # odd batch: a short last task
    ((8, 4, 9, 9), (6, 2, 3, 2), (2, 1), (1, 0), {"groups": 2}),  # one product per group
    ((7, 2, 7, 6), (3, 2, 3, 3), 1, 2, {"dilation": 2, "padding_mode": "reflect"}),
    ((6, 1, 5, 4), (2, 1, 1, 1), 2, 0, {}),                       # 1x1 stride 2, C = 1
    ((10, 3, 4, 4), (4, 3, 4, 4), 2, 1, {}),                      # DCGAN's 4x4, stride 2
])
def test_im2col_weight_gradient_with_images_side_by_side_matches_the_reference(
        x_shape, w_shape, stride, padding, kinds, transposed, threads, dtype, monkeypatch):
    """Images of few output pixels go several to a backward task: their columns and dout side
    by side in one dW product (dW kept as it is or transposed), and one dcols product for
    their dx, scattered back image by image: the reference's gradients, with or without dx,
    and the same bits from call to call."""
    monkeypatch.setattr(fastconv._tuning, "MIN_PARALLEL_FLOPS", 0)
    monkeypatch.setattr(im2col_gemm, "transposed_weight_gradient", lambda *_: transposed)
    rng = np.random.default_rng(13)
    x = with_layout(rng.standard_normal(x_shape).astype(dtype), "F")
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    geometry = conv_geometry(x_shape, w_shape, stride, padding, **kinds)
    with _settings(threads=threads):
        assert im2col_gemm.backward_images_per_task(geometry, x.itemsize, threads) > 1
        out, cache = fastconv.conv2d_forward(x, w, b, stride, padding, algorithm="im2col",
                                             **kinds)
        dout = with_layout(rng.standard_normal(out.shape).astype(dtype), "F")
        x_before, dout_before = x.copy(), dout.copy()
        dx, dw, db = fastconv.conv2d_backward(dout, cache)
        again = fastconv.conv2d_backward(dout, cache)
        no_dx, dw_alone, db_alone = fastconv.conv2d_backward(dout, cache, need_dx=False)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(dout, dout_before)
    _, ref_cache = reference.conv2d_forward(x, w, b, stride, padding, **kinds)
    for got, expected in zip((dx, dw, db), reference.conv2d_backward(dout, ref_cache)):
        assert got.shape == expected.shape
        assert_close(got, expected)
    for got, kept in zip((dx, dw, db), again):
        np.testing.assert_array_equal(got, kept)
    assert no_dx is None
    np.testing.assert_array_equal(dw_alone, dw)
    np.testing.assert_array_equal(db_alone, db)


def test_transposed_conv_weight_gradient_with_images_side_by_side_matches_the_reference():
    """A DCGAN-style transposed layer (4x4 maps to 8x8): its weight gradient is that of the
    adjoint convolution onto a 4x4 output, whose images go side by side."""
    rng = np.random.default_rng(17)
    x = rng.standard_normal((12, 6, 4, 4))
    w = rng.standard_normal((6, 5, 4, 4))
    b = rng.standard_normal(5)
    out, cache = fastconv.conv_transpose2d_forward(x, w, b, 2, 1)
    assert im2col_gemm.backward_images_per_task(cache.window, 8, fastconv.get_num_threads()) > 1
    dout = rng.standard_normal(out.shape)
    _, ref_cache = reference.conv_transpose2d_forward(x, w, b, 2, 1)
    for got, expected in zip(fastconv.conv_transpose2d_backward(dout, cache),
                             reference.conv_transpose2d_backward(dout, ref_cache)):
        assert_close(got, expected)


def test_weight_gradient_images_side_by_side_only_where_an_image_has_few_outputs(monkeypatch):
    """The plan: backward_images_per_task puts about DW_SIDE_BY_SIDE_COLUMNS columns in each
    product from images of fewer output pixels, with as many tasks for every thread, within
    the workspace budget."""
    def images(x_shape, w_shape, stride=1, padding=1, threads=2):
        return im2col_gemm.backward_images_per_task(
            conv_geometry(x_shape, w_shape, stride, padding), 4, threads)

    assert images((64, 128, 8, 8), (512, 128, 4, 4), 2, 1) == 16  # 16 pixels: 4 tasks of 16
    assert images((16, 256, 14, 14), (512, 256, 3, 3), 2, 1) == 4  # 49: ceil(256/49) = 6 -> 4 x 4
    assert images((16, 128, 14, 14), (128, 128, 3, 3)) == 2         # 196 pixels: 2 a task
    assert images((16, 128, 16, 16), (128, 128, 3, 3)) == 1         # 256 pixels: enough alone
    assert images((3, 512, 7, 7), (512, 512, 3, 3)) == 1            # fewer than 2 images a thread
    assert images((16, 512, 7, 7), (512, 512, 3, 3), threads=1) == 6
    assert images((2, 3, 5, 5, 5), (4, 3, 3, 3, 3), padding=1) == 1  # 3-D: several depth slices
    monkeypatch.setattr(fastconv._tuning, "DW_SIDE_BY_SIDE_COLUMNS", 0)
    assert images((64, 128, 8, 8), (512, 128, 4, 4), 2, 1) == 1
    # 2 threads of 512 KiB; an image takes (128*16 + 2*512 rows) * 16 pixels * 4 bytes = 192 KiB
    with _settings(workspace=2**20):
        monkeypatch.setattr(fastconv._tuning, "DW_SIDE_BY_SIDE_COLUMNS", 256)
        assert images((64, 128, 8, 8), (512, 128, 4, 4), 2, 1) == 2


def test_weight_gradient_images_rejects_buffers_too_small():
    """The kernel checks its buffers against images_per_task before any thread starts."""
    geometry = conv_geometry((4, 2, 4, 4), (3, 2, 3, 3), 1, 1)
    window = np.asarray(geometry.kernel_window(), dtype=np.intp)
    dout = np.zeros((4, 3, 16), np.float32)
    x = np.zeros((4, 2, 1, 4, 4), np.float32)
    dweight = np.zeros((1, 3, 18), np.float32)
    workspace = np.zeros((1, 18, 32), np.float32)
    gathered = np.zeros((1, 3, 31), np.float32)  # one column short of 2 images
    with pytest.raises(ValueError, match="images_per_task"):
        fastconv._compiled.conv.weight_gradient_images(
            dout, x, dweight, None, workspace, gathered, np.zeros((1, 0, 3), np.float32),
            window, 1, 2, False, np.zeros(3, np.intc), 1)
    with pytest.raises(ValueError, match="images_per_task"):
        fastconv._compiled.conv.input_gradient_images(
            dout, np.zeros((3, 18), np.float32), x.copy(), workspace, gathered, window, 1, 2,
            np.zeros(3, np.intc), 1)
    short_rows = np.zeros((1, 17, 32), np.float32)  # im2col writes 2 * 3 * 3 = 18 rows
    with pytest.raises(ValueError, match="images_per_task"):
        fastconv._compiled.conv.weight_gradient_images(
            dout, x, dweight, None, short_rows, np.zeros((1, 3, 32), np.float32),
            np.zeros((1, 0, 3), np.float32), window, 1, 2, False, np.zeros(3, np.intc), 1)


# ---- per-call plans kept between calls -----------------------------------------------------

def test_remembered_geometry_still_rejects_what_equals_a_valid_argument():
    """conv_geometry keeps its results for plain arguments; True == 1 and 2.0 == 2 hash as the
    ints they equal, so after the valid call they must still be rejected, not looked up."""
    x, w, b = _inputs((1, 2, 6, 6), (3, 2, 3, 3), np.float32)
    fastconv.conv2d_forward(x, w, b, 1, 1, dilation=2)
    fastconv.conv2d_forward(x, w, b, 2, 1)
    for bad in (dict(stride=True), dict(stride=2.0), dict(stride=(1, True)),
                dict(dilation=2.0), dict(padding=1.0)):
        arguments = dict(stride=1, padding=1) | bad
        with pytest.raises(TypeError):
            fastconv.conv2d_forward(x, w, b, **arguments)
    with pytest.raises(TypeError):
        fastconv.conv2d_forward(x, w, b, 1, 1, groups=True)
    # numpy integers are fine, and give the geometry their ints give
    out, cache = fastconv.conv2d_forward(x, w, b, np.int64(2), (np.int32(1), 1))
    assert cache.window == fastconv.conv2d_forward(x, w, b, 2, 1)[1].window
    assert out.shape == (1, 3, 3, 3)


def test_remembered_im2col_plan_follows_threads_workspace_and_constants(monkeypatch):
    """run_forward's plan is kept per problem; a change of thread count, workspace limit or
    tuning constant must give the plan those settings give, not the remembered one."""
    x, w, b = _inputs((1, 8, 12, 12), (8, 8, 3, 3), np.float32)
    geometry = fastconv._validate.conv_inputs(x, w, b, 2, 1, 1)
    expected = reference.conv2d_forward(x, w, b, 1, 1)[0]
    dout = np.random.default_rng(5).standard_normal(expected.shape).astype(np.float32)
    gradients = reference.conv2d_backward(dout, reference.conv2d_forward(x, w, b, 1, 1)[1])
    with _settings(threads=2):
        first = im2col_gemm._forward_recipe(geometry, 4, False, True)
        assert first[0] == 1  # too small to pay for two threads
        assert im2col_gemm._backward_recipe(geometry, 4, False, True, True)[0] == 1
        monkeypatch.setattr(fastconv._tuning, "MIN_PARALLEL_FLOPS", 0)
        second = im2col_gemm._forward_recipe(geometry, 4, False, True)
        assert second[0] == 2
        backward = im2col_gemm._backward_recipe(geometry, 4, False, True, True)
        assert backward[0] == 2 and backward[2]  # one image: bands in parallel
        out, cache = fastconv.conv2d_forward(x, w, b, 1, 1, algorithm="im2col")
        assert_close(out, expected)
        for got, want in zip(fastconv.conv2d_backward(dout, cache), gradients):
            assert_close(got, want)
    with _settings(threads=1):
        assert im2col_gemm._forward_recipe(geometry, 4, False, True)[0] == 1
    with _settings(threads=2, workspace=4096):
        small = im2col_gemm._forward_recipe(geometry, 4, False, True)
        assert small[1] < second[1]  # bands cut to the budget
        out, _ = fastconv.conv2d_forward(x, w, b, 1, 1, algorithm="im2col")
        assert_close(out, expected)
    # what the kernels are passed again and again is not theirs to change
    assert not first[6].flags.writeable and not first[7].flags.writeable
