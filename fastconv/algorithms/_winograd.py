"""Orchestration shared by the Winograd algorithms: band plans, work buffers, the forward pass
and the weight gradient over _kernels/_winograd.pyx's transform sets.

Winograd mixes each input block into all the outputs of its tile, where the contributions of
pixels outside an output's window cancel exactly, but inf - inf does not: a NaN or an infinity
in x or w turns outputs around it NaN, where the direct method would give finite values or
infinities. Such a value always reaches some output of its tile (every column of the
transforms has a nonzero entry), so the forward sums the outputs as it writes them and reports
whether they came out finite; "auto" computes a result that is not again by the direct method
(docs/algorithms.md, "Winograd and infinities").
"""
import threading
import weakref
from contextlib import contextmanager

import numpy as np

from .. import _blas, _compiled, _epilogue, _tuning
from .._scratch import scratch
from .._settings import get_num_threads, get_workspace_limit

# The transform sets of _kernels/_winograd.pyx: its Variant, transformed values per tile, and
# outputs per tile side.
SETS = {"2x2": ("F2X2", 16, 2), "stride-2": ("STRIDE_TWO", 25, 2), "4x4": ("F4X4", 36, 4)}

# G, the weight transform U = G g G^T, of F(2x2, 3x3) and F(4x4, 3x3)
_G = {
    "2x2": ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0)),
    "4x4": ((1 / 4, 0.0, 0.0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6),
            (1 / 24, 1 / 12, 1 / 6), (1 / 24, -1 / 12, 1 / 6), (0.0, 0.0, 1.0)),
}


