"""What the course's models share: argument checks and the L2 penalty on their weights."""
import numbers

import numpy as np

from ...._validate import FLOAT_DTYPES


def positive_int(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return int(value)


def non_negative(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not value >= 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    return float(value)


def model_dtype(dtype):
    """The model's computation dtype as a NumPy type: float32 or float64 (TypeError otherwise)."""
    try:
        resolved = np.dtype(dtype) if dtype is not None else None
    except TypeError:
        resolved = None
    if resolved is None or resolved not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}")
    return resolved.type


def input_batch(X, dtype, shape, name="X"):
    """X as an array of the model's dtype whose trailing shape is `shape`."""
    if not isinstance(X, np.ndarray) or X.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be a numpy.ndarray of real numbers, shape (N, {', '.join(map(str, shape))}); "
                        f"got {type(X).__name__}{' of dtype ' + str(X.dtype) if isinstance(X, np.ndarray) else ''}")
    if X.shape[1:] != tuple(shape) and not (len(shape) == 1 and X.ndim >= 2 and int(np.prod(X.shape[1:])) == shape[0]):
        raise ValueError(f"{name} must have shape (N, {', '.join(map(str, shape))}), got {X.shape}")
    return X.astype(dtype, copy=False)


def l2(params, names, reg, grads):
    """Add 0.5 * reg * sum(W**2) over `names` to the loss (returned) and reg * W to grads."""
    penalty = 0.0
    for name in names:
        weight = params[name]
        penalty += 0.5 * reg * float(np.sum(weight * weight))
        grads[name] = grads[name] + weight * weight.dtype.type(reg)
    return penalty


