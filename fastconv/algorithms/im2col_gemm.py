"""im2col + GEMM: every convolution, 1-D to 3-D, with any stride, padding, padding mode,
dilation and groups. Bands of output rows are unfolded into columns and multiplied by the
weights (one GEMM per group), a band per task, so a band's columns are still in cache when its
GEMM reads them. Padding modes and dilation enter the gather itself (_kernels/_tiles.pxd):
nothing padded or dilated is ever materialised.

Where windows overlap (each input pixel in at least STAGE_MIN_OVERLAP columns), a band's input
rows are first copied once into a padded stage split by column phase, so that every im2col row
is a run of contiguous copies. The backward recomputes each band's columns, adds
dout (F, band) @ cols^T to dW and scatters W^T @ dout back into dx (col2im). Images of few
output pixels go several to a task, forward and backward, their columns side by side, so that
each product has enough columns (images_per_task, backward_images_per_task).
"""
import math

import numpy as np

from .. import _blas, _compiled, _epilogue, _tuning
from .._scratch import scratch
from .._settings import get_num_threads, get_workspace_limit

NAME = "im2col"
HANDLES = "every convolution (1-D to 3-D, any stride, padding, padding mode, dilation, groups)"
EPILOGUE = True


def supports(geometry):
    return None


def stage_size(geometry, band_rows):
    """Elements of one thread's im2col stage (see _kernels/_tiles.pxd) for a band of
    band_rows output rows; 0 when windows overlap too little for the stage to pay off and
    plain im2col copies straight from x."""
    g = geometry.as_3d()
    kernel_d, kernel_h, kernel_w = g.kernel
    _, stride_h, stride_w = g.stride
    if kernel_h * kernel_w < _tuning.STAGE_MIN_OVERLAP * stride_h * stride_w:
        return 0
    rows = (band_rows - 1) * stride_h + (kernel_h - 1) * g.dilation[1] + 1
    stage_width = g.out[2] + (kernel_w - 1) * g.dilation[2] // stride_w
    return g.channels * kernel_d * rows * stride_w * stage_width


