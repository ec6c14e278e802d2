"""Convolutions, 1-D to 3-D, and their transposes: validate, plan (backend and algorithm), run.

A transposed convolution is the adjoint of a convolution (_geometry.transposed_geometry): its
forward runs that convolution's input gradient and its backward that convolution's forward
and weight gradient, by whichever algorithms the planner chooses for those passes.
"""
import math

import numpy as np

from . import _backend, _epilogue, algorithms, planner
from ._cache import ConvCache, ConvTransposeCache
from ._geometry import BLAS_INT_MAX
from ._validate import (
    check_cache,
    check_dout,
    contiguous,
    conv_inputs,
    conv_transpose_inputs,
)
from .reference import conv as reference

available_algorithms = planner.available_algorithms


def _check_blas_limits(geometry):
    sizes = {
        "C/groups*prod(kernel)": geometry.patch,
        "prod(input size)": math.prod(geometry.size),
        "prod(output size)": geometry.out_pixels,
        "F": geometry.filters,
    }
    for name, size in sizes.items():
        if size > BLAS_INT_MAX:
            raise ValueError(
                f"{name} = {size} exceeds the 32-bit BLAS size limit ({BLAS_INT_MAX}); "
                f"x shape {geometry.input_shape}, kernel {geometry.kernel}"
            )


def _empty(geometry):
    """Whether there is nothing to multiply (an empty batch, output, or patch)."""
    return geometry.batch * geometry.filters * geometry.out_pixels * geometry.patch == 0 \
        or geometry.channels == 0


def _with_bias(out, b):
    if b is not None:
        out += b.reshape((1, -1) + (1,) * (out.ndim - 2))
    return out


def _bias_gradient(dout, has_bias):
    return dout.sum(axis=(0,) + tuple(range(2, dout.ndim))) if has_bias else None


def _finite_or_direct(result, run_direct, planning):
    """A planned (auto/measure) result that came out not all finite from an algorithm whose
    transforms can turn an infinity into NaN, computed again by the direct method
    (algorithms/_winograd.py); (result, the algorithm that computed it)."""
    (value, finite), algorithm = result
    if finite is False and planning is not None:
        return run_direct(), algorithms.DIRECT
    return value, algorithm


def _run_forward(x, w, b, geometry, algorithm, planning, epilogue=None, inference=False):
    """(out, the algorithm that computed it) by `algorithm`, or for planning "measure" by
    the planner's fastest (timed on these arrays the first time this problem is seen); then
    the _epilogue.Epilogue, if any: inside the kernel where the algorithm runs one
    (EPILOGUE), else as one pass over out. `inference`: w is a layer's weights, called again
    and again, so an algorithm that transforms them keeps the transform (KEEPS_WEIGHTS)."""
    if _empty(geometry):  # the output is the bias
        out = _with_bias(np.zeros(geometry.output_shape, x.dtype), b)
        return (out if epilogue is None else _epilogue.apply(out, epilogue)), algorithm

    def run(module):
        keep = {"keep_weights": True} if inference and getattr(module, "KEEPS_WEIGHTS", False) else {}
        if epilogue is not None and getattr(module, "EPILOGUE", False):
            return module.forward(x, w, b, geometry, epilogue, **keep)
        out, finite = module.forward(x, w, b, geometry, **keep)
        return (out if epilogue is None else _epilogue.apply(out, epilogue)), finite

    if planning == "measure":
        chosen, outcome = planner.measure(geometry, x.dtype,
                                          "inference" if inference else "forward", run)
    else:
        chosen, outcome = algorithm, run(algorithm)
    return _finite_or_direct((outcome, chosen), lambda: run(algorithms.DIRECT)[0], planning)


def _run_backward(dout, x, w, has_bias, geometry, algorithm, planning, need_dx=True,
                  need_dw=True, pass_name="backward"):
    """(dx, dw, db) of the convolution; dx None unless need_dx, dw and db None unless
    need_dw. x may be None when need_dw is False. `algorithm`: the module, or with planning
    "measure" None (the planner times the candidates for `pass_name`)."""
    if _empty(geometry):
        dx = np.zeros(geometry.input_shape, dout.dtype) if need_dx else None
        dw = np.zeros(geometry.weight_shape, dout.dtype) if need_dw else None
        return dx, dw, _bias_gradient(dout, has_bias and need_dw)

    def run(module):
        return module.backward(dout, x, w, has_bias, geometry, need_dx, need_dw)

    if planning == "measure":
        chosen, outcome = planner.measure(geometry, dout.dtype, pass_name, run)
    else:
        chosen, outcome = algorithm, run(algorithm)
    gradients, _ = _finite_or_direct(
        (outcome, chosen),
        lambda: algorithms.DIRECT.backward(dout, x, w, has_bias, geometry, need_dx, need_dw)[0],
        planning)
    dx, dw, db = gradients
    return (dx if need_dx else None), (dw if need_dw else None), (db if need_dw else None)


