"""fastconv.train: the minibatch loop, history, lr decay, L2, sanity checks, progress bar, bad input."""
import io
import math

import numpy as np
import pytest

from fastconv.layers import Dropout, Linear, ReLU, Sequential
from fastconv.optim import SGD, Adam
from fastconv.train import (
    ProgressBar,
    Trainer,
    accuracy,
    expected_initial_loss,
    initial_loss,
    overfit_small_subset,
    predict,
)


def _blobs(num_samples=300, num_features=4, num_classes=3, seed=0, dtype=np.float32):
    """Well separated Gaussian clusters: a linear model can classify them almost perfectly."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((num_classes, num_features)) * 4
    y = rng.integers(0, num_classes, size=num_samples)
    x = centres[y] + rng.standard_normal((num_samples, num_features))
    return x.astype(dtype), y


def _mlp(seed=0, in_features=4, hidden=16, num_classes=3, dtype=np.float32, last_scale=None):
    return Sequential([
        Linear(in_features, hidden, dtype=dtype, rng=seed),
        ReLU(),
        Linear(hidden, num_classes, dtype=dtype, rng=seed + 1, weight_scale=last_scale),
    ])


def _quiet_trainer(model, lr=1e-2, **options):
    options.setdefault("rng", 0)
    return Trainer(model, Adam(model.params, lr=lr), verbose=False, **options)


def test_fit_learns_and_records_history():
    x, y = _blobs()
    model = _mlp()
    trainer = _quiet_trainer(model, lr=3e-2, batch_size=32)
    history = trainer.fit(x[:200], y[:200], x[200:], y[200:], epochs=6)
    assert len(history["batch_loss"]) == 6 * math.ceil(200 / 32)
    for name in ("epoch_loss", "train_acc", "val_acc", "epoch_seconds", "lr"):
        assert len(history[name]) == 6, name
    assert history["epoch_loss"][-1] < history["epoch_loss"][0]
    assert history["val_acc"][-1] >= 0.95
    assert history["val_acc"][-1] == accuracy(model, x[200:], y[200:])
    assert all(seconds > 0 for seconds in history["epoch_seconds"])
    # a second fit continues and appends
    trainer.fit(x[:200], y[:200], epochs=2)
    assert len(history["epoch_loss"]) == 8 and len(history["val_acc"]) == 6


def test_same_seeds_give_identical_runs_and_shuffling_matters():
    x, y = _blobs(seed=1)
    runs = []
    for shuffle_seed in (0, 0, 1):
        model = _mlp(seed=3)
        trainer = _quiet_trainer(model, batch_size=16, rng=shuffle_seed)
        trainer.fit(x, y, epochs=2)
        runs.append((trainer.history["batch_loss"], model.params["0.weight"].copy()))
    assert runs[0][0] == runs[1][0] and np.array_equal(runs[0][1], runs[1][1])
    assert runs[0][0] != runs[2][0]  # another shuffle, another sequence of batches


def test_learning_rate_decay():
    x, y = _blobs(num_samples=40)
    model = _mlp()
    trainer = Trainer(model, SGD(model.params, lr=0.1), lr_decay=0.5, verbose=False, rng=0)
    trainer.fit(x, y, epochs=3)
    assert trainer.history["lr"] == pytest.approx([0.1, 0.05, 0.025])  # the lr each epoch used
    assert trainer.optimizer.lr == pytest.approx(0.0125)


def test_l2_penalty_enters_loss_and_step():
    x, y = _blobs(num_samples=8)
    plain, regularised = _mlp(seed=4), _mlp(seed=4)
    plain_loss = Trainer(plain, SGD(plain.params, lr=0.1), verbose=False).train_step(x, y)
    weight = regularised.params["2.weight"].copy()
    penalty = 0.5 * 0.3 * sum(float(np.sum(w.astype(np.float64) ** 2))
                              for name, w in regularised.params.items() if name.endswith("weight"))
    loss = Trainer(regularised, SGD(regularised.params, lr=0.1), l2=0.3, verbose=False).train_step(x, y)
    assert loss == pytest.approx(plain_loss + penalty, rel=1e-5)
    # the step differs by exactly lr * l2 * w for weights, and not at all for biases
    difference = regularised.params["2.weight"] - plain.params["2.weight"]
    np.testing.assert_allclose(difference, -0.1 * 0.3 * weight, atol=1e-6)
    np.testing.assert_allclose(regularised.params["2.bias"], plain.params["2.bias"], atol=1e-7)


def test_svm_and_custom_losses_train():
    x, y = _blobs(seed=2)
    for loss in ("svm", lambda scores, labels: __import__("fastconv").losses.softmax_loss(scores, labels)):
        model = _mlp(seed=5)
        trainer = _quiet_trainer(model, loss=loss, batch_size=32)
        trainer.fit(x, y, epochs=4)
        assert trainer.history["train_acc"][-1] >= 0.95


def test_initial_loss_checks():
    x, y = _blobs(num_samples=100, seed=3)
    x = x / 10
    for loss, expected in (("softmax", math.log(3)), ("svm", 2.0)):
        measured, wanted = initial_loss(_mlp(last_scale=1e-4), x, y, loss=loss)
        assert wanted == pytest.approx(expected)
        assert abs(measured - wanted) < 0.01
    assert expected_initial_loss("softmax", 10) == pytest.approx(2.302585, rel=1e-6)
    assert expected_initial_loss("svm", 10) == 9.0
    # a badly scaled last layer fails the check by far
    measured, wanted = initial_loss(_mlp(last_scale=10.0), x * 10, y)
    assert abs(measured - wanted) > 1.0


def test_overfit_small_subset_reaches_full_accuracy():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((30, 10)).astype(np.float32)
    y = rng.integers(0, 5, size=30)  # random labels: only memorisation fits them
    model = _mlp(in_features=10, hidden=64, num_classes=5)
    trainer = _quiet_trainer(model, lr=2e-2, batch_size=10)
    assert overfit_small_subset(trainer, x, y, num_samples=30, epochs=60) == 1.0
    # a model with a learning rate far too small does not: the check can fail
    stuck = _mlp(in_features=10, hidden=64, num_classes=5)
    trainer = _quiet_trainer(stuck, lr=1e-7, batch_size=10)
    assert overfit_small_subset(trainer, x, y, num_samples=30, epochs=3) < 0.9


def test_predict_uses_evaluation_mode_and_restores_training():
    model = Sequential([Linear(4, 3, rng=0), Dropout(0.9, rng=0)])
    x, _ = _blobs(num_samples=20)
    model.train()
    first = predict(model, x, batch_size=7)
    assert model.training and model[1].training
    np.testing.assert_array_equal(first, predict(model, x))
    expected = (x @ model[0].params["weight"].T).argmax(axis=1)
    np.testing.assert_array_equal(first, expected)
    model.eval()
    predict(model, x)
    assert not model.training


def test_verbose_writes_a_bar_and_summaries_to_the_stream_and_quiet_writes_nothing(capsys):
    x, y = _blobs(num_samples=50)
    stream = io.StringIO()
    model = _mlp()
    Trainer(model, Adam(model.params), stream=stream, batch_size=10, rng=0).fit(x, y, x, y, epochs=2)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4  # a non-terminal stream gets each bar once, when it closes
    assert lines[0].startswith("epoch 1/2 [########################] 5/5 loss")
    assert "train acc" in lines[1] and "val acc" in lines[1] and "lr 0.001" in lines[1]
    assert lines[2].startswith("epoch 2/2")
    _quiet_trainer(_mlp()).fit(x, y, epochs=1)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_default_stream_is_stderr(capsys):
    x, y = _blobs(num_samples=20)
    model = _mlp()
    Trainer(model, Adam(model.params), rng=0).fit(x, y, epochs=1)
    captured = capsys.readouterr()
    assert captured.out == "" and "epoch 1/1" in captured.err


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_redraws_on_a_terminal():
    stream = _Terminal()
    with ProgressBar(4, "demo", stream, width=8, min_interval=0.0) as bar:
        for step in range(4):
            bar.update(loss=1.0 / (step + 1))
    text = stream.getvalue()
    assert text.count("\r") == 5 and text.endswith("\n")
    assert "demo [####....] 2/4 loss 0.5" in text
    assert "demo [########] 4/4 loss 0.25" in text


def test_progress_bar_disabled_and_non_terminal():
    stream = io.StringIO()
    with ProgressBar(3, stream=stream, enabled=False) as bar:
        bar.update(3)
    assert stream.getvalue() == ""
    with ProgressBar(3, stream=stream, width=3) as bar:
        bar.update()
        assert stream.getvalue() == ""  # nothing until close on a log file
    assert stream.getvalue().startswith("[#..] 1/3")
    assert stream.getvalue().count("\n") == 1


def test_bad_arguments():
    model = _mlp()
    optimizer = Adam(model.params)
    x, y = _blobs(num_samples=10)
    with pytest.raises(TypeError, match="model must be a fastconv.layers.Layer"):
        Trainer(lambda v: v, optimizer)
    with pytest.raises(TypeError, match="optimizer must be a fastconv.optim.Optimizer"):
        Trainer(model, object())
    with pytest.raises(ValueError, match="loss must be one of softmax, svm"):
        Trainer(model, optimizer, loss="hinge")
    with pytest.raises(ValueError, match="batch_size"):
        Trainer(model, optimizer, batch_size=0)
    with pytest.raises(ValueError, match="lr_decay"):
        Trainer(model, optimizer, lr_decay=1.5)
    with pytest.raises(ValueError, match="l2"):
        Trainer(model, optimizer, l2=-1)
    trainer = Trainer(model, optimizer, verbose=False)
    with pytest.raises(ValueError, match=r"x_train has shape \(10, 4\), y_train has shape \(9,\)"):
        trainer.fit(x, y[:9])
    with pytest.raises(ValueError, match="integer labels"):
        trainer.fit(x, y.astype(np.float32))
    with pytest.raises(ValueError, match="both x_val and y_val"):
        trainer.fit(x, y, x_val=x)
    with pytest.raises(ValueError, match="epochs"):
        trainer.fit(x, y, epochs=0)
    with pytest.raises(TypeError, match="numpy.ndarrays"):
        trainer.fit(x.tolist(), y)
    with pytest.raises(ValueError, match="'softmax' or 'svm'"):
        expected_initial_loss("mse", 3)


def test_readme_training_snippet_runs_and_learns(capsys):
    import pathlib
    import re

    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("## Training, saving and fine-tuning"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert len(namespace["history"]["val_acc"]) == 10
    assert namespace["accuracy"](namespace["model"], namespace["x"][250:], namespace["y"][250:]) >= 0.75
    assert "epoch 10/10" in capsys.readouterr().err
