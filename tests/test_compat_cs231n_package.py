"""fastconv.compat.cs231n as the course's whole package: every module and name, the notebooks'
checks with their published expected values, the models, Solver, optim rules and bad input.

Expected values come from two kinds of source:
- constants the course notebooks print as the answer (conv_forward_naive's and
  max_pool_forward_naive's ``correct_out``, the optim rules' ``expected_next_w`` and state);
- outputs the notebooks print after seeding NumPy (np.random.seed(231)), which depend only on
  the seed and the course's definitions: the fully connected nets' initial losses and the
  batch norm test-time statistics, as printed in independently run copies of the notebooks
  (the same digits in two or more of them where several were found).
"""
import importlib
import pickle

import numpy as np
import pytest

from fastconv.compat import cs231n
from fastconv.compat.cs231n import gradient_check, layers, optim
from fastconv.compat.cs231n.classifiers.cnn import ThreeLayerConvNet
from fastconv.compat.cs231n.classifiers.fc_net import FullyConnectedNet, TwoLayerNet
from fastconv.compat.cs231n.gradient_check import eval_numerical_gradient, eval_numerical_gradient_array
from fastconv.compat.cs231n.layers import (batchnorm_backward, batchnorm_backward_alt, batchnorm_forward,
                                           dropout_backward, dropout_forward, layernorm_backward, layernorm_forward,
                                           spatial_batchnorm_backward, spatial_batchnorm_forward,
                                           spatial_groupnorm_backward, spatial_groupnorm_forward)
from fastconv.compat.cs231n.solver import Solver


def rel_error(x, y):
    return np.max(np.abs(x - y) / (np.maximum(1e-8, np.abs(x) + np.abs(y))))


COURSE_NAMES = {
    "layers": ["affine_forward", "affine_backward", "relu_forward", "relu_backward", "batchnorm_forward",
               "batchnorm_backward", "batchnorm_backward_alt", "layernorm_forward", "layernorm_backward",
               "dropout_forward", "dropout_backward", "conv_forward_naive", "conv_backward_naive",
               "max_pool_forward_naive", "max_pool_backward_naive", "spatial_batchnorm_forward",
               "spatial_batchnorm_backward", "spatial_groupnorm_forward", "spatial_groupnorm_backward",
               "svm_loss", "softmax_loss"],
    "fast_layers": ["conv_forward_fast", "conv_backward_fast", "conv_forward_im2col", "conv_backward_im2col",
                    "conv_forward_strides", "conv_backward_strides", "max_pool_forward_fast",
                    "max_pool_backward_fast", "max_pool_forward_reshape", "max_pool_backward_reshape",
                    "max_pool_forward_im2col", "max_pool_backward_im2col"],
    "layer_utils": ["affine_relu_forward", "affine_relu_backward", "conv_relu_forward", "conv_relu_backward",
                    "conv_bn_relu_forward", "conv_bn_relu_backward", "conv_relu_pool_forward",
                    "conv_relu_pool_backward"],
    "optim": ["sgd", "sgd_momentum", "rmsprop", "adam"],
    "gradient_check": ["eval_numerical_gradient", "eval_numerical_gradient_array", "eval_numerical_gradient_blobs",
                       "eval_numerical_gradient_net", "grad_check_sparse"],
    "solver": ["Solver"],
    "classifiers.cnn": ["ThreeLayerConvNet"],
    "classifiers.fc_net": ["FullyConnectedNet", "TwoLayerNet"],
    "data_utils": ["load_CIFAR10", "get_CIFAR10_data", "load_CIFAR_batch"],
}


@pytest.mark.parametrize("module", sorted(COURSE_NAMES))
def test_every_course_name_exists_under_its_module(module):
    imported = importlib.import_module(f"fastconv.compat.cs231n.{module}")
    for name in COURSE_NAMES[module]:
        assert callable(getattr(imported, name)) and getattr(imported, name).__doc__, name
    namespace = {}
    exec(f"from fastconv.compat.cs231n.{module} import *", namespace)
    assert set(COURSE_NAMES[module]) <= set(namespace)


def test_package_star_import_unchanged_and_modules_reachable():
    assert len(cs231n.__all__) == 12
    assert cs231n.layers.conv_forward_naive is cs231n.conv_forward_naive
    assert cs231n.fast_layers.conv_forward_fast is cs231n.conv_forward_fast
    assert cs231n.layer_utils.conv_relu_pool_forward is cs231n.conv_relu_pool_forward


# --- the ConvolutionalNetworks notebook's published expected outputs ---------------------------

CONV_CORRECT_OUT = np.array([
    [[[-0.08759809, -0.10987781], [-0.18387192, -0.2109216]],
     [[0.21027089, 0.21661097], [0.22847626, 0.23004637]],
     [[0.50813986, 0.54309974], [0.64082444, 0.67101435]]],
    [[[-0.98053589, -1.03143541], [-1.19128892, -1.24695841]],
     [[0.69108355, 0.66880383], [0.59480972, 0.56776003]],
     [[2.36270298, 2.36904306], [2.38090835, 2.38247847]]]])
POOL_CORRECT_OUT = np.array([
    [[[-0.26315789, -0.24842105], [-0.20421053, -0.18947368]],
     [[-0.14526316, -0.13052632], [-0.08631579, -0.07157895]],
     [[-0.02736842, -0.01263158], [0.03157895, 0.04631579]]],
    [[[0.09052632, 0.10526316], [0.14947368, 0.16421053]],
     [[0.20842105, 0.22315789], [0.26736842, 0.28210526]],
     [[0.32631579, 0.34105263], [0.38526316, 0.4]]]])


