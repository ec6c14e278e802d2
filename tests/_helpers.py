"""Shared test helpers: tolerances per dtype, memory layouts, numerical gradients."""
import numpy as np

# Relative to the largest magnitude in the expected array.
TOLERANCE = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-12}

LAYOUTS = ("C", "F", "strided", "readonly")


def assert_close(actual, expected, tolerance=None):
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    tolerance = TOLERANCE[expected.dtype] if tolerance is None else tolerance
    scale = max(float(np.max(np.abs(expected), initial=0.0)), 1.0)
    error = float(np.max(np.abs(actual.astype(np.float64) - expected), initial=0.0))
    assert error <= tolerance * scale, f"max error {error:.3e} > {tolerance:.1e} * {scale:.3e}"


def with_layout(a, layout):
    """The same values as `a` in another memory layout (a fresh array; `a` is untouched)."""
    if layout == "C":
        return np.ascontiguousarray(a)
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "strided":
        # every other element of a larger array, along every axis
        big = np.zeros(tuple(2 * s for s in a.shape), dtype=a.dtype)
        view = big[tuple(slice(None, None, 2) for _ in a.shape)]
        view[...] = a
        return view
    if layout == "readonly":
        out = np.array(a)
        out.flags.writeable = False
        return out
    raise ValueError(layout)


def numerical_gradient(f, x, dout, h=1e-4):
    """Centred-difference gradient of sum(f(x) * dout) with respect to x (float64).

    conv and pooling are piecewise linear, so the step can be larger than usual: there is
    no truncation error to balance, only rounding error, which shrinks as h grows.
    """
    grad = np.zeros_like(x)
    flat, grad_flat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        saved = flat[i]
        flat[i] = saved + h
        plus = np.sum(f(x) * dout)
        flat[i] = saved - h
        minus = np.sum(f(x) * dout)
        flat[i] = saved
        grad_flat[i] = (plus - minus) / (2 * h)
    return grad


def rel_error(a, b):
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))
