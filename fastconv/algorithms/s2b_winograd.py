"""Space-to-batch + Winograd F(4x4, 3x3) for dilated 3x3 stride-1 convolutions (DeepLab's and
WaveNet's atrous layers). With dilation (d_h, d_w), output (oh, ow) reads padded pixels
(oh + d_h*i, ow + d_w*j); writing oh = d_h*p + a makes them pixels (p + i, q + j) of phase
image (a, b), the padded input's rows a, a + d_h, ... and columns b, b + d_w, ... So the
convolution is an undilated 3x3 one over d_h*d_w times as many phase images, each a quarter
(for dilation 2) of the input, with the same kernel: F(4x4, 3x3) then does it with 4x fewer
multiplications than im2col does the dilated one. Its gradients are that convolution's, put
back in place by the adjoint copy (docs/algorithms.md, "Space-to-batch").

The phase images and the phase outputs are made a pass of images at a time in the scratch
pool (at most half the workspace budget), so memory stays bounded.
"""
import numpy as np

from .. import _compiled, _tuning
from .._scratch import scratch
from .._settings import get_num_threads, get_workspace_limit
from . import _winograd

NAME = "s2b-winograd"
HANDLES = "dilated 3x3 kernels at stride 1 (zero padding, any per-side amounts)"
TRANSFORMS_INFINITIES = True


def supports(geometry):
    if geometry.ndim != 2:
        return f"{geometry.ndim}-D convolutions"
    if geometry.kernel != (3, 3):
        return f"kernel {geometry.kernel}: only 3x3"
    if geometry.groups != 1:
        return "grouped convolutions"
    if geometry.undilated:
        return "undilated convolutions"
    if geometry.stride != (1, 1):
        return f"stride {geometry.stride}: only 1"
    if not geometry.zero_padded:
        return f"padding_mode {geometry.padding_mode!r}"
    return None


def phase_out(geometry):
    """(OH', OW'): the output rows and columns of each phase, ceil(OH / d_h) and ceil(OW / d_w)
    (phases a > 0 may need one fewer; their last row or column is computed and dropped)."""
    (rows, columns), (dilation_h, dilation_w) = geometry.out, geometry.dilation
    return -(-rows // dilation_h), -(-columns // dilation_w)


def phases_per_image(geometry):
    return geometry.dilation[0] * geometry.dilation[1]


def cost(geometry, machine, pass_name):
    """The phase copies (in and out), then F(4x4, 3x3) over the phase images."""
    images = geometry.batch * phases_per_image(geometry)
    rows, columns = phase_out(geometry)
    channels, filters = geometry.channels, geometry.filters
    pixels = images * (rows + 2) * (columns + 2)

    def copy(planes, size):
        return machine.spread(machine.work("copy", planes * size), geometry.batch, machine.threads)

    x_copy = copy(channels, pixels)
    out_copy = copy(filters, images * rows * columns)
    if pass_name == "forward":
        return x_copy + out_copy + _winograd.forward_cost(machine, images, channels, filters,
                                                          rows, columns, "4x4")
    seconds = out_copy  # dout into phases, for either gradient
    if pass_name in ("backward", "backward-weights"):
        seconds += x_copy + _winograd.weight_gradient_cost(machine, images, channels, filters,
                                                           rows, columns, "4x4")
    if pass_name in ("backward", "backward-data"):
        seconds += x_copy + _winograd.forward_cost(machine, images, filters, channels, rows + 2,
                                                   columns + 2, "4x4")
    return seconds


def _copy_threads(size):
    return get_num_threads() if size >= _tuning.MIN_PARALLEL_COPY else 1


def _to_phases(array, target, geometry, padding):
    """target (d_h*d_w*n, planes, P, Q) = the phase images of array (n, planes, H, W) padded
    by `padding` before each axis (zeros past it), by the compiled copy
    (fastconv.reference.polyphase.space_to_batch is its NumPy twin)."""
    _compiled.im2col.space_to_depth(array, target, *geometry.dilation, *padding,
                                    _copy_threads(target.size), True)


def _from_phases(phases, target, geometry, padding):
    """target (n, planes, H, W) overwritten from its phase images (the adjoint of _to_phases,
    fastconv.reference.polyphase.batch_to_space)."""
    _compiled.im2col.depth_to_space(phases, target, *geometry.dilation, *padding,
                                    _copy_threads(phases.size), True)


def _passes(geometry, itemsize):
    """(start, stop) image ranges whose phase images of x and of the output fit in half the
    workspace budget together."""
    rows, columns = phase_out(geometry)
    per_image = phases_per_image(geometry) * itemsize * (
        geometry.channels * (rows + 2) * (columns + 2) + geometry.filters * rows * columns)
    step = max(1, min(geometry.batch, get_workspace_limit() // 2 // max(1, per_image)))
    for start in range(0, geometry.batch, step):
        yield start, min(start + step, geometry.batch)


def _scratch_phases(geometry, dtype, images):
    """Scratch phase images of x (d*images, C, OH' + 2, OW' + 2) and of the output
    (d*images, F, OH', OW'), d = d_h*d_w."""
    rows, columns = phase_out(geometry)
    count = phases_per_image(geometry) * images
    return scratch(dtype, (count, geometry.channels, rows + 2, columns + 2),
                   (count, geometry.filters, rows, columns))


def forward(x, w, b, geometry):
    """out by Winograd F(4x4, 3x3) over the phase images a pass at a time, and whether every
    output is finite."""
    out = np.empty(geometry.output_shape, dtype=x.dtype)
    kernels = np.ascontiguousarray(w)
    finite = True
    for start, stop in _passes(geometry, x.dtype.itemsize):
        with _scratch_phases(geometry, x.dtype, stop - start) as (phases, outputs):
            _to_phases(x[start:stop], phases, geometry, geometry.padding)
            finite &= _winograd.forward(phases, kernels, b, outputs, (0, 0), "4x4")
            _from_phases(outputs, out[start:stop], geometry, (0, 0))
    return out, finite


def backward(dout, x, w, has_bias, geometry, need_dx=True, need_dw=True):
    """((dx, dw, db), whether they came out all finite): the F(4x4, 3x3) gradients of the
    phase convolution, a pass of images at a time, put back by the adjoint copy."""
    flipped = _winograd.flipped(np.ascontiguousarray(w)) if need_dx else None
    dx = np.empty(geometry.input_shape, dout.dtype) if need_dx else None
    dw = db = None
    finite = True
    for start, stop in _passes(geometry, dout.dtype.itemsize):
        with _scratch_phases(geometry, dout.dtype, stop - start) as (phases, douts):
            # dout's phases: zero where a phase has an output past the convolution's
            _to_phases(dout[start:stop], douts, geometry, (0, 0))
            if need_dw:
                _to_phases(x[start:stop], phases, geometry, geometry.padding)
                part_dw, part_db = _winograd.weight_gradient(phases, douts, (0, 0), has_bias, "4x4")
                dw = part_dw if dw is None else dw + part_dw
                db = part_db if db is None else db + part_db
            if need_dx:
                # the phases' gradient (their full correlation with the flipped kernel),
                # written over them
                finite &= _winograd.forward(douts, flipped, None, phases, (2, 2), "4x4")
                _from_phases(phases, dx[start:stop], geometry, geometry.padding)
    if dw is not None:
        finite &= bool(np.isfinite(dw).all())  # as in _winograd.stride_one_backward
    return (dx, dw, db), finite
