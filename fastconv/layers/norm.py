"""Normalisation layers: BatchNorm2d, BatchNorm1d, LayerNorm, GroupNorm, on fastconv.norm's kernels."""
import math
import numbers

import numpy as np

from .. import norm
from .base import Layer
from .core import as_param_dtype, check_layer_dout, check_layer_input


def _check_count(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def _check_eps(eps):
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not 0 < eps < math.inf:
        raise ValueError(f"eps must be a number > 0, got {eps!r}")
    return float(eps)


class _Normalization(Layer):
    """Shared parts: weight (initialised to 1) and bias (0) of `shape`, and the backward."""

    _backward = None  # the functional backward, set by each subclass

    def _init_affine(self, shape, eps, dtype):
        self.eps = _check_eps(eps)
        self.dtype = as_param_dtype(dtype)
        self.params["weight"] = np.ones(shape, dtype=self.dtype)
        self.params["bias"] = np.zeros(shape, dtype=self.dtype)

    def backward(self, dout, *, need_dx=True):
        """dx of the latest forward's input (None with need_dx=False); fills grads["weight"], grads["bias"].

        A layer with ``trainable = False`` leaves ``grads`` empty.
        """
        cache = self._saved()
        check_layer_dout(self, dout, cache.x.shape, self.dtype)
        trainable = getattr(self, "trainable", True)
        if not trainable and not need_dx:
            self.grads = {}
            return None
        dx, dweight, dbias = self._backward(dout, cache, need_dx=need_dx)
        self.grads = {"weight": dweight, "bias": dbias} if trainable else {}
        return dx


class _BatchNorm(_Normalization):
    """Batch normalisation of channel axis 1; the subclasses fix the input's rank."""

    _buffers = ("running_mean", "running_var")
    _backward = staticmethod(norm.batch_norm_backward)

    def __init__(self, num_features, eps=1e-5, momentum=0.1, dtype=np.float32):
        super().__init__()
        self.num_features = _check_count(num_features, "num_features")
        if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real) or not 0 <= momentum <= 1:
            raise ValueError(f"momentum must lie in [0, 1], got {momentum!r}")
        self.momentum = float(momentum)
        self._init_affine(self.num_features, eps, dtype)
        self.running_mean = np.zeros(self.num_features, dtype=self.dtype)
        self.running_var = np.ones(self.num_features, dtype=self.dtype)

    def _check_input(self, x):
        raise NotImplementedError

    def forward(self, x):
        self._check_input(x)
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"{type(self).__name__}({self.num_features}) expects x of shape {self._layout}, got {x.shape}"
            )
        # A frozen (trainable = False) batch norm normalises with its running statistics and
        # leaves them as they are, in training too: a frozen body does not drift while the
        # layers above it are fine-tuned (PyTorch would keep updating them; Keras does not).
        batch_statistics = self.training and getattr(self, "trainable", True)
        if batch_statistics and x.size // self.num_features < 2:
            raise ValueError(
                f"{type(self).__name__} in training needs more than one value per channel to estimate a "
                f"variance, got x of shape {x.shape}; use a larger batch or call eval()"
            )
        out, self._cache = norm.batch_norm_forward(
            x, self.params["weight"], self.params["bias"], self.running_mean, self.running_var,
            training=batch_statistics, momentum=self.momentum, eps=self.eps,
        )
        return out

    def _running_map(self):
        """(mean, scale, shift), float64 (C,), of the fixed affine map this layer applies in
        its current mode, or None when it would use the batch's statistics (training and
        trainable): for a convolution's epilogue (Sequential.infer)."""
        if self.training and getattr(self, "trainable", True):
            return None
        return norm.running_affine_map(self.params["weight"], self.params["bias"],
                                       self.running_mean, self.running_var, self.eps)

    def __repr__(self):
        return (
            f"{type(self).__name__}({self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"dtype=np.{self.dtype})"
        )


