"""ReLU, LeakyReLU and dropout forward/backward: validate, choose backend, run the kernel.

The compiled kernels (_kernels/_elementwise.pyx) make one pass over the elements and keep a
bit mask (one bit per element) for the backward, instead of a boolean array and NumPy's
np.where / product passes. They read x flat in its memory order when x is C- or
F-contiguous (else a C-ordered copy), and the output keeps that order. NaN behaviour, ties
at 0 and the dropout rule are those of fastconv.reference.elementwise (its module docstring).
"""
import numpy as np

from . import _backend, _compiled
from ._cache import MaskCache
from ._settings import get_num_threads
from ._validate import check_alpha, check_dropout, check_float_array, check_mask_dout
from .reference import elementwise as reference

# A pass is memory-bound: a second thread adds little bandwidth, and waking it costs about
# 0.5 ms whenever the other core is busy (another process, or BLAS threads still spinning):
# on the shared benchmark machine two threads ran ReLU slower than one at every size up to
# 2**22 elements (0.7 ms on one thread) and no faster at 2**24. Below this, one thread.
_PARALLEL_MIN_ELEMENTS = 2**22
# Elements per kernel task (CHUNK in _elementwise.pyx).
_CHUNK = 2**15


def _threads(size):
    if size < _PARALLEL_MIN_ELEMENTS:
        return 1
    return max(1, min(get_num_threads(), -(-size // _CHUNK)))


def _memory_order(a):
    """"C" or "F" for an array whose elements lie contiguously in that order, else None."""
    if a.flags.c_contiguous:
        return "C"
    if a.flags.f_contiguous:
        return "F"
    return None


def _flat(a, order):
    """The 1-D view of a (contiguous in `order`) over its elements in memory order."""
    return a.reshape(-1, order=order)


def _check_inplace(x, name):
    if not x.flags.writeable:
        raise ValueError(f"inplace=True writes the result into {name}, but {name} (shape {x.shape}) is read-only")


def _mask_pass(kernel, x, inplace):
    """Run kernel(x_flat, out_flat, mask, threads), a forward kernel, over x in its memory
    order (a C-ordered copy when x is not contiguous); returns (out, mask, order).

    With `inplace` the result is written into x (through the copy when x is not contiguous)
    and x is returned as out.
    """
    order = _memory_order(x)
    source = x if order is not None else np.ascontiguousarray(x)
    order = order or "C"
    out = source if inplace and source is x else np.empty(x.shape, x.dtype, order=order)
    mask = np.empty((x.size + 7) // 8, dtype=np.uint8)
    kernel(_flat(source, order), _flat(out, order), mask, _threads(x.size))
    if inplace and out is not x:
        x[...] = out
        out = x
    return out, mask, order


def _relu_kernel(slope, leaky):
    def run(x_flat, out_flat, mask, threads):
        _compiled.elementwise.relu_forward(x_flat, out_flat, mask, slope, leaky, threads)
    return run


def _masked_backward(dout, cache, run):
    """dx in the forward's memory order from run(dout_flat, dx_flat, threads)."""
    mask = cache.mask
    if not isinstance(mask, np.ndarray) or mask.dtype != np.uint8 or mask.ndim != 1 \
            or mask.size != (dout.size + 7) // 8 or cache.order not in ("C", "F"):
        raise ValueError(f"cache does not hold a bit mask for {cache.shape} elements: it was not made "
                         f"by the compiled {cache.kind}_forward, or was changed since")
    order = cache.order
    dout = np.asarray(dout, order=order)
    dx = np.empty(cache.shape, cache.dtype, order=order)
    run(_flat(dout, order), _flat(dx, order), _threads(dout.size))
    return dx


def _reference_inplace(x, out):
    x[...] = out
    return x


def relu_forward(x, *, inplace=False, backend="auto"):
    """ReLU: out = max(x, 0) elementwise.

    Parameters
    ----------
    x : ndarray of any shape, float32 or float64, any memory layout (never written unless
        inplace=True).
    inplace : write the result into x and return x itself (x must be writeable); as
        torch.nn.ReLU(inplace=True), only where nothing else reads x afterwards.
    backend : "auto", "cython" or "reference"

    Returns
    -------
    out : ndarray of x's shape and dtype. A NaN stays NaN.
    cache : MaskCache for relu_backward (one bit per element where x > 0).
    """
    check_float_array(x, "x")
    if inplace:
        _check_inplace(x, "x")
    backend = _backend.resolve(backend)
    if backend == "reference":
        out, cache = reference.relu_forward(x)
        return (_reference_inplace(x, out) if inplace else out), cache
    out, mask, order = _mask_pass(_relu_kernel(x.dtype.type(0), False), x, inplace)
    return out, MaskCache("relu", mask, order, x.shape, x.dtype, None, backend)


def relu_backward(dout, cache):
    """Gradient of relu_forward: dx = dout where x > 0, else 0 (also where dout is NaN).

    dout : ndarray of the forward output's shape and dtype, any layout (never written).
    Returns dx, a new array of that shape and dtype.
    """
    check_mask_dout(dout, cache, "relu", "relu_forward")
    if cache.backend == "reference":
        return reference.relu_backward(dout, cache)
    zero = cache.dtype.type(0)
    return _masked_backward(dout, cache, lambda dout_flat, dx_flat, threads:
                            _compiled.elementwise.relu_backward(dout_flat, cache.mask, dx_flat,
                                                                 zero, False, threads))


def leaky_relu_forward(x, alpha=0.01, *, inplace=False, backend="auto"):
    """LeakyReLU: out = x where x > 0, alpha * x elsewhere.

    Parameters
    ----------
    x : ndarray of any shape, float32 or float64, any memory layout (never written unless
        inplace=True).
    alpha : float >= 0, the slope for x <= 0.
    inplace : write the result into x and return x itself (x must be writeable).
    backend : "auto", "cython" or "reference"

    Returns
    -------
    out : ndarray of x's shape and dtype (NaN stays NaN).
    cache : MaskCache for leaky_relu_backward.
    """
    check_float_array(x, "x")
    alpha = check_alpha(alpha)
    if inplace:
        _check_inplace(x, "x")
    backend = _backend.resolve(backend)
    if backend == "reference":
        out, cache = reference.leaky_relu_forward(x, alpha)
        return (_reference_inplace(x, out) if inplace else out), cache
    out, mask, order = _mask_pass(_relu_kernel(x.dtype.type(alpha), True), x, inplace)
    return out, MaskCache("leaky_relu", mask, order, x.shape, x.dtype, alpha, backend)


def leaky_relu_backward(dout, cache):
    """Gradient of leaky_relu_forward: dx = dout where x > 0, alpha * dout elsewhere.

    dout : ndarray of the forward output's shape and dtype, any layout (never written).
    """
    check_mask_dout(dout, cache, "leaky_relu", "leaky_relu_forward")
    if cache.backend == "reference":
        return reference.leaky_relu_backward(dout, cache)
    slope = cache.dtype.type(cache.parameter)
    return _masked_backward(dout, cache, lambda dout_flat, dx_flat, threads:
                            _compiled.elementwise.relu_backward(dout_flat, cache.mask, dx_flat,
                                                                 slope, True, threads))


def dropout_forward(x, p, uniform, *, backend="auto"):
    """Inverted dropout with the caller's random numbers.

    Parameters
    ----------
    x : ndarray of any shape, float32 or float64, any memory layout (never written).
    p : float in [0, 1), the drop probability.
    uniform : float64 ndarray of x's shape, uniform on [0, 1) (e.g. ``rng.random(x.shape)``):
        element i is kept where uniform[i] >= p.
    backend : "auto", "cython" or "reference"

    Returns
    -------
    out : x * 1 / (1 - p) (in x's dtype) where kept, x * 0 elsewhere (a NaN or an infinity
        dropped gives NaN, as the product it is).
    cache : MaskCache for dropout_backward.
    """
    p = check_dropout(x, p, uniform)
    backend = _backend.resolve(backend)
    if backend == "reference":
        return reference.dropout_forward(x, p, uniform)
    scale = x.dtype.type(1.0 / (1.0 - p))
    # the random numbers in the order _mask_pass reads x in
    uniform_order = _memory_order(x) or "C"
    uniform_flat = _flat(np.asarray(uniform, order=uniform_order), uniform_order)

    def run(x_flat, out_flat, mask, threads):
        _compiled.elementwise.dropout_forward(x_flat, uniform_flat, p, scale, out_flat, mask,
                                               threads)

    out, mask, order = _mask_pass(run, x, False)
    return out, MaskCache("dropout", mask, order, x.shape, x.dtype, scale, backend)


def dropout_backward(dout, cache):
    """Gradient of dropout_forward: dout * 1 / (1 - p) where kept, dout * 0 elsewhere.

    dout : ndarray of the forward output's shape and dtype, any layout (never written).
    """
    check_mask_dout(dout, cache, "dropout", "dropout_forward")
    if cache.backend == "reference":
        return reference.dropout_backward(dout, cache)
    return _masked_backward(dout, cache, lambda dout_flat, dx_flat, threads:
                            _compiled.elementwise.dropout_backward(dout_flat, cache.mask,
                                                                    cache.parameter, dx_flat,
                                                                    threads))
