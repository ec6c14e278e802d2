"""Dense and elementwise layers: Linear, ReLU, LeakyReLU, Flatten, Dropout."""
import numbers

import numpy as np

from .. import _backend
from .._validate import FLOAT_DTYPES
from ..elementwise import (dropout_backward, dropout_forward, leaky_relu_backward, leaky_relu_forward,
                           relu_backward, relu_forward)
from ..linear import linear_backward, linear_forward
from .base import Layer


def random_source(rng):
    """Where random numbers come from, given a layer's `rng` argument.

    None: NumPy's global generator (the ``np.random`` module, so ``np.random.seed(...)``
    makes results reproducible); an int: a fresh Generator seeded with it; a
    numpy.random.Generator or RandomState: used as is. The result has
    ``standard_normal(shape)`` and ``random(shape)`` (uniform on [0, 1), float64).
    """
    if rng is None:
        return np.random
    if isinstance(rng, (np.random.Generator, np.random.RandomState)):
        return rng
    if isinstance(rng, (numbers.Integral, np.integer)) and not isinstance(rng, (bool, np.bool_)):
        return np.random.default_rng(int(rng))
    raise TypeError(
        "rng must be None (NumPy's global generator), an int seed, a numpy.random.Generator "
        f"or a numpy.random.RandomState, got {type(rng).__name__}"
    )


def as_param_dtype(dtype):
    """np.dtype of float32 or float64, else TypeError."""
    # checked by hand: np.dtype(None) is float64, and a dtype compares equal to None
    resolved = None
    if dtype is not None:
        try:
            resolved = np.dtype(dtype)
        except TypeError:
            pass
    if resolved is None or not any(resolved == allowed for allowed in FLOAT_DTYPES):
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}")
    return resolved


def check_layer_input(layer, x, *, ndim=None, min_ndim=1, layout="", dtype=None):
    """Validate a layer's forward input: a float32/float64 ndarray of the right rank (and dtype).

    Returns x unchanged. Messages name the layer, the expected layout and the actual shape.
    """
    name = type(layer).__name__
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} input x must be a numpy.ndarray{' of shape ' + layout if layout else ''}, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} input x must have dtype float32 or float64, got {x.dtype} (shape {x.shape})")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} input x must be {ndim}-D with shape {layout}, got shape {x.shape}")
    if x.ndim < min_ndim:
        raise ValueError(f"{name} input x must have at least {min_ndim} dimensions {layout}, got shape {x.shape}")
    if dtype is not None and x.dtype != dtype:
        raise TypeError(
            f"{name} has {dtype} parameters but input x is {x.dtype} (shape {x.shape}); "
            f"cast x with x.astype(np.{dtype}) or build the layer with dtype=np.{x.dtype}"
        )
    return x


def check_layer_dout(layer, dout, shape, dtype):
    """Validate an upstream gradient against the forward output's shape and dtype."""
    name = type(layer).__name__
    if not isinstance(dout, np.ndarray):
        raise TypeError(f"{name}.backward: dout must be a numpy.ndarray of shape {shape}, got {type(dout).__name__}")
    if dout.shape != tuple(shape):
        raise ValueError(f"{name}.backward: dout must have the forward output's shape {tuple(shape)}, got {dout.shape}")
    if dout.dtype != dtype:
        raise TypeError(f"{name}.backward: dout must have the forward output's dtype {dtype}, got {dout.dtype}")
    return dout


