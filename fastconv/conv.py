"""conv2d forward/backward: validate, choose backend and algorithm, run the kernel."""
from contextlib import contextmanager

import numpy as np

from . import _dispatch, _polyphase
from ._cache import ConvCache
from ._config import (get_num_threads, get_workspace_limit, scratch, single_threaded_blas,
                      small_gemm_limit)
from ._geometry import BLAS_INT_MAX
from ._validate import check_cache, check_dout, contiguous, conv2d_inputs
from .reference.conv import _backward as _reference_backward
from .reference.conv import _forward as _reference_forward

# Algorithms of the compiled backend. Each handles the shapes its predicate accepts.
ALGORITHMS = {
    # a 1x1, stride-1, unpadded convolution is one GEMM per image straight on x
    "gemm-1x1": lambda window: window.kernel_size == (1, 1)
    and window.stride == (1, 1)
    and window.padding == (0, 0),
    # Winograd F(4x4, 3x3): 3x3 stride-1 kernels, padding <= 2 (for backward-data, as
    # F(2x2, 3x3) below); both gradients by it too
    "winograd-4x4": lambda window: window.kernel_size == (3, 3) and window.stride == (1, 1)
    and max(window.padding) <= 2,
    # Winograd F(2x2, 3x3): 3x3 stride-1 kernels; backward-data is again such a
    # convolution (of dout with the flipped kernels, padding 2 - p), so padding <= 2.
    # 3x3 stride-2 kernels by its stride-2 counterpart (forward only; backward by im2col).
    "winograd": lambda window: window.kernel_size == (3, 3)
    and (window.stride == (1, 1) and max(window.padding) <= 2 or window.stride == (2, 2)),
    # a strided conv whose kernel spans at most 3 strides each way, as a 3x3 stride-1 conv
    # over the input's space-to-depth phase images (_polyphase) by Winograd F(4x4, 3x3)
    "s2d-winograd": lambda window: window.stride != (1, 1)
    and window.kernel_height <= 3 * window.stride_height
    and window.kernel_width <= 3 * window.stride_width,
    # im2col over bands of output rows + GEMM: any shape
    "im2col": lambda window: True,
}

# Below this many channels or filters the Winograd transforms cost more than they save.
_WINOGRAD_MIN_CHANNELS = 16
# A Winograd band's transformed tiles are kept near this size per thread: large enough that
# each GEMM has tiles enough to run at speed (res-s2's stride-2 rows are 7 tiles wide). Of
# 1, 2, 4 and 8 MiB, 4 ran res-s2 fastest (float32 and float64) and vgg-3x3 as fast as any.
_WINOGRAD_BAND_BYTES = 4 * 2**20
# "auto" takes F(4x4, 3x3) over F(2x2, 3x3) where its tiles need at most this share of the
# latter's multiplications (9/16 when both tilings fit the output exactly): its transforms
# cost about twice as much per output, so a 14x14 output (0.73, tiles of 4 covering 16x16)
# ran slower with it, 32x32 and 56x56 ones (0.56) 1.2-1.4x faster.
_WINOGRAD_4X4_MAX_SHARE = 0.6


# "auto" takes s2d-winograd where it needs at most this share of the direct method's
# multiplications. alexnet-c1 (11x11, stride 4: 0.31) ran its forward 1.35-1.5x and its
# backward 1.14-1.27x faster with it (float32-float64); a 3x3 stride-2 kernel (1.0 or more:
# its 2x2 phase kernels are padded to 3x3) never pays.
_S2D_MAX_SHARE = 0.5


