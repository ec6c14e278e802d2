"""BatchNorm2d, BatchNorm1d, LayerNorm, GroupNorm layers: gradient checks (float64), train/eval,
running statistics in place, need_dx, trainable, dtypes, layouts, bad input."""
import numpy as np
import pytest

from fastconv import reference
from fastconv.gradcheck import numerical_gradient_array
from fastconv.layers import BatchNorm1d, BatchNorm2d, GroupNorm, Layer, LayerNorm, Linear, ReLU, Sequential

from _helpers import LAYOUTS, with_layout

F64 = np.float64


def randn(shape, seed=0, dtype=F64):
    return (np.random.default_rng(seed).standard_normal(shape) * 2 + 1).astype(dtype)


def norm_error(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-300))


LAYERS = [  # (factory(dtype), input shape)
    (lambda dtype: BatchNorm2d(3, dtype=dtype), (4, 3, 2, 5)),
    (lambda dtype: BatchNorm1d(5, dtype=dtype), (6, 5)),
    (lambda dtype: BatchNorm1d(3, dtype=dtype), (4, 3, 7)),
    (lambda dtype: LayerNorm(6, dtype=dtype), (4, 6)),
    (lambda dtype: LayerNorm((3, 2, 5), dtype=dtype), (4, 3, 2, 5)),
    (lambda dtype: GroupNorm(2, 4, dtype=dtype), (3, 4, 3, 3)),
]
IDS = ["BatchNorm2d", "BatchNorm1d (N, C)", "BatchNorm1d (N, C, L)", "LayerNorm D", "LayerNorm (C, H, W)", "GroupNorm"]


def _set_params(layer, seed=3):
    for index, (name, value) in enumerate(layer.params.items()):
        value[...] = randn(value.shape, seed + index, value.dtype)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("make, shape", LAYERS, ids=IDS)
def test_gradients(make, shape, training):
    layer = make(F64)
    _set_params(layer)
    if not training:
        layer.eval()
        if hasattr(layer, "running_var"):
            layer.running_mean[:] = randn(layer.running_mean.shape, 8)
            layer.running_var[:] = np.abs(randn(layer.running_var.shape, 9)) + 0.5
    x = randn(shape, 1)
    saved = {name: getattr(layer, name).copy() for name in getattr(layer, "_buffers", ())}

    def run(_):
        for name, value in saved.items():  # each evaluation sees the same running statistics
            getattr(layer, name)[...] = value
        return layer.forward(x)

    out = run(None)
    dout = randn(out.shape, 2)
    dx = layer.backward(dout)
    analytic = {name: grad.copy() for name, grad in layer.grads.items()}
    assert set(analytic) == set(layer.params)
    assert norm_error(dx, numerical_gradient_array(run, x, dout)) < 1e-9
    for name, param in layer.params.items():
        assert norm_error(analytic[name], numerical_gradient_array(run, param, dout)) < 1e-9, name


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("make, shape", LAYERS, ids=IDS)
def test_dtype_kept_inputs_not_written(make, shape, dtype):
    layer = make(dtype)
    x = randn(shape, 0, dtype)
    x.flags.writeable = False
    out = layer.forward(x)
    assert out.dtype == dtype and out.shape == x.shape
    dout = randn(shape, 1, dtype)
    dout.flags.writeable = False
    dx = layer.backward(dout)
    assert dx.dtype == dtype
    for name, grad in layer.grads.items():
        assert grad.dtype == dtype and grad.shape == layer.params[name].shape


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("make, shape", LAYERS, ids=IDS)
def test_every_layout_same_result(make, shape, layout):
    layer = make(F64).eval()
    x, dout = randn(shape, 0), randn(shape, 1)
    expected = layer.forward(x).copy()
    expected_dx = layer.backward(dout).copy()
    assert np.array_equal(layer.forward(with_layout(x, layout)), expected)
    assert np.array_equal(layer.backward(with_layout(dout, layout)), expected_dx)


@pytest.mark.parametrize("make, shape", LAYERS, ids=IDS)
def test_need_dx_and_frozen_layers(make, shape):
    layer = make(F64)
    x, dout = randn(shape, 0), randn(shape, 1)
    layer.forward(x)
    dx = layer.backward(dout)
    grads = {name: grad.copy() for name, grad in layer.grads.items()}
    layer.forward(x)
    assert layer.backward(dout, need_dx=False) is None
    for name in grads:
        np.testing.assert_array_equal(layer.grads[name], grads[name])
    if isinstance(layer, (BatchNorm1d, BatchNorm2d)):
        # a frozen batch norm runs on its running statistics, in training too: its dx is the
        # evaluation-mode dx
        layer.eval()
        layer.forward(x)
        dx = layer.backward(dout)
        layer.train()
    layer.trainable = False
    layer.forward(x)
    np.testing.assert_array_equal(layer.backward(dout), dx)
    assert layer.grads == {}
    assert layer.backward(dout, need_dx=False) is None and layer.grads == {}