class BatchNorm2d(_BatchNorm):
    """Normalise each channel of an (N, C, H, W) batch, then scale and shift it.

    out = weight[c] * (x - mean[c]) / sqrt(var[c] + eps) + bias[c]

    In training, mean and var are the batch's own statistics over (N, H, W) (var biased,
    dividing by N*H*W), and the running estimates are updated in place:
    running = (1 - momentum) * running + momentum * batch_statistic, where the running
    variance takes the unbiased batch variance (dividing by N*H*W - 1).
    In evaluation, and whenever the layer is frozen (``trainable = False``), the running
    mean and variance are used and left unchanged, so the layer is a fixed
    per-channel affine map. backward works in both modes. Compiled (fastconv.norm):
    statistics in float64 from one pass over x, the backward fused into two passes.

    Parameters
    ----------
    num_features : int, C
    eps : float > 0, added to the variance
    momentum : float in [0, 1], weight of the newest batch in the running estimates
    dtype : float32 (default) or float64; the input must have the same dtype.

    params : "weight" (C,) initialised to 1, "bias" (C,) initialised to 0.
    running_mean (C,) starts at 0, running_var (C,) at 1; they are state, not params
    (named in ``_buffers``).
    """

    @property
    def _layout(self):
        return f"(N, {self.num_features}, H, W)"

    def _check_input(self, x):
        check_layer_input(self, x, ndim=4, layout=f"(N, C={self.num_features}, H, W)", dtype=self.dtype)


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of (N, C) features (after a Linear layer) or (N, C, L) sequences.

    As BatchNorm2d, with the statistics over N (and L): each of the C features is
    normalised over the batch, scaled by weight and shifted by bias.

    Parameters
    ----------
    num_features : int, C
    eps, momentum, dtype : as BatchNorm2d.

    params : "weight" (C,) = 1, "bias" (C,) = 0; running_mean (C,) = 0, running_var (C,) = 1.
    """

    @property
    def _layout(self):
        return f"(N, {self.num_features}) or (N, {self.num_features}, L)"

    def _check_input(self, x):
        check_layer_input(self, x, min_ndim=2, layout=f"(N, C={self.num_features}) or (N, C, L)", dtype=self.dtype)
        if x.ndim > 3:
            raise ValueError(f"BatchNorm1d input x must be 2-D (N, C) or 3-D (N, C, L), got shape {x.shape}; "
                             "use BatchNorm2d for (N, C, H, W)")


class LayerNorm(_Normalization):
    """Normalise each sample over its trailing dimensions, then scale and shift elementwise.

    For normalized_shape of k dimensions, each x[i] of that shape (i over the leading
    dimensions) becomes weight * (x[i] - mean_i) / sqrt(var_i + eps) + bias (var biased).
    The same in training and evaluation; no running statistics. Compiled (fastconv.norm).

    Parameters
    ----------
    normalized_shape : int or tuple of ints, the trailing shape of the input, e.g. D for
        (N, D) features or (C, H, W) for whole feature maps.
    eps : float > 0
    dtype : float32 (default) or float64.

    params : "weight" of normalized_shape initialised to 1, "bias" initialised to 0.
    forward : x (..., *normalized_shape) -> out of x's shape.
    """

    _backward = staticmethod(norm.layer_norm_backward)

    def __init__(self, normalized_shape, eps=1e-5, dtype=np.float32):
        super().__init__()
        shape = (normalized_shape,) if not isinstance(normalized_shape, (tuple, list)) else tuple(normalized_shape)
        if not shape:
            raise ValueError("normalized_shape must have at least one dimension")
        self.normalized_shape = tuple(_check_count(size, "normalized_shape") for size in shape)
        self._init_affine(self.normalized_shape, eps, dtype)

    def forward(self, x):
        k = len(self.normalized_shape)
        layout = "(..., " + ", ".join(str(size) for size in self.normalized_shape) + ")"
        check_layer_input(self, x, min_ndim=k, layout=layout, dtype=self.dtype)
        if x.shape[x.ndim - k:] != self.normalized_shape:
            raise ValueError(f"LayerNorm{self.normalized_shape} expects x of shape {layout}, got {x.shape}")
        out, self._cache = norm.layer_norm_forward(x, self.params["weight"], self.params["bias"], eps=self.eps)
        return out

    def __repr__(self):
        return f"LayerNorm({self.normalized_shape}, eps={self.eps}, dtype=np.{self.dtype})"


class GroupNorm(_Normalization):
    """Normalise each sample's groups of channels, then scale and shift each channel.

    The C channels form num_groups groups of C / num_groups consecutive channels; each
    sample's group is normalised over its channels and spatial positions (var biased), then
    channel c is scaled by weight[c] and shifted by bias[c]. Independent of the batch, the
    same in training and evaluation. num_groups=1 normalises whole samples (a layer norm with
    per-channel parameters), num_groups=C each channel (instance norm). Compiled (fastconv.norm).

    Parameters
    ----------
    num_groups : int >= 1 dividing num_channels
    num_channels : int, C
    eps : float > 0
    dtype : float32 (default) or float64.

    params : "weight" (C,) = 1, "bias" (C,) = 0.
    forward : x (N, C, *spatial) -> out of x's shape.
    """

    _backward = staticmethod(norm.group_norm_backward)

    def __init__(self, num_groups, num_channels, eps=1e-5, dtype=np.float32):
        super().__init__()
        self.num_groups = _check_count(num_groups, "num_groups")
        self.num_channels = _check_count(num_channels, "num_channels")
        if self.num_channels % self.num_groups:
            raise ValueError(f"num_groups ({self.num_groups}) must divide num_channels ({self.num_channels})")
        self._init_affine(self.num_channels, eps, dtype)

    def forward(self, x):
        check_layer_input(self, x, min_ndim=2, layout=f"(N, C={self.num_channels}, *spatial)", dtype=self.dtype)
        if x.shape[1] != self.num_channels:
            raise ValueError(f"GroupNorm({self.num_groups}, {self.num_channels}) expects x of shape "
                             f"(N, {self.num_channels}, ...), got {x.shape}")
        out, self._cache = norm.group_norm_forward(x, self.params["weight"], self.params["bias"], self.num_groups,
                                                   eps=self.eps)
        return out

    def __repr__(self):
        return f"GroupNorm({self.num_groups}, {self.num_channels}, eps={self.eps}, dtype=np.{self.dtype})"
