"""Numerical gradients by centred differences, and the relative error used to compare them."""
import numbers

import numpy as np


def _check_perturbable(x, h):
    if not isinstance(x, np.ndarray) or x.dtype.kind != "f":
        raise TypeError(
            "x must be a floating-point numpy.ndarray (float64 recommended), got "
            f"{type(x).__name__}{'' if not isinstance(x, np.ndarray) else ' of dtype ' + str(x.dtype)}"
        )
    if not x.flags.writeable:
        raise ValueError(
            f"x (shape {x.shape}) is read-only; numerical gradients perturb it in place, "
            "pass a writeable copy"
        )
    if isinstance(h, bool) or not isinstance(h, numbers.Real) or not h > 0:
        raise ValueError(f"h must be a positive number, got {h!r}")


def _centred_differences(evaluate, x, h):
    """(evaluate() at x[i] + h  -  evaluate() at x[i] - h) / 2h for every element i.

    Each element is restored to its exact original value after its two evaluations.
    """
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        original = x[index]
        x[index] = original + h
        plus = evaluate()
        x[index] = original - h
        minus = evaluate()
        x[index] = original
        grad[index] = (plus - minus) / (2 * h)
    return grad


def numerical_gradient(f, x, h=1e-5):
    """Gradient of a scalar function at x by centred differences.

    Parameters
    ----------
    f : callable, f(x) -> scalar
        Called with `x` itself, so it may also close over `x` (or over an object that
        holds it, e.g. a layer's parameter array).
    x : ndarray of any shape, floating point (use float64: h = 1e-5 is too small for float32)
        Perturbed in place one element at a time and restored exactly afterwards.
    h : float, the step.

    Returns
    -------
    grad : ndarray of x's shape and dtype, d f / d x.
    """
    _check_perturbable(x, h)

    def evaluate():
        value = np.asarray(f(x))
        if value.size != 1:
            raise ValueError(
                f"f must return a scalar, got an array of shape {value.shape}; "
                "use numerical_gradient_array for array-valued functions"
            )
        return float(value.reshape(()))

    return _centred_differences(evaluate, x, h)


def numerical_gradient_array(f, x, dout, h=1e-5):
    """Gradient of sum(f(x) * dout) with respect to x, by centred differences.

    This is what a layer's backward(dout) must return as dx (or, with `x` a parameter
    array the layer holds, as that parameter's gradient).

    Parameters
    ----------
    f : callable, f(x) -> ndarray of dout's shape
        Called with `x` itself; it may also close over `x`.
    x : ndarray, floating point (use float64). Perturbed in place and restored exactly.
    dout : ndarray, the upstream gradient, same shape as f(x).
    h : float, the step.

    Returns
    -------
    grad : ndarray of x's shape and dtype.
    """
    _check_perturbable(x, h)
    dout = np.asarray(dout)

    def evaluate():
        # copy: f may hand back a buffer it overwrites on the next call
        out = np.array(f(x), dtype=np.float64, copy=True)
        if out.shape != dout.shape:
            raise ValueError(f"f(x) has shape {out.shape} but dout has shape {dout.shape}")
        return float(np.sum(out * dout))

    return _centred_differences(evaluate, x, h)


def rel_error(a, b):
    """Largest elementwise relative error max(|a - b| / max(1e-8, |a| + |b|)).

    a, b : arrays (or scalars) of one shape. Returns a Python float; 0.0 for empty arrays.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"rel_error needs arrays of one shape, got {a.shape} and {b.shape}")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))