def test_batchnorm_running_statistics_are_updated_in_place_and_named_as_buffers():
    layer = BatchNorm2d(2, momentum=0.5, dtype=F64)
    assert BatchNorm2d._buffers == ("running_mean", "running_var") and BatchNorm1d._buffers == BatchNorm2d._buffers
    running_mean = layer.running_mean
    x = randn((3, 2, 4, 4), 0)
    layer.forward(x)
    assert layer.running_mean is running_mean
    np.testing.assert_allclose(running_mean, 0.5 * x.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(layer.running_var, 0.5 + 0.5 * x.var(axis=(0, 2, 3), ddof=1), rtol=1e-12)
    layer.eval().forward(x)
    np.testing.assert_allclose(running_mean, 0.5 * x.mean(axis=(0, 2, 3)), rtol=1e-12)  # unchanged in eval


def test_batchnorm1d_is_batchnorm2d_on_columns():
    x = randn((8, 5), 0)
    one_d, two_d = BatchNorm1d(5, dtype=F64), BatchNorm2d(5, dtype=F64)
    _set_params(one_d)
    _set_params(two_d)
    np.testing.assert_allclose(one_d.forward(x), two_d.forward(x[:, :, None, None])[:, :, 0, 0], rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(one_d.running_var, two_d.running_var, rtol=1e-13)


def test_layer_and_group_norm_match_the_twins_and_ignore_the_mode():
    x = randn((3, 4, 5, 5), 0, np.float32)
    for layer, twin in [(LayerNorm((4, 5, 5)), lambda l: reference.layer_norm_forward(x, l.params["weight"], l.params["bias"])),
                        (GroupNorm(2, 4), lambda l: reference.group_norm_forward(x, l.params["weight"], l.params["bias"], 2))]:
        _set_params(layer)
        training = layer.forward(x)
        np.testing.assert_allclose(training, twin(layer)[0], rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(layer.eval().forward(x), training)


def test_in_a_sequential_with_need_dx_false_at_the_bottom():
    model = Sequential([Linear(6, 8, dtype=F64, rng=0), BatchNorm1d(8, dtype=F64), ReLU(),
                        Linear(8, 4, dtype=F64, rng=1), LayerNorm(4, dtype=F64)])
    x = randn((5, 6), 0)
    out = model.forward(x)
    model.backward(randn(out.shape, 1))
    assert {"1.weight", "1.bias", "4.weight", "4.bias"} <= set(model.grads)
    first = BatchNorm2d(2, dtype=F64)
    first.forward(randn((2, 2, 3, 3), 2))
    assert first.backward(randn((2, 2, 3, 3), 3), need_dx=False) is None


def test_repr_and_layer_type():
    assert repr(BatchNorm1d(3)) == "BatchNorm1d(3, eps=1e-05, momentum=0.1, dtype=np.float32)"
    assert repr(LayerNorm((2, 3), dtype=F64)) == "LayerNorm((2, 3), eps=1e-05, dtype=np.float64)"
    assert repr(GroupNorm(2, 4)) == "GroupNorm(2, 4, eps=1e-05, dtype=np.float32)"
    assert all(isinstance(make(F64), Layer) for make, _ in LAYERS)


@pytest.mark.parametrize("make, error, match", [
    (lambda: BatchNorm1d(0), ValueError, "num_features must be >= 1"),
    (lambda: BatchNorm1d(2.0), TypeError, "num_features must be an int"),
    (lambda: BatchNorm1d(2, momentum=-0.1), ValueError, "momentum"),
    (lambda: LayerNorm(0), ValueError, "normalized_shape must be >= 1"),
    (lambda: LayerNorm(()), ValueError, "at least one dimension"),
    (lambda: LayerNorm((2, "3")), TypeError, "normalized_shape must be an int"),
    (lambda: LayerNorm(4, eps=-1), ValueError, "eps must be a number > 0"),
    (lambda: GroupNorm(3, 4), ValueError, r"num_groups \(3\) must divide num_channels \(4\)"),
    (lambda: GroupNorm(0, 4), ValueError, "num_groups must be >= 1"),
    (lambda: GroupNorm(2, 4, dtype=np.int32), TypeError, "dtype must be float32 or float64"),
])
def test_bad_construction(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("layer, x, error, match", [
    (BatchNorm1d(3), np.zeros((4, 2), np.float32), ValueError, r"expects x of shape \(N, 3\) or \(N, 3, L\), got \(4, 2\)"),
    (BatchNorm1d(3), np.zeros((4, 3, 2, 2), np.float32), ValueError, "use BatchNorm2d"),
    (BatchNorm1d(3), np.zeros((1, 3), np.float32), ValueError, "more than one value per channel"),
    (BatchNorm1d(3), np.zeros(3, np.float32), ValueError, "at least 2 dimensions"),
    (BatchNorm1d(3), np.zeros((4, 3)), TypeError, "float32 parameters but input x is float64"),
    (LayerNorm(4), np.zeros((2, 5), np.float32), ValueError, r"LayerNorm\(4,\) expects x of shape \(\.\.\., 4\)"),
    (LayerNorm((2, 4)), np.zeros(4, np.float32), ValueError, "at least 2 dimensions"),
    (GroupNorm(2, 4), np.zeros((2, 6, 3), np.float32), ValueError, r"expects x of shape \(N, 4, \.\.\.\)"),
    (GroupNorm(2, 4), np.zeros((2, 4), np.int64), TypeError, "must have dtype float32 or float64"),
    (GroupNorm(2, 4), [[1.0]], TypeError, "must be a numpy.ndarray"),
])
def test_bad_input(layer, x, error, match):
    with pytest.raises(error, match=match):
        layer.forward(x)


@pytest.mark.parametrize("make, shape", LAYERS, ids=IDS)
def test_bad_dout_and_order(make, shape):
    layer = make(np.float32)
    with pytest.raises(RuntimeError, match="backward called before forward"):
        layer.backward(np.zeros(shape, np.float32))
    layer.forward(randn(shape, 0, np.float32))
    with pytest.raises(ValueError, match="forward output's shape"):
        layer.backward(np.zeros(shape + (1,), np.float32))
    with pytest.raises(TypeError, match="forward output's dtype float32, got float64"):
        layer.backward(np.zeros(shape))
