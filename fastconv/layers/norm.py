"""Spatial batch normalisation over (N, C, H, W) feature maps."""
import numbers

import numpy as np

from .base import Layer
from .core import as_param_dtype, check_layer_dout, check_layer_input

_CHANNEL_AXES = (0, 2, 3)


class BatchNorm2d(Layer):
    """Normalise each channel of an (N, C, H, W) batch, then scale and shift it.

    out = weight[c] * (x - mean[c]) / sqrt(var[c] + eps) + bias[c]

    In training, mean and var are the batch's own statistics over (N, H, W) (var biased,
    dividing by N*H*W), and the running estimates are updated:
    running = (1 - momentum) * running + momentum * batch_statistic, where the running
    variance takes the unbiased batch variance (dividing by N*H*W - 1).
    In evaluation, the running mean and variance are used, so the layer is a fixed
    per-channel affine map. backward works in both modes.

    Parameters
    ----------
    num_features : int, C
    eps : float > 0, added to the variance
    momentum : float in [0, 1], weight of the newest batch in the running estimates
    dtype : float32 (default) or float64; the input must have the same dtype.

    params : "weight" (C,) initialised to 1, "bias" (C,) initialised to 0.
    running_mean (C,) starts at 0, running_var (C,) at 1; they are state, not params.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, dtype=np.float32):
        super().__init__()
        if isinstance(num_features, (bool, np.bool_)) or not isinstance(num_features, (numbers.Integral, np.integer)):
            raise TypeError(f"num_features must be an int, got {type(num_features).__name__} {num_features!r}")
        if num_features < 1:
            raise ValueError(f"num_features must be >= 1, got {num_features}")
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not eps > 0:
            raise ValueError(f"eps must be a number > 0, got {eps!r}")
        if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real) or not 0 <= momentum <= 1:
            raise ValueError(f"momentum must lie in [0, 1], got {momentum!r}")
        self.num_features = int(num_features)
        self.eps = float(eps)
        self.momentum = float(momentum)
        self.dtype = as_param_dtype(dtype)
        self.params["weight"] = np.ones(self.num_features, dtype=self.dtype)
        self.params["bias"] = np.zeros(self.num_features, dtype=self.dtype)
        self.running_mean = np.zeros(self.num_features, dtype=self.dtype)
        self.running_var = np.ones(self.num_features, dtype=self.dtype)

    def _per_channel(self, values):
        return values.reshape(1, self.num_features, 1, 1)

    def forward(self, x):
        check_layer_input(self, x, ndim=4, layout=f"(N, C={self.num_features}, H, W)", dtype=self.dtype)
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"BatchNorm2d({self.num_features}) expects x of shape (N, {self.num_features}, H, W), "
                f"got {x.shape}"
            )
        dtype = self.dtype.type
        if self.training:
            count = x.shape[0] * x.shape[2] * x.shape[3]
            if count < 2:
                raise ValueError(
                    f"BatchNorm2d in training needs more than one value per channel to estimate a "
                    f"variance, got x of shape {x.shape}; use a larger batch or call eval()"
                )
            mean = x.mean(axis=_CHANNEL_AXES)
            centred = x - self._per_channel(mean)
            var = (centred * centred).mean(axis=_CHANNEL_AXES)
            inv_std = 1 / np.sqrt(var + dtype(self.eps))
            normalised = centred * self._per_channel(inv_std)
            keep = dtype(1 - self.momentum)
            self.running_mean = keep * self.running_mean + dtype(self.momentum) * mean
            self.running_var = keep * self.running_var + dtype(self.momentum) * var * dtype(count / (count - 1))
        else:
            inv_std = 1 / np.sqrt(self.running_var + dtype(self.eps))
            normalised = (x - self._per_channel(self.running_mean)) * self._per_channel(inv_std)
        self._cache = (normalised, inv_std, self.training)
        return normalised * self._per_channel(self.params["weight"]) + self._per_channel(self.params["bias"])

    def backward(self, dout, *, need_dx=True):
        normalised, inv_std, batch_statistics = self._saved()
        check_layer_dout(self, dout, normalised.shape, self.dtype)
        self.grads["weight"] = (dout * normalised).sum(axis=_CHANNEL_AXES)
        self.grads["bias"] = dout.sum(axis=_CHANNEL_AXES)
        if not need_dx:
            return None
        dnormalised = dout * self._per_channel(self.params["weight"])
        if not batch_statistics:
            return dnormalised * self._per_channel(inv_std)
        # mean and var depend on every element of the channel: remove the components of
        # dnormalised along the constant direction and along `normalised` itself
        mean_grad = dnormalised.mean(axis=_CHANNEL_AXES, keepdims=True)
        projection = (dnormalised * normalised).mean(axis=_CHANNEL_AXES, keepdims=True)
        return (dnormalised - mean_grad - normalised * projection) * self._per_channel(inv_std)

    def __repr__(self):
        return (
            f"BatchNorm2d({self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"dtype=np.{self.dtype})"
        )
