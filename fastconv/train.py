"""Minibatch training loop, accuracy, a small progress bar, and the usual sanity checks."""
import math
import numbers
import sys
import time

import numpy as np

from ._memory import retain_freed_memory
from ._validate import check_flag
from .layers.base import Layer
from .layers.core import random_source
from .losses import l2_penalty, softmax_loss, svm_loss
from .optim import Optimizer

LOSSES = {"softmax": softmax_loss, "svm": svm_loss}


class ProgressBar:
    """A one-line text progress bar, e.g. ``epoch 2/10 [#######.......] 45/90 loss 0.4321``.

    On a terminal the line is redrawn in place (at most every `min_interval` seconds);
    on anything else (a log file, a pipe) only the final state is written, once, at close().

    total : number of steps; description : text before the bar; stream : defaults to
    sys.stderr; enabled : False writes nothing.
    """

    def __init__(self, total, description="", stream=None, width=24, enabled=True, min_interval=0.1):
        self.total = max(int(total), 0)
        self.description = description
        self.stream = sys.stderr if stream is None else stream
        self.width = width
        self.enabled = enabled
        self.min_interval = min_interval
        self.count = 0
        self.postfix = {}
        self._started = time.perf_counter()
        self._last_draw = -math.inf
        isatty = getattr(self.stream, "isatty", None)
        self._interactive = bool(isatty and isatty())
        self._closed = False

    def update(self, steps=1, **postfix):
        """Advance by `steps`; keyword values (e.g. loss=0.43) are shown after the bar."""
        self.count = min(self.count + steps, self.total)
        self.postfix.update(postfix)
        now = time.perf_counter()
        if self.enabled and self._interactive and now - self._last_draw >= self.min_interval:
            self._last_draw = now
            self.stream.write("\r" + self.render())
            self.stream.flush()

    def render(self):
        """The current line, without carriage return or newline."""
        filled = self.width if self.total == 0 else self.width * self.count // self.total
        bar = "#" * filled + "." * (self.width - filled)
        elapsed = time.perf_counter() - self._started
        extras = "".join(
            f" {name} {value:.4g}" if isinstance(value, float) else f" {name} {value}"
            for name, value in self.postfix.items()
        )
        prefix = f"{self.description} " if self.description else ""
        return f"{prefix}[{bar}] {self.count}/{self.total}{extras} {elapsed:.1f}s"

    def close(self):
        """Write the final state and end the line."""
        if self.enabled and not self._closed:
            self.stream.write(("\r" if self._interactive else "") + self.render() + "\n")
            self.stream.flush()
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def _check_data(x, y, name):
    if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray):
        raise TypeError(
            f"x_{name} and y_{name} must be numpy.ndarrays, got {type(x).__name__} and {type(y).__name__}"
        )
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise ValueError(f"y_{name} must be a 1-D array of integer labels, got dtype {y.dtype} shape {y.shape}")
    if x.ndim < 1 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"x_{name} and y_{name} must have one sample per label: x_{name} has shape {x.shape}, "
            f"y_{name} has shape {y.shape}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"x_{name} has no samples (shape {x.shape})")


def _positive_int(value, name, allow_none=False):
    if allow_none and value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an int >= 1{' or None' if allow_none else ''}, got {value!r}")
    return int(value)


def _loss_function(loss):
    if callable(loss):
        return loss
    if loss in LOSSES:
        return LOSSES[loss]
    raise ValueError(f"loss must be one of {', '.join(LOSSES)} or a callable (scores, y) -> (loss, dscores), got {loss!r}")


