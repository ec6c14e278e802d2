"""First-order optimisers that update a dict of parameter arrays in place from a dict of gradients."""
import numbers

import numpy as np


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


class Optimizer:
    """Base class: holds the parameter dict, checks gradients, and keeps per-parameter state.

    params : dict of name -> ndarray (float32 or float64, writeable), e.g. ``model.params``.
        The optimiser keeps its own dict of the same array objects and updates them in place.
    lr : float > 0; may be changed between steps (learning-rate decay).
    """

    def __init__(self, params, lr):
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
        self.state = {name: {} for name in self.params}
        self.steps = 0

    def _check_grads(self, grads):
        if not isinstance(grads, dict):
            raise TypeError(f"grads must be a dict of name -> ndarray, got {type(grads).__name__}")
        # a name may be missing (a frozen layer has no gradients), never unknown
        extra = sorted(grads.keys() - self.params.keys())
        if extra:
            raise ValueError(f"grads has names that params lacks: unexpected: {extra}")
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
        """Update in place every parameter named in `grads` (same shapes and dtypes).

        Parameters missing from `grads` (e.g. a frozen layer's) and their state stay untouched.
        """
        self._check_grads(grads)
        self.steps += 1
        for name, param in self.params.items():
            if name in grads:
                self._update(param, grads[name], self.state[name])

    def _update(self, param, grad, state):
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with (Nesterov) momentum.

    Plain:     param -= lr * grad
    Momentum:  velocity = momentum * velocity - lr * grad;  param += velocity
    Nesterov:  same velocity;  param += momentum * velocity - lr * grad
               (the step taken from the look-ahead point, written for the current parameters)
    """

    def __init__(self, params, lr, momentum=0.0, nesterov=False):
        super().__init__(params, lr)
        self.momentum = _check_number(momentum, "momentum", low=0, high=1, low_inclusive=True)
        if nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        self.nesterov = bool(nesterov)

    def _update(self, param, grad, state):
        lr = param.dtype.type(self.lr)
        if self.momentum == 0:
            param -= lr * grad
            return
        momentum = param.dtype.type(self.momentum)
        velocity = state.setdefault("velocity", np.zeros_like(param))
        velocity *= momentum
        velocity -= lr * grad
        if self.nesterov:
            param += momentum * velocity - lr * grad
        else:
            param += velocity


class AdaGrad(Optimizer):
    """Per-element step sizes shrinking with the accumulated squared gradients.

    sum_sq += grad**2;  param -= lr * grad / (sqrt(sum_sq) + eps)
    """

    def __init__(self, params, lr=1e-2, eps=1e-8):
        super().__init__(params, lr)
        self.eps = _check_number(eps, "eps", low=0, low_inclusive=True)

    def _update(self, param, grad, state):
        sum_sq = state.setdefault("sum_sq", np.zeros_like(param))
        sum_sq += grad * grad
        param -= param.dtype.type(self.lr) * grad / (np.sqrt(sum_sq) + param.dtype.type(self.eps))


class RMSProp(Optimizer):
    """AdaGrad with a leaky (exponentially decaying) average of squared gradients.

    mean_sq = decay * mean_sq + (1 - decay) * grad**2;  param -= lr * grad / (sqrt(mean_sq) + eps)
    """

    def __init__(self, params, lr=1e-2, decay=0.99, eps=1e-8):
        super().__init__(params, lr)
        self.decay = _check_number(decay, "decay", low=0, high=1, low_inclusive=True)
        self.eps = _check_number(eps, "eps", low=0, low_inclusive=True)

    def _update(self, param, grad, state):
        dtype = param.dtype.type
        mean_sq = state.setdefault("mean_sq", np.zeros_like(param))
        mean_sq *= dtype(self.decay)
        mean_sq += dtype(1 - self.decay) * grad * grad
        param -= dtype(self.lr) * grad / (np.sqrt(mean_sq) + dtype(self.eps))


class Adam(Optimizer):
    """Adam: momentum on the gradient and on its square, both bias-corrected.

    At step t (1, 2, ...):
      m = beta1 * m + (1 - beta1) * grad
      v = beta2 * v + (1 - beta2) * grad**2
      param -= lr * (m / (1 - beta1**t)) / (sqrt(v / (1 - beta2**t)) + eps)
    """

    def __init__(self, params, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
        super().__init__(params, lr)
        self.beta1 = _check_number(beta1, "beta1", low=0, high=1, low_inclusive=True)
        self.beta2 = _check_number(beta2, "beta2", low=0, high=1, low_inclusive=True)
        self.eps = _check_number(eps, "eps", low=0, low_inclusive=True)

    def _update(self, param, grad, state):
        dtype = param.dtype.type
        mean = state.setdefault("mean", np.zeros_like(param))
        mean_sq = state.setdefault("mean_sq", np.zeros_like(param))
        mean *= dtype(self.beta1)
        mean += dtype(1 - self.beta1) * grad
        mean_sq *= dtype(self.beta2)
        mean_sq += dtype(1 - self.beta2) * grad * grad
        # steps per parameter: one frozen for a while starts its bias correction afresh
        state["steps"] = state.get("steps", 0) + 1
        mean_correction = 1 - self.beta1**state["steps"]
        mean_sq_correction = 1 - self.beta2**state["steps"]
        param -= dtype(self.lr / mean_correction) * mean / (
            np.sqrt(mean_sq / dtype(mean_sq_correction)) + dtype(self.eps)
        )
