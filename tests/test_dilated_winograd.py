"""s2b-winograd: dilated 3x3 stride-1 convolutions as F(4x4, 3x3) over space-to-batch phase
images, against the reference twin, its phase copies against their NumPy twins, and its
gradients numerically."""
import numpy as np
import pytest

import fastconv
from fastconv import _compiled, reference
from fastconv.algorithms import s2b_winograd
from fastconv.reference import polyphase

from _helpers import LAYOUTS, assert_close, numerical_gradient, rel_error, with_layout
from test_conv import _inputs, _settings, winograd_build  # noqa: F401  (a fixture)

TOLERANCE = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-12}  # F(4x4, 3x3)'s

# (x shape, w shape, padding, dilation): per-axis dilations and paddings, asymmetric sides,
# "same", N=1, C=1, odd sizes, phases with no input pixel, outputs of every remainder mod 4
CASES = [
    ((2, 5, 17, 13), (4, 5, 3, 3), 2, 2),  # 'same'-like: 17x13 outputs, odd per phase
    ((1, 3, 20, 9), (6, 3, 3, 3), (1, 3), (2, 3)),  # dilations and paddings differ in h and w
    ((3, 4, 11, 12), (2, 4, 3, 3), (0, 1, 2, 0), (3, 2)),  # per-side padding
    ((2, 2, 5, 5), (3, 2, 3, 3), "same", 2),
    ((1, 1, 14, 30), (1, 1, 3, 3), 0, (1, 4)),  # C=F=1, dilated along w only
    ((2, 3, 4, 4), (2, 3, 3, 3), 4, 4),  # more padding than input: phases without pixels
    ((1, 16, 33, 33), (8, 16, 3, 3), 6, 6),  # DeepLab's rate 6 at output stride 8
]


def _ids(cases):
    return [f"{x}-{w}-p{p}-d{d}" for x, w, p, d in cases]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, w_shape, padding, dilation", CASES, ids=_ids(CASES))
def test_s2b_winograd_matches_reference(x_shape, w_shape, padding, dilation, dtype,
                                        winograd_build):
    x, w, b = _inputs(x_shape, w_shape, dtype)
    out, cache = fastconv.conv2d_forward(x, w, b, 1, padding, dilation=dilation,
                                         algorithm="s2b-winograd")
    expected, ref_cache = reference.conv2d_forward(x, w, b, 1, padding, dilation=dilation)
    assert cache.algorithm == "s2b-winograd"
    assert_close(out, expected, TOLERANCE[np.dtype(dtype)])
    dout = np.random.default_rng(1).standard_normal(out.shape).astype(dtype)
    got = fastconv.conv2d_backward(dout, cache)
    for g, e in zip(got, reference.conv2d_backward(dout, ref_cache)):
        assert_close(g, e, TOLERANCE[np.dtype(dtype)])
        assert g.flags.c_contiguous and g.dtype == dtype


@pytest.mark.parametrize("layout", LAYOUTS)
def test_s2b_winograd_takes_any_layout_and_leaves_inputs_unwritten(layout):
    x, w, b = _inputs((2, 6, 15, 14), (5, 6, 3, 3), np.float32, seed=4)
    xl, wl, bl = (with_layout(a, layout) for a in (x, w, b))
    saved = [a.copy() for a in (xl, wl, bl)]
    out, cache = fastconv.conv2d_forward(xl, wl, bl, 1, (2, 3), dilation=(2, 3),
                                         algorithm="s2b-winograd")
    dout = with_layout(np.random.default_rng(5).standard_normal(out.shape).astype(np.float32), layout)
    saved_dout = dout.copy()
    got = fastconv.conv2d_backward(dout, cache)
    expected, ref_cache = reference.conv2d_forward(x, w, b, 1, (2, 3), dilation=(2, 3))
    assert_close(out, expected, 1e-4)
    for g, e in zip(got, reference.conv2d_backward(np.array(dout), ref_cache)):
        assert_close(g, e, 1e-4)
    for before, after in zip(saved + [saved_dout], (xl, wl, bl, dout)):
        np.testing.assert_array_equal(before, after)