def _s2d_pays(window, filters):
    """Whether s2d-winograd has phase channels and filters enough for Winograd and does
    few enough multiplications against the direct method here."""
    phases = window.stride_height * window.stride_width
    products = 36 * -(-window.out_height // 4) * -(-window.out_width // 4) * phases
    direct = window.kernel_height * window.kernel_width * window.out_height * window.out_width
    return (min(window.channels * phases, filters) >= _WINOGRAD_MIN_CHANNELS
            and products <= _S2D_MAX_SHARE * direct)


def _winograd_4x4_pays(window):
    """Whether F(4x4, 3x3) does few enough multiplications against F(2x2, 3x3) here."""
    height, width = window.out_height, window.out_width
    products_4x4 = 36 * -(-height // 4) * -(-width // 4)
    products_2x2 = 16 * -(-height // 2) * -(-width // 2)
    return products_4x4 <= _WINOGRAD_4X4_MAX_SHARE * products_2x2


_SUPPORT = {
    "gemm-1x1": "1x1 kernels with stride 1 and no padding",
    "winograd-4x4": "3x3 kernels with stride 1 and padding <= 2",
    "winograd": "3x3 kernels with stride 1 and padding <= 2, or with stride 2",
    "s2d-winograd": "strides above 1 with kernels of at most 3 strides a side "
    "(KH <= 3*stride_h, KW <= 3*stride_w)",
    "im2col": "every shape",
}


def available_algorithms(window=None):
    """Names accepted by `algorithm=`; with a Window2d, only those that handle it."""
    return [name for name, fits in ALGORITHMS.items() if window is None or fits(window)]


def _choose_algorithm(algorithm, window, filters):
    if algorithm == "auto":
        usable = available_algorithms(window)
        if min(window.channels, filters) < _WINOGRAD_MIN_CHANNELS:
            usable = [name for name in usable if name not in _WINOGRAD_TRANSFORMS]
        if "s2d-winograd" in usable and not _s2d_pays(window, filters):
            usable.remove("s2d-winograd")
        if "winograd-4x4" in usable and not _winograd_4x4_pays(window):
            usable.remove("winograd-4x4")
        return usable[0]
    if algorithm not in ALGORITHMS:
        raise ValueError(
            f"unknown algorithm {algorithm!r}; valid names are: auto, {', '.join(ALGORITHMS)}"
        )
    if not ALGORITHMS[algorithm](window):
        raise ValueError(
            f"algorithm {algorithm!r} does not support kernel {window.kernel_size}, stride "
            f"{window.stride}, padding {window.padding}; it handles {_SUPPORT[algorithm]}"
        )
    return algorithm


def _check_blas_limits(window, filters):
    sizes = {
        "C*KH*KW": window.channels * window.kernel_height * window.kernel_width,
        "H*W": window.height * window.width,
        "OH*OW": window.out_height * window.out_width,
        "F": filters,
    }
    for name, size in sizes.items():
        if size > BLAS_INT_MAX:
            raise ValueError(
                f"{name} = {size} exceeds the 32-bit BLAS size limit ({BLAS_INT_MAX}); "
                f"x shape {window.input_shape}, kernel {window.kernel_size}"
            )


# Below about this much work per call, waking a second thread costs more than it saves.
_MIN_PARALLEL_FLOPS = 10_000_000


# Band sizing (im2col algorithm), measured on the benchmark suite: see _plan.
_BAND_BYTES = 128 * 2**10
_BAND_MIN_COLUMNS = 256


# The im2col stage pays off where each input pixel lands in at least this many columns
# (KH*KW / (stride_h*stride_w)); 3x3 stride-2 windows (2.25) ran as fast or faster without.
_STAGE_MIN_OVERLAP = 4


def _stage_size(window, band_rows):
    """Elements of one thread's im2col stage (see _kernels/_tiles.pxd) for a band of
    band_rows output rows; 0 when windows overlap too little for the stage to pay off and
    plain im2col copies straight from x."""
    kernel_h, kernel_w = window.kernel_size
    stride_h, stride_w = window.stride
    if kernel_h * kernel_w < _STAGE_MIN_OVERLAP * stride_h * stride_w:
        return 0
    rows = (band_rows - 1) * stride_h + kernel_h
    stage_width = window.out_width + (kernel_w - 1) // stride_w
    return window.channels * rows * stride_w * stage_width


def _plan(window, filters, itemsize):
    """Threads and band height for one im2col call: (num_threads, band_rows).

    Work is split into bands of output rows whose im2col buffer stays in cache between
    its im2col and its GEMM (and within one thread's share of the workspace budget). With
    fewer tasks than threads the kernel runs on one thread and BLAS keeps its own threads.
    """
    threads = get_num_threads()
    patch = window.channels * window.kernel_height * window.kernel_width
    flops = 2 * window.batch * filters * patch * window.out_height * window.out_width
    if window.batch < threads or flops < _MIN_PARALLEL_FLOPS:
        threads = 1
    # bytes per output row of a band: its im2col columns and its share of the stage
    row_bytes = max(1, (patch * window.out_width + _stage_size(window, 2)
                        - _stage_size(window, 1)) * itemsize)
    # A band small enough to stay in cache between its im2col and its GEMM, wide enough
    # (in columns) for the GEMM to run at speed; never past the workspace budget.
    allowed = get_workspace_limit() // threads // row_bytes
    wanted = max(_BAND_BYTES // row_bytes, -(-_BAND_MIN_COLUMNS // window.out_width))
    return threads, int(min(max(1, min(wanted, allowed)), window.out_height))


# Pieces of a GEMM on the BLAS's small-matrix path (see small_gemm_limit): at most this many
# rows and inner terms each, and then as many columns (multiples of 16) as the limit allows.
# These caps came from timing the suite's products split several ways on the benchmark
# machine (pieces of 32-64 rows and 50-128 inner terms ran fastest); bench/gemm_pieces.py
# times the convs split this way against unsplit.
_GEMM_PIECE_ROWS = 64
_GEMM_PIECE_INNER = 128
# A piece narrower than this is slower than the packed path (one 512-bit vector of floats).
_MIN_GEMM_COLUMNS = 16
# OpenBLAS's SkylakeX small-matrix path takes a product of two "inner dimension contiguous"
# operands (TN in its column-major terms) only up to this many result elements.
_SMALL_TN_RESULT = 1200
# ... and the transposed weight gradient, whose pieces each add onto all of dW, gained only
# while dW fitted in about half of a core's L2 cache: res-s2's (1.1 MiB in float32) was
# 1.07x slower that way (bench/gemm_pieces.py --weight-gradient).
_TRANSPOSED_DW_BYTES = 512 * 2**10


def _even_piece(total, most):
    pieces = -(-total // most)
    return -(-total // pieces)


def _gemm_pieces(rows, inner):
    """(rows, inner, columns) per GEMM call for (rows x inner) @ (inner x columns) products,
    each 0 for "not split": pieces that keep every call on the BLAS's small-matrix path."""
    limit = small_gemm_limit()
    piece_rows = _even_piece(rows, _GEMM_PIECE_ROWS) if rows > 0 else 0
    piece_inner = _even_piece(inner, _GEMM_PIECE_INNER) if inner > 0 else 0
    columns = limit // max(1, piece_rows * piece_inner) // 16 * 16
    if columns < _MIN_GEMM_COLUMNS:
        return np.zeros(3, dtype=np.intc)
    return np.array((piece_rows, piece_inner, columns), dtype=np.intc)


def _run(kernel, threads, *args, all_small=False):
    """kernel(*args, threads). With several threads BLAS is held to one thread for the call,
    unless `all_small`: every product of the call is a piece on OpenBLAS's small-matrix path
    (_gemm_pieces), which runs on the calling thread alone, so there is nothing to limit."""
    if threads > 1 and not all_small:
        with single_threaded_blas():
            kernel(*args, threads)
    else:
        kernel(*args, threads)


def _forward_compiled(x, w, b, window, algorithm, automatic):
    """(out, the algorithm that computed it): with `automatic`, a Winograd result that is not
    all finite is computed again by im2col (see _winograd_forward)."""
    filters = w.shape[0]
    out = np.empty((window.batch, filters, window.out_height, window.out_width), dtype=x.dtype)
    patch = window.channels * window.kernel_height * window.kernel_width
    if out.size == 0 or patch == 0:  # nothing to multiply: the output is the bias
        out[...] = 0 if b is None else b.reshape(1, filters, 1, 1)
        return out, algorithm
    if algorithm in _WINOGRAD_NAMES:
        if algorithm == "s2d-winograd":
            finite = _s2d_forward(x, w, b, window, out)
        else:
            transforms = ("stride-2" if window.stride == (2, 2)
                          else _WINOGRAD_TRANSFORMS[algorithm])
            finite = _winograd_forward(x, w, b, out, window.padding, transforms)
        if finite or not automatic:
            return out, algorithm
        algorithm = "im2col"
    threads, band_rows = _plan(window, filters, x.itemsize)
    direct = algorithm == "gemm-1x1"
    weight = w.reshape(filters, patch)
    depth = patch
    if direct:
        band_rows = window.out_height
        depth = 0
    elif b is not None:
        # the bias as one more column of the weights, against a row of ones under the
        # im2col buffer: the GEMM adds it, with no separate pass over the output
        weight = np.concatenate((weight, b.reshape(filters, 1)), axis=1)
        depth, b = patch + 1, None
    stage_size = 0 if direct else _stage_size(window, band_rows)
    with scratch(x.dtype, (threads, depth, band_rows * window.out_width),
                 (threads, stage_size)) as (workspace, stage):
        pieces = _gemm_pieces(filters, depth or window.channels)
        _run(_dispatch._conv.forward, threads, x, weight, window.kernel_height,
             window.kernel_width, b, out, workspace, stage, *window.stride, *window.padding,
             band_rows, direct, pieces, all_small=pieces[2] > 0)
    return out, algorithm


# The Winograd transform sets of _kernels/_winograd.pyx: its Variant, transformed values
# per tile, and outputs per tile side.
_WINOGRAD_SETS = {"2x2": ("F2X2", 16, 2), "stride-2": ("STRIDE_TWO", 25, 2),
                  "4x4": ("F4X4", 36, 4)}
# The stride-1 set of each Winograd algorithm (at stride 2, "winograd" uses "stride-2").
_WINOGRAD_TRANSFORMS = {"winograd": "2x2", "winograd-4x4": "4x4"}
# Every algorithm that runs Winograd transforms (see _winograd_forward on infinities)
_WINOGRAD_NAMES = ("winograd", "winograd-4x4", "s2d-winograd")


def _winograd_plan(batch, channels, filters, out_height, out_width, itemsize, elements=16,
                   tile=2):
    """Threads and band height (in rows of tile x tile output tiles, run on across images)
    for a Winograd pass: (num_threads, band_rows, tiles_w). A band's transformed tiles
    (`elements` per tile), channels and filters, stay near _WINOGRAD_BAND_BYTES per thread."""
    tiles_h, tiles_w = -(-out_height // tile), -(-out_width // tile)
    threads = get_num_threads()
    row_bytes = elements * (channels + filters) * tiles_w * itemsize
    budget = min(_WINOGRAD_BAND_BYTES, get_workspace_limit() // threads)
    rows = batch * tiles_h
    band_rows = int(min(max(1, budget // row_bytes), -(-rows // threads)))
    # as many bands, or the next multiple of the thread count (threads take whole bands),
    # evened out
    bands = -(-rows // band_rows)
    if bands > threads:
        bands = -(-bands // threads) * threads
    band_rows = -(-rows // bands)
    direct_flops = 2 * batch * filters * channels * 9 * out_height * out_width
    if bands < threads or direct_flops < _MIN_PARALLEL_FLOPS:
        threads = 1
    return threads, band_rows, tiles_w


@contextmanager
def _winograd_work(threads, band_rows, tiles_w, first, second, dtype, second_by_tile=False,
                   elements=16, held=(0,)):
    """Per-thread work buffers (threads, elements, first, band tiles) and (threads, elements,
    second, band tiles), or (threads, elements, band tiles, second) with second_by_tile, and
    one more array of shape `held` (the call's transformed weights or weight-gradient sums:
    scratch like the rest, since a fresh multi-MiB array costs a page fault per 4 KiB). The
    planes of a work buffer are written and read in step: planes a multiple of 4 KiB apart
    would all map to the same cache sets, so each is offset by a cache line."""
    ntiles = band_rows * tiles_w
    skew = 64 // np.dtype(dtype).itemsize
    with scratch(dtype, (threads, elements, first * ntiles + skew),
                 (threads, elements, second * ntiles + skew), held) as (one, two, kept):
        yield (one[:, :, : first * ntiles].reshape(threads, elements, first, ntiles),
               two[:, :, : second * ntiles].reshape(
                   (threads, elements) + ((ntiles, second) if second_by_tile else (second, ntiles))),
               kept)


def _winograd_forward(x, w, b, out, padding, transforms):
    """out = 3x3 conv of x with w (+ b) by the Winograd transform set `transforms` (a key of
    _WINOGRAD_SETS: F(2x2, 3x3) or F(4x4, 3x3) at stride 1, "stride-2" at stride 2; see
    _kernels/_winograd.pyx); out is overwritten. Returns whether every output is finite.

    Winograd mixes each input block into all the outputs of its tile, where the
    contributions of pixels outside an output's window cancel exactly, but inf - inf does
    not: a NaN or an infinity in x or w turns outputs around it NaN, where the direct method
    would give finite values or infinities. Such a value always reaches some output of its
    tile, so "auto" checks the outputs (summed as the kernel writes them, at no extra pass)
    and computes a result that is not all finite again by the direct method."""
    channels, filters = x.shape[1], w.shape[0]
    name, elements, tile = _WINOGRAD_SETS[transforms]
    variant = getattr(_dispatch._winograd.Variant, name)
    threads, band_rows, tiles_w = _winograd_plan(x.shape[0], channels, filters, *out.shape[2:],
                                                 x.itemsize, elements, tile)
    totals = np.zeros(threads, dtype=x.dtype)
    with _winograd_work(threads, band_rows, tiles_w, channels, filters, x.dtype,
                        elements=elements, held=(elements, filters, channels)) as (
                            inputs, products, transformed):
        _dispatch._winograd.transform_weights(w, variant, transformed)
        pieces = _gemm_pieces(filters, channels)
        _run(_dispatch._winograd.forward, threads, x, transformed, b, out, inputs, products,
             *padding, variant, band_rows, pieces, totals, all_small=pieces[2] > 0)
    return bool(np.isfinite(totals.sum()))


# G, the weight transform U = G g G^T, of F(2x2, 3x3) and F(4x4, 3x3) (see
# _kernels/_winograd.pyx)
_WINOGRAD_G = {
    "2x2": ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0)),
    "4x4": ((1 / 4, 0.0, 0.0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6),
            (1 / 24, 1 / 12, 1 / 6), (1 / 24, -1 / 12, 1 / 6), (0.0, 0.0, 1.0)),
}


def _winograd_weight_gradient(x, dout, padding, has_bias, transforms):
    """dW (F, C, 3, 3) of a 3x3 stride-1 conv of x giving dout, by Winograd F(2x2, 3x3) or
    F(4x4, 3x3) (`transforms` "2x2" or "4x4"), and db (F,) (None without a bias), summed as
    dout is transformed.

    The forward is out = A^T [(G g G^T) * (B^T d B)] A per tile, so the gradient of G g G^T
    is the sum over tiles of (A dy A^T) * (B^T d B): 16 (36) GEMMs over the tiles, then
    dW = G^T (that sum) G.
    """
    channels, filters = x.shape[1], dout.shape[1]
    name, elements, tile = _WINOGRAD_SETS[transforms]
    threads, band_rows, tiles_w = _winograd_plan(x.shape[0], channels, filters, *dout.shape[2:],
                                                 x.itemsize, elements, tile)
    dbias = np.zeros((threads, filters), x.dtype) if has_bias else None
    with _winograd_work(threads, band_rows, tiles_w, channels, filters, x.dtype,
                        second_by_tile=True, elements=elements,
                        held=(threads, elements, channels, filters)) as (
                            inputs, douts, products):  # products: transposed
        pieces = _gemm_pieces(channels, band_rows * tiles_w)
        _run(_dispatch._winograd.weight_gradient, threads, x, dout, products, dbias, inputs,
             douts, *padding, getattr(_dispatch._winograd.Variant, name), band_rows, pieces,
             all_small=pieces[2] > 0)
        # a GEMM: on one BLAS thread, since a multi-threaded BLAS call leaves its threads
        # spinning for a while after, on the cores the next call needs
        with single_threaded_blas():
            dw = _winograd_untransform(_thread_sum(products, in_place=True),
                                       np.array(_WINOGRAD_G[transforms], dtype=x.dtype))
    return dw, None if dbias is None else _thread_sum(dbias)


def _winograd_untransform(sums, g):
    """dW (F, C, 3, 3) = G^T S G for each (c, f), S = sums[:, c, f] (E, C, F) as a square
    matrix, as one GEMM by kron(G, G)^T: dW[f, c, a, b] = sum over (i, j) of G[i, a] G[j, b]
    S[i, j] (np.einsum took 7x as long, copying on the way)."""
    elements, channels, filters = sums.shape
    dw = np.kron(g, g).T @ sums.reshape(elements, channels * filters)
    return np.ascontiguousarray(dw.reshape(3, 3, channels, filters).transpose(3, 2, 0, 1))


# Below about this many elements, the (memory-bound) phase copies run on one thread.
_MIN_PARALLEL_COPY = 100_000


def _copy_threads(size):
    return get_num_threads() if size >= _MIN_PARALLEL_COPY else 1


def _s2d_passes(x, window):
    """(start, stop, phase images of x[start:stop]) for each pass of s2d-winograd: as many
    images at a time as have phase images fitting in half the workspace budget (the Winograd
    passes take their own work buffers besides), filled in scratch memory by the compiled
    space_to_depth (_polyphase.space_to_depth is its NumPy twin)."""
    shape = _polyphase.phase_shape(window)[1:]
    step = max(1, min(window.batch,
                      get_workspace_limit() // 2 // (int(np.prod(shape)) * x.itemsize)))
    with scratch(x.dtype, (step,) + shape) as phases:
        for start in range(0, window.batch, step):
            stop = min(start + step, window.batch)
            part = phases[:stop - start]
            _dispatch._im2col.space_to_depth(x[start:stop], part, *window.stride,
                                             *window.padding, _copy_threads(part.size))
            yield start, stop, part


def _s2d_forward(x, w, b, window, out):
    """out = conv of x with w (+ b) by s2d-winograd: a pass of images at a time, Winograd
    F(4x4, 3x3) over their phase images (_polyphase) with the split kernels. Returns whether
    every output is finite (_winograd_forward)."""
    kernels = _polyphase.split_kernels(w, window)
    finite = True
    for start, stop, phases in _s2d_passes(x, window):
        finite &= _winograd_forward(phases, kernels, b, out[start:stop], (0, 0), "4x4")
    return finite


def _s2d_backward(dout, x, w, has_bias, window):
    """(dx, dw, db), db None without a bias, of s2d-winograd: the F(4x4, 3x3) gradients of
    the phase convolution, a pass of images at a time, put back by the adjoint
    rearrangements; and whether the phases' gradient came out all finite."""
    kernels = _polyphase.split_kernels(w, window)
    # dx of the phases: their full correlation with the flipped split kernels (as for
    # winograd-4x4's backward, the phase conv being unpadded)
    flipped = np.ascontiguousarray(kernels[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    dx = np.empty_like(x)
    dw = db = None
    finite = True
    for start, stop, phases in _s2d_passes(x, window):
        part_dw, part_db = _winograd_weight_gradient(phases, dout[start:stop], (0, 0),
                                                     has_bias, "4x4")
        dw = part_dw if dw is None else dw + part_dw
        db = part_db if db is None else db + part_db
        # the phases' gradient, written over them (their values are used up)
        finite &= _winograd_forward(dout[start:stop], flipped, None, phases, (2, 2), "4x4")
        _dispatch._im2col.depth_to_space(phases, dx[start:stop], *window.stride,
                                         *window.padding, _copy_threads(phases.size))
    return (dx, _polyphase.merge_kernels(dw, window), db), finite


def _winograd_backward(dout, x, w, has_bias, window, transforms):
    """((dx, dw, db), whether dx came out all finite) of a 3x3 stride-1 conv by Winograd
    (`transforms` "2x2" or "4x4")."""
    dw, db = _winograd_weight_gradient(x, dout, window.padding, has_bias, transforms)
    # dx is the full correlation of dout with the flipped kernels, channels and filters
    # swapped: again a 3x3 stride-1 convolution, padded by 2 - p
    flipped = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    dx = np.empty_like(x)
    finite = _winograd_forward(dout, flipped, None, dx,
                               (2 - window.pad_height, 2 - window.pad_width), transforms)
    return (dx, dw, db), finite


def _thread_sum(per_thread, in_place=False):
    """The sum of per-thread partial results (threads, ...) over the threads; with
    `in_place`, added up into per_thread[0] (scratch) rather than a new array."""
    if per_thread.shape[0] == 1:
        return per_thread[0]
    if not in_place:
        return per_thread.sum(axis=0)
    for part in per_thread[1:]:
        per_thread[0] += part
    return per_thread[0]


def _transposed_weight_gradient(patch, filters, itemsize):
    """Whether the im2col backward keeps dW transposed (see _conv.add_weight_gradient): when
    BLAS has a small-matrix path (small_gemm_limit) that would not take dW's own product
    (F, HW) @ (HW, C*KH*KW) (OpenBLAS 0.3.30 takes such a product, both inner dimensions
    contiguous, only when its result has at most _SMALL_TN_RESULT elements), and dW is small
    enough to stay in cache as each piece of the transposed product adds onto it."""
    return (small_gemm_limit() > 0 and patch * filters > _SMALL_TN_RESULT
            and patch * filters * itemsize <= _TRANSPOSED_DW_BYTES)


def _backward_compiled(dout, x, w, has_bias, window, algorithm, automatic):
    """dx, dw and db (None without a bias)."""
    filters = w.shape[0]
    patch = window.channels * window.kernel_height * window.kernel_width
    if dout.size == 0 or x.size == 0 or patch == 0:
        return np.zeros_like(x), np.zeros_like(w), dout.sum(axis=(0, 2, 3)) if has_bias else None
    # Winograd for both gradients of s2d-winograd and of a stride-1 conv; the stride-2
    # "winograd" conv's backward is im2col's. Under "auto", a dx that is not all finite
    # (dout held a NaN or an infinity, see _winograd_forward) is computed again by im2col.
    if algorithm == "s2d-winograd" or (algorithm in _WINOGRAD_TRANSFORMS
                                       and window.stride == (1, 1)):
        if algorithm == "s2d-winograd":
            gradients, finite = _s2d_backward(dout, x, w, has_bias, window)
        else:
            gradients, finite = _winograd_backward(dout, x, w, has_bias, window,
                                                   _WINOGRAD_TRANSFORMS[algorithm])
        if finite or not automatic:
            return gradients
    dx = np.empty_like(x)
    threads, band_rows = _plan(window, filters, x.itemsize)
    direct = algorithm == "gemm-1x1"
    if direct:
        band_rows = window.out_height
    band_columns = band_rows * window.out_width
    transposed = _transposed_weight_gradient(patch, filters, x.itemsize)
    dweight = np.zeros((threads,) + ((patch, filters) if transposed else (filters, patch)), x.dtype)
    dbias = np.zeros((threads, filters), x.dtype) if has_bias else None
    with scratch(x.dtype, (threads, 0 if direct else patch, band_columns),
                 (threads, band_columns if transposed else 0, filters)) as (workspace, dout_band):
        _run(_dispatch._conv.backward, threads, dout, x, w, dx, dweight, dbias, workspace,
             dout_band, *window.stride, *window.padding, band_rows, direct, transposed,
             _gemm_pieces(patch, filters), _gemm_pieces(patch, band_columns))
    dw = _thread_sum(dweight)
    if transposed:
        dw = np.ascontiguousarray(dw.T)
    return dx, dw.reshape(w.shape), None if dbias is None else _thread_sum(dbias)


def conv2d_forward(x, w, b=None, stride=1, padding=0, *, backend="auto", algorithm="auto"):
    """2-D convolution (cross-correlation, as in deep learning) with zero padding.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
    w : ndarray of shape (F, C, KH, KW)
    b : ndarray of shape (F,) or None
        x, w and b share one dtype, float32 or float64; any memory layout.
    stride, padding : int or (h, w) pair
    backend : "auto", "cython" or "reference"
    algorithm : "auto" or one of `available_algorithms()` (compiled backend only;
        a name that cannot handle the shape raises ValueError).

    Returns
    -------
    out : ndarray of shape (N, F, OH, OW), x's dtype,
        OH = floor((H + 2*pad_h - KH) / stride_h) + 1, OW likewise.
    cache : ConvCache for conv2d_backward.
    """
    window = conv2d_inputs(x, w, b, stride, padding)
    backend = _dispatch.resolve(backend)
    automatic = algorithm == "auto"
    algorithm = _choose_algorithm(algorithm, window, w.shape[0])
    if backend == "cython":  # before any copy or allocation
        _check_blas_limits(window, w.shape[0])
    x, w = contiguous(x), contiguous(w)
    b = None if b is None else contiguous(b)
    if backend == "reference":
        out = _reference_forward(x, w, b, window)
    else:
        out, algorithm = _forward_compiled(x, w, b, window, algorithm, automatic)
    return out, ConvCache(x, w, b is not None, window, backend, algorithm, automatic)


def conv2d_backward(dout, cache):
    """Gradients of conv2d_forward, computed by the backend the forward used.

    dout : ndarray of shape (N, F, OH, OW), the forward output's shape and dtype.
    Returns dx (N, C, H, W), dw (F, C, KH, KW), db (F,) — db is None when the
    forward had no bias.
    """
    check_cache(cache, ConvCache, "conv2d_forward")
    check_dout(dout, cache.out_shape, cache.x.dtype)
    dout = contiguous(dout)
    if cache.backend == "reference":
        return _reference_backward(dout, cache.x, cache.weight, cache.has_bias, cache.window)
    return _backward_compiled(dout, cache.x, cache.weight, cache.has_bias, cache.window,
                              cache.algorithm, cache.automatic)
