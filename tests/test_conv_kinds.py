"""Convolution kinds: 1-D/2-D/3-D, dilation, groups and depthwise, per-side/"same"/"valid"
padding, padding modes, and transposed convolutions: compiled vs the reference twin, vs
PyTorch, numerical gradients, layouts, need_dx."""
import numpy as np
import pytest

import fastconv
from fastconv import reference

from _helpers import LAYOUTS, assert_close, numerical_gradient, with_layout

DTYPES = (np.float32, np.float64)
FORWARD = {1: fastconv.conv1d_forward, 2: fastconv.conv2d_forward, 3: fastconv.conv3d_forward}
BACKWARD = {1: fastconv.conv1d_backward, 2: fastconv.conv2d_backward, 3: fastconv.conv3d_backward}
REF_FORWARD = {1: reference.conv1d_forward, 2: reference.conv2d_forward,
               3: reference.conv3d_forward}
REF_BACKWARD = {1: reference.conv1d_backward, 2: reference.conv2d_backward,
                3: reference.conv3d_backward}
T_FORWARD = {1: fastconv.conv_transpose1d_forward, 2: fastconv.conv_transpose2d_forward,
             3: fastconv.conv_transpose3d_forward}
T_BACKWARD = {1: fastconv.conv_transpose1d_backward, 2: fastconv.conv_transpose2d_backward,
              3: fastconv.conv_transpose3d_backward}
T_REF_FORWARD = {1: reference.conv_transpose1d_forward, 2: reference.conv_transpose2d_forward,
                 3: reference.conv_transpose3d_forward}
T_REF_BACKWARD = {1: reference.conv_transpose1d_backward, 2: reference.conv_transpose2d_backward,
                  3: reference.conv_transpose3d_backward}

# (x shape, w shape, options): non-square, N=1, C=1, odd sizes, per-axis values
CASES = [
    # 1-D
    ((2, 3, 17), (4, 3, 5), dict(stride=2, padding=3, dilation=2)),
    ((1, 1, 9), (1, 1, 3), dict(padding="same")),
    ((2, 4, 20), (6, 2, 4), dict(stride=3, padding=(1, 2), groups=2, padding_mode="reflect")),
    ((3, 2, 11), (2, 2, 3), dict(padding="same", dilation=3, padding_mode="circular")),
    ((2, 6, 8), (12, 1, 3), dict(padding=1, groups=6, padding_mode="replicate")),  # depthwise x2
    # 2-D
    ((2, 3, 9, 7), (4, 3, 3, 2), dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2))),
    ((2, 4, 9, 10), (6, 2, 3, 3), dict(stride=2, padding=(1, 2, 0, 1), dilation=2, groups=2)),
    ((1, 6, 7, 7), (6, 1, 3, 3), dict(padding=1, groups=6)),                       # depthwise
    ((2, 4, 8, 9), (8, 1, 3, 3), dict(stride=2, padding=1, groups=4)),             # multiplier 2
    ((2, 3, 8, 8), (5, 3, 3, 3), dict(padding="same", dilation=(2, 3))),
    ((2, 3, 9, 8), (5, 3, 4, 3), dict(stride=3, padding="same")),                  # same, stride 3
    ((1, 2, 6, 7), (3, 2, 3, 3), dict(padding="valid")),
    ((2, 3, 7, 6), (4, 3, 3, 3), dict(padding=(2, 1), padding_mode="reflect")),
    ((2, 3, 5, 6), (4, 3, 3, 2), dict(stride=(1, 2), padding=(3, 0, 1, 4), padding_mode="replicate")),
    ((2, 3, 5, 6), (4, 3, 3, 3), dict(stride=2, padding=(5, 6), padding_mode="circular")),
    ((1, 1, 4, 4), (1, 1, 2, 2), dict(padding=(0, 1, 1, 0), padding_mode="reflect")),
    ((2, 16, 10, 9), (16, 16, 3, 3), dict(padding=1, padding_mode="reflect")),     # 3x3 stride 1
    ((2, 16, 10, 9), (16, 16, 3, 3), dict(padding=(1, 0, 1, 1))),                  # asymmetric
    ((2, 8, 6, 5), (8, 2, 1, 1), dict(groups=4)),                                  # grouped 1x1
    # 3-D
    ((2, 3, 5, 6, 7), (4, 3, 3, 2, 3), dict(stride=(1, 2, 2), padding=(1, 0, 2), dilation=(2, 1, 1))),
    ((1, 4, 4, 5, 3), (4, 2, 2, 3, 1), dict(padding="same", groups=2, padding_mode="circular")),
    ((2, 2, 6, 4, 5), (3, 2, 3, 3, 3), dict(stride=2, padding=1, padding_mode="replicate")),
    ((1, 3, 4, 4, 4), (3, 1, 3, 3, 3), dict(padding=(1, 1, 0, 2, 1, 1), groups=3)),
    ((2, 4, 3, 5, 6), (5, 4, 1, 1, 1), dict()),                                    # 1x1x1
]


