"""Layer.infer and Sequential's inference fusion: Conv -> BatchNorm (running statistics) ->
ReLU as one convolution with an epilogue (fastconv/_epilogue.py), against the layers run one
by one (forward), over algorithms, kinds, dtypes and layouts."""
import numpy as np
import pytest
from _helpers import with_layout

import fastconv
from fastconv import _epilogue, layers
from fastconv.conv import conv_inference
from fastconv.reference.conv import epilogue as reference_epilogue
from fastconv.layers import (
    BatchNorm1d,
    BatchNorm2d,
    Conv1d,
    Conv2d,
    Conv3d,
    MaxPool2d,
    ReLU,
    Residual,
    Sequential,
)
from fastconv.train import predict_scores


def _tolerance(dtype):
    return {"rtol": 1e-6, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}


def _randomise_norm(norm, rng):
    c = norm.num_features
    norm.params["weight"][...] = rng.uniform(-2, 2, c)
    norm.params["bias"][...] = rng.standard_normal(c)
    norm.running_mean[...] = rng.standard_normal(c)
    norm.running_var[...] = rng.uniform(0.1, 3, c)
    return norm


def _check_infer(model, x, *, exact=False):
    """infer(x) against forward(x), in the model's current mode; x is never written."""
    before = x.copy()
    expected = model.forward(x)
    got = model.infer(x)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    if exact:
        np.testing.assert_array_equal(got, expected)
    else:
        np.testing.assert_allclose(got, expected, **_tolerance(x.dtype))
    np.testing.assert_array_equal(x, before)
    return got


