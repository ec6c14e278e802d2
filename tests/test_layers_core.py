"""Linear, ReLU, LeakyReLU, Flatten, Dropout, BatchNorm2d, Sequential: values, gradient checks
(float64), train/eval behaviour, dtypes, layouts, and bad input."""
import numpy as np
import pytest

from fastconv.gradcheck import numerical_gradient_array, rel_error
from fastconv.layers import BatchNorm2d, Dropout, Flatten, LeakyReLU, Linear, ReLU, Sequential
from fastconv.optim import SGD

from _helpers import LAYOUTS, with_layout

F64 = np.float64


def _randn(shape, seed=0, dtype=F64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _away_from_zero(shape, seed=0, dtype=F64):
    """Random values with |v| >= 0.1, so centred differences never straddle a ReLU kink."""
    x = _randn(shape, seed, dtype)
    return np.where(x >= 0, x + 0.1, x - 0.1).astype(dtype)


def _check_gradients(layer, x, seed=1, before_each=lambda: None):
    """Compare backward's dx and every parameter gradient with centred differences."""
    before_each()
    out = layer.forward(x)
    dout = _randn(out.shape, seed)
    dx = layer.backward(dout)
    analytic = {name: grad.copy() for name, grad in layer.grads.items()}

    def run(_):
        before_each()
        return layer.forward(x)

    assert rel_error(dx, numerical_gradient_array(run, x, dout)) < 1e-7
    assert set(analytic) == set(layer.params)
    for name, param in layer.params.items():
        assert rel_error(analytic[name], numerical_gradient_array(run, param, dout)) < 1e-7, name


def _all_layers(dtype):
    return [
        Linear(6, 4, dtype=dtype, rng=0),
        ReLU(),
        LeakyReLU(0.1),
        Flatten(),
        Dropout(0.3, rng=0),
        BatchNorm2d(3, dtype=dtype),
    ]


def _input_for(layer, dtype, seed=0):
    shape = (5, 6) if isinstance(layer, Linear) else (4, 3, 2, 5)
    return _randn(shape, seed, dtype)


# --- the shared contract ---------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("index", range(6))
def test_dtype_is_kept_and_inputs_are_not_written(index, dtype):
    layer = _all_layers(dtype)[index]
    x = _input_for(layer, dtype)
    x.flags.writeable = False  # any write into x raises
    x_before = x.copy()
    out = layer.forward(x)
    assert out.dtype == dtype
    dout = _randn(out.shape, 2, dtype)
    dout.flags.writeable = False
    dx = layer.backward(dout)
    assert dx.dtype == dtype and dx.shape == x.shape
    assert np.array_equal(x, x_before)
    for name, grad in layer.grads.items():
        assert grad.dtype == dtype and grad.shape == layer.params[name].shape


@pytest.mark.parametrize("index", range(6))
def test_backward_before_forward_is_a_runtime_error(index):
    layer = _all_layers(np.float32)[index]
    with pytest.raises(RuntimeError, match="backward called before forward"):
        layer.backward(np.zeros((5, 4), np.float32))


@pytest.mark.parametrize("index", range(6))
def test_bad_dout(index):
    layer = _all_layers(np.float32)[index]
    out = layer.forward(_input_for(layer, np.float32))
    with pytest.raises(ValueError, match="forward output's shape"):
        layer.backward(np.zeros(out.shape + (1,), np.float32))
    with pytest.raises(TypeError, match="forward output's dtype float32, got float64"):
        layer.backward(np.zeros(out.shape, np.float64))
    with pytest.raises(TypeError, match="dout must be a numpy.ndarray"):
        layer.backward(out.tolist())


@pytest.mark.parametrize("index", range(6))
def test_non_float_input_is_a_type_error(index):
    layer = _all_layers(np.float32)[index]
    with pytest.raises(TypeError, match=f"{type(layer).__name__} input x must have dtype float32 or float64"):
        layer.forward(np.zeros((4, 3, 2, 5) if not isinstance(layer, Linear) else (5, 6), np.int32))
    with pytest.raises(TypeError, match="must be a numpy.ndarray"):
        layer.forward([[1.0, 2.0]])


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("index", range(6))
def test_every_memory_layout_gives_the_same_result(index, layout):
    layer = _all_layers(np.float64)[index]
    x = _input_for(layer, np.float64)
    layer.eval()  # deterministic Dropout, and BatchNorm2d's running statistics stay put
    expected = layer.forward(x).copy()
    dout = _randn(expected.shape, 3)
    expected_dx = layer.backward(dout).copy()
    assert np.array_equal(layer.forward(with_layout(x, layout)), expected)
    assert np.array_equal(layer.backward(with_layout(dout, layout)), expected_dx)


@pytest.mark.parametrize("make", [
    lambda: Linear(6, 4, dtype=np.float32),
    lambda: BatchNorm2d(3, dtype=np.float32),
])
def test_parameter_dtype_mismatch_is_a_type_error(make):
    layer = make()
    x = np.zeros((5, 6) if isinstance(layer, Linear) else (4, 3, 2, 2), np.float64)
    with pytest.raises(TypeError, match="float32 parameters but input x is float64"):
        layer.forward(x)


@pytest.mark.parametrize("make", [
    lambda: Linear(2, 3, dtype=np.int32),
    lambda: BatchNorm2d(3, dtype="float16"),
    lambda: Linear(2, 3, dtype="nonsense"),
    lambda: Linear(2, 3, dtype=None),
])
def test_parameter_dtype_must_be_float32_or_float64(make):
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        make()


# --- Linear ----------------------------------------------------------------------------

def test_linear_forward_value_and_shapes():
    layer = Linear(6, 4, dtype=F64, rng=0)
    assert layer.params["weight"].shape == (4, 6) and layer.params["bias"].shape == (4,)
    layer.params["bias"][:] = [1, 2, 3, 4]
    x = _randn((5, 6))
    np.testing.assert_allclose(layer.forward(x), x @ layer.params["weight"].T + [1, 2, 3, 4], rtol=1e-13)


def test_linear_gradients():
    _check_gradients(Linear(7, 3, dtype=F64, rng=1), _randn((4, 7), 2))
    _check_gradients(Linear(7, 3, bias=False, dtype=F64, rng=1), _randn((1, 7), 2))


def test_linear_initialisation():
    layer = Linear(200, 300, rng=np.random.default_rng(5))
    assert layer.params["weight"].dtype == np.float32
    assert np.std(layer.params["weight"]) == pytest.approx(np.sqrt(2 / 200), rel=0.02)
    assert not layer.params["bias"].any()
    same = Linear(200, 300, rng=np.random.default_rng(5))
    assert np.array_equal(same.params["weight"], layer.params["weight"])
    small = Linear(200, 300, rng=5, weight_scale=1e-3)
    assert np.std(small.params["weight"]) == pytest.approx(1e-3, rel=0.02)
    assert "bias" not in Linear(2, 3, bias=False).params


def test_rng_none_follows_numpy_global_seed_and_random_state_is_accepted():
    np.random.seed(11)
    first = (Linear(4, 3).params["weight"], Dropout(0.5).forward(np.ones((6, 6))))
    np.random.seed(11)
    second = (Linear(4, 3).params["weight"], Dropout(0.5).forward(np.ones((6, 6))))
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    state = Linear(4, 3, rng=np.random.RandomState(2)).params["weight"]
    assert np.array_equal(state, Linear(4, 3, rng=np.random.RandomState(2)).params["weight"])
    assert Dropout(0.5, rng=np.random.RandomState(2)).forward(np.ones((4, 4))).shape == (4, 4)


def test_linear_bad_arguments():
    layer = Linear(6, 4)
    with pytest.raises(ValueError, match=r"Linear expects x of shape \(N, 6\), got \(5, 7\)"):
        layer.forward(np.zeros((5, 7), np.float32))
    with pytest.raises(ValueError, match=r"2-D.*got shape \(5, 2, 3\)"):
        layer.forward(np.zeros((5, 2, 3), np.float32))
    with pytest.raises(ValueError, match="in_features must be >= 1"):
        Linear(0, 3)
    with pytest.raises(TypeError, match="out_features must be an int"):
        Linear(3, 2.0)
    with pytest.raises(TypeError, match="rng must be"):
        Linear(3, 2, rng="seed")
    with pytest.raises(ValueError, match="weight_scale"):
        Linear(3, 2, weight_scale=-1.0)


# --- ReLU, LeakyReLU, Flatten ----------------------------------------------------------

def test_relu_values_and_gradient():
    x = np.array([[-2.0, -0.0, 0.0, 3.0]])
    layer = ReLU()
    np.testing.assert_array_equal(layer.forward(x), [[0, 0, 0, 3]])
    np.testing.assert_array_equal(layer.backward(np.array([[5.0, 5.0, 5.0, 5.0]])), [[0, 0, 0, 5]])
    _check_gradients(ReLU(), _away_from_zero((3, 4, 5)))


@pytest.mark.parametrize("layer", [ReLU(), LeakyReLU(0.1)])
def test_activations_keep_nan(layer):
    out = layer.forward(np.array([np.nan, 1.0, -1.0]))
    assert np.isnan(out[0]) and out[1] == 1.0


def test_leaky_relu_values_and_gradient():
    layer = LeakyReLU(alpha=0.2)
    np.testing.assert_allclose(layer.forward(np.array([-2.0, 3.0])), [-0.4, 3.0])
    np.testing.assert_allclose(layer.backward(np.array([1.0, 1.0])), [0.2, 1.0])
    _check_gradients(LeakyReLU(0.05), _away_from_zero((3, 4, 5), 4))
    assert LeakyReLU().alpha == 0.01
    with pytest.raises(ValueError, match="alpha"):
        LeakyReLU(-0.1)


def test_flatten_shapes_and_gradient():
    layer = Flatten()
    x = _randn((2, 3, 4, 5))
    out = layer.forward(x)
    assert out.shape == (2, 60)
    np.testing.assert_array_equal(out[1], x[1].ravel())
    assert layer.backward(out).shape == x.shape
    _check_gradients(Flatten(), _randn((3, 2, 2)))
    with pytest.raises(ValueError, match=r"at least 2 dimensions.*\(7,\)"):
        layer.forward(np.zeros(7))


# --- Dropout ---------------------------------------------------------------------------

def test_dropout_training_drops_and_rescales():
    layer = Dropout(p=0.25, rng=0)
    x = np.ones((200, 500), np.float32)
    out = layer.forward(x)
    dropped = np.mean(out == 0)
    assert dropped == pytest.approx(0.25, abs=0.005)
    np.testing.assert_allclose(out[out != 0], 1 / 0.75, rtol=1e-6)
    assert float(out.mean()) == pytest.approx(1.0, abs=0.01)  # the expectation is kept
    dx = layer.backward(np.ones_like(out))
    np.testing.assert_array_equal(dx, out)  # same mask in backward


def test_dropout_evaluation_is_the_identity():
    layer = Dropout(p=0.5, rng=0).eval()
    x = _randn((4, 5))
    assert layer.forward(x) is x
    dout = _randn((4, 5), 1)
    np.testing.assert_array_equal(layer.backward(dout), dout)
    layer.train()
    assert np.mean(layer.forward(x) == 0) > 0.2


def test_dropout_is_reproducible_with_a_seed_and_gradient_checks():
    first = Dropout(0.5, rng=np.random.default_rng(7)).forward(np.ones((10, 10)))
    second = Dropout(0.5, rng=np.random.default_rng(7)).forward(np.ones((10, 10)))
    assert np.array_equal(first, second)
    layer = Dropout(0.4)

    def same_mask():
        layer.rng = np.random.default_rng(3)

    _check_gradients(layer, _randn((3, 6)), before_each=same_mask)


def test_dropout_p_zero_keeps_everything():
    x = _randn((3, 4))
    np.testing.assert_array_equal(Dropout(0.0).forward(x), x)


@pytest.mark.parametrize("p", [1.0, -0.1, 2, True])
def test_dropout_bad_p(p):
    with pytest.raises(ValueError, match=r"p \(the drop probability\)"):
        Dropout(p)


# --- BatchNorm2d -----------------------------------------------------------------------

def test_batchnorm_training_normalises_each_channel():
    x = _randn((6, 3, 4, 5)) * np.array([1.0, 5.0, 0.1]).reshape(1, 3, 1, 1) + 7.0
    layer = BatchNorm2d(3, dtype=F64)
    out = layer.forward(x)
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(out.var(axis=(0, 2, 3)), 1, rtol=1e-3)  # eps shrinks it a little
    layer.params["weight"][:] = [1, 2, 3]
    layer.params["bias"][:] = [0, -1, 1]
    out = layer.forward(x)
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), [0, -1, 1], atol=1e-12)


