"""The planner: the cost model's estimates, algorithm="measure", wisdom files, auto's use of
wisdom. Nothing here times anything itself (measure times, but no test asserts a duration)."""
import json

import numpy as np
import pytest

import fastconv
import fastconv.layers
from fastconv import algorithms, planner
from fastconv._geometry import conv_geometry

from _helpers import assert_close


@pytest.fixture(autouse=True)
def no_wisdom():
    fastconv.forget_wisdom()
    yield
    fastconv.forget_wisdom()


def _problem(x_shape=(2, 16, 8, 8), w_shape=(16, 16, 3, 3), stride=1, padding=1, dtype=np.float64):
    rng = np.random.default_rng(0)
    return (rng.standard_normal(x_shape).astype(dtype), rng.standard_normal(w_shape).astype(dtype),
            rng.standard_normal(w_shape[0]).astype(dtype), stride, padding)


GEOMETRIES = [
    ((1, 512, 7, 7), (512, 512, 3, 3), 1, 1, 1),
    ((16, 64, 32, 32), (64, 64, 3, 3), 1, 1, 1),
    ((1, 64, 56, 56), (128, 64, 3, 3), 2, 1, 1),
    ((8, 3, 227, 227), (96, 3, 11, 11), 4, 0, 1),
    ((8, 96, 56, 56), (96, 1, 3, 3), 1, 1, 96),
    ((4, 256, 14, 14), (64, 256, 1, 1), 1, 0, 1),
    ((2, 8, 9, 9, 9), (4, 8, 3, 3, 3), 1, 1, 1),
]


