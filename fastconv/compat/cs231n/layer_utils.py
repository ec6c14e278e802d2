"""The course's ``cs231n.layer_utils``: "sandwich" layers made of the layers in ``layers`` and ``fast_layers``.

Each ``*_forward`` returns (out, cache) and each ``*_backward(dout, cache)`` the gradients of
every input but the parameter dicts: (dx, dw, db), plus (dgamma, dbeta) with batch norm.
"""
from collections import namedtuple

from . import conv_relu_backward, conv_relu_forward, conv_relu_pool_backward, conv_relu_pool_forward  # noqa: F401
from . import conv_backward_fast, conv_forward_fast
from .layers import (affine_backward, affine_forward, relu_backward, relu_forward, spatial_batchnorm_backward,
                     spatial_batchnorm_forward)

AffineReluCache = namedtuple("AffineReluCache", "affine relu")
ConvBatchnormReluCache = namedtuple("ConvBatchnormReluCache", "conv batchnorm relu")

__all__ = [
    "affine_relu_forward", "affine_relu_backward",
    "conv_relu_forward", "conv_relu_backward",
    "conv_bn_relu_forward", "conv_bn_relu_backward",
    "conv_relu_pool_forward", "conv_relu_pool_backward",
]


def affine_relu_forward(x, w, b):
    """An affine layer followed by a ReLU.

    x (N, d_1, ..., d_k), w (D, M), b (M,) -> out (N, M), cache for affine_relu_backward.
    """
    affine_out, affine_cache = affine_forward(x, w, b)
    out, relu_cache = relu_forward(affine_out)
    return out, AffineReluCache(affine_cache, relu_cache)


def affine_relu_backward(dout, cache):
    """Backward pass of affine_relu_forward: (dx, dw, db)."""
    if not isinstance(cache, AffineReluCache):
        raise TypeError(f"cache must be the AffineReluCache returned by affine_relu_forward, got {type(cache).__name__}")
    return affine_backward(relu_backward(dout, cache.relu), cache.affine)


def conv_bn_relu_forward(x, w, b, gamma, beta, conv_param, bn_param):
    """Convolution, spatial batch norm, ReLU.

    x (N, C, H, W), w (F, C, HH, WW), b (F,), gamma and beta (F,), conv_param {'stride', 'pad'},
    bn_param as spatial_batchnorm_forward -> out (N, F, H', W'), cache.
    """
    conv_out, conv_cache = conv_forward_fast(x, w, b, conv_param, backend="auto")
    normalised, batchnorm_cache = spatial_batchnorm_forward(conv_out, gamma, beta, bn_param)
    out, relu_cache = relu_forward(normalised)
    return out, ConvBatchnormReluCache(conv_cache, batchnorm_cache, relu_cache)


def conv_bn_relu_backward(dout, cache):
    """Backward pass of conv_bn_relu_forward: (dx, dw, db, dgamma, dbeta)."""
    if not isinstance(cache, ConvBatchnormReluCache):
        raise TypeError("cache must be the ConvBatchnormReluCache returned by conv_bn_relu_forward, "
                        f"got {type(cache).__name__}")
    dnormalised, dgamma, dbeta = spatial_batchnorm_backward(relu_backward(dout, cache.relu), cache.batchnorm)
    dx, dw, db = conv_backward_fast(dnormalised, cache.conv)
    return dx, dw, db, dgamma, dbeta
