"""The course's ``cs231n.optim``: first-order update rules on one parameter array and its config dict.

Every rule has the signature ``next_w, config = rule(w, dw, config=None)``: ``w`` and ``dw``
are arrays of one shape; ``config`` holds the hyperparameters (defaults filled in when
missing) and the rule's state (velocity, cache, m, v, t), which is stored back in it:

- ``sgd``: learning_rate (1e-2). next_w = w - learning_rate * dw.
- ``sgd_momentum``: learning_rate (1e-2), momentum (0.9), velocity (zeros).
  v = momentum * v - learning_rate * dw; next_w = w + v.
- ``rmsprop``: learning_rate (1e-2), decay_rate (0.99), epsilon (1e-8), cache (zeros).
  cache = decay_rate * cache + (1 - decay_rate) * dw**2;
  next_w = w - learning_rate * dw / (sqrt(cache) + epsilon).
- ``adam``: learning_rate (1e-3), beta1 (0.9), beta2 (0.999), epsilon (1e-8), m, v (zeros),
  t (0). t += 1; m = beta1 * m + (1 - beta1) * dw; v = beta2 * v + (1 - beta2) * dw**2;
  next_w = w - learning_rate * (m / (1 - beta1**t)) / (sqrt(v / (1 - beta2**t)) + epsilon).

Unlike the course's sgd, no rule writes into ``w`` or into state arrays the caller put in
``config``: next_w and the new state are fresh arrays (each built with in-place NumPy
operations, one temporary at most). Arithmetic stays in w's dtype.
"""
from collections.abc import MutableMapping

import numpy as np

from . import _checks

__all__ = ["sgd", "sgd_momentum", "rmsprop", "adam"]


def _start(w, dw, config, defaults):
    _checks.float_array(w, "w", "any")
    _checks.float_array(dw, "dw", str(getattr(w, "shape", "")))
    if dw.shape != w.shape:
        raise ValueError(f"dw must have w's shape {w.shape}, got {dw.shape}")
    if config is None:
        config = {}
    if not isinstance(config, MutableMapping):
        raise TypeError(f"config must be a dict (or None), got {type(config).__name__}")
    for key, value in defaults.items():
        config.setdefault(key, value)
    return config


def _state(config, key, w):
    """config[key] as an array of w's shape, zeros when it is missing."""
    value = config.get(key)
    if value is None:
        return np.zeros_like(w)
    _checks.real_array(value, f"config[{key!r}]", str(w.shape))
    if value.shape != w.shape:
        raise ValueError(f"config[{key!r}] must have w's shape {w.shape}, got {value.shape}")
    return value


def _rate(config, key, **bounds):
    """config[key] as a Python float (NumPy keeps an array's dtype when combining it with one)."""
    return _checks.number(config[key], f"config[{key!r}]", **bounds)


def sgd(w, dw, config=None):
    """Vanilla stochastic gradient descent: next_w = w - learning_rate * dw.

    config : learning_rate (1e-2). Returns (next_w, config).
    """
    config = _start(w, dw, config, {"learning_rate": 1e-2})
    learning_rate = _rate(config, "learning_rate", low=0)
    next_w = dw * -learning_rate
    next_w += w
    return next_w, config


def sgd_momentum(w, dw, config=None):
    """SGD with momentum: v = momentum * v - learning_rate * dw; next_w = w + v.

    config : learning_rate (1e-2), momentum (0.9), velocity (zeros of w's shape).
    Returns (next_w, config) with config['velocity'] the new velocity.
    """
    config = _start(w, dw, config, {"learning_rate": 1e-2, "momentum": 0.9})
    learning_rate = _rate(config, "learning_rate", low=0)
    momentum = _rate(config, "momentum", low=0, high=1)
    velocity = _state(config, "velocity", w) * momentum
    velocity -= learning_rate * dw
    config["velocity"] = velocity
    return w + velocity, config


def rmsprop(w, dw, config=None):
    """RMSProp: a leaky average of squared gradients scales each element's step.

    config : learning_rate (1e-2), decay_rate (0.99), epsilon (1e-8), cache (zeros).
    Returns (next_w, config) with config['cache'] the new average.
    """
    config = _start(w, dw, config, {"learning_rate": 1e-2, "decay_rate": 0.99, "epsilon": 1e-8})
    learning_rate = _rate(config, "learning_rate", low=0)
    decay_rate = _rate(config, "decay_rate", low=0, high=1)
    epsilon = _rate(config, "epsilon", low=0)
    cache = _state(config, "cache", w) * decay_rate
    cache += (1 - decay_rate) * (dw * dw)
    config["cache"] = cache
    step = np.sqrt(cache)
    step += epsilon
    np.divide(dw, step, out=step)
    step *= -learning_rate
    step += w
    return step, config


def adam(w, dw, config=None):
    """Adam: bias-corrected moving averages of the gradient (m) and of its square (v).

    config : learning_rate (1e-3), beta1 (0.9), beta2 (0.999), epsilon (1e-8),
    m and v (zeros), t (0, incremented before use). Returns (next_w, config).
    """
    config = _start(w, dw, config, {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "t": 0})
    learning_rate = _rate(config, "learning_rate", low=0)
    beta1 = _rate(config, "beta1", low=0, high=1, high_open=True)
    beta2 = _rate(config, "beta2", low=0, high=1, high_open=True)
    epsilon = _rate(config, "epsilon", low=0)
    step_count = config["t"]
    if isinstance(step_count, (bool, np.bool_)) or not isinstance(step_count, (int, np.integer)) or step_count < 0:
        raise ValueError(f"config['t'] must be an int >= 0 (the steps taken), got {step_count!r}")
    t = int(step_count) + 1
    m = _state(config, "m", w) * beta1
    m += (1 - beta1) * dw
    v = _state(config, "v", w) * beta2
    v += (1 - beta2) * (dw * dw)
    config.update(m=m, v=v, t=t)
    denominator = v / (1 - beta2**t)
    np.sqrt(denominator, out=denominator)
    denominator += epsilon
    step = m * (-learning_rate / (1 - beta1**t))
    step /= denominator
    step += w
    return step, config
