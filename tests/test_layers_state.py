"""Layer.state_dict / load_state_dict, freezing (trainable, Sequential.freeze), the need_dx skip,
and optimisers leaving frozen parameters and their state untouched."""
import numpy as np
import pytest

from fastconv.layers import BatchNorm2d, Conv2d, Flatten, Layer, Linear, MaxPool2d, ReLU, Sequential
from fastconv.optim import SGD, AdaGrad, Adam, RMSProp
from fastconv.train import Trainer

F64 = np.float64


def _randn(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _net(dtype=np.float32, seed=0):
    """conv - BN - ReLU - pool - [Flatten - Linear] (nested) : every kind of state key."""
    rng = np.random.default_rng(seed)
    return Sequential([
        Conv2d(2, 3, 3, padding=1, dtype=dtype, rng=rng),
        BatchNorm2d(3, dtype=dtype),
        ReLU(),
        MaxPool2d(2),
        Sequential([Flatten(), Linear(3 * 2 * 2, 4, dtype=dtype, rng=rng)]),
    ])


def _randomise(model, seed=1):
    """Fill every state array with random values (running_var kept positive)."""
    rng = np.random.default_rng(seed)
    for name, array in model._state_arrays().items():
        values = rng.standard_normal(array.shape)
        array[...] = np.abs(values) + 0.5 if name.endswith("running_var") else values
    return model


# --- state_dict -------------------------------------------------------------------------------

def test_state_dict_keys_are_the_params_plus_buffers_and_nest():
    model = _net()
    assert list(model.state_dict()) == [
        "0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
        "4.1.weight", "4.1.bias",
    ]
    assert list(BatchNorm2d(2).state_dict()) == ["weight", "bias", "running_mean", "running_var"]
    assert ReLU().state_dict() == {}
    assert BatchNorm2d._buffers == ("running_mean", "running_var")


def test_state_dict_is_a_snapshot_of_copies():
    model = _randomise(_net())
    state = model.state_dict()
    assert state["0.weight"] is not model[0].params["weight"]
    np.testing.assert_array_equal(state["0.weight"], model[0].params["weight"])
    assert state["1.running_mean"].dtype == np.float32
    state["0.weight"][...] = 0
    assert model[0].params["weight"].any()


@pytest.mark.parametrize("dtype", (np.float32, np.float64))
def test_load_state_dict_copies_into_the_existing_arrays(dtype):
    source, target = _randomise(_net(dtype, seed=0), seed=5), _net(dtype, seed=1)
    arrays_before = target._state_arrays()
    optimizer = SGD(target.params, lr=0.1)
    assert target.load_state_dict(source.state_dict()) == ([], [])
    for name, array in target._state_arrays().items():
        assert array is arrays_before[name]  # the same objects: the optimiser still holds them
        np.testing.assert_array_equal(array, source._state_arrays()[name])
    x = _randn((2, 2, 4, 4), 3, dtype)
    np.testing.assert_array_equal(target.eval().forward(x), source.eval().forward(x))
    # and the optimiser holding the old dict still moves the model
    target.train().forward(x)
    target.backward(np.ones((2, 4), dtype))
    optimizer.step(target.grads)
    assert not np.array_equal(target[0].params["weight"], source[0].params["weight"])


def test_strict_load_names_every_missing_and_unexpected_key_and_changes_nothing():
    model = _net()
    before = model.state_dict()
    state = _randomise(_net(seed=3)).state_dict()
    del state["1.running_var"], state["4.1.bias"]
    state["9.weight"] = np.zeros(3, np.float32)
    state["extra"] = np.zeros(1, np.float32)
    with pytest.raises(ValueError) as error:
        model.load_state_dict(state)
    message = str(error.value)
    assert "missing keys ['1.running_var', '4.1.bias']" in message
    assert "unexpected keys ['9.weight', 'extra']" in message
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name])


