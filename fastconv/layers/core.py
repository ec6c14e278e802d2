"""Dense and elementwise layers: Linear, ReLU, LeakyReLU, Flatten, Dropout."""
import numbers

import numpy as np

from .._validate import FLOAT_DTYPES
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

    params : "weight" (out_features, in_features), "bias" (out_features,) when bias=True.
    forward : x (N, in_features) -> out (N, out_features).
    """

    def __init__(self, in_features, out_features, bias=True, dtype=np.float32, *, rng=None, weight_scale=None):
        super().__init__()
        self.in_features = _check_positive_int(in_features, "in_features")
        self.out_features = _check_positive_int(out_features, "out_features")
        self.dtype = as_param_dtype(dtype)
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
        out = x @ self.params["weight"].T
        if "bias" in self.params:
            out += self.params["bias"]
        self._cache = (x, out.shape)
        return out

    def backward(self, dout):
        x, out_shape = self._saved()
        check_layer_dout(self, dout, out_shape, self.dtype)
        self.grads["weight"] = dout.T @ x
        if "bias" in self.params:
            self.grads["bias"] = dout.sum(axis=0)
        return dout @ self.params["weight"]

    def __repr__(self):
        return (
            f"Linear({self.in_features}, {self.out_features}, bias={'bias' in self.params}, "
            f"dtype=np.{self.dtype})"
        )


class ReLU(Layer):
    """max(x, 0) elementwise; any shape, float32 or float64 (the output keeps x's dtype).

    At exactly 0 the gradient is taken as 0. NaN stays NaN (as in PyTorch).
    """

    def forward(self, x):
        check_layer_input(self, x)
        positive = x > 0
        self._cache = (positive, x.dtype)
        # np.maximum, not np.where(x > 0, ...): a NaN must stay NaN, or a diverging net hides
        return np.maximum(x, x.dtype.type(0))

    def backward(self, dout):
        positive, dtype = self._saved()
        check_layer_dout(self, dout, positive.shape, dtype)
        return np.where(positive, dout, dtype.type(0))

    def __repr__(self):
        return "ReLU()"


class LeakyReLU(Layer):
    """x where x > 0, alpha * x elsewhere; any shape, keeps x's dtype.

    alpha : float >= 0, the slope for negative inputs (0.01 by default).
    """

    def __init__(self, alpha=0.01):
        super().__init__()
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not alpha >= 0:
            raise ValueError(f"alpha must be a number >= 0, got {alpha!r}")
        self.alpha = float(alpha)

    def forward(self, x):
        check_layer_input(self, x)
        positive = x > 0
        self._cache = (positive, x.dtype)
        return np.where(positive, x, x * x.dtype.type(self.alpha))

    def backward(self, dout):
        positive, dtype = self._saved()
        check_layer_dout(self, dout, positive.shape, dtype)
        return np.where(positive, dout, dout * dtype.type(self.alpha))

    def __repr__(self):
        return f"LeakyReLU(alpha={self.alpha})"


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1 * d2 * ...), e.g. conv feature maps into a Linear layer.

    The output is a view of x when x's layout allows it (never written to), else a copy.
    """

    def forward(self, x):
        check_layer_input(self, x, min_ndim=2, layout="(N, ...)")
        self._cache = (x.shape, x.dtype)
        return x.reshape(x.shape[0], -1)

    def backward(self, dout):
        x_shape, dtype = self._saved()
        check_layer_dout(self, dout, (x_shape[0], int(np.prod(x_shape[1:]))), dtype)
        return dout.reshape(x_shape)

    def __repr__(self):
        return "Flatten()"


class Dropout(Layer):
    """Inverted dropout: in training, zero each element with probability p and scale the
    survivors by 1 / (1 - p), so evaluation is the identity and needs no rescaling.

    p : float in [0, 1), the probability of dropping an element.
    rng : None (NumPy's global generator), an int seed, a np.random.Generator or
        RandomState, for the masks.

    forward keeps x's shape and dtype. In evaluation mode it returns x itself.
    """

    def __init__(self, p=0.5, rng=None):
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 <= p < 1:
            raise ValueError(f"p (the drop probability) must lie in [0, 1), got {p!r}")
        self.p = float(p)
        self.rng = random_source(rng)

    def forward(self, x):
        check_layer_input(self, x)
        if not self.training:
            self._cache = (None, x.shape, x.dtype)
            return x
        keep = self.rng.random(x.shape) >= self.p
        mask = keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - self.p))
        self._cache = (mask, x.shape, x.dtype)
        return x * mask

    def backward(self, dout):
        mask, shape, dtype = self._saved()
        check_layer_dout(self, dout, shape, dtype)
        return dout if mask is None else dout * mask

    def __repr__(self):
        return f"Dropout(p={self.p})"