@pytest.mark.parametrize("x_shape, w_shape, stride, padding, groups", GEOMETRIES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_supported_algorithm_has_a_positive_finite_cost_for_every_pass(
        x_shape, w_shape, stride, padding, groups, dtype):
    geometry = conv_geometry(x_shape, w_shape, stride, padding, groups=groups)
    for pass_name in planner.PASSES:
        estimates = planner.costs(geometry, dtype, pass_name)
        assert set(estimates) == set(fastconv.available_algorithms(geometry))
        assert all(np.isfinite(v) and v > 0 for v in estimates.values()), (pass_name, estimates)


def test_cost_grows_with_the_batch_and_the_weight_transform_does_not():
    one = conv_geometry((1, 256, 14, 14), (256, 256, 3, 3), 1, 1)
    many = one._replace(batch=16)
    im2col = algorithms.REGISTRY["im2col"]
    small = im2col.cost(one, planner.machine(np.float32, 1), "forward")
    large = im2col.cost(many, planner.machine(np.float32, 1), "forward")
    assert 12 < large / small <= 16.5  # about linear in the batch
    # Winograd pays its weight transform once per call whatever the batch: at batch 1 its
    # cost per image is higher than at batch 16
    winograd = algorithms.REGISTRY["winograd-4x4"]
    per_image_one = winograd.cost(one, planner.machine(np.float32, 1), "forward")
    per_image_many = winograd.cost(many, planner.machine(np.float32, 1), "forward") / 16
    assert per_image_one > 1.2 * per_image_many


def test_inference_pass_costs_winograd_without_its_weight_transform():
    """An inference (conv_inference, a layer's weights) is costed as a forward whose Winograd
    weight transforms are kept between calls: cheaper by the transform, the rest the same."""
    for x_shape, w_shape, stride in (((1, 512, 7, 7), (512, 512, 3, 3), 1),
                                     ((1, 256, 14, 14), (512, 256, 3, 3), 2)):
        geometry = conv_geometry(x_shape, w_shape, stride, 1)
        forward = planner.costs(geometry, np.float32, "forward")
        inference = planner.costs(geometry, np.float32, "inference")
        assert set(forward) == set(inference)
        for name in forward:
            if getattr(algorithms.REGISTRY[name], "KEEPS_WEIGHTS", False):
                assert inference[name] < 0.9 * forward[name], name  # 512 or 256 x 512 kernels
            else:
                assert inference[name] == forward[name], name


def test_measured_inference_is_wisdom_of_its_own_pass():
    x, w, b, stride, padding = _problem(dtype=np.float32)
    out = fastconv.conv.conv_inference(2, x, w, b, stride, padding, algorithm="measure")
    assert_close(out, fastconv.reference.conv2d_forward(x, w, b, stride, padding)[0], 2e-4)
    assert [key[0] for key in planner._wisdom] == ["inference"]


def test_auto_never_times_anything(monkeypatch):
    calls = []
    monkeypatch.setattr(planner.time, "perf_counter", lambda: calls.append(1) or 0.0)
    x, w, b, stride, padding = _problem()
    out, cache = fastconv.conv2d_forward(x, w, b, stride, padding)
    fastconv.conv2d_backward(np.ones_like(out), cache)
    assert calls == []


def test_measure_times_each_candidate_once_and_remembers_the_winner(monkeypatch):
    x, w, b, stride, padding = _problem()
    geometry = conv_geometry(x.shape, w.shape, stride, padding)
    candidates = fastconv.available_algorithms(geometry)
    assert len(candidates) >= 3
    # a clock that makes winograd-2x2 the fastest forward
    runs = []
    for name in candidates:
        module = algorithms.REGISTRY[name]
        original = module.forward

        def recording(*args, _name=name, _original=original):
            runs.append(_name)
            return _original(*args)

        monkeypatch.setattr(module, "forward", recording)
    ticks = iter(range(10**6))
    monkeypatch.setattr(planner.time, "perf_counter",
                        lambda: next(ticks) * (1 if runs and runs[-1] == "winograd-2x2" else 100))
    out, cache = fastconv.conv2d_forward(x, w, b, stride, padding, algorithm="measure")
    assert cache.algorithm == "winograd-2x2" and cache.planning == "measure"
    assert sorted(runs) == sorted(candidates * 2)  # each candidate twice, nothing more
    expected, _ = fastconv.reference.conv2d_forward(x, w, b, stride, padding)
    assert_close(out, expected)
    runs.clear()
    again, cache = fastconv.conv2d_forward(x, w, b, stride, padding, algorithm="measure")
    assert runs == ["winograd-2x2"] and cache.algorithm == "winograd-2x2"
    np.testing.assert_array_equal(again, out)
    # and auto now follows the wisdom
    runs.clear()
    assert fastconv.conv2d_forward(x, w, b, stride, padding)[1].algorithm == "winograd-2x2"
    assert runs == ["winograd-2x2"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_measure_gives_the_reference_results_forward_and_backward(dtype):
    x, w, b, stride, padding = _problem(dtype=dtype)
    out, cache = fastconv.conv2d_forward(x, w, b, stride, padding, algorithm="measure")
    dout = np.cos(out)
    got = fastconv.conv2d_backward(dout, cache)
    expected, ref_cache = fastconv.reference.conv2d_forward(x, w, b, stride, padding)
    tolerance = 1e-4 if dtype == np.float32 else None  # a Winograd algorithm may win
    assert_close(out, expected, tolerance)
    for g, e in zip(got, fastconv.reference.conv2d_backward(dout, ref_cache)):
        assert_close(g, e, tolerance)
    keys = {key[0] for key in planner._wisdom}
    assert keys == {"forward", "backward"}


def test_measure_for_a_transposed_convolution():
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((2, 4, 6, 6)), rng.standard_normal((4, 3, 3, 3))
    out, cache = fastconv.conv_transpose2d_forward(x, w, None, 2, 1, 1, algorithm="measure")
    expected, ref_cache = fastconv.reference.conv_transpose2d_forward(x, w, None, 2, 1, 1)
    assert_close(out, expected)
    for g, e in zip(fastconv.conv_transpose2d_backward(np.cos(out), cache),
                    fastconv.reference.conv_transpose2d_backward(np.cos(out), ref_cache)):
        if e is not None:
            assert_close(g, e)
    assert {key[0] for key in planner._wisdom} == {"backward-data", "forward", "backward-weights"}


def _measured_wisdom(tmp_path):
    for x_shape, w_shape, stride, padding, groups in GEOMETRIES[:4]:
        rng = np.random.default_rng(2)
        x = rng.standard_normal(x_shape).astype(np.float32)[:1]
        w = rng.standard_normal(w_shape).astype(np.float32)
        fastconv.conv2d_forward(x, w, None, stride, padding, groups=groups, algorithm="measure")
    path = tmp_path / "wisdom.json"
    fastconv.save_wisdom(path)
    return path


def test_wisdom_round_trip_gives_the_same_plans(tmp_path):
    path = _measured_wisdom(tmp_path)
    measured = dict(planner._wisdom)
    assert len(measured) == 4
    fastconv.forget_wisdom()
    assert planner._wisdom == {}
    assert fastconv.load_wisdom(path) == 4
    assert planner._wisdom == measured
    for key, name in measured.items():
        geometry = planner.ConvGeometry(*key[3])
        assert planner.choose(geometry, np.float32, "auto", key[0]).NAME == name


def _altered(tmp_path, change):
    path = _measured_wisdom(tmp_path)
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))
    fastconv.forget_wisdom()
    return path