@pytest.mark.parametrize("forward", ["conv_forward_naive", "conv_forward_fast", "conv_forward_im2col",
                                     "conv_forward_strides"])
def test_conv_forward_matches_the_notebooks_correct_out(forward):
    x = np.linspace(-0.1, 0.5, num=2 * 3 * 4 * 4).reshape(2, 3, 4, 4)
    w = np.linspace(-0.2, 0.3, num=3 * 3 * 4 * 4).reshape(3, 3, 4, 4)
    b = np.linspace(-0.1, 0.2, num=3)
    module = cs231n.layers if forward.endswith("naive") else cs231n.fast_layers
    out, _ = getattr(module, forward)(x, w, b, {"stride": 2, "pad": 1})
    # the notebook: "difference should be around e-8" (correct_out has 8 decimals)
    assert rel_error(out, CONV_CORRECT_OUT) < 5e-8


@pytest.mark.parametrize("forward", ["max_pool_forward_naive", "max_pool_forward_fast", "max_pool_forward_reshape",
                                     "max_pool_forward_im2col"])
def test_max_pool_forward_matches_the_notebooks_correct_out(forward):
    x = np.linspace(-0.3, 0.4, num=2 * 3 * 4 * 4).reshape(2, 3, 4, 4)
    module = cs231n.layers if forward.endswith("naive") else cs231n.fast_layers
    out, _ = getattr(module, forward)(x, {"pool_width": 2, "pool_height": 2, "stride": 2})
    assert rel_error(out, POOL_CORRECT_OUT) < 5e-8


def test_fast_backwards_take_each_others_caches():
    np.random.seed(231)
    x, w, b = np.random.randn(3, 2, 7, 6), np.random.randn(4, 2, 3, 2), np.random.randn(4)
    conv_param = {"stride": 1, "pad": 1}
    out, cache = cs231n.fast_layers.conv_forward_im2col(x, w, b, conv_param)
    assert cache.algorithm == "im2col"
    dout = np.random.randn(*out.shape)
    expected = cs231n.layers.conv_backward_naive(dout, cs231n.layers.conv_forward_naive(x, w, b, conv_param)[1])
    for backward in ("conv_backward_im2col", "conv_backward_strides", "conv_backward_fast"):
        for got, want in zip(getattr(cs231n.fast_layers, backward)(dout, cache), expected):
            assert rel_error(got, want) < 1e-10


# --- optim: the FullyConnectedNets notebook's expected values ---------------------------------

def _optim_inputs():
    N, D = 4, 5
    w = np.linspace(-0.4, 0.6, num=N * D).reshape(N, D)
    dw = np.linspace(-0.6, 0.4, num=N * D).reshape(N, D)
    return w, dw, N * D


def test_sgd_momentum_matches_the_notebook():
    w, dw, n = _optim_inputs()
    v = np.linspace(0.6, 0.9, num=n).reshape(4, 5)
    v_before = v.copy()
    config = {"learning_rate": 1e-3, "velocity": v}
    next_w, _ = optim.sgd_momentum(w, dw, config=config)
    expected_next_w = np.asarray([
        [0.1406, 0.20738947, 0.27417895, 0.34096842, 0.40775789],
        [0.47454737, 0.54133684, 0.60812632, 0.67491579, 0.74170526],
        [0.80849474, 0.87528421, 0.94207368, 1.00886316, 1.07565263],
        [1.14244211, 1.20923158, 1.27602105, 1.34281053, 1.4096]])
    expected_velocity = np.asarray([
        [0.5406, 0.55475789, 0.56891579, 0.58307368, 0.59723158],
        [0.61138947, 0.62554737, 0.63970526, 0.65386316, 0.66802105],
        [0.68217895, 0.69633684, 0.71049474, 0.72465263, 0.73881053],
        [0.75296842, 0.76712632, 0.78128421, 0.79544211, 0.8096]])
    assert rel_error(next_w, expected_next_w) < 1e-8  # "around e-8 or less"
    assert rel_error(expected_velocity, config["velocity"]) < 1e-8
    np.testing.assert_array_equal(v, v_before)  # the caller's array is not written


def test_rmsprop_matches_the_notebook():
    w, dw, n = _optim_inputs()
    cache = np.linspace(0.6, 0.9, num=n).reshape(4, 5)
    config = {"learning_rate": 1e-2, "cache": cache}
    next_w, _ = optim.rmsprop(w, dw, config=config)
    expected_next_w = np.asarray([
        [-0.39223849, -0.34037513, -0.28849239, -0.23659121, -0.18467247],
        [-0.132737, -0.08078555, -0.02881884, 0.02316247, 0.07515774],
        [0.12716641, 0.17918792, 0.23122175, 0.28326742, 0.33532447],
        [0.38739248, 0.43947102, 0.49155973, 0.54365823, 0.59576619]])
    expected_cache = np.asarray([
        [0.5976, 0.6126277, 0.6277108, 0.64284931, 0.65804321],
        [0.67329252, 0.68859723, 0.70395734, 0.71937285, 0.73484377],
        [0.75037008, 0.7659518, 0.78158892, 0.79728144, 0.81302936],
        [0.82883269, 0.84469141, 0.86060554, 0.87657507, 0.8926]])
    assert rel_error(expected_next_w, next_w) < 1e-7  # "around e-7 or less"
    assert rel_error(expected_cache, config["cache"]) < 1e-7


