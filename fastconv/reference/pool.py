"""Reference pooling, 1-D to 3-D: explicit loops over output positions, vectorised over N and C.

Rules the compiled kernels follow exactly:
- Window o along an axis reads the inputs o*stride - padding + j*dilation (j < kernel) that
  lie inside the input; padding is never read, so max pooling never picks a padded position
  and average pooling counts padding as zeros. ceil_mode adds a last window where one more
  starts inside the input or the leading padding.
- Average pooling divides each window's sum by divisor_override if given, else by the
  product over axes of the window's length, cut at the end of the trailing padding (the
  ceil_mode overhang past it never counts) and, with count_include_pad=False, cut to the
  input (PyTorch's rule).
- Max pooling sends each output's gradient to one input: the first maximum in row-major
  window order. If the window holds a NaN the output is NaN and the gradient goes to the
  last NaN in row-major window order (both as PyTorch).
- The argmax is stored as a flat index into the input's plane (L, H*W or D*H*W), int32 when
  that fits, else int64 (see `argmax_dtype`); int64 always for return_indices.
- Adaptive pooling: output cell i of an axis covers [floor(i*L/out), ceil((i+1)*L/out)).
- Max-unpooling writes each x element at its index; of x elements naming one position the
  last in the plane's row-major order is kept, and only it gets that position's gradient.
"""
import itertools
import math

import numpy as np

from .._cache import PoolCache
from .._geometry import adaptive_range, pool_window_count
from .._validate import (
    POOL_OUT_LAYOUTS,
    adaptive_inputs,
    check_divisor_override,
    check_dout,
    check_flag,
    check_pool_cache,
    contiguous,
    pool_inputs,
    unpool_inputs,
)

INT32_MAX = 2**31 - 1


def argmax_dtype(window):
    """Integer dtype of stored argmax indices: int32 when every plane index fits, else int64."""
    plane = math.prod(window.input_shape[2:])
    return np.dtype(np.int32) if plane <= INT32_MAX else np.dtype(np.int64)


# ---- windows --------------------------------------------------------------------------

def _taps(index, size, kernel, stride, padding, dilation):
    """The input positions window `index` of one axis reads (those inside [0, size))."""
    start = index * stride - padding
    return [p for p in range(start, start + dilation * (kernel - 1) + 1, dilation) if 0 <= p < size]


def pool_windows(geometry):
    """Yield (output position, per-axis lists of input positions) for every output of a
    max/avg pooling, in row-major order."""
    per_axis = [
        [_taps(i, size, kernel, stride, padding, dilation) for i in range(out)]
        for size, kernel, stride, padding, dilation, out in zip(
            geometry.size, geometry.kernel, geometry.stride, geometry.padding,
            geometry.dilation, geometry.out)
    ]
    return _windows(per_axis)


def adaptive_windows(geometry):
    """Yield (output position, per-axis input positions) for every cell of an adaptive pooling."""
    per_axis = [[list(range(*adaptive_range(i, size, out))) for i in range(out)]
                for size, out in zip(geometry.size, geometry.out)]
    return _windows(per_axis)


def _windows(per_axis):
    for position in itertools.product(*(range(len(axis)) for axis in per_axis)):
        yield position, [axis[i] for axis, i in zip(per_axis, position)]


def _patch(x, taps):
    """x's window (N, C, K): the inputs at the product of the per-axis positions, row-major."""
    patch = x[(slice(None), slice(None)) + np.ix_(*taps)]
    return patch.reshape(x.shape[0], x.shape[1], math.prod(len(t) for t in taps))


def _max_position(patch):
    """Index along the last axis of patch (N, C, K) of the element max pooling picks.

    The first maximum; when a row holds NaN, its last NaN.
    """
    is_nan = np.isnan(patch)
    last_nan = patch.shape[-1] - 1 - np.argmax(is_nan[..., ::-1], axis=-1)
    # np.argmax returns the first maximum (and the first NaN, which the line below overrides)
    return np.where(is_nan.any(axis=-1), last_nan, np.argmax(patch, axis=-1))