@pytest.mark.parametrize("label, change, message", [
    ("wrong version", lambda d: d.update(version=99), r"version 99; this fastconv reads version 1"),
    ("another format", lambda d: d.update(format="fftw"), r"format is not 'fastconv-wisdom'"),
    ("no plans", lambda d: d.pop("plans"), r"no list of plans"),
    ("unknown algorithm", lambda d: d["plans"][0].update(algorithm="fft"), r"unknown algorithm 'fft'"),
    ("algorithm that cannot do it", lambda d: d["plans"][0].update(algorithm="gemm-1x1"),
     r"'gemm-1x1' cannot do its geometry"),
    ("unknown pass", lambda d: d["plans"][0].update({"pass": "sideways"}), r"unknown pass"),
    ("bad dtype", lambda d: d["plans"][0].update(dtype="float16"), r"dtype 'float16'"),
    ("bad threads", lambda d: d["plans"][0].update(threads=0), r"threads 0"),
    ("a geometry field missing", lambda d: d["plans"][0]["geometry"].pop("stride"), r"geometry without"),
    ("a float in the geometry", lambda d: d["plans"][0]["geometry"].update(batch=1.5),
     r"field batch must be an int"),
    ("a string tuple", lambda d: d["plans"][0]["geometry"].update(kernel="33"), r"kernel must be 1 to 3 ints"),
    ("unknown padding mode", lambda d: d["plans"][0]["geometry"].update(padding_mode="mirror"),
     r"unknown padding_mode"),
    ("an extra key", lambda d: d["plans"][0].update(note=1), r"must have the keys"),
])
def test_altered_wisdom_is_a_clear_error_and_loads_nothing(tmp_path, label, change, message):
    path = _altered(tmp_path, change)
    with pytest.raises(ValueError, match=message):
        fastconv.load_wisdom(path)
    assert planner._wisdom == {}


@pytest.mark.parametrize("content", [b"", b"{not json", b"\xff\xfe\x00garbage", b"[1, 2, 3]",
                                     b'{"format": "fastconv-wisdom"'])
def test_corrupt_wisdom_file_is_a_clear_error(tmp_path, content):
    path = tmp_path / "wisdom.json"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="not a usable fastconv wisdom file"):
        fastconv.load_wisdom(path)
    assert planner._wisdom == {}


def test_truncated_wisdom_file_is_a_clear_error(tmp_path):
    path = _measured_wisdom(tmp_path)
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    fastconv.forget_wisdom()
    with pytest.raises(ValueError, match="not JSON"):
        fastconv.load_wisdom(path)


def test_wisdom_from_another_machine_loads_with_a_warning(tmp_path):
    path = _altered(tmp_path, lambda d: d.update(machine={"cpu": "Some Other CPU", "blas": []}))
    with pytest.warns(RuntimeWarning, match="measured on .*Some Other CPU"):
        assert fastconv.load_wisdom(path) == 4


def test_layers_plan_once_and_reuse_the_plan(monkeypatch):
    layer = fastconv.layers.Conv2d(16, 16, 3, padding=1, algorithm="measure", rng=0)
    x = np.random.default_rng(3).standard_normal((2, 16, 8, 8)).astype(np.float32)
    first = layer.forward(x)
    layer.backward(np.ones_like(first))
    plans = dict(planner._wisdom)
    assert {key[0] for key in plans} == {"forward", "backward"}
    monkeypatch.setattr(planner.time, "perf_counter", lambda: pytest.fail("measured again"))
    for _ in range(3):
        np.testing.assert_array_equal(layer.forward(x), first)
        layer.backward(np.ones_like(first))
    assert planner._wisdom == plans


def test_no_compiled_algorithm_is_an_unsupported_algorithm_error(monkeypatch):
    geometry = conv_geometry((1, 2, 5, 5), (2, 2, 3, 3), 1, 1)
    monkeypatch.setattr(algorithms, "supporting", lambda g: [])
    with pytest.raises(fastconv.UnsupportedAlgorithm, match="no compiled algorithm handles"):
        planner.choose(geometry, np.float32, "auto")
