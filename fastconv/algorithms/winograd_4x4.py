"""Winograd F(4x4, 3x3) for 3x3 stride-1 convolutions: 36 GEMMs over transformed 6x6 input
tiles, each giving a 4x4 block of outputs, 4x fewer multiplications than direct; dx likewise
(a convolution of dout with the flipped kernels), dW as 36 GEMMs summing transformed 4x4 dout
tiles times transformed 6x6 input tiles. Its transforms have coefficients up to 8: float32
error about 15 times F(2x2, 3x3)'s (docs/algorithms.md)."""
import numpy as np

from . import _winograd, winograd_2x2

NAME = "winograd-4x4"
HANDLES = "3x3 kernels, stride 1, padding <= 2"
EPILOGUE = True
KEEPS_WEIGHTS = True  # forward(keep_weights=True): _winograd.kept_transform
TRANSFORMS = "4x4"  # its transform set, a key of _winograd.SETS
TRANSFORMS_INFINITIES = True

supports = winograd_2x2.supports


def cost(geometry, machine, pass_name):
    return _winograd.stride_one_cost(geometry, machine, pass_name, TRANSFORMS)


def forward(x, w, b, geometry, epilogue=None, keep_weights=False):
    out = np.empty(geometry.output_shape, dtype=x.dtype)
    return out, _winograd.forward(x, w, b, out, geometry.padding, TRANSFORMS, epilogue,
                                  keep_weights)


def backward(dout, x, w, has_bias, geometry, need_dx=True, need_dw=True):
    return _winograd.stride_one_backward(dout, x, w, has_bias, geometry, TRANSFORMS, need_dx,
                                         need_dw)
