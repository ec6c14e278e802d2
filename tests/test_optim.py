"""fastconv.optim: each update rule against hand-computed steps, in-place updates, dtypes, bad input."""
import math

import numpy as np
import pytest

from fastconv.optim import SGD, AdaGrad, Adam, RMSProp


def _one(value, dtype=np.float64):
    return {"w": np.array([value], dtype=dtype)}


def _run(optimizer, params, gradients):
    """Apply one step per gradient value; return the parameter after each step."""
    history = []
    for grad in gradients:
        optimizer.step({"w": np.array([grad], dtype=params["w"].dtype)})
        history.append(float(params["w"][0]))
    return history


def test_sgd_plain():
    params = _one(1.0)
    # 1 - 0.1*2 = 0.8; 0.8 - 0.1*(-1) = 0.9
    assert _run(SGD(params, lr=0.1), params, [2.0, -1.0]) == pytest.approx([0.8, 0.9])


def test_sgd_momentum():
    params = _one(1.0)
    # v1 = -0.1*2 = -0.2, w = 0.8; v2 = 0.9*(-0.2) - 0.1*1 = -0.28, w = 0.52
    assert _run(SGD(params, lr=0.1, momentum=0.9), params, [2.0, 1.0]) == pytest.approx([0.8, 0.52])


def test_sgd_nesterov():
    params = _one(1.0)
    # v1 = -0.2, w += 0.9*(-0.2) - 0.1*2 = -0.38 -> 0.62
    # v2 = 0.9*(-0.2) - 0.1*1 = -0.28, w += 0.9*(-0.28) - 0.1*1 = -0.352 -> 0.268
    optimizer = SGD(params, lr=0.1, momentum=0.9, nesterov=True)
    assert _run(optimizer, params, [2.0, 1.0]) == pytest.approx([0.62, 0.268])


def test_adagrad():
    params = _one(1.0)
    # s1 = 4, w = 1 - 0.5*2/2 = 0.5; s2 = 4 + 1 = 5, w = 0.5 - 0.5*1/sqrt(5)
    history = _run(AdaGrad(params, lr=0.5, eps=0.0), params, [2.0, 1.0])
    assert history == pytest.approx([0.5, 0.5 - 0.5 / math.sqrt(5)])


def test_rmsprop():
    params = _one(1.0)
    # m1 = 0.5*4 = 2, w = 1 - 0.1*2/sqrt(2); m2 = 0.5*2 + 0.5*1 = 1.5, w -= 0.1*1/sqrt(1.5)
    history = _run(RMSProp(params, lr=0.1, decay=0.5, eps=0.0), params, [2.0, 1.0])
    first = 1 - 0.2 / math.sqrt(2)
    assert history == pytest.approx([first, first - 0.1 / math.sqrt(1.5)])


def test_rmsprop_default_decay():
    assert RMSProp(_one(0.0)).decay == 0.99


def test_adam_bias_correction():
    params = _one(1.0)
    optimizer = Adam(params, lr=0.1, beta1=0.9, beta2=0.999, eps=0.0)
    # step 1: m = 0.2, v = 0.004; corrected m = 2, v = 4 -> w = 1 - 0.1*2/2 = 0.9
    # step 2: m = 0.18 + 0.1*(-1) = 0.08, v = 0.003996 + 0.001 = 0.004996
    #   corrected m = 0.08/0.19, v = 0.004996/(1 - 0.999^2)
    m_hat = 0.08 / (1 - 0.9**2)
    v_hat = 0.004996 / (1 - 0.999**2)
    history = _run(optimizer, params, [2.0, -1.0])
    assert history == pytest.approx([0.9, 0.9 - 0.1 * m_hat / math.sqrt(v_hat)])
    assert optimizer.steps == 2


def test_adam_defaults():
    optimizer = Adam(_one(0.0))
    assert (optimizer.lr, optimizer.beta1, optimizer.beta2, optimizer.eps) == (1e-3, 0.9, 0.999, 1e-8)


def test_eps_enters_the_denominator():
    params = _one(1.0)
    AdaGrad(params, lr=1.0, eps=1.0).step({"w": np.array([1.0])})
    assert params["w"][0] == pytest.approx(1 - 1 / (1 + 1))


