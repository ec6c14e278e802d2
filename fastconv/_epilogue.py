"""What may happen to a convolution's output before it is returned, as one pass: the
per-channel affine map of a batch norm that uses its running statistics (evaluation mode, or
frozen), then a ReLU. Sequential.infer fuses Conv -> BatchNorm -> ReLU into one convolution
with this epilogue.

Algorithms with EPILOGUE = True (im2col, gemm-1x1, winograd-2x2, winograd-4x4, winograd-s2)
run it inside their kernel, on each block of the output while it is still in cache after its
GEMM (Winograd: after each band's output transform); for the others (depthwise,
s2d-winograd) apply() makes one pass in place over the finished output. Either way the
arithmetic is _kernels/_epilogue.pxd's (its NumPy twin: fastconv.reference.conv.epilogue):
the batch norm as _norm.plane_affine computes it ((v - mean) * scale + shift in double,
rounded once) and the ReLU as _elementwise.relu_forward (v <= 0 becomes 0, NaN stays NaN).
So the fused result equals conv, batch_norm_forward and relu_forward run one after the other,
but for FMA contraction in the ISA-specific copies (one rounding of the double, at most).
"""
from dataclasses import dataclass

import numpy as np

from . import _compiled
from .elementwise import _threads


@dataclass(frozen=True)
class Epilogue:
    """mean, scale, shift : float64 (F,) arrays of a batch norm's map, or all None;
    relu : whether a ReLU follows."""

    mean: object = None
    scale: object = None
    shift: object = None
    relu: bool = False

    def kernel_args(self):
        return self.mean, self.scale, self.shift, self.relu


NONE = Epilogue()  # nothing to do


def batch_norm(mean, scale, shift, relu):
    """An Epilogue from a batch norm's float64 mean, scale and shift (each (F,))."""
    arrays = [np.ascontiguousarray(a, dtype=np.float64) for a in (mean, scale, shift)]
    return Epilogue(*arrays, relu=bool(relu))


def check(epilogue, filters):
    """A clear error unless `epilogue` is an Epilogue whose arrays are (filters,) float64
    (the kernels index them by filter without checks)."""
    if not isinstance(epilogue, Epilogue):
        raise TypeError(f"epilogue must be a fastconv._epilogue.Epilogue, got {type(epilogue).__name__}")
    arrays = (epilogue.mean, epilogue.scale, epilogue.shift)
    if all(a is None for a in arrays):
        return
    for name, a in zip(("mean", "scale", "shift"), arrays):
        if not isinstance(a, np.ndarray) or a.dtype != np.float64 or a.shape != (filters,) \
                or not a.flags.c_contiguous:
            described = f"{a.dtype} {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
            raise ValueError(f"epilogue.{name} must be a contiguous float64 array of shape "
                             f"({filters},), one value per filter; got {described}")


def apply(out, epilogue):
    """Run `epilogue` over out (N, F, ...) in place; returns out."""
    if out.size:
        _compiled.conv.apply_epilogue(out.reshape(out.shape[0], out.shape[1], -1),
                                      *epilogue.kernel_args(),
                                      _threads(out.size))  # a memory-bound pass, as ReLU's
    return out
