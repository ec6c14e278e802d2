"""Scale-out on Dask: convolution and pooling over chunked dask arrays with exact halos, prediction over batch chunks, and data-parallel training steps on a dask.distributed cluster.

Needs the optional extra (``pip install 'fastconv[dask]'``: dask[array] and distributed);
``import fastconv`` alone never imports dask.

conv2d, max_pool2d and avg_pool2d accept any chunking along N, H and W (C is brought to one
chunk). Each output chunk goes with one input chunk (fastconv._tiling: output row r goes
with the input chunk holding its window's centre row, clamped to the image) and reads
exactly the rows its windows need, from a halo of the neighbouring chunks (dask's overlap
with one depth per side, large enough for every chunk). Zero padding is applied only at the
image's own edges, so the result is the single-process result: max-pool bit for bit, conv
and avg-pool to the dtype's rounding (each tile's algorithm is planned for the tile).
A spatial chunk shorter than the largest halo its neighbours could need is first merged
into a neighbour (x is rechunked), and the output then lines up with the merged chunking.
"""
import copy
import inspect
import math
import string

import numpy as np

try:
    import cloudpickle
    import dask
    import dask.array as da
    from dask.base import tokenize
except ImportError as error:  # pragma: no cover - exercised without dask installed
    raise ImportError(
        "fastconv.dask needs dask[array] and distributed; install them with "
        "pip install 'fastconv[dask]'") from error

from . import _tiling
from ._validate import conv_inputs, pool_inputs
from .conv import conv2d_forward
from .layers.base import Layer
from .layers.core import Dropout
from .layers.norm import BatchNorm2d
from .optim import Optimizer
from .pool import avg_pool2d_forward, max_pool2d_forward
from .train import _loss_function

__all__ = ["conv2d", "max_pool2d", "avg_pool2d", "predict", "data_parallel_step"]

_INSTALL_HINT = "pip install 'fastconv[dask]'"
_FAN_IN = 8  # partial gradient sums added per task in data_parallel_step's reduction tree


# ---- checks ---------------------------------------------------------------------------

def _dask_array(value, name, layout):
    """`value` if it is a dask array with known chunk sizes, else TypeError / ValueError."""
    if not isinstance(value, da.Array):
        raise TypeError(
            f"{name} must be a dask.array.Array of shape {layout}, got {type(value).__name__}; "
            f"wrap an in-memory array with dask.array.from_array({name}, chunks=...)")
    if any(math.isnan(length) for lengths in value.chunks for length in lengths):
        raise ValueError(
            f"{name} has unknown chunk sizes {value.chunks}, so its tiling cannot be planned; "
            f"call {name}.compute_chunk_sizes() first")
    return value


def _stand_in(x):
    """A zero-memory NumPy array of x's shape and dtype, for the shared argument checks."""
    return np.broadcast_to(np.zeros((), dtype=x.dtype), x.shape)


# ---- tiled sliding-window ops -----------------------------------------------------------

class _ConvTile:
    """conv2d_forward of one tile, with the tile's own per-side zero padding."""

    pad_value = 0.0

    def __init__(self, w, b, stride, dilation, groups):
        # copies: the result is lazy, and must not see later changes to the caller's arrays
        self.w, self.b = np.array(w), None if b is None else np.array(b)
        self.stride, self.dilation, self.groups = stride, dilation, groups
        self.out_channels = w.shape[0]

    def __call__(self, tile, pads):
        return conv2d_forward(tile, self.w, self.b, self.stride, pads, dilation=self.dilation,
                              groups=self.groups)[0]


class _PoolTile:
    """Max or average pooling of one tile. The pooling ops pad symmetrically, so a tile at
    the image's edge with padding on one side only is padded here with what the padding
    means: -inf for max (padding never wins), 0 for average (padding counts as zero)."""

    def __init__(self, kind, kernel, stride, channels):
        self.forward = max_pool2d_forward if kind == "max" else avg_pool2d_forward
        self.pad_value = -np.inf if kind == "max" else 0.0
        self.kernel, self.stride = kernel, stride
        self.out_channels = channels

    def __call__(self, tile, pads):
        top, bottom, left, right = pads
        if top == bottom and left == right:
            return self.forward(tile, self.kernel, self.stride, (top, left))[0]
        tile = np.pad(tile, ((0, 0), (0, 0), (top, bottom), (left, right)),
                      constant_values=self.pad_value)
        return self.forward(tile, self.kernel, self.stride, 0)[0]


