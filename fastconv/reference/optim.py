"""Reference optimiser updates: the NumPy formulas the compiled loops (_kernels/_optim.pyx) follow.

Each function updates one parameter array and its state dict in place, in the parameter's
dtype, with the operations in the order written here (the compiled loops keep the order).
State arrays are created on the first update, as zeros of the parameter's shape, dtype and
memory layout (np.zeros_like).
"""
import numpy as np


def sgd_update(param, grad, state, lr, momentum=0.0, nesterov=False):
    """Plain:     param -= lr * grad
    Momentum:  velocity = momentum * velocity - lr * grad;  param += velocity
    Nesterov:  the same velocity;  param += momentum * velocity - lr * grad
    """
    dtype = param.dtype.type
    lr = dtype(lr)
    if momentum == 0:
        param -= lr * grad
        return
    momentum = dtype(momentum)
    velocity = state.setdefault("velocity", np.zeros_like(param))
    velocity *= momentum
    velocity -= lr * grad
    if nesterov:
        param += momentum * velocity - lr * grad
    else:
        param += velocity


def adagrad_update(param, grad, state, lr, eps):
    """sum_sq += grad**2;  param -= lr * grad / (sqrt(sum_sq) + eps)"""
    dtype = param.dtype.type
    sum_sq = state.setdefault("sum_sq", np.zeros_like(param))
    sum_sq += grad * grad
    param -= dtype(lr) * grad / (np.sqrt(sum_sq) + dtype(eps))


def rmsprop_update(param, grad, state, lr, decay, eps):
    """mean_sq = decay * mean_sq + (1 - decay) * grad**2;  param -= lr * grad / (sqrt(mean_sq) + eps)"""
    dtype = param.dtype.type
    mean_sq = state.setdefault("mean_sq", np.zeros_like(param))
    mean_sq *= dtype(decay)
    mean_sq += dtype(1 - decay) * grad * grad
    param -= dtype(lr) * grad / (np.sqrt(mean_sq) + dtype(eps))


def adam_step_constants(lr, beta1, beta2, step, dtype):
    """(step size lr / (1 - beta1**t), correction 1 - beta2**t) at step t, in `dtype`."""
    return dtype(lr / (1 - beta1**step)), dtype(1 - beta2**step)


def adam_update(param, grad, state, lr, beta1, beta2, eps):
    """At this parameter's step t (state["step"], 1 on its first update):
      m = beta1 * m + (1 - beta1) * grad
      v = beta2 * v + (1 - beta2) * grad**2
      param -= lr * (m / (1 - beta1**t)) / (sqrt(v / (1 - beta2**t)) + eps)
    (the step size lr / (1 - beta1**t) taken in one constant).
    """
    dtype = param.dtype.type
    step = state["step"] = state.get("step", 0) + 1
    mean = state.setdefault("mean", np.zeros_like(param))
    mean_sq = state.setdefault("mean_sq", np.zeros_like(param))
    mean *= dtype(beta1)
    mean += dtype(1 - beta1) * grad
    mean_sq *= dtype(beta2)
    mean_sq += dtype(1 - beta2) * grad * grad
    step_size, correction = adam_step_constants(lr, beta1, beta2, step, dtype)
    param -= step_size * mean / (np.sqrt(mean_sq / correction) + dtype(eps))
