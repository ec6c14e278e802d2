"""Residual: body(x) + x and body(x) + shortcut(x), gradients (float64), need_dx, keys, modes, errors."""
import numpy as np
import pytest

from fastconv.gradcheck import numerical_gradient_array, rel_error
from fastconv.layers import BatchNorm2d, Conv2d, Dropout, Flatten, Linear, ReLU, Residual, Sequential


def _randn(shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _basic_block(channels=3, out=3, stride=1, dtype=np.float64):
    body = Sequential([Conv2d(channels, out, 3, stride, 1, bias=False, dtype=dtype, rng=0),
                       BatchNorm2d(out, dtype=dtype), ReLU(),
                       Conv2d(out, out, 3, 1, 1, bias=False, dtype=dtype, rng=1),
                       BatchNorm2d(out, dtype=dtype)])
    shortcut = None
    if stride != 1 or channels != out:
        shortcut = Sequential([Conv2d(channels, out, 1, stride, bias=False, dtype=dtype, rng=2),
                               BatchNorm2d(out, dtype=dtype)])
    return Residual(body, shortcut)


def test_identity_block_adds_x():
    block = _basic_block()
    x = _randn((2, 3, 5, 6))
    assert np.allclose(block.forward(x), block.body.forward(x) + x, rtol=1e-13)


def test_projection_block_adds_the_shortcut():
    block = _basic_block(3, 4, stride=2)
    x = _randn((2, 3, 6, 7))
    out = block.forward(x)
    assert out.shape == (2, 4, 3, 4)
    assert np.allclose(out, block.body.forward(x) + block.shortcut.forward(x), rtol=1e-13)


@pytest.mark.parametrize("stride, out", [(1, 3), (2, 4)])
def test_gradients_float64(stride, out):
    block = _basic_block(3, out, stride)
    block.eval()  # fixed statistics: the block is a function of x and the parameters alone
    x = _randn((2, 3, 5, 5), 1)
    result = block.forward(x)
    dout = _randn(result.shape, 2)
    dx = block.backward(dout)
    analytic = {name: grad.copy() for name, grad in block.grads.items()}
    assert rel_error(dx, numerical_gradient_array(lambda _: block.forward(x), x, dout)) < 1e-7
    assert set(analytic) == set(block.params)
    for name, param in block.params.items():
        numeric = numerical_gradient_array(lambda _: block.forward(x), param, dout)
        assert rel_error(analytic[name], numeric) < 1e-6, name


def test_keys_name_body_and_shortcut_and_share_the_arrays():
    block = _basic_block(3, 4, stride=2)
    assert list(block.params) == ["body.0.weight", "body.1.weight", "body.1.bias", "body.3.weight",
                                  "body.4.weight", "body.4.bias", "shortcut.0.weight",
                                  "shortcut.1.weight", "shortcut.1.bias"]
    assert block.params["shortcut.0.weight"] is block.shortcut[0].params["weight"]
    model = Sequential([block, ReLU()])
    assert "0.body.0.weight" in model.params


def test_need_dx_false_returns_none_and_still_fills_the_parameter_gradients():
    for block in (_basic_block(), _basic_block(3, 4, 2)):
        x = _randn((2, 3, 4, 4))
        dout = _randn(block.forward(x).shape, 1)
        block.backward(dout)
        full = {name: grad.copy() for name, grad in block.grads.items()}
        block.forward(x)
        assert block.backward(dout, need_dx=False) is None
        assert full.keys() == block.grads.keys()
        for name, grad in block.grads.items():
            assert np.array_equal(grad, full[name]), name


def test_never_writes_x_or_dout_even_when_a_branch_hands_back_its_argument():
    # Dropout in evaluation returns x itself and dout itself: the sum must be a new array
    block = Residual(Dropout(0.5)).eval()
    x = _randn((3, 4))
    x.flags.writeable = False
    out = block.forward(x)
    assert np.array_equal(out, 2 * x) and out is not x
    dout = _randn((3, 4), 1)
    dout.flags.writeable = False
    assert np.array_equal(block.backward(dout), 2 * dout)


def test_train_and_eval_reach_both_branches():
    block = _basic_block(3, 4, 2)
    block.eval()
    assert not block.training and not block.body[1].training and not block.shortcut[1].training
    block.train()
    assert block.body[1].training and block.shortcut[1].training


def test_errors():
    with pytest.raises(TypeError, match="body must be a fastconv.layers.Layer, got function"):
        Residual(lambda x: x)
    with pytest.raises(TypeError, match="shortcut must be None .* got int"):
        Residual(ReLU(), 3)
    block = Residual(Sequential([Flatten(), Linear(12, 5, dtype=np.float64)]))
    with pytest.raises(ValueError, match=r"body's output \(\(2, 5\) float64\) and the identity shortcut "
                                         r"\(x\) \(\(2, 3, 4\) float64\) must have one shape.*projection shortcut"):
        block.forward(_randn((2, 3, 4)))
    with pytest.raises(RuntimeError, match="Residual.backward called before forward"):
        Residual(ReLU()).backward(np.zeros(3))
    block = Residual(ReLU())
    block.forward(_randn((2, 3)))
    with pytest.raises(ValueError, match=r"Residual.backward: dout must have the forward output's shape"):
        block.backward(np.zeros((3, 2)))
    assert "(body): ReLU()" in repr(block) and "(shortcut)" in repr(_basic_block(3, 4, 2))


def test_residual_state_dict_freezing_and_save_load(tmp_path):
    from fastconv import load_model, save_model
    from fastconv.layers import BatchNorm2d, Conv2d, ReLU, Residual, Sequential

    block = Residual(Sequential([Conv2d(3, 4, 3, padding=1, dtype=np.float64, rng=0), BatchNorm2d(4, dtype=np.float64),
                                 ReLU(), Conv2d(4, 4, 3, padding=1, dtype=np.float64, rng=1)]),
                     Conv2d(3, 4, 1, dtype=np.float64, rng=2))
    keys = list(block.state_dict())
    assert keys[:3] == ["body.0.weight", "body.0.bias", "body.1.weight"]
    assert "body.1.running_mean" in keys and keys[-2:] == ["shortcut.weight", "shortcut.bias"]
    x = np.random.default_rng(3).standard_normal((2, 3, 5, 5))
    block.eval()
    out = block.forward(x)
    path = tmp_path / "block.npz"
    save_model(block, path)
    loaded = load_model(path)
    assert type(loaded) is Residual and loaded.forward(x).tobytes() == out.tobytes()
    block.train()
    block.trainable = False
    assert not block.trainable and not block.body.trainable and not block.shortcut.trainable
    block.forward(x)
    block.backward(np.ones_like(out))
    assert block.grads == {}
    assert block.backward(np.ones_like(out), need_dx=False) is None