def _run_tile(block, plan, block_info=None):
    """One output chunk from its input chunk with halo, `block` (n, C, rows, cols).

    plan : (op, (height AxisPlan, width AxisPlan)), one graph key shared by every task.
    """
    op, axes = plan
    where = block_info[None]["array-location"]
    index = block_info[None]["chunk-location"]
    out_shape = (block.shape[0], op.out_channels) + tuple(stop - start for start, stop in where[2:])
    if 0 in out_shape:
        return np.empty(out_shape, dtype=block.dtype)
    rows = [_tiling.tile_rows(axis_plan, index[axis], *where[axis], block.shape[axis])
            for axis, axis_plan in zip((2, 3), axes)]
    if None in rows:  # every window of the tile reads padding only
        spans = [(count - 1) * p.window.stride + p.window.span for count, p in zip(out_shape[2:], axes)]
        tile = np.full(block.shape[:2] + tuple(spans), op.pad_value, dtype=block.dtype)
        pads = (0, 0, 0, 0)
    else:
        (top, bottom, pad_top, pad_bottom), (left, right, pad_left, pad_right) = rows
        tile = block[:, :, top:bottom, left:right]
        pads = (pad_top, pad_bottom, pad_left, pad_right)
    out = op(tile, pads)
    if out.shape != out_shape:  # a planning bug, never the caller's fault
        raise RuntimeError(f"tile {index} gave shape {out.shape}, planned {out_shape}")
    return out


def _tiled(x, op, windows, name):
    """Plan the tiling of x (N, C, H, W) for `op` and build the dask array of its output."""
    x = x.rechunk({1: -1})
    axes = tuple(_tiling.plan_axis(window, x.chunks[axis]) for axis, window in zip((2, 3), windows))
    merged = {axis: plan.chunks for axis, plan in zip((2, 3), axes)}
    if any(x.chunks[axis] != chunks for axis, chunks in merged.items()):
        x = x.rechunk(merged)
    depth = {axis: plan.halo if any(plan.halo) else 0 for axis, plan in zip((2, 3), axes)}
    if any(depth.values()):
        x = da.overlap.overlap(x, depth={0: 0, 1: 0, **depth}, boundary="none",
                               allow_rechunk=False)
    token = tokenize(x.name, name, axes, *_op_identity(op))
    plan = dask.delayed((op, axes), name=f"fastconv-{name}-plan-{token}", traverse=False)
    chunks = (x.chunks[0], (op.out_channels,)) + tuple(p.out_chunks for p in axes)
    return da.map_blocks(_run_tile, x, plan, chunks=chunks, dtype=x.dtype,
                         meta=np.empty((0, 0, 0, 0), dtype=x.dtype), name=f"fastconv-{name}-{token}")


def _op_identity(op):
    if isinstance(op, _ConvTile):
        return op.w, op.b, op.stride, op.dilation, op.groups
    return op.forward.__name__, op.kernel, op.stride


def conv2d(x, w, b=None, stride=1, padding=0, *, dilation=1, groups=1):
    """2-D convolution of a chunked image batch; lazy, as conv2d_forward's output.

    Parameters
    ----------
    x : dask.array.Array of shape (N, C, H, W), float32 or float64, any chunking along N,
        H and W (C is rechunked to one chunk).
    w : ndarray of shape (F, C // groups, KH, KW), x's dtype; b : ndarray of shape (F,) or None.
        Copied as they are now into the graph once, as one key every task depends on.
    stride, padding, dilation, groups : as conv2d_forward (padding an int, (h, w),
        (top, bottom, left, right), "same" or "valid"; zero padding only).

    Returns
    -------
    dask.array.Array of shape (N, F, OH, OW), x's dtype, equal to
    ``conv2d_forward(x.compute(), w, b, ...)[0]`` within the dtype's rounding. Its chunks
    are x's along N and, along H and W, one per input chunk: output row r goes with the
    input chunk holding row r*stride - pad_top + ((KH - 1)*dilation)//2 (clamped to the
    image), likewise for columns. With stride 1 and padding "same" they are x's chunks.
    """
    x = _dask_array(x, "x", "(N, C, H, W)")
    geometry = conv_inputs(_stand_in(x), w, b, 2, stride, padding, dilation, groups)
    op = _ConvTile(w, b, geometry.stride, geometry.dilation, geometry.groups)
    return _tiled(x, op, _tiling.conv_axes(geometry), "conv2d")


