"""Input checks shared by every public op: ValueError/TypeError that name the argument and shapes."""
import numpy as np

from ._cache import PoolCache
from ._geometry import conv_geometry, transposed_geometry, window2d

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
