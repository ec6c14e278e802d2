"""Winograd at stride 2 for 3x3 kernels: a 2x2 block of outputs reads a 5x5 block of padded
input; along each axis the even taps meet the even inputs as a stride-1 two-tap filter
(Winograd F(2, 2), 3 multiplications) and the odd tap meets the odd inputs directly: 25 GEMMs
instead of 36 products per block and channel, 1.44x fewer multiplications, every transform
coefficient 0 or +-1 (docs/algorithms.md). Forward only: its backward is im2col's (a Winograd
weight gradient at stride 2 was tried and was slower, docs/performance.md)."""
import numpy as np

from . import _winograd, im2col_gemm

NAME = "winograd-s2"
HANDLES = "3x3 kernels, stride 2"
EPILOGUE = True
KEEPS_WEIGHTS = True  # forward(keep_weights=True): _winograd.kept_transform
TRANSFORMS = "stride-2"  # its transform set, a key of _winograd.SETS
TRANSFORMS_INFINITIES = True


def supports(geometry):
    reason = _winograd.plain_3x3(geometry)
    if reason:
        return reason
    if geometry.stride != (2, 2):
        return f"stride {geometry.stride}: only 2"
    return None


def cost(geometry, machine, pass_name):
    if pass_name != "forward":
        return im2col_gemm.cost(geometry, machine, pass_name)
    return _winograd.forward_cost(machine, geometry.batch, geometry.channels, geometry.filters,
                                  *geometry.out, TRANSFORMS, weights=not machine.weights_kept)


def forward(x, w, b, geometry, epilogue=None, keep_weights=False):
    out = np.empty(geometry.output_shape, dtype=x.dtype)
    return out, _winograd.forward(x, w, b, out, geometry.padding, TRANSFORMS, epilogue,
                                  keep_weights)


backward = im2col_gemm.backward