def _pool(kind, x, kernel_size, stride, padding):
    x = _dask_array(x, "x", "(N, C, H, W)")
    window = pool_inputs(_stand_in(x), 2, kernel_size, stride, padding)
    op = _PoolTile(kind, window.kernel_size, window.stride, window.channels)
    return _tiled(x, op, _tiling.pool_axes(window), f"{kind}_pool2d")


def max_pool2d(x, kernel_size, stride=None, padding=0):
    """2-D max pooling of a chunked image batch, bit for bit max_pool2d_forward's output.

    x : dask.array.Array of shape (N, C, H, W), float32 or float64, any chunking along N,
        H and W (C is rechunked to one chunk).
    kernel_size, stride (default kernel_size), padding : as max_pool2d_forward.
    Returns a dask.array.Array (N, C, OH, OW) chunked as conv2d's output.
    """
    return _pool("max", x, kernel_size, stride, padding)


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    """2-D average pooling of a chunked image batch (padding counts as zero, divisor
    KH*KW), avg_pool2d_forward's output within the dtype's rounding.

    Arguments and result as max_pool2d.
    """
    return _pool("avg", x, kernel_size, stride, padding)


# ---- models on workers --------------------------------------------------------------------

def _children(layer):
    """(attribute path, sub-layer) for the layers held by `layer`, in attribute order."""
    for name, value in vars(layer).items():
        if isinstance(value, Layer):
            yield name, value
        elif isinstance(value, (list, tuple)):
            for position, item in enumerate(value):
                if isinstance(item, Layer):
                    yield f"{name}[{position}]", item


def _walk(layer, path="model"):
    """(path, layer) for `layer` and every layer inside it, depth first."""
    yield path, layer
    for name, child in _children(layer):
        yield from _walk(child, f"{path}.{name}")


def _without_state(layer):
    """A shallow copy of `layer` (sharing its parameter arrays) without what a forward or
    backward left behind (_cache, grads), so that pickling it sends the parameters only."""
    clone = copy.copy(layer)
    for name, value in vars(layer).items():
        if name == "_cache":
            setattr(clone, name, None)
        elif name == "grads" and isinstance(value, dict):
            setattr(clone, name, {})
        elif isinstance(value, Layer):
            setattr(clone, name, _without_state(value))
        elif isinstance(value, (list, tuple)) and any(isinstance(item, Layer) for item in value):
            setattr(clone, name, type(value)(
                _without_state(item) if isinstance(item, Layer) else item for item in value))
    return clone


def _snapshot(model):
    """The model's parameters and settings as bytes (cloudpickle: a layer's generator may
    be NumPy's global one, a module). Each task unpickles its own copy, so tasks sharing a
    worker never share a layer's forward state, and later changes to `model` do not reach
    an array already built."""
    return cloudpickle.dumps(_without_state(model))


def _buffer_names(layer):
    """A layer's non-parameter state (its `_buffers`; BatchNorm's running statistics)."""
    names = getattr(type(layer), "_buffers", None)
    if names is None and isinstance(layer, BatchNorm2d):
        names = ("running_mean", "running_var")
    return tuple(names or ())


def _check_model(model):
    if not isinstance(model, Layer):
        raise TypeError(f"model must be a fastconv.layers.Layer (e.g. Sequential), got "
                        f"{type(model).__name__}")


def _predict_block(block, snapshot):
    model = cloudpickle.loads(snapshot)
    model.eval()
    return np.asarray(model.infer(block))