OPTIMIZERS = [
    lambda p: SGD(p, lr=0.1),
    lambda p: SGD(p, lr=0.1, momentum=0.9, nesterov=True),
    lambda p: AdaGrad(p, lr=0.1),
    lambda p: RMSProp(p, lr=0.01),
    lambda p: Adam(p, lr=0.01),
]


@pytest.mark.parametrize("make", OPTIMIZERS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_updates_in_place_keep_dtype_and_leave_grads_alone(make, dtype):
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((3, 4)).astype(dtype)
    bias = np.zeros(3, dtype=dtype)
    params = {"weight": weight, "bias": bias}
    optimizer = make(params)
    grads = {"weight": rng.standard_normal((3, 4)).astype(dtype), "bias": np.ones(3, dtype=dtype)}
    grads_before = {k: v.copy() for k, v in grads.items()}
    start = weight.copy()
    for _ in range(3):
        optimizer.step(grads)
    assert params["weight"] is weight and params["bias"] is bias
    assert weight.dtype == dtype and bias.dtype == dtype
    assert not np.array_equal(weight, start)
    assert np.all(bias < 0)  # moved against a positive gradient
    for name in grads:
        assert np.array_equal(grads[name], grads_before[name])


@pytest.mark.parametrize("make", OPTIMIZERS)
def test_minimises_a_quadratic(make):
    target = np.array([1.0, -2.0, 0.5])
    params = {"w": np.zeros(3)}
    optimizer = make(params)
    for _ in range(2000):
        optimizer.step({"w": params["w"] - target})
    np.testing.assert_allclose(params["w"], target, atol=1e-2)


def test_float32_and_float64_agree():
    results = {}
    for dtype in (np.float32, np.float64):
        params = _one(1.0, dtype)
        results[dtype] = _run(Adam(params, lr=0.1), params, [2.0, -1.0, 0.5])
    assert results[np.float32] == pytest.approx(results[np.float64], rel=1e-6)


def test_learning_rate_can_be_changed_between_steps():
    params = _one(1.0)
    optimizer = SGD(params, lr=0.1)
    optimizer.step({"w": np.array([1.0])})
    optimizer.lr = 0.01
    optimizer.step({"w": np.array([1.0])})
    assert params["w"][0] == pytest.approx(1 - 0.1 - 0.01)


def test_grads_must_match_params():
    params = {"weight": np.zeros((2, 3)), "bias": np.zeros(2)}
    optimizer = SGD(params, lr=0.1)
    with pytest.raises(ValueError, match=r"names that are not parameters of this optimiser: \['b'\]; "
                       r"the parameters are \['bias', 'weight'\]"):
        optimizer.step({"weight": np.zeros((2, 3)), "b": np.zeros(2)})
    with pytest.raises(ValueError, match=r"grads\['weight'\] has shape \(3, 2\) but params\['weight'\] has shape \(2, 3\)"):
        optimizer.step({"weight": np.zeros((3, 2)), "bias": np.zeros(2)})
    with pytest.raises(TypeError, match="dtype float32 but params"):
        optimizer.step({"weight": np.zeros((2, 3), np.float32), "bias": np.zeros(2)})
    with pytest.raises(TypeError, match="must be an ndarray"):
        optimizer.step({"weight": [[0.0] * 3] * 2, "bias": np.zeros(2)})
    with pytest.raises(TypeError, match="dict"):
        optimizer.step([np.zeros((2, 3)), np.zeros(2)])
    # a rejected step changes nothing
    assert optimizer.steps == 0 and not params["weight"].any()


def test_bad_construction():
    with pytest.raises(ValueError, match=r"lr must lie in \(0"):
        SGD(_one(0.0), lr=0)
    with pytest.raises(TypeError, match="lr must be a number"):
        SGD(_one(0.0), lr="fast")
    with pytest.raises(ValueError, match="momentum"):
        SGD(_one(0.0), lr=0.1, momentum=1.0)
    with pytest.raises(ValueError, match="nesterov"):
        SGD(_one(0.0), lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="decay"):
        RMSProp(_one(0.0), decay=1.5)
    with pytest.raises(ValueError, match="beta1"):
        Adam(_one(0.0), beta1=1.0)
    with pytest.raises(ValueError, match="empty"):
        Adam({})
    with pytest.raises(TypeError, match=r"params\['w'\] must be a float32 or float64"):
        Adam({"w": np.zeros(2, dtype=np.int64)})
    readonly = np.zeros(2)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        Adam({"w": readonly})