def _pass_name(need_dx, need_dw):
    return "backward" if need_dx and need_dw else "backward-data" if need_dx else "backward-weights"


def _backward_algorithm(cache, pass_name):
    """The algorithm for a backward pass of this cache: under "auto" the planner's choice for
    that pass (the forward's choice does not bind it), under "measure" None (timed when run),
    else the forward's, which must still fit the geometry."""
    if cache.planning == "auto":
        return planner.choose(cache.window, cache.x.dtype, "auto", pass_name)
    if cache.planning == "measure":
        return None
    algorithm = algorithms.REGISTRY.get(cache.algorithm)
    if algorithm is None or algorithm.supports(cache.window) is not None:
        raise ValueError(f"cache holds algorithm {cache.algorithm!r}, which cannot do its "
                         "geometry: a cache must go back to its backward as the forward returned it")
    return algorithm


def _arrays(x, w, b):
    return contiguous(x), contiguous(w), None if b is None else contiguous(b)


# ---- convolutions ---------------------------------------------------------------------

def _conv_forward(ndim, x, w, b, stride, padding, dilation, groups, padding_mode, backend,
                  algorithm, epilogue=None, inference=False):
    geometry = conv_inputs(x, w, b, ndim, stride, padding, dilation, groups, padding_mode)
    if epilogue is not None:
        _epilogue.check(epilogue, geometry.filters)
    backend = _backend.resolve(backend)
    planning = algorithm if algorithm in planner.PLANNING else None
    chosen = planner.choose(geometry, x.dtype, algorithm, "inference" if inference else "forward")
    if backend == "cython":  # before any copy or allocation
        _check_blas_limits(geometry)
    x, w, b = _arrays(x, w, b)
    if backend == "reference":
        out = reference._forward(x, w, b, geometry)
        if epilogue is not None:
            out = reference.epilogue(out, epilogue)
    else:
        out, chosen = _run_forward(x, w, b, geometry, chosen, planning, epilogue, inference)
    return out, ConvCache(x, w, b is not None, geometry, backend, chosen.NAME, planning)


def conv_inference(ndim, x, w, b=None, stride=1, padding=0, *, dilation=1, groups=1,
                   padding_mode="zeros", backend="auto", algorithm="auto", epilogue=None):
    """The output alone (nothing kept for a backward) of conv{ndim}d_forward, followed by
    `epilogue` (an _epilogue.Epilogue: an evaluation-mode batch norm's map, then a ReLU),
    run inside the kernel where the chosen algorithm can (see fastconv/_epilogue.py).
    Sequential.infer uses it to run Conv -> BatchNorm -> ReLU as one call, and a conv
    layer's infer for itself. w is taken as a layer's weights, used again on the next call:
    the Winograd algorithms keep their transform of it while it is unchanged
    (algorithms/_winograd.py, kept_transform)."""
    return _conv_forward(ndim, x, w, b, stride, padding, dilation, groups, padding_mode,
                         backend, algorithm, epilogue, inference=True)[0]


def _conv_backward(dout, cache, name, need_dx):
    check_cache(cache, ConvCache, name)
    if isinstance(cache, ConvTransposeCache):
        raise TypeError(f"cache must be the ConvCache returned by {name}, got the cache of a "
                        "transposed convolution")
    check_dout(dout, cache.out_shape, cache.x.dtype)
    dout = contiguous(dout)
    if cache.backend == "reference":
        dx, dw, db = reference._backward(dout, cache.x, cache.weight, cache.has_bias, cache.window)
        return (dx if need_dx else None), dw, db
    pass_name = _pass_name(need_dx, True)
    return _run_backward(dout, cache.x, cache.weight, cache.has_bias, cache.window,
                         _backward_algorithm(cache, pass_name), cache.planning, need_dx,
                         pass_name=pass_name)