def predict(model, x):
    """``model.forward`` over the batch chunks of x, in evaluation mode; lazy.

    Parameters
    ----------
    model : Layer (e.g. Sequential). Its parameters as they are now go into the graph once,
        as one key every task depends on (so each worker receives them once); the model
        itself is not changed, and later changes to it do not reach the result.
    x : dask.array.Array of shape (N, ...), the model's input dtype, any chunking along N
        (the other axes are rechunked to one chunk).

    Returns
    -------
    dask.array.Array of shape (N, ...) (the model's output, e.g. (N, num_classes) scores),
    chunked as x along N. Evaluation mode as fastconv.train.predict_scores: Dropout off,
    BatchNorm with its running statistics. The output shape and dtype come from one
    forward of a single zero sample here, which also reports a wrong input shape or dtype
    at once.
    """
    _check_model(model)
    x = _dask_array(x, "x", "(N, ...)")
    if x.ndim < 1:
        raise ValueError("x must have a batch axis, got a 0-D array")
    snapshot = _snapshot(model)
    probe = cloudpickle.loads(snapshot)
    probe.eval()
    sample = np.asarray(probe.forward(np.zeros((1,) + x.shape[1:], dtype=x.dtype)))
    if sample.ndim < 1 or sample.shape[0] != 1:
        raise ValueError(f"model.forward must keep the batch axis: one sample of shape "
                         f"{(1,) + x.shape[1:]} gave an output of shape {sample.shape}")
    x = x.rechunk({axis: -1 for axis in range(1, x.ndim)})
    token = tokenize(x.name, snapshot)
    model_key = dask.delayed(snapshot, name=f"fastconv-model-{token}", traverse=False)
    letters = string.ascii_letters[1:]  # "a" is the batch axis
    x_index = "a" + letters[:x.ndim - 1]
    out_index = "a" + letters[x.ndim - 1:x.ndim - 1 + sample.ndim - 1]
    return da.blockwise(_predict_block, out_index, x, x_index, model_key, None,
                        new_axes=dict(zip(out_index[1:], sample.shape[1:])), concatenate=True,
                        dtype=sample.dtype, meta=np.empty((0,) * sample.ndim, dtype=sample.dtype),
                        name=f"fastconv-predict-{token}")


# ---- data-parallel training ---------------------------------------------------------------

def _backward(model, dscores):
    # need_dx=False saves the first layer's input gradient where the model offers it
    if "need_dx" in inspect.signature(model.backward).parameters:
        model.backward(dscores, need_dx=False)
    else:
        model.backward(dscores)


def _shard_gradients(snapshot, x, y, loss, weight, dropout_seeds):
    """One shard's (weight * loss, weight * grads, weight * buffers), weight = its share of
    the batch, with the parameters in `snapshot`."""
    model = cloudpickle.loads(snapshot)
    model.train()
    layers = list(_walk(model))
    for path, layer in layers:
        if path in dropout_seeds:
            layer.rng = np.random.default_rng(dropout_seeds[path])
    value, dscores = _loss_function(loss)(model.forward(x), y)
    _backward(model, dscores)
    grads = {name: grad * grad.dtype.type(weight) for name, grad in model.grads.items()}
    buffers = {}
    for path, layer in layers:
        for name in _buffer_names(layer):
            state = np.asarray(getattr(layer, name))
            buffers[f"{path}/{name}"] = state * state.dtype.type(weight)
    return weight * value, grads, buffers


def _add_partials(*partials):
    """The sum of several shards' (loss, grads, buffers)."""
    loss = sum(part[0] for part in partials)
    sums = []
    for field in (1, 2):
        total = {name: value.copy() for name, value in partials[0][field].items()}
        for part in partials[1:]:
            for name, value in part[field].items():
                total[name] += value
        sums.append(total)
    return loss, sums[0], sums[1]


def _check_client(client):
    try:
        import distributed
    except ImportError as error:  # pragma: no cover - exercised without distributed installed
        raise ImportError(f"data_parallel_step needs distributed; install it with "
                          f"{_INSTALL_HINT}") from error
    if not isinstance(client, distributed.Client):
        raise TypeError(f"client must be a dask.distributed.Client, got {type(client).__name__}")
    if client.status != "running":
        raise ValueError(f"client is not connected to a scheduler (status {client.status!r}); "
                         "start it with dask.distributed.Client(...) before the step")


def _check_optimizer(optimizer, model):
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be a fastconv.optim.Optimizer, got {type(optimizer).__name__}")
    params = model.params
    foreign = sorted(name for name, value in optimizer.params.items() if params.get(name) is not value)
    if foreign:
        raise ValueError(f"optimizer must update model.params, but its parameters {foreign} are "
                         "not the model's arrays; build it as Optimizer(model.params, ...)")


