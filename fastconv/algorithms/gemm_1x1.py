"""A 1x1, stride-1, unpadded convolution is one GEMM per image straight on x: no im2col."""
from . import im2col_gemm

NAME = "gemm-1x1"
HANDLES = "1x1 kernels with stride 1 and no padding"


def supports(geometry):
    reason = im2col_gemm.supports(geometry)
    if reason:
        return reason
    if geometry.kernel != (1, 1):
        return f"kernel {geometry.kernel}: only 1x1"
    if geometry.stride != (1, 1):
        return f"stride {geometry.stride}: only 1"
    if any(geometry.pad_before + geometry.pad_after):
        return "padding"
    return None


def forward(x, w, b, geometry):
    return im2col_gemm.run_forward(x, w, b, geometry, direct=True), None


def backward(dout, x, w, has_bias, geometry, need_dx=True):
    return im2col_gemm.run_backward(dout, x, w, has_bias, geometry, direct=True), None