def plan(batch, channels, filters, out_height, out_width, itemsize, elements=16, tile=2,
         threads=None, share_bands=False):
    """Threads and bands (in rows of tile x tile output tiles, run on across images) for a
    Winograd pass: (num_threads, band_rows, tiles_w, shared). A band's transformed tiles
    (`elements` per tile), channels and filters, stay near WINOGRAD_BAND_BYTES per thread.

    Each thread takes whole bands (shared False) unless `share_bands` (the forward kernel
    can) and whole bands would either leave the busiest thread more than
    SHARED_BANDS_MIN_EXCESS above an even share of the rows, as one image's 7 rows on 2
    threads (4 and 3) do, or hold fewer than SHARED_BANDS_MAX_TILES tiles, too few columns
    for the GEMMs to run at speed (one 7x7 image: 8 tiles a thread). Then every thread works
    on every band (shared True), its channels and then its filters, and one band holds what
    the threads' bands would."""
    tiles_h, tiles_w = -(-out_height // tile), -(-out_width // tile)
    threads = get_num_threads() if threads is None else threads
    row_bytes = max(1, elements * (channels + filters) * tiles_w * itemsize)
    budget = min(_tuning.WINOGRAD_BAND_BYTES, get_workspace_limit() // threads)
    rows = batch * tiles_h
    direct_flops = 2 * batch * filters * channels * 9 * out_height * out_width
    if direct_flops < _tuning.MIN_PARALLEL_FLOPS:
        threads = 1
    band_rows = _even_rows(rows, min(budget // row_bytes, -(-rows // threads)), threads)
    if threads == 1:
        return 1, band_rows, tiles_w, False
    excess = busiest_rows(rows, band_rows, threads) * threads / rows - 1
    if share_bands and (excess > _tuning.SHARED_BANDS_MIN_EXCESS
                        or band_rows * tiles_w < _tuning.SHARED_BANDS_MAX_TILES) \
            and min(channels, filters) >= _tuning.SHARED_BANDS_MIN_WIDTH * threads:
        return threads, _even_rows(rows, budget * threads // row_bytes, 1), tiles_w, True
    if -(-rows // band_rows) < threads:
        threads = 1
    return threads, band_rows, tiles_w, False


def _even_rows(rows, most, threads):
    """Band rows for `rows` rows in bands of at most `most` rows (at least 1): as many bands,
    or the next multiple of the thread count (threads take whole bands), evened out."""
    band_rows = int(max(1, min(most, rows)))
    bands = max(1, -(-rows // band_rows))
    if bands > threads:
        bands = -(-bands // threads) * threads
    return max(1, -(-rows // bands))


def busiest_rows(rows, band_rows, threads):
    """Rows of bands the busiest thread runs when `threads` threads share out bands of
    band_rows rows statically (OpenMP's contiguous blocks: the first threads take
    ceil(bands / threads) bands)."""
    bands = -(-rows // band_rows)
    return min(rows, -(-bands // threads) * band_rows)


def forward_cost(machine, batch, channels, filters, out_height, out_width, transforms,
                 weights=True):
    """Seconds of forward(): the weight transform (once per call, whatever the batch, over
    the threads), then per band the input transform, `elements` GEMMs and the output
    transform (planner.Machine), on the busiest thread's whole bands or, where plan()
    shares the bands, on each thread's share of the channels and filters."""
    _, elements, tile = SETS[transforms]
    threads, band_rows, tiles_w, shared = plan(batch, channels, filters, out_height, out_width,
                                               machine.dtype.itemsize, elements, tile,
                                               machine.threads, share_bands=True)
    rows = batch * -(-out_height // tile)
    bands = max(1, -(-rows // band_rows))
    tiles = rows * tiles_w
    weight = weight_transform_cost(machine, filters, channels, transforms, weights)
    efficiency = machine.constants["parallel_efficiency"]
    transforms_work = (machine.work(f"winograd-input-{transforms}", elements * channels * tiles)
                       + machine.work(f"winograd-output-{transforms}", elements * filters * tiles))
    if shared:  # each thread: its channels' input transform, its filters' GEMMs and outputs
        gemms = machine.gemm(filters / threads, tiles / bands, channels,
                             calls=elements * bands) * threads
        return weight + (transforms_work + gemms) / threads / efficiency
    seconds = transforms_work + machine.gemm(filters, tiles / bands, channels,
                                             calls=elements * bands)
    if threads == 1:
        return weight + seconds
    share = busiest_rows(rows, band_rows, threads) / rows  # whole bands: the busiest thread's
    return weight + seconds * share / efficiency


def weight_transform_cost(machine, filters, channels, transforms, weights=True):
    """Seconds of transform_weights (0 without `weights`): its filters over the threads from
    WEIGHT_TRANSFORM_PARALLEL_ELEMENTS values up, as it runs. Up to
    WEIGHT_TRANSFORM_CACHED_BYTES of transformed weights a value costs its transform set's
    arithmetic; beyond, the stores to memory ("winograd-weight-memory")."""
    if not weights:
        return 0.0
    count = SETS[transforms][1] * filters * channels
    kind = (f"winograd-weight-{transforms}"
            if count * machine.dtype.itemsize <= _tuning.WEIGHT_TRANSFORM_CACHED_BYTES
            else "winograd-weight-memory")
    return machine.spread(machine.work(kind, count), filters,
                          _transform_threads(count, filters, machine.threads))


def _transform_threads(count, filters, threads):
    """The threads transform_weights runs `count` transformed values of `filters` filters on,
    given `threads`: all of them (at most one per filter) from
    WEIGHT_TRANSFORM_PARALLEL_ELEMENTS values up, else one."""
    if count < _tuning.WEIGHT_TRANSFORM_PARALLEL_ELEMENTS:
        return 1
    return max(1, min(threads, filters))


def weight_gradient_cost(machine, batch, channels, filters, out_height, out_width, transforms):
    """Seconds of weight_gradient(): per band the dout and input transforms and `elements`
    GEMMs summing (C, tiles) @ (tiles, F), then the untransform."""
    _, elements, tile = SETS[transforms]
    threads, band_rows, tiles_w, _ = plan(batch, channels, filters, out_height, out_width,
                                          machine.dtype.itemsize, elements, tile, machine.threads)
    rows = batch * -(-out_height // tile)
    bands = max(1, -(-rows // band_rows))
    tiles = rows * tiles_w
    seconds = (machine.work(f"winograd-dout-{transforms}", elements * filters * tiles)
               + machine.work(f"winograd-input-{transforms}", elements * channels * tiles)
               + machine.gemm(channels, filters, tiles / bands, calls=elements * bands,
                              layout="sum"))
    return (machine.spread(seconds, bands, threads)
            + machine.gemm(9, channels * filters, elements) * threads)


def stride_one_cost(geometry, machine, pass_name, transforms):
    """Seconds of a 3x3 stride-1 Winograd algorithm for this pass: the forward (without the
    weight transform on a machine with weights_kept: an inference), and for the backward the
    weight gradient and/or dx as the forward of dout with the flipped kernels."""
    batch, channels, filters = geometry.batch, geometry.channels, geometry.filters
    if pass_name == "forward":
        return forward_cost(machine, batch, channels, filters, *geometry.out, transforms,
                            weights=not machine.weights_kept)
    seconds = 0.0
    if pass_name in ("backward", "backward-weights"):
        seconds += weight_gradient_cost(machine, batch, channels, filters, *geometry.out, transforms)
    if pass_name in ("backward", "backward-data"):
        seconds += forward_cost(machine, batch, filters, channels, *geometry.size, transforms)
    return seconds


@contextmanager
def _work(threads, band_rows, tiles_w, first, second, dtype, second_by_tile=False,
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


def transform_weights(w, name, transformed):
    """transformed (E, F, C) = the weight transform of w (F, C, 3, 3) by the transform set
    named `name` (SETS' first field), its filters shared out over the threads once there
    are WEIGHT_TRANSFORM_PARALLEL_ELEMENTS values to make."""
    _compiled.winograd.transform_weights(
        w, getattr(_compiled.winograd.Variant, name), transformed,
        _transform_threads(transformed.size, w.shape[0], get_num_threads()))


# ---- transformed weights kept between inference calls ------------------------------------
# conv_inference (Sequential.infer, a conv layer's infer) passes a layer's same weights call
# after call, and their transform runs before the bands: 1.2 ms for 256 channels and
# filters by F(4x4), 7.2 ms for 512, on one thread (docs/performance.md, "Transformed weights
# kept for inference"; on two threads 0.8 and 4.7 ms: "The weight transform on every
# thread").
# An entry lives as long as its weight array (a weak reference) and keeps a copy of the
# weights it was made from: it serves only while the weights are bit for bit that copy (one
# comparison, a twentieth of the transform's time), so weights changed in place (an
# optimiser step, load_state) are transformed again, never served stale.
_KEPT = {}  # (id(w), transforms) -> (weak reference to w, copy of w, transformed), oldest first
_kept_lock = threading.Lock()
_BITS = {np.dtype(np.float32): np.uint32, np.dtype(np.float64): np.uint64}


def _same_bits(a, b):
    bits = _BITS[a.dtype]
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a.view(bits), b.view(bits))


def _kept_bytes():
    return sum(source.nbytes + transformed.nbytes for _, source, transformed in list(_KEPT.values()))


def kept_transform(w, transforms):
    """The transformed weights (E, F, C) of w (F, C, 3, 3), C-contiguous, by the transform
    set `transforms`, from the kept entry while w is unchanged; a read-only array."""
    key = (id(w), transforms)
    entry = _KEPT.get(key)
    if entry is not None and entry[0]() is w and _same_bits(entry[1], w):
        with _kept_lock:  # most recently used last
            if _KEPT.get(key) is entry:
                _KEPT[key] = _KEPT.pop(key)
        return entry[2]
    name, elements, _ = SETS[transforms]
    transformed = np.empty((elements, w.shape[0], w.shape[1]), w.dtype)
    transform_weights(w, name, transformed)
    source = w.copy()
    for kept in (source, transformed):
        kept.flags.writeable = False
    if source.nbytes + transformed.nbytes > _tuning.KEPT_WEIGHTS_BYTES:
        return transformed
    # the weights' end drops their entry (a plain dict pop: safe wherever the collector runs)
    reference = weakref.ref(w, lambda _, key=key: _KEPT.pop(key, None))
    with _kept_lock:
        _KEPT.pop(key, None)
        _KEPT[key] = (reference, source, transformed)
        while _kept_bytes() > _tuning.KEPT_WEIGHTS_BYTES:
            _KEPT.pop(next(iter(_KEPT)))
    return transformed


def forget_kept_weights():
    """Drop every kept transform (for the tests)."""
    with _kept_lock:
        _KEPT.clear()


def forward(x, w, b, out, padding, transforms, epilogue=None, keep_weights=False):
    """out = 3x3 conv of x with w (+ b) by the transform set `transforms` (a key of SETS:
    F(2x2, 3x3) or F(4x4, 3x3) at stride 1, "stride-2" at stride 2), then the
    _epilogue.Epilogue if any, band by band; out is overwritten. keep_weights: take the
    transformed weights from kept_transform (inference, where w is a layer's weights).
    Returns whether every output of the convolution is finite (see the module docstring)."""
    channels, filters = x.shape[1], w.shape[0]
    name, elements, tile = SETS[transforms]
    variant = getattr(_compiled.winograd.Variant, name)
    threads, band_rows, tiles_w, shared = plan(x.shape[0], channels, filters, *out.shape[2:],
                                               x.itemsize, elements, tile, share_bands=True)
    totals = np.zeros(threads, dtype=x.dtype)
    with _work(1 if shared else threads, band_rows, tiles_w, channels, filters, x.dtype,
               elements=elements,
               held=(0,) if keep_weights else (elements, filters, channels)) as (
                   inputs, products, transformed):
        if keep_weights:
            transformed = kept_transform(w, transforms)
        else:
            transform_weights(w, name, transformed)
        pieces = _blas.gemm_pieces(filters, channels)
        _blas.run_kernel(_compiled.winograd.forward, threads, x, transformed, b, out, inputs, products,
                   *padding, variant, band_rows, shared, pieces, totals,
                   *(epilogue or _epilogue.NONE).kernel_args(), all_small=pieces[2] > 0)
    return bool(np.isfinite(totals.sum()))


def weight_gradient(x, dout, padding, has_bias, transforms):
    """dW (F, C, 3, 3) of a 3x3 stride-1 conv of x giving dout, by Winograd F(2x2, 3x3) or
    F(4x4, 3x3) (`transforms` "2x2" or "4x4"), and db (F,) (None without a bias), summed as
    dout is transformed.

    The forward is out = A^T [(G g G^T) * (B^T d B)] A per tile, so the gradient of G g G^T
    is the sum over tiles of (A dy A^T) * (B^T d B): 16 (36) GEMMs over the tiles, then
    dW = G^T (that sum) G.
    """
    channels, filters = x.shape[1], dout.shape[1]
    name, elements, tile = SETS[transforms]
    threads, band_rows, tiles_w, _ = plan(x.shape[0], channels, filters, *dout.shape[2:],
                                          x.itemsize, elements, tile)
    dbias = np.zeros((threads, filters), x.dtype) if has_bias else None
    with _work(threads, band_rows, tiles_w, channels, filters, x.dtype, second_by_tile=True,
               elements=elements, held=(threads, elements, channels, filters)) as (
                   inputs, douts, products):  # products: transposed
        pieces = _blas.gemm_pieces(channels, band_rows * tiles_w)
        _blas.run_kernel(_compiled.winograd.weight_gradient, threads, x, dout, products, dbias, inputs,
                   douts, *padding, getattr(_compiled.winograd.Variant, name), band_rows, pieces,
                   all_small=pieces[2] > 0)
        # a GEMM: on one BLAS thread, since a multi-threaded BLAS call leaves its threads
        # spinning for a while after, on the cores the next call needs
        with _blas.single_threaded_blas():
            dw = untransform(thread_sum(products, in_place=True),
                             np.array(_G[transforms], dtype=x.dtype))
    return dw, None if dbias is None else thread_sum(dbias)


def untransform(sums, g):
    """dW (F, C, 3, 3) = G^T S G for each (c, f), S = sums[:, c, f] (E, C, F) as a square
    matrix, as one GEMM by kron(G, G)^T: dW[f, c, a, b] = sum over (i, j) of G[i, a] G[j, b]
    S[i, j] (np.einsum took 7x as long, copying on the way)."""
    elements, channels, filters = sums.shape
    dw = np.kron(g, g).T @ sums.reshape(elements, channels * filters)
    return np.ascontiguousarray(dw.reshape(3, 3, channels, filters).transpose(3, 2, 0, 1))


def flipped(w):
    """The kernels of dx's convolution: w flipped in both axes, channels and filters swapped."""
    return np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))


def stride_one_backward(dout, x, w, has_bias, geometry, transforms, need_dx=True, need_dw=True):
    """((dx, dw, db), whether dx came out all finite) of a 3x3 stride-1 conv by Winograd
    (`transforms` "2x2" or "4x4"): dx is the full correlation of dout with the flipped
    kernels, again a 3x3 stride-1 convolution, padded by 2 - p. dx None unless need_dx, dw
    and db None unless need_dw (x may then be None)."""
    dw = db = None
    finite = True
    if need_dw:
        dw, db = weight_gradient(x, dout, geometry.padding, has_bias, transforms)
        # a NaN or infinity in x or dout spreads over the kernel of its channel in dW
        finite = bool(np.isfinite(dw).all())
    if not need_dx:
        return (None, dw, db), finite
    dx = np.empty(geometry.input_shape, dout.dtype)
    finite &= forward(dout, flipped(w), None, dx,
                      (2 - geometry.pad_height, 2 - geometry.pad_width), transforms)
    return (dx, dw, db), finite


def thread_sum(per_thread, in_place=False):
    """The sum of per-thread partial results (threads, ...) over the threads; with
    `in_place`, added up into per_thread[0] (scratch) rather than a new array."""
    if per_thread.shape[0] == 1:
        return per_thread[0]
    if not in_place:
        return per_thread.sum(axis=0)
    for part in per_thread[1:]:
        per_thread[0] += part
    return per_thread[0]


def plain_3x3(geometry):
    """None when the geometry is a 2-D 3x3 convolution without groups or dilation, zero
    padded and symmetric; else why not (the Winograd kernels' common ground)."""
    if geometry.ndim != 2:
        return f"{geometry.ndim}-D convolutions"
    if geometry.kernel != (3, 3):
        return f"kernel {geometry.kernel}: only 3x3"
    if geometry.groups != 1:
        return "grouped convolutions"
    if not geometry.undilated:
        return "dilated convolutions"
    if not geometry.symmetric:
        return "asymmetric padding"
    if not geometry.zero_padded:
        return f"padding_mode {geometry.padding_mode!r}"
    return None