def _check_labels(x, y):
    y = _dask_array(y, "y", "(N,)")
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise ValueError(f"y must be a 1-D dask array of integer labels, got dtype {y.dtype} "
                         f"shape {y.shape}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must have one sample per label: x has shape {x.shape}, y has "
                         f"shape {y.shape}")
    if x.chunks[0] != y.chunks[0]:
        raise ValueError(f"x and y must be chunked alike along N: x has chunks {x.chunks[0]}, y "
                         f"has {y.chunks[0]}; rechunk one, e.g. y.rechunk({{0: x.chunks[0]}})")
    if x.shape[0] == 0:
        raise ValueError(f"x has no samples (shape {x.shape})")
    return y


def _dropout_seeds(model):
    """Per Dropout layer, a seed drawn from the layer's own generator: each shard's masks
    come from (seed, shard index), so shards never repeat each other's masks."""
    return {path: int(layer.rng.random() * 2**53)
            for path, layer in _walk(model) if isinstance(layer, Dropout)}


def data_parallel_step(client, model, optimizer, x, y, loss="softmax"):
    """One optimiser step on the batch (x, y), its loss and gradients computed shard by
    shard on the cluster.

    Parameters
    ----------
    client : a connected dask.distributed.Client.
    model : Layer whose forward gives (N, num_classes) scores; optimizer : an Optimizer
        built over ``model.params``.
    x : dask.array.Array of shape (N, ...), the model's dtype, chunked along N (the other
        axes are rechunked to one chunk); y : dask.array.Array of shape (N,), integer labels,
        chunked as x along N.
    loss : "softmax", "svm", or a callable (scores, y) -> (loss, dscores) as in fastconv.train.

    Returns
    -------
    loss : float, the mean loss over the whole batch.

    The model's current parameters are scattered to every worker once; each chunk's task
    runs forward and backward in training mode on its own copy; the chunks' losses and
    gradients are added up on the workers weighted by chunk size (n_chunk / N, so the
    result is the whole batch's mean), and the optimizer takes one step here. For a model
    without BatchNorm or Dropout the step equals Trainer.train_step on the whole batch up
    to rounding. BatchNorm normalises each chunk with that chunk's own statistics (as
    PyTorch's DistributedDataParallel without SyncBatchNorm), so its gradients differ from
    a whole-batch step; its running mean and variance become the chunk-size-weighted mean
    of the chunks' updated estimates. Dropout draws each chunk's masks from a seed taken
    from the layer's generator and the chunk's index.
    """
    _check_client(client)
    _check_model(model)
    _check_optimizer(optimizer, model)
    x = _dask_array(x, "x", "(N, ...)")
    if x.ndim < 1:
        raise ValueError("x must have a batch axis, got a 0-D array")
    y = _check_labels(x, y)
    _loss_function(loss)  # a bad loss fails here, not on every worker
    x = x.rechunk({axis: -1 for axis in range(1, x.ndim)})
    total = x.shape[0]
    snapshot = client.scatter(_snapshot(model), broadcast=True)
    seeds = _dropout_seeds(model)
    x_blocks = x.to_delayed().reshape(-1)
    y_blocks = y.to_delayed().reshape(-1)
    partials = [
        dask.delayed(_shard_gradients, pure=True)(
            snapshot, x_block, y_block, loss, length / total,
            {path: (seed, index) for path, seed in seeds.items()})
        for index, (x_block, y_block, length) in enumerate(zip(x_blocks, y_blocks, x.chunks[0]))
        if length > 0
    ]
    while len(partials) > 1:
        partials = [dask.delayed(_add_partials, pure=True)(*partials[start:start + _FAN_IN])
                    for start in range(0, len(partials), _FAN_IN)]
    mean_loss, grads, buffers = client.compute(partials[0]).result()
    layers = dict(_walk(model))
    for key, value in buffers.items():
        path, name = key.rsplit("/", 1)
        setattr(layers[path], name, value.astype(getattr(layers[path], name).dtype, copy=False))
    optimizer.step(grads)
    return float(mean_loss)