def test_adam_matches_the_notebook():
    w, dw, n = _optim_inputs()
    m = np.linspace(0.6, 0.9, num=n).reshape(4, 5)
    v = np.linspace(0.7, 0.5, num=n).reshape(4, 5)
    config = {"learning_rate": 1e-2, "m": m, "v": v, "t": 5}
    next_w, _ = optim.adam(w, dw, config=config)
    expected_next_w = np.asarray([
        [-0.40094747, -0.34836187, -0.29577703, -0.24319299, -0.19060977],
        [-0.1380274, -0.08544591, -0.03286534, 0.01971428, 0.0722929],
        [0.1248705, 0.17744702, 0.23002243, 0.28259667, 0.33516969],
        [0.38774145, 0.44031188, 0.49288093, 0.54544852, 0.59801459]])
    expected_v = np.asarray([
        [0.69966, 0.68908382, 0.67851319, 0.66794809, 0.65738853],
        [0.64683452, 0.63628604, 0.6257431, 0.61520571, 0.60467385],
        [0.59414753, 0.58362676, 0.57311152, 0.56260183, 0.55209767],
        [0.54159906, 0.53110598, 0.52061845, 0.51013645, 0.49966]])
    expected_m = np.asarray([
        [0.48, 0.49947368, 0.51894737, 0.53842105, 0.55789474],
        [0.57736842, 0.59684211, 0.61631579, 0.63578947, 0.65526316],
        [0.67473684, 0.69421053, 0.71368421, 0.73315789, 0.75263158],
        [0.77210526, 0.79157895, 0.81105263, 0.83052632, 0.85]])
    assert rel_error(expected_next_w, next_w) < 2e-7  # "around e-7 or less"
    assert rel_error(expected_v, config["v"]) < 1e-7
    assert rel_error(expected_m, config["m"]) < 1e-7
    assert config["t"] == 6


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_optim_defaults_dtype_and_sgd(dtype):
    w, dw, _ = _optim_inputs()
    w, dw = w.astype(dtype), dw.astype(dtype)
    w_before = w.copy()
    next_w, config = optim.sgd(w, dw)
    assert config == {"learning_rate": 1e-2} and next_w.dtype == dtype
    np.testing.assert_allclose(next_w, w - 1e-2 * dw, rtol=1e-6)
    np.testing.assert_array_equal(w, w_before)
    for rule in (optim.sgd_momentum, optim.rmsprop, optim.adam):
        next_w, config = rule(w, dw)
        assert next_w.dtype == dtype and next_w.shape == w.shape
        assert all(value.dtype == dtype for value in config.values() if isinstance(value, np.ndarray))


@pytest.mark.parametrize("call, error, match", [
    (lambda w, dw: optim.sgd(w, dw[:2]), ValueError, r"dw must have w's shape \(4, 5\)"),
    (lambda w, dw: optim.sgd(w.tolist(), dw), TypeError, "w must be a numpy.ndarray"),
    (lambda w, dw: optim.sgd(w, dw, config=[("learning_rate", 1)]), TypeError, "config must be a dict"),
    (lambda w, dw: optim.sgd(w, dw, config={"learning_rate": -1}), ValueError, r"config\['learning_rate'\]"),
    (lambda w, dw: optim.sgd_momentum(w, dw, config={"momentum": 2}), ValueError, r"config\['momentum'\]"),
    (lambda w, dw: optim.adam(w, dw, config={"t": 1.5}), ValueError, r"config\['t'\] must be an int"),
    (lambda w, dw: optim.adam(w, dw, config={"m": np.zeros(3)}), ValueError, r"config\['m'\] must have w's shape"),
])
def test_optim_bad_input(call, error, match):
    w, dw, _ = _optim_inputs()
    with pytest.raises(error, match=match):
        call(w, dw)


# --- batch norm, layer norm, dropout: the BatchNormalization and Dropout notebooks' checks ------