def test_every_shape_and_dtype_problem_is_listed_and_nothing_is_copied():
    model = _net()
    before = model.state_dict()
    state = _randomise(_net(seed=3)).state_dict()
    state["0.weight"] = np.zeros((3, 2, 3, 2), np.float32)
    state["1.running_mean"] = state["1.running_mean"].astype(np.float64)
    state["4.1.bias"] = [0.0] * 4
    with pytest.raises(ValueError) as error:
        model.load_state_dict(state)
    message = str(error.value)
    assert "'0.weight' has shape (3, 2, 3, 2) but the layer's has shape (3, 2, 3, 3)" in message
    assert "'1.running_mean' has dtype float64 but the layer's has dtype float32" in message
    assert "'4.1.bias' must be an ndarray, got list" in message
    for name, value in model.state_dict().items():  # 0.bias etc. were valid, yet not copied
        np.testing.assert_array_equal(value, before[name])


def test_non_strict_load_reports_what_did_not_match():
    model = _net()
    source = _randomise(_net(seed=3))
    state = {"0.weight": source.state_dict()["0.weight"], "other": np.zeros(2)}
    result = model.load_state_dict(state, strict=False)
    assert result.missing_keys == [name for name in model.state_dict() if name != "0.weight"]
    assert result.unexpected_keys == ["other"]
    np.testing.assert_array_equal(model[0].params["weight"], state["0.weight"])
    with pytest.raises(ValueError, match="'0.weight' has shape"):
        model.load_state_dict({"0.weight": np.zeros(2, np.float32)}, strict=False)


def test_load_accepts_any_layout_and_never_keeps_the_callers_array():
    layer = Linear(3, 2, rng=0)
    weight = np.asfortranarray(_randn((2, 3), 4))
    weight.flags.writeable = False
    layer.load_state_dict({"weight": weight, "bias": np.ones(2, np.float32)})
    assert layer.params["weight"] is not weight and layer.params["weight"].flags.writeable
    np.testing.assert_array_equal(layer.params["weight"], weight)


def test_load_state_dict_bad_arguments():
    with pytest.raises(TypeError, match="state must be a dict"):
        Linear(2, 2).load_state_dict([("weight", np.zeros((2, 2)))])
    layer = Linear(2, 2, rng=0)
    layer.params["weight"].flags.writeable = False
    with pytest.raises(ValueError, match="'weight' .* is read-only"):
        layer.load_state_dict({"weight": np.zeros((2, 2), np.float32), "bias": np.zeros(2, np.float32)})
    assert layer.params["bias"].tolist() == [0, 0]


def test_loaded_batchnorm_statistics_drive_evaluation():
    layer = BatchNorm2d(2, dtype=F64)
    layer.load_state_dict({"weight": np.array([2.0, 1.0]), "bias": np.array([0.0, 1.0]),
                           "running_mean": np.array([1.0, -1.0]), "running_var": np.array([4.0, 1.0])})
    x = np.ones((1, 2, 1, 1))
    out = layer.eval().forward(x)
    np.testing.assert_allclose(out.ravel(), [0.0, 2 / np.sqrt(1 + 1e-5) + 1], rtol=1e-12)


# --- freezing ---------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda: Conv2d(2, 3, 3, dtype=F64, rng=0),
    lambda: Linear(8, 3, dtype=F64, rng=0),
    lambda: BatchNorm2d(2, dtype=F64).eval(),  # frozen, it runs on its running statistics
])
def test_a_frozen_layer_gets_no_parameter_gradients_but_the_same_dx(make):
    layer = make()
    x = _randn((4, 8) if isinstance(layer, Linear) else (4, 2, 5, 5), 1, F64)
    out = layer.forward(x)
    dout = _randn(out.shape, 2, F64)
    dx = layer.backward(dout)
    layer.train()
    assert layer.grads
    layer.trainable = False
    assert layer.grads == {}  # freezing drops the gradients of an earlier backward
    layer.forward(x)
    np.testing.assert_array_equal(layer.backward(dout), dx)
    assert layer.grads == {}
    layer.trainable = True
    layer.forward(x)
    layer.backward(dout)
    assert set(layer.grads) == set(layer.params)


