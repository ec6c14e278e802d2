"""Conv2d, MaxPool2d, AvgPool2d layers: against the functional API, gradients, initialisation, errors."""
import numpy as np
import pytest

import fastconv
from fastconv import layers
from fastconv.layers import AvgPool2d, Conv2d, Layer, MaxPool2d

from _helpers import assert_close, numerical_gradient, rel_error

DTYPES = (np.float32, np.float64)
BACKENDS = ("cython", "reference")

# (in_channels, out_channels, kernel_size, stride, padding, x shape)
CONV_CASES = [
    (3, 4, 3, 1, 1, (2, 3, 7, 8)),
    (2, 5, (2, 3), (1, 2), (0, 1), (2, 2, 9, 7)),   # non-square kernel, h/w strides and pads differ
    (1, 1, 1, 1, 0, (1, 1, 5, 5)),                  # 1x1, N=1, C=1, F=1
    (4, 3, (3, 1), (2, 1), (1, 0), (3, 4, 10, 1)),  # width-1 input
    (2, 2, 5, 3, 2, (1, 2, 11, 13)),                # window does not tile the input
]

# (kernel_size, stride, padding, x shape)
POOL_CASES = [
    (2, None, 0, (2, 3, 8, 8)),           # the usual 2x2 / 2
    ((2, 3), (1, 2), 0, (2, 2, 7, 9)),    # non-square, overlapping in h
    (3, 1, 1, (1, 1, 5, 6)),              # overlapping with padding, N=1, C=1
    ((3, 2), (2, 1), (1, 0), (3, 2, 9, 4)),
    (3, 2, 0, (2, 3, 8, 7)),              # window does not tile the input
]