def test_batchnorm_training_and_test_time_statistics():
    np.random.seed(231)
    N, D1, D2, D3 = 200, 50, 60, 3
    X = np.random.randn(N, D1)
    W1 = np.random.randn(D1, D2)
    W2 = np.random.randn(D2, D3)
    a = np.maximum(0, X.dot(W1)).dot(W2)
    a_norm, _ = batchnorm_forward(a, np.ones(D3), np.zeros(D3), {"mode": "train"})
    np.testing.assert_allclose(a_norm.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(a_norm.std(axis=0), 1, atol=1e-7)
    gamma, beta = np.asarray([1.0, 2.0, 3.0]), np.asarray([11.0, 12.0, 13.0])
    a_norm, _ = batchnorm_forward(a, gamma, beta, {"mode": "train"})
    np.testing.assert_allclose(a_norm.mean(axis=0), beta, atol=1e-12)
    np.testing.assert_allclose(a_norm.std(axis=0), gamma, rtol=1e-7)

    np.random.seed(231)
    W1 = np.random.randn(D1, D2)
    W2 = np.random.randn(D2, D3)
    bn_param = {"mode": "train"}
    for _ in range(50):
        X = np.random.randn(N, D1)
        batchnorm_forward(np.maximum(0, X.dot(W1)).dot(W2), np.ones(D3), np.zeros(D3), bn_param)
    bn_param["mode"] = "test"
    X = np.random.randn(N, D1)
    a_norm, _ = batchnorm_forward(np.maximum(0, X.dot(W1)).dot(W2), np.ones(D3), np.zeros(D3), bn_param)
    # as printed by the notebook after this seed
    np.testing.assert_allclose(a_norm.mean(axis=0), [-0.03927354, -0.04349152, -0.10452688], atol=1e-7)
    np.testing.assert_allclose(a_norm.std(axis=0), [1.01531428, 1.01238373, 0.97819988], atol=1e-7)


def test_batchnorm_and_layernorm_gradient_checks():
    np.random.seed(231)
    N, D = 4, 5
    x = 5 * np.random.randn(N, D) + 12
    gamma = np.random.randn(D)
    beta = np.random.randn(D)
    dout = np.random.randn(N, D)
    for forward, backward, param in ((batchnorm_forward, batchnorm_backward, {"mode": "train"}),
                                     (batchnorm_forward, batchnorm_backward_alt, {"mode": "train"}),
                                     (layernorm_forward, layernorm_backward, {})):
        dx_num = eval_numerical_gradient_array(lambda x: forward(x, gamma, beta, param)[0], x, dout)
        da_num = eval_numerical_gradient_array(lambda a: forward(x, a, beta, param)[0], gamma.copy(), dout)
        db_num = eval_numerical_gradient_array(lambda b: forward(x, gamma, b, param)[0], beta.copy(), dout)
        _, cache = forward(x, gamma, beta, param)
        dx, dgamma, dbeta = backward(dout, cache)
        # "between 1e-13 and 1e-8"
        assert rel_error(dx_num, dx) < 1e-8
        assert rel_error(da_num, dgamma) < 1e-8
        assert rel_error(db_num, dbeta) < 1e-8


def test_layernorm_normalises_rows_and_ignores_the_mode():
    np.random.seed(231)
    a = np.maximum(0, np.random.randn(4, 50).dot(np.random.randn(50, 60))).dot(np.random.randn(60, 3))
    a_norm, _ = layernorm_forward(a, np.full(3, 3.0), np.full(3, 5.0), {"mode": "train"})
    np.testing.assert_allclose(a_norm.mean(axis=1), 5, atol=1e-12)
    np.testing.assert_allclose(a_norm.std(axis=1), 3, rtol=1e-4)


def test_dropout_statistics_and_gradient():
    np.random.seed(231)
    x = np.random.randn(500, 500) + 10
    for p in (0.25, 0.4, 0.7):  # p: the probability of keeping a unit
        out, _ = dropout_forward(x, {"mode": "train", "p": p})
        out_test, _ = dropout_forward(x, {"mode": "test", "p": p})
        assert abs(out.mean() - x.mean()) < 0.05 * x.mean()
        assert abs((out == 0).mean() - (1 - p)) < 0.01
        assert out_test is x
    np.random.seed(231)
    x = np.random.randn(10, 10) + 10
    dout = np.random.randn(*x.shape)
    dropout_param = {"mode": "train", "p": 0.2, "seed": 123}
    out, cache = dropout_forward(x, dropout_param)
    dx = dropout_backward(dout, cache)
    dx_num = eval_numerical_gradient_array(lambda xx: dropout_forward(xx, dropout_param)[0], x, dout)
    assert rel_error(dx, dx_num) < 1e-10  # "around e-10 or less"
    again, _ = dropout_forward(x, dropout_param)
    np.testing.assert_array_equal(again, out)  # the seed repeats the mask
    assert dropout_forward(x.astype(np.float32), dropout_param)[0].dtype == np.float32


# --- spatial batch and group norm: the ConvolutionalNetworks notebook's checks ----------------

def test_spatial_batchnorm_train_and_test_time():
    np.random.seed(231)
    N, C, H, W = 2, 3, 4, 5
    x = 4 * np.random.randn(N, C, H, W) + 10
    out, _ = spatial_batchnorm_forward(x, np.ones(C), np.zeros(C), {"mode": "train"})
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(out.std(axis=(0, 2, 3)), [0.99999962, 0.99999951, 0.9999996], atol=1e-8)
    out, _ = spatial_batchnorm_forward(x, np.asarray([3, 4, 5]), np.asarray([6, 7, 8]), {"mode": "train"})
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), [6, 7, 8], atol=1e-12)
    np.testing.assert_allclose(out.std(axis=(0, 2, 3)), [2.99999885, 3.99999804, 4.99999798], atol=1e-8)

    np.random.seed(231)
    N, C, H, W = 10, 4, 11, 12
    bn_param = {"mode": "train"}
    for _ in range(50):
        spatial_batchnorm_forward(2.3 * np.random.randn(N, C, H, W) + 13, np.ones(C), np.zeros(C), bn_param)
    bn_param["mode"] = "test"
    running_mean = bn_param["running_mean"].copy()
    a_norm, _ = spatial_batchnorm_forward(2.3 * np.random.randn(N, C, H, W) + 13, np.ones(C), np.zeros(C), bn_param)
    np.testing.assert_array_equal(bn_param["running_mean"], running_mean)  # test mode leaves them
    # as printed by the notebook after this seed
    np.testing.assert_allclose(a_norm.mean(axis=(0, 2, 3)), [-0.08034406, 0.07562881, 0.05716371, 0.04378383], atol=1e-7)
    np.testing.assert_allclose(a_norm.std(axis=(0, 2, 3)), [0.96718744, 1.0299714, 1.02887624, 1.00585577], atol=1e-7)