def _ids(cases):
    return [f"{len(x) - 2}d-{'-'.join(f'{k}{v}' for k, v in o.items())}" for x, _, o in cases]


def _inputs(x_shape, w_shape, dtype, seed=0, filters=None):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(filters or w_shape[0]).astype(dtype)
    return x, w, b


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape, w_shape, options", CASES, ids=_ids(CASES))
def test_compiled_matches_reference(x_shape, w_shape, options, dtype):
    ndim = len(x_shape) - 2
    x, w, b = _inputs(x_shape, w_shape, dtype)
    out, cache = FORWARD[ndim](x, w, b, **options, backend="cython")
    expected, ref_cache = REF_FORWARD[ndim](x, w, b, **options)
    assert out.dtype == x.dtype
    # Winograd where auto takes it: its looser bound (test_conv.py)
    tolerance = 1e-4 if dtype == np.float32 and "winograd" in cache.algorithm else None
    assert_close(out, expected, tolerance)
    dout = np.random.default_rng(1).standard_normal(out.shape).astype(dtype)
    got = BACKWARD[ndim](dout, cache)
    want = REF_BACKWARD[ndim](dout, ref_cache)
    for g, e in zip(got, want):
        assert_close(g, e, tolerance)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("x_shape, w_shape, options", CASES[::3], ids=_ids(CASES[::3]))
def test_any_layout_and_inputs_never_written(x_shape, w_shape, options, layout):
    ndim = len(x_shape) - 2
    x, w, b = _inputs(x_shape, w_shape, np.float64)
    laid = [with_layout(a, layout) for a in (x, w, b)]
    saved = [a.copy() for a in laid]
    out, cache = FORWARD[ndim](*laid, **options)
    expected, ref_cache = REF_FORWARD[ndim](x, w, b, **options)
    assert_close(out, expected)
    dout = with_layout(np.random.default_rng(1).standard_normal(out.shape), layout)
    saved_dout = dout.copy()
    for g, e in zip(BACKWARD[ndim](dout, cache), REF_BACKWARD[ndim](np.array(dout), ref_cache)):
        assert_close(g, e)
    for a, s in zip(laid + [dout], saved + [saved_dout]):
        np.testing.assert_array_equal(a, s)


@pytest.mark.parametrize("x_shape, w_shape, options", [CASES[i] for i in (0, 2, 5, 6, 7, 12, 14, 19, 20)],
                         ids=_ids([CASES[i] for i in (0, 2, 5, 6, 7, 12, 14, 19, 20)]))
