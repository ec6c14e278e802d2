"""Input checks shared by every public op: ValueError/TypeError that name the argument and shapes."""
import math
import numbers

import numpy as np

from ._cache import MaskCache, NormCache, PoolCache
from ._geometry import (  # noqa: F401
    adaptive_geometry,
    check_flag,
    conv_geometry,
    pool_geometry,
    transposed_geometry,
    unpool_geometry,
    window2d,
)

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


def check_dout(dout, expected_shape, expected_dtype, layout="(N, C, out_height, out_width)"):
    """Check an upstream gradient against the forward output's shape and dtype."""
    check_array(dout, "dout", len(expected_shape), layout)
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


_LAYOUTS = {1: ("(N, C, L)", "(F, C // groups, K)", "(C, F // groups, K)"),
            2: ("(N, C, H, W)", "(F, C // groups, KH, KW)", "(C, F // groups, KH, KW)"),
            3: ("(N, C, D, H, W)", "(F, C // groups, KD, KH, KW)", "(C, F // groups, KD, KH, KW)")}


def _conv_arrays(x, w, b, ndim, transposed):
    x_layout, w_layout, t_layout = _LAYOUTS[ndim]
    check_array(x, "x", ndim + 2, x_layout)
    check_array(w, "w", ndim + 2, t_layout if transposed else w_layout)
    if b is not None:
        check_array(b, "b", 1, "(F,)")
    check_same_dtype(x=x, w=w, b=b)


def _check_bias(b, filters, w):
    if b is not None and b.shape[0] != filters:
        raise ValueError(
            f"b must have one entry per filter: w (shape {w.shape}) makes {filters} filters, "
            f"b has shape {b.shape}"
        )


def conv_inputs(x, w, b, ndim, stride, padding, dilation=1, groups=1, padding_mode="zeros"):
    """Check an N-d convolution's arguments; return its ConvGeometry."""
    _conv_arrays(x, w, b, ndim, transposed=False)
    geometry = conv_geometry(x.shape, w.shape, stride, padding, dilation=dilation, groups=groups,
                             padding_mode=padding_mode)
    _check_bias(b, w.shape[0], w)
    return geometry


def conv2d_inputs(x, w, b, stride, padding, dilation=1, groups=1, padding_mode="zeros"):
    """Check conv2d_forward's arguments; return the ConvGeometry."""
    return conv_inputs(x, w, b, 2, stride, padding, dilation, groups, padding_mode)


def conv_transpose_inputs(x, w, b, ndim, stride, padding, output_padding, dilation=1, groups=1):
    """Check an N-d transposed convolution's arguments; return the geometry of the
    convolution it is the adjoint of (_geometry.transposed_geometry)."""
    _conv_arrays(x, w, b, ndim, transposed=True)
    geometry = transposed_geometry(x.shape, w.shape, stride, padding, output_padding,
                                   dilation=dilation, groups=groups)
    _check_bias(b, geometry.channels, w)
    return geometry


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


# ---- pooling ----------------------------------------------------------------------------

POOL_LAYOUTS = {1: "(N, C, L)", 2: "(N, C, H, W)", 3: "(N, C, D, H, W)"}
POOL_OUT_LAYOUTS = {1: "(N, C, out_length)", 2: "(N, C, out_height, out_width)",
                    3: "(N, C, out_depth, out_height, out_width)"}


def pool_inputs(x, ndim, kernel_size, stride, padding, *, dilation=1, ceil_mode=False):
    """Check a max/avg pooling call's arguments for `ndim` spatial axes; return the PoolGeometry.

    `stride` None means `kernel_size`. Padding may be at most half the window in each
    dimension, every window must hold an input element, and x's spatial sizes must be
    non-zero (see pool_geometry).
    """
    check_array(x, "x", ndim + 2, POOL_LAYOUTS[ndim])
    return pool_geometry(x.shape, kernel_size, stride, padding, dilation=dilation,
                         ceil_mode=ceil_mode)


def check_divisor_override(value):
    """None, or a positive int (average pooling's divisor in place of the window's size)."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"divisor_override must be None or an int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"divisor_override must be >= 1 (or None), got {value}")
    if value > 2**62:
        raise ValueError(f"divisor_override {value} is too large: at most 2**62")
    return int(value)


def adaptive_inputs(x, output_size):
    """Check an adaptive pooling call's arguments (2-D); return the AdaptiveGeometry."""
    check_array(x, "x", 4, POOL_LAYOUTS[2])
    return adaptive_geometry(x.shape, output_size)