def test_batchnorm_running_statistics_hand_computed():
    # one channel, values 1, 2, 3, 6: mean 3, biased var 3.5, unbiased var 14/3
    x = np.array([1.0, 2.0, 3.0, 6.0]).reshape(4, 1, 1, 1)
    layer = BatchNorm2d(1, momentum=0.1, dtype=F64)
    layer.forward(x)
    np.testing.assert_allclose(layer.running_mean, [0.9 * 0 + 0.1 * 3])
    np.testing.assert_allclose(layer.running_var, [0.9 * 1 + 0.1 * 14 / 3])
    layer.forward(x)
    np.testing.assert_allclose(layer.running_mean, [0.9 * 0.3 + 0.1 * 3])


def test_batchnorm_evaluation_uses_running_statistics():
    layer = BatchNorm2d(2, eps=1e-5, dtype=F64)
    layer.running_mean[:] = [1.0, -2.0]
    layer.running_var[:] = [4.0, 0.25]
    layer.params["weight"][:] = [2.0, 1.0]
    layer.params["bias"][:] = [0.5, 0.0]
    layer.eval()
    x = _randn((3, 2, 2, 2))
    out = layer.forward(x)
    expected = np.empty_like(x)
    expected[:, 0] = 2.0 * (x[:, 0] - 1.0) / np.sqrt(4.0 + 1e-5) + 0.5
    expected[:, 1] = (x[:, 1] + 2.0) / np.sqrt(0.25 + 1e-5)
    np.testing.assert_allclose(out, expected, rtol=1e-13)
    np.testing.assert_array_equal(layer.running_mean, [1.0, -2.0])  # untouched in eval
    # a single sample is fine in evaluation
    assert layer.forward(x[:1, :, :1, :1]).shape == (1, 2, 1, 1)


