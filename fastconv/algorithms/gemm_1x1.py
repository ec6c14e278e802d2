"""A 1x1 (1x1x1, 1), stride-1, unpadded convolution without groups is one GEMM per image
straight on x: no im2col."""
from . import im2col_gemm

NAME = "gemm-1x1"
HANDLES = "1x1 kernels (any rank) with stride 1, no padding and no groups"
EPILOGUE = True


def supports(geometry):
    if any(k != 1 for k in geometry.kernel):
        return f"kernel {geometry.kernel}: only 1x1"
    if any(s != 1 for s in geometry.stride):
        return f"stride {geometry.stride}: only 1"
    if any(geometry.pad_before + geometry.pad_after):
        return "padding"
    if geometry.groups != 1:
        return "grouped convolutions"
    return None


def cost(geometry, machine, pass_name):
    return im2col_gemm.band_cost(geometry, machine, pass_name, direct=True)


def forward(x, w, b, geometry, epilogue=None):
    return im2col_gemm.run_forward(x, w, b, geometry, True, epilogue), None


def backward(dout, x, w, has_bias, geometry, need_dx=True, need_dw=True):
    return im2col_gemm.run_backward(dout, x, w, has_bias, geometry, True, need_dx, need_dw), None
