"""Space-to-depth + Winograd F(4x4, 3x3) for strided convolutions whose kernel spans at most
3 strides each way (alexnet-c1's 11x11 stride 4). With stride s, output (oh, ow) reads padded
pixels (s*oh + kh, s*ow + kw); writing kh = s*i + a makes that pixel (oh + i, ow + j) of phase
image (a, b), so the conv is a 3x3 stride-1 one over C*s_h*s_w phase images with the kernel
cut the same way (taps past it zero). Its gradients are that conv's, put back in place
(docs/algorithms.md, "Space-to-depth"). Phase images are made a pass of images at a time in
the scratch pool (at most half the workspace budget), so memory stays bounded.
"""
import numpy as np

from .. import _compiled, _tuning
from .._scratch import scratch
from .._settings import get_num_threads, get_workspace_limit
from . import _winograd

NAME = "s2d-winograd"
HANDLES = "strides above 1 with kernels of at most 3 strides a side (KH <= 3*stride_h, KW <= 3*stride_w)"
TRANSFORMS_INFINITIES = True


def supports(geometry):
    if geometry.ndim != 2:
        return f"{geometry.ndim}-D convolutions"
    if geometry.groups != 1:
        return "grouped convolutions"
    if not geometry.undilated:
        return "dilated convolutions"
    if not geometry.zero_padded:
        return f"padding_mode {geometry.padding_mode!r}"
    if not geometry.symmetric:
        return "asymmetric padding"
    if geometry.stride == (1, 1):
        return "stride 1"
    if geometry.kernel_height > 3 * geometry.stride_height \
            or geometry.kernel_width > 3 * geometry.stride_width:
        return f"kernel {geometry.kernel} spans more than 3 strides {geometry.stride}"
    return None


def phase_shape(window):
    """(N, C*s_h*s_w, OH + 2, OW + 2): the phase images of x for `window`."""
    stride_h, stride_w = window.stride
    return (window.batch, window.channels * stride_h * stride_w, window.out_height + 2,
            window.out_width + 2)


def split_kernels(w, window):
    """(F, C*s_h*s_w, 3, 3) kernels over the phase images from w (F, C, KH, KW): w's own
    space-to-depth, its filters as the images and no padding (zero past KH, KW), by the
    compiled copy (fastconv.reference.polyphase.split_kernels is its NumPy twin). The NumPy
    transposing copy took 13.6 ms of a 40 ms call on dcgan's (512, 256, 4, 4) stride-2
    weights (docs/performance.md, "The kernels' split, compiled")."""
    stride_h, stride_w = window.stride
    filters, channels = w.shape[:2]
    split = np.empty((filters, channels * stride_h * stride_w, 3, 3), dtype=w.dtype)
    _compiled.im2col.space_to_depth(np.ascontiguousarray(w), split, stride_h, stride_w, 0, 0,
                                    _copy_threads(split.size))
    return split


def merge_kernels(split, window):
    """The adjoint of split_kernels: dW (F, C, KH, KW) from the gradient of the split kernels
    (F, C*s_h*s_w, 3, 3), by the compiled depth-to-space (every tap of w lies in one phase,
    since KH <= 3*s_h and KW <= 3*s_w; fastconv.reference.polyphase.merge_kernels is its
    twin)."""
    merged = np.empty((split.shape[0], window.channels, window.kernel_height,
                       window.kernel_width), dtype=split.dtype)
    _compiled.im2col.depth_to_space(np.ascontiguousarray(split), merged, *window.stride, 0, 0,
                                    _copy_threads(split.size))
    return merged


