"""The course's ``cs231n.solver``: Solver, the minibatch training loop of the assignments."""
from collections.abc import Mapping
import numbers
import pickle

import numpy as np

from ..._memory import retain_freed_memory
from ..._validate import check_flag
from . import optim

__all__ = ["Solver"]

_DATA_KEYS = ("X_train", "y_train", "X_val", "y_val")


def _positive_int(value, name, allow_none=False):
    if allow_none and value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an int >= 1{' or None' if allow_none else ''}, got {value!r}")
    return int(value)


class Solver:
    """Trains a classification model by minibatch gradient descent, as the course's Solver.

    Parameters
    ----------
    model : an object with ``params`` (dict of name -> ndarray) and
        ``loss(X, y=None)``: scores (N, C) when y is None, else (loss, grads) with grads
        keyed as params (e.g. ThreeLayerConvNet, FullyConnectedNet).
    data : dict with 'X_train' (N_train, ...), 'y_train' (N_train,), 'X_val', 'y_val'.
    update_rule : the name of a rule in ``optim`` ('sgd', 'sgd_momentum', 'rmsprop',
        'adam'; default 'sgd') or a function ``rule(w, dw, config) -> (next_w, config)``.
    optim_config : dict of the rule's hyperparameters (e.g. {'learning_rate': 1e-3});
        each parameter gets its own copy, which also keeps that parameter's state.
    lr_decay : the learning rate is multiplied by this after every epoch (1.0).
    batch_size : samples per step (100), drawn with replacement by np.random.choice.
    num_epochs : epochs to train (10); an epoch is max(N_train // batch_size, 1) steps.
    num_train_samples : training accuracy is measured on this many random training
        samples (1000; None: all). num_val_samples : likewise for validation (None: all).
    checkpoint_name : if given, after every accuracy check the solver pickles itself as
        "<checkpoint_name>_epoch_<epoch>.pkl" (model, update_rule, lr_decay, optim_config,
        batch_size, num_train_samples, num_val_samples, epoch and the three histories).
    print_every : print the loss every this many steps (10). verbose : print anything (True).
    retain_memory : call fastconv.retain_freed_memory() (True; not in the course): the
        step's freed arrays stay in the process instead of being faulted in afresh at the
        next step (a whole-process malloc setting; False leaves malloc as it is).

    After ``train()``: ``loss_history`` (every step), ``train_acc_history`` and
    ``val_acc_history`` (after the first step, every epoch and the last step),
    ``best_val_acc``, ``best_params`` (copies of the params with the best validation
    accuracy), which are also put back into ``model.params``. Unknown keyword arguments
    are a ValueError, as in the course.
    """

    def __init__(self, model, data, **kwargs):
        if not hasattr(model, "params") or not isinstance(model.params, Mapping) or not callable(getattr(model, "loss", None)):
            raise TypeError("model must have a dict `params` and a method `loss(X, y=None)`, "
                            f"got {type(model).__name__}")
        if not isinstance(data, Mapping):
            raise TypeError(f"data must be a dict with keys {', '.join(_DATA_KEYS)}, got {type(data).__name__}")
        for key in _DATA_KEYS:
            if key not in data:
                raise ValueError(f"data is missing the key {key!r}; it needs {', '.join(_DATA_KEYS)}")
        for split in ("train", "val"):
            x, y = data[f"X_{split}"], data[f"y_{split}"]
            if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray) or x.ndim < 1 or y.shape != x.shape[:1]:
                raise ValueError(f"data['X_{split}'] and data['y_{split}'] must be arrays with one label per "
                                 f"sample, got shapes {getattr(x, 'shape', None)} and {getattr(y, 'shape', None)}")
            if x.shape[0] == 0:
                raise ValueError(f"data['X_{split}'] has no samples")
        self.model = model
        self.X_train, self.y_train = data["X_train"], data["y_train"]
        self.X_val, self.y_val = data["X_val"], data["y_val"]

        self.update_rule = kwargs.pop("update_rule", "sgd")
        self.optim_config = kwargs.pop("optim_config", {})
        self.lr_decay = kwargs.pop("lr_decay", 1.0)
        self.batch_size = _positive_int(kwargs.pop("batch_size", 100), "batch_size")
        self.num_epochs = _positive_int(kwargs.pop("num_epochs", 10), "num_epochs")
        self.num_train_samples = _positive_int(kwargs.pop("num_train_samples", 1000), "num_train_samples", True)
        self.num_val_samples = _positive_int(kwargs.pop("num_val_samples", None), "num_val_samples", True)
        self.checkpoint_name = kwargs.pop("checkpoint_name", None)
        self.print_every = _positive_int(kwargs.pop("print_every", 10), "print_every")
        self.verbose = kwargs.pop("verbose", True)
        retain_memory = check_flag(kwargs.pop("retain_memory", True), "retain_memory")
        if kwargs:
            raise ValueError("Unrecognized arguments " + ", ".join(f'"{key}"' for key in kwargs))
        if isinstance(self.update_rule, str):
            if self.update_rule not in optim.__all__:
                raise ValueError(f'Invalid update_rule "{self.update_rule}"; the rules are {", ".join(optim.__all__)}')
            self.update_rule = getattr(optim, self.update_rule)
        elif not callable(self.update_rule):
            raise TypeError(f"update_rule must be a rule's name or a function, got {type(self.update_rule).__name__}")
        if not isinstance(self.optim_config, Mapping):
            raise TypeError(f"optim_config must be a dict, got {type(self.optim_config).__name__}")
        if isinstance(self.lr_decay, bool) or not isinstance(self.lr_decay, numbers.Real) or not self.lr_decay > 0:
            raise ValueError(f"lr_decay must be a number > 0, got {self.lr_decay!r}")
        if self.checkpoint_name is not None and not isinstance(self.checkpoint_name, str):
            raise TypeError(f"checkpoint_name must be a str or None, got {type(self.checkpoint_name).__name__}")
        if retain_memory:
            retain_freed_memory()
        self._reset()

    def _reset(self):
        """Set up the bookkeeping: epoch 0, empty histories, one optim config per parameter."""
        self.epoch = 0
        self.best_val_acc = 0
        self.best_params = {}
        self.loss_history = []
        self.train_acc_history = []
        self.val_acc_history = []
        self.optim_configs = {name: dict(self.optim_config) for name in self.model.params}

    def _step(self):
        """One update on a random minibatch (with replacement, np.random.choice as the course)."""
        batch = np.random.choice(self.X_train.shape[0], self.batch_size)
        loss, grads = self.model.loss(self.X_train[batch], self.y_train[batch])
        self.loss_history.append(loss)
        for name, value in self.model.params.items():
            if name not in grads:
                raise ValueError(f"model.loss returned no gradient for the parameter {name!r}")
            next_value, self.optim_configs[name] = self.update_rule(value, grads[name], self.optim_configs[name])
            self.model.params[name] = next_value

    def _save_checkpoint(self):
        if self.checkpoint_name is None:
            return
        checkpoint = {
            "model": self.model,
            "update_rule": self.update_rule,
            "lr_decay": self.lr_decay,
            "optim_config": self.optim_config,
            "batch_size": self.batch_size,
            "num_train_samples": self.num_train_samples,
            "num_val_samples": self.num_val_samples,
            "epoch": self.epoch,
            "loss_history": self.loss_history,
            "train_acc_history": self.train_acc_history,
            "val_acc_history": self.val_acc_history,
        }
        filename = f"{self.checkpoint_name}_epoch_{self.epoch}.pkl"
        if self.verbose:
            print(f'Saving checkpoint to "{filename}"')
        with open(filename, "wb") as handle:
            pickle.dump(checkpoint, handle)

    def check_accuracy(self, X, y, num_samples=None, batch_size=100):
        """Fraction of samples of X (N, ...) whose highest score is the label y (N,).

        num_samples : if given and smaller than N, a random subset of that size (drawn with
        replacement) is scored. batch_size : samples per model.loss(X) call.
        """
        num_samples = _positive_int(num_samples, "num_samples", allow_none=True)
        batch_size = _positive_int(batch_size, "batch_size")
        count = X.shape[0]
        if num_samples is not None and count > num_samples:
            subset = np.random.choice(count, num_samples)
            X, y, count = X[subset], y[subset], num_samples
        predictions = [np.argmax(self.model.loss(X[start:start + batch_size]), axis=1)
                       for start in range(0, count, batch_size)]
        return float(np.mean(np.hstack(predictions) == y))

    def train(self):
        """Run num_epochs epochs of updates, checking accuracy after the first step, every epoch
        and the last step; the best validation parameters end up in model.params."""
        iterations_per_epoch = max(self.X_train.shape[0] // self.batch_size, 1)
        num_iterations = self.num_epochs * iterations_per_epoch
        for t in range(num_iterations):
            self._step()
            if self.verbose and t % self.print_every == 0:
                print(f"(Iteration {t + 1} / {num_iterations}) loss: {self.loss_history[-1]:f}")
            epoch_end = (t + 1) % iterations_per_epoch == 0
            if epoch_end:
                self.epoch += 1
                for config in self.optim_configs.values():
                    if "learning_rate" in config:
                        config["learning_rate"] *= self.lr_decay
            if t == 0 or t == num_iterations - 1 or epoch_end:
                train_acc = self.check_accuracy(self.X_train, self.y_train, num_samples=self.num_train_samples)
                val_acc = self.check_accuracy(self.X_val, self.y_val, num_samples=self.num_val_samples)
                self.train_acc_history.append(train_acc)
                self.val_acc_history.append(val_acc)
                self._save_checkpoint()
                if self.verbose:
                    print(f"(Epoch {self.epoch} / {self.num_epochs}) train acc: {train_acc:f}; val_acc: {val_acc:f}")
                if val_acc > self.best_val_acc:
                    self.best_val_acc = val_acc
                    self.best_params = {name: value.copy() for name, value in self.model.params.items()}
        if self.best_params:
            self.model.params = self.best_params