def _max_over(x, windows, out_shape, index_dtype):
    """out and argmax (out_shape) of max pooling over the given windows of x."""
    out = np.empty(out_shape, dtype=x.dtype)
    argmax = np.empty(out_shape, dtype=index_dtype)
    plane_shape = x.shape[2:]
    for position, taps in windows:
        where = (Ellipsis,) + position
        patch = _patch(x, taps)
        choice = _max_position(patch)
        out[where] = np.take_along_axis(patch, choice[..., None], axis=-1)[..., 0]
        per_axis = np.unravel_index(choice, [len(t) for t in taps])
        coordinates = [np.asarray(t)[c] for t, c in zip(taps, per_axis)]
        argmax[where] = np.ravel_multi_index(coordinates, plane_shape)
    return out, argmax


def _max_backward(dout, argmax, geometry):
    batch, channels = geometry.input_shape[:2]
    dx = np.zeros((batch, channels, math.prod(geometry.input_shape[2:])), dtype=dout.dtype)
    images, planes = np.ogrid[:batch, :channels]
    for position in np.ndindex(*dout.shape[2:]):
        where = (Ellipsis,) + position
        # one index per (n, c), so no element is written twice by this +=
        dx[images, planes, argmax[where]] += dout[where]
    return dx.reshape(geometry.input_shape)


def _avg_divisor(geometry, position, count_include_pad, divisor_override):
    if divisor_override is not None:
        return divisor_override
    return math.prod(
        pool_window_count(index, size, kernel, stride, padding, count_include_pad=count_include_pad)
        for index, size, kernel, stride, padding in zip(
            position, geometry.size, geometry.kernel, geometry.stride, geometry.padding))


def _avg_forward(x, geometry, count_include_pad=True, divisor_override=None):
    out = np.empty(geometry.output_shape, dtype=x.dtype)
    for position, taps in pool_windows(geometry):
        divisor = _avg_divisor(geometry, position, count_include_pad, divisor_override)
        out[(Ellipsis,) + position] = _patch(x, taps).sum(axis=-1) / divisor
    return out


def _avg_backward(dout, geometry, count_include_pad=True, divisor_override=None):
    dx = np.zeros(geometry.input_shape, dtype=dout.dtype)
    spread = (Ellipsis,) + (None,) * geometry.ndim
    for position, taps in pool_windows(geometry):
        divisor = _avg_divisor(geometry, position, count_include_pad, divisor_override)
        # a window's positions are distinct, so this += adds each share once
        dx[(slice(None), slice(None)) + np.ix_(*taps)] += (dout[(Ellipsis,) + position] / divisor)[spread]
    return dx


def _adaptive_avg_forward(x, geometry):
    out = np.empty(geometry.output_shape, dtype=x.dtype)
    for position, taps in adaptive_windows(geometry):
        out[(Ellipsis,) + position] = _patch(x, taps).mean(axis=-1)
    return out


def _adaptive_avg_backward(dout, geometry):
    dx = np.zeros(geometry.input_shape, dtype=dout.dtype)
    spread = (Ellipsis,) + (None,) * geometry.ndim
    for position, taps in adaptive_windows(geometry):
        size = math.prod(len(t) for t in taps)
        dx[(slice(None), slice(None)) + np.ix_(*taps)] += (dout[(Ellipsis,) + position] / size)[spread]
    return dx


def unpool_winners(plane_indices):
    """Positions in one plane's flat indices whose x element is kept: the last of each index."""
    first_from_the_end = np.unique(plane_indices[::-1], return_index=True)[1]
    return plane_indices.size - 1 - first_from_the_end


def _unpool_forward(x, indices, geometry):
    planes, length = geometry.planes, math.prod(geometry.size)
    flat_x, flat_indices = x.reshape(planes, length), indices.reshape(planes, length)
    out = np.zeros((planes, geometry.out_plane_size), dtype=x.dtype)
    for plane in range(planes):
        kept = unpool_winners(flat_indices[plane])
        out[plane, flat_indices[plane, kept]] = flat_x[plane, kept]
    return out.reshape(geometry.output_shape)


