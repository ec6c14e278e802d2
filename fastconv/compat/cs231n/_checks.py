"""Argument checks shared by the course modules: the course's dicts and arrays, ValueError/TypeError naming them."""
from collections.abc import Mapping
import numbers

import numpy as np

from ..._validate import FLOAT_DTYPES


def float_array(value, name, layout):
    """Return `value` if it is a float32/float64 ndarray; `layout` describes its shape for the message."""
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray of shape {layout}, got {type(value).__name__}")
    if value.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64, got {value.dtype} (shape {value.shape})")
    return value


def real_array(value, name, layout):
    """Return `value` if it is an ndarray of real numbers (ints allowed: NumPy promotes them)."""
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray of shape {layout}, got {type(value).__name__}")
    if value.dtype.kind not in "iuf" or value.dtype.itemsize > 8:
        raise TypeError(f"{name} must hold real numbers (float32/float64, or ints), got dtype {value.dtype}")
    return value


def common_float_dtype(*arrays):
    """The dtype NumPy arithmetic on `arrays` gives, where that is float32 or float64; else float64."""
    dtype = np.result_type(*arrays)
    return dtype if dtype in FLOAT_DTYPES else np.dtype(np.float64)


def as_dtype(a, dtype):
    return a if a.dtype == dtype else a.astype(dtype)


def in_dtype(dout, dtype):
    """dout converted to the forward's float dtype; any other input is left for the checks."""
    if isinstance(dout, np.ndarray) and dout.dtype in FLOAT_DTYPES and dout.dtype != dtype:
        return dout.astype(dtype)
    return dout


def param_dict(params, name, allowed, required=()):
    """Raise unless `params` is a mapping whose keys are among `allowed` and include `required`."""
    listing = ", ".join(repr(key) for key in allowed)
    if not isinstance(params, Mapping):
        raise TypeError(f"{name} must be a dict with keys among {listing}, got {type(params).__name__}")
    for key in required:
        if key not in params:
            raise ValueError(f"{name} is missing the key {key!r}")
    for key in params:
        if key not in allowed:
            raise ValueError(f"{name} has an unknown key {key!r}; valid keys are {listing}")
    return params


def mode(params, name):
    """params['mode'] as 'train' or 'test'."""
    value = params["mode"]
    if value not in ("train", "test"):
        raise ValueError(f"{name}['mode'] must be 'train' or 'test', got {value!r}")
    return value


def number(value, name, *, low=None, high=None, low_open=False, high_open=False):
    """A Python float within the given bounds (None: unbounded on that side)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high or value != value:
        left = "-inf" if low is None else f"{low}"
        right = "inf" if high is None else f"{high}"
        interval = ("(" if low_open or low is None else "[") + f"{left}, {right}" + (")" if high_open or high is None else "]")
        raise ValueError(f"{name} must lie in {interval}, got {value!r}")
    return value
