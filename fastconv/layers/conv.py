"""Conv2d: a convolution layer holding its weight and bias, on top of conv2d_forward/backward."""
import numbers

import numpy as np

from .. import _dispatch
from .._geometry import as_pair
from ..conv import conv2d_backward, conv2d_forward
from .base import Layer
from .core import _check_positive_int, as_param_dtype, check_layer_input, random_source


class Conv2d(Layer):
    """2-D convolution layer (cross-correlation) with zero padding.

    Parameters
    ----------
    in_channels, out_channels : int >= 1
    kernel_size, stride, padding : int or (h, w) pair
    bias : bool, whether to learn an additive bias per output channel.
    dtype : float32 (default) or float64: the parameters' dtype; the input must match.
    rng : None (NumPy's global generator, seeded by ``np.random.seed``), an int seed,
        a numpy.random.Generator or a numpy.random.RandomState, for the initial weights.
    weight_scale : None for He initialisation, ``randn * sqrt(2 / fan_in)`` with
        fan_in = in_channels * KH * KW (suited to ReLU networks), or a float standard deviation.
    backend : "auto", "cython" or "reference", passed to conv2d_forward.

    params : "weight" of shape (out_channels, in_channels, KH, KW) and, when bias=True,
        "bias" of shape (out_channels,), initially zero. ``grads`` gets the same keys
        from each backward.
    forward : x (N, in_channels, H, W) -> out (N, out_channels, OH, OW),
        OH = floor((H + 2*pad_h - KH) / stride_h) + 1, OW likewise.
    backward : dout (N, out_channels, OH, OW) -> dx (N, in_channels, H, W).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
                 dtype=np.float32, *, rng=None, weight_scale=None, backend="auto"):
        super().__init__()
        self.in_channels = _check_positive_int(in_channels, "in_channels")
        self.out_channels = _check_positive_int(out_channels, "out_channels")
        self.kernel_size = as_pair(kernel_size, "kernel_size", minimum=1)
        self.stride = as_pair(stride, "stride", minimum=1)
        self.padding = as_pair(padding, "padding", minimum=0)
        self.dtype = as_param_dtype(dtype)
        self.backend = _dispatch._check_name(backend, "the backend argument")
        fan_in = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        if weight_scale is None:
            weight_scale = np.sqrt(2.0 / fan_in)
        elif isinstance(weight_scale, bool) or not isinstance(weight_scale, numbers.Real) \
                or not weight_scale >= 0:
            raise ValueError(f"weight_scale must be None or a number >= 0, got {weight_scale!r}")
        shape = (self.out_channels, self.in_channels) + self.kernel_size
        self.params["weight"] = (random_source(rng).standard_normal(shape) * weight_scale).astype(self.dtype)
        if bias:
            self.params["bias"] = np.zeros(self.out_channels, dtype=self.dtype)

    def forward(self, x):
        """x (N, in_channels, H, W) of the layer's dtype -> out (N, out_channels, OH, OW)."""
        check_layer_input(self, x, ndim=4, layout=f"(N, {self.in_channels}, H, W)", dtype=self.dtype)
        if x.shape[1] != self.in_channels:
            raise ValueError(f"Conv2d expects x of shape (N, {self.in_channels}, H, W), got {x.shape}")
        out, self._cache = conv2d_forward(
            x, self.params["weight"], self.params.get("bias"), self.stride, self.padding,
            backend=self.backend,
        )
        return out

    def backward(self, dout, *, need_dx=True):
        """dout (N, out_channels, OH, OW), the forward output's shape and dtype -> dx (N, in_channels, H, W).

        Fills ``grads["weight"]`` and ``grads["bias"]`` (when the layer has a bias). With
        need_dx=False returns None instead of dx.
        """
        cache = self._saved()
        dx, dweight, dbias = conv2d_backward(dout, cache)
        self.grads["weight"] = dweight
        if "bias" in self.params:
            self.grads["bias"] = dbias
        return dx if need_dx else None

    def __repr__(self):
        return (
            f"Conv2d({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, bias={'bias' in self.params}, "
            f"dtype=np.{self.dtype.name})"
        )
