"""The benchmark suite and `python -m fastconv.bench`, run on tiny shapes (no speed is judged here)."""
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import fastconv
from fastconv.bench import neighbour, nets, operations, runner, suite
from fastconv.bench.__main__ import main

ROW_KEYS = {
    "operation", "family", "pass", "case", "shape", "x_shape", "dtype", "gflop", "reference_ms",
    "reference_status", "fastconv_ms", "torch_ms", "speedup_vs_reference", "fastconv_over_torch",
    "gflop_per_s", "percent_of_gemm", "fastconv_peak_bytes", "fastconv_result_bytes", "times_ms",
    "stride", "padding",
}


def _torch_available():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


# --- the suite -------------------------------------------------------------------------------

def test_suite_holds_the_issue_shapes():
    conv = {c.name: (c.x_shape, c.w_shape, c.stride, c.padding) for c in suite.CONV_CASES}
    assert conv == {
        "cs231n-nb": ((100, 3, 31, 31), (25, 3, 3, 3), 2, 1),
        "cnn-cifar": ((50, 3, 32, 32), (32, 3, 7, 7), 1, 3),
        "vgg-3x3": ((16, 64, 32, 32), (64, 64, 3, 3), 1, 1),
        "res-s2": ((16, 128, 28, 28), (256, 128, 3, 3), 2, 1),
        "1x1": ((32, 256, 14, 14), (64, 256, 1, 1), 1, 0),
        "alexnet-c1": ((8, 3, 227, 227), (96, 3, 11, 11), 4, 0),
        "vgg-3x3-b256": ((256, 64, 32, 32), (64, 64, 3, 3), 1, 1),
    }
    pool = sorted((c.x_shape, c.kernel_size, c.stride) for c in suite.POOL_CASES)
    assert pool == [((32, 64, 55, 55), 3, 2), ((32, 64, 56, 56), 2, 2), ((100, 3, 32, 32), 2, 2)]


def test_select():
    quick = [case.name for case in suite.select(quick=True)]
    assert "vgg-3x3-b256" not in quick and "vgg-3x3" in quick and "pool-56" in quick
    assert "vgg-3x3-b256" in [case.name for case in suite.select()]
    assert [case.name for case in suite.select("maxpool", quick=True)] == [c.name for c in suite.POOL_CASES]
    # a case named explicitly runs even in --quick
    assert [case.name for case in suite.select("1x1,vgg-3x3-b256", quick=True)] == ["1x1", "vgg-3x3-b256"]
    with pytest.raises(ValueError, match=r"unknown name\(s\) vgg for --only; valid names are: conv, maxpool, .*resnet18-b1"):
        suite.select("vgg")


def test_network_families():
    """Every conv layer of the five networks, distinct shapes once with their counts."""
    from fastconv.bench import networks

    layers = {family: [c for c in networks.all_cases() if c.family == family]
              for family in networks.families()}
    counts = {family: sum(c.count for c in cases) for family, cases in layers.items()}
    assert counts["resnet18-b1"] == 20 and counts["vgg16-b16"] == 13
    assert counts["alexnet-b1"] == 5 and counts["mobilenetv2-b8"] == 52
    assert counts["dcgan_d-b1"] == 5 and counts["dcgan_d-b64"] == 5
    # multiply-adds of the whole network's convolutions, as published (per image)
    gmacs = {family: sum(c.forward_gflop() * c.count for c in cases) / 2 / int(family.split("-b")[1])
             for family, cases in layers.items()}
    assert gmacs["resnet18-b1"] == pytest.approx(1.81, rel=0.01)
    assert gmacs["vgg16-b1"] == pytest.approx(15.35, rel=0.01)
    assert gmacs["mobilenetv2-b1"] == pytest.approx(0.30, rel=0.03)
    # 3.1M + 3 x 33.6M + 8K: the discriminator's 4x4 layers on 32x32, 16x16, 8x8, 4x4, 1x1 outputs
    assert gmacs["dcgan_d-b64"] == pytest.approx(0.1038, rel=0.01)
    depthwise = [c for c in layers["mobilenetv2-b8"] if c.groups > 1]
    assert depthwise and all(c.groups == c.x_shape[1] == c.w_shape[0] for c in depthwise)
    assert {c.family for c in suite.select("resnet18")} == {"resnet18-b1", "resnet18-b16"}
    assert {c.family for c in suite.select("networks")} == set(networks.families())