def test_batchnorm_gradients_in_training_and_evaluation():
    layer = BatchNorm2d(3, dtype=F64)
    layer.params["weight"][:] = [0.5, 2.0, -1.0]
    layer.params["bias"][:] = [0.1, 0.2, 0.3]
    x = _randn((4, 3, 3, 2), 5) * 3 + 1
    _check_gradients(layer, x)
    layer.running_mean[:] = [0.3, -0.2, 1.0]
    layer.running_var[:] = [2.0, 0.5, 1.5]
    _check_gradients(layer.eval(), x)


def test_batchnorm_matches_a_plain_numpy_formula_in_float32():
    x = _randn((8, 4, 5, 5), 6, np.float32)
    layer = BatchNorm2d(4)
    out = layer.forward(x)
    x64 = x.astype(F64)
    mean = x64.mean(axis=(0, 2, 3), keepdims=True)
    var = x64.var(axis=(0, 2, 3), keepdims=True)
    np.testing.assert_allclose(out, (x64 - mean) / np.sqrt(var + 1e-5), atol=1e-5)
    assert layer.running_mean.dtype == np.float32 and layer.running_var.dtype == np.float32


def test_batchnorm_bad_input():
    layer = BatchNorm2d(3)
    with pytest.raises(ValueError, match=r"expects x of shape \(N, 3, H, W\), got \(2, 4, 2, 2\)"):
        layer.forward(np.zeros((2, 4, 2, 2), np.float32))
    with pytest.raises(ValueError, match=r"4-D.*got shape \(2, 3\)"):
        layer.forward(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="more than one value per channel"):
        layer.forward(np.zeros((1, 3, 1, 1), np.float32))
    with pytest.raises(ValueError, match="num_features must be >= 1"):
        BatchNorm2d(0)
    with pytest.raises(ValueError, match="momentum"):
        BatchNorm2d(3, momentum=1.5)
    with pytest.raises(ValueError, match="eps"):
        BatchNorm2d(3, eps=0)