_CONV_DOC = """{ndim}-D convolution (cross-correlation, as in deep learning).

    Parameters
    ----------
    x : ndarray of shape {x_layout}
    w : ndarray of shape {w_layout}; C and F must both divide by `groups`.
    b : ndarray of shape (F,) or None
        x, w and b share one dtype, float32 or float64; any memory layout (never written).
    stride, dilation : int or a tuple of {ndim} ints, each >= 1
    padding : int; {ndim} ints (one per axis); {sides} ints (before and after, axis by axis{sides_example});
        "valid" (none); or "same" (output size ceil(size / stride) at any stride, the total
        padding max((out - 1)*stride + (K - 1)*dilation + 1 - size, 0) split with the larger
        half after, as Keras and, at stride 1, PyTorch).
    groups : int >= 1: input and output channels in that many independent groups
        (groups == C: depthwise).
    padding_mode : "zeros", "reflect", "replicate" or "circular" (PyTorch's meanings; reflect
        needs padding < the input size, circular <= it).
    backend : "auto", "cython" or "reference"
    algorithm : "auto" (the planner's cheapest, fastconv.planner), "measure" (time the
        candidates once per geometry, dtype and thread count, and remember the winner), or one
        of available_algorithms() (compiled backend; one that cannot do the shape raises
        UnsupportedAlgorithm, a ValueError).

    Returns
    -------
    out : ndarray of shape (N, F, *out), x's dtype, each
        out = floor((size + pad_before + pad_after - dilation*(K - 1) - 1) / stride) + 1.
    cache : ConvCache for {name}_backward.
    """

_BACKWARD_DOC = """Gradients of {name}_forward, computed by the backend the forward used.

    dout : ndarray of the forward output's shape and dtype.
    need_dx : False skips the input gradient (dx is then None), e.g. for a network's first layer.
    Returns dx (x's shape), dw (w's shape), db (F,) — db is None when the forward had no bias.
    """


def _document(function, ndim, name, template):
    layouts = {1: ("(N, C, L)", "(F, C // groups, K)", ""),
               2: ("(N, C, H, W)", "(F, C // groups, KH, KW)", ": (top, bottom, left, right)"),
               3: ("(N, C, D, H, W)", "(F, C // groups, KD, KH, KW)", "")}[ndim]
    function.__doc__ = template.format(ndim=ndim, name=name, x_layout=layouts[0],
                                       w_layout=layouts[1], sides=2 * ndim,
                                       sides_example=layouts[2])
    return function


def conv1d_forward(x, w, b=None, stride=1, padding=0, *, dilation=1, groups=1,
                   padding_mode="zeros", backend="auto", algorithm="auto"):
    return _conv_forward(1, x, w, b, stride, padding, dilation, groups, padding_mode, backend,
                         algorithm)


def conv2d_forward(x, w, b=None, stride=1, padding=0, *, dilation=1, groups=1,
                   padding_mode="zeros", backend="auto", algorithm="auto"):
    return _conv_forward(2, x, w, b, stride, padding, dilation, groups, padding_mode, backend,
                         algorithm)


def conv3d_forward(x, w, b=None, stride=1, padding=0, *, dilation=1, groups=1,
                   padding_mode="zeros", backend="auto", algorithm="auto"):
    return _conv_forward(3, x, w, b, stride, padding, dilation, groups, padding_mode, backend,
                         algorithm)


def conv1d_backward(dout, cache, *, need_dx=True):
    return _conv_backward(dout, cache, "conv1d_forward", need_dx)


def conv2d_backward(dout, cache, *, need_dx=True):
    return _conv_backward(dout, cache, "conv2d_forward", need_dx)


def conv3d_backward(dout, cache, *, need_dx=True):
    return _conv_backward(dout, cache, "conv3d_forward", need_dx)


for _ndim, _pair in enumerate(((conv1d_forward, conv1d_backward), (conv2d_forward, conv2d_backward),
                              (conv3d_forward, conv3d_backward)), start=1):
    _document(_pair[0], _ndim, f"conv{_ndim}d", _CONV_DOC)
    _document(_pair[1], _ndim, f"conv{_ndim}d", _BACKWARD_DOC)


# ---- transposed convolutions -------------------------------------------------------------