def test_gflop_and_output_shapes():
    vgg = next(case for case in suite.CONV_CASES if case.name == "vgg-3x3")
    assert vgg.out_shape == (16, 64, 32, 32)
    assert operations.gflop(vgg, "forward") == pytest.approx(2 * 16 * 64 * 32 * 32 * 64 * 3 * 3 / 1e9)
    assert operations.gflop(vgg, "forward+backward") == pytest.approx(3 * operations.gflop(vgg, "forward"))
    alexnet = next(case for case in suite.CONV_CASES if case.name == "alexnet-c1")
    assert alexnet.out_shape == (8, 96, 55, 55)
    pool = next(case for case in suite.POOL_CASES if case.kernel_size == 3)
    assert pool.out_shape == (32, 64, 27, 27)
    assert operations.gflop(pool, "forward") is None


def _gradients(result):
    """Backward results as a tuple without None: (dx,) for pooling, (dx, dw[, db]) for conv."""
    result = result if isinstance(result, tuple) else (result,)
    return [g for g in result if g is not None]


def test_timed_calls_compute_the_results():
    # the timed callables do the real work: fastconv and the reference agree
    for case in suite.TINY_CASES:
        inputs = operations.make_inputs(case, np.float64)
        forward = operations.implementations(case, "forward", inputs)
        np.testing.assert_allclose(forward["fastconv"]()[0], forward["reference"]()[0], rtol=1e-12, atol=1e-12)
        backward = operations.implementations(case, "forward+backward", inputs)
        fast, slow = _gradients(backward["fastconv"]()), _gradients(backward["reference"]())
        assert len(fast) == len(slow) == (3 if case.kind == "conv" else 1)
        for fast_gradient, slow_gradient in zip(fast, slow):
            np.testing.assert_allclose(fast_gradient, slow_gradient, rtol=1e-10, atol=1e-10)


def test_timed_torch_calls_compute_the_results():
    torch = pytest.importorskip("torch")
    for case in suite.TINY_CASES:
        inputs = operations.make_inputs(case, np.float64)
        forward = operations.implementations(case, "forward", inputs, torch)
        np.testing.assert_allclose(forward["torch"]().detach().numpy(), forward["reference"]()[0],
                                   rtol=1e-10, atol=1e-10)
        backward = operations.implementations(case, "forward+backward", inputs, torch)
        expected = _gradients(backward["reference"]())
        backward["torch"]()
        gradients = backward["torch"]()  # a second call: gradients are fresh, not accumulated
        assert len(gradients) == len(expected)
        for gradient, slow in zip(gradients, expected):
            np.testing.assert_allclose(gradient.numpy(), slow, rtol=1e-10, atol=1e-10)


# --- the runner ------------------------------------------------------------------------------

def test_blocks_rotate_and_calls_are_counted():
    log = []
    calls = {name: (lambda name=name: log.append(name)) for name in ("reference", "fastconv", "torch")}
    settings = runner.Settings(blocks=3, block_seconds=1.0, max_calls_per_block=2,
                               reference_budget=10.0, gemm_repeats=1)
    timings = runner.time_alternating(calls, settings)
    # warm-up: one call of each (a fast first call is timed once more), then 3 rounds of blocks
    assert log[:6] == ["reference", "reference", "fastconv", "fastconv", "torch", "torch"]
    r, f, t = ["reference"] * 2, ["fastconv"] * 2, ["torch"] * 2
    assert log[6:] == r + f + t + f + t + r + t + r + f
    assert all(len(timing.times) == 6 for timing in timings.values())