def test_trainable_must_be_a_bool():
    with pytest.raises(TypeError, match="trainable must be True or False, got int 0"):
        Linear(2, 2).trainable = 0
    with pytest.raises(TypeError, match="trainable must be True or False"):
        Sequential([ReLU()]).trainable = "no"


def test_freeze_up_to_and_unfreeze():
    model = _net()
    assert model.freeze(up_to=2) is model
    assert [layer.trainable for layer in model] == [False, False, True, True, True]
    assert not model.trainable
    model.unfreeze()
    assert model.trainable and all(layer.trainable for layer in model)
    model.freeze(up_to=-1)
    assert [layer.trainable for layer in model] == [False, False, False, False, True]
    assert model[4].trainable and model[4][1].trainable
    model.freeze()
    assert not model[4][1].trainable  # nested containers freeze all their layers
    model.unfreeze(up_to=1)
    assert [layer.trainable for layer in model] == [True, False, False, False, False]
    model.trainable = True
    assert all(layer.trainable for layer in model) and model[4][1].trainable
    with pytest.raises(TypeError, match=r"up_to must be an int \(layers\[:up_to\]\) or None, got float"):
        model.freeze(up_to=1.0)
    with pytest.raises(TypeError, match="up_to must be an int"):
        model.freeze(up_to=True)


def test_sequential_grads_lack_the_frozen_layers_keys():
    model = _net().freeze(up_to=2)
    x = _randn((2, 2, 4, 4), 1)
    model.forward(x)
    model.backward(np.ones((2, 4), np.float32))
    assert list(model.grads) == ["4.1.weight", "4.1.bias"]


class _Spy(Layer):
    """Identity layer with one parameter recording how backward was called (need_dx or not)."""

    def __init__(self, log, name, with_param=True):
        super().__init__()
        self.log, self.name = log, name
        if with_param:
            self.params["scale"] = np.ones(1)

    def forward(self, x):
        self._cache = x
        return x

    def backward(self, dout, *, need_dx=True):
        self.log.append((self.name, need_dx))
        if self.params:
            self.grads["scale"] = np.zeros(1)
        return dout if need_dx else None


def test_backward_skips_everything_below_the_lowest_trainable_layer():
    log = []
    model = Sequential([_Spy(log, "a"), _Spy(log, "b", with_param=False), _Spy(log, "c"), _Spy(log, "d")])
    x = np.ones((1, 1))
    model.forward(x)
    assert model.backward(x) is x and log == [("d", True), ("c", True), ("b", True), ("a", True)]
    log.clear()
    assert model.backward(x, need_dx=False) is None
    assert log == [("d", True), ("c", True), ("b", True), ("a", False)]
    log.clear()
    model.freeze(up_to=2)  # a frozen, b has no params: c is the lowest that needs gradients
    assert model.backward(x, need_dx=False) is None
    assert log == [("d", True), ("c", False)]
    log.clear()
    model.freeze()
    assert model.backward(x, need_dx=False) is None and log == []
    assert model.grads == {}
    log.clear()
    model.backward(x)  # need_dx=True still runs everything (a caller wants dx)
    assert [name for name, _ in log] == ["d", "c", "b", "a"] and model.grads == {}


def test_nested_sequential_passes_need_dx_down():
    log = []
    inner = Sequential([_Spy(log, "inner0"), _Spy(log, "inner1")])
    model = Sequential([_Spy(log, "outer0"), inner, _Spy(log, "outer2")])
    model.forward(np.ones((1, 1)))
    model.freeze(up_to=1)
    inner[0].trainable = False
    model.backward(np.ones((1, 1)), need_dx=False)
    assert log == [("outer2", True), ("inner1", False)]


def test_layers_that_do_not_take_need_dx_still_work_in_a_sequential():
    # the base class adds need_dx to every backward; a layer may ignore it and return dx
    model = Sequential([Linear(3, 4, dtype=F64, rng=0), ReLU(), Linear(4, 2, dtype=F64, rng=1)])
    x = _randn((5, 3), 1, F64)
    dout = _randn((5, 2), 2, F64)
    model.forward(x)
    full = model.backward(dout)
    grads = model.grads
    model.forward(x)
    assert model.backward(dout, need_dx=False) is None
    for name, grad in model.grads.items():
        np.testing.assert_array_equal(grad, grads[name])
    assert full.shape == x.shape


