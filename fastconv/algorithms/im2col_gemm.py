"""im2col + GEMM: any shape. Bands of output rows are unfolded into columns and multiplied by
the weights, a band per task, so a band's columns are still in cache when its GEMM reads them.

Where windows overlap (each input pixel in at least STAGE_MIN_OVERLAP columns), a band's input
rows are first copied once into a zero-padded stage split by column phase, so that every im2col
row is a run of contiguous copies (_kernels/_tiles.pxd). The backward recomputes each band's
columns, adds dout (F, band) @ cols^T to dW and scatters W^T @ dout back into dx (col2im).
"""
import numpy as np

from .. import _blas, _compiled, _tuning
from .._scratch import scratch
from .._settings import get_num_threads, get_workspace_limit
from ._winograd import thread_sum

NAME = "im2col"
HANDLES = "every 2-D convolution"


def supports(geometry):
    if geometry.ndim != 2:
        return f"{geometry.ndim}-D convolutions"
    if geometry.groups != 1:
        return "grouped convolutions"
    if not geometry.undilated:
        return "dilated convolutions"
    if not geometry.zero_padded:
        return f"padding_mode {geometry.padding_mode!r}"
    return None


def stage_size(geometry, band_rows):
    """Elements of one thread's im2col stage (see _kernels/_tiles.pxd) for a band of
    band_rows output rows; 0 when windows overlap too little for the stage to pay off and
    plain im2col copies straight from x."""
    kernel_h, kernel_w = geometry.kernel_size
    stride_h, stride_w = geometry.stride
    if kernel_h * kernel_w < _tuning.STAGE_MIN_OVERLAP * stride_h * stride_w:
        return 0
    rows = (band_rows - 1) * stride_h + kernel_h
    stage_width = geometry.out_width + (kernel_w - 1) // stride_w
    return geometry.channels * rows * stride_w * stage_width


def plan(geometry, itemsize):
    """Threads and band height for one im2col call: (num_threads, band_rows).

    Work is split into bands of output rows whose im2col buffer stays in cache between
    its im2col and its GEMM (and within one thread's share of the workspace budget). With
    fewer tasks than threads the kernel runs on one thread and BLAS keeps its own threads.
    """
    threads = get_num_threads()
    patch = geometry.patch
    flops = 2 * geometry.macs()
    if geometry.batch < threads or flops < _tuning.MIN_PARALLEL_FLOPS:
        threads = 1
    # bytes per output row of a band: its im2col columns and its share of the stage
    row_bytes = max(1, (patch * geometry.out_width + stage_size(geometry, 2)
                        - stage_size(geometry, 1)) * itemsize)
    # A band small enough to stay in cache between its im2col and its GEMM, wide enough
    # (in columns) for the GEMM to run at speed; never past the workspace budget.
    allowed = get_workspace_limit() // threads // row_bytes
    wanted = max(_tuning.BAND_BYTES // row_bytes,
                 -(-_tuning.BAND_MIN_COLUMNS // max(1, geometry.out_width)))
    return threads, int(min(max(1, min(wanted, allowed)), geometry.out_height))


def run_forward(x, w, b, geometry, direct):
    """out (N, F, OH, OW) by the _conv kernel: im2col bands, or with `direct` (a 1x1,
    stride-1, unpadded convolution) one GEMM per band straight on x."""
    filters = w.shape[0]
    out = np.empty(geometry.output_shape, dtype=x.dtype)
    threads, band_rows = plan(geometry, x.itemsize)
    patch = geometry.patch
    weight = w.reshape(filters, patch)
    depth = patch
    if direct:
        band_rows = geometry.out_height
        depth = 0
    elif b is not None:
        # the bias as one more column of the weights, against a row of ones under the
        # im2col buffer: the GEMM adds it, with no separate pass over the output
        weight = np.concatenate((weight, b.reshape(filters, 1)), axis=1)
        depth, b = patch + 1, None
    stage = 0 if direct else stage_size(geometry, band_rows)
    with scratch(x.dtype, (threads, depth, band_rows * geometry.out_width),
                 (threads, stage)) as (workspace, stage_buffer):
        pieces = _blas.gemm_pieces(filters, depth or geometry.channels)
        _blas.run_kernel(_compiled.conv.forward, threads, x, weight, geometry.kernel_height,
                   geometry.kernel_width, b, out, workspace, stage_buffer, *geometry.stride,
                   *geometry.padding, band_rows, direct, pieces, all_small=pieces[2] > 0)
    return out


def transposed_weight_gradient(patch, filters, itemsize):
    """Whether the backward keeps dW transposed (see _conv.add_weight_gradient): when BLAS
    has a small-matrix path (small_gemm_limit) that would not take dW's own product
    (F, HW) @ (HW, C*KH*KW) (OpenBLAS 0.3.30 takes such a product, both inner dimensions
    contiguous, only when its result has at most SMALL_TN_RESULT elements), and dW is small
    enough to stay in cache as each piece of the transposed product adds onto it."""
    return (_blas.small_gemm_limit() > 0 and patch * filters > _tuning.SMALL_TN_RESULT
            and patch * filters * itemsize <= _tuning.TRANSPOSED_DW_BYTES)


def run_backward(dout, x, w, has_bias, geometry, direct):
    """dx, dw and db (None without a bias) by the _conv kernel (see run_forward)."""
    filters = w.shape[0]
    patch = geometry.patch
    dx = np.empty_like(x)
    threads, band_rows = plan(geometry, x.itemsize)
    if direct:
        band_rows = geometry.out_height
    band_columns = band_rows * geometry.out_width
    transposed = transposed_weight_gradient(patch, filters, x.itemsize)
    dweight = np.zeros((threads,) + ((patch, filters) if transposed else (filters, patch)), x.dtype)
    dbias = np.zeros((threads, filters), x.dtype) if has_bias else None
    with scratch(x.dtype, (threads, 0 if direct else patch, band_columns),
                 (threads, band_columns if transposed else 0, filters)) as (workspace, dout_band):
        _blas.run_kernel(_compiled.conv.backward, threads, dout, x, w, dx, dweight, dbias, workspace,
                   dout_band, *geometry.stride, *geometry.padding, band_rows, direct, transposed,
                   _blas.gemm_pieces(patch, filters), _blas.gemm_pieces(patch, band_columns))
    dw = thread_sum(dweight)
    if transposed:
        dw = np.ascontiguousarray(dw.T)
    return dx, dw.reshape(w.shape), None if dbias is None else thread_sum(dbias)


def forward(x, w, b, geometry):
    return run_forward(x, w, b, geometry, direct=False), None


def backward(dout, x, w, has_bias, geometry, need_dx=True):
    return run_backward(dout, x, w, has_bias, geometry, direct=False), None