def test_a_slow_first_call_does_not_shorten_the_blocks():
    """A first call slower than a block (cold, or a stall of the machine) must not leave one
    call per block: the warm second call sets the count."""
    log = []

    def slow_once():
        log.append("call")
        if len(log) == 1:
            time.sleep(0.12)

    settings = runner.Settings(blocks=2, block_seconds=0.1, max_calls_per_block=3,
                               reference_budget=10.0, gemm_repeats=1)
    timings = runner.time_alternating({"fastconv": slow_once}, settings)
    assert len(timings["fastconv"].times) == 6


def test_every_block_starts_with_a_pause_and_untimed_calls(monkeypatch):
    log = []
    monkeypatch.setattr(runner.time, "sleep", lambda seconds: log.append(("pause", seconds)))
    calls = {name: (lambda name=name: log.append(name)) for name in ("reference", "fastconv")}
    settings = runner.Settings(blocks=2, block_seconds=1.0, max_calls_per_block=2,
                               reference_budget=10.0, gemm_repeats=1, settle_seconds=0.25,
                               block_warmup_seconds=1.0)
    timings = runner.time_alternating(calls, settings)
    pause = ("pause", 0.25)
    r, f = ["reference"] * 4, ["fastconv"] * 4  # 2 untimed calls, then 2 timed ones
    assert log[4:] == [pause] + r + [pause] + f + [pause] + f + [pause] + r
    assert all(len(timing.times) == 4 for timing in timings.values())
    assert runner.QUICK.settle_seconds >= 0.1 and runner.FULL.settle_seconds >= 0.1


def test_slow_reference_is_skipped_not_extrapolated():
    settings = runner.Settings(blocks=2, block_seconds=0.001, max_calls_per_block=1,
                               reference_budget=0.0, gemm_repeats=1)
    case = suite.TINY_CASES[0]
    rows = runner.run_suite([case], dtype="float32", settings=settings)
    assert [row["pass"] for row in rows] == ["forward", "forward+backward"]
    for row in rows:
        assert row["reference_status"].startswith("skipped: too slow")
        assert row["reference_ms"] is None and row["speedup_vs_reference"] is None
        assert "reference" not in row["times_ms"]
        assert row["fastconv_ms"] > 0 and len(row["times_ms"]["fastconv"]) == 2
    assert "forward alone" in rows[1]["reference_status"]


def test_traced_memory_sees_numpy_allocations():
    def scratch_then_result():
        scratch = np.ones(2_000_000)  # 16 MB, freed before returning
        return scratch[:1_000_000].copy()  # 8 MB result

    peak, held = runner.traced_memory(scratch_then_result)
    assert 24_000_000 <= peak < 25_000_000
    assert 8_000_000 <= held < 8_100_000
    peak, held = runner.traced_memory(lambda: None)
    assert peak < 100_000 and held < 100_000


def test_thread_limits_apply_and_restore():
    from threadpoolctl import threadpool_info

    before = fastconv.get_num_threads()
    with runner.thread_limits(1):
        assert fastconv.get_num_threads() == 1
        assert all(info["num_threads"] == 1 for info in threadpool_info() if info["user_api"] == "blas")
    assert fastconv.get_num_threads() == before


# --- the command line ------------------------------------------------------------------------

