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


# --- the compiled loop against the NumPy formulas (fastconv.reference.optim) ---------------

from fastconv import _compiled  # noqa: E402
from fastconv import optim as optim_module  # noqa: E402
from fastconv.reference import optim as reference_optim  # noqa: E402

from _helpers import with_layout  # noqa: E402

ALL_RULES = {
    "sgd": lambda p, **kw: SGD(p, lr=0.1, **kw),
    "momentum": lambda p, **kw: SGD(p, lr=0.1, momentum=0.9, **kw),
    "nesterov": lambda p, **kw: SGD(p, lr=0.05, momentum=0.8, nesterov=True, **kw),
    "adagrad": lambda p, **kw: AdaGrad(p, lr=0.1, **kw),
    "rmsprop": lambda p, **kw: RMSProp(p, lr=0.01, decay=0.9, **kw),
    "adam": lambda p, **kw: Adam(p, lr=0.01, **kw),
}

# several tasks for one parameter (2**14 elements each), one-element, odd and empty ones
PARAM_SHAPES = {"big": (3, 2**14 + 7), "one": (1,), "odd": (5, 7, 3), "bias": (11,), "empty": (0, 4)}


def _params(dtype, layout="C", seed=0):
    rng = np.random.default_rng(seed)
    return {name: with_layout(rng.standard_normal(shape).astype(dtype), layout)
            for name, shape in PARAM_SHAPES.items()}


def _grads(dtype, seed, layout="C"):
    rng = np.random.default_rng(seed)
    return {name: with_layout(rng.standard_normal(shape).astype(dtype), layout)
            for name, shape in PARAM_SHAPES.items()}


def _copy(params):
    return {name: value.copy(order="K") for name, value in params.items()}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rule", ALL_RULES)
def test_compiled_updates_are_bit_identical_to_the_numpy_formulas(rule, dtype):
    compiled_params = _params(dtype)
    reference_params = _copy(compiled_params)
    compiled = ALL_RULES[rule](compiled_params)
    numpy = ALL_RULES[rule](reference_params, backend="reference")
    for step in range(4):
        grads = _grads(dtype, seed=10 + step, layout="F" if step == 1 else "C")
        compiled.step(grads)
        numpy.step(grads)
    for name in PARAM_SHAPES:
        assert np.array_equal(compiled_params[name], reference_params[name]), name
        for key, value in numpy.state[name].items():
            assert np.array_equal(compiled.state[name][key], value), (name, key)


def test_the_reference_backend_runs_the_reference_functions(monkeypatch):
    calls = []
    monkeypatch.setattr(reference_optim, "adam_update", lambda *args: calls.append(args[0].shape))
    params = {"w": np.zeros((2, 3))}
    Adam(params, backend="reference").step({"w": np.ones((2, 3))})
    assert calls == [(2, 3)]


def test_compiled_backend_does_not_call_the_reference(monkeypatch):
    monkeypatch.setattr(reference_optim, "adam_update", None)  # would raise if called
    params = {"w": np.zeros((2, 3)), "b": np.zeros(3)}
    Adam(params).step({"w": np.ones((2, 3)), "b": np.ones(3)})
    assert params["w"][0, 0] < 0


@pytest.mark.parametrize("layout", ["F", "strided"])
@pytest.mark.parametrize("rule", ALL_RULES)
def test_other_parameter_layouts_give_the_same_updates(rule, layout):
    # Fortran-ordered parameters run compiled (read flat in their order), strided ones by the
    # NumPy formulas; both in place, both equal to the C-ordered run
    base = _params(np.float64)
    other = {name: with_layout(value, layout) for name, value in base.items()}
    objects = dict(other)
    first, second = ALL_RULES[rule](base), ALL_RULES[rule](other)
    for step in range(3):
        grads = _grads(np.float64, seed=step)
        first.step(grads)
        second.step({name: with_layout(grad, layout) for name, grad in grads.items()})
    for name in PARAM_SHAPES:
        assert other[name] is objects[name]
        assert np.array_equal(other[name], base[name]), name


