"""Linear (fully connected) forward/backward: validate, choose backend, run the BLAS kernel.

The compiled path multiplies through the same BLAS and thread policy as the convolutions:
BLAS (SciPy's, from Cython) held to one thread and the product split over fastconv's own
threads (_kernels/_linear.pyx). NumPy's matmul would instead wake NumPy's OpenBLAS pool,
whose threads keep spinning on the cores for a while after the product, slowing the next
kernel (bench/mixed_step.py --linear numpy|fastconv measures it).
"""
import numpy as np

from . import _backend, _compiled
from ._cache import LinearCache
from ._blas import single_threaded_blas
from ._settings import get_num_threads
from ._geometry import BLAS_INT_MAX
from ._validate import check_cache, check_linear_cache, check_linear_dout, contiguous, linear_inputs
from .reference import linear as reference

# Below about this much work per call, waking a second thread costs more than it saves.
_MIN_PARALLEL_FLOPS = 10_000_000


# OpenBLAS runs a product of fewer multiply-adds than this on the calling thread alone (its
# GEMM_MULTITHREAD_THRESHOLD of 4 x SMP_THRESHOLD_MIN of 65536): no pool to hold back.
_BLAS_THREADED_MIN = 64**3


def _threads(batch, features, outputs):
    if 2 * batch * features * outputs < _MIN_PARALLEL_FLOPS:
        return 1
    return get_num_threads()


def _run(kernel, batch, features, outputs, *args):
    """kernel(*args, threads) with BLAS held to one thread, unless the product is small enough
    that BLAS runs it on one thread anyway (holding it costs some 20 us of threadpoolctl calls,
    as much as a small product)."""
    threads = _threads(batch, features, outputs)
    if threads == 1 and batch * features * outputs < _BLAS_THREADED_MIN:
        kernel(*args, threads)
        return
    with single_threaded_blas():
        kernel(*args, threads)


def _check_blas_limits(x, w):
    for name, size in (("N", x.shape[0]), ("in_features", x.shape[1]), ("out_features", w.shape[0])):
        if size > BLAS_INT_MAX:
            raise ValueError(f"{name} = {size} exceeds the 32-bit BLAS size limit ({BLAS_INT_MAX}); "
                             f"x shape {x.shape}, w shape {w.shape}")


def linear_forward(x, w, b=None, *, backend="auto"):
    """Fully connected layer: out = x @ w.T + b.

    Parameters
    ----------
    x : ndarray of shape (N, in_features)
    w : ndarray of shape (out_features, in_features)
    b : ndarray of shape (out_features,) or None
        x, w and b share one dtype, float32 or float64; any memory layout (never written).
    backend : "auto", "cython" or "reference"

    Returns
    -------
    out : ndarray of shape (N, out_features), x's dtype.
    cache : LinearCache for linear_backward.
    """
    linear_inputs(x, w, b)
    backend = _backend.resolve(backend)
    if backend == "reference":
        return reference.linear_forward(x, w, b)
    _check_blas_limits(x, w)
    x, w = contiguous(x), contiguous(w)
    b = None if b is None else contiguous(b)
    out = np.empty((x.shape[0], w.shape[0]), dtype=x.dtype)
    if x.shape[1] == 0 or out.size == 0:  # nothing to multiply: the output is the bias
        out[...] = 0 if b is None else b
    else:
        _run(_compiled.linear.forward, x.shape[0], x.shape[1], w.shape[0], x, w, b, out)
    return out, LinearCache(x, w, b is not None, backend)


def linear_backward(dout, cache, *, need_dx=True):
    """Gradients of linear_forward, computed by the backend the forward used.

    dout : ndarray of shape (N, out_features), the forward output's shape and dtype.
    need_dx : False skips the input gradient (dx is then None), e.g. for a first layer.

    Returns
    -------
    dx : (N, in_features) or None; dw : (out_features, in_features);
    db : (out_features,), or None when the forward had no bias.
    """
    check_cache(cache, LinearCache, "linear_forward")
    check_linear_cache(cache)
    check_linear_dout(dout, cache)
    if cache.backend == "reference":
        return reference.linear_backward(dout, cache, need_dx=need_dx)
    x, w = contiguous(cache.x), contiguous(cache.weight)
    dout = contiguous(dout)
    dx = np.empty_like(x) if need_dx else None
    dw = np.empty_like(w)
    db = np.empty(w.shape[0], dtype=x.dtype) if cache.has_bias else None
    if x.shape[0] == 0 or w.shape[0] == 0 or x.shape[1] == 0:  # empty products are zeros
        dw[...] = 0
        if dx is not None:
            dx[...] = 0
        if db is not None:
            db[...] = dout.sum(axis=0)
    else:
        _run(_compiled.linear.backward, x.shape[0], x.shape[1], w.shape[0], dout, x, w, dx, dw, db)
    return dx, dw, db
