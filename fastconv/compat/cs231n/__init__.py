"""CS231n assignment-2 drop-in: the course's ``cs231n`` package on fastconv's kernels.

A notebook switches to fastconv by changing ``cs231n.`` to ``fastconv.compat.cs231n.`` in
its imports; every module keeps the course's name and its functions the course's names,
arguments and return values:

- ``layers``: affine, ReLU, batch/layer norm, dropout, the naive conv and pooling, spatial
  batch and group norm, svm_loss, softmax_loss; ``fast_layers``; ``layer_utils`` (the
  sandwich layers); ``optim`` (sgd, sgd_momentum, rmsprop, adam on ``config`` dicts);
  ``gradient_check``; ``solver.Solver``; ``classifiers.cnn.ThreeLayerConvNet`` and
  ``classifiers.fc_net.FullyConnectedNet``; ``data_utils`` (the CIFAR-10 loaders).

This package itself holds the conv and pooling functions and the conv sandwiches, so that

    from fastconv.compat.cs231n import *

gives the same twelve names as before it became a package:

- ``conv_forward_naive / conv_forward_fast(x, w, b, conv_param) -> (out, cache)`` and
  ``conv_backward_naive / conv_backward_fast(dout, cache) -> (dx, dw, db)``,
  with ``conv_param = {'stride': ..., 'pad': ...}``;
- ``max_pool_forward_naive / max_pool_forward_fast(x, pool_param) -> (out, cache)`` and
  ``max_pool_backward_naive / max_pool_backward_fast(dout, cache) -> dx``,
  with ``pool_param = {'pool_height': ..., 'pool_width': ..., 'stride': ...}``;
- the sandwich layers ``conv_relu_forward / conv_relu_backward`` and
  ``conv_relu_pool_forward / conv_relu_pool_backward``.

"naive" runs the NumPy reference twins, "fast" the compiled kernels (an error saying how
to build them if they are missing); the sandwiches use the default backend (see
``fastconv.set_backend``). A backward always runs on the backend its forward used.

Differences from the course code (docs/cs231n.md lists them all):
- any kernel and pool shape works: non-square kernels, non-square and overlapping pools;
  ``stride`` and ``pad`` also take an (h, w) pair;
- bad input raises ValueError/TypeError naming the argument (never an ``assert``);
- a window that does not fit exactly drops the last rows/columns:
  H' = floor((H + 2*pad - HH) / stride) + 1, as PyTorch;
- float32 inputs stay float32; mixing float32 and float64 in one call computes in float64,
  as NumPy arithmetic would. Backward returns gradients in its forward's dtype (a dout of the
  other float dtype is converted).
"""
from collections import namedtuple
from collections.abc import Mapping
import numbers

import numpy as np

from ..._cache import ConvCache, PoolCache
from ..._geometry import as_pair
from ..._validate import FLOAT_DTYPES, check_cache, check_dout
from ...conv import conv2d_backward, conv2d_forward
from ...pool import max_pool2d_backward, max_pool2d_forward
from ._checks import in_dtype as _in_dtype

__all__ = [
    "conv_forward_naive",
    "conv_backward_naive",
    "conv_forward_fast",
    "conv_backward_fast",
    "max_pool_forward_naive",
    "max_pool_backward_naive",
    "max_pool_forward_fast",
    "max_pool_backward_fast",
    "conv_relu_forward",
    "conv_relu_backward",
    "conv_relu_pool_forward",
    "conv_relu_pool_backward",
]

_CONV_KEYS = ("stride", "pad")
_POOL_KEYS = ("pool_height", "pool_width", "stride")

ConvReluCache = namedtuple("ConvReluCache", "conv relu")
ConvReluPoolCache = namedtuple("ConvReluPoolCache", "conv relu pool")


# --- argument checks --------------------------------------------------------------------------

def _check_param_dict(params, name, keys):
    """Raise unless `params` is a mapping with exactly `keys` (a typo is an error, not a default)."""
    listing = ", ".join(repr(key) for key in keys)
    if not isinstance(params, Mapping):
        raise TypeError(f"{name} must be a dict with keys {listing}, got {type(params).__name__}")
    for key in keys:
        if key not in params:
            raise ValueError(f"{name} is missing the key {key!r}; it needs {listing}")
    for key in params:
        if key not in keys:
            raise ValueError(f"{name} has an unknown key {key!r}; valid keys are {listing}")


def _conv_geometry(conv_param):
    """(stride, padding) pairs from a conv_param dict."""
    _check_param_dict(conv_param, "conv_param", _CONV_KEYS)
    stride = as_pair(conv_param["stride"], "conv_param['stride']", minimum=1)
    padding = as_pair(conv_param["pad"], "conv_param['pad']", minimum=0)
    return stride, padding