CONVS = [  # (conv layer maker, x shape)
    (lambda d, r: Conv2d(3, 5, 3, padding=1, dtype=d, rng=r), (2, 3, 9, 7)),
    (lambda d, r: Conv2d(3, 4, (3, 2), stride=(2, 1), padding=(1, 0), bias=False, dtype=d,
                         rng=r), (1, 3, 8, 11)),
    (lambda d, r: Conv2d(4, 6, 1, dtype=d, rng=r), (3, 4, 5, 6)),                 # gemm-1x1
    (lambda d, r: Conv2d(4, 4, 3, padding=2, dilation=2, groups=2, padding_mode="reflect",
                         dtype=d, rng=r), (2, 4, 7, 6)),
    (lambda d, r: Conv2d(4, 8, 3, padding=1, groups=4, dtype=d, rng=r), (1, 4, 6, 6)),  # depthwise
    (lambda d, r: Conv2d(1, 3, 3, stride=2, padding="same", dtype=d, rng=r), (2, 1, 9, 9)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", range(len(CONVS)))
@pytest.mark.parametrize("tail", ["bn-relu", "bn", "relu"])
@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_conv_bn_relu_infer_matches_forward(dtype, case, tail, layout):
    rng = np.random.default_rng(case)
    make, shape = CONVS[case]
    conv = make(dtype, rng)
    parts = [conv]
    if "bn" in tail:
        parts.append(_randomise_norm(BatchNorm2d(conv.out_channels, dtype=dtype), rng))
    if "relu" in tail:
        parts.append(ReLU())
    model = Sequential(parts).eval()
    assert model._conv_epilogue(0)[0] == len(parts)  # the whole chain runs as one call
    x = with_layout(rng.standard_normal(shape).astype(dtype), layout)
    # Conv -> ReLU alone is exact: the same convolution, then the same rule per element
    _check_infer(model, x, exact=tail == "relu")


@pytest.mark.parametrize("algorithm", ["im2col", "winograd-2x2", "winograd-4x4", "measure"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_algorithm_gets_the_epilogue(algorithm, dtype):
    """The algorithms without an in-kernel epilogue get the same pass afterwards."""
    rng = np.random.default_rng(7)
    conv = Conv2d(6, 8, 3, padding=1, dtype=dtype, rng=rng, algorithm=algorithm)
    model = Sequential([conv, _randomise_norm(BatchNorm2d(8, dtype=dtype), rng), ReLU()]).eval()
    _check_infer(model, rng.standard_normal((2, 6, 10, 12)).astype(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_1d_3d_and_reference_backend(dtype):
    rng = np.random.default_rng(8)
    one = Sequential([Conv1d(2, 3, 5, padding=2, dtype=dtype, rng=rng),
                      _randomise_norm(BatchNorm1d(3, dtype=dtype), rng), ReLU()]).eval()
    assert one._conv_epilogue(0)[0] == 3
    _check_infer(one, rng.standard_normal((2, 2, 13)).astype(dtype))
    three = Sequential([Conv3d(2, 3, 3, padding=1, dtype=dtype, rng=rng), ReLU()]).eval()
    _check_infer(three, rng.standard_normal((1, 2, 4, 5, 6)).astype(dtype), exact=True)
    ref = Sequential([Conv2d(2, 3, 3, dtype=dtype, rng=rng, backend="reference"),
                      _randomise_norm(BatchNorm2d(3, dtype=dtype), rng), ReLU()]).eval()
    _check_infer(ref, rng.standard_normal((2, 2, 6, 5)).astype(dtype))


def test_nan_and_signed_zero_follow_relu_forward():
    """NaN stays NaN through the epilogue's ReLU; -0 and 0 become 0; both as relu_forward."""
    out = np.array([[[np.nan, -0.0, 0.0, -1.5, 2.0, -np.inf, np.inf]]], dtype=np.float32)
    for relu in (False, True):
        epilogue = _epilogue.batch_norm([0.5], [2.0], [-1.0], relu)
        fused = _epilogue.apply(out.copy(), epilogue)
        expected = reference_epilogue(out, epilogue)
        np.testing.assert_array_equal(fused, expected)
    relu_only = _epilogue.apply(out.copy(), _epilogue.Epilogue(relu=True))
    np.testing.assert_array_equal(relu_only, fastconv.relu_forward(out)[0])
    assert np.signbit(relu_only).sum() == 0  # no -0 left


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_epilogue_kernel_against_its_twin(dtype):
    rng = np.random.default_rng(9)
    for shape in [(1, 1, 1), (2, 3, 17), (3, 5, 1000), (1, 4, 2**18 + 3)]:
        out = rng.standard_normal(shape).astype(dtype)
        out.reshape(-1)[::37] = np.nan
        f = shape[1]
        epilogue = _epilogue.batch_norm(rng.standard_normal(f), rng.uniform(-2, 2, f),
                                        rng.standard_normal(f), True)
        np.testing.assert_array_equal(_epilogue.apply(out.copy(), epilogue),
                                      reference_epilogue(out, epilogue))


def test_which_layers_fuse():
    rng = np.random.default_rng(1)
    conv = Conv2d(3, 4, 3, rng=rng)
    training = Sequential([conv, BatchNorm2d(4), ReLU()])
    # a batch norm on batch statistics is not a fixed map: only the ReLU after it could
    # fuse, and it does not follow the conv
    assert training._conv_epilogue(0) is None
    frozen = Sequential([conv, BatchNorm2d(4), ReLU()])
    frozen.layers[1].trainable = False
    assert frozen._conv_epilogue(0)[0] == 3
    assert Sequential([conv, BatchNorm2d(5), ReLU()]).eval()._conv_epilogue(0) is None
    assert Sequential([conv, layers.LeakyReLU()])._conv_epilogue(0) is None
    assert Sequential([layers.ConvTranspose2d(3, 4, 3), ReLU()])._conv_epilogue(0) is None
    assert Sequential([conv, ReLU()], fuse=False).eval()._conv_epilogue(0)[0] == 2
    unfused = Sequential([conv, ReLU()], fuse=False).eval()
    calls = []
    alone = conv._infer_with
    conv._infer_with = lambda x, epilogue: (calls.append(epilogue), alone(x, epilogue))[1]
    unfused.infer(np.zeros((1, 3, 5, 5), np.float32))
    assert calls == [None]  # fuse=False runs the layers one by one: the conv with no epilogue


def test_training_mode_infer_equals_forward():
    """In training mode a batch norm uses (and updates) batch statistics: infer does exactly
    what forward does, running statistics included."""
    rng = np.random.default_rng(2)

    def net():
        r = np.random.default_rng(3)
        return Sequential([Conv2d(3, 4, 3, rng=r), BatchNorm2d(4), ReLU(), MaxPool2d(2)])

    a, b = net(), net()
    x = rng.standard_normal((4, 3, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(a.infer(x), b.forward(x))
    np.testing.assert_array_equal(a.layers[1].running_mean, b.layers[1].running_mean)
    np.testing.assert_array_equal(a.layers[1].running_var, b.layers[1].running_var)


def test_infer_keeps_nothing_for_backward():
    rng = np.random.default_rng(4)
    model = Sequential([Conv2d(3, 4, 3, rng=rng), BatchNorm2d(4), ReLU(), layers.Flatten(),
                        layers.Linear(4 * 4 * 4, 2, rng=rng)]).eval()
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    out = model.forward(x)
    model.infer(x[:1])  # a backward now must not mix this input with the forward's
    with pytest.raises(RuntimeError, match="before forward"):
        model.backward(np.ones_like(out))
    for layer in model.layers:
        assert layer._cache is None


def test_residual_net_infer_and_predict():
    """A small ResNet in evaluation mode: infer and predict_scores (in batches)
    agree with forward."""
    rng = np.random.default_rng(5)

    def bn(c):
        return _randomise_norm(BatchNorm2d(c), rng)

    body = Sequential([Conv2d(4, 4, 3, padding=1, bias=False, rng=rng), bn(4), ReLU(True),
                       Conv2d(4, 4, 3, padding=1, bias=False, rng=rng), bn(4)])
    down = Sequential([Conv2d(4, 6, 3, stride=2, padding=1, bias=False, rng=rng), bn(6), ReLU(),
                       Conv2d(6, 6, 3, padding=1, bias=False, rng=rng), bn(6)])
    model = Sequential([Conv2d(3, 4, 3, padding=1, bias=False, rng=rng), bn(4), ReLU(True),
                        MaxPool2d(2), Residual(body), ReLU(True),
                        Residual(down, Sequential([Conv2d(4, 6, 1, stride=2, bias=False, rng=rng),
                                                   bn(6)])),
                        ReLU(True), layers.GlobalAvgPool2d(), layers.Flatten(),
                        layers.Linear(6, 3, rng=rng)])
    x = rng.standard_normal((3, 3, 16, 16)).astype(np.float32)
    model.eval()
    expected = model.forward(x)
    np.testing.assert_allclose(model.infer(x), expected, rtol=1e-5, atol=1e-5)
    model.train()
    np.testing.assert_allclose(predict_scores(model, x, batch_size=2), expected,
                               rtol=1e-5, atol=1e-5)
    assert model.training  # predict_scores restored the mode


def test_infer_rejects_bad_input_as_forward_does():
    model = Sequential([Conv2d(3, 4, 3), BatchNorm2d(4), ReLU()]).eval()
    for bad in (np.zeros((2, 5, 6, 6), np.float32), np.zeros((2, 3, 6, 6), np.float64),
                np.zeros((3, 6, 6), np.float32), [[1.0]]):
        with pytest.raises((ValueError, TypeError)) as forward_error:
            model.forward(bad)
        with pytest.raises(type(forward_error.value), match="x"):
            model.infer(bad)


def test_conv_inference_function_matches_forward_then_ops():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 3, 7, 7)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    out, _ = fastconv.conv2d_forward(x, w, b, 1, 1)
    relu = conv_inference(2, x, w, b, 1, 1, epilogue=_epilogue.Epilogue(relu=True))
    np.testing.assert_array_equal(relu, fastconv.relu_forward(out)[0])
    plain = conv_inference(2, x, w, b, 1, 1)
    np.testing.assert_array_equal(plain, out)


def test_non_finite_winograd_result_is_recomputed_with_the_epilogue():
    """Under "auto" a Winograd output that came out non-finite (an infinity in x) is computed
    again by the direct method, epilogue included: the fused result equals the layers'."""
    from fastconv import planner

    rng = np.random.default_rng(10)
    conv = Conv2d(32, 32, 3, padding=1, rng=rng)
    x = rng.standard_normal((4, 32, 24, 24)).astype(np.float32)
    _, cache = fastconv.conv2d_forward(x, conv.params["weight"], conv.params["bias"], 1, 1)
    assert planner.choose(cache.window, x.dtype, "auto", "forward").NAME.startswith("winograd")
    x[1, 3, 5, 7] = np.inf
    model = Sequential([conv, _randomise_norm(BatchNorm2d(32), rng), ReLU()]).eval()
    got = _check_infer(model, x)
    assert np.isnan(got).sum() == np.isnan(model.forward(x)).sum()


def test_conv_inference_rejects_a_bad_epilogue():
    x = np.zeros((1, 2, 5, 5), np.float32)
    w = np.zeros((3, 2, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"epilogue.mean .*shape \(3,\)"):
        conv_inference(2, x, w, epilogue=_epilogue.batch_norm(np.zeros(2), np.ones(2), np.zeros(2), True))
    with pytest.raises(ValueError, match="epilogue.scale"):
        conv_inference(2, x, w, epilogue=_epilogue.Epilogue(np.zeros(3), np.ones(4), np.zeros(3)))
    with pytest.raises(TypeError, match="epilogue"):
        conv_inference(2, x, w, epilogue=(None, None, None, True))


# ---- Winograd weights kept between inference calls (algorithms/_winograd.py) ----------------

WINOGRAD_LAYERS = [  # (algorithm, stride, x shape)
    ("winograd-2x2", 1, (1, 6, 9, 7)),
    ("winograd-4x4", 1, (2, 5, 11, 10)),
    ("winograd-s2", 2, (1, 4, 13, 9)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("algorithm, stride, shape", WINOGRAD_LAYERS)
def test_kept_winograd_weights_follow_every_change_of_the_weights(algorithm, stride, shape, dtype):
    """infer keeps the transformed weights; each later infer gives what the weights as they
    are then give (bit for bit what a fresh transform gives, and forward's result): after an
    in-place change, a sign of zero, an optimiser-like update or load_state_dict, never the
    transform of the old ones."""
    from fastconv.algorithms import _winograd

    def check(model, x):
        got = _check_infer(model, x)                 # with what is kept, against forward
        _winograd.forget_kept_weights()
        np.testing.assert_array_equal(model.infer(x), got)   # against a fresh transform
        return got

    rng = np.random.default_rng(7)
    _winograd.forget_kept_weights()
    conv = Conv2d(shape[1], 7, 3, stride=stride, padding=1, algorithm=algorithm, dtype=dtype, rng=rng)
    norm = _randomise_norm(BatchNorm2d(7, dtype=dtype), rng)
    for model in (Sequential([conv, norm, ReLU()]).eval(), conv):
        x = rng.standard_normal(shape).astype(dtype)
        weight = conv.params["weight"]
        first = check(model, x)
        assert any(entry[0]() is weight for entry in _winograd._KEPT.values())
        np.testing.assert_array_equal(model.infer(x), first)            # served from the entry
        weight[2, 1, 0, 2] += 0.5                                        # in place
        check(model, x)
        weight[0, 0, 1, 1] = 0.0
        model.infer(x)
        weight[0, 0, 1, 1] = -0.0                                        # equal, not the same bits
        check(model, x)
        weight -= 0.01 * rng.standard_normal(weight.shape).astype(dtype)   # an SGD step
        check(model, x)
        conv.load_state_dict({"weight": rng.standard_normal(weight.shape).astype(dtype)},
                             strict=False)                               # copied into weight
        assert conv.params["weight"] is weight
        check(model, x)


def test_kept_winograd_weights_are_bounded_and_go_with_their_weights(monkeypatch):
    import gc

    from fastconv.algorithms import _winograd

    _winograd.forget_kept_weights()
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 8, 10, 10)).astype(np.float32)
    convs = [Conv2d(8, 8, 3, padding=1, algorithm="winograd-4x4", rng=rng) for _ in range(4)]
    one = 8 * 8 * 9 * 4 + 36 * 8 * 8 * 4  # a copy of the weights and their transform
    monkeypatch.setattr(fastconv._tuning, "KEPT_WEIGHTS_BYTES", 2 * one)
    outputs = [conv.infer(x) for conv in convs]
    assert len(_winograd._KEPT) == 2 and _winograd._kept_bytes() <= 2 * one  # the last two
    kept = {id(entry[0]()) for entry in _winograd._KEPT.values()}
    assert kept == {id(convs[2].params["weight"]), id(convs[3].params["weight"])}
    for conv, out in zip(convs, outputs):                    # evicted ones are transformed again
        np.testing.assert_array_equal(conv.infer(x), out)
        np.testing.assert_array_equal(out, conv.forward(x))
    monkeypatch.setattr(fastconv._tuning, "KEPT_WEIGHTS_BYTES", one - 1)  # too big to keep
    _winograd.forget_kept_weights()
    np.testing.assert_array_equal(convs[0].infer(x), outputs[0])
    assert not _winograd._KEPT
    monkeypatch.setattr(fastconv._tuning, "KEPT_WEIGHTS_BYTES", 64 * 2**20)
    convs[1].infer(x)
    assert len(_winograd._KEPT) == 1
    del convs, outputs
    gc.collect()
    assert not _winograd._KEPT                               # the weights' end drops the entry


def test_kept_winograd_weights_from_threads():
    """Layers inferring at once from Python threads (as under Dask) each get their own
    weights' result."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(11)
    x = rng.standard_normal((1, 6, 12, 12)).astype(np.float32)
    convs = [Conv2d(6, 6, 3, padding=1, algorithm=a, rng=rng)
             for a in ("winograd-2x2", "winograd-4x4") * 3]
    expected = [conv.forward(x) for conv in convs]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(5):
            results = list(pool.map(lambda conv: conv.infer(x), convs))
            for got, want in zip(results, expected):
                np.testing.assert_array_equal(got, want)