def test_spatial_batchnorm_gradient_check():
    np.random.seed(231)
    N, C, H, W = 2, 3, 4, 5
    x = 5 * np.random.randn(N, C, H, W) + 12
    gamma = np.random.randn(C)
    beta = np.random.randn(C)
    dout = np.random.randn(N, C, H, W)
    bn_param = {"mode": "train"}
    dx_num = eval_numerical_gradient_array(lambda x: spatial_batchnorm_forward(x, gamma, beta, bn_param)[0], x, dout)
    da_num = eval_numerical_gradient_array(lambda a: spatial_batchnorm_forward(x, gamma, beta, bn_param)[0], gamma, dout)
    db_num = eval_numerical_gradient_array(lambda b: spatial_batchnorm_forward(x, gamma, beta, bn_param)[0], beta, dout)
    _, cache = spatial_batchnorm_forward(x, gamma, beta, bn_param)
    dx, dgamma, dbeta = spatial_batchnorm_backward(dout, cache)
    # "between 1e-12 and 1e-06"
    assert rel_error(dx_num, dx) < 1e-6 and rel_error(da_num, dgamma) < 1e-6 and rel_error(db_num, dbeta) < 1e-6


@pytest.mark.parametrize("parameter_shape", [(1, 6, 1, 1), (6,)])
def test_spatial_groupnorm_checks(parameter_shape):
    np.random.seed(231)
    N, C, H, W = 2, 6, 4, 5
    G = 2
    x = 4 * np.random.randn(N, C, H, W) + 10
    out, _ = spatial_groupnorm_forward(x, np.ones(parameter_shape), np.zeros(parameter_shape), G, {"mode": "train"})
    out_g = out.reshape((N * G, -1))
    np.testing.assert_allclose(out_g.mean(axis=1), 0, atol=1e-12)
    # the notebook's printed stds after this seed
    np.testing.assert_allclose(out_g.std(axis=1), [0.99999963, 0.99999948, 0.99999973, 0.99999968], atol=1e-8)

    np.random.seed(231)
    x = 5 * np.random.randn(N, C, H, W) + 12
    gamma = np.random.randn(*parameter_shape)
    beta = np.random.randn(*parameter_shape)
    dout = np.random.randn(N, C, H, W)
    gn_param = {}
    def forward(_):  # reads x, gamma and beta, whichever is being perturbed
        return spatial_groupnorm_forward(x, gamma, beta, G, gn_param)[0]

    dx_num = eval_numerical_gradient_array(forward, x, dout)
    da_num = eval_numerical_gradient_array(forward, gamma, dout)
    db_num = eval_numerical_gradient_array(forward, beta, dout)
    _, cache = spatial_groupnorm_forward(x, gamma, beta, G, gn_param)
    dx, dgamma, dbeta = spatial_groupnorm_backward(dout, cache)
    assert dgamma.shape == parameter_shape and dbeta.shape == parameter_shape
    # "between 1e-12 and 1e-07"
    assert rel_error(dx_num, dx) < 1e-7 and rel_error(da_num, dgamma) < 1e-7 and rel_error(db_num, dbeta) < 1e-7


def test_conv_bn_relu_and_affine_relu_sandwich_gradients():
    np.random.seed(231)
    x, w, b = np.random.randn(2, 3, 5, 5), np.random.randn(3, 3, 3, 3), np.random.randn(3)
    gamma, beta = np.random.randn(3), np.random.randn(3)
    conv_param, bn_param = {"stride": 1, "pad": 1}, {"mode": "train"}
    utils = cs231n.layer_utils
    out, cache = utils.conv_bn_relu_forward(x, w, b, gamma, beta, conv_param, bn_param)
    dout = np.random.randn(*out.shape)
    grads = utils.conv_bn_relu_backward(dout, cache)
    for argument, grad in zip((x, w, b, gamma, beta), grads):
        numerical = eval_numerical_gradient_array(
            lambda _: utils.conv_bn_relu_forward(x, w, b, gamma, beta, conv_param, bn_param)[0], argument, dout)
        # the conv bias's gradient is zero (batch norm removes any per-channel shift): absolute
        assert np.linalg.norm(numerical - grad) <= 1e-7 * np.linalg.norm(numerical) + 1e-8
    x, w, b = np.random.randn(4, 2, 3), np.random.randn(6, 5), np.random.randn(5)
    out, cache = utils.affine_relu_forward(x, w, b)
    dout = np.random.randn(*out.shape)
    for argument, grad in zip((x, w, b), utils.affine_relu_backward(dout, cache)):
        numerical = eval_numerical_gradient_array(lambda _: utils.affine_relu_forward(x, w, b)[0], argument, dout)
        assert rel_error(numerical, grad) < 1e-8


# --- the models ------------------------------------------------------------------------------

def _fc_inputs():
    np.random.seed(231)
    N, D, C = 2, 15, 10
    return np.random.randn(N, D), np.random.randint(C, size=(N,))


@pytest.mark.parametrize("normalization, expected, bound", [
    (None, (2.3004790897684924, 7.052114776533016), 1e-6),
    # batch norm over N=2 samples is far from linear at h=1e-5: the notebook expects W errors
    # "between 1e-4 and 1e-10"
    ("batchnorm", (2.2611955101340957, 6.996533220108303), 1e-3),
])
def test_fully_connected_net_initial_losses_and_gradients(normalization, expected, bound):
    X, y = _fc_inputs()
    for reg, loss_expected in zip((0, 3.14), expected):
        model = FullyConnectedNet([20, 30], input_dim=15, num_classes=10, reg=reg, weight_scale=5e-2,
                                  dtype=np.float64, normalization=normalization)
        loss, grads = model.loss(X, y)
        assert abs(loss - loss_expected) < 1e-12  # the notebooks' printed initial losses
        assert set(grads) == set(model.params)
        for name in sorted(grads):
            numerical = eval_numerical_gradient(lambda _: model.loss(X, y)[0], model.params[name], verbose=False, h=1e-5)
            # the notebook: most errors e-7 or smaller, W2 up to e-5 (near-zero entries); as a norm:
            # (absolute for b1 under batch norm: its gradient is exactly zero)
            assert np.linalg.norm(numerical - grads[name]) <= bound * np.linalg.norm(numerical) + 1e-10, name