def test_cli_writes_table_json_and_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    json_path, plot_path = tmp_path / "out.json", tmp_path / "out.png"
    threads_before = fastconv.get_num_threads()
    assert main(["--tiny", "--threads", "1", "--json", str(json_path), "--plot", str(plot_path)]) == 0
    assert fastconv.get_num_threads() == threads_before
    captured = capsys.readouterr()
    out = captured.out
    for case in suite.TINY_CASES + nets.TINY_NET_CASES:
        assert case.name in out
    assert "geometric mean" in out and "tracemalloc" in out
    total = 2 * len(suite.TINY_CASES) + len(nets.TINY_NET_CASES)
    steps = f"{total}/{total}"
    assert steps in captured.err and steps not in out  # the progress bar is on stderr

    document = json.loads(json_path.read_text())
    assert document["machine"]["threads_used"] == 1
    assert document["machine"]["cpu"] and document["machine"]["numpy"] == np.__version__
    assert document["settings"]["dtype"] == "float32" and document["gemm_gflop_per_s"] > 0
    rows = document["results"]
    # the nets family runs after the shape suite (tests/test_bench_nets.py checks its rows)
    net_rows = [row for row in rows if row["family"] == "nets"]
    assert [row["case"] for row in net_rows] == [case.name for case in nets.TINY_NET_CASES]
    rows = rows[:len(rows) - len(net_rows)]
    assert [(row["case"], row["pass"]) for row in rows] == [
        (case.name, pass_name) for case in suite.TINY_CASES for pass_name in operations.PASSES
    ]
    with_torch = _torch_available()
    for row in rows:
        assert ROW_KEYS <= set(row)
        assert row["dtype"] == "float32"
        assert row["reference_status"] == "ok" and row["reference_ms"] > 0
        assert row["fastconv_ms"] == pytest.approx(float(np.median(row["times_ms"]["fastconv"])))
        assert (row["torch_ms"] is not None) == with_torch
        assert row["fastconv_peak_bytes"] >= row["fastconv_result_bytes"] > 0
        if row["family"] == "conv":
            assert row["gflop_per_s"] == pytest.approx(row["gflop"] / row["fastconv_ms"] * 1e3)
            assert row["percent_of_gemm"] == pytest.approx(
                100 * row["gflop_per_s"] / document["gemm_gflop_per_s"])
        else:
            assert row["gflop"] is row["gflop_per_s"] is row["percent_of_gemm"] is None
    samples = document["gemm_gflop_per_s_samples"]
    assert len(samples) == 1 + len(suite.TINY_CASES) + len(nets.TINY_NET_CASES)
    assert document["gemm_gflop_per_s"] == max(samples)
    assert {mean["operation"] for mean in document["geometric_means"]} == {
        "conv fwd", "conv fwd+bwd", "maxpool fwd", "maxpool fwd+bwd", "net train", "net infer", "all"
    }
    assert plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_without_torch_or_matplotlib(tmp_path, monkeypatch, capsys):
    # a None entry in sys.modules makes `import name` raise ImportError
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    json_path, plot_path = tmp_path / "out.json", tmp_path / "out.png"
    code = main(["--tiny", "--only", "tiny-1x1", "--dtype", "float64", "--json", str(json_path),
                 "--plot", str(plot_path)])
    assert code == 0
    captured = capsys.readouterr()
    header = captured.out.splitlines()[0]
    assert "fastconv ms" in header and "torch" not in header
    assert "torch: not installed" in captured.out and "torch: not installed" in captured.err
    assert "matplotlib is not installed" in captured.err and "pip install" in captured.err
    assert not plot_path.exists()
    rows = json.loads(json_path.read_text())["results"]
    assert len(rows) == 2
    assert all(row["torch_ms"] is None and row["dtype"] == "float64" for row in rows)