def randn(shape, dtype, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# --- Conv2d: construction and initialisation --------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_parameters_shapes_dtypes_and_zero_bias(dtype):
    layer = Conv2d(3, 8, (5, 2), dtype=dtype, rng=0)
    assert isinstance(layer, Layer)
    assert set(layer.params) == {"weight", "bias"}
    assert layer.params["weight"].shape == (8, 3, 5, 2)
    assert layer.params["bias"].shape == (8,)
    assert layer.params["weight"].dtype == dtype and layer.params["bias"].dtype == dtype
    assert layer.params["weight"].flags.c_contiguous
    assert np.all(layer.params["bias"] == 0)
    assert layer.grads == {}


def test_conv2d_without_bias_has_only_weight():
    layer = Conv2d(2, 3, 3, bias=False, rng=0)
    assert set(layer.params) == {"weight"}
    out = layer.forward(randn((1, 2, 4, 4), np.float32, 1))
    layer.backward(np.ones_like(out))
    assert set(layer.grads) == {"weight"}


def test_conv2d_he_initialisation_scale():
    # fan_in = 16 * 3 * 3 = 144, so std sqrt(2 / 144); 64*16*9 = 9216 samples: ~1% sampling error
    layer = Conv2d(16, 64, 3, dtype=np.float64, rng=0)
    weight = layer.params["weight"]
    assert abs(weight.std() / np.sqrt(2.0 / 144) - 1) < 0.03
    assert abs(weight.mean()) < 0.01
    nonsquare = Conv2d(4, 200, (1, 5), dtype=np.float64, rng=1).params["weight"]
    assert abs(nonsquare.std() / np.sqrt(2.0 / 20) - 1) < 0.05


def test_conv2d_weight_scale_overrides_he():
    weight = Conv2d(8, 64, 3, dtype=np.float64, rng=0, weight_scale=1e-3).params["weight"]
    assert abs(weight.std() / 1e-3 - 1) < 0.05
    assert np.all(Conv2d(2, 2, 2, rng=0, weight_scale=0).params["weight"] == 0)


def test_conv2d_seeded_by_numpy_global_generator():
    np.random.seed(123)
    first = Conv2d(3, 4, 3).params["weight"]
    np.random.seed(123)
    second = Conv2d(3, 4, 3).params["weight"]
    third = Conv2d(3, 4, 3).params["weight"]  # the global state moved on
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(second, third)
    np.random.seed(123)
    expected = (np.random.randn(4, 3, 3, 3) * np.sqrt(2.0 / 27)).astype(np.float32)
    np.testing.assert_array_equal(first, expected)


def test_conv2d_seeded_by_passed_rng():
    scale = np.sqrt(2.0 / 12)
    expected = np.random.default_rng(7).standard_normal((5, 3, 2, 2)) * scale
    from_generator = Conv2d(3, 5, 2, dtype=np.float64, rng=np.random.default_rng(7))
    from_seed = Conv2d(3, 5, 2, dtype=np.float64, rng=7)
    np.testing.assert_array_equal(from_generator.params["weight"], expected)
    np.testing.assert_array_equal(from_seed.params["weight"], expected)
    legacy = np.random.RandomState(7).standard_normal((5, 3, 2, 2)) * scale
    from_state = Conv2d(3, 5, 2, dtype=np.float64, rng=np.random.RandomState(7))
    np.testing.assert_array_equal(from_state.params["weight"], legacy)
    # a passed rng leaves NumPy's global state alone
    np.random.seed(5)
    before = np.random.get_state()[1].copy()
    Conv2d(3, 5, 2, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(np.random.get_state()[1], before)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(in_channels=0), ValueError, "in_channels must be >= 1"),
    (dict(in_channels=2.0), TypeError, "in_channels must be an int"),
    (dict(out_channels=True), TypeError, "out_channels must be an int"),
    (dict(kernel_size=(0, 3)), ValueError, "kernel_size must be >= 1"),
    (dict(kernel_size=(3, 3, 3)), ValueError, "kernel_size must be an int or a .height, width. pair"),
    (dict(kernel_size=2.5), TypeError, "kernel_size must be an int"),
    (dict(stride=0), ValueError, "stride must be >= 1"),
    (dict(padding=-1), ValueError, "padding must be >= 0"),
    (dict(dtype=np.int32), TypeError, "dtype must be float32 or float64"),
    (dict(dtype=None), TypeError, "dtype must be float32 or float64"),
    (dict(dtype="not a dtype"), TypeError, "dtype must be float32 or float64"),
    (dict(rng="seed"), TypeError, "rng must be None"),
    (dict(weight_scale=-1.0), ValueError, "weight_scale must be None or a number >= 0"),
    (dict(backend="gpu"), ValueError, "valid names are: auto, cython, reference"),
])
def test_conv2d_bad_constructor_arguments(kwargs, error, match):
    arguments = dict(in_channels=3, out_channels=4, kernel_size=3)
    arguments.update(kwargs)
    with pytest.raises(error, match=match):
        Conv2d(**arguments)


def test_conv2d_repr():
    layer = Conv2d(3, 16, (3, 5), stride=(1, 2), padding=1, bias=False, dtype=np.float64, rng=0)
    assert repr(layer) == (
        "Conv2d(3, 16, kernel_size=(3, 5), stride=(1, 2), padding=(1, 1), bias=False, "
        "dtype=np.float64)"
    )


# --- Conv2d: against the functional API -------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_matches_functional_api(case, dtype, backend):
    in_channels, out_channels, kernel_size, stride, padding, x_shape = case
    layer = Conv2d(in_channels, out_channels, kernel_size, stride, padding, dtype=dtype, rng=0,
                   backend=backend)
    layer.params["bias"][...] = randn(out_channels, dtype, 3)  # a non-zero bias is tested too
    x = randn(x_shape, dtype, 1)
    out = layer.forward(x)
    expected, cache = fastconv.conv2d_forward(
        x, layer.params["weight"], layer.params["bias"], stride, padding, backend=backend
    )
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == dtype
    dout = randn(out.shape, dtype, 2)
    dx = layer.backward(dout)
    expected_dx, expected_dw, expected_db = fastconv.conv2d_backward(dout, cache)
    np.testing.assert_array_equal(dx, expected_dx)
    np.testing.assert_array_equal(layer.grads["weight"], expected_dw)
    np.testing.assert_array_equal(layer.grads["bias"], expected_db)
    assert dx.dtype == dtype and layer.grads["weight"].dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_backends_agree(dtype):
    x = randn((2, 3, 9, 8), dtype, 0)
    fast = Conv2d(3, 4, (3, 2), (2, 1), (1, 0), dtype=dtype, rng=5, backend="cython")
    slow = Conv2d(3, 4, (3, 2), (2, 1), (1, 0), dtype=dtype, rng=5, backend="reference")
    assert_close(fast.forward(x), slow.forward(x))
    dout = randn(fast.forward(x).shape, dtype, 1)
    assert_close(fast.backward(dout), slow.backward(dout))
    for name in ("weight", "bias"):
        assert_close(fast.grads[name], slow.grads[name])


