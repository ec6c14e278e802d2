"""The course's ``cs231n.gradient_check``: numerical gradients by centred differences, printing as the course's do.

Each function perturbs its input array in place, one element at a time, and restores it
exactly; use float64 arrays (a step h = 1e-5 is below float32's resolution).
"""
from random import randrange

import numpy as np

__all__ = ["eval_numerical_gradient", "eval_numerical_gradient_array", "eval_numerical_gradient_blobs",
           "eval_numerical_gradient_net", "grad_check_sparse"]


def _perturbable(x, name="x"):
    if not isinstance(x, np.ndarray) or x.dtype.kind != "f":
        raise TypeError(f"{name} must be a floating-point numpy.ndarray (float64 recommended), "
                        f"got {type(x).__name__}{' of dtype ' + str(x.dtype) if isinstance(x, np.ndarray) else ''}")
    if not x.flags.writeable:
        raise ValueError(f"{name} (shape {x.shape}) is read-only; numerical gradients perturb it in place")
    return x


def _check_step(h):
    if isinstance(h, bool) or not isinstance(h, (int, float, np.floating)) or not h > 0:
        raise ValueError(f"h must be a positive number, got {h!r}")


def eval_numerical_gradient(f, x, verbose=True, h=0.00001):
    """Gradient of a scalar function f at x: (f(x + h e_i) - f(x - h e_i)) / 2h for each element i.

    f : callable taking x (it may close over x instead and ignore its argument);
    x : ndarray, perturbed in place and restored. verbose : print each index and its
    derivative, as the course does. Returns an array of x's shape.
    """
    _perturbable(x)
    _check_step(h)
    f(x)  # evaluated once at x first, as the course does (a model's caches are then x's)
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        original = x[index]
        x[index] = original + h
        plus = f(x)
        x[index] = original - h
        minus = f(x)
        x[index] = original
        grad[index] = (plus - minus) / (2 * h)
        if verbose:
            print(index, grad[index])
    return grad


def eval_numerical_gradient_array(f, x, df, h=1e-5):
    """Gradient of sum(f(x) * df) with respect to x: what a layer's backward(df) returns.

    f : callable, f(x) -> array of df's shape; x : ndarray, perturbed in place and
    restored; df : the upstream gradient. Returns an array of x's shape.
    """
    _perturbable(x)
    _check_step(h)
    df = np.asarray(df)
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        original = x[index]
        x[index] = original + h
        plus = np.array(f(x), copy=True)  # f may return a buffer it reuses
        x[index] = original - h
        minus = np.array(f(x), copy=True)
        x[index] = original
        if plus.shape != df.shape:
            raise ValueError(f"f(x) has shape {plus.shape} but df has shape {df.shape}")
        grad[index] = np.sum((plus - minus) * df) / (2 * h)
    return grad


def eval_numerical_gradient_blobs(f, inputs, output, h=1e-5):
    """Numerical gradients for blobs (objects with ``vals`` and ``diffs`` arrays).

    f(*inputs, output) writes its result into output.vals; the gradient of
    sum(output.vals * output.diffs) is returned for each input blob, in a list.
    """
    _check_step(h)
    gradients = []
    for blob in inputs:
        values = _perturbable(blob.vals, "an input blob's vals")
        grad = np.zeros_like(blob.diffs)
        for index in np.ndindex(values.shape):
            original = values[index]
            values[index] = original + h
            f(*(tuple(inputs) + (output,)))
            plus = np.copy(output.vals)
            values[index] = original - h
            f(*(tuple(inputs) + (output,)))
            minus = np.copy(output.vals)
            values[index] = original
            grad[index] = np.sum((plus - minus) * output.diffs) / (2.0 * h)
        gradients.append(grad)
    return gradients


def eval_numerical_gradient_net(net, inputs, output, h=1e-5):
    """eval_numerical_gradient_blobs for a net whose forward() reads the inputs and writes the output."""
    return eval_numerical_gradient_blobs(lambda *args: net.forward(), inputs, output, h=h)


def grad_check_sparse(f, x, analytic_grad, num_checks=10, h=1e-5):
    """Compare analytic_grad with centred differences at `num_checks` random elements of x, printing each.

    The elements are drawn with Python's ``random`` module, as in the course.
    """
    _perturbable(x)
    _check_step(h)
    if not isinstance(analytic_grad, np.ndarray) or analytic_grad.shape != x.shape:
        raise ValueError(f"analytic_grad must be an ndarray of x's shape {x.shape}, "
                         f"got {getattr(analytic_grad, 'shape', type(analytic_grad).__name__)}")
    for _ in range(num_checks):
        index = tuple(randrange(size) for size in x.shape)
        original = x[index]
        x[index] = original + h
        plus = f(x)
        x[index] = original - h
        minus = f(x)
        x[index] = original
        numerical = (plus - minus) / (2 * h)
        analytic = analytic_grad[index]
        denominator = abs(numerical) + abs(analytic)
        error = abs(numerical - analytic) / denominator if denominator else 0.0
        print("numerical: %f analytic: %f, relative error: %e" % (numerical, analytic, error))