def _unpool_backward(dout, indices, geometry):
    planes, length = geometry.planes, math.prod(geometry.size)
    flat_dout = dout.reshape(planes, geometry.out_plane_size)
    flat_indices = indices.reshape(planes, length)
    dx = np.zeros(flat_indices.shape, dtype=dout.dtype)
    for plane in range(planes):
        kept = unpool_winners(flat_indices[plane])
        dx[plane, kept] = flat_dout[plane, flat_indices[plane, kept]]
    return dx.reshape(geometry.input_shape)


# ---- public twins ---------------------------------------------------------------------

def _max_pool_forward(ndim, x, kernel_size, stride, padding, dilation, ceil_mode, return_indices):
    geometry = pool_inputs(x, ndim, kernel_size, stride, padding, dilation=dilation,
                           ceil_mode=ceil_mode)
    return_indices = check_flag(return_indices, "return_indices")
    index_dtype = np.dtype(np.int64) if return_indices else argmax_dtype(geometry)
    out, argmax = _max_over(contiguous(x), pool_windows(geometry), geometry.output_shape, index_dtype)
    cache = PoolCache("max", geometry, x.dtype, argmax, "reference")
    return (out, argmax.copy(), cache) if return_indices else (out, cache)


def _max_pool_backward(ndim, dout, cache, kind="max"):
    check_pool_cache(cache, kind, ndim)
    check_dout(dout, cache.out_shape, cache.dtype, POOL_OUT_LAYOUTS[ndim])
    return _max_backward(contiguous(dout), cache.argmax, cache.window)


def _avg_pool_forward(ndim, x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                      divisor_override):
    geometry = pool_inputs(x, ndim, kernel_size, stride, padding, ceil_mode=ceil_mode)
    count_include_pad = check_flag(count_include_pad, "count_include_pad")
    divisor_override = check_divisor_override(divisor_override)
    out = _avg_forward(contiguous(x), geometry, count_include_pad, divisor_override)
    return out, PoolCache("avg", geometry, x.dtype, None, "reference", count_include_pad,
                          divisor_override)


def _avg_pool_backward(ndim, dout, cache):
    check_pool_cache(cache, "avg", ndim)
    check_dout(dout, cache.out_shape, cache.dtype, POOL_OUT_LAYOUTS[ndim])
    return _avg_backward(contiguous(dout), cache.window, cache.count_include_pad,
                         cache.divisor_override)