# --- Sequential ------------------------------------------------------------------------

def _mlp(dtype=F64):
    return Sequential([Linear(5, 8, dtype=dtype, rng=0), ReLU(), Linear(8, 3, dtype=dtype, rng=1)])


def test_sequential_keys_and_shared_arrays():
    model = _mlp()
    assert list(model.params) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert model.params["2.weight"] is model[2].params["weight"]
    assert model.grads == {}
    nested = Sequential([Flatten(), _mlp()])
    assert list(nested.params) == ["1.0.weight", "1.0.bias", "1.2.weight", "1.2.bias"]
    assert len(model) == 3 and [type(layer) for layer in model] == [Linear, ReLU, Linear]


def test_sequential_forward_backward_match_the_layers_by_hand():
    model = _mlp()
    x = _randn((4, 5), 2)
    hidden = np.maximum(x @ model[0].params["weight"].T + model[0].params["bias"], 0)
    expected = hidden @ model[2].params["weight"].T + model[2].params["bias"]
    np.testing.assert_allclose(model.forward(x), expected, rtol=1e-12)
    dout = _randn((4, 3), 3)
    model.backward(dout)
    np.testing.assert_allclose(model.grads["2.weight"], dout.T @ hidden, rtol=1e-12)


def test_sequential_gradients():
    model = Sequential([
        BatchNorm2d(2, dtype=F64), LeakyReLU(0.1), Flatten(), Linear(2 * 3 * 3, 4, dtype=F64, rng=2),
    ])
    _check_gradients(model, _randn((3, 2, 3, 3), 4))