def test_s2b_winograd_gradients_match_numerical():
    x, w, b = _inputs((2, 2, 9, 8), (3, 2, 3, 3), np.float64, seed=3)
    options = dict(stride=1, padding=(2, 1, 0, 3), dilation=(2, 3))

    def forward(x_, w_, b_):
        return fastconv.conv2d_forward(x_, w_, b_, **options, algorithm="s2b-winograd")[0]

    out, cache = fastconv.conv2d_forward(x, w, b, **options, algorithm="s2b-winograd")
    dout = np.random.default_rng(4).standard_normal(out.shape)
    dx, dw, db = fastconv.conv2d_backward(dout, cache)
    assert rel_error(dx, numerical_gradient(lambda v: forward(v, w, b), x.copy(), dout)) < 1e-8
    assert rel_error(dw, numerical_gradient(lambda v: forward(x, v, b), w.copy(), dout)) < 1e-8
    assert rel_error(db, numerical_gradient(lambda v: forward(x, w, v), b.copy(), dout)) < 1e-8


@pytest.mark.parametrize("threads, workspace", [(1, None), (2, 1), (3, 60_000), (2, 400_000)])
def test_s2b_winograd_in_passes_and_on_threads(threads, workspace, monkeypatch, winograd_build):
    """Workspace 1: one image per pass; the phase copies and the transforms on 1-3 threads."""
    monkeypatch.setattr(fastconv._tuning, "MIN_PARALLEL_FLOPS", 0)
    monkeypatch.setattr(fastconv._tuning, "MIN_PARALLEL_COPY", 0)
    x, w, b = _inputs((5, 16, 19, 18), (16, 16, 3, 3), np.float64)
    expected, ref_cache = reference.conv2d_forward(x, w, b, 1, 2, dilation=2)
    dout = np.random.default_rng(2).standard_normal(expected.shape)
    want = reference.conv2d_backward(dout, ref_cache)
    with _settings(threads, workspace):
        out, cache = fastconv.conv2d_forward(x, w, b, 1, 2, dilation=2, algorithm="s2b-winograd")
        got = fastconv.conv2d_backward(dout, cache)
    assert_close(out, expected, 1e-12)
    for g, e in zip(got, want):
        assert_close(g, e, 1e-12)


def test_dilated_transposed_conv_runs_on_s2b_winograd():
    """A transposed convolution's forward is its convolution's input gradient (the
    backward-data pass), its backward that convolution's forward and weight gradient."""
    x, w, _ = _inputs((2, 8, 10, 11), (8, 4, 3, 3), np.float64, seed=7)
    b = np.arange(4.0)
    out, cache = fastconv.conv_transpose2d_forward(x, w, b, 1, 1, dilation=2,
                                                   algorithm="s2b-winograd")
    expected, ref_cache = reference.conv_transpose2d_forward(x, w, b, 1, 1, dilation=2)
    assert_close(out, expected, 1e-12)
    dout = np.random.default_rng(8).standard_normal(out.shape)
    for g, e in zip(fastconv.conv_transpose2d_backward(dout, cache),
                    reference.conv_transpose2d_backward(dout, ref_cache)):
        assert_close(g, e, 1e-12)


def test_s2b_winograd_supports_only_dilated_3x3_stride_one_zero_padded():
    x, w, _ = _inputs((1, 2, 12, 12), (3, 2, 3, 3), np.float32)
    for options, reason in [(dict(), r"undilated"), (dict(dilation=2, stride=2), r"stride \(2, 2\)"),
                            (dict(dilation=2, padding=1, padding_mode="reflect"), "padding_mode 'reflect'")]:
        with pytest.raises(fastconv.UnsupportedAlgorithm, match=f"'s2b-winograd' does not support .*{reason}"):
            fastconv.conv2d_forward(x, w, algorithm="s2b-winograd", **options)
    with pytest.raises(fastconv.UnsupportedAlgorithm, match=r"kernel \(2, 3\): only 3x3"):
        fastconv.conv2d_forward(x, w[:, :, :2], dilation=2, algorithm="s2b-winograd")
    groups_w = np.ones((4, 1, 3, 3), np.float32)
    with pytest.raises(fastconv.UnsupportedAlgorithm, match="grouped"):
        fastconv.conv2d_forward(x, groups_w, dilation=2, groups=2, algorithm="s2b-winograd")


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_auto_recomputes_an_s2b_winograd_result_with_nan_by_im2col(monkeypatch):
    def costs(geometry, dtype, pass_name="forward", threads=None):
        return {m.NAME: 0.0 if m.NAME == "s2b-winograd" else 1.0
                for m in fastconv.algorithms.supporting(geometry)}

    fastconv.forget_wisdom()
    monkeypatch.setattr(fastconv.planner, "costs", costs)
    try:
        x, w, b = _inputs((2, 16, 12, 12), (16, 16, 3, 3), np.float64)
        assert fastconv.conv2d_forward(x, w, b, 1, 2, dilation=2)[1].algorithm == "s2b-winograd"
        x[1, 3, 5, 6] = np.inf
        out, cache = fastconv.conv2d_forward(x, w, b, 1, 2, dilation=2)
        expected, _ = reference.conv2d_forward(x, w, b, 1, 2, dilation=2)
        assert cache.algorithm == "im2col"
        np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
        np.testing.assert_array_equal(np.isinf(out), np.isinf(expected))
    finally:
        fastconv.forget_wisdom()