def plan(geometry, itemsize, threads=None):
    """Threads, band height and filter blocks for one call: (num_threads, band_rows,
    filter_blocks).

    Work is split into bands of output rows (within one output depth slice) whose im2col
    buffer stays in cache between its im2col and its GEMM (and within one thread's share of
    the workspace budget). With fewer (image, band) tasks than BAND_TASKS_PER_THREAD per
    thread (a small batch: one image gives one band to one thread) bands are made shorter,
    down to BAND_MIN_COLUMNS columns, and then each band's filters are shared out in blocks,
    so a small batch keeps every thread busy; the GEMMs stay single-threaded inside our own
    threads. A call below MIN_PARALLEL_FLOPS runs on one thread.
    """
    threads = get_num_threads() if threads is None else threads
    g = geometry.as_3d()
    out_depth, out_height, out_width = g.out
    patch = geometry.channels * math.prod(geometry.kernel)
    if 2 * geometry.macs() < _tuning.MIN_PARALLEL_FLOPS:
        threads = 1
    # bytes per output row of a band: its im2col columns and its share of the stage
    row_bytes = max(1, (patch * out_width + stage_size(geometry, 2)
                        - stage_size(geometry, 1)) * itemsize)
    # A band small enough to stay in cache between its im2col and its GEMM, wide enough
    # (in columns) for the GEMM to run at speed; never past the workspace budget.
    allowed = get_workspace_limit() // threads // row_bytes
    least = -(-_tuning.BAND_MIN_COLUMNS // max(1, out_width))
    wanted = max(_tuning.BAND_BYTES // row_bytes, least)
    band_rows = int(min(max(1, min(wanted, allowed)), out_height))
    slices = geometry.batch * out_depth
    target = _tuning.BAND_TASKS_PER_THREAD * threads
    if threads > 1 and slices * -(-out_height // band_rows) < target:
        per_slice = -(-target // max(1, slices))
        band_rows = max(1, min(band_rows, max(-(-out_height // per_slice), least)))
    tasks = slices * -(-out_height // band_rows)
    filter_blocks = 1
    if threads > 1 and tasks < threads:
        filter_blocks = max(1, min(-(-threads // tasks),
                                   geometry.filters_per_group // _tuning.BLOCK_MIN_FILTERS))
    return threads, band_rows, filter_blocks


def images_per_task(geometry, itemsize, threads, band_rows, filter_blocks):
    """How many whole images one forward task takes (1: a band of one image). Where an
    image's output has at most SIDE_BY_SIDE_MAX_PIXELS pixels (ResNet's 7x7 layers),
    consecutive images go side by side into one im2col buffer and one GEMM of about
    BAND_MIN_COLUMNS columns, keeping BAND_TASKS_PER_THREAD tasks per thread and the workspace
    budget."""
    g = geometry.as_3d()
    plane = geometry.out_pixels
    if (filter_blocks > 1 or g.out[0] != 1 or band_rows < g.out[1] or geometry.batch < 2
            or plane > _tuning.SIDE_BY_SIDE_MAX_PIXELS):
        return 1
    wanted = -(-_tuning.BAND_MIN_COLUMNS // plane)
    balanced = geometry.batch // (_tuning.BAND_TASKS_PER_THREAD * threads)
    image_bytes = (geometry.channels * math.prod(geometry.kernel) + 1 + geometry.filters) \
        * plane * itemsize
    allowed = get_workspace_limit() // threads // max(1, image_bytes)
    return int(max(1, min(wanted, balanced, allowed)))


def backward_images_per_task(geometry, itemsize, threads):
    """How many whole images one backward task takes (1: the backward's own bands). Where an
    image has fewer than DW_SIDE_BY_SIDE_COLUMNS output pixels, consecutive images put their
    columns side by side, so that each dW product has about that many columns and each dx
    product reads W once for them all; every thread gets as many tasks as the others, and
    the buffers keep to the workspace budget."""
    g = geometry.as_3d()
    plane = geometry.out_pixels
    if (g.out[0] != 1 or geometry.batch < 2 * threads
            or plane >= _tuning.DW_SIDE_BY_SIDE_COLUMNS):
        return 1
    wanted = -(-_tuning.DW_SIDE_BY_SIDE_COLUMNS // plane)
    tasks_per_thread = -(-geometry.batch // (threads * wanted))
    even = -(-geometry.batch // (threads * tasks_per_thread))
    image_bytes = (geometry.channels * math.prod(geometry.kernel) + 2 * geometry.filters) \
        * plane * itemsize
    allowed = get_workspace_limit() // threads // max(1, image_bytes)
    return int(max(1, min(even, allowed)))


# run_forward's plan for one problem, by (geometry, itemsize, direct, bias, threads,
# workspace limit, the BLAS's small-matrix limit, tuning constants): everything in it follows
# from those, and working it out again took 15 us of a 50 us call on a small convolution
# (docs/performance.md, "Per-call overhead")
_RECIPES = {}
_RECIPE_CACHE_SIZE = 1024
# the tuning constants plan(), stage_size(), transposed_weight_gradient() and
# _blas.gemm_pieces() read: part of the key, so that a changed constant (a test's
# monkeypatch, a calibration) is never planned around
_RECIPE_CONSTANTS = ("MIN_PARALLEL_FLOPS", "BAND_BYTES", "BAND_MIN_COLUMNS",
                     "BAND_TASKS_PER_THREAD", "BLOCK_MIN_FILTERS", "STAGE_MIN_OVERLAP",
                     "SIDE_BY_SIDE_MAX_PIXELS", "DW_SIDE_BY_SIDE_COLUMNS",
                     "GEMM_PIECE_ROWS", "GEMM_PIECE_INNER", "MIN_GEMM_COLUMNS",
                     "SMALL_TN_RESULT", "TRANSPOSED_DW_BYTES")


def _remembered(kind, geometry, itemsize, flags, make):
    """The recipe make() gives for this problem, made once per key: (kind, geometry,
    itemsize, flags, threads, workspace limit, the BLAS's small-matrix limit, the tuning
    constants). make() returns a tuple; its ndarrays are made read-only, since every call
    with the recipe passes those same arrays to the kernels."""
    key = (kind, geometry, itemsize, flags, get_num_threads(), get_workspace_limit(),
           _blas.small_gemm_limit()) + tuple(getattr(_tuning, name) for name in _RECIPE_CONSTANTS)
    recipe = _RECIPES.get(key)
    if recipe is None:
        recipe = make()
        for part in recipe:
            for shared in (part if isinstance(part, tuple) else (part,)):
                if isinstance(shared, np.ndarray):
                    shared.flags.writeable = False
        if len(_RECIPES) >= _RECIPE_CACHE_SIZE:
            _RECIPES.clear()
        _RECIPES[key] = recipe
    return recipe


def forget_recipes():
    """Drop every kept recipe. The key holds the tuning constants but not the functions the
    recipes call (transposed_weight_gradient, _blas.gemm_pieces): a test that patches one of
    those starts from here (tests/conftest.py does before every test)."""
    _RECIPES.clear()


def _forward_recipe(geometry, itemsize, direct, has_bias):
    """(threads, band_rows, filter_blocks, workspace rows, stage size, bias in the GEMM,
    GEMM pieces, the kernels' window, the 5-D input shape) of run_forward."""
    def make():
        threads, band_rows, filter_blocks = plan(geometry, itemsize)
        rows = geometry.channels * math.prod(geometry.kernel)  # every group's rows
        # the bias as one more column of the weights, against a row of ones under the im2col
        # buffer: the GEMM adds it, with no pass over the output to set it first. That copies
        # the weights (F x patch) on every call, which pays only where they are no larger than
        # the output (F x N*OH*OW): at batch 1 on ResNet-18's 512-channel 7x7 layer (patch
        # 4608, 49 outputs) the copy made the call 1.24 ms against 0.86 ms with the bias set
        # in each band instead (docs/performance.md, "Bias in the GEMM").
        bias_in_gemm = (not direct and has_bias and geometry.groups == 1
                        and geometry.patch + 1 <= geometry.batch * geometry.out_pixels)
        if direct:
            rows = 0
        elif bias_in_gemm:
            rows += 1
        stage = 0 if direct else stage_size(geometry, band_rows)
        pieces = _blas.gemm_pieces(geometry.filters_per_group, geometry.patch + bias_in_gemm)
        images = 1 if direct else images_per_task(geometry, itemsize, threads, band_rows,
                                                  filter_blocks)
        return (threads, band_rows, filter_blocks, rows, stage, bias_in_gemm, pieces,
                geometry.kernel_window(), geometry.input_shape[:2] + geometry.as_3d().size,
                images)

    return _remembered("forward", geometry, itemsize, (direct, has_bias), make)


def run_forward(x, w, b, geometry, direct, epilogue=None):
    """out (N, F, *out) by the _conv kernel: im2col bands, or with `direct` one GEMM per band
    straight on x; then the _epilogue.Epilogue, if any, on each block after its GEMM."""
    filters = geometry.filters
    out = np.empty(geometry.output_shape, dtype=x.dtype)
    (threads, band_rows, filter_blocks, rows, stage, bias_in_gemm, pieces, window,
     shape_5d, images) = _forward_recipe(geometry, x.itemsize, direct, b is not None)
    weight = w.reshape(filters, geometry.patch)
    if bias_in_gemm:
        weight = np.concatenate((weight, b.reshape(filters, 1)), axis=1)
        b = None
    columns = images * geometry.out_pixels if images > 1 else band_rows * geometry.out[-1]
    products = (threads, geometry.filters_per_group, columns) if images > 1 else (0, 0, 0)
    with scratch(x.dtype, (threads, rows, columns), (threads, stage),
                 products) as (workspace, stage_buffer, product_buffer):
        _blas.run_kernel(_compiled.conv.forward, threads, x.reshape(shape_5d), weight,
                         window, geometry.groups, b,
                         out.reshape(out.shape[0], filters, -1), workspace, stage_buffer,
                         band_rows, filter_blocks, direct, pieces,
                         *(epilogue or _epilogue.NONE).kernel_args(), images,
                         product_buffer, all_small=pieces[2] > 0)
    return out


def transposed_weight_gradient(patch, filters, itemsize):
    """Whether the backward keeps dW transposed (see _conv.add_weight_gradient): when BLAS
    has a small-matrix path (small_gemm_limit) that would not take dW's own product
    (F, HW) @ (HW, C*KH*KW) (OpenBLAS 0.3.30 takes such a product, both inner dimensions
    contiguous, only when its result has at most SMALL_TN_RESULT elements), and dW is small
    enough to stay in cache as each piece of the transposed product adds onto it."""
    return (_blas.small_gemm_limit() > 0 and patch * filters > _tuning.SMALL_TN_RESULT
            and patch * filters * itemsize <= _tuning.TRANSPOSED_DW_BYTES)


def _backward_recipe(geometry, itemsize, direct, need_dx, need_dw):
    """(threads, band_rows, by_bands, band_columns, transposed dW, both GEMM pieces, the
    kernels' window, the 5-D shape of x and dx) of run_backward."""
    def make():
        threads, band_rows, _ = plan(geometry, itemsize)
        # fewer images than threads: bands in parallel, each thread adding into its own dx
        by_bands = threads > 1 and geometry.batch < threads
        # the direct path takes a whole image per task unless it runs by bands
        band_columns = (geometry.out_pixels if direct and not by_bands
                        else band_rows * geometry.out[-1])
        transposed = need_dw and geometry.groups == 1 and transposed_weight_gradient(
            geometry.patch, geometry.filters, itemsize)
        pieces = (_blas.gemm_pieces(geometry.patch, geometry.filters_per_group),
                  _blas.gemm_pieces(geometry.patch, band_columns))
        images = 1 if direct else backward_images_per_task(geometry, itemsize, threads)
        return (threads, band_rows, by_bands, band_columns, transposed, pieces,
                geometry.kernel_window(), geometry.input_shape[:2] + geometry.as_3d().size,
                images)

    return _remembered("backward", geometry, itemsize, (direct, need_dx, need_dw), make)


def run_backward(dout, x, w, has_bias, geometry, direct, need_dx=True, need_dw=True):
    """(dx, dw, db) by the _conv kernel (see run_forward); dx None unless need_dx, dw and db
    None unless need_dw (x may then be None)."""
    filters, groups = geometry.filters, geometry.groups
    patch = geometry.patch
    dtype = dout.dtype
    (threads, band_rows, by_bands, band_columns, transposed, pieces, window,
     shape_5d, images) = _backward_recipe(geometry, dtype.itemsize, direct, need_dx, need_dw)
    if images > 1:
        dx = dw = db = None
        if need_dw:
            dw, db = _weight_gradient_by_images(dout, x, w, has_bias, geometry, threads, images,
                                                transposed, pieces[0], window, shape_5d)
        if need_dx:
            dx = _input_gradient_by_images(dout, w, geometry, threads, images, pieces[0],
                                           window, shape_5d)
        return dx, dw, db
    dx = np.empty(geometry.input_shape, dtype) if need_dx else None
    dweight_shape = _dweight_sums_shape(geometry, threads, transposed)
    has_db = has_bias and need_dw
    partials = (threads,) + shape_5d if need_dx and by_bands and not direct else (0,)
    # per-thread sums in scratch memory, zeroed by their threads in the kernel
    with scratch(dtype, (threads, 0 if direct else geometry.channels * math.prod(geometry.kernel),
                         band_columns),
                 (threads, band_columns if transposed else 0, filters), partials,
                 dweight_shape if need_dw else (0,), (threads, filters) if has_db else (0,)) as (
                     workspace, dout_band, dx_partials, dweight, dbias):
        _blas.run_kernel(_compiled.conv.backward, threads, dout.reshape(dout.shape[0], filters, -1),
                         None if x is None or not need_dw else x.reshape(shape_5d),
                         w.reshape(filters, patch), None if dx is None else dx.reshape(shape_5d),
                         dx_partials if len(partials) > 1 else None,
                         dweight if need_dw else None, dbias if has_db else None, workspace,
                         dout_band, window, groups, band_rows, direct, transposed, *pieces)
        if len(partials) > 1:
            np.sum(dx_partials, axis=0, out=dx.reshape(shape_5d))
        dw = db = None
        if need_dw:
            dw, db = _sum_weight_gradients(dweight, dbias if has_db else None, transposed,
                                           w.shape)
    return dx, dw, db


def _dweight_sums_shape(geometry, threads, transposed):
    """Shape of the kernels' per-thread dW sums: (threads, F, C/groups*K), or kept
    transposed (threads, C*K, F) (see transposed_weight_gradient)."""
    filters, patch = geometry.filters, geometry.patch
    return (threads,) + ((patch, filters) if transposed else (filters, patch))


def _sum_weight_gradients(dweight, dbias, transposed, weight_shape):
    """(dw, db or None) from the kernels' per-thread sums (dbias None for no bias), summed
    into fresh arrays: nothing returned lies in scratch memory."""
    dw = np.sum(dweight, axis=0)
    dw = np.ascontiguousarray(dw.T) if transposed else dw
    db = np.sum(dbias, axis=0) if dbias is not None else None
    return dw.reshape(weight_shape), db


def _weight_gradient_by_images(dout, x, w, has_bias, geometry, threads, images, transposed,
                               dweight_pieces, window, shape_5d):
    """(dw, db or None) of run_backward by _conv.weight_gradient_images: `images` whole
    images per task, their columns side by side."""
    filters = geometry.filters
    columns = images * geometry.out_pixels
    with scratch(dout.dtype,
                 (threads, geometry.channels * math.prod(geometry.kernel), columns),
                 (threads, filters, columns), (threads, columns if transposed else 0, filters),
                 _dweight_sums_shape(geometry, threads, transposed),
                 (threads, filters) if has_bias else (0,)) as (
                     workspace, gathered, dout_band, dweight, dbias):
        _blas.run_kernel(_compiled.conv.weight_gradient_images, threads,
                         dout.reshape(dout.shape[0], filters, -1), x.reshape(shape_5d),
                         dweight, dbias if has_bias else None, workspace, gathered, dout_band,
                         window, geometry.groups, images, transposed, dweight_pieces)
        return _sum_weight_gradients(dweight, dbias if has_bias else None, transposed,
                                     w.shape)


def _input_gradient_by_images(dout, w, geometry, threads, images, gemm_pieces, window,
                              shape_5d):
    """dx of run_backward by _conv.input_gradient_images: `images` whole images per task,
    W read once for their dout side by side."""
    filters = geometry.filters
    columns = images * geometry.out_pixels
    dx = np.empty(geometry.input_shape, dout.dtype)
    with scratch(dout.dtype, (threads, geometry.channels * math.prod(geometry.kernel), columns),
                 (threads, filters, columns)) as (workspace, gathered):
        _blas.run_kernel(_compiled.conv.input_gradient_images, threads,
                         dout.reshape(dout.shape[0], filters, -1),
                         w.reshape(filters, geometry.patch),
                         dx.reshape(shape_5d), workspace, gathered, window, geometry.groups,
                         images, gemm_pieces)
    return dx


def band_cost(geometry, machine, pass_name, direct):
    """Seconds of the _conv kernel's work for this pass (planner.Machine): per band an
    im2col copy and one GEMM per group (forward); dW and/or dx's GEMMs and col2im (backward);
    `direct`: the 1x1 path, GEMMs straight on x."""
    g = geometry.as_3d()
    threads, band_rows, blocks = plan(geometry, machine.dtype.itemsize, machine.threads)
    # A forward that puts images side by side (images_per_task) is costed as one band per
    # image: its GEMMs' wider products ran 4-6% faster on 7x7 outputs, where the model's
    # n_half term would count 25%, and that made 1x1 layers on 7x7 maps choose im2col over
    # gemm-1x1, measured 5-18% slower (docs/performance.md, "Images side by side").
    bands = g.batch * g.out[0] * -(-g.out[1] // band_rows)
    columns = g.batch * geometry.out_pixels / bands  # per band, on average
    filters, groups = geometry.filters_per_group, geometry.groups
    patch = geometry.patch  # per group
    rows = patch * groups
    if pass_name == "forward":
        depth = patch + (1 if groups == 1 and not direct else 0)
        gemm = machine.gemm(filters, columns, geometry.channels if direct else depth,
                            calls=bands * groups)
        copy = 0 if direct else machine.work("im2col", rows * columns * bands) * blocks
        if direct and geometry.channels_per_group < 32:
            # the bias pass over the output, which im2col's GEMM folds in: with few input
            # channels it outweighs the tiny GEMM ((4, 3, 112, 112) -> 128: 2.44x slower than
            # im2col); from 32 channels on the measured 1x1 path wins (MobileNetV2's expands)
            copy = machine.work("copy", geometry.filters * columns * bands)
        return machine.spread(copy + gemm, bands * blocks, threads)
    seconds = 0.0
    if pass_name in ("backward", "backward-weights"):
        seconds += machine.gemm(filters, patch, columns, calls=bands * groups, layout="nt")
        seconds += 0 if direct else machine.work("im2col", rows * columns * bands)
    if pass_name in ("backward", "backward-data"):
        seconds += machine.gemm(patch, columns, filters, calls=bands * groups, layout="tn")
        seconds += 0 if direct else machine.work("col2im", rows * columns * bands)
    if g.batch < threads:  # bands in parallel, then the per-thread dx copies summed
        partial = geometry.channels * math.prod(geometry.size)
        return (machine.spread(seconds, bands, threads)
                + machine.work("copy", threads * g.batch * partial) * (pass_name != "backward-weights"))
    # the backward's threads own whole images
    return machine.spread(seconds, g.batch, threads)


def cost(geometry, machine, pass_name):
    return band_cost(geometry, machine, pass_name, direct=False)


def forward(x, w, b, geometry, epilogue=None):
    return run_forward(x, w, b, geometry, False, epilogue), None


def backward(dout, x, w, has_bias, geometry, need_dx=True, need_dw=True):
    return run_backward(dout, x, w, has_bias, geometry, False, need_dx, need_dw), None
