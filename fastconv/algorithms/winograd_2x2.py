"""Winograd F(2x2, 3x3) for 3x3 stride-1 convolutions: 16 GEMMs over transformed 4x4 input
tiles, each giving a 2x2 block of outputs, 2.25x fewer multiplications than direct. The
backward too: dx as a Winograd convolution of dout with the flipped kernels (padding 2 - p, so
p <= 2), dW as 16 GEMMs summing transformed dout tiles times transformed input tiles."""
import numpy as np

from . import _winograd

NAME = "winograd-2x2"
HANDLES = "3x3 kernels, stride 1, padding <= 2"
EPILOGUE = True
KEEPS_WEIGHTS = True  # forward(keep_weights=True): _winograd.kept_transform
TRANSFORMS = "2x2"  # its transform set, a key of _winograd.SETS
TRANSFORMS_INFINITIES = True  # may turn an infinity into NaN (module _winograd)


def supports(geometry):
    reason = _winograd.plain_3x3(geometry)
    if reason:
        return reason
    if geometry.stride != (1, 1):
        return f"stride {geometry.stride}: only 1"
    if max(geometry.padding) > 2:
        return f"padding {geometry.padding}: at most 2"
    return None


def cost(geometry, machine, pass_name):
    return _winograd.stride_one_cost(geometry, machine, pass_name, TRANSFORMS)


def forward(x, w, b, geometry, epilogue=None, keep_weights=False):
    out = np.empty(geometry.output_shape, dtype=x.dtype)
    return out, _winograd.forward(x, w, b, out, geometry.padding, TRANSFORMS, epilogue,
                                  keep_weights)


def backward(dout, x, w, has_bias, geometry, need_dx=True, need_dw=True):
    return _winograd.stride_one_backward(dout, x, w, has_bias, geometry, TRANSFORMS, need_dx,
                                         need_dw)