def test_a_replaced_state_array_of_another_layout_still_updates_correctly():
    params = {"w": np.zeros((4, 5))}
    twin = {"w": np.zeros((4, 5))}
    optimizer, reference_run = SGD(params, lr=0.1, momentum=0.9), SGD(twin, lr=0.1, momentum=0.9,
                                                                       backend="reference")
    grad = {"w": np.arange(20.0).reshape(4, 5)}
    optimizer.step(grad)
    reference_run.step(grad)
    optimizer.state["w"]["velocity"] = np.asfortranarray(optimizer.state["w"]["velocity"])
    optimizer.step(grad)
    reference_run.step(grad)
    assert np.array_equal(params["w"], twin["w"])


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_results_do_not_depend_on_the_thread_count(threads):
    import fastconv

    before = fastconv.get_num_threads()
    params = _params(np.float32)
    twin = _copy(params)
    try:
        fastconv.set_num_threads(threads)
        optimizer = Adam(params, lr=0.01)
        for step in range(3):
            optimizer.step(_grads(np.float32, seed=step))
    finally:
        fastconv.set_num_threads(before)
    reference_run = Adam(twin, lr=0.01, backend="reference")
    for step in range(3):
        reference_run.step(_grads(np.float32, seed=step))
    for name in PARAM_SHAPES:
        assert np.array_equal(params[name], twin[name])


# --- the freeze contract: grads may leave out parameters -----------------------------------

@pytest.mark.parametrize("backend", ["cython", "reference"])
@pytest.mark.parametrize("rule", ALL_RULES)
def test_parameters_left_out_of_grads_and_their_state_stay_untouched(rule, backend):
    params = {"frozen": np.ones((3, 4)), "live": np.ones(5)}
    optimizer = ALL_RULES[rule](params, backend=backend)
    optimizer.step({"frozen": np.full((3, 4), 0.5), "live": np.full(5, 0.5)})
    frozen_before = params["frozen"].copy()
    state_before = {key: (value.copy() if isinstance(value, np.ndarray) else value)
                    for key, value in optimizer.state["frozen"].items()}
    live_before = params["live"].copy()
    optimizer.step({"live": np.full(5, 0.5)})
    assert np.array_equal(params["frozen"], frozen_before)
    for key, value in optimizer.state["frozen"].items():
        assert np.array_equal(value, state_before[key]), key
    assert not np.array_equal(params["live"], live_before)
    assert optimizer.steps == 2
    optimizer.step({})  # everything frozen: nothing moves
    assert np.array_equal(params["frozen"], frozen_before)


@pytest.mark.parametrize("backend", ["cython", "reference"])
def test_adam_counts_steps_per_parameter(backend):
    params = {"a": np.zeros(3), "b": np.zeros(3)}
    optimizer = Adam(params, lr=0.1, backend=backend)
    grad = np.array([1.0, -2.0, 0.5])
    optimizer.step({"a": grad})
    optimizer.step({"a": grad, "b": grad})
    assert optimizer.state["a"]["step"] == 2 and optimizer.state["b"]["step"] == 1
    # b's first update is bias-corrected for its own first step: lr * sign(grad), as a's was
    fresh = {"c": np.zeros(3)}
    Adam(fresh, lr=0.1, backend=backend).step({"c": grad})
    assert np.array_equal(params["b"], fresh["c"])


def test_the_task_table_covers_every_element_once():
    sizes = (optim_module._TASK_ELEMENTS * 2 + 3, 1, 0, 5)
    tasks = optim_module._tasks(sizes)
    covered = [np.zeros(size, int) for size in sizes]
    for row, start, stop in tasks:
        assert 0 < stop - start <= optim_module._TASK_ELEMENTS
        covered[row][start:stop] += 1
    assert all((cover == 1).all() for cover in covered)
    assert _compiled.optim is not None


@pytest.mark.parametrize("threads", [2, 3])
def test_a_step_past_the_parallel_threshold_runs_threaded_and_equals_reference(threads, monkeypatch):
    import fastconv

    size = optim_module._PARALLEL_MIN_ELEMENTS + 5
    params = {"w": np.random.default_rng(0).standard_normal(size).astype(np.float32), "b": np.zeros(3, np.float32)}
    twin = _copy(params)
    grads = {"w": np.random.default_rng(1).standard_normal(size).astype(np.float32), "b": np.ones(3, np.float32)}
    used = []
    real = _compiled.optim.adam
    monkeypatch.setattr(_compiled.optim, "adam", lambda *args: used.append(args[-1]) or real(*args))
    before = fastconv.get_num_threads()
    try:
        fastconv.set_num_threads(threads)
        Adam(params, lr=0.01).step(grads)
    finally:
        fastconv.set_num_threads(before)
    Adam(twin, lr=0.01, backend="reference").step(grads)
    assert used == [threads]
    assert all(np.array_equal(params[name], twin[name]) for name in params)