def _pool_geometry(pool_param):
    """(kernel_size, stride) pairs from a pool_param dict."""
    _check_param_dict(pool_param, "pool_param", _POOL_KEYS)
    kernel_size = []
    for key in ("pool_height", "pool_width"):
        value = pool_param[key]
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
            raise TypeError(f"pool_param[{key!r}] must be an int, got {type(value).__name__} {value!r}")
        if value < 1:
            raise ValueError(f"pool_param[{key!r}] must be >= 1, got {value}")
        kernel_size.append(int(value))
    stride = as_pair(pool_param["stride"], "pool_param['stride']", minimum=1)
    return tuple(kernel_size), stride


def _conv_arrays(x, w, b):
    """x, w, b in one dtype: float32 with float64 computes in float64, as NumPy would."""
    if b is None:
        raise TypeError("b must be an ndarray of shape (F,): the course API always has a bias "
                        "(pass np.zeros(F) for none)")
    arrays = (x, w, b)
    if all(isinstance(a, np.ndarray) and a.dtype in FLOAT_DTYPES for a in arrays):
        common = np.result_type(x, w, b)
        arrays = tuple(a if a.dtype == common else a.astype(common) for a in arrays)
    return arrays  # anything else is reported by conv2d_forward's checks


# --- conv -------------------------------------------------------------------------------------

def _conv_forward(x, w, b, conv_param, backend):
    stride, padding = _conv_geometry(conv_param)
    x, w, b = _conv_arrays(x, w, b)
    return conv2d_forward(x, w, b, stride, padding, backend=backend)


def _conv_backward(dout, cache):
    check_cache(cache, ConvCache, "conv_forward_naive / conv_forward_fast")
    return conv2d_backward(_in_dtype(dout, cache.x.dtype), cache)


def conv_forward_naive(x, w, b, conv_param):
    """Convolution forward pass on the NumPy reference backend.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
    w : ndarray of shape (F, C, HH, WW)
    b : ndarray of shape (F,)
    conv_param : dict with 'stride' and 'pad', each an int or an (h, w) pair; zero padding.

    Returns
    -------
    out : ndarray of shape (N, F, H', W'), H' = floor((H + 2*pad - HH) / stride) + 1,
        W' likewise.
    cache : for conv_backward_naive.
    """
    return _conv_forward(x, w, b, conv_param, "reference")


def conv_backward_naive(dout, cache):
    """Convolution backward pass (on the backend of the forward that made `cache`).

    dout : ndarray of shape (N, F, H', W'); cache : from conv_forward_naive.
    Returns (dx, dw, db) of shapes (N, C, H, W), (F, C, HH, WW), (F,).
    """
    return _conv_backward(dout, cache)


def conv_forward_fast(x, w, b, conv_param, *, backend="cython"):
    """Convolution forward pass on the compiled kernels; arguments and results as conv_forward_naive.

    x (N, C, H, W), w (F, C, HH, WW), b (F,), conv_param {'stride', 'pad'}
    -> out (N, F, H', W'), cache for conv_backward_fast.
    backend : "cython" by default; "auto" or "reference" are accepted too.
    """
    return _conv_forward(x, w, b, conv_param, backend)


def conv_backward_fast(dout, cache):
    """Convolution backward pass (on the backend of the forward that made `cache`).

    dout : ndarray of shape (N, F, H', W'); cache : from conv_forward_fast.
    Returns (dx, dw, db) of shapes (N, C, H, W), (F, C, HH, WW), (F,).
    """
    return _conv_backward(dout, cache)


# --- max pooling ------------------------------------------------------------------------------

def _max_pool_forward(x, pool_param, backend):
    kernel_size, stride = _pool_geometry(pool_param)
    return max_pool2d_forward(x, kernel_size, stride, backend=backend)


def _max_pool_backward(dout, cache):
    check_cache(cache, PoolCache, "max_pool_forward_naive / max_pool_forward_fast")
    return max_pool2d_backward(_in_dtype(dout, cache.dtype), cache)


def max_pool_forward_naive(x, pool_param):
    """Max pooling forward pass on the NumPy reference backend.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
    pool_param : dict with 'pool_height', 'pool_width' (ints) and 'stride' (int or (h, w)
        pair). Windows may overlap (stride < pool size) or be non-square.

    Returns
    -------
    out : ndarray of shape (N, C, H', W'), H' = floor((H - pool_height) / stride) + 1,
        W' likewise.
    cache : for max_pool_backward_naive.
    """
    return _max_pool_forward(x, pool_param, "reference")


