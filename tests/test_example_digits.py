"""examples/train_digits.py: the README's run reaches its accuracy; timings, plot, missing extras."""
import importlib.util
import pathlib
import sys

import numpy as np
import pytest

import fastconv

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "train_digits.py"


@pytest.fixture
def example():
    spec = importlib.util.spec_from_file_location("train_digits", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads = fastconv.get_num_threads()
    yield module
    fastconv.set_num_threads(threads)  # --threads is process-wide


def test_default_run_reaches_97_percent_and_reports_timings(example, tmp_path, capsys):
    # the README's command, plus --threads 1 (these tiny tensors are fastest on one thread;
    # the accuracy does not depend on it) and a plot file
    plot = tmp_path / "digits.png"
    results = example.main(["--quiet", "--threads", "1", "--reference-batches", "1", "--plot", str(plot)])
    out = capsys.readouterr().out
    assert results["test_accuracy"] >= 0.97
    assert f"test accuracy {results['test_accuracy']:.4f} after 12 epochs" in out
    assert "initial softmax loss" in out
    history = results["history"]
    assert len(history["epoch_loss"]) == 12 and history["epoch_loss"][-1] < history["epoch_loss"][0] / 10
    assert set(results["batch_seconds"]) == {"cython", "reference"}
    assert all(seconds > 0 for seconds in results["batch_seconds"].values())
    assert "ms per batch" in out and "s per epoch" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_data_split_is_standardised_and_stratified(example):
    x_train, y_train, x_val, y_val, x_test, y_test = example.load_digits_split(seed=0)
    assert x_train.shape[1:] == (1, 8, 8) and x_train.dtype == np.float32
    assert len(y_train) + len(y_val) + len(y_test) == 1797 and len(y_test) == 360
    assert abs(float(x_train.mean())) < 1e-5 and abs(float(x_train.std()) - 1) < 1e-5
    assert set(np.unique(y_test)) == set(range(10))


def test_the_model_is_conv_relu_pool_linear_and_initial_loss_is_near_log10(example):
    from fastconv.layers import Conv2d, Flatten, Linear, MaxPool2d, ReLU
    from fastconv.train import initial_loss

    model = example.build_model(seed=0)
    assert [type(layer) for layer in model] == [Conv2d, ReLU, MaxPool2d, Flatten, Linear]
    x_train, y_train, *_ = example.load_digits_split(seed=0)
    measured, expected = initial_loss(model, x_train, y_train)
    assert abs(measured - expected) < 0.2


def test_a_tiny_conv_net_overfits_a_tiny_subset(example):
    from fastconv.optim import Adam
    from fastconv.train import Trainer, overfit_small_subset

    x_train, y_train, *_ = example.load_digits_split(seed=0)
    fastconv.set_num_threads(1)  # tiny tensors: one thread is fastest (restored by the fixture)
    model = example.build_model(seed=1, channels=4)
    trainer = Trainer(model, Adam(model.params, lr=2e-2), batch_size=10, verbose=False, rng=0)
    assert overfit_small_subset(trainer, x_train, y_train, num_samples=40, epochs=15) == 1.0


def test_missing_scikit_learn_gives_a_clear_message(example, monkeypatch, capsys):
    # None in sys.modules makes `import` fail, also for submodules imported earlier
    for name in [name for name in sys.modules if name == "sklearn" or name.startswith("sklearn.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "sklearn", None)
    with pytest.raises(SystemExit) as stop:
        example.main(["--quiet"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "needs scikit-learn" in err and 'pip install "fastconv[examples]"' in err


def test_missing_matplotlib_fails_before_training(example, monkeypatch, capsys, tmp_path):
    for name in [name for name in sys.modules if name == "matplotlib" or name.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(SystemExit) as stop:
        example.main(["--quiet", "--plot", str(tmp_path / "x.png")])
    assert stop.value.code == 2
    captured = capsys.readouterr()
    assert "needs matplotlib" in captured.err and "test accuracy" not in captured.out