def test_fully_connected_net_with_dropout_and_layernorm():
    X, y = _fc_inputs()
    for keep, expected in ((1, 2.3004790897684924), (0.75, 2.302371489704412), (0.5, 2.3042759220785896)):
        model = FullyConnectedNet([20, 30], input_dim=15, num_classes=10, weight_scale=5e-2, dtype=np.float64,
                                  dropout_keep_ratio=keep, seed=123)
        loss, grads = model.loss(X, y)
        assert abs(loss - expected) < 1e-12  # as printed by an independent run of the Dropout notebook
        for name in ("W1", "b1", "W3"):
            numerical = eval_numerical_gradient(lambda _: model.loss(X, y)[0], model.params[name], verbose=False)
            assert np.linalg.norm(numerical - grads[name]) <= 1e-6 * max(np.linalg.norm(numerical), 1e-12)
    older = FullyConnectedNet([20, 30], input_dim=15, weight_scale=5e-2, dtype=np.float64, dropout=0.5, seed=123)
    assert older.use_dropout and older.dropout_param["p"] == 0.5
    model = FullyConnectedNet([20, 30], input_dim=15, num_classes=10, weight_scale=5e-2, dtype=np.float64,
                              normalization="layernorm")
    loss, grads = model.loss(X, y)
    assert {"gamma1", "beta1", "gamma2", "beta2"} <= set(grads)
    for name in ("W1", "gamma1", "beta2"):
        numerical = eval_numerical_gradient(lambda _: model.loss(X, y)[0], model.params[name], verbose=False)
        assert np.linalg.norm(numerical - grads[name]) <= 1e-6 * max(np.linalg.norm(numerical), 1e-12)
    scores = model.loss(X)
    assert scores.shape == (2, 10)


def test_float32_models_stay_float32():
    X, y = _fc_inputs()
    model = FullyConnectedNet([8], input_dim=15, normalization="batchnorm", dropout_keep_ratio=0.5)
    loss, grads = model.loss(X, y)
    assert all(g.dtype == np.float32 for g in grads.values()) and isinstance(loss, float)
    conv = ThreeLayerConvNet(input_dim=(3, 8, 8), num_filters=4, filter_size=3, hidden_dim=5)
    _, grads = conv.loss(np.random.randn(3, 3, 8, 8), np.array([1, 2, 3]))
    assert all(g.dtype == np.float32 for g in grads.values())
    assert conv.loss(np.random.randn(3, 3, 8, 8)).dtype == np.float32


def test_three_layer_convnet_initial_loss_and_gradient_check():
    np.random.seed(231)
    model = ThreeLayerConvNet()
    X = np.random.randn(50, 3, 32, 32)
    y = np.random.randint(10, size=50)
    loss, _ = model.loss(X, y)
    assert abs(loss - np.log(10)) < 1e-3  # "about log(C)"
    model.reg = 0.5
    assert model.loss(X, y)[0] > loss + 0.1  # "the loss should go up slightly"

    np.random.seed(231)
    X = np.random.randn(2, 3, 16, 16)
    y = np.random.randint(10, size=2)
    model = ThreeLayerConvNet(num_filters=3, filter_size=3, input_dim=(3, 16, 16), hidden_dim=7, dtype=np.float64)
    _, grads = model.loss(X, y)
    assert set(grads) == {"W1", "b1", "W2", "b2", "W3", "b3"}
    assert model.params["W2"].shape == (3 * 8 * 8, 7)
    for name in sorted(grads):
        numerical = eval_numerical_gradient(lambda _: model.loss(X, y)[0], model.params[name], verbose=False, h=1e-6)
        assert rel_error(numerical, grads[name]) < 5e-2  # the notebook: "up to the order of e-2"
        # entries near zero and a ReLU kink within h of a hidden unit dominate that; as a
        # whole the gradients agree better
        assert np.linalg.norm(numerical - grads[name]) <= 1e-3 * np.linalg.norm(numerical), name


def test_two_layer_net():
    np.random.seed(0)
    model = TwoLayerNet(input_dim=6, hidden_dim=4, num_classes=3, weight_scale=1e-1, reg=0.1)
    assert set(model.params) == {"W1", "b1", "W2", "b2"} and model.params["W1"].dtype == np.float64
    X, y = np.random.randn(5, 6), np.array([0, 1, 2, 1, 0])
    loss, grads = model.loss(X, y)
    numerical = eval_numerical_gradient(lambda _: model.loss(X, y)[0], model.params["W1"], verbose=False)
    assert rel_error(numerical, grads["W1"]) < 1e-7


@pytest.mark.parametrize("make, error, match", [
    (lambda: FullyConnectedNet([10], normalization="groupnorm"), ValueError, "normalization must be"),
    (lambda: FullyConnectedNet([10], dropout_keep_ratio=0), ValueError, "dropout_keep_ratio"),
    (lambda: FullyConnectedNet([10], dropout_keep_ratio=0.5, dropout=0.5), ValueError, "not both"),
    (lambda: FullyConnectedNet(10), TypeError, "hidden_dims must be a list"),
    (lambda: FullyConnectedNet([10], dtype=np.int32), TypeError, "dtype must be float32 or float64"),
    (lambda: ThreeLayerConvNet(input_dim=(3, 32)), ValueError, "input_dim must be a"),
    (lambda: ThreeLayerConvNet(input_dim=(3, 1, 1), filter_size=1), ValueError, "too small"),
    (lambda: ThreeLayerConvNet(reg=-1), ValueError, "reg must be a number >= 0"),
])
def test_model_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_model_bad_batch():
    model = ThreeLayerConvNet(input_dim=(3, 8, 8), num_filters=2, filter_size=3, hidden_dim=4)
    with pytest.raises(ValueError, match=r"X must have shape \(N, 3, 8, 8\)"):
        model.loss(np.zeros((2, 3, 8, 9)))
    with pytest.raises(ValueError, match="labels in y"):
        model.loss(np.zeros((2, 3, 8, 8)), np.array([0, 10]))