def max_pool_backward_naive(dout, cache):
    """Max pooling backward pass (on the backend of the forward that made `cache`).

    dout : ndarray of shape (N, C, H', W'); cache : from max_pool_forward_naive.
    Returns dx of shape (N, C, H, W): each gradient goes to its window's first maximum.
    """
    return _max_pool_backward(dout, cache)


def max_pool_forward_fast(x, pool_param, *, backend="cython"):
    """Max pooling forward pass on the compiled kernels; arguments and results as max_pool_forward_naive.

    x (N, C, H, W), pool_param {'pool_height', 'pool_width', 'stride'}
    -> out (N, C, H', W'), cache for max_pool_backward_fast.
    backend : "cython" by default; "auto" or "reference" are accepted too.
    """
    return _max_pool_forward(x, pool_param, backend)


def max_pool_backward_fast(dout, cache):
    """Max pooling backward pass (on the backend of the forward that made `cache`).

    dout : ndarray of shape (N, C, H', W'); cache : from max_pool_forward_fast.
    Returns dx of shape (N, C, H, W).
    """
    return _max_pool_backward(dout, cache)


# --- sandwich layers --------------------------------------------------------------------------

def _relu_forward(conv_out):
    """max(conv_out, 0), in place (conv_out is our own fresh array); NaN stays NaN.

    Returns (out, mask of conv_out > 0) for _relu_backward.
    """
    positive = conv_out > 0
    return np.maximum(conv_out, conv_out.dtype.type(0), out=conv_out), positive


def _relu_backward(dout, positive):
    return np.where(positive, dout, dout.dtype.type(0))


def conv_relu_forward(x, w, b, conv_param, *, backend="auto"):
    """Convolution followed by a ReLU.

    x (N, C, H, W), w (F, C, HH, WW), b (F,), conv_param {'stride', 'pad'}
    -> out (N, F, H', W'), cache for conv_relu_backward.
    backend : "auto" (the default backend), "cython" or "reference".
    """
    conv_out, conv_cache = _conv_forward(x, w, b, conv_param, backend)
    out, positive = _relu_forward(conv_out)
    return out, ConvReluCache(conv_cache, positive)


def conv_relu_backward(dout, cache):
    """Backward pass of conv_relu_forward.

    dout : ndarray of shape (N, F, H', W'). Returns (dx, dw, db) of shapes
    (N, C, H, W), (F, C, HH, WW), (F,).
    """
    check_cache(cache, ConvReluCache, "conv_relu_forward")
    dtype = cache.conv.x.dtype
    dout = check_dout(_in_dtype(dout, dtype), cache.relu.shape, dtype)
    return _conv_backward(_relu_backward(dout, cache.relu), cache.conv)


def conv_relu_pool_forward(x, w, b, conv_param, pool_param, *, backend="auto"):
    """Convolution, ReLU, then max pooling.

    x (N, C, H, W), w (F, C, HH, WW), b (F,), conv_param {'stride', 'pad'},
    pool_param {'pool_height', 'pool_width', 'stride'}
    -> out (N, F, H'', W'') (the pooled conv output), cache for conv_relu_pool_backward.
    backend : "auto" (the default backend), "cython" or "reference".
    """
    kernel_size, pool_stride = _pool_geometry(pool_param)  # checked before any work is done
    conv_out, conv_cache = _conv_forward(x, w, b, conv_param, backend)
    # pooled first, then the ReLU, on a quarter of the elements behind a 2x2 pool: the same
    # output and gradients exactly (fastconv.layers.container._relu_then_max_pool)
    pooled, pool_cache = max_pool2d_forward(conv_out, kernel_size, pool_stride, backend=backend)
    out, positive = _relu_forward(pooled)
    return out, ConvReluPoolCache(conv_cache, positive, pool_cache)


def conv_relu_pool_backward(dout, cache):
    """Backward pass of conv_relu_pool_forward.

    dout : ndarray of shape (N, F, H'', W''). Returns (dx, dw, db) of shapes
    (N, C, H, W), (F, C, HH, WW), (F,).
    """
    check_cache(cache, ConvReluPoolCache, "conv_relu_pool_forward")
    dtype = cache.conv.x.dtype
    dout = check_dout(_in_dtype(dout, dtype), cache.relu.shape, dtype)
    return _conv_backward(_max_pool_backward(_relu_backward(dout, cache.relu), cache.pool),
                          cache.conv)


# The course's modules, imported last: they build on the names above.
from . import (classifiers, data_utils, fast_layers, gradient_check, layer_utils, layers, optim,  # noqa: E402
               solver)