def _check_positive_int(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


class Linear(Layer):
    """Fully connected layer: out = x @ weight.T + bias.

    Parameters
    ----------
    in_features, out_features : int >= 1
    bias : bool, whether to learn an additive bias.
    dtype : float32 (default) or float64; the input must have the same dtype.
    rng : None (NumPy's global generator), an int seed, a np.random.Generator or
        RandomState, for the initial weights.
    weight_scale : None for He initialisation (normal, std sqrt(2 / in_features), suited
        to ReLU networks), or a float std (e.g. 1e-3 for near-zero initial scores).
    backend : "auto", "cython" or "reference", passed to linear_forward (the compiled path
        runs BLAS on fastconv's threads, as the convolutions do).

    params : "weight" (out_features, in_features), "bias" (out_features,) when bias=True.
    forward : x (N, in_features) -> out (N, out_features).
    backward : dout (N, out_features) -> dx (N, in_features), or None with need_dx=False.
    """

    def __init__(self, in_features, out_features, bias=True, dtype=np.float32, *, rng=None, weight_scale=None,
                 backend="auto"):
        super().__init__()
        self.in_features = _check_positive_int(in_features, "in_features")
        self.out_features = _check_positive_int(out_features, "out_features")
        self.dtype = as_param_dtype(dtype)
        self.backend = _backend.check_name(backend, "the backend argument")
        if weight_scale is None:
            weight_scale = np.sqrt(2.0 / self.in_features)
        elif isinstance(weight_scale, bool) or not isinstance(weight_scale, numbers.Real) or weight_scale < 0:
            raise ValueError(f"weight_scale must be None or a number >= 0, got {weight_scale!r}")
        weight = random_source(rng).standard_normal((self.out_features, self.in_features)) * weight_scale
        self.params["weight"] = weight.astype(self.dtype)
        if bias:
            self.params["bias"] = np.zeros(self.out_features, dtype=self.dtype)

    def forward(self, x):
        check_layer_input(self, x, ndim=2, layout=f"(N, in_features={self.in_features})", dtype=self.dtype)
        if x.shape[1] != self.in_features:
            raise ValueError(
                f"Linear expects x of shape (N, {self.in_features}), got {x.shape}"
                + ("; put a Flatten layer before it" if x.ndim > 2 else "")
            )
        out, self._cache = linear_forward(x, self.params["weight"], self.params.get("bias"),
                                          backend=self.backend)
        return out

    def backward(self, dout, *, need_dx=True):
        cache = self._saved()
        check_layer_dout(self, dout, cache.out_shape, self.dtype)
        dx, self.grads["weight"], dbias = linear_backward(dout, cache, need_dx=need_dx)
        if "bias" in self.params:
            self.grads["bias"] = dbias
        return dx

    def __repr__(self):
        return (
            f"Linear({self.in_features}, {self.out_features}, bias={'bias' in self.params}, "
            f"dtype=np.{self.dtype})"
        )


def _check_inplace_flag(inplace):
    if not isinstance(inplace, (bool, np.bool_)):
        raise TypeError(f"inplace must be True or False, got {inplace!r}")
    return bool(inplace)


class ReLU(Layer):
    """max(x, 0) elementwise; any shape, float32 or float64 (the output keeps x's dtype).

    At exactly 0 the gradient is taken as 0. NaN stays NaN (as in PyTorch).

    inplace : False (default) returns a new array; True writes the result into x and
        returns x (as torch.nn.ReLU(inplace=True)): only where nothing else reads x
        afterwards, e.g. after a Conv2d, BatchNorm2d, Linear or Residual in a Sequential,
        not on a model's input nor first in a Residual body with an identity shortcut.
    backend : "auto", "cython" or "reference", passed to relu_forward.

    The backward needs only a bit per element (kept from the forward), and returns a new
    array; need_dx=False returns None.
    """

    def __init__(self, inplace=False, *, backend="auto"):
        super().__init__()
        self.inplace = _check_inplace_flag(inplace)
        self.backend = _backend.check_name(backend, "the backend argument")

    def forward(self, x):
        check_layer_input(self, x)
        out, self._cache = relu_forward(x, inplace=self.inplace, backend=self.backend)
        return out

    def backward(self, dout, *, need_dx=True):
        cache = self._saved()
        check_layer_dout(self, dout, cache.shape, cache.dtype)
        return relu_backward(dout, cache) if need_dx else None

    def __repr__(self):
        return "ReLU(inplace=True)" if self.inplace else "ReLU()"


class LeakyReLU(Layer):
    """x where x > 0, alpha * x elsewhere; any shape, keeps x's dtype.

    alpha : float >= 0, the slope for negative inputs (0.01 by default).
    inplace : write the result into x and return x (see ReLU).
    backend : "auto", "cython" or "reference", passed to leaky_relu_forward.
    """

    def __init__(self, alpha=0.01, inplace=False, *, backend="auto"):
        super().__init__()
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not alpha >= 0:
            raise ValueError(f"alpha must be a number >= 0, got {alpha!r}")
        self.alpha = float(alpha)
        self.inplace = _check_inplace_flag(inplace)
        self.backend = _backend.check_name(backend, "the backend argument")

    def forward(self, x):
        check_layer_input(self, x)
        out, self._cache = leaky_relu_forward(x, self.alpha, inplace=self.inplace,
                                              backend=self.backend)
        return out

    def backward(self, dout, *, need_dx=True):
        cache = self._saved()
        check_layer_dout(self, dout, cache.shape, cache.dtype)
        return leaky_relu_backward(dout, cache) if need_dx else None

    def __repr__(self):
        return f"LeakyReLU(alpha={self.alpha}{', inplace=True' if self.inplace else ''})"


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1 * d2 * ...), e.g. conv feature maps into a Linear layer.

    The output is a view of x when x's layout allows it (never written to), else a copy.
    """

    def forward(self, x):
        check_layer_input(self, x, min_ndim=2, layout="(N, ...)")
        self._cache = (x.shape, x.dtype)
        return x.reshape(x.shape[0], -1)

    def backward(self, dout, *, need_dx=True):
        x_shape, dtype = self._saved()
        check_layer_dout(self, dout, (x_shape[0], int(np.prod(x_shape[1:]))), dtype)
        return dout.reshape(x_shape) if need_dx else None

    def __repr__(self):
        return "Flatten()"


class Dropout(Layer):
    """Inverted dropout: in training, zero each element with probability p and scale the
    survivors by 1 / (1 - p), so evaluation is the identity and needs no rescaling.

    p : float in [0, 1), the probability of dropping an element.
    rng : None (NumPy's global generator), an int seed, a np.random.Generator or
        RandomState, for the masks: each training forward draws ``rng.random(x.shape)``
        (float64, uniform on [0, 1)) and keeps the elements whose number is >= p.
    backend : "auto", "cython" or "reference", passed to dropout_forward (the compiled
        pass applies the mask and scale and keeps one bit per element for the backward).

    forward keeps x's shape and dtype. In evaluation mode it returns x itself.
    """

    def __init__(self, p=0.5, rng=None, *, backend="auto"):
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 <= p < 1:
            raise ValueError(f"p (the drop probability) must lie in [0, 1), got {p!r}")
        self.p = float(p)
        self.rng = random_source(rng)
        self.backend = _backend.check_name(backend, "the backend argument")
        self._uniform = None  # a Generator's numbers are drawn into this buffer, kept between calls

    def _random(self, shape):
        """rng.random(shape): into a buffer kept by the layer when the rng can fill one (a
        Generator; the numbers are the same), saving a fresh float64 array per call."""
        if not isinstance(self.rng, np.random.Generator):
            return self.rng.random(shape)
        if self._uniform is None or self._uniform.shape != shape:
            self._uniform = np.empty(shape)
        return self.rng.random(out=self._uniform)

    def forward(self, x):
        check_layer_input(self, x)
        if not self.training:
            self._cache = (x.shape, x.dtype)
            return x
        out, cache = dropout_forward(x, self.p, self._random(x.shape), backend=self.backend)
        self._cache = cache
        return out

    def backward(self, dout, *, need_dx=True):
        cache = self._saved()
        training = not isinstance(cache, tuple)
        shape, dtype = (cache.shape, cache.dtype) if training else cache
        check_layer_dout(self, dout, shape, dtype)
        if not need_dx:
            return None
        return dropout_backward(dout, cache) if training else dout

    def __repr__(self):
        return f"Dropout(p={self.p})"
