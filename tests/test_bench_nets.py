"""The nets family and --isolate of `python -m fastconv.bench`, on tiny nets (no speed is judged here)."""
import json

import numpy as np
import pytest

from fastconv.bench import isolate, nets, runner, suite
from fastconv.bench.__main__ import main

TINY_SETTINGS = runner.TINY


# --- the nets -------------------------------------------------------------------------

def test_the_issue_nets_have_their_shapes():
    cases = {case.name: case for case in nets.NET_CASES}
    assert set(cases) == {"cs231n-3layer", "vgg-bn", "resnet18-net-b1", "resnet18-net-b16"}
    three_layer = cases["cs231n-3layer"]
    assert (three_layer.batch, three_layer.input_shape, three_layer.optimizer[0]) == (50, (3, 32, 32), "adam")
    assert three_layer.spec[0] == ("conv", 3, 32, 7, 1, 3, True)
    assert [entry[0] for entry in three_layer.spec] == ["conv", "relu", "maxpool", "flatten", "linear", "relu",
                                                        "linear"]
    assert three_layer.spec[4] == ("linear", 32 * 16 * 16, 100) and three_layer.spec[6] == ("linear", 100, 10)
    vgg = cases["vgg-bn"]
    assert (vgg.batch, vgg.input_shape, vgg.optimizer) == (64, (3, 32, 32), ("sgd", {"momentum": 0.9}))
    convs = [entry for entry in vgg.spec if entry[0] == "conv"]
    assert [(entry[1], entry[2], entry[3]) for entry in convs] == [(3, 64, 3), (64, 64, 3), (64, 128, 3),
                                                                  (128, 128, 3)]
    assert vgg.spec[-1] == ("linear", 128 * 8 * 8, 10)
    assert cases["resnet18-net-b1"].batch == 1 and cases["resnet18-net-b16"].batch == 16
    assert cases["resnet18-net-b16"].x_shape == (16, 3, 224, 224)


def test_resnet18_has_resnet18s_parameters_and_work():
    model, _ = nets.fastconv_net(nets.find("resnet18-net-b1"), np.float32)
    # torchvision's resnet18 has 11,689,512 parameters
    assert sum(value.size for value in model.params.values()) == 11_689_512
    # and about 1.82 G multiply-adds per 224x224 image
    assert nets.find("resnet18-net-b1").forward_gflop() == pytest.approx(2 * 1.814, rel=0.01)
    projections = [layer for path, layer in nets.leaf_layers(model) if "shortcut.0" in path]
    assert [(layer.kernel_size, layer.stride) for layer in projections] == [((1, 1), (2, 2))] * 3


def test_select_splits_nets_from_the_suite():
    assert nets.select(None) == (list(nets.NET_CASES), None)
    chosen, rest = nets.select("nets,conv")
    assert chosen == list(nets.NET_CASES) and rest == "conv"
    chosen, rest = nets.select("vgg-bn")
    assert [case.name for case in chosen] == ["vgg-bn"] and rest == ""
    with pytest.raises(ValueError, match="valid names are: conv, maxpool, .*nets, .*resnet18-b16.*resnet18-net-b16"):
        nets.select("vgg")


def test_leaf_layers_walk_sequentials_and_residuals():
    model, _ = nets.fastconv_net(nets.find("tiny-resnet", tiny=True), np.float64)
    paths = [path for path, _ in nets.leaf_layers(model)]
    assert paths[:4] == ["0", "1", "2", "3"]
    assert "4.body.0" in paths and "4.add" in paths and "8.shortcut.0" in paths


