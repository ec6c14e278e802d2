"""Input checks shared by every public op: ValueError/TypeError that name the argument and shapes."""
import numbers

import numpy as np

from ._cache import MaskCache, PoolCache
from ._geometry import conv_geometry, window2d

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_array(value, name, ndim, layout):
    """Return `value` if it is a float32/float64 ndarray with `ndim` dimensions.

    `layout` describes the expected axes for the message, e.g. "(N, C, H, W)".
    """
    if not isinstance(value, np.ndarray):
        raise TypeError(
            f"{name} must be a numpy.ndarray of shape {layout}, got {type(value).__name__}"
        )
    if value.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{name} must have dtype float32 or float64, got {value.dtype} (shape {value.shape})"
        )
    if value.ndim != ndim:
        raise ValueError(
            f"{name} must be {ndim}-D with shape {layout}, got {value.ndim}-D shape {value.shape}"
        )
    return value


def check_same_dtype(**arrays):
    """Raise TypeError unless every non-None array has one dtype; return that dtype."""
    present = {name: a for name, a in arrays.items() if a is not None}
    dtypes = {a.dtype for a in present.values()}
    if len(dtypes) > 1:
        listing = ", ".join(f"{name}: {a.dtype}" for name, a in present.items())
        raise TypeError(f"arrays must share one dtype (float32 or float64), got {listing}")
    return dtypes.pop()


def check_dout(dout, expected_shape, expected_dtype):
    """Check an upstream gradient against the forward output's shape and dtype."""
    check_array(dout, "dout", len(expected_shape), "(N, C, out_height, out_width)")
    if dout.shape != tuple(expected_shape):
        raise ValueError(
            f"dout must have the forward output's shape {tuple(expected_shape)}, got {dout.shape}"
        )
    if dout.dtype != expected_dtype:
        raise TypeError(
            f"dout must have the forward output's dtype {expected_dtype}, got {dout.dtype}"
        )
    return dout


def check_cache(cache, cache_type, function_name):
    if not isinstance(cache, cache_type):
        raise TypeError(
            f"cache must be the {cache_type.__name__} returned by the matching forward call "
            f"of {function_name}, got {type(cache).__name__}"
        )
    return cache


def contiguous(a):
    """C-contiguous version of `a` (a copy only when needed); the caller's array is never written."""
    return np.ascontiguousarray(a)


def conv2d_inputs(x, w, b, stride, padding):
    """Check conv2d_forward's arguments; return the ConvGeometry."""
    check_array(x, "x", 4, "(N, C, H, W)")
    check_array(w, "w", 4, "(F, C, KH, KW)")
    if b is not None:
        check_array(b, "b", 1, "(F,)")
    check_same_dtype(x=x, w=w, b=b)
    if b is not None and b.shape[0] != w.shape[0]:
        raise ValueError(
            f"b must have one entry per filter: w has {w.shape[0]} filters (shape {w.shape}), "
            f"b has shape {b.shape}"
        )
    return conv_geometry(x.shape, w.shape, stride, padding)


def window_inputs(x, kernel_size, stride, padding):
    """Check an (N, C, H, W) input and window arguments; return the Window2d geometry."""
    check_array(x, "x", 4, "(N, C, H, W)")
    return window2d(x.shape, kernel_size, stride, padding)


def col2im_inputs(cols, x_shape, kernel_size, stride, padding):
    """Check col2im's arguments; return the Window2d geometry of the image batch."""
    check_array(cols, "cols", 2, "(C*KH*KW, N*OH*OW)")
    if not isinstance(x_shape, (tuple, list)) or len(x_shape) != 4 or not all(
        isinstance(s, (int, np.integer)) and not isinstance(s, (bool, np.bool_)) and s >= 0
        for s in x_shape
    ):
        raise TypeError(f"x_shape must be a tuple of 4 non-negative ints (N, C, H, W), got {x_shape!r}")
    window = window2d(tuple(int(s) for s in x_shape), kernel_size, stride, padding, input_name="x_shape")
    expected = (
        window.channels * window.kernel_height * window.kernel_width,
        window.batch * window.out_height * window.out_width,
    )
    if cols.shape != expected:
        raise ValueError(
            f"cols must have shape (C*KH*KW, N*OH*OW) = {expected} for x_shape {tuple(x_shape)}, "
            f"kernel_size {window.kernel_size}, stride {window.stride}, padding {window.padding}; "
            f"got {cols.shape}"
        )
    return window


def pool2d_inputs(x, kernel_size, stride, padding):
    """Check a pooling call's arguments; return the Window2d geometry.

    `stride` None means `kernel_size`. Padding may be at most half the window in each
    dimension (so every window holds at least one input element), and x must have a
    non-zero height and width.
    """
    check_array(x, "x", 4, "(N, C, H, W)")
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"x must have a non-zero height and width, got shape {x.shape}")
    window = window2d(x.shape, kernel_size, kernel_size if stride is None else stride, padding)
    if 2 * window.pad_height > window.kernel_height or 2 * window.pad_width > window.kernel_width:
        raise ValueError(
            f"padding {window.padding} must be at most half of kernel_size {window.kernel_size} "
            "in each dimension"
        )
    return window


def check_pool_cache(cache, kind):
    """Check that `cache` is a PoolCache from the forward of this kind ("max" or "avg")."""
    function_name = f"{kind}_pool2d_forward"
    check_cache(cache, PoolCache, function_name)
    if cache.kind != kind:
        raise TypeError(
            f"cache must be the PoolCache returned by {function_name}, got one from "
            f"{cache.kind}_pool2d_forward"
        )
    return cache