def test_conv2d_without_bias_matches_functional_api_without_bias():
    layer = Conv2d(2, 3, (2, 3), padding=(1, 0), bias=False, dtype=np.float64, rng=0)
    x = randn((2, 2, 5, 6), np.float64, 1)
    out = layer.forward(x)
    expected, cache = fastconv.conv2d_forward(x, layer.params["weight"], None, 1, (1, 0))
    np.testing.assert_array_equal(out, expected)
    dout = randn(out.shape, np.float64, 2)
    dx = layer.backward(dout)
    expected_dx, expected_dw, expected_db = fastconv.conv2d_backward(dout, cache)
    assert expected_db is None
    np.testing.assert_array_equal(dx, expected_dx)
    np.testing.assert_array_equal(layer.grads["weight"], expected_dw)


def test_conv2d_numerical_gradients_float64():
    layer = Conv2d(2, 3, (3, 2), stride=(2, 1), padding=(1, 1), dtype=np.float64, rng=0)
    layer.params["bias"][...] = randn(3, np.float64, 4)
    x = randn((2, 2, 5, 4), np.float64, 1)
    dout = randn(layer.forward(x).shape, np.float64, 2)
    layer.forward(x)
    dx = layer.backward(dout)
    weight, bias = layer.params["weight"], layer.params["bias"]
    # forward reads the parameter arrays on every call, so perturbing them in place works
    assert rel_error(dx, numerical_gradient(layer.forward, x, dout)) < 1e-8
    assert rel_error(layer.grads["weight"],
                     numerical_gradient(lambda _: layer.forward(x), weight, dout)) < 1e-8
    assert rel_error(layer.grads["bias"],
                     numerical_gradient(lambda _: layer.forward(x), bias, dout)) < 1e-8


def test_conv2d_grads_are_replaced_not_accumulated():
    layer = Conv2d(2, 2, 3, dtype=np.float64, rng=0)
    x = randn((1, 2, 5, 5), np.float64, 1)
    dout = randn(layer.forward(x).shape, np.float64, 2)
    layer.backward(dout)
    first = layer.grads["weight"].copy()
    layer.backward(dout)  # the same forward may be back-propagated again
    np.testing.assert_array_equal(layer.grads["weight"], first)


def test_conv2d_sees_in_place_parameter_updates():
    layer = Conv2d(1, 1, 1, bias=True, dtype=np.float64, rng=0)
    layer.params["weight"][...] = 2.0
    layer.params["bias"][...] = 1.0
    x = randn((1, 1, 3, 3), np.float64, 1)
    np.testing.assert_array_equal(layer.forward(x), 2.0 * x + 1.0)


def test_conv2d_never_writes_inputs():
    layer = Conv2d(3, 2, 3, padding=1, rng=0)
    x = randn((2, 3, 4, 4), np.float32, 1)
    x.flags.writeable = False
    out = layer(x)  # __call__ is forward
    dout = randn(out.shape, np.float32, 2)
    dout.flags.writeable = False
    saved_x, saved_dout = x.copy(), dout.copy()
    layer.backward(dout)
    np.testing.assert_array_equal(x, saved_x)
    np.testing.assert_array_equal(dout, saved_dout)


@pytest.mark.parametrize("layout", ["F", "strided"])
def test_conv2d_any_memory_layout(layout):
    layer = Conv2d(3, 2, (2, 3), rng=0)
    x = randn((2, 3, 6, 5), np.float32, 1)
    other = np.asfortranarray(x) if layout == "F" else np.repeat(x, 2, axis=3)[..., ::2]
    np.testing.assert_array_equal(other, x)
    np.testing.assert_array_equal(layer.forward(other), layer.forward(x))