@pytest.mark.parametrize("name", [case.name for case in nets.TINY_NET_CASES])
def test_the_torch_twin_computes_the_same_net(name):
    torch = pytest.importorskip("torch")
    case = nets.find(name, tiny=True)
    x, y = nets.make_inputs(case, np.float64)
    model, optimizer = nets.fastconv_net(case, np.float64)
    net, torch_optimizer = nets.torch_net(torch, case, np.float64)
    if case.pass_name == nets.INFERENCE:
        with torch.no_grad():
            expected = net(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(model.forward(x), expected, rtol=1e-10, atol=1e-10)
        return
    # two training steps on both sides: the same losses and the same parameters after
    from fastconv.train import Trainer

    trainer = Trainer(model, optimizer, batch_size=case.batch, verbose=False)
    for _ in range(2):
        loss = trainer.train_step(x, y)
        torch_optimizer.zero_grad()
        torch_loss = torch.nn.functional.cross_entropy(net(torch.from_numpy(x)), torch.from_numpy(y))
        torch_loss.backward()
        torch_optimizer.step()
        assert loss == pytest.approx(float(torch_loss.detach()), rel=1e-10)
    torch_params = [p.detach().numpy() for p in net.parameters()]
    assert len(torch_params) == len(model.params)
    for ours, theirs in zip(model.params.values(), torch_params):
        np.testing.assert_allclose(ours, theirs, rtol=1e-8, atol=1e-10)


def test_the_timed_calls_run():
    for case in nets.TINY_NET_CASES:
        call = nets.fastconv_call(case, np.float32)
        result = call()
        if case.pass_name == nets.TRAIN:
            assert isinstance(result, float) and np.isfinite(result)
        else:
            assert result.shape == (case.batch, case.classes) and result.dtype == np.float32


def test_measure_case_row_in_process():
    torch = pytest.importorskip("torch")
    case = nets.find("tiny-3layer", tiny=True)
    row = nets.measure_case(case, "float32", TINY_SETTINGS, torch)
    assert row["family"] == "nets" and row["operation"] == "net train" and row["case"] == case.name
    assert row["fastconv_ms"] > 0 and row["torch_ms"] > 0
    assert row["fastconv_over_torch"] == pytest.approx(row["fastconv_ms"] / row["torch_ms"])
    assert row["reference_status"] == nets.REFERENCE_STATUS and row["reference_ms"] is None
    assert row["fastconv_peak_bytes"] > 0


def test_profile_rows_cover_every_layer_and_the_step():
    case = nets.find("tiny-vgg", tiny=True)
    rows = nets.profile_fastconv(case, np.float32, steps=2)
    model, _ = nets.fastconv_net(case, np.float32)
    leaves = [path for path, _ in nets.leaf_layers(model)]
    assert [row["layer"] for row in rows] == leaves + ["loss", "optimizer step", "total"]
    for row in rows[:len(leaves)]:
        assert row["forward_ms"] > 0 and row["backward_ms"] > 0
    text = nets.profile_table(case, rows)
    assert "BatchNorm2d" in text and "by layer type" in text
    # the wrappers are gone again
    assert "forward" not in vars(model.layers[0])
    inference = nets.profile_fastconv(nets.find("tiny-resnet", tiny=True), np.float32, steps=1)
    assert any(row["type"] == "add" for row in inference)
    assert all(row["backward_ms"] is None for row in inference)


# --- own processes ----------------------------------------------------------------------

def test_rotations_alternate_the_libraries():
    assert isolate._rotations(["a", "b", "c"], 4) == list("abc" "bca" "cab" "abc")


def test_run_spec_times_a_suite_case_and_a_net():
    spec = {"family": "conv", "case": "tiny-conv", "passes": ["forward", "forward+backward"],
            "library": "fastconv", "dtype": "float64", "threads": 1, "seed": 0, "tiny": True,
            "settings": vars(TINY_SETTINGS), "memory": True}
    result = isolate.run_spec(spec)
    assert set(result["passes"]) == {"forward", "forward+backward"} and not result["torch_warmed"]
    for timed in result["passes"].values():
        assert len(timed["times"]) >= 3 and timed["peak_bytes"] > 0
    net = dict(spec, family="nets", case="tiny-resnet", passes=["inference"], memory=False)
    assert len(isolate.run_spec(net)["passes"]["inference"]["times"]) >= 3


def test_run_spec_skips_a_slow_reference_and_its_later_passes():
    settings = dict(vars(TINY_SETTINGS), reference_budget=0.0)
    spec = {"family": "conv", "case": "tiny-conv", "passes": ["forward", "forward+backward"],
            "library": "reference", "dtype": "float32", "threads": 1, "tiny": True, "settings": settings}
    passes = isolate.run_spec(spec)["passes"]
    assert passes["forward"]["skipped"].startswith("skipped: too slow")
    assert "forward alone" in passes["forward+backward"]["skipped"]


def test_torch_workers_run_a_backward_before_timing():
    pytest.importorskip("torch")
    spec = {"family": "conv", "case": "tiny-conv", "passes": ["forward"], "library": "torch",
            "dtype": "float32", "threads": 1, "tiny": True, "settings": vars(TINY_SETTINGS)}
    assert isolate.run_spec(spec)["torch_warmed"]


def test_run_cases_in_process_gives_rows_of_medians_of_process_medians():
    log = []

    def run(spec):
        log.append(spec["library"])
        return isolate.run_spec(spec)

    with_torch = True
    try:
        import torch  # noqa: F401
    except ImportError:
        with_torch = False
    rows = isolate.run_cases([suite.TINY_CASES[1]], [nets.find("tiny-3layer", tiny=True)],
                             dtype="float32", settings=TINY_SETTINGS, settings_name="tiny", threads=1,
                             tiny=True, with_torch=with_torch, processes=2, run=run)
    libraries = ["fastconv", "torch", "reference"] if with_torch else ["fastconv", "reference"]
    net_libraries = libraries[:-1]
    assert log == isolate._rotations(libraries, 2) + isolate._rotations(net_libraries, 2)
    assert [(row["case"], row["pass"]) for row in rows] == [
        ("tiny-1x1", "forward"), ("tiny-1x1", "forward+backward"), ("tiny-3layer", "train step")]
    for row in rows:
        assert row["timing"] == "own processes"
        per_process = row["process_times_ms"]["fastconv"]
        assert len(per_process) == 2 and len(row["times_ms"]["fastconv"]) == 2
        medians = [float(np.median(times)) for times in per_process]
        assert row["times_ms"]["fastconv"] == pytest.approx(medians)
        assert row["fastconv_ms"] == pytest.approx(float(np.median(medians)))
        assert row["fastconv_peak_bytes"] > 0
        assert (row["torch_ms"] is not None) == with_torch


def test_a_real_worker_process_answers_in_json():
    spec = {"family": "maxpool", "case": "tiny-pool", "passes": ["forward"], "library": "fastconv",
            "dtype": "float32", "threads": 1, "tiny": True, "settings": vars(TINY_SETTINGS)}
    result = isolate.run_worker(spec, timeout=120)
    assert len(result["passes"]["forward"]["times"]) >= 3
    with pytest.raises(RuntimeError, match="worker for fastconv no-such-case failed"):
        isolate.run_worker(dict(spec, case="no-such-case"), timeout=120)


def test_cli_isolate_and_profile(tmp_path, capsys):
    json_path = tmp_path / "nets.json"
    assert main(["--tiny", "--only", "tiny-3layer", "--isolate", "--processes", "1",
                 "--threads", "1", "--profile", "--json", str(json_path)]) == 0
    out = capsys.readouterr().out
    assert "--isolate: each library timed in 1 worker process(es)" in out
    assert "fastconv per-layer times, tiny-3layer" in out
    assert "forward+backward" in out and "harder baseline" in out
    rows = json.loads(json_path.read_text())["results"]
    assert [row["case"] for row in rows] == ["tiny-3layer"]
    assert all(row["timing"] == "own processes" for row in rows)
    with pytest.raises(SystemExit):
        main(["--processes", "0"])


def test_mixed_step_computes_the_same_gradients_either_way():
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[1] / "bench" / "mixed_step.py"
    spec = importlib.util.spec_from_file_location("mixed_step", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    numpy_grads = module.make_step(3, linear="numpy")()
    fastconv_grads = module.make_step(3, linear="fastconv")()
    assert len(numpy_grads) == len(fastconv_grads) == 4
    # the fastconv affine gradients are (out_features, in_features): numpy's transposed
    for index, (ours, theirs) in enumerate(zip(fastconv_grads, numpy_grads)):
        theirs = theirs.T if index < 2 else theirs
        np.testing.assert_allclose(ours, theirs, rtol=2e-4, atol=2e-5)
