"""Depthwise convolution (groups == channels, any number of filters per channel, 1-D or 2-D,
any stride, dilation, padding and padding mode) by direct loops: each output row a sum of
KH*KW scaled runs of a padded input row (_kernels/_depthwise.pyx). No GEMM has anything to
gain here (one input channel per output), so the work is memory-bound: x, w and out are each
read or written about once per pass."""
import math

import numpy as np

from .. import _compiled, _tuning
from .._scratch import scratch
from .._settings import get_num_threads

NAME = "depthwise"
HANDLES = "depthwise convolutions (groups == channels), 1-D and 2-D"


def supports(geometry):
    if not geometry.depthwise:
        return "convolutions other than depthwise (groups == channels)"
    if geometry.ndim > 2:
        return "3-D convolutions"
    if 0 in geometry.size:
        return "an empty input"
    return None


def _as_2d(a, geometry):
    return a if geometry.ndim == 2 else a.reshape(a.shape[:2] + (1,) + a.shape[2:])


def _padded_elements(geometry):
    g = geometry.as_3d()
    return ((g.out[1] - 1) * g.stride[1] + (g.kernel[1] - 1) * g.dilation[1] + 1) * (
        (g.out[2] - 1) * g.stride[2] + (g.kernel[2] - 1) * g.dilation[2] + 1)


def _threads(geometry, tasks):
    """One thread for a call too small to pay for waking another; never more than tasks."""
    if 2 * geometry.macs() < _tuning.MIN_PARALLEL_FLOPS / 4:
        return 1
    return max(1, min(get_num_threads(), tasks))


def cost(geometry, machine, pass_name):
    """Memory-bound: each plane padded once per task, KH*KW multiply-adds per output."""
    taps = geometry.batch * geometry.filters * geometry.out_pixels * math.prod(geometry.kernel)
    pads = geometry.batch * geometry.channels * _padded_elements(geometry)
    # each tap of each output row is one call of the inner loop: short rows pay for the call
    runs = taps // max(1, geometry.out[-1])
    if pass_name == "forward":
        tasks = geometry.batch * geometry.channels
        seconds = (machine.work("depthwise-pad", pads) + machine.work("depthwise-tap", taps)
                   + machine.work("depthwise-run", runs))
    else:
        tasks = geometry.channels
        passes = (pass_name in ("backward", "backward-weights")) + (
            pass_name in ("backward", "backward-data"))
        seconds = passes * (machine.work("depthwise-pad", pads) + machine.work("depthwise-tap", taps)
                            + machine.work("depthwise-run", runs))
    return machine.spread(seconds, tasks, min(machine.threads, _threads(geometry, tasks)))


def forward(x, w, b, geometry):
    out = np.empty(geometry.output_shape, dtype=x.dtype)
    threads = _threads(geometry, geometry.batch * geometry.channels)
    kernel = w.reshape(geometry.filters, *geometry.as_3d().kernel[1:])
    with scratch(x.dtype, (threads, _padded_elements(geometry))) as padded:
        _compiled.depthwise.forward(_as_2d(x, geometry), kernel, b, _as_2d(out, geometry), padded,
                                    geometry.kernel_window(), threads)
    return out, None


def backward(dout, x, w, has_bias, geometry, need_dx=True, need_dw=True):
    dtype = dout.dtype
    threads = _threads(geometry, geometry.channels)
    kernel = w.reshape(geometry.filters, *geometry.as_3d().kernel[1:])
    dx = np.empty(geometry.input_shape, dtype) if need_dx else None
    dw = np.zeros(kernel.shape, dtype) if need_dw else None
    db = np.zeros(geometry.filters, dtype) if need_dw and has_bias else None
    size = _padded_elements(geometry)
    with scratch(dtype, (threads, size if need_dw else 0), (threads, size if need_dx else 0)) as (
            padded, dpadded):
        _compiled.depthwise.backward(
            _as_2d(dout, geometry), None if x is None or not need_dw else _as_2d(x, geometry),
            kernel, None if dx is None else _as_2d(dx, geometry), dw, db, padded, dpadded,
            geometry.kernel_window(), threads)
    return (dx, None if dw is None else dw.reshape(w.shape), db), None