# --- Conv2d: errors ---------------------------------------------------------------------------

@pytest.mark.parametrize("layer_dtype, x_dtype", [(np.float32, np.float64), (np.float64, np.float32)])
def test_conv2d_input_of_other_dtype_is_type_error(layer_dtype, x_dtype):
    layer = Conv2d(3, 2, 3, dtype=layer_dtype, rng=0)
    x = randn((1, 3, 5, 5), x_dtype, 0)
    with pytest.raises(TypeError) as error:
        layer.forward(x)
    message = str(error.value)
    assert np.dtype(layer_dtype).name in message and np.dtype(x_dtype).name in message
    assert "astype" in message and "dtype=" in message


@pytest.mark.parametrize("x, error, match", [
    (np.zeros((1, 3, 5, 5), dtype=np.int64), TypeError, "dtype float32 or float64"),
    ([[[[0.0]]]], TypeError, "numpy.ndarray"),
    (np.zeros((3, 5, 5), dtype=np.float32), ValueError, "4-D"),
    (np.zeros((1, 2, 5, 5), dtype=np.float32), ValueError, r"Conv2d expects x of shape \(N, 3, H, W\)"),
    (np.zeros((1, 3, 2, 5), dtype=np.float32), ValueError, "larger than the padded input"),
])
def test_conv2d_bad_input(x, error, match):
    with pytest.raises(error, match=match):
        Conv2d(3, 2, 3, rng=0).forward(x)


def test_conv2d_backward_before_forward():
    with pytest.raises(RuntimeError, match="Conv2d.backward called before forward"):
        Conv2d(3, 2, 3, rng=0).backward(np.zeros((1, 2, 3, 3), dtype=np.float32))


def test_conv2d_backward_wrong_shape_or_dtype():
    layer = Conv2d(3, 2, 3, rng=0)
    out = layer.forward(randn((2, 3, 5, 5), np.float32, 0))
    with pytest.raises(ValueError, match=r"forward output's shape \(2, 2, 3, 3\), got \(2, 2, 3, 4\)"):
        layer.backward(np.zeros((2, 2, 3, 4), dtype=np.float32))
    with pytest.raises(TypeError, match="forward output's dtype float32, got float64"):
        layer.backward(np.zeros(out.shape))
    assert layer.grads == {}  # a failed backward fills nothing


# --- pooling layers ---------------------------------------------------------------------------

POOLS = [
    (MaxPool2d, fastconv.max_pool2d_forward, fastconv.max_pool2d_backward),
    (AvgPool2d, fastconv.avg_pool2d_forward, fastconv.avg_pool2d_backward),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOL_CASES)
@pytest.mark.parametrize("layer_type, forward, backward", POOLS)
def test_pool_layer_matches_functional_api(layer_type, forward, backward, case, dtype, backend):
    kernel_size, stride, padding, x_shape = case
    layer = layer_type(kernel_size, stride, padding, backend=backend)
    x = randn(x_shape, dtype, 1)
    out = layer.forward(x)
    expected, cache = forward(x, kernel_size, stride, padding, backend=backend)
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == dtype
    dout = randn(out.shape, dtype, 2)
    dx = layer.backward(dout)
    np.testing.assert_array_equal(dx, backward(dout, cache))
    assert dx.shape == x_shape and dx.dtype == dtype
    assert layer.params == {} and layer.grads == {}


@pytest.mark.parametrize("layer_type", [MaxPool2d, AvgPool2d])
def test_pool_layer_numerical_gradient_float64(layer_type):
    layer = layer_type((3, 2), stride=(2, 1), padding=(1, 0))
    x = randn((2, 2, 7, 5), np.float64, 3)
    dout = randn(layer.forward(x).shape, np.float64, 4)
    layer.forward(x)
    dx = layer.backward(dout)
    assert rel_error(dx, numerical_gradient(layer.forward, x, dout)) < 1e-8


def test_pool_layer_stride_defaults_to_kernel_size():
    layer = MaxPool2d((2, 3))
    assert layer.stride == (2, 3)
    assert layer.forward(randn((1, 1, 6, 9), np.float32, 0)).shape == (1, 1, 3, 3)
    assert repr(layer) == "MaxPool2d(kernel_size=(2, 3), stride=(2, 3), padding=(0, 0))"
    assert repr(AvgPool2d(3, 1, 1)) == "AvgPool2d(kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))"