def max_pool1d_forward(x, kernel_size, stride=None, padding=0, *, dilation=1, ceil_mode=False,
                       return_indices=False):
    """1-D max pooling of x (N, C, L): fastconv.max_pool1d_forward's twin."""
    return _max_pool_forward(1, x, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def max_pool2d_forward(x, kernel_size, stride=None, padding=0, *, dilation=1, ceil_mode=False,
                       return_indices=False):
    """2-D max pooling of x (N, C, H, W): fastconv.max_pool2d_forward's twin.

    Returns (out, cache), or (out, indices, cache) with return_indices: out (N, C, OH, OW),
    indices int64 of out's shape, each a flat index into its H*W input plane.
    """
    return _max_pool_forward(2, x, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def max_pool3d_forward(x, kernel_size, stride=None, padding=0, *, dilation=1, ceil_mode=False,
                       return_indices=False):
    """3-D max pooling of x (N, C, D, H, W): fastconv.max_pool3d_forward's twin."""
    return _max_pool_forward(3, x, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def max_pool1d_backward(dout, cache):
    """Gradient of max_pool1d_forward: dx (N, C, L)."""
    return _max_pool_backward(1, dout, cache)


def max_pool2d_backward(dout, cache):
    """Gradient of max_pool2d_forward: dx (N, C, H, W), each dout element added at its
    window's argmax (the first maximum in row-major window order; the last NaN if any)."""
    return _max_pool_backward(2, dout, cache)


def max_pool3d_backward(dout, cache):
    """Gradient of max_pool3d_forward: dx (N, C, D, H, W)."""
    return _max_pool_backward(3, dout, cache)


def avg_pool1d_forward(x, kernel_size, stride=None, padding=0, *, ceil_mode=False,
                       count_include_pad=True, divisor_override=None):
    """1-D average pooling of x (N, C, L): fastconv.avg_pool1d_forward's twin."""
    return _avg_pool_forward(1, x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                             divisor_override)


def avg_pool2d_forward(x, kernel_size, stride=None, padding=0, *, ceil_mode=False,
                       count_include_pad=True, divisor_override=None):
    """2-D average pooling of x (N, C, H, W): fastconv.avg_pool2d_forward's twin.

    Returns (out (N, C, OH, OW), cache); each window's sum divided as the module docstring says.
    """
    return _avg_pool_forward(2, x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                             divisor_override)


def avg_pool3d_forward(x, kernel_size, stride=None, padding=0, *, ceil_mode=False,
                       count_include_pad=True, divisor_override=None):
    """3-D average pooling of x (N, C, D, H, W): fastconv.avg_pool3d_forward's twin."""
    return _avg_pool_forward(3, x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                             divisor_override)


def avg_pool1d_backward(dout, cache):
    """Gradient of avg_pool1d_forward: dx (N, C, L)."""
    return _avg_pool_backward(1, dout, cache)


def avg_pool2d_backward(dout, cache):
    """Gradient of avg_pool2d_forward: dx (N, C, H, W), each dout element divided by its
    window's divisor and added to every input of its window (overlapping windows add up)."""
    return _avg_pool_backward(2, dout, cache)


def avg_pool3d_backward(dout, cache):
    """Gradient of avg_pool3d_forward: dx (N, C, D, H, W)."""
    return _avg_pool_backward(3, dout, cache)


def adaptive_avg_pool2d_forward(x, output_size):
    """Adaptive average pooling of x (N, C, H, W) to (N, C, *output_size): each cell the mean
    of its window. Returns (out, cache)."""
    geometry = adaptive_inputs(x, output_size)
    out = _adaptive_avg_forward(contiguous(x), geometry)
    return out, PoolCache("adaptive_avg", geometry, x.dtype, None, "reference")


def adaptive_avg_pool2d_backward(dout, cache):
    """Gradient of adaptive_avg_pool2d_forward: dx (N, C, H, W)."""
    check_pool_cache(cache, "adaptive_avg", 2)
    check_dout(dout, cache.out_shape, cache.dtype)
    return _adaptive_avg_backward(contiguous(dout), cache.window)


def adaptive_max_pool2d_forward(x, output_size):
    """Adaptive max pooling of x (N, C, H, W) to (N, C, *output_size), ties and NaN as max
    pooling. Returns (out, cache)."""
    geometry = adaptive_inputs(x, output_size)
    out, argmax = _max_over(contiguous(x), adaptive_windows(geometry), geometry.output_shape,
                            argmax_dtype(geometry))
    return out, PoolCache("adaptive_max", geometry, x.dtype, argmax, "reference")


def adaptive_max_pool2d_backward(dout, cache):
    """Gradient of adaptive_max_pool2d_forward: dx (N, C, H, W)."""
    return _max_pool_backward(2, dout, cache, kind="adaptive_max")


def max_unpool2d_forward(x, indices, kernel_size, stride=None, padding=0, output_size=None):
    """Max-unpooling of x (N, C, H, W) by indices (x's shape, flat positions in each output
    plane) to (N, C, *out), zeros elsewhere. Returns (out, cache)."""
    geometry, indices = unpool_inputs(x, indices, kernel_size, stride, padding, output_size)
    out = _unpool_forward(contiguous(x), indices, geometry)
    return out, PoolCache("unpool", geometry, x.dtype, indices, "reference")


def max_unpool2d_backward(dout, cache):
    """Gradient of max_unpool2d_forward: dx (N, C, H, W), dout read back at the indices (0 for
    an x element another one overwrote)."""
    check_pool_cache(cache, "unpool", 2)
    check_dout(dout, cache.out_shape, cache.dtype)
    return _unpool_backward(contiguous(dout), cache.argmax, cache.window)