# --- frozen parameters through training ---------------------------------------------------------

@pytest.mark.parametrize("make_optimizer", [
    lambda params: SGD(params, lr=0.1, momentum=0.9),
    lambda params: AdaGrad(params, lr=0.1),
    lambda params: RMSProp(params, lr=0.01),
    lambda params: Adam(params, lr=0.01),
])
def test_frozen_layers_keep_their_parameters_bit_for_bit_across_training(make_optimizer):
    model = _randomise(_net(seed=2), seed=4)
    rng = np.random.default_rng(0)
    x, y = _randn((24, 2, 4, 4), 5), rng.integers(0, 4, 24)
    # conv and batchnorm frozen; batchnorm's running statistics are not parameters: in
    # training mode they still follow the data, as in PyTorch
    model.freeze(up_to=2)
    frozen = {name: value for name, value in model.state_dict().items()
              if name.startswith(("0.", "1.")) and "running" not in name}
    head = model.state_dict()["4.1.weight"]
    optimizer = make_optimizer(model.params)
    Trainer(model, optimizer, batch_size=8, verbose=False, rng=0, l2=1e-3).fit(x, y, epochs=3)
    state = model.state_dict()
    for name, value in frozen.items():
        assert np.array_equal(state[name], value), name
        assert optimizer.state[name] == {}, name  # the optimiser never touched their state
    assert not np.array_equal(state["4.1.weight"], head)
    assert optimizer.state["4.1.weight"]


def test_optimizers_skip_missing_names_and_reject_unknown_ones():
    params = {"a": np.ones(2), "b": np.ones(2)}
    optimizer = Adam(params, lr=0.1)
    optimizer.step({"a": np.ones(2)})
    assert params["b"].tolist() == [1, 1] and optimizer.state["b"] == {}
    with pytest.raises(ValueError, match=r"names that are not parameters of this optimiser: \['c'\]"):
        optimizer.step({"a": np.ones(2), "c": np.ones(2)})


def test_adam_counts_steps_per_parameter():
    # b frozen for three steps, then unfrozen: its first update is a first Adam step
    # (bias correction 1 - beta**1), of size lr, not a later, uncorrected one
    params = {"a": np.zeros(1), "b": np.zeros(1)}
    optimizer = Adam(params, lr=0.1)
    for _ in range(3):
        optimizer.step({"a": np.ones(1)})
    optimizer.step({"a": np.ones(1), "b": np.full(1, 2.0)})
    assert params["b"][0] == pytest.approx(-0.1, rel=1e-6)
    assert optimizer.state["a"]["step"] == 4 and optimizer.state["b"]["step"] == 1


def test_a_frozen_batch_norm_uses_and_keeps_its_running_statistics_in_training():
    """A frozen body must not drift while the layers above it are fine-tuned: a frozen
    BatchNorm2d normalises with its running statistics, in training mode too, and leaves them
    unchanged; unfrozen, it uses and updates batch statistics again."""
    from fastconv.layers import BatchNorm2d

    layer = BatchNorm2d(3, dtype=np.float64)
    layer.running_mean[...] = [0.5, -1.0, 2.0]
    layer.running_var[...] = [1.5, 0.25, 4.0]
    saved = layer.running_mean.copy(), layer.running_var.copy()
    x = np.random.default_rng(0).standard_normal((4, 3, 5, 5)) * 3 + 1
    layer.train()
    layer.trainable = False
    frozen = layer.forward(x)
    np.testing.assert_array_equal(layer.running_mean, saved[0])
    np.testing.assert_array_equal(layer.running_var, saved[1])
    expected = (x - saved[0].reshape(1, 3, 1, 1)) / np.sqrt(saved[1].reshape(1, 3, 1, 1) + layer.eps)
    np.testing.assert_allclose(frozen, expected, rtol=1e-12, atol=1e-12)
    layer.trainable = True
    layer.forward(x)
    assert not np.array_equal(layer.running_mean, saved[0])