def cost(geometry, machine, pass_name):
    """The phase copies and the kernels' split (and for dW its merge), then F(4x4, 3x3) over
    the C*s_h*s_w phase images (unpadded, so its outputs are the convolution's)."""
    batch, _, rows, columns = phase_shape(geometry)
    phases = geometry.channels * geometry.stride_height * geometry.stride_width
    copy = machine.spread(machine.work("s2d-phase-copy", batch * phases * rows * columns),
                          batch, machine.threads)
    filters, out = geometry.filters, geometry.out
    taps = filters * phases * 9
    split = machine.spread(machine.work("s2d-kernel-split", taps), filters,
                           machine.threads if taps >= _tuning.MIN_PARALLEL_COPY else 1)
    if pass_name == "forward":
        return copy + split + _winograd.forward_cost(machine, batch, phases, filters, *out, "4x4")
    seconds = split
    if pass_name in ("backward", "backward-weights"):
        seconds += copy + split + _winograd.weight_gradient_cost(machine, batch, phases, filters,
                                                                 *out, "4x4")
    if pass_name in ("backward", "backward-data"):
        seconds += copy + _winograd.forward_cost(machine, batch, filters, phases, rows, columns, "4x4")
    return seconds


def _copy_threads(size):
    return get_num_threads() if size >= _tuning.MIN_PARALLEL_COPY else 1


def _passes(x, geometry, dtype):
    """(start, stop, phase images of x[start:stop]) for each pass: as many images at a time
    as have phase images fitting in half the workspace budget (the Winograd passes take their
    own work buffers besides), filled in scratch memory by the compiled space_to_depth
    (fastconv.reference.polyphase.space_to_depth is its NumPy twin); x None: left unfilled."""
    shape = phase_shape(geometry)[1:]
    step = max(1, min(geometry.batch,
                      get_workspace_limit() // 2 // (int(np.prod(shape)) * dtype.itemsize)))
    with scratch(dtype, (step,) + shape) as phases:
        for start in range(0, geometry.batch, step):
            stop = min(start + step, geometry.batch)
            part = phases[:stop - start]
            if x is not None:
                _compiled.im2col.space_to_depth(x[start:stop], part, *geometry.stride,
                                                *geometry.padding, _copy_threads(part.size))
            yield start, stop, part


def forward(x, w, b, geometry):
    """out by Winograd F(4x4, 3x3) over the phase images a pass at a time, and whether every
    output is finite."""
    out = np.empty(geometry.output_shape, dtype=x.dtype)
    kernels = split_kernels(w, geometry)
    finite = True
    for start, stop, phases in _passes(x, geometry, x.dtype):
        finite &= _winograd.forward(phases, kernels, b, out[start:stop], (0, 0), "4x4")
    return out, finite


def backward(dout, x, w, has_bias, geometry, need_dx=True, need_dw=True):
    """((dx, dw, db), whether they came out all finite): the F(4x4, 3x3)
    gradients of the phase convolution, a pass of images at a time, put back by the adjoint
    rearrangements."""
    kernels = split_kernels(w, geometry)
    # dx of the phases: their full correlation with the flipped split kernels (the phase
    # conv being unpadded)
    flipped = _winograd.flipped(kernels)
    dx = np.empty(geometry.input_shape, dout.dtype) if need_dx else None
    dw = db = None
    finite = True
    for start, stop, phases in _passes(x if need_dw else None, geometry, dout.dtype):
        if need_dw:
            part_dw, part_db = _winograd.weight_gradient(phases, dout[start:stop], (0, 0),
                                                         has_bias, "4x4")
            dw = part_dw if dw is None else dw + part_dw
            db = part_db if db is None else db + part_db
        if need_dx:
            # the phases' gradient, written over them (their values are used up)
            finite &= _winograd.forward(dout[start:stop], flipped, None, phases, (2, 2), "4x4")
            _compiled.im2col.depth_to_space(phases, dx[start:stop], *geometry.stride,
                                            *geometry.padding, _copy_threads(phases.size))
    if dw is not None:
        dw = merge_kernels(dw, geometry)
        finite &= bool(np.isfinite(dw).all())  # as in _winograd.stride_one_backward
    return (dx, dw, db), finite
