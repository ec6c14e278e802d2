"""Input checks shared by every public op: ValueError/TypeError that name the argument and shapes."""
import numpy as np

from ._cache import PoolCache
from ._geometry import (  # noqa: F401
    adaptive_geometry,
    check_flag,
    conv_geometry,
    pool_geometry,
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


def unpool_inputs(x, indices, kernel_size, stride, padding, output_size):
    """Check max_unpool2d_forward's arguments; return (geometry, indices as our own read-only
    C-contiguous int64 copy).

    Every index must name a position in its output plane (0 <= index < OH*OW): checked here,
    on the copy the kernel will read, so no index can send a write outside the output.
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
    own = np.array(indices, dtype=np.int64, order="C")
    plane = geometry.out_plane_size
    # one pass for both bounds: seen as unsigned, a negative index is >= 2**63 > any plane size
    if own.size and int(own.view(np.uint64).max()) >= plane:
        low, high = int(own.min()), int(own.max())
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