def test_sequential_optimiser_step_updates_the_layers():
    model = _mlp(np.float32)
    x = _randn((4, 5), 2, np.float32)
    weight_before = model[0].params["weight"].copy()
    optimizer = SGD(model.params, lr=0.1)
    model.forward(x)
    model.backward(np.ones((4, 3), np.float32))
    optimizer.step(model.grads)
    np.testing.assert_allclose(
        model[0].params["weight"], weight_before - 0.1 * model.grads["0.weight"], rtol=1e-6
    )


def test_sequential_train_and_eval_reach_every_layer():
    dropout = Dropout(0.5, rng=0)
    model = Sequential([Linear(4, 4, rng=0), Sequential([dropout, ReLU()])])
    assert model.eval() is model
    assert not model.training and not dropout.training and not model[0].training
    x = _randn((3, 4), 1, np.float32)
    np.testing.assert_array_equal(model.forward(x), model.forward(x))  # deterministic
    model.train()
    assert dropout.training and model[1].training


def test_sequential_bad_construction():
    with pytest.raises(ValueError, match="at least one layer"):
        Sequential([])
    with pytest.raises(TypeError, match="item 1 must be a fastconv.layers.Layer, got ufunc"):
        Sequential([ReLU(), np.tanh])
    with pytest.raises(RuntimeError, match="Linear.backward called before forward"):
        _mlp().backward(np.zeros((2, 3)))


# --- need_dx, in place, the compiled paths ----------------------------------------------

from fastconv.layers import AvgPool2d, Conv2d, MaxPool2d  # noqa: E402


def _every_layer(dtype):
    return _all_layers(dtype) + [Conv2d(3, 2, 3, padding=1, dtype=dtype, rng=0), MaxPool2d(2), AvgPool2d(2)]


@pytest.mark.parametrize("index", range(9))
def test_need_dx_false_returns_none_and_keeps_the_parameter_gradients(index):
    layer = _every_layer(F64)[index]
    x = _input_for(layer, F64) if index < 6 else _randn((2, 3, 4, 4))
    dout = _randn(layer.forward(x).shape, 3)
    dx = layer.backward(dout)
    full = {name: grad.copy() for name, grad in layer.grads.items()}
    assert dx is not None and dx.shape == x.shape
    layer.forward(x)
    assert layer.backward(dout, need_dx=False) is None
    assert full.keys() == layer.grads.keys()
    for name, grad in layer.grads.items():
        assert np.array_equal(grad, full[name])