class _EvaluationMode:
    """Put a model in evaluation mode for a block, then restore its previous mode."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        self.was_training = self.model.training
        self.model.eval()

    def __exit__(self, *exc_info):
        if self.was_training:
            self.model.train()


def predict_scores(model, x, batch_size=256):
    """Class scores of `model` on `x`, (N, num_classes), in evaluation mode and in batches,
    by model.infer (layers fused where they can be; nothing kept for a backward).

    The model's training/evaluation mode is restored afterwards.
    """
    batch_size = _positive_int(batch_size, "batch_size")
    infer = getattr(model, "infer", None) or model.forward  # a duck-typed model: its forward
    with _EvaluationMode(model):
        return np.concatenate(
            [infer(x[start:start + batch_size]) for start in range(0, x.shape[0], batch_size)]
        )


def predict(model, x, batch_size=256):
    """Predicted class labels, shape (N,): the argmax of predict_scores."""
    return predict_scores(model, x, batch_size).argmax(axis=1)


def accuracy(model, x, y, batch_size=256):
    """Fraction of samples whose predicted class equals y (a float in [0, 1])."""
    _check_data(x, y, "eval")
    return float(np.mean(predict(model, x, batch_size) == y))


def expected_initial_loss(loss, num_classes, margin=1.0):
    """The loss of a classifier whose scores are all (near) zero: log(C) for softmax
    (every class gets probability 1/C), (C - 1) * margin for the multiclass SVM."""
    if loss == "softmax":
        return math.log(num_classes)
    if loss == "svm":
        return (num_classes - 1) * margin
    raise ValueError(f"loss must be 'softmax' or 'svm', got {loss!r}")


def initial_loss(model, x, y, loss="softmax", batch_size=256):
    """Sanity check before training: (measured loss, expected_initial_loss).

    With small final-layer weights the two should be close (e.g. 2.30 vs log(10) = 2.303);
    a large gap points at the initialisation or the loss wiring. The model runs in
    evaluation mode (no dropout, BatchNorm with running statistics), so nothing changes.
    """
    _check_data(x, y, "check")
    scores = predict_scores(model, x, batch_size)
    measured, _ = _loss_function(loss)(scores, y)
    return measured, expected_initial_loss(loss, scores.shape[1])


class Trainer:
    """Minibatch training of a model (a Layer, e.g. Sequential) with an optimiser.

    Parameters
    ----------
    model : Layer whose forward gives (N, num_classes) scores.
    optimizer : an Optimizer over ``model.params``.
    loss : "softmax", "svm", or a callable (scores, y) -> (loss, dscores).
    batch_size : samples per step; the data are reshuffled every epoch.
    lr_decay : the optimiser's lr is multiplied by this after every epoch (1.0: constant).
    l2 : strength of the L2 penalty 0.5 * l2 * ||w||^2 on every parameter named "*weight".
    train_acc_samples : training accuracy is measured on a random subset of this size
        each epoch (None: the whole training set).
    rng : shuffling source: None (NumPy's global generator), an int seed, a Generator or RandomState.
    verbose : show a progress bar and a summary line per epoch on `stream` (sys.stderr).
    retain_memory : call fastconv.retain_freed_memory() (default True): freed arrays of up to
        32 MiB stay in the process for the next step instead of being faulted in afresh
        (a whole-process malloc setting; False leaves malloc as it is).

    After fit(), ``history`` holds lists: "batch_loss" (every step), "epoch_loss" (mean
    per epoch), "train_acc", "val_acc" (when validation data were given), "epoch_seconds"
    (the training steps only, without evaluation), "lr" (used in each epoch).
    """

    def __init__(self, model, optimizer, *, loss="softmax", batch_size=64, lr_decay=1.0, l2=0.0,
                 train_acc_samples=1000, eval_batch_size=256, rng=None, verbose=True, stream=None,
                 retain_memory=True):
        if not isinstance(model, Layer):
            raise TypeError(f"model must be a fastconv.layers.Layer (e.g. Sequential), got {type(model).__name__}")
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a fastconv.optim.Optimizer, got {type(optimizer).__name__}")
        self.model = model
        self.optimizer = optimizer
        self.loss_function = _loss_function(loss)
        self.batch_size = _positive_int(batch_size, "batch_size")
        if isinstance(lr_decay, bool) or not isinstance(lr_decay, numbers.Real) or not 0 < lr_decay <= 1:
            raise ValueError(f"lr_decay must lie in (0, 1], got {lr_decay!r}")
        self.lr_decay = float(lr_decay)
        if isinstance(l2, bool) or not isinstance(l2, numbers.Real) or not l2 >= 0:
            raise ValueError(f"l2 must be a number >= 0, got {l2!r}")
        self.l2 = float(l2)
        self.train_acc_samples = _positive_int(train_acc_samples, "train_acc_samples", allow_none=True)
        self.eval_batch_size = _positive_int(eval_batch_size, "eval_batch_size")
        self.rng = random_source(rng)
        self.verbose = bool(verbose)
        self.stream = sys.stderr if stream is None else stream
        if check_flag(retain_memory, "retain_memory"):
            retain_freed_memory()
        self.history = {name: [] for name in ("batch_loss", "epoch_loss", "train_acc", "val_acc", "epoch_seconds", "lr")}

    def train_step(self, x, y):
        """One optimiser step on the batch (x, y); returns the loss (with the L2 penalty).

        The model's backward is asked for no input gradient (``need_dx=False``: nobody uses
        the gradient of the data).
        """
        self.model.train()
        scores = self.model.forward(x)
        loss, dscores = self.loss_function(scores, y)
        self.model.backward(dscores, need_dx=False)
        grads = self.model.grads
        if self.l2 > 0:
            penalty, penalty_grads = l2_penalty(self.model.params, self.l2)
            loss += penalty
            grads = {name: grad + penalty_grads[name] if name in penalty_grads else grad for name, grad in grads.items()}
        self.optimizer.step(grads)
        return loss

    def _train_accuracy(self, x, y):
        if self.train_acc_samples is None or self.train_acc_samples >= x.shape[0]:
            return accuracy(self.model, x, y, self.eval_batch_size)
        subset = self.rng.permutation(x.shape[0])[:self.train_acc_samples]
        return accuracy(self.model, x[subset], y[subset], self.eval_batch_size)

    def fit(self, x_train, y_train, x_val=None, y_val=None, epochs=10):
        """Train for `epochs` passes over (x_train, y_train); returns ``history``.

        x_train : (N, ...) samples in the model's dtype; y_train : (N,) integer labels.
        x_val, y_val : optional validation set, scored after every epoch.
        Calling fit again continues training and appends to the history.
        """
        _check_data(x_train, y_train, "train")
        if (x_val is None) != (y_val is None):
            raise ValueError("give both x_val and y_val, or neither")
        if x_val is not None:
            _check_data(x_val, y_val, "val")
        epochs = _positive_int(epochs, "epochs")
        num_samples = x_train.shape[0]
        steps = math.ceil(num_samples / self.batch_size)
        done = len(self.history["epoch_loss"])
        for epoch in range(done + 1, done + epochs + 1):
            order = self.rng.permutation(num_samples)
            losses = []
            started = time.perf_counter()
            with ProgressBar(steps, f"epoch {epoch}/{done + epochs}", self.stream, enabled=self.verbose) as bar:
                for start in range(0, num_samples, self.batch_size):
                    batch = order[start:start + self.batch_size]
                    losses.append(self.train_step(x_train[batch], y_train[batch]))
                    bar.update(loss=losses[-1])
            seconds = time.perf_counter() - started
            self._record_epoch(losses, seconds, x_train, y_train, x_val, y_val)
            self.optimizer.lr *= self.lr_decay
        return self.history

    def _record_epoch(self, losses, seconds, x_train, y_train, x_val, y_val):
        history = self.history
        history["batch_loss"].extend(losses)
        history["epoch_loss"].append(float(np.mean(losses)))
        history["epoch_seconds"].append(seconds)
        history["lr"].append(self.optimizer.lr)
        history["train_acc"].append(self._train_accuracy(x_train, y_train))
        summary = (
            f"  loss {history['epoch_loss'][-1]:.4f}  train acc {history['train_acc'][-1]:.4f}"
        )
        if x_val is not None:
            history["val_acc"].append(accuracy(self.model, x_val, y_val, self.eval_batch_size))
            summary += f"  val acc {history['val_acc'][-1]:.4f}"
        if self.verbose:
            self.stream.write(f"{summary}  {seconds:.2f} s  lr {self.optimizer.lr:.3g}\n")
            self.stream.flush()


def overfit_small_subset(trainer, x, y, num_samples=50, epochs=20):
    """Sanity check: train on the first `num_samples` samples only; return their accuracy.

    A model and optimiser that work should reach (nearly) 1.0 -- fitting a tiny set is
    easy, so failing to points at a bug (wrong gradients, a learning rate far off).
    Trains `trainer`'s model in place: use a fresh model, not the one to keep.
    """
    _check_data(x, y, "subset")
    num_samples = _positive_int(num_samples, "num_samples")
    x_small, y_small = x[:num_samples], y[:num_samples]
    trainer.fit(x_small, y_small, epochs=epochs)
    return accuracy(trainer.model, x_small, y_small, trainer.eval_batch_size)