# --- Solver ----------------------------------------------------------------------------------

def _small_data(seed=0, count=40):
    rng = np.random.default_rng(seed)
    return {"X_train": rng.standard_normal((count, 3, 8, 8)), "y_train": rng.integers(0, 4, count),
            "X_val": rng.standard_normal((10, 3, 8, 8)), "y_val": rng.integers(0, 4, 10)}


def test_solver_trains_records_and_keeps_the_best_params(tmp_path, capsys):
    np.random.seed(0)
    model = ThreeLayerConvNet(input_dim=(3, 8, 8), num_filters=8, filter_size=3, hidden_dim=50, num_classes=4,
                              weight_scale=1e-1)
    solver = Solver(model, _small_data(), update_rule="adam", optim_config={"learning_rate": 1e-2}, lr_decay=0.9,
                    batch_size=10, num_epochs=5, print_every=2, checkpoint_name=str(tmp_path / "run"))
    solver.train()
    out = capsys.readouterr().out
    assert "(Iteration 1 / 20) loss:" in out and "(Epoch 5 / 5) train acc:" in out
    assert len(solver.loss_history) == 20
    assert len(solver.train_acc_history) == len(solver.val_acc_history) == 6  # first step, then every epoch
    assert solver.epoch == 5 and solver.best_val_acc == max(solver.val_acc_history)
    assert model.params is solver.best_params
    assert all(config["learning_rate"] == pytest.approx(1e-2 * 0.9**5) for config in solver.optim_configs.values())
    assert all(config["t"] == 20 for config in solver.optim_configs.values())
    assert max(solver.train_acc_history) >= 0.6  # 40 samples of 4 random classes, being memorised
    with open(tmp_path / "run_epoch_5.pkl", "rb") as handle:
        checkpoint = pickle.load(handle)
    assert checkpoint["epoch"] == 5 and checkpoint["update_rule"] is optim.adam
    assert checkpoint["loss_history"] == solver.loss_history and checkpoint["batch_size"] == 10
    assert set(checkpoint) == {"model", "update_rule", "lr_decay", "optim_config", "batch_size",
                               "num_train_samples", "num_val_samples", "epoch", "loss_history",
                               "train_acc_history", "val_acc_history"}
    assert isinstance(checkpoint["model"], ThreeLayerConvNet)
    assert (tmp_path / "run_epoch_0.pkl").exists()
    accuracy = solver.check_accuracy(_small_data()["X_train"], _small_data()["y_train"], num_samples=5, batch_size=2)
    assert 0 <= accuracy <= 1


def test_solver_takes_a_rule_function_and_is_reproducible():
    def run():
        np.random.seed(5)
        model = FullyConnectedNet([6], input_dim=3 * 8 * 8, num_classes=4, dtype=np.float64)
        solver = Solver(model, _small_data(), update_rule=optim.sgd_momentum, optim_config={"learning_rate": 1e-2},
                        batch_size=8, num_epochs=2, verbose=False)
        solver.train()
        return solver.loss_history
    assert run() == run()


@pytest.mark.parametrize("kwargs, error, match", [
    ({"update_rule": "adamw"}, ValueError, 'Invalid update_rule "adamw"'),
    ({"learning_rate": 1e-3}, ValueError, 'Unrecognized arguments "learning_rate"'),
    ({"batch_size": 0}, ValueError, "batch_size must be an int >= 1"),
    ({"update_rule": 3}, TypeError, "update_rule must be"),
    ({"optim_config": [1]}, TypeError, "optim_config must be a dict"),
])
def test_solver_bad_arguments(kwargs, error, match):
    model = FullyConnectedNet([6], input_dim=3 * 8 * 8, num_classes=4)
    with pytest.raises(error, match=match):
        Solver(model, _small_data(), **kwargs)


def test_solver_bad_data():
    model = FullyConnectedNet([6], input_dim=3 * 8 * 8, num_classes=4)
    data = _small_data()
    del data["y_val"]
    with pytest.raises(ValueError, match="data is missing the key 'y_val'"):
        Solver(model, data)
    data = _small_data()
    data["y_train"] = data["y_train"][:5]
    with pytest.raises(ValueError, match="one label per sample"):
        Solver(model, data)
    with pytest.raises(TypeError, match="model must have"):
        Solver(object(), _small_data())


# --- gradient_check --------------------------------------------------------------------------

