"""fastconv.dask on a 2-process LocalCluster: tiled conv and pooling against the single-process ops, predict, the data-parallel step against a local step, and the errors."""
import copy
import os
import pickle

import cloudpickle
import dask.array as da
import numpy as np
import pytest
from distributed import Client, LocalCluster

import fastconv
import fastconv.dask as fd
from fastconv import _tiling
from fastconv.layers import (BatchNorm2d, Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU,
                             Sequential)
from fastconv.optim import SGD, Adam
from fastconv.train import Trainer, predict_scores

from _helpers import assert_close

# The folder holding the fastconv this session imports (the worktree's in-place build, or
# site-packages in CI): the workers must import the same one.
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fastconv.__file__)))


@pytest.fixture(scope="module")
def client():
    path = os.pathsep.join(p for p in (PACKAGE_ROOT, os.environ.get("PYTHONPATH")) if p)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      env={"PYTHONPATH": path}) as cluster, Client(cluster) as connected:
        yield connected


def _random(shape, dtype=np.float64, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def test_workers_run_this_fastconv_in_separate_processes(client):
    files = client.run(lambda: __import__("fastconv").__file__)
    pids = client.run(os.getpid)
    assert len(files) == 2 and set(files.values()) == {fastconv.__file__}
    assert len(set(pids.values())) == 2 and os.getpid() not in pids.values()


# ---- conv2d -----------------------------------------------------------------------------

# (label, x shape, x chunks, w shape, conv arguments)
CONV_CASES = [
    ("batch chunks", (5, 3, 9, 9), ((2, 3), 3, 9, 9), (4, 3, 3, 3), dict(padding=1)),
    ("uneven batch chunks, no padding", (6, 2, 7, 8), ((1, 4, 1), 2, 7, 8), (3, 2, 3, 2), {}),
    ("spatial chunks, same", (2, 3, 17, 15), (1, 3, (6, 6, 5), (4, 7, 4)), (4, 3, 3, 3),
     dict(padding="same")),
    ("chunks cutting windows, stride 2", (2, 2, 19, 16), (2, 2, (5, 7, 7), (3, 9, 4)),
     (3, 2, 3, 3), dict(stride=2, padding=1)),
    ("stride 3 off the chunk grid", (1, 2, 23, 20), (1, 2, (4, 8, 11), (7, 6, 7)), (2, 2, 4, 3),
     dict(stride=3, padding=(1, 2))),
    ("per-side padding", (2, 2, 14, 13), (1, 2, (5, 5, 4), (6, 7)), (3, 2, 3, 3),
     dict(padding=(0, 2, 3, 1))),
    ("valid, kernel 5", (1, 3, 16, 18), (1, 3, (3, 5, 8), (9, 9)), (2, 3, 5, 5),
     dict(padding="valid")),
    ("same at stride 2, even kernel", (2, 2, 15, 16), (1, 2, (4, 4, 4, 3), (8, 8)), (2, 2, 4, 4),
     dict(stride=2, padding="same")),
    ("dilation 2", (1, 2, 20, 17), (1, 2, (6, 7, 7), (5, 12)), (3, 2, 3, 3),
     dict(padding=2, dilation=2)),
    ("dilation (3, 1), stride (1, 2)", (2, 2, 21, 14), (1, 2, (10, 11), (5, 5, 4)), (2, 2, 3, 3),
     dict(stride=(1, 2), padding="same", dilation=(3, 1))),
    ("groups 2", (2, 4, 12, 12), (2, 4, (4, 8), (6, 6)), (6, 2, 3, 3), dict(padding=1, groups=2)),
    ("depthwise, channels in chunks", (2, 4, 11, 10), (1, (1, 3), (5, 6), (5, 5)), (4, 1, 3, 3),
     dict(padding=1, groups=4)),
    ("padding past the kernel (windows of padding only)", (1, 2, 6, 7), (1, 2, (3, 3), (4, 3)),
     (2, 2, 2, 2), dict(stride=2, padding=4)),
    ("1x1, stride 2, one-row chunks", (2, 3, 9, 8), (1, 3, (1,) * 9, (3, 5)), (4, 3, 1, 1),
     dict(stride=2)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("label, x_shape, chunks, w_shape, arguments", CONV_CASES,
                         ids=[case[0] for case in CONV_CASES])
def test_conv2d_equals_single_process(client, label, x_shape, chunks, w_shape, arguments, dtype):
    x = _random(x_shape, dtype)
    w = _random(w_shape, dtype, seed=1)
    b = _random(w_shape[:1], dtype, seed=2)
    expected = fastconv.conv2d_forward(x, w, b, **arguments)[0]
    lazy = fd.conv2d(da.from_array(x, chunks=chunks), w, b, **arguments)
    assert lazy.shape == expected.shape and lazy.dtype == expected.dtype
    result = lazy.compute()
    assert_close(result, expected, 1e-5 if dtype == np.float32 else 1e-12)
    # the output chunks follow x's along N and, in H and W, go one per input chunk
    assert lazy.chunks[0] == da.from_array(x, chunks=chunks).chunks[0]
    assert lazy.chunks[1] == (w_shape[0],)


def test_conv2d_without_bias_and_same_padding_keeps_the_chunks(client):
    x = da.from_array(_random((2, 3, 20, 18)), chunks=(1, 3, (7, 6, 7), (5, 8, 5)))
    w = _random((2, 3, 5, 3), seed=1)
    lazy = fd.conv2d(x, w, padding="same")
    assert lazy.chunks[2:] == x.chunks[2:]  # stride 1, "same": the output chunks are x's
    assert_close(lazy.compute(), fastconv.conv2d_forward(x.compute(), w, padding="same")[0])


def _centre_row_chunk(r, window, starts):
    """The input chunk holding output row r's window centre, clamped to the image."""
    centre = r * window.stride - window.pad_before + window.centre
    centre = min(max(centre, 0), window.size - 1)
    return max(index for index, start in enumerate(starts) if start <= centre)


@pytest.mark.parametrize("stride, padding, dilation", [(1, "same", 1), (2, 1, 1), (3, (0, 2, 1, 1), 1),
                                                       (2, "valid", 2), (1, 3, 3)])
def test_output_chunks_go_with_the_chunk_holding_each_window_centre(stride, padding, dilation):
    x = da.zeros((1, 1, 41, 37), chunks=(1, 1, (9, 4, 13, 15), (10, 10, 10, 7)))
    w = np.ones((1, 1, 3, 4))
    lazy = fd.conv2d(x, w, None, stride, padding, dilation=dilation)
    geometry = fastconv._geometry.conv_geometry(x.shape, w.shape, stride, padding, dilation=dilation)
    for axis, window in zip((2, 3), _tiling.conv_axes(geometry)):
        starts = np.cumsum((0,) + x.chunks[axis][:-1]).tolist()
        owners = [_centre_row_chunk(r, window, starts) for r in range(window.out)]
        assert lazy.chunks[axis] == tuple(owners.count(j) for j in range(len(starts)))


def test_chunks_smaller_than_the_halo_are_merged_into_a_neighbour(client):
    x = da.from_array(_random((1, 2, 22, 12)), chunks=(1, 2, (1, 8, 2, 9, 2), (12,)))
    w = _random((2, 2, 7, 3), seed=1)  # a 7-row kernel needs halos of up to 3 rows
    lazy = fd.conv2d(x, w, padding=3)
    # the 1 joins the chunk after it, each 2 the one before; stride 1 with padding 3 is
    # "same", so the output chunks are the merged input chunks
    assert lazy.chunks[2] == (11, 11)
    assert_close(lazy.compute(), fastconv.conv2d_forward(x.compute(), w, padding=3)[0])


def test_conv2d_uses_the_weights_of_the_call():
    x = _random((2, 2, 9, 9))
    w, b = _random((3, 2, 3, 3), seed=1), _random(3, seed=2)
    lazy = fd.conv2d(da.from_array(x, chunks=(1, 2, 5, 4)), w, b, padding=1)
    expected = fastconv.conv2d_forward(x, w, b, padding=1)[0]
    w[...], b[...] = 0, 0
    assert_close(lazy.compute(scheduler="threads"), expected)


def test_weights_go_into_the_graph_once():
    x = da.zeros((4, 8, 64, 64), chunks=(1, 8, 16, 16))  # 64 tasks
    w = _random((64, 8, 3, 3), seed=1)  # 36 KiB
    graph = dict(fd.conv2d(x, w, padding=1).__dask_graph__())
    sizes = sorted(len(cloudpickle.dumps(task)) for task in graph.values())
    assert sizes[-1] > w.nbytes and sizes[-2] < w.nbytes / 4


# ---- pooling ----------------------------------------------------------------------------

POOL_CASES = [
    ("2x2 batch chunks", (4, 3, 8, 8), ((1, 3), 3, 8, 8), dict(kernel_size=2)),
    ("2x2 odd chunks", (2, 2, 15, 13), (1, 2, (5, 5, 5), (3, 7, 3)), dict(kernel_size=2)),
    ("3x3 stride 2 padding 1", (2, 3, 17, 16), (1, 3, (6, 5, 6), (7, 9)),
     dict(kernel_size=3, stride=2, padding=1)),
    ("(3, 2) stride (1, 3)", (1, 2, 13, 20), (1, 2, (4, 9), (8, 4, 8)),
     dict(kernel_size=(3, 2), stride=(1, 3), padding=(1, 0))),
    ("4x4 stride 3 padding 2, small chunks", (1, 1, 19, 19), (1, 1, (2, 5, 2, 10), (3,) * 6 + (1,)),
     dict(kernel_size=4, stride=3, padding=2)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("label, x_shape, chunks, arguments", POOL_CASES, ids=[c[0] for c in POOL_CASES])
def test_pooling_equals_single_process(client, label, x_shape, chunks, arguments, dtype):
    x = _random(x_shape, dtype)
    x[0, 0, 3, 4] = np.nan  # a NaN stays in its windows
    lazy = da.from_array(x, chunks=chunks)
    result = fd.max_pool2d(lazy, **arguments).compute()
    expected = fastconv.max_pool2d_forward(x, **arguments)[0]
    assert result.dtype == expected.dtype
    np.testing.assert_array_equal(result, expected)  # bit for bit, NaN where expected
    result = fd.avg_pool2d(lazy, **arguments).compute()
    expected = fastconv.avg_pool2d_forward(x, **arguments)[0]
    finite = np.isfinite(expected)
    assert np.array_equal(np.isfinite(result), finite)
    assert_close(np.where(finite, result, 0), np.where(finite, expected, 0))


def test_max_pool_of_all_negative_edges_never_takes_the_padding(client):
    x = -np.abs(_random((1, 1, 9, 9))) - 1
    lazy = da.from_array(x, chunks=(1, 1, (4, 5), (2, 7)))
    result = fd.max_pool2d(lazy, 3, 2, 1).compute()
    np.testing.assert_array_equal(result, fastconv.max_pool2d_forward(x, 3, 2, 1)[0])
    assert (result < -1).all()


# ---- predict ----------------------------------------------------------------------------

def _cnn(dtype=np.float64, seed=0, extra=()):
    return Sequential([
        Conv2d(2, 4, 3, padding=1, dtype=dtype, rng=seed), ReLU(), *extra, MaxPool2d(2),
        Flatten(), Linear(4 * 4 * 4, 3, dtype=dtype, rng=seed + 1),
    ])


def test_predict_equals_predict_scores_over_uneven_batch_chunks(client):
    model = _cnn(extra=[BatchNorm2d(4, dtype=np.float64), Dropout(0.5, rng=0)])
    model.layers[2].running_mean[:] = [0.1, -0.2, 0.3, 0.0]
    model.train()
    x = _random((10, 2, 8, 8))
    expected = predict_scores(model, x)
    before = copy.deepcopy(model.params)
    lazy = fd.predict(model, da.from_array(x, chunks=((3, 5, 2), 1, 8, 8)))
    assert lazy.shape == (10, 3) and lazy.chunks == ((3, 5, 2), (3,))
    assert_close(lazy.compute(), expected)
    assert model.training  # the model itself is untouched
    assert all(np.array_equal(before[name], value) for name, value in model.params.items())


def test_predict_uses_the_parameters_of_the_call():
    model = _cnn()
    x = _random((4, 2, 8, 8))
    lazy = fd.predict(model, da.from_array(x, chunks=2))
    expected = predict_scores(model, x)
    model.params["0.weight"][...] = 0  # after the call: not seen by the result
    assert_close(lazy.compute(scheduler="threads"), expected)


def test_predict_sends_the_model_once_not_with_every_task():
    model = Sequential([Flatten(), Linear(128, 256, dtype=np.float64, rng=0), ReLU()])
    model.forward(_random((64, 2, 8, 8)))  # leaves a cache that must not travel either
    size = len(pickle.dumps(list(model.params.values())))  # 258 KiB
    lazy = fd.predict(model, da.zeros((64, 2, 8, 8), chunks=4))  # 16 tasks
    graph = dict(lazy.__dask_graph__())
    sizes = sorted(len(cloudpickle.dumps(task)) for task in graph.values())
    assert len(graph) >= 16
    assert size < sizes[-1] < 2 * size  # the model, once, without its cache
    assert sizes[-2] < size / 4


def test_predict_reports_a_wrong_input_at_once():
    model = _cnn()
    with pytest.raises(TypeError, match="float64"):
        fd.predict(model, da.zeros((4, 2, 8, 8), dtype=np.float32, chunks=2))
    with pytest.raises(ValueError, match=r"\(N, 2, H, W\)"):
        fd.predict(model, da.zeros((4, 3, 8, 8), chunks=2))


# ---- data_parallel_step -----------------------------------------------------------------

def _batch(num_samples=12, seed=3):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((num_samples, 2, 8, 8)), rng.integers(0, 3, num_samples)


def _step_pair(optimizer_class, **options):
    local, distributed = _cnn(), _cnn()
    return (local, optimizer_class(local.params, **options),
            distributed, optimizer_class(distributed.params, **options))


@pytest.mark.parametrize("optimizer_class, options", [(SGD, dict(lr=0.1, momentum=0.9)),
                                                      (Adam, dict(lr=1e-2))])
@pytest.mark.parametrize("loss", ["softmax", "svm"])
def test_data_parallel_steps_equal_local_steps(client, optimizer_class, options, loss):
    local, local_optimizer, model, optimizer = _step_pair(optimizer_class, **options)
    trainer = Trainer(local, local_optimizer, loss=loss, verbose=False)
    for step in range(2):
        x, y = _batch(seed=step)
        expected = trainer.train_step(x, y)
        chunks = ((5, 4, 3), (3, 3, 3, 3))[step]
        value = fd.data_parallel_step(client, model, optimizer, da.from_array(x, chunks=(chunks, 1, 4, 8)),
                                      da.from_array(y, chunks=(chunks,)), loss=loss)
        assert isinstance(value, float) and abs(value - expected) <= 1e-12 * max(1, abs(expected))
        for name, param in local.params.items():
            np.testing.assert_allclose(model.params[name], param, rtol=0, atol=1e-10, err_msg=name)
    assert optimizer.steps == 2


def test_data_parallel_step_with_a_callable_loss_and_one_chunk(client):
    local, local_optimizer, model, optimizer = _step_pair(SGD, lr=0.05)
    x, y = _batch()

    def squared(scores, labels):
        target = np.eye(scores.shape[1])[labels]
        return float(((scores - target) ** 2).sum() / len(labels)), 2 * (scores - target) / len(labels)

    expected = Trainer(local, local_optimizer, loss=squared, verbose=False).train_step(x, y)
    value = fd.data_parallel_step(client, model, optimizer, da.from_array(x), da.from_array(y), squared)
    assert abs(value - expected) <= 1e-12 * abs(expected)
    for name, param in local.params.items():
        np.testing.assert_allclose(model.params[name], param, rtol=0, atol=1e-10)


def test_batchnorm_uses_each_chunks_own_statistics(client):
    """As DDP without SyncBatchNorm: the step equals the mean of per-chunk local gradients,
    not a whole-batch step; the running mean is the whole batch's (a weighted mean of the
    chunks' updates); the running variance the weighted mean of the chunks' updates."""
    def model_with_batchnorm():
        return _cnn(extra=[BatchNorm2d(4, dtype=np.float64)])

    model = model_with_batchnorm()
    optimizer = SGD(model.params, lr=0.1)
    x, y = _batch()
    chunks = (4, 8)
    fd.data_parallel_step(client, model, optimizer, da.from_array(x, chunks=(chunks, 2, 8, 8)),
                          da.from_array(y, chunks=(chunks,)))
    # the same by hand: a fresh model per chunk, gradients weighted by chunk size
    grads, running = {}, {"running_mean": 0, "running_var": 0}
    starts = (0, 4)
    for start, length in zip(starts, chunks):
        shard = model_with_batchnorm()
        _, dscores = fastconv.losses.softmax_loss(shard.forward(x[start:start + length]),
                                                  y[start:start + length])
        shard.backward(dscores)
        for name, grad in shard.grads.items():
            grads[name] = grads.get(name, 0) + grad * length / 12
        for name in running:
            running[name] = running[name] + getattr(shard.layers[2], name) * length / 12
    expected = model_with_batchnorm()
    SGD(expected.params, lr=0.1).step(grads)
    for name, param in expected.params.items():
        np.testing.assert_allclose(model.params[name], param, rtol=0, atol=1e-12, err_msg=name)
    for name, value in running.items():
        np.testing.assert_allclose(getattr(model.layers[2], name), value, rtol=0, atol=1e-12)
    # and it is not the whole-batch step
    whole = model_with_batchnorm()
    Trainer(whole, SGD(whole.params, lr=0.1), verbose=False).train_step(x, y)
    assert not np.allclose(whole.params["0.weight"], model.params["0.weight"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(model.layers[2].running_mean, whole.layers[2].running_mean,
                               rtol=0, atol=1e-12)


def test_dropout_masks_differ_between_chunks_and_steps(client):
    model = Sequential([Dropout(0.5, rng=0), Flatten(), Linear(4, 2, dtype=np.float64, rng=1)])
    optimizer = SGD(model.params, lr=1.0)
    x = np.ones((8, 4))
    y = np.zeros(8, dtype=np.int64)
    seeds = fd._dropout_seeds(model)
    assert seeds != fd._dropout_seeds(model)  # the layer's generator moves on every step
    snapshot = fd._snapshot(model)
    masks = [fd._shard_gradients(snapshot, x[:4], y[:4], "softmax", 0.5,
                                 {path: (seed, index) for path, seed in seeds.items()})[1]["2.weight"]
             for index in (0, 1)]
    assert not np.array_equal(masks[0], masks[1])  # identical shards, different masks
    before = model.params["2.weight"].copy()
    fd.data_parallel_step(client, model, optimizer, da.from_array(x, chunks=4), da.from_array(y, chunks=4))
    assert not np.array_equal(before, model.params["2.weight"])


# ---- errors -----------------------------------------------------------------------------

def test_ops_reject_what_they_cannot_plan():
    x = _random((2, 3, 8, 8))
    w = _random((4, 3, 3, 3), seed=1)
    for function, arguments in [(fd.conv2d, (w,)), (fd.max_pool2d, (2,)), (fd.avg_pool2d, (2,))]:
        with pytest.raises(TypeError, match=r"x must be a dask.array.Array .*got ndarray.*from_array"):
            function(x, *arguments)
        unknown = da.from_array(x, chunks=1)[da.from_array(np.array([True, False]), chunks=1)]
        with pytest.raises(ValueError, match=r"x has unknown chunk sizes .*compute_chunk_sizes"):
            function(unknown, *arguments)
    lazy = da.from_array(x, chunks=(1, 3, 4, 4))
    with pytest.raises(TypeError, match="w must be a numpy.ndarray"):
        fd.conv2d(lazy, da.from_array(w))
    with pytest.raises(ValueError, match="channel mismatch"):
        fd.conv2d(lazy, w[:, :2])
    with pytest.raises(TypeError, match="x: float64, w: float32"):
        fd.conv2d(lazy, w.astype(np.float32))
    with pytest.raises(ValueError, match="x must be 4-D"):
        fd.conv2d(lazy[0], w)
    with pytest.raises(TypeError, match="x must have dtype float32 or float64, got int64"):
        fd.max_pool2d(lazy.astype(np.int64), 2)
    with pytest.raises(ValueError, match="at most half of kernel_size"):
        fd.avg_pool2d(lazy, 2, padding=2)
    with pytest.raises(TypeError, match="model must be a fastconv.layers.Layer"):
        fd.predict(lambda batch: batch, lazy)


def test_data_parallel_step_rejects_bad_arguments(client):
    model = _cnn()
    optimizer = SGD(model.params, lr=0.1)
    x, y = _batch()
    xs, ys = da.from_array(x, chunks=(6, 2, 8, 8)), da.from_array(y, chunks=6)
    step = fd.data_parallel_step
    with pytest.raises(TypeError, match="x must be a dask.array.Array"):
        step(client, model, optimizer, x, ys)
    with pytest.raises(TypeError, match="y must be a dask.array.Array"):
        step(client, model, optimizer, xs, y)
    with pytest.raises(ValueError, match=r"chunked alike along N: x has chunks \(6, 6\), y has \(4, 4, 4\)"):
        step(client, model, optimizer, xs, da.from_array(y, chunks=4))
    with pytest.raises(ValueError, match="one sample per label"):
        step(client, model, optimizer, xs, ys[:10])
    with pytest.raises(ValueError, match="integer labels"):
        step(client, model, optimizer, xs, ys.astype(float))
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        step(client, model, optimizer, xs[xs[:, 0, 0, 0] > 0], ys[xs[:, 0, 0, 0] > 0])
    with pytest.raises(ValueError, match="optimizer must update model.params"):
        step(client, model, SGD(_cnn().params, lr=0.1), xs, ys)
    with pytest.raises(TypeError, match="optimizer must be a fastconv.optim.Optimizer"):
        step(client, model, "sgd", xs, ys)
    with pytest.raises(ValueError, match="loss must be one of"):
        step(client, model, optimizer, xs, ys, loss="hinge")
    with pytest.raises(TypeError, match="client must be a dask.distributed.Client"):
        step("tcp://127.0.0.1:8786", model, optimizer, xs, ys)
    before = copy.deepcopy(model.params)
    closed = Client(client.scheduler.address)
    closed.close()
    with pytest.raises(ValueError, match="client is not connected.*'closed'"):
        step(closed, model, optimizer, xs, ys)
    assert all(np.array_equal(value, model.params[name]) for name, value in before.items())


def test_import_fastconv_does_not_import_dask(run_python):
    process = run_python("""
        import sys
        import fastconv, fastconv.layers, fastconv.train
        assert not any(name == "dask" or name.startswith(("dask.", "distributed")) for name in sys.modules), \\
            sorted(name for name in sys.modules if "dask" in name)
        sys.modules["dask"] = None  # as if dask were not installed
        try:
            import fastconv.dask
        except ImportError as error:
            print(error)
    """)
    assert process.returncode == 0, process.stderr
    assert "pip install 'fastconv[dask]'" in process.stdout