def test_avg_pool_layer_values():
    x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
    out = AvgPool2d(2).forward(x)
    np.testing.assert_array_equal(out[0, 0], [[2.5, 4.5], [10.5, 12.5]])
    np.testing.assert_array_equal(MaxPool2d(2).forward(x)[0, 0], [[5, 7], [13, 15]])


@pytest.mark.parametrize("layer_type", [MaxPool2d, AvgPool2d])
@pytest.mark.parametrize("args, kwargs, error, match", [
    ((0,), {}, ValueError, "kernel_size must be >= 1"),
    ((2.0,), {}, TypeError, "kernel_size must be an int"),
    ((2, 0), {}, ValueError, "stride must be >= 1"),
    ((2, None, -1), {}, ValueError, "padding must be >= 0"),
    ((2,), {"backend": "gpu"}, ValueError, "valid names are"),
])
def test_pool_layer_bad_constructor_arguments(layer_type, args, kwargs, error, match):
    with pytest.raises(error, match=match):
        layer_type(*args, **kwargs)


@pytest.mark.parametrize("layer_type", [MaxPool2d, AvgPool2d])
def test_pool_layer_errors(layer_type):
    layer = layer_type(2)
    with pytest.raises(RuntimeError, match=f"{layer_type.__name__}.backward called before forward"):
        layer.backward(np.zeros((1, 1, 2, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="padding .* must be at most half of kernel_size"):
        layer_type(2, 1, 2).forward(np.zeros((1, 1, 4, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="4-D"):
        layer.forward(np.zeros((4, 4), dtype=np.float32))
    out = layer.forward(randn((2, 3, 4, 6), np.float32, 0))
    with pytest.raises(ValueError, match=r"forward output's shape \(2, 3, 2, 3\)"):
        layer.backward(np.zeros((2, 3, 3, 2), dtype=np.float32))
    with pytest.raises(TypeError, match="dtype float32"):
        layer.backward(np.zeros(out.shape, dtype=np.float64))


# --- layers composed --------------------------------------------------------------------------

def test_conv_then_pool_chain_gradient_float64():
    conv = Conv2d(2, 3, 3, padding=1, dtype=np.float64, rng=0)
    pool = MaxPool2d(2, stride=1)
    x = randn((2, 2, 5, 4), np.float64, 1)

    def forward(inputs):
        return pool.forward(conv.forward(inputs))

    dout = randn(forward(x).shape, np.float64, 2)
    forward(x)
    dx = conv.backward(pool.backward(dout))
    assert rel_error(dx, numerical_gradient(forward, x, dout)) < 1e-8


# ---- convolution kinds as layers ---------------------------------------------------------

KIND_LAYERS = [
    (layers.Conv1d, dict(in_channels=4, out_channels=6, kernel_size=5, stride=2, padding="same",
                         dilation=2, groups=2, padding_mode="reflect"), (2, 4, 19)),
    (layers.Conv2d, dict(in_channels=6, out_channels=12, kernel_size=3, padding=1, groups=6),
     (2, 6, 7, 8)),
    (layers.Conv2d, dict(in_channels=3, out_channels=4, kernel_size=(3, 2), padding=(1, 0, 2, 1),
                         dilation=(2, 1), padding_mode="circular"), (1, 3, 6, 5)),
    (layers.Conv3d, dict(in_channels=2, out_channels=3, kernel_size=(2, 3, 3), stride=(1, 2, 2),
                         padding=1), (2, 2, 4, 7, 6)),
    (layers.ConvTranspose1d, dict(in_channels=3, out_channels=4, kernel_size=4, stride=2,
                                  padding=1), (2, 3, 9)),
    (layers.ConvTranspose2d, dict(in_channels=4, out_channels=6, kernel_size=3, stride=2,
                                  padding=1, output_padding=1, groups=2), (2, 4, 5, 6)),
    (layers.ConvTranspose3d, dict(in_channels=2, out_channels=2, kernel_size=2, stride=2),
     (1, 2, 3, 3, 4)),
]


@pytest.mark.parametrize("layer_type, options, x_shape", KIND_LAYERS,
                         ids=[f"{t.__name__}-{i}" for i, (t, _, _) in enumerate(KIND_LAYERS)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_kind_layers_match_their_functional_ops(layer_type, options, x_shape, dtype):
    layer = layer_type(**options, dtype=dtype, rng=0)
    transposed = layer_type.__name__.startswith("ConvTranspose")
    ndim = len(x_shape) - 2
    weight = layer.params["weight"]
    groups = options.get("groups", 1)
    kernel = layer.kernel_size
    if transposed:
        assert weight.shape == (options["in_channels"], options["out_channels"] // groups) + kernel
    else:
        assert weight.shape == (options["out_channels"], options["in_channels"] // groups) + kernel
    assert weight.dtype == dtype and layer.params["bias"].dtype == dtype
    x = np.random.default_rng(1).standard_normal(x_shape).astype(dtype)
    out = layer.forward(x)
    name = f"conv{'_transpose' if transposed else ''}{ndim}d"
    functional = {k: v for k, v in options.items()
                  if k in ("stride", "padding", "dilation", "groups", "padding_mode", "output_padding")}
    expected, cache = getattr(fastconv, f"{name}_forward")(x, weight, layer.params["bias"], **functional)
    np.testing.assert_array_equal(out, expected)
    dout = np.random.default_rng(2).standard_normal(out.shape).astype(dtype)
    dx = layer.backward(dout)
    want = getattr(fastconv, f"{name}_backward")(dout, cache)
    np.testing.assert_array_equal(dx, want[0])
    np.testing.assert_array_equal(layer.grads["weight"], want[1])
    np.testing.assert_array_equal(layer.grads["bias"], want[2])
    assert layer.backward(dout, need_dx=False) is None
    np.testing.assert_array_equal(layer.grads["weight"], want[1])


def test_conv_layers_use_he_initialisation_by_fan_in():
    for layer in (layers.Conv1d(8, 64, 5, rng=0, dtype=np.float64),
                  layers.Conv2d(32, 64, 3, groups=8, rng=0, dtype=np.float64),
                  layers.Conv3d(4, 64, (3, 3, 2), rng=0, dtype=np.float64),
                  layers.ConvTranspose2d(16, 64, 4, groups=4, rng=0, dtype=np.float64)):
        fan_in = layer.in_channels // layer.groups * int(np.prod(layer.kernel_size))
        std = float(layer.params["weight"].std())
        assert abs(std / np.sqrt(2.0 / fan_in) - 1) < 0.1, (layer, std)


@pytest.mark.parametrize("build, message", [
    (lambda: layers.Conv2d(6, 4, 3, groups=4), r"groups \(4\) must divide both in_channels \(6\)"),
    (lambda: layers.Conv1d(4, 4, 3, dilation=0), r"dilation must be >= 1"),
    (lambda: layers.Conv3d(4, 4, (3, 3)), r"kernel_size must be an int or a \(depth, height, width\) triple"),
    (lambda: layers.Conv2d(4, 4, 3, padding="full"), r"padding must be an int, a tuple of ints, 'same' or 'valid'"),
    (lambda: layers.Conv2d(4, 4, 3, padding_mode="mirror"), r"padding_mode must be one of"),
    (lambda: layers.ConvTranspose2d(4, 4, 3, padding_mode="reflect"), r"zeros only"),
    (lambda: layers.Conv2d(4, 4, 3, output_padding=1), r"output_padding applies to transposed"),
    (lambda: layers.Conv1d(4, 4, 3, groups=0), r"groups must be >= 1"),
])
def test_conv_kind_layers_reject_bad_arguments(build, message):
    with pytest.raises((ValueError, TypeError), match=message):
        build()


def test_conv1d_layer_checks_its_input_rank():
    layer = layers.Conv1d(3, 4, 3)
    with pytest.raises(ValueError, match=r"Conv1d input x must be 3-D with shape \(N, 3, L\)"):
        layer.forward(np.zeros((2, 3, 5, 5), np.float32))