def test_gradient_check_functions(capsys):
    x = np.array([[1.0, 2.0], [3.0, -1.0]])
    grad = eval_numerical_gradient(lambda v: np.sum(v ** 3), x, verbose=True)
    np.testing.assert_allclose(grad, 3 * x ** 2, rtol=1e-8)
    assert "(0, 0)" in capsys.readouterr().out
    df = np.array([[1.0, -1.0], [0.5, 2.0]])
    np.testing.assert_allclose(eval_numerical_gradient_array(lambda v: v * v, x, df), 2 * x * df, rtol=1e-8)
    gradient_check.grad_check_sparse(lambda v: np.sum(v ** 3), x, 3 * x ** 2, num_checks=3)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("numerical:") for line in lines)

    class Blob:
        def __init__(self, vals):
            self.vals, self.diffs = vals, np.ones_like(vals)

    inputs, output = (Blob(x.copy()),), Blob(np.zeros_like(x))

    def square(blob, out):
        out.vals[...] = blob.vals ** 2

    np.testing.assert_allclose(gradient_check.eval_numerical_gradient_blobs(square, inputs, output)[0], 2 * x, rtol=1e-8)
    with pytest.raises(TypeError, match="floating-point"):
        eval_numerical_gradient(np.sum, np.arange(3))
    readonly = x.copy()
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        eval_numerical_gradient_array(lambda v: v, readonly, df)


# --- bad input to the layers -----------------------------------------------------------------

X4 = np.random.default_rng(0).standard_normal((2, 3, 4, 4))


@pytest.mark.parametrize("call, error, match", [
    (lambda: batchnorm_forward(X4[:, :, 0, 0], np.ones(3), np.zeros(3), {}), ValueError, "bn_param is missing the key 'mode'"),
    (lambda: batchnorm_forward(X4[:, :, 0, 0], np.ones(3), np.zeros(3), {"mode": "eval"}), ValueError, "'train' or 'test'"),
    (lambda: batchnorm_forward(X4[:, :, 0, 0], np.ones(3), np.zeros(3), {"mode": "train", "momentun": 0.9}),
     ValueError, "unknown key 'momentun'"),
    (lambda: batchnorm_forward(X4[:, :, 0, 0], np.ones(3), np.zeros(3), "train"), TypeError, "bn_param must be a dict"),
    (lambda: batchnorm_forward(X4, np.ones(3), np.zeros(3), {"mode": "train"}), ValueError, "use spatial_batchnorm_forward"),
    (lambda: batchnorm_forward(X4[:, :, 0, 0], np.ones(4), np.zeros(4), {"mode": "train"}), ValueError, r"weight must have shape \(3,\)"),
    (lambda: batchnorm_forward(X4[:, :, 0, 0], np.ones(3), np.zeros(3), {"mode": "train", "momentum": 2}),
     ValueError, r"bn_param\['momentum'\]"),
    (lambda: batchnorm_forward(X4[:1, :, 0, 0], np.ones(3), np.zeros(3), {"mode": "train"}), ValueError,
     "more than one value per channel"),
    (lambda: spatial_batchnorm_forward(X4[0], np.ones(3), np.zeros(3), {"mode": "train"}), ValueError, r"\(N, C, H, W\)"),
    (lambda: layernorm_forward(X4[:, :, 0, 0], np.ones(2), np.zeros(2), {}), ValueError, r"gamma and beta must have shape \(D,\)"),
    (lambda: layernorm_forward(X4[:, :, 0, 0], np.ones(3), np.zeros(3), {"epsilon": 1}), ValueError, "unknown key 'epsilon'"),
    (lambda: spatial_groupnorm_forward(X4, np.ones(3), np.zeros(3), 2, {}), ValueError, r"num_groups \(2\) must divide"),
    (lambda: spatial_groupnorm_forward(X4, np.ones((3, 1)), np.zeros((3, 1)), 3, {}), ValueError, r"\(1, 3, 1, 1\)"),
    (lambda: dropout_forward(X4, {"mode": "train", "p": 0}), ValueError, "keep probability"),
    (lambda: dropout_forward(X4, {"mode": "train"}), ValueError, "missing the key 'p'"),
    (lambda: dropout_forward(X4.astype(int), {"mode": "train", "p": 0.5}), TypeError, "x must have dtype"),
    (lambda: layers.affine_forward(X4, np.ones((47, 2)), np.zeros(2)), ValueError, r"w must have shape \(D, M\) = \(48, M\)"),
    (lambda: layers.affine_forward(X4.tolist(), np.ones((48, 2)), np.zeros(2)), TypeError, "x must be a numpy.ndarray"),
    (lambda: layers.affine_backward(np.ones((2, 2)), (X4, 1, 2)), TypeError, "AffineCache"),
    (lambda: layers.relu_backward(np.ones((2, 3)), X4), ValueError, "forward output's shape"),
    (lambda: batchnorm_backward(X4, layers.dropout_forward(X4, {"mode": "test", "p": 1})[1]), TypeError,
     "cache must be the cache returned by batchnorm_forward"),
    (lambda: layers.softmax_loss(np.ones((2, 3)), np.array([0, 3])), ValueError, "labels in y"),
])
def test_layer_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_norm_parameters_follow_numpy_promotion_and_dout_dtype_is_converted():
    x32 = X4.astype(np.float32)
    out, cache = spatial_batchnorm_forward(x32, np.ones(3, np.float32), np.zeros(3, np.float32), {"mode": "train"})
    assert out.dtype == np.float32
    dx, dgamma, _ = spatial_batchnorm_backward(np.ones(X4.shape), cache)  # a float64 dout
    assert dx.dtype == np.float32 and dgamma.dtype == np.float32
    out, _ = spatial_batchnorm_forward(x32, np.ones(3), np.zeros(3), {"mode": "train"})  # float64 gamma
    assert out.dtype == np.float64
    out, _ = spatial_batchnorm_forward(X4, np.array([1, 2, 3]), np.array([0, 0, 1]), {"mode": "train"})  # ints
    assert out.dtype == np.float64