def test_cli_rejects_bad_arguments(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--only", "no-such-case"])
    assert exit_info.value.code == 2
    assert "valid names are" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--threads", "0"])


def _environment_finding_fastconv():
    """os.environ for a child Python that imports this same fastconv (installed or in place)."""
    package_root = os.path.dirname(os.path.dirname(fastconv.__file__))
    return dict(os.environ, PYTHONPATH=package_root + os.pathsep + os.environ.get("PYTHONPATH", ""))


def test_module_entry_point_runs():
    # `python -m fastconv.bench` reaches main(); --list keeps the subprocess cheap (the full
    # command line is run in-process above)
    completed = subprocess.run(
        [sys.executable, "-m", "fastconv.bench", "--list"],
        capture_output=True, text=True, env=_environment_finding_fastconv(), timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    listed = completed.stdout.splitlines()
    assert len(listed) == len(suite.all_cases()) + len(nets.all_cases())
    assert listed[-1].startswith("nets") and "resnet18-net-b16" in listed[-1]
    assert "vgg-3x3-b256" in listed[len(suite.CONV_CASES) - 1] and "full run only" in listed[len(suite.CONV_CASES) - 1]


def _run_bench_script(name, *args, timeout):
    """Run bench/<name> in a child process that finds this fastconv; its stdout."""
    script = os.path.join(os.path.dirname(__file__), os.pardir, "bench", name)
    completed = subprocess.run(
        [sys.executable, script, *args],
        capture_output=True, text=True, env=_environment_finding_fastconv(), timeout=timeout,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def test_mixed_step_script_runs():
    # bench/mixed_step.py: a training step mixing fastconv kernels and NumPy matmuls
    stdout = _run_bench_script("mixed_step.py", "--batch", "2", "--steps", "2", "--rounds", "2",
                               timeout=120)
    assert "batch 2," in stdout and stdout.count(".") >= 2


def test_conv_call_script_runs():
    # bench/conv_call.py: one layer's forward by one algorithm
    stdout = _run_bench_script("conv_call.py", "1", "im2col", "((2,3,8,8),(4,3,3,3),1,1)", "3",
                               timeout=120)
    words = stdout.split()
    assert words[0] == "min" and words[2] == "med" and 0 < float(words[1]) <= float(words[3])


def test_im2col_copy_script_runs_and_times_a_correct_copy(monkeypatch):
    # bench/im2col_copy.py: the compiled im2col alone, into a kept buffer
    stdout = _run_bench_script("im2col_copy.py", "3", timeout=120)
    rows = [line.split() for line in stdout.splitlines()]
    assert len(rows) == 4
    assert all(float(row[-5]) > 0 and float(row[-2]) >= float(row[-5]) for row in rows)
    # what it times is the kernel fastconv.im2col runs, on the same window
    import importlib.util

    bench = os.path.join(os.path.dirname(__file__), os.pardir, "bench")
    monkeypatch.syspath_prepend(bench)  # the script imports bench/_timing.py, as when run
    path = os.path.join(bench, "im2col_copy.py")
    spec = importlib.util.spec_from_file_location("im2col_copy", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    x = np.random.default_rng(1).standard_normal((2, 3, 9, 7), dtype=np.float32)
    window = script._im2col.window_inputs(x, 3, 2, 1)
    cols = np.empty((27, 2 * window.out_height * window.out_width), np.float32)
    script._compiled.im2col.im2col(x[:, :, None], cols, script._im2col._kernel_window(window), 1)
    np.testing.assert_array_equal(cols, fastconv.reference.im2col(x, 3, stride=2, padding=1))


@pytest.mark.parametrize("mode", [[], ["--weight-gradient"]])
def test_gemm_pieces_script_runs(mode):
    # bench/gemm_pieces.py: each suite conv with its GEMMs split and unsplit, or its
    # backward with the weight gradient transposed and not
    stdout = _run_bench_script("gemm_pieces.py", "--threads", "1", "--rounds", "1",
                               "--calls", "1", *mode, timeout=300)
    assert ("backward" in stdout.splitlines()[0]) == bool(mode)
    rows = [line.split() for line in stdout.splitlines()[2:]]
    assert [row[0] for row in rows] == [c.name for c in suite.CONV_CASES if not c.full_only]
    assert all(float(row[1]) > 0 and float(row[2]) > 0 for row in rows)


def test_winograd_bands_script_runs_both_ways():
    # bench/winograd_bands.py: batch-1 and small-batch layers with whole Winograd bands per
    # thread and with bands shared by the threads
    stdout = _run_bench_script("winograd_bands.py", "--threads", "2", "--rounds", "1",
                               "--calls", "1", timeout=300)
    rows = [line.split() for line in stdout.splitlines()[2:]]
    assert len(rows) == 15
    assert all(float(row[-4]) > 0 and float(row[-3]) > 0 and row[-1] in ("whole", "shared")
               for row in rows)
    chosen = {" ".join(row[:-5]): row[-1] for row in rows}
    assert chosen["b1 l4 512ch 7x7 2x2"] == "shared"        # 8 tiles a thread
    assert chosen["b4 l3 256ch 14x14 2x2"] == "whole"       # 98 tiles a thread


def test_winograd_bands_script_forces_each_way(monkeypatch):
    """The constants the script sets make plan() take each way (where the layer is wide
    enough to share), whatever the shipped constants choose."""
    import importlib.util

    bench = os.path.join(os.path.dirname(__file__), os.pardir, "bench")
    monkeypatch.syspath_prepend(bench)  # the script imports bench/_timing.py, as when run
    path = os.path.join(bench, "winograd_bands.py")
    spec = importlib.util.spec_from_file_location("winograd_bands", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    from fastconv import _tuning

    saved = _tuning.SHARED_BANDS_MIN_EXCESS, _tuning.SHARED_BANDS_MAX_TILES
    threads = fastconv.get_num_threads()
    fastconv.set_num_threads(2)
    try:
        for way, constants in script._WAYS.items():
            _tuning.SHARED_BANDS_MIN_EXCESS, _tuning.SHARED_BANDS_MAX_TILES = constants
            for name in ("b1 l4 512ch 7x7 2x2", "b16 vgg 64ch 32x32 4x4"):
                assert script._plan_shares(*script.CASES[name], "float32") == (way == "shared")
    finally:
        _tuning.SHARED_BANDS_MIN_EXCESS, _tuning.SHARED_BANDS_MAX_TILES = saved
        fastconv.set_num_threads(threads)


# --- --busy-neighbour ------------------------------------------------------------------------

needs_affinity = pytest.mark.skipif(neighbour.available() is not None,
                                    reason="pinning a process to a core needs Linux")


def _cpu_ticks(pid):
    """User + system clock ticks the process has run (/proc/<pid>/stat fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


@needs_affinity
def test_busy_neighbour_spins_pinned_to_one_core_and_stops():
    with neighbour.BusyNeighbour() as busy:
        pid = busy.process.pid
        assert busy.core == max(os.sched_getaffinity(0))
        assert os.sched_getaffinity(pid) == {busy.core}
        before = _cpu_ticks(pid)
        time.sleep(0.5)
        assert busy.running()
        # it spins: at least a fifth of the half second on the CPU (100 ticks a second)
        assert _cpu_ticks(pid) - before >= 10
    assert busy.process.poll() is not None


@needs_affinity
def test_busy_neighbour_stops_by_itself_at_its_bound():
    with neighbour.BusyNeighbour(seconds=0.3) as busy:
        deadline = time.monotonic() + 20
        while busy.running() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not busy.running()
        assert busy.process.returncode == 0  # it left its loop, nobody killed it


@needs_affinity
def test_busy_neighbour_rejects_a_core_it_may_not_use():
    with pytest.raises(ValueError, match="core 100000 is not one"):
        neighbour.BusyNeighbour(core=100000)


@needs_affinity
def test_cli_times_beside_a_busy_neighbour(tmp_path, monkeypatch, capsys):
    started = []

    class Recorded(neighbour.BusyNeighbour):
        def __enter__(self):
            started.append(super().__enter__())
            assert self.running()
            return self

    monkeypatch.setattr(neighbour, "BusyNeighbour", Recorded)
    json_path = tmp_path / "out.json"
    assert main(["--tiny", "--only", "tiny-1x1", "--threads", "2", "--busy-neighbour",
                 "--json", str(json_path)]) == 0
    assert len(started) == 1 and started[0].process.poll() is not None  # stopped afterwards
    out = capsys.readouterr().out
    assert f"busy neighbour (--busy-neighbour): a process spinning on core {started[0].core}" in out
    document = json.loads(json_path.read_text())
    assert document["settings"]["busy_neighbour_core"] == started[0].core
    assert len(document["results"]) == 2


def test_cli_busy_neighbour_does_not_apply_to_the_oracle(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--tiny", "--oracle", "--busy-neighbour"])
    assert exit_info.value.code == 2
    assert "--busy-neighbour" in capsys.readouterr().err