def unpool_inputs(x, indices, kernel_size, stride, padding, output_size, copier=None):
    """Check max_unpool2d_forward's arguments; return (geometry, indices as our own read-only
    C-contiguous copy: int32 where an output plane has at most 2**31 - 1 positions, else
    int64).

    Every index must name a position in its output plane (0 <= index < OH*OW): checked here,
    on the copy the kernel will read, so no index can send a write outside the output.
    copier(indices, own, limit): the compiled one-pass copy and check (the kernels'
    copy_indices) for C-contiguous int32/int64 indices, returning how many planes hold an
    index out of range; None, or other indices: NumPy's copy, then its bounds.
    """
    check_array(x, "x", 4, POOL_LAYOUTS[2])
    geometry = unpool_geometry(x.shape, kernel_size, stride, padding, output_size)
    if not isinstance(indices, np.ndarray):
        raise TypeError(f"indices must be a numpy.ndarray of integers with x's shape {x.shape}, "
                        f"got {type(indices).__name__}")
    if not np.issubdtype(indices.dtype, np.integer):
        raise TypeError(f"indices must have an integer dtype (as max_pool2d_forward's "
                        f"return_indices gives, int64), got {indices.dtype} (shape {indices.shape})")
    if indices.shape != x.shape:
        raise ValueError(f"indices must have x's shape {x.shape}, got {indices.shape}")
    plane = geometry.out_plane_size
    target = np.dtype(np.int32) if plane <= 2**31 - 1 else np.dtype(np.int64)
    if (copier is not None and indices.size and indices.flags.c_contiguous
            and indices.dtype in (np.dtype(np.int32), np.dtype(np.int64))):
        own = np.empty(indices.shape, target)
        width = math.prod(indices.shape[2:])
        in_range = copier(indices.reshape(-1, width), own.reshape(-1, width), plane) == 0
    else:
        own = np.array(indices, dtype=np.int64, order="C")
        # one pass for both bounds: seen as unsigned, a negative index is >= 2**63 > any plane
        in_range = not (own.size and int(own.view(np.uint64).max()) >= plane)
        own = own.astype(target, copy=False)
    if not in_range:
        low, high = int(indices.min()), int(indices.max())
        bad = low if low < 0 else high
        raise ValueError(
            f"indices must lie in [0, {plane}), the flat positions of an output plane of "
            f"{geometry.out}; got {bad} (values range from {low} to {high})")
    # the compiled kernels write through these: nobody may change them now
    own.flags.writeable = False
    return geometry, own


_POOL_FORWARDS = {"max": "max_pool{}d_forward", "avg": "avg_pool{}d_forward",
                  "adaptive_max": "adaptive_max_pool{}d_forward",
                  "adaptive_avg": "adaptive_avg_pool{}d_forward", "unpool": "max_unpool{}d_forward"}


def pool_forward_name(kind, ndim):
    """The public forward function that makes a PoolCache of this kind and rank."""
    return _POOL_FORWARDS[kind].format(ndim)


def check_pool_cache(cache, kind, ndim=2):
    """Check that `cache` is a PoolCache from the forward of this kind and spatial rank."""
    function_name = pool_forward_name(kind, ndim)
    check_cache(cache, PoolCache, function_name)
    made_by = pool_forward_name(cache.kind, cache.window.ndim)
    if made_by != function_name:
        raise TypeError(
            f"cache must be the PoolCache returned by {function_name}, got one from {made_by}"
        )
    return cache


# --- normalisation (batch, layer and group norm) ----------------------------------------