@pytest.mark.parametrize("backend", ["cython", "reference"])
def test_gradients_match_numerical(x_shape, w_shape, options, backend):
    ndim = len(x_shape) - 2
    x, w, b = _inputs(x_shape, w_shape, np.float64, seed=3)
    out, cache = FORWARD[ndim](x, w, b, **options, backend=backend)
    dout = np.random.default_rng(4).standard_normal(out.shape)
    dx, dw, db = BACKWARD[ndim](dout, cache)
    forward = lambda **changed: FORWARD[ndim](  # noqa: E731
        changed.get("x", x), changed.get("w", w), changed.get("b", b), **options,
        backend=backend)[0]
    assert_close(dx, numerical_gradient(lambda v: forward(x=v), x.copy(), dout), 1e-7)
    assert_close(dw, numerical_gradient(lambda v: forward(w=v), w.copy(), dout), 1e-7)
    assert_close(db, numerical_gradient(lambda v: forward(b=v), b.copy(), dout), 1e-7)


def test_same_padding_rule():
    """Output ceil(size / stride) at any stride; the total padding split with the larger
    half after (Keras; PyTorch at stride 1)."""
    for size, kernel, stride, dilation in [(9, 3, 2, 1), (10, 3, 2, 1), (10, 4, 3, 1), (7, 3, 1, 2),
                                           (5, 5, 4, 1), (1, 3, 2, 1)]:
        x = np.zeros((1, 1, size))
        w = np.zeros((1, 1, kernel))
        geometry = fastconv.conv1d_forward(x, w, None, stride, "same", dilation=dilation)[1].window
        out = -(-size // stride)
        total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
        assert geometry.out == (out,)
        assert geometry.pad_before == (total // 2,) and geometry.pad_after == (total - total // 2,)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape, w_shape, options", CASES[::2], ids=_ids(CASES[::2]))
def test_need_dx_false_skips_dx_only(x_shape, w_shape, options, dtype):
    ndim = len(x_shape) - 2
    x, w, b = _inputs(x_shape, w_shape, dtype)
    out, cache = FORWARD[ndim](x, w, b, **options)
    dout = np.random.default_rng(2).standard_normal(out.shape).astype(dtype)
    dx, dw, db = BACKWARD[ndim](dout, cache)
    none, dw_only, db_only = BACKWARD[ndim](dout, cache, need_dx=False)
    assert none is None
    np.testing.assert_array_equal(dw_only, dw)
    np.testing.assert_array_equal(db_only, db)


# ---- transposed ------------------------------------------------------------------------

# (x shape, w shape (C, F // groups, *kernel), options)
T_CASES = [
    ((2, 3, 7), (3, 4, 4), dict(stride=3, padding=2, output_padding=2)),
    ((1, 1, 5), (1, 1, 3), dict()),
    ((2, 4, 5, 6), (4, 3, 3, 3), dict(stride=2, padding=1, output_padding=(1, 0), groups=2,
                                      dilation=(1, 2))),
    ((2, 4, 5, 6), (4, 3, 3, 3), dict(padding=1, output_padding=1, groups=2, dilation=2)),
    ((2, 3, 4, 5), (3, 2, 4, 4), dict(stride=2, padding=1)),            # a U-Net/DCGAN upsampler
    ((1, 6, 4, 4), (6, 1, 3, 3), dict(stride=2, padding=1, groups=6, output_padding=1)),
    ((2, 16, 6, 6), (16, 16, 3, 3), dict(padding=1)),                    # 3x3 stride 1: Winograd
    ((2, 4, 5, 3, 6), (4, 2, 2, 3, 3), dict(stride=(2, 1, 3), padding=(0, 1, 1),
                                            output_padding=(1, 0, 2))),
]


def _t_filters(w_shape, options):
    return w_shape[1] * options.get("groups", 1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape, w_shape, options", T_CASES, ids=_ids(T_CASES))
def test_transposed_compiled_matches_reference(x_shape, w_shape, options, dtype):
    ndim = len(x_shape) - 2
    x, w, b = _inputs(x_shape, w_shape, dtype, filters=_t_filters(w_shape, options))
    out, cache = T_FORWARD[ndim](x, w, b, **options, backend="cython")
    expected, ref_cache = T_REF_FORWARD[ndim](x, w, b, **options)
    tolerance = 1e-4 if dtype == np.float32 and "winograd" in cache.algorithm else None
    assert_close(out, expected, tolerance)
    dout = np.random.default_rng(1).standard_normal(out.shape).astype(dtype)
    for g, e in zip(T_BACKWARD[ndim](dout, cache), T_REF_BACKWARD[ndim](dout, ref_cache)):
        assert_close(g, e, tolerance)


@pytest.mark.parametrize("x_shape, w_shape, options", T_CASES[:6], ids=_ids(T_CASES[:6]))
@pytest.mark.parametrize("backend", ["cython", "reference"])
def test_transposed_gradients_match_numerical(x_shape, w_shape, options, backend):
    ndim = len(x_shape) - 2
    x, w, b = _inputs(x_shape, w_shape, np.float64, seed=5, filters=_t_filters(w_shape, options))
    out, cache = T_FORWARD[ndim](x, w, b, **options, backend=backend)
    dout = np.random.default_rng(6).standard_normal(out.shape)
    dx, dw, db = T_BACKWARD[ndim](dout, cache)
    forward = lambda **changed: T_FORWARD[ndim](  # noqa: E731
        changed.get("x", x), changed.get("w", w), changed.get("b", b), **options,
        backend=backend)[0]
    assert_close(dx, numerical_gradient(lambda v: forward(x=v), x.copy(), dout), 1e-7)
    assert_close(dw, numerical_gradient(lambda v: forward(w=v), w.copy(), dout), 1e-7)
    assert_close(db, numerical_gradient(lambda v: forward(b=v), b.copy(), dout), 1e-7)


def test_transposed_is_the_adjoint_of_conv():
    """<conv(x), y> == <x, conv_transpose(y)> for the same weights and window."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 4, 9, 8))
    w = rng.standard_normal((6, 2, 3, 3))
    out, _ = fastconv.conv2d_forward(x, w, None, 2, 1, dilation=(1, 2), groups=2)
    y = rng.standard_normal(out.shape)
    # the transposed conv maps out's shape back to x's: output_padding restores the rows the
    # stride dropped
    back, _ = fastconv.conv_transpose2d_forward(y, w, None, 2, 1, (0, 1), dilation=(1, 2), groups=2)
    assert back.shape == x.shape
    np.testing.assert_allclose(np.vdot(out, y), np.vdot(x, back), rtol=1e-12)


def test_transposed_output_size_formula():
    for size, kernel, stride, padding, extra, dilation in [(5, 3, 2, 1, 1, 1), (4, 4, 2, 1, 0, 1),
                                                           (7, 3, 1, 0, 1, 2), (3, 1, 3, 0, 2, 1)]:
        x = np.zeros((1, 2, size))
        w = np.zeros((2, 3, kernel))
        out, _ = fastconv.conv_transpose1d_forward(x, w, None, stride, padding, extra,
                                                   dilation=dilation)
        assert out.shape == (1, 3, (size - 1) * stride - 2 * padding + dilation * (kernel - 1)
                             + extra + 1)


def test_transposed_and_conv_caches_do_not_mix():
    x, w, b = _inputs((1, 2, 6, 6), (2, 2, 3, 3), np.float64)
    out, conv_cache = fastconv.conv2d_forward(x, w, b)
    t_out, t_cache = fastconv.conv_transpose2d_forward(x, w, b)
    with pytest.raises(TypeError, match="cache must be the ConvTransposeCache"):
        fastconv.conv_transpose2d_backward(np.ones_like(t_out), conv_cache)
    with pytest.raises(TypeError, match="cache"):
        fastconv.conv2d_backward(np.ones_like(out), t_cache)


# ---- against PyTorch ---------------------------------------------------------------------

def _torch_tolerance(dtype):
    return 2e-4 if dtype == np.float32 else 1e-10


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape, w_shape, options", CASES, ids=_ids(CASES))
def test_agrees_with_pytorch(x_shape, w_shape, options, dtype):
    torch = pytest.importorskip("torch")
    ndim = len(x_shape) - 2
    options = dict(options)
    if options.get("padding") == "same" and options.get("stride", 1) != 1:
        pytest.skip("PyTorch has padding='same' at stride 1 only")
    x, w, b = _inputs(x_shape, w_shape, dtype)
    out, cache = FORWARD[ndim](x, w, b, **options)
    dout = np.random.default_rng(1).standard_normal(out.shape).astype(dtype)
    dx, dw, db = BACKWARD[ndim](dout, cache)
    padding = options.pop("padding", 0)
    if isinstance(padding, tuple) and len(padding) == 2 * ndim:
        # per-side padding: pad x explicitly in PyTorch (F.pad takes the last axis first)
        sides = sum(((padding[2 * a], padding[2 * a + 1]) for a in reversed(range(ndim))), ())
        mode = options.get("padding_mode", "zeros")
        tx = torch.tensor(x, requires_grad=True)
        padded = torch.nn.functional.pad(tx, sides, mode="constant" if mode == "zeros" else mode)
        module_padding, module_mode = 0, "zeros"
    else:
        tx = torch.tensor(x, requires_grad=True)
        padded = tx
        module_padding, module_mode = padding, options.get("padding_mode", "zeros")
    module = getattr(torch.nn, f"Conv{ndim}d")(
        x_shape[1], w_shape[0], w_shape[2:], stride=options.get("stride", 1),
        padding=module_padding, dilation=options.get("dilation", 1),
        groups=options.get("groups", 1), padding_mode=module_mode,
        dtype=torch.float32 if dtype == np.float32 else torch.float64)
    with torch.no_grad():
        module.weight.copy_(torch.tensor(w))
        module.bias.copy_(torch.tensor(b))
    expected = module(padded)
    expected.backward(torch.tensor(dout))
    tolerance = _torch_tolerance(dtype)
    assert_close(out, expected.detach().numpy(), tolerance)
    assert_close(dx, tx.grad.numpy(), tolerance)
    assert_close(dw, module.weight.grad.numpy(), tolerance)
    assert_close(db, module.bias.grad.numpy(), tolerance)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape, w_shape, options", T_CASES, ids=_ids(T_CASES))
def test_transposed_agrees_with_pytorch(x_shape, w_shape, options, dtype):
    torch = pytest.importorskip("torch")
    ndim = len(x_shape) - 2
    filters = _t_filters(w_shape, options)
    x, w, b = _inputs(x_shape, w_shape, dtype, filters=filters)
    out, cache = T_FORWARD[ndim](x, w, b, **options)
    dout = np.random.default_rng(1).standard_normal(out.shape).astype(dtype)
    dx, dw, db = T_BACKWARD[ndim](dout, cache)
    module = getattr(torch.nn, f"ConvTranspose{ndim}d")(
        x_shape[1], filters, w_shape[2:], stride=options.get("stride", 1),
        padding=options.get("padding", 0), output_padding=options.get("output_padding", 0),
        groups=options.get("groups", 1), dilation=options.get("dilation", 1),
        dtype=torch.float32 if dtype == np.float32 else torch.float64)
    with torch.no_grad():
        module.weight.copy_(torch.tensor(w))
        module.bias.copy_(torch.tensor(b))
    tx = torch.tensor(x, requires_grad=True)
    expected = module(tx)
    expected.backward(torch.tensor(dout))
    tolerance = _torch_tolerance(dtype)
    assert_close(out, expected.detach().numpy(), tolerance)
    assert_close(dx, tx.grad.numpy(), tolerance)
    assert_close(dw, module.weight.grad.numpy(), tolerance)
    assert_close(db, module.bias.grad.numpy(), tolerance)