def _transpose_forward(ndim, x, w, b, stride, padding, output_padding, dilation, groups,
                       backend, algorithm):
    geometry = conv_transpose_inputs(x, w, b, ndim, stride, padding, output_padding, dilation,
                                     groups)
    backend = _backend.resolve(backend)
    planning = algorithm if algorithm in planner.PLANNING else None
    chosen = planner.choose(geometry, x.dtype, algorithm, "backward-data")
    if backend == "cython":
        _check_blas_limits(geometry)
    x, w, b = _arrays(x, w, b)
    if backend == "reference":
        out = reference._transpose_forward(x, w, b, geometry)
    else:
        out, _, _ = _run_backward(x, None, w, False, geometry, chosen, planning, need_dw=False,
                                  pass_name="backward-data")
        _with_bias(out, b)
    return out, ConvTransposeCache(x, w, b is not None, geometry, backend, chosen.NAME, planning)


def _transpose_backward(dout, cache, name, need_dx):
    check_cache(cache, ConvTransposeCache, name)
    check_dout(dout, cache.out_shape, cache.x.dtype)
    dout = contiguous(dout)
    if cache.backend == "reference":
        dx, dw, db = reference._transpose_backward(dout, cache.x, cache.weight, cache.has_bias,
                                                   cache.window)
        return (dx if need_dx else None), dw, db
    geometry = cache.window
    # dx: the adjoint convolution's forward of dout; dw: its weight gradient, with dout as its
    # input and x as its output gradient
    dx = None
    if need_dx:
        dx, _ = _run_forward(dout, cache.weight, None, geometry,
                             _backward_algorithm(cache, "forward"), cache.planning)
    _, dw, _ = _run_backward(cache.x, dout, cache.weight, False, geometry,
                             _backward_algorithm(cache, "backward-weights"), cache.planning,
                             need_dx=False, pass_name="backward-weights")
    return dx, dw, _bias_gradient(dout, cache.has_bias)


_TRANSPOSE_DOC = """{ndim}-D transposed convolution ("deconvolution"): the adjoint of conv{ndim}d, the
    gradient of a convolution with respect to its input.

    Parameters
    ----------
    x : ndarray of shape {x_layout}
    w : ndarray of shape {w_layout} (as PyTorch's ConvTranspose weight); C divides by `groups`.
    b : ndarray of shape (F,) or None; one float dtype for all three, any layout.
    stride, padding, output_padding, dilation : int or a tuple of {ndim} ints; output_padding
        < max(stride, dilation) in each axis.
    groups : int >= 1
    backend, algorithm : as for the convolution; `algorithm` names the algorithm of the
        convolution whose input gradient this is.

    Returns
    -------
    out : ndarray of shape (N, F, *out), each
        out = (size - 1)*stride - 2*padding + dilation*(K - 1) + output_padding + 1.
    cache : ConvTransposeCache for conv_transpose{ndim}d_backward.
    """


def conv_transpose1d_forward(x, w, b=None, stride=1, padding=0, output_padding=0, *, dilation=1,
                             groups=1, backend="auto", algorithm="auto"):
    return _transpose_forward(1, x, w, b, stride, padding, output_padding, dilation, groups,
                              backend, algorithm)


def conv_transpose2d_forward(x, w, b=None, stride=1, padding=0, output_padding=0, *, dilation=1,
                             groups=1, backend="auto", algorithm="auto"):
    return _transpose_forward(2, x, w, b, stride, padding, output_padding, dilation, groups,
                              backend, algorithm)


def conv_transpose3d_forward(x, w, b=None, stride=1, padding=0, output_padding=0, *, dilation=1,
                             groups=1, backend="auto", algorithm="auto"):
    return _transpose_forward(3, x, w, b, stride, padding, output_padding, dilation, groups,
                              backend, algorithm)


def conv_transpose1d_backward(dout, cache, *, need_dx=True):
    return _transpose_backward(dout, cache, "conv_transpose1d_forward", need_dx)


def conv_transpose2d_backward(dout, cache, *, need_dx=True):
    return _transpose_backward(dout, cache, "conv_transpose2d_forward", need_dx)


def conv_transpose3d_backward(dout, cache, *, need_dx=True):
    return _transpose_backward(dout, cache, "conv_transpose3d_forward", need_dx)


for _ndim, _pair in enumerate(((conv_transpose1d_forward, conv_transpose1d_backward),
                               (conv_transpose2d_forward, conv_transpose2d_backward),
                               (conv_transpose3d_forward, conv_transpose3d_backward)), start=1):
    _document(_pair[0], _ndim, f"conv_transpose{_ndim}d", _TRANSPOSE_DOC)
    _document(_pair[1], _ndim, f"conv_transpose{_ndim}d", _BACKWARD_DOC)
    _pair[0].__doc__ = _pair[0].__doc__.replace("(F, C // groups, K", "(C, F // groups, K")