def test_sequential_passes_need_dx_to_its_first_layer_only():
    seen = []

    class Spy(ReLU):
        def __init__(self, name):
            super().__init__()
            self.name = name

        def backward(self, dout, *, need_dx=True):
            seen.append((self.name, need_dx))
            return super().backward(dout, need_dx=need_dx)

    class SpyLinear(Linear):
        def backward(self, dout, *, need_dx=True):
            seen.append(("first", need_dx))
            return super().backward(dout, need_dx=need_dx)

    model = Sequential([SpyLinear(3, 3, dtype=np.float64), Spy("middle"), Spy("last")])
    model.forward(_randn((2, 3)))
    assert model.backward(_randn((2, 3)), need_dx=False) is None
    assert seen == [("last", True), ("middle", True), ("first", False)]
    seen.clear()
    assert model.backward(_randn((2, 3))).shape == (2, 3)
    assert seen[-1] == ("first", True)
    # below the lowest layer with parameters nothing needs a gradient: nothing runs there
    seen.clear()
    parameter_free = Sequential([Spy("first"), Spy("last")])
    parameter_free.forward(_randn((2, 3)))
    assert parameter_free.backward(_randn((2, 3)), need_dx=False) is None and seen == []


@pytest.mark.parametrize("layer_type", [ReLU, LeakyReLU])
def test_inplace_activation_writes_its_input_and_gives_the_same_gradient(layer_type):
    x = _randn((3, 4, 5), 1)
    plain, inplace = layer_type(), layer_type(inplace=True)
    expected = plain.forward(x)
    buffer = x.copy()
    out = inplace.forward(buffer)
    assert out is buffer and np.array_equal(buffer, expected)
    dout = _randn(x.shape, 2)
    assert np.array_equal(inplace.backward(dout), plain.backward(dout))
    assert "inplace=True" in repr(inplace)
    with pytest.raises(TypeError, match="inplace must be True or False"):
        layer_type(inplace="yes")


@pytest.mark.parametrize("backend", ["cython", "reference"])
def test_activation_and_linear_backends_agree(backend):
    x = _randn((4, 6), 3)
    dout = _randn((4, 5), 4)
    for make in (lambda b: ReLU(backend=b), lambda b: LeakyReLU(0.2, backend=b)):
        assert np.array_equal(make(backend).forward(x), make("cython").forward(x))
    layers = [Linear(6, 5, dtype=F64, rng=0, backend=b) for b in (backend, "cython")]
    outs = [layer.forward(x) for layer in layers]
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-12)
    dxs = [layer.backward(dout) for layer in layers]
    np.testing.assert_allclose(dxs[0], dxs[1], rtol=1e-12)
    np.testing.assert_allclose(layers[0].grads["weight"], layers[1].grads["weight"], rtol=1e-12)


def test_dropout_masks_come_from_the_layers_generator_as_rng_random():
    x = _randn((5, 7), 1, np.float32)
    for make_rng in (lambda: np.random.default_rng(3), lambda: np.random.RandomState(3)):
        layer = Dropout(0.4, rng=make_rng())
        twin = make_rng()
        for _ in range(3):  # a Generator's numbers go into a buffer kept between calls
            out = layer.forward(x)
            keep = twin.random(x.shape) >= 0.4
            expected = x * (keep.astype(np.float32) * np.float32(1 / 0.6))
            assert np.array_equal(out, expected)
            dout = _randn(x.shape, 2, np.float32)
            assert np.array_equal(layer.backward(dout), dout * (keep.astype(np.float32) * np.float32(1 / 0.6)))
    np.random.seed(5)
    first = Dropout(0.5).forward(x)
    np.random.seed(5)
    assert np.array_equal(Dropout(0.5).forward(x), first)
    layer = Dropout(0.5, rng=0).eval()
    assert layer.forward(x) is x and layer.backward(x, need_dx=False) is None
