"""Pooling, 1-D to 3-D: max and average windows, adaptive and global pools, max-unpooling; validate, choose backend, run the kernel.

Windows: window o along an axis reads the inputs o*stride - padding + j*dilation (j <
kernel) that lie inside the input. Padding (at most half the kernel, PyTorch's rule) is
never read: it never wins a max and counts as zero in an average. ceil_mode rounds the
output size up, keeping a last window only if it starts inside the input or the leading
padding (PyTorch's rule). Every window must hold at least one input element.

Ties and NaN: max pooling sends each output's gradient to the first maximum of its window
in row-major order; a window holding NaN gives NaN, and its gradient goes to the window's
last NaN (both as PyTorch). This holds for dilated, ceil_mode and adaptive windows alike.

Average divisor (PyTorch's rule): divisor_override if given; else the product over axes of
the window's length cut at the end of the trailing padding (a ceil_mode window's overhang
past it never counts), and, with count_include_pad=False, cut to the input.

Every kernel is planned over planes (N*C of them) of (D, H, W): 1-D and 2-D pools are 3-D
pools with leading unit axes. See docs/pooling.md.
"""
import math

import numpy as np

from . import _backend, _compiled, _tuning
from ._cache import PoolCache
from ._settings import get_num_threads
from ._geometry import PoolGeometry, adaptive_range
from ._validate import (
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
from .reference import pool as reference

def _threads(window):
    """Threads for one call: one for small calls, else at most one per plane."""
    planes = window.batch * window.channels
    elements = max(math.prod(window.input_shape), math.prod(window.output_shape))
    if elements < _tuning.POOL_PARALLEL_MIN_ELEMENTS:
        return 1
    return max(1, min(get_num_threads(), planes))


def _planes(a, spatial):
    """View a C-contiguous (N, C, *spatial) array as (N*C, D, H, W) planes (leading unit axes)."""
    return a.reshape((a.shape[0] * a.shape[1],) + (1,) * (3 - len(spatial)) + tuple(spatial))


def _flat_planes(a):
    """View a C-contiguous (N, C, ...) array as (N*C, elements per plane)."""
    return a.reshape(a.shape[0] * a.shape[1], math.prod(a.shape[2:]))


def _window_3d(geometry):
    """(kernel, stride, padding, dilation) as (depth, height, width) triples for the kernels
    (as geometry.as_3d(), without building a geometry: this runs on every call)."""
    ones = (1,) * (3 - len(geometry.size))
    return (ones + geometry.kernel, ones + geometry.stride, (0,) * len(ones) + geometry.padding,
            ones + geometry.dilation)


# Scratch the max kernel takes but touches only for 3-D windows over several depths (and,
# keyed ("phase", dtype), the phase scratch of a pool that has no phase to gather).
_NO_SCRATCH = {}


_LINE = 64  # bytes in a cache line


def _thread_rows(threads, width, dtype):
    """Uninitialised scratch of one row per thread, each at least `width` long and a cache
    line away from the next: (threads, stride >= width + one line).

    A kernel thread writes its row on every output row. Packed rows of a few dozen elements
    share cache lines, which then bounce between the cores: the backward of adaptive average
    pooling of (32, 256, 13, 13) -> 6, rows of 13 floats, took 2.5-3.2 ms on two threads
    against 2.1 ms on one."""
    itemsize = np.dtype(dtype).itemsize
    stride = -(-width * itemsize // _LINE) * _LINE // itemsize + _LINE // itemsize
    return np.empty((threads, stride), dtype)


def _max_scratch(geometry, threads, dtype, index_dtype):
    if geometry.ndim == 3:
        shape = (threads,) + geometry.out[1:]
        return np.empty(shape, dtype), np.empty(shape, index_dtype)
    key = (dtype, index_dtype)
    if key not in _NO_SCRATCH:
        _NO_SCRATCH[key] = (np.empty((1, 1, 1), dtype), np.empty((1, 1, 1), index_dtype))
    return _NO_SCRATCH[key]


def _phase_scratch(planes, window, threads, dtype):
    """The phase scratch of a dilated max pool the kernel runs as an undilated pool on one
    phase of each plane (_pool.pyx: "dilated max pooling"), or an unused stand-in."""
    shape = _compiled.pool.phase_shape(planes.shape[1:], *window) if any(
        d > 1 for d in window[3]) else None
    if shape is not None:
        return np.empty((threads,) + shape, dtype)
    key = ("phase", dtype)
    if key not in _NO_SCRATCH:
        _NO_SCRATCH[key] = np.empty((1, 1, 1, 1), dtype)
    return _NO_SCRATCH[key]


def _whole_plane(geometry):
    """One output per plane whose window is exactly the plane: a plain mean."""
    return (all(o == 1 for o in geometry.out) and geometry.kernel == geometry.size
            and not any(geometry.padding))


# ---- compiled paths -------------------------------------------------------------------

def _max_forward_compiled(x, geometry, index_dtype):
    out = np.empty(geometry.output_shape, dtype=x.dtype)
    argmax = np.empty(geometry.output_shape, dtype=index_dtype)
    if out.size:
        threads = _threads(geometry)
        planes, window = _planes(x, geometry.size), _window_3d(geometry)
        _compiled.pool.max_forward(
            planes, _planes(out, geometry.out), _planes(argmax, geometry.out), *window,
            *_max_scratch(geometry, threads, x.dtype, index_dtype),
            _phase_scratch(planes, window, threads, x.dtype), threads)
    return out, argmax


def _max_backward_compiled(dout, argmax, geometry):
    dx = np.empty(geometry.input_shape, dtype=dout.dtype)
    if dx.size:
        _compiled.pool.max_backward(_flat_planes(dout), _flat_planes(argmax), _flat_planes(dx),
                                     _threads(geometry))
    return dx


def _plane_means(x, geometry):
    """Global average pooling: each (N, C) plane's mean, out of geometry's output shape."""
    out = np.empty(geometry.output_shape, dtype=x.dtype)
    if out.size:
        _compiled.pool.plane_means(_flat_planes(x), out.reshape(-1), _threads(geometry))
    return out


def _spread_means(dout, geometry):
    """The gradient of _plane_means: each plane of dx is its dout / the plane's size."""
    dx = np.empty(geometry.input_shape, dtype=dout.dtype)
    if dx.size:
        _compiled.pool.spread_means(dout.reshape(-1), _flat_planes(dx), _threads(geometry))
    return dx


def _padded_width(geometry):
    """The average-pooling kernels' padded row: the leading padding, the input row, and zeros
    to the end of the last window (the trailing padding or the ceil_mode overhang)."""
    width, kernel, stride, padding = (geometry.size[-1], geometry.kernel[-1], geometry.stride[-1],
                                      geometry.padding[-1])
    return max(padding + width, (geometry.out[-1] - 1) * stride + kernel)


def _avg_forward_compiled(x, geometry, count_include_pad, divisor_override):
    if divisor_override is None and _whole_plane(geometry):
        return _plane_means(x, geometry)
    out = np.empty(geometry.output_shape, dtype=x.dtype)
    if out.size:
        threads = _threads(geometry)
        kernel, stride, padding, _ = _window_3d(geometry)
        scratch = _thread_rows(threads, _padded_width(geometry), x.dtype)
        divisors = np.empty(geometry.out[-1], dtype=x.dtype)
        _compiled.pool.avg_forward(
            _planes(x, geometry.size), _planes(out, geometry.out), kernel, stride, padding,
            count_include_pad, divisor_override or 0, scratch, divisors, threads)
    return out


def _avg_backward_compiled(dout, geometry, count_include_pad, divisor_override):
    if divisor_override is None and _whole_plane(geometry):
        return _spread_means(dout, geometry)
    dx = np.empty(geometry.input_shape, dtype=dout.dtype)
    if dx.size:
        threads = _threads(geometry)
        kernel, stride, padding, _ = _window_3d(geometry)
        scratch = _thread_rows(threads, _padded_width(geometry) + geometry.out[-1]
                               + 2 * geometry.kernel[-1], dout.dtype)
        divisors = np.empty(geometry.out[-1], dtype=dout.dtype)
        _compiled.pool.avg_backward(
            _planes(dout, geometry.out), _planes(dx, geometry.size), kernel, stride, padding,
            count_include_pad, divisor_override or 0, scratch, divisors, threads)
    return dx


# ---- max pooling ----------------------------------------------------------------------

def _max_pool_forward(ndim, x, kernel_size, stride, padding, dilation, ceil_mode, return_indices,
                      backend):
    backend = _backend.resolve(backend)
    geometry = pool_inputs(x, ndim, kernel_size, stride, padding, dilation=dilation,
                           ceil_mode=ceil_mode)
    return_indices = check_flag(return_indices, "return_indices")
    x = contiguous(x)
    # indices handed out are int64 as PyTorch's; the cache's own may be int32 (half the traffic)
    index_dtype = np.dtype(np.int64) if return_indices else reference.argmax_dtype(geometry)
    if backend == "reference":
        out, argmax = reference._max_over(x, reference.pool_windows(geometry),
                                          geometry.output_shape, index_dtype)
    else:
        out, argmax = _max_forward_compiled(x, geometry, index_dtype)
    cache = PoolCache("max", geometry, x.dtype, argmax, backend)
    # the cache's argmax is read-only (the backward trusts it); the caller gets a copy of their own
    return (out, argmax.copy(), cache) if return_indices else (out, cache)


def _max_pool_backward(ndim, dout, cache, kind="max"):
    check_pool_cache(cache, kind, ndim)
    check_dout(dout, cache.out_shape, cache.dtype, POOL_OUT_LAYOUTS[ndim])
    dout = contiguous(dout)
    if cache.backend == "reference":
        return reference._max_backward(dout, cache.argmax, cache.window)
    return _max_backward_compiled(dout, cache.argmax, cache.window)


_MAX_FORWARD_DOC = """{rank} max pooling; padding never wins a max.

    Parameters
    ----------
    x : ndarray of shape {layout}, float32 or float64, any memory layout (never written).
    kernel_size : int or {axes} of ints
    stride : int or {axes}, default kernel_size
    padding : int or {axes}, at most half of kernel_size in each dimension.
    dilation : int or {axes}, default 1: the gap between a window's taps.
    ceil_mode : bool, default False: round the output size up (PyTorch's rule: a last window
        is kept only if it starts inside the input or the leading padding).
    return_indices : bool, default False: also return the indices.
    backend : "auto", "cython" or "reference"

    Returns
    -------
    out : ndarray of shape {out_layout}, x's dtype, per axis
        out = floor((size + 2*padding - dilation*(kernel - 1) - 1) / stride) + 1 (ceil with
        ceil_mode). A window holding NaN gives NaN.
    indices : int64 ndarray of out's shape, only with return_indices: each output's source
        as a flat index into its {plane} input plane, exactly as PyTorch's return_indices
        (the first maximum in row-major window order, the last NaN). Yours to keep or change.
    cache : PoolCache for {name}_backward.
    """

_MAX_BACKWARD_DOC = """Gradient of {name}_forward, computed by the backend the forward used.

    dout : ndarray of shape {out_layout}, the forward output's shape and dtype.
    Returns dx of shape {layout}: each dout element goes to one input, the first maximum of
    its window in row-major order (the last NaN if the window has NaN); overlapping windows
    sharing that input add up.
    """

_RANKS = {
    1: dict(rank="1-D", layout="(N, C, L)", out_layout="(N, C, OL)", axes="(length,) tuple",
            plane="L"),
    2: dict(rank="2-D", layout="(N, C, H, W)", out_layout="(N, C, OH, OW)", axes="(h, w) pair",
            plane="H*W"),
    3: dict(rank="3-D", layout="(N, C, D, H, W)", out_layout="(N, C, OD, OH, OW)",
            axes="(d, h, w) triple", plane="D*H*W"),
}


def max_pool1d_forward(x, kernel_size, stride=None, padding=0, *, dilation=1, ceil_mode=False,
                       return_indices=False, backend="auto"):
    return _max_pool_forward(1, x, kernel_size, stride, padding, dilation, ceil_mode,
                             return_indices, backend)


def max_pool2d_forward(x, kernel_size, stride=None, padding=0, *, dilation=1, ceil_mode=False,
                       return_indices=False, backend="auto"):
    return _max_pool_forward(2, x, kernel_size, stride, padding, dilation, ceil_mode,
                             return_indices, backend)


def max_pool3d_forward(x, kernel_size, stride=None, padding=0, *, dilation=1, ceil_mode=False,
                       return_indices=False, backend="auto"):
    return _max_pool_forward(3, x, kernel_size, stride, padding, dilation, ceil_mode,
                             return_indices, backend)


def max_pool1d_backward(dout, cache):
    return _max_pool_backward(1, dout, cache)


def max_pool2d_backward(dout, cache):
    return _max_pool_backward(2, dout, cache)


def max_pool3d_backward(dout, cache):
    return _max_pool_backward(3, dout, cache)


# ---- average pooling ------------------------------------------------------------------

def _avg_pool_forward(ndim, x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                      divisor_override, backend):
    backend = _backend.resolve(backend)
    geometry = pool_inputs(x, ndim, kernel_size, stride, padding, ceil_mode=ceil_mode)
    count_include_pad = check_flag(count_include_pad, "count_include_pad")
    divisor_override = check_divisor_override(divisor_override)
    x = contiguous(x)
    if backend == "reference":
        out = reference._avg_forward(x, geometry, count_include_pad, divisor_override)
    else:
        out = _avg_forward_compiled(x, geometry, count_include_pad, divisor_override)
    return out, PoolCache("avg", geometry, x.dtype, None, backend, count_include_pad,
                          divisor_override)


def _avg_pool_backward(ndim, dout, cache):
    check_pool_cache(cache, "avg", ndim)
    check_dout(dout, cache.out_shape, cache.dtype, POOL_OUT_LAYOUTS[ndim])
    dout = contiguous(dout)
    if cache.backend == "reference":
        return reference._avg_backward(dout, cache.window, cache.count_include_pad,
                                       cache.divisor_override)
    return _avg_backward_compiled(dout, cache.window, cache.count_include_pad,
                                  cache.divisor_override)


_AVG_FORWARD_DOC = """{rank} average pooling; padding counts as zeros.

    Parameters
    ----------
    x : ndarray of shape {layout}, float32 or float64, any memory layout (never written).
    kernel_size : int or {axes} of ints
    stride : int or {axes}, default kernel_size
    padding : int or {axes}, at most half of kernel_size in each dimension.
    ceil_mode : bool, default False: round the output size up (as max pooling).
    count_include_pad : bool, default True: padded positions count in the divisor.
    divisor_override : None or int >= 1: divide every window's sum by this instead.
    backend : "auto", "cython" or "reference"

    Returns
    -------
    out : ndarray of shape {out_layout}, x's dtype, per axis
        out = floor((size + 2*padding - kernel) / stride) + 1 (ceil with ceil_mode): each
        window's sum divided by divisor_override, else by the product over axes of the
        window's length cut at the end of the trailing padding (a ceil_mode overhang past it
        never counts) and, without count_include_pad, cut to the input (PyTorch's rule).
    cache : PoolCache for {name}_backward.
    """

_AVG_BACKWARD_DOC = """Gradient of {name}_forward, computed by the backend the forward used.

    dout : ndarray of shape {out_layout}, the forward output's shape and dtype.
    Returns dx of shape {layout}: each dout element divided by its window's divisor and added
    to every input of its window (overlapping windows add up).
    """


def avg_pool1d_forward(x, kernel_size, stride=None, padding=0, *, ceil_mode=False,
                       count_include_pad=True, divisor_override=None, backend="auto"):
    return _avg_pool_forward(1, x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                             divisor_override, backend)


def avg_pool2d_forward(x, kernel_size, stride=None, padding=0, *, ceil_mode=False,
                       count_include_pad=True, divisor_override=None, backend="auto"):
    return _avg_pool_forward(2, x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                             divisor_override, backend)


def avg_pool3d_forward(x, kernel_size, stride=None, padding=0, *, ceil_mode=False,
                       count_include_pad=True, divisor_override=None, backend="auto"):
    return _avg_pool_forward(3, x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                             divisor_override, backend)


def avg_pool1d_backward(dout, cache):
    return _avg_pool_backward(1, dout, cache)


def avg_pool2d_backward(dout, cache):
    return _avg_pool_backward(2, dout, cache)


def avg_pool3d_backward(dout, cache):
    return _avg_pool_backward(3, dout, cache)


for _ndim, _functions in {
    1: (max_pool1d_forward, max_pool1d_backward, avg_pool1d_forward, avg_pool1d_backward),
    2: (max_pool2d_forward, max_pool2d_backward, avg_pool2d_forward, avg_pool2d_backward),
    3: (max_pool3d_forward, max_pool3d_backward, avg_pool3d_forward, avg_pool3d_backward),
}.items():
    for _function, _doc in zip(_functions, (_MAX_FORWARD_DOC, _MAX_BACKWARD_DOC,
                                            _AVG_FORWARD_DOC, _AVG_BACKWARD_DOC)):
        _function.__doc__ = _doc.format(name=_function.__name__.rsplit("_", 1)[0], **_RANKS[_ndim])
del _ndim, _functions, _function, _doc


# ---- adaptive and global pooling ------------------------------------------------------

def _adaptive_bounds(geometry):
    """(tops, bottoms, lefts, rights): every output row's and column's window bounds."""
    (height, width), (out_height, out_width) = geometry.size, geometry.out
    rows = adaptive_range(np.arange(out_height, dtype=np.intp), height, out_height)
    cols = adaptive_range(np.arange(out_width, dtype=np.intp), width, out_width)
    return rows + cols


def _fixed_windows(geometry):
    """The PoolGeometry of kernel = stride = size // out, no padding, that computes this
    adaptive pooling, when every output size divides its input size (14 -> 7, 8 -> 4, ...):
    adaptive window i is then [i*k, (i+1)*k) in each axis. Else None.

    Those poolings take the fixed-window kernels, whose 2x2/2 and 3x3/2 windows are unrolled
    (max pooling: the same comparisons in the same order, so the same results and indices).
    On (16, 512, 14, 14) -> 7 adaptive max pooling's forward went from 3.4-3.8 ms to about
    1.6 ms (docs/pooling.md, "Measurements").
    """
    if 0 in geometry.out or any(s % o for s, o in zip(geometry.size, geometry.out)):
        return None
    kernel = tuple(s // o for s, o in zip(geometry.size, geometry.out))
    ones = (1,) * len(kernel)
    return PoolGeometry(geometry.batch, geometry.channels, geometry.size, kernel, kernel, ones,
                        (0,) * len(kernel), geometry.out)


def adaptive_avg_pool2d_forward(x, output_size, *, backend="auto"):
    """2-D adaptive average pooling: each output cell the mean of its window.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W), float32 or float64, H and W non-zero, any layout.
    output_size : int or (OH, OW) pair of ints >= 0 (0: an empty output; larger than the
        input: windows overlap, as in PyTorch).
    backend : "auto", "cython" or "reference"

    Returns
    -------
    out : ndarray of shape (N, C, OH, OW), x's dtype: cell (i, j) is the mean of rows
        [floor(i*H/OH), ceil((i+1)*H/OH)) and columns [floor(j*W/OW), ceil((j+1)*W/OW))
        (PyTorch's rule). output_size 1 is global average pooling: a compiled per-plane sum
        over contiguous memory (in double), threads over planes.
    cache : PoolCache for adaptive_avg_pool2d_backward.
    """
    backend = _backend.resolve(backend)
    geometry = adaptive_inputs(x, output_size)
    x = contiguous(x)
    if backend == "reference":
        out = reference._adaptive_avg_forward(x, geometry)
    elif geometry.is_global:
        out = _plane_means(x, geometry)
    elif (fixed := _fixed_windows(geometry)) is not None:
        out = _avg_forward_compiled(x, fixed, True, None)
    else:
        out = np.empty(geometry.output_shape, dtype=x.dtype)
        if out.size:
            threads = _threads(geometry)
            _compiled.pool.adaptive_avg_forward(_planes(x, geometry.size)[:, 0],
                                                 _planes(out, geometry.out)[:, 0],
                                                 *_adaptive_bounds(geometry),
                                                 _thread_rows(threads, geometry.size[-1], x.dtype),
                                                 threads)
    return out, PoolCache("adaptive_avg", geometry, x.dtype, None, backend)


def adaptive_avg_pool2d_backward(dout, cache):
    """Gradient of adaptive_avg_pool2d_forward, computed by the backend the forward used.

    dout : ndarray of shape (N, C, OH, OW), the forward output's shape and dtype.
    Returns dx of shape (N, C, H, W): each dout element divided by its window's size and
    added to every input of its window (overlapping windows add up).
    """
    check_pool_cache(cache, "adaptive_avg", 2)
    check_dout(dout, cache.out_shape, cache.dtype)
    dout = contiguous(dout)
    geometry = cache.window
    if cache.backend == "reference":
        return reference._adaptive_avg_backward(dout, geometry)
    if geometry.is_global:
        return _spread_means(dout, geometry)
    if (fixed := _fixed_windows(geometry)) is not None:
        return _avg_backward_compiled(dout, fixed, True, None)
    dx = np.empty(geometry.input_shape, dtype=dout.dtype)
    if dx.size:
        threads = _threads(geometry)
        _compiled.pool.adaptive_avg_backward(_planes(dout, geometry.out)[:, 0],
                                              _planes(dx, geometry.size)[:, 0],
                                              *_adaptive_bounds(geometry),
                                              _thread_rows(threads, geometry.size[-1], dout.dtype),
                                              threads)
    return dx


def adaptive_max_pool2d_forward(x, output_size, *, backend="auto"):
    """2-D adaptive max pooling: each output cell the max of its window.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W), float32 or float64, H and W non-zero, any layout.
    output_size : int or (OH, OW) pair of ints >= 0, windows as adaptive_avg_pool2d_forward.
    backend : "auto", "cython" or "reference"

    Returns
    -------
    out : ndarray of shape (N, C, OH, OW), x's dtype. Ties and NaN as max pooling: the first
        maximum in row-major window order takes the gradient, a window with NaN gives NaN
        and its last NaN takes the gradient.
    cache : PoolCache for adaptive_max_pool2d_backward.
    """
    backend = _backend.resolve(backend)
    geometry = adaptive_inputs(x, output_size)
    x = contiguous(x)
    index_dtype = reference.argmax_dtype(geometry)
    if backend == "reference":
        out, argmax = reference._max_over(x, reference.adaptive_windows(geometry),
                                          geometry.output_shape, index_dtype)
    elif (fixed := _fixed_windows(geometry)) is not None:
        out, argmax = _max_forward_compiled(x, fixed, index_dtype)
    else:
        out = np.empty(geometry.output_shape, dtype=x.dtype)
        argmax = np.empty(geometry.output_shape, dtype=index_dtype)
        if out.size:
            _compiled.pool.adaptive_max_forward(
                _planes(x, geometry.size)[:, 0], _planes(out, geometry.out)[:, 0],
                _planes(argmax, geometry.out)[:, 0], *_adaptive_bounds(geometry), _threads(geometry))
    return out, PoolCache("adaptive_max", geometry, x.dtype, argmax, backend)


def adaptive_max_pool2d_backward(dout, cache):
    """Gradient of adaptive_max_pool2d_forward, computed by the backend the forward used.

    dout : ndarray of shape (N, C, OH, OW), the forward output's shape and dtype.
    Returns dx of shape (N, C, H, W): each dout element added at its window's maximum
    (overlapping windows sharing it add up).
    """
    return _max_pool_backward(2, dout, cache, kind="adaptive_max")


# ---- max-unpooling --------------------------------------------------------------------

def max_unpool2d_forward(x, indices, kernel_size, stride=None, padding=0, output_size=None, *,
                         backend="auto"):
    """2-D max-unpooling: each x element written at its index, zeros elsewhere.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W), float32 or float64, any layout (never written).
    indices : integer ndarray of x's shape, each a flat index into its output plane, in
        [0, OH*OW): e.g. max_pool2d_forward's with return_indices=True. Checked before any
        kernel runs (a ValueError names the first bad value); copied (into int32 where the
        output plane allows: half the bytes for the backward), so changing it later changes
        nothing here.
    kernel_size, stride (default kernel_size), padding : int or (h, w) pair, those of the
        max pooling being undone.
    output_size : None, (OH, OW) or (N, C, OH, OW): default
        ((H - 1)*stride - 2*padding + kernel_size) per axis; a given size must lie strictly
        between that minus and plus the stride (PyTorch's rule).
    backend : "auto", "cython" or "reference"

    Returns
    -------
    out : ndarray of shape (N, C, OH, OW), x's dtype. Where several x elements of a plane
        name the same position (overlapping pooling windows can pick one input twice), the
        last in the plane's row-major order is kept (PyTorch keeps an unspecified one).
    cache : PoolCache for max_unpool2d_backward.
    """
    backend = _backend.resolve(backend)
    copier = None
    if backend != "reference":
        def copier(given, own, limit):
            threads = 1 if given.size < _tuning.POOL_PARALLEL_MIN_ELEMENTS else get_num_threads()
            return _compiled.pool.copy_indices(given, own, limit, threads)
    geometry, indices = unpool_inputs(x, indices, kernel_size, stride, padding, output_size,
                                      copier)
    x = contiguous(x)
    repeats = True
    if backend == "reference":
        out = reference._unpool_forward(x, indices, geometry)
    else:
        repeats = False
        # x without elements (an empty axis, output_size non-empty): the output is all zeros
        out = (np.empty if x.size else np.zeros)(geometry.output_shape, dtype=x.dtype)
        if out.size and x.size:
            threads = _threads(geometry)
            claimed = _thread_rows(threads, geometry.out_plane_size, np.uint8)
            repeats = _compiled.pool.unpool_forward(
                _flat_planes(x), _flat_planes(indices), _flat_planes(out), claimed, threads) > 0
    return out, PoolCache("unpool", geometry, x.dtype, indices, backend, repeats=repeats)


def max_unpool2d_backward(dout, cache):
    """Gradient of max_unpool2d_forward, computed by the backend the forward used.

    dout : ndarray of shape (N, C, OH, OW), the forward output's shape and dtype.
    Returns dx of shape (N, C, H, W): dout read back at each index; an x element that a later
    one with the same index overwrote gets 0 (the exact gradient of the forward; PyTorch
    gives it dout there too).
    """
    check_pool_cache(cache, "unpool", 2)
    check_dout(dout, cache.out_shape, cache.dtype)
    dout = contiguous(dout)
    geometry = cache.window
    if cache.backend == "reference":
        return reference._unpool_backward(dout, cache.argmax, geometry)
    dx = np.empty(geometry.input_shape, dtype=dout.dtype)
    if dx.size:
        threads = _threads(geometry)
        repeats = cache.repeats
        claimed = _thread_rows(threads if repeats else 0, geometry.out_plane_size, np.uint8)
        _compiled.pool.unpool_backward(_flat_planes(dout), _flat_planes(cache.argmax),
                                        _flat_planes(dx), claimed, repeats, threads)
    return dx