# ---- the phase copies ---------------------------------------------------------------

PHASE_CASES = [
    ((2, 3, 9, 7), (2, 2), (1, 2), (6, 5)),  # rows and columns past x: zeros
    ((1, 2, 5, 11), (3, 1), (0, 0), (2, 11)),  # fewer phase rows than x needs
    ((3, 1, 4, 4), (4, 4), (5, 3), (3, 3)),  # more padding than input: empty phases
    ((1, 4, 13, 8), (1, 3), (2, 4), (8, 4)),
]


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, step, padding, phase_size", PHASE_CASES)
def test_space_to_batch_kernels_match_their_numpy_twins(x_shape, step, padding, phase_size,
                                                        dtype, threads):
    x = np.random.default_rng(0).standard_normal(x_shape).astype(dtype)
    shape = (step[0] * step[1] * x_shape[0], x_shape[1]) + phase_size
    want = np.full(shape, np.nan, dtype)
    polyphase.space_to_batch(x, step, padding, want)
    got = np.full(shape, np.nan, dtype)
    _compiled.im2col.space_to_depth(x, got, *step, *padding, threads, True)
    np.testing.assert_array_equal(got, want)
    gradient = np.random.default_rng(1).standard_normal(shape).astype(dtype)
    want_dx = np.full(x_shape, np.nan, dtype)
    polyphase.batch_to_space(gradient, step, padding, want_dx)
    got_dx = np.full(x_shape, np.nan, dtype)
    _compiled.im2col.depth_to_space(gradient, got_dx, *step, *padding, threads, True)
    np.testing.assert_array_equal(got_dx, want_dx)
    # the adjoint: <s2b(x), g> == <x, b2s(g)> where no pixel lies past the phase images
    if all(s * p >= n + pad for s, p, n, pad in zip(step, phase_size, x_shape[2:], padding)):
        assert np.isclose(np.vdot(want.astype(np.float64), gradient), np.vdot(x.astype(np.float64), want_dx))


@pytest.mark.parametrize("by_batch", [False, True])
def test_phase_copies_reject_phases_of_the_wrong_layout(by_batch):
    x = np.zeros((2, 3, 8, 8), np.float32)
    wrong = np.zeros((2, 3, 4, 4), np.float32)  # right for neither layout at step 2
    with pytest.raises(ValueError, match="phases must have"):
        _compiled.im2col.space_to_depth(x, wrong, 2, 2, 0, 0, 1, by_batch)
    with pytest.raises(ValueError, match="phases must have"):
        _compiled.im2col.depth_to_space(wrong, x, 2, 2, 0, 0, 1, by_batch)


def test_s2b_cost_is_below_im2col_on_a_deeplab_layer():
    """The cost model prefers s2b-winograd on a wide dilated layer (measured faster there:
    docs/performance.md, "s2b-winograd") and keeps im2col for a tiny one."""
    from fastconv import planner
    from fastconv._geometry import conv_geometry

    big = planner.costs(conv_geometry((8, 256, 33, 33), (256, 256, 3, 3), 1, 2, dilation=2), np.float32)
    assert big["s2b-winograd"] < big["im2col"]
    assert s2b_winograd.phase_out(conv_geometry((1, 1, 5, 5), (1, 1, 3, 3), 1, 2, dilation=2)) == (3, 3)