def norm_input(x, name, min_ndim, layout):
    """Return `x` if it is a float32/float64 ndarray with at least `min_ndim` dimensions."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray of shape {layout}, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64, got {x.dtype} (shape {x.shape})")
    if x.ndim < min_ndim:
        raise ValueError(f"{name} must be at least {min_ndim}-D with shape {layout}, got {x.ndim}-D shape {x.shape}")
    return x


def norm_parameter(value, name, shape, dtype, *, writeable=False):
    """Return `value` if it is an ndarray of exactly `shape` and `dtype` (x's), writeable if asked."""
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray of shape {shape}, got {type(value).__name__}")
    if value.dtype != dtype:
        raise TypeError(f"{name} must have x's dtype {dtype}, got {value.dtype} (shape {value.shape})")
    if value.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {value.shape}")
    if writeable and not value.flags.writeable:
        raise ValueError(f"{name} (shape {value.shape}) is read-only; it is updated in place")
    return value


def _real(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    return float(value)


def norm_eps(eps):
    """eps as a finite float > 0 (added to the variance)."""
    value = _real(eps, "eps")
    if not 0.0 < value < float("inf"):
        raise ValueError(f"eps must be a finite number > 0, got {eps!r}")
    return value


def norm_momentum(momentum):
    """momentum as a float in [0, 1] (the newest batch's weight in the running estimates)."""
    value = _real(momentum, "momentum")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"momentum must lie in [0, 1], got {momentum!r}")
    return value


def norm_flag(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return bool(value)


def norm_groups(num_groups, channels):
    """num_groups as an int >= 1 that divides the channel count."""
    if isinstance(num_groups, (bool, np.bool_)) or not isinstance(num_groups, (numbers.Integral, np.integer)):
        raise TypeError(f"num_groups must be an int, got {type(num_groups).__name__} {num_groups!r}")
    if num_groups < 1:
        raise ValueError(f"num_groups must be >= 1, got {num_groups}")
    if channels % num_groups:
        raise ValueError(f"num_groups ({num_groups}) must divide the number of channels C = {channels}")
    return int(num_groups)


def batch_norm_inputs(x, weight, bias, running_mean, running_var, training, momentum, eps):
    """Check batch_norm_forward's arguments; return (training, momentum, eps) as Python values."""
    norm_input(x, "x", 2, "(N, C) or (N, C, *spatial)")
    channels = (x.shape[1],)
    norm_parameter(weight, "weight", channels, x.dtype)
    norm_parameter(bias, "bias", channels, x.dtype)
    training = norm_flag(training, "training")
    momentum = norm_momentum(momentum)
    eps = norm_eps(eps)
    if (running_mean is None) != (running_var is None):
        raise ValueError("give both running_mean and running_var, or neither")
    if running_mean is None and not training:
        raise ValueError("training=False normalises with running_mean and running_var: give both, of shape (C,)")
    if running_mean is not None:
        norm_parameter(running_mean, "running_mean", channels, x.dtype, writeable=training)
        norm_parameter(running_var, "running_var", channels, x.dtype, writeable=training)
    if training and x.size // max(x.shape[1], 1) < 2:
        raise ValueError(
            f"batch_norm_forward in training needs more than one value per channel to estimate a "
            f"variance, got x of shape {x.shape}; use a larger batch or training=False"
        )
    return training, momentum, eps


def layer_norm_inputs(x, weight, bias, eps):
    """Check layer_norm_forward's arguments; return eps. weight's shape is the normalised one."""
    if not isinstance(weight, np.ndarray):
        raise TypeError(f"weight must be a numpy.ndarray of the normalised shape, got {type(weight).__name__}")
    norm_input(x, "x", max(weight.ndim, 1), "(..., *normalized_shape)")
    if weight.ndim == 0 or x.shape[x.ndim - weight.ndim:] != weight.shape:
        raise ValueError(
            f"weight's shape {weight.shape} must equal the trailing dimensions of x (shape {x.shape}): "
            "layer norm normalises over those"
        )
    if weight.size == 0:
        raise ValueError(f"the normalised shape {weight.shape} has no elements")
    norm_parameter(weight, "weight", weight.shape, x.dtype)
    norm_parameter(bias, "bias", weight.shape, x.dtype)
    return norm_eps(eps)


def group_norm_inputs(x, weight, bias, num_groups, eps):
    """Check group_norm_forward's arguments; return (num_groups, eps)."""
    norm_input(x, "x", 2, "(N, C, *spatial)")
    channels = (x.shape[1],)
    norm_parameter(weight, "weight", channels, x.dtype)
    norm_parameter(bias, "bias", channels, x.dtype)
    return norm_groups(num_groups, x.shape[1]), norm_eps(eps)


def _statistics_shape(cache):
    if cache.kind == "batch":
        return (cache.x.shape[1],)
    if cache.kind == "group":
        return (cache.x.shape[0], cache.groups)
    return (cache.x.size // max(cache.weight.size, 1),)


def norm_backward_inputs(dout, cache, kind, need_dx):
    """Check a normalisation backward's arguments; return need_dx.

    The compiled backward indexes the cache's statistics by x's shape, so their shapes
    are checked too (a cache is read-only, but one could be built by hand).
    """
    function_name = f"{kind}_norm_forward"
    check_cache(cache, NormCache, function_name)
    if cache.kind != kind:
        raise TypeError(f"cache must be the NormCache returned by {function_name}, got one from "
                        f"{cache.kind}_norm_forward")
    expected = _statistics_shape(cache)
    for name in ("mean", "var", "inv_std"):
        statistic = getattr(cache, name)
        if (not isinstance(statistic, np.ndarray) or statistic.dtype != np.float64
                or statistic.shape != expected or not statistic.flags.c_contiguous):
            raise TypeError(f"cache.{name} must be a C-contiguous float64 array of shape {expected}: "
                            "the cache was not made by the forward")
    if not isinstance(cache.x, np.ndarray) or not cache.x.flags.c_contiguous or cache.x.dtype not in FLOAT_DTYPES:
        raise TypeError("cache.x must be the C-contiguous float array the forward kept")
    if (not isinstance(cache.weight, np.ndarray) or cache.weight.dtype != cache.x.dtype
            or (kind != "layer" and cache.weight.shape != (cache.x.shape[1],))):
        raise TypeError("cache.weight does not match cache.x: the cache was not made by the forward")
    if not isinstance(dout, np.ndarray):
        raise TypeError(f"dout must be a numpy.ndarray of x's shape {cache.x.shape}, got {type(dout).__name__}")
    if dout.dtype not in FLOAT_DTYPES:
        raise TypeError(f"dout must have dtype float32 or float64, got {dout.dtype} (shape {dout.shape})")
    if dout.shape != cache.x.shape:
        raise ValueError(f"dout must have the forward output's shape {cache.x.shape}, got {dout.shape}")
    if dout.dtype != cache.x.dtype:
        raise TypeError(f"dout must have the forward output's dtype {cache.x.dtype}, got {dout.dtype}")
    return norm_flag(need_dx, "need_dx")


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
