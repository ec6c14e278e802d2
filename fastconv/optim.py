"""First-order optimisers that update a dict of parameter arrays in place from a dict of gradients.

The updates run in one compiled loop over all the parameters of a step (_kernels/_optim.pyx),
with no temporary arrays; fastconv.reference.optim holds the same formulas in NumPy, used for
backend="reference" and for any parameter (or state array) that is not contiguous.
"""
import numbers

import numpy as np

from . import _backend, _compiled
from ._settings import get_num_threads
from .reference import optim as reference

# Elements per task of the compiled loop: threads share a large parameter, a small one is one task.
_TASK_ELEMENTS = 2**14
# Below this many elements in a step, one thread: the loop is nearly memory-bound, and waking a
# second thread costs about 0.5 ms whenever the other core is busy. ThreeLayerConvNet's Adam
# step (825K float32) took 0.63 ms on one thread and 1.15 ms (median 6.7) on two, on the
# shared benchmark machine.
_PARALLEL_MIN_ELEMENTS = 2**22


def _check_number(value, name, *, low, high=None, low_inclusive=False, high_inclusive=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    above = value >= low if low_inclusive else value > low
    below = True if high is None else (value <= high if high_inclusive else value < high)
    if not (above and below):
        interval = (
            ("[" if low_inclusive else "(") + f"{low}, "
            + ("inf)" if high is None else f"{high}" + ("]" if high_inclusive else ")"))
        )
        raise ValueError(f"{name} must lie in {interval}, got {value!r}")
    return value


def _memory_order(a):
    if a.flags.c_contiguous:
        return "C"
    if a.flags.f_contiguous:
        return "F"
    return None


def _tasks(sizes):
    """(tasks, 3) intp table of (parameter row, first element, end) over parameters of `sizes`."""
    rows = [(row, start, min(start + _TASK_ELEMENTS, size))
            for row, size in enumerate(sizes) for start in range(0, size, _TASK_ELEMENTS)]
    return np.array(rows, dtype=np.intp).reshape(-1, 3)


class Optimizer:
    """Base class: holds the parameter dict, checks gradients, and keeps per-parameter state.

    params : dict of name -> ndarray (float32 or float64, writeable), e.g. ``model.params``.
        The optimiser keeps its own dict of the same array objects and updates them in place.
    lr : float > 0; may be changed between steps (learning-rate decay).
    backend : "auto" or "cython" (the compiled loop), or "reference" (NumPy formulas,
        fastconv.reference.optim); both give the same results.

    ``state[name]`` holds each parameter's state arrays (created at its first update, with
    the parameter's shape, dtype and layout); ``steps`` counts the calls of step().
    """

    # the state arrays of a parameter, in the compiled kernel's pointer-table order
    _state_keys = ()

    def __init__(self, params, lr, *, backend="auto"):
        if not isinstance(params, dict):
            raise TypeError(f"params must be a dict of name -> ndarray, got {type(params).__name__}")
        if not params:
            raise ValueError("params is empty: the optimiser has nothing to update")
        for name, value in params.items():
            if not isinstance(value, np.ndarray) or value.dtype not in (np.float32, np.float64):
                raise TypeError(
                    f"params[{name!r}] must be a float32 or float64 ndarray, got "
                    f"{type(value).__name__}{' ' + str(value.dtype) if isinstance(value, np.ndarray) else ''}"
                )
            if not value.flags.writeable:
                raise ValueError(f"params[{name!r}] (shape {value.shape}) is read-only; it cannot be updated in place")
        self.params = dict(params)
        self.lr = _check_number(lr, "lr", low=0)
        self.backend = _backend.check_name(backend, "the backend argument")
        self.state = {name: {} for name in self.params}
        self.steps = 0
        self._task_tables = {}

    def _check_grads(self, grads):
        if not isinstance(grads, dict):
            raise TypeError(f"grads must be a dict of name -> ndarray, got {type(grads).__name__}")
        extra = sorted(grads.keys() - self.params.keys(), key=str)
        if extra:
            raise ValueError(
                f"grads has names that are not parameters of this optimiser: {extra}; "
                f"the parameters are {sorted(self.params)}"
            )
        for name, grad in grads.items():
            param = self.params[name]
            if not isinstance(grad, np.ndarray):
                raise TypeError(f"grads[{name!r}] must be an ndarray, got {type(grad).__name__}")
            if grad.shape != param.shape:
                raise ValueError(
                    f"grads[{name!r}] has shape {grad.shape} but params[{name!r}] has shape {param.shape}"
                )
            if grad.dtype != param.dtype:
                raise TypeError(
                    f"grads[{name!r}] has dtype {grad.dtype} but params[{name!r}] has dtype {param.dtype}"
                )

    def step(self, grads):
        """Update in place every parameter named in `grads` (shapes and dtypes as params).

        A parameter missing from `grads` (a frozen layer's) is left as it is, and so is its
        state (Adam counts steps per parameter). A name that is not a parameter raises
        ValueError, before anything is updated.
        """
        self._check_grads(grads)
        self.steps += 1
        use_reference = _backend.resolve(self.backend) == "reference"
        compiled = {}
        for name in (name for name in self.params if name in grads):
            param, state = self.params[name], self.state[name]
            self._start(param, state)
            order = _memory_order(param)
            if (use_reference or order is None or param.size == 0
                    or not all(self._state_fits(state[key], param, order) for key in self._state_keys)):
                self._update(param, grads[name], state)
            else:
                compiled.setdefault(param.dtype, []).append((name, order))
        for dtype, entries in compiled.items():
            self._run_compiled(dtype, entries, grads)

    @staticmethod
    def _state_fits(array, param, order):
        """Whether a state array can be read flat alongside param (it may have been replaced)."""
        return (isinstance(array, np.ndarray) and array.dtype == param.dtype
                and array.shape == param.shape and array.flags.writeable
                and (array.flags.c_contiguous if order == "C" else array.flags.f_contiguous))

    def _start(self, param, state):
        """Create the state arrays a parameter lacks (zeros like it) before its update."""
        for key in self._state_keys:
            if key not in state:
                state[key] = np.zeros_like(param)

    def _run_compiled(self, dtype, entries, grads):
        """One compiled call updating the parameters `entries` [(name, memory order)] of `dtype`."""
        keep = []  # gradients copied into the parameters' order: alive until the call returns
        pointers = np.empty((len(entries), 2 + len(self._state_keys)), dtype=np.intp)
        for row, (name, order) in enumerate(entries):
            grad = np.asarray(grads[name], order=order)
            keep.append(grad)
            state = self.state[name]
            arrays = [self.params[name], grad] + [state[key] for key in self._state_keys]
            pointers[row] = [array.ctypes.data for array in arrays]
        sizes = tuple(self.params[name].size for name, _ in entries)
        tasks = self._task_tables.get(sizes)
        if tasks is None:
            tasks = self._task_tables[sizes] = _tasks(sizes)
        threads = 1 if sum(sizes) < _PARALLEL_MIN_ELEMENTS else get_num_threads()
        self._kernel(dtype.type, pointers, tasks, [name for name, _ in entries], threads)

    def _update(self, param, grad, state):
        """The reference update of one parameter (fastconv.reference.optim)."""
        raise NotImplementedError

    def _kernel(self, dtype, pointers, tasks, names, threads):
        """The compiled update of the parameters in `pointers` (their `names`)."""
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with (Nesterov) momentum.

    Plain:     param -= lr * grad
    Momentum:  velocity = momentum * velocity - lr * grad;  param += velocity
    Nesterov:  same velocity;  param += momentum * velocity - lr * grad
               (the step taken from the look-ahead point, written for the current parameters)
    """

    def __init__(self, params, lr, momentum=0.0, nesterov=False, *, backend="auto"):
        super().__init__(params, lr, backend=backend)
        self.momentum = _check_number(momentum, "momentum", low=0, high=1, low_inclusive=True)
        if nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        self.nesterov = bool(nesterov)
        self._state_keys = ("velocity",) if self.momentum else ()

    def _update(self, param, grad, state):
        reference.sgd_update(param, grad, state, self.lr, self.momentum, self.nesterov)

    def _kernel(self, dtype, pointers, tasks, names, threads):
        mode = 0 if self.momentum == 0 else 2 if self.nesterov else 1
        if mode == 0:  # the kernel's table has a velocity column, unused
            pointers = np.concatenate((pointers, pointers[:, :1]), axis=1)
        _compiled.optim.sgd(pointers, tasks, np.array([self.lr, self.momentum], dtype), mode, threads)


class AdaGrad(Optimizer):
    """Per-element step sizes shrinking with the accumulated squared gradients.

    sum_sq += grad**2;  param -= lr * grad / (sqrt(sum_sq) + eps)
    """

    _state_keys = ("sum_sq",)

    def __init__(self, params, lr=1e-2, eps=1e-8, *, backend="auto"):
        super().__init__(params, lr, backend=backend)
        self.eps = _check_number(eps, "eps", low=0, low_inclusive=True)

    def _update(self, param, grad, state):
        reference.adagrad_update(param, grad, state, self.lr, self.eps)

    def _kernel(self, dtype, pointers, tasks, names, threads):
        _compiled.optim.scaled(pointers, tasks, np.array([self.lr, 0, 0, self.eps], dtype), False,
                                threads)


class RMSProp(Optimizer):
    """AdaGrad with a leaky (exponentially decaying) average of squared gradients.

    mean_sq = decay * mean_sq + (1 - decay) * grad**2;  param -= lr * grad / (sqrt(mean_sq) + eps)
    """

    _state_keys = ("mean_sq",)

    def __init__(self, params, lr=1e-2, decay=0.99, eps=1e-8, *, backend="auto"):
        super().__init__(params, lr, backend=backend)
        self.decay = _check_number(decay, "decay", low=0, high=1, low_inclusive=True)
        self.eps = _check_number(eps, "eps", low=0, low_inclusive=True)

    def _update(self, param, grad, state):
        reference.rmsprop_update(param, grad, state, self.lr, self.decay, self.eps)

    def _kernel(self, dtype, pointers, tasks, names, threads):
        constants = np.array([self.lr, self.decay, 1 - self.decay, self.eps], dtype)
        _compiled.optim.scaled(pointers, tasks, constants, True, threads)


class Adam(Optimizer):
    """Adam: momentum on the gradient and on its square, both bias-corrected.

    At a parameter's step t (1, 2, ...; counted per parameter in ``state[name]["step"]``, so
    a parameter left out of some steps, a frozen layer's, is corrected for its own count):
      m = beta1 * m + (1 - beta1) * grad
      v = beta2 * v + (1 - beta2) * grad**2
      param -= lr * (m / (1 - beta1**t)) / (sqrt(v / (1 - beta2**t)) + eps)
    """

    _state_keys = ("mean", "mean_sq")

    def __init__(self, params, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, *, backend="auto"):
        super().__init__(params, lr, backend=backend)
        self.beta1 = _check_number(beta1, "beta1", low=0, high=1, low_inclusive=True)
        self.beta2 = _check_number(beta2, "beta2", low=0, high=1, low_inclusive=True)
        self.eps = _check_number(eps, "eps", low=0, low_inclusive=True)

    def _update(self, param, grad, state):
        reference.adam_update(param, grad, state, self.lr, self.beta1, self.beta2, self.eps)

    def _kernel(self, dtype, pointers, tasks, names, threads):
        per_param = np.empty((len(names), 2), dtype=dtype)
        for row, name in enumerate(names):
            state = self.state[name]
            state["step"] = state.get("step", 0) + 1
            per_param[row] = reference.adam_step_constants(self.lr, self.beta1, self.beta2,
                                                           state["step"], dtype)
        constants = np.array([self.beta1, 1 - self.beta1, self.beta2, 1 - self.beta2, self.eps], dtype)
        _compiled.optim.adam(pointers, tasks, per_param, constants, threads)