# --- elementwise ops (fastconv.elementwise) ---------------------------------------------

def check_float_array(value, name):
    """Return `value` if it is a float32/float64 ndarray (any shape), else TypeError."""
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray of float32 or float64 values, got {type(value).__name__}")
    if value.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64, got {value.dtype} (shape {value.shape})")
    return value


def check_mask_dout(dout, cache, kind, function_name):
    """Check `cache` (a MaskCache of this kind) and dout against its forward output."""
    check_cache(cache, MaskCache, function_name)
    if cache.kind != kind:
        raise TypeError(f"cache must be the MaskCache returned by {function_name}, got one from "
                        f"{cache.kind}_forward")
    if not isinstance(dout, np.ndarray):
        raise TypeError(f"dout must be a numpy.ndarray of shape {cache.shape}, got {type(dout).__name__}")
    if dout.shape != cache.shape:
        raise ValueError(f"dout must have the forward output's shape {cache.shape}, got {dout.shape}")
    if dout.dtype != cache.dtype:
        raise TypeError(f"dout must have the forward output's dtype {cache.dtype}, got {dout.dtype}")
    return dout


def check_alpha(alpha):
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) \
            or not alpha >= 0:
        raise ValueError(f"alpha must be a number >= 0, got {alpha!r}")
    return float(alpha)


def check_dropout(x, p, uniform):
    """Check dropout_forward's arguments; return p as a float."""
    check_float_array(x, "x")
    if isinstance(p, bool) or not isinstance(p, numbers.Real) \
            or not 0 <= p < 1:
        raise ValueError(f"p (the drop probability) must lie in [0, 1), got {p!r}")
    if not isinstance(uniform, np.ndarray):
        raise TypeError(f"uniform must be a numpy.ndarray of x's shape {x.shape}, got {type(uniform).__name__}")
    if uniform.dtype != np.float64:
        raise TypeError(f"uniform must have dtype float64 (numbers in [0, 1)), got {uniform.dtype}")
    if uniform.shape != x.shape:
        raise ValueError(f"uniform must have x's shape {x.shape}, got {uniform.shape}")
    return float(p)


# --- linear layers (fastconv.linear) -----------------------------------------------------

def linear_inputs(x, w, b):
    """Check linear_forward's arguments (x (N, D), w (F, D), b (F,) or None, one dtype)."""
    check_array(x, "x", 2, "(N, in_features)")
    check_array(w, "w", 2, "(out_features, in_features)")
    if b is not None:
        check_array(b, "b", 1, "(out_features,)")
    check_same_dtype(x=x, w=w, b=b)
    if x.shape[1] != w.shape[1]:
        raise ValueError(
            f"x has {x.shape[1]} features per row (shape {x.shape}) but w expects "
            f"{w.shape[1]} (shape {w.shape}, (out_features, in_features))"
        )
    if b is not None and b.shape[0] != w.shape[0]:
        raise ValueError(
            f"b must have one entry per output: w has {w.shape[0]} rows (shape {w.shape}), "
            f"b has shape {b.shape}"
        )



def check_linear_cache(cache):
    """A LinearCache must still hold one forward's x (N, D) and weight (F, D) of one dtype:
    the compiled backward multiplies them without checking again."""
    x, weight = cache.x, cache.weight
    if not (isinstance(x, np.ndarray) and isinstance(weight, np.ndarray) and x.ndim == weight.ndim == 2
            and x.shape[1] == weight.shape[1] and x.dtype == weight.dtype and x.dtype in FLOAT_DTYPES):
        raise ValueError("cache does not hold the x (N, in_features) and w (out_features, in_features) "
                         "of one linear_forward call: it was changed since")
    return cache


def check_linear_dout(dout, cache):
    """Check linear_backward's dout against the forward output's shape and dtype."""
    check_array(dout, "dout", 2, "(N, out_features)")
    if dout.shape != cache.out_shape:
        raise ValueError(f"dout must have the forward output's shape {cache.out_shape}, got {dout.shape}")
    if dout.dtype != cache.x.dtype:
        raise TypeError(f"dout must have the forward output's dtype {cache.x.dtype}, got {dout.dtype}")
    return dout


# --- classification losses (fastconv.losses) ---------------------------------------------

def scores_and_labels(scores, y):
    """Check class scores (N, num_classes) and integer labels y (N,) in [0, num_classes);
    return (N, num_classes)."""
    check_array(scores, "scores", 2, "(N, num_classes)")
    num_samples, num_classes = scores.shape
    if num_samples == 0 or num_classes == 0:
        raise ValueError(f"scores must have at least one sample and one class, got shape {scores.shape}")
    if not isinstance(y, np.ndarray):
        raise TypeError(f"y must be a numpy.ndarray of integer labels, shape ({num_samples},), got {type(y).__name__}")
    if y.dtype.kind not in "iu":
        raise TypeError(f"y must hold integer class labels, got dtype {y.dtype} (shape {y.shape})")
    if y.shape != (num_samples,):
        raise ValueError(
            f"y must have shape (N,) = ({num_samples},) to match scores {scores.shape}, got {y.shape}"
        )
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(
            f"labels in y must lie in [0, {num_classes}) for scores {scores.shape}, "
            f"got values from {y.min()} to {y.max()}"
        )
    return num_samples, num_classes


def check_margin(margin):
    if isinstance(margin, bool) or not isinstance(margin, numbers.Real) \
            or not margin >= 0:
        raise ValueError(f"margin must be a number >= 0, got {margin!r}")
    return float(margin)
