"""The CS231n ConvolutionalNetworks notebook, cell by cell, on fastconv's drop-in package.

    python examples/cs231n_notebook.py                          # synthetic CIFAR-shaped data
    python examples/cs231n_notebook.py --cifar cs231n/datasets/cifar-10-batches-py
    python examples/cs231n_notebook.py --quick                  # smaller sizes, a few seconds

Every import is the course's with ``cs231n.`` changed to ``fastconv.compat.cs231n.``. The
cells run in the notebook's order: conv and max-pool forward against the notebook's
expected outputs, their numerical gradient checks, fast against naive, the sandwich
layers, the three-layer convnet's initial loss, gradient check and overfitting of 100
samples, spatial batch norm and group norm, and the final training cell (one epoch). Each
check prints its value and the bound the notebook gives; the script exits non-zero if one
is missed. Without --cifar the data are random images with random labels, shaped and
scaled as mean-subtracted CIFAR-10: the convnet must then memorise its 100 samples, and the
final cell only shows the speed (nothing can be learnt from noise).
"""
import argparse
import math
import sys
import time

import numpy as np

from fastconv.compat.cs231n.classifiers.cnn import ThreeLayerConvNet
from fastconv.compat.cs231n.data_utils import get_CIFAR10_data
from fastconv.compat.cs231n.fast_layers import (conv_backward_fast, conv_forward_fast, max_pool_backward_fast,
                                                max_pool_forward_fast)
from fastconv.compat.cs231n.gradient_check import eval_numerical_gradient, eval_numerical_gradient_array
from fastconv.compat.cs231n.layer_utils import (conv_relu_backward, conv_relu_forward, conv_relu_pool_backward,
                                                conv_relu_pool_forward)
from fastconv.compat.cs231n.layers import (conv_backward_naive, conv_forward_naive, max_pool_backward_naive,
                                           max_pool_forward_naive, spatial_batchnorm_backward,
                                           spatial_batchnorm_forward, spatial_groupnorm_backward,
                                           spatial_groupnorm_forward)
from fastconv.compat.cs231n.solver import Solver

# The notebook's expected outputs (conv_forward_naive on linspace inputs, stride 2, pad 1;
# 2x2 max pooling of a linspace input), printed to 8 digits: matching them to "around 1e-8".
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


def rel_error(x, y):
    """The notebook's relative error: max |x - y| / max(1e-8, |x| + |y|)."""
    return np.max(np.abs(x - y) / (np.maximum(1e-8, np.abs(x) + np.abs(y))))


class Checks:
    """Collects (name, value, bound) and prints each as it comes."""

    def __init__(self, quiet=False):
        self.results, self.quiet = {}, quiet

    def below(self, name, value, bound):
        self.results[name] = (float(value), bound, bool(value < bound))
        if not self.quiet:
            print(f"  {name}: {value:.3e} (bound {bound:.0e}){'' if value < bound else '  <-- MISSED'}")

    def at_least(self, name, value, bound):
        self.results[name] = (float(value), bound, bool(value >= bound))
        if not self.quiet:
            print(f"  {name}: {value:.4f} (needs >= {bound}){'' if value >= bound else '  <-- MISSED'}")

    def say(self, text):
        if not self.quiet:
            print(text)

    @property
    def failed(self):
        return [name for name, (_, _, passed) in self.results.items() if not passed]


def synthetic_cifar(num_training, num_validation, num_test, seed=0):
    """Random images shaped and scaled as get_CIFAR10_data's (mean-subtracted pixels, std ~64)."""
    rng = np.random.default_rng(seed)
    data = {}
    for split, count in (("train", num_training), ("val", num_validation), ("test", num_test)):
        data[f"X_{split}"] = rng.normal(0.0, 64.0, (count, 3, 32, 32))
        data[f"y_{split}"] = rng.integers(0, 10, count)
    return data


def cell_conv_and_pool(checks, quick):
    checks.say("Convolution and max pooling: naive forward against the notebook's outputs, gradients")
    x_shape, w_shape = (2, 3, 4, 4), (3, 3, 4, 4)
    x = np.linspace(-0.1, 0.5, num=np.prod(x_shape)).reshape(x_shape)
    w = np.linspace(-0.2, 0.3, num=np.prod(w_shape)).reshape(w_shape)
    b = np.linspace(-0.1, 0.2, num=3)
    out, _ = conv_forward_naive(x, w, b, {"stride": 2, "pad": 1})
    checks.below("conv_forward_naive vs correct_out", rel_error(out, CONV_CORRECT_OUT), 1e-7)

    np.random.seed(231)
    x = np.random.randn(4, 3, 5, 5)
    w = np.random.randn(2, 3, 3, 3)
    b = np.random.randn(2,)
    dout = np.random.randn(4, 2, 5, 5)
    conv_param = {"stride": 1, "pad": 1}
    dx_num = eval_numerical_gradient_array(lambda x: conv_forward_naive(x, w, b, conv_param)[0], x, dout)
    dw_num = eval_numerical_gradient_array(lambda w: conv_forward_naive(x, w, b, conv_param)[0], w, dout)
    db_num = eval_numerical_gradient_array(lambda b: conv_forward_naive(x, w, b, conv_param)[0], b, dout)
    _, cache = conv_forward_naive(x, w, b, conv_param)
    dx, dw, db = conv_backward_naive(dout, cache)
    for name, got, want in (("dx", dx, dx_num), ("dw", dw, dw_num), ("db", db, db_num)):
        checks.below(f"conv_backward_naive {name}", rel_error(got, want), 1e-7)

    x_shape = (2, 3, 4, 4)
    x = np.linspace(-0.3, 0.4, num=np.prod(x_shape)).reshape(x_shape)
    out, _ = max_pool_forward_naive(x, {"pool_width": 2, "pool_height": 2, "stride": 2})
    checks.below("max_pool_forward_naive vs correct_out", rel_error(out, POOL_CORRECT_OUT), 1e-7)

    np.random.seed(231)
    x = np.random.randn(3, 2, 8, 8)
    dout = np.random.randn(3, 2, 4, 4)
    pool_param = {"pool_height": 2, "pool_width": 2, "stride": 2}
    dx_num = eval_numerical_gradient_array(lambda x: max_pool_forward_naive(x, pool_param)[0], x, dout)
    _, cache = max_pool_forward_naive(x, pool_param)
    checks.below("max_pool_backward_naive dx", rel_error(max_pool_backward_naive(dout, cache), dx_num), 1e-10)

    checks.say("Fast layers against naive")
    np.random.seed(231)
    batch = 10 if quick else 100
    x = np.random.randn(batch, 3, 31, 31)
    w = np.random.randn(25, 3, 3, 3)
    b = np.random.randn(25,)
    dout = np.random.randn(batch, 25, 16, 16)
    conv_param = {"stride": 2, "pad": 1}
    t0 = time.perf_counter()
    out_naive, cache_naive = conv_forward_naive(x, w, b, conv_param)
    t1 = time.perf_counter()
    out_fast, cache_fast = conv_forward_fast(x, w, b, conv_param)
    t2 = time.perf_counter()
    checks.say(f"  conv forward: naive {t1 - t0:.4f} s, fast {t2 - t1:.4f} s")
    checks.below("conv_forward_fast vs naive", rel_error(out_naive, out_fast), 1e-9)
    naive_grads = conv_backward_naive(dout, cache_naive)
    fast_grads = conv_backward_fast(dout, cache_fast)
    for name, got, want in zip(("dx", "dw", "db"), fast_grads, naive_grads):
        checks.below(f"conv_backward_fast {name} vs naive", rel_error(got, want), 1e-9)
    x = np.random.randn(batch, 3, 32, 32)
    dout = np.random.randn(batch, 3, 16, 16)
    pool_param = {"pool_height": 2, "pool_width": 2, "stride": 2}
    out_naive, cache_naive = max_pool_forward_naive(x, pool_param)
    out_fast, cache_fast = max_pool_forward_fast(x, pool_param)
    checks.below("max_pool_forward_fast vs naive", rel_error(out_naive, out_fast), 1e-12)
    checks.below("max_pool_backward_fast vs naive",
                 rel_error(max_pool_backward_naive(dout, cache_naive), max_pool_backward_fast(dout, cache_fast)), 1e-12)


def cell_sandwiches(checks):
    checks.say("Sandwich layers: numerical gradient checks")
    np.random.seed(231)
    x = np.random.randn(2, 3, 16, 16)
    w = np.random.randn(3, 3, 3, 3)
    b = np.random.randn(3,)
    dout = np.random.randn(2, 3, 8, 8)
    conv_param = {"stride": 1, "pad": 1}
    pool_param = {"pool_height": 2, "pool_width": 2, "stride": 2}
    _, cache = conv_relu_pool_forward(x, w, b, conv_param, pool_param)
    grads = conv_relu_pool_backward(dout, cache)
    numerical = [eval_numerical_gradient_array(f, a, dout) for f, a in (
        (lambda x: conv_relu_pool_forward(x, w, b, conv_param, pool_param)[0], x),
        (lambda w: conv_relu_pool_forward(x, w, b, conv_param, pool_param)[0], w),
        (lambda b: conv_relu_pool_forward(x, w, b, conv_param, pool_param)[0], b))]
    # "around e-8 or less": h = 1e-5 rounding on entries near 1e-3 reaches a few 1e-8
    for name, got, want in zip(("dx", "dw", "db"), grads, numerical):
        checks.below(f"conv_relu_pool {name}", rel_error(want, got), 1e-6)
    np.random.seed(231)
    x = np.random.randn(2, 3, 8, 8)
    w = np.random.randn(3, 3, 3, 3)
    b = np.random.randn(3,)
    dout = np.random.randn(2, 3, 8, 8)
    _, cache = conv_relu_forward(x, w, b, conv_param)
    grads = conv_relu_backward(dout, cache)
    numerical = [eval_numerical_gradient_array(f, a, dout) for f, a in (
        (lambda x: conv_relu_forward(x, w, b, conv_param)[0], x),
        (lambda w: conv_relu_forward(x, w, b, conv_param)[0], w),
        (lambda b: conv_relu_forward(x, w, b, conv_param)[0], b))]
    for name, got, want in zip(("dx", "dw", "db"), grads, numerical):
        checks.below(f"conv_relu {name}", rel_error(want, got), 1e-6)


def cell_three_layer_net(checks, data, quick):
    checks.say("Three-layer convnet: initial loss, gradient check, overfitting 100 samples")
    np.random.seed(231)
    model = ThreeLayerConvNet()
    X = np.random.randn(50, 3, 32, 32)
    y = np.random.randint(10, size=50)
    loss, _ = model.loss(X, y)
    checks.below("initial loss - log(10), no regularisation", abs(loss - math.log(10)), 1e-2)
    model.reg = 0.5
    loss_reg, _ = model.loss(X, y)
    checks.below("loss(reg=0) - loss(reg=0.5), negative as regularisation adds", loss - loss_reg, 0.0)

    np.random.seed(231)
    X = np.random.randn(2, 3, 16, 16)
    y = np.random.randint(10, size=2)
    model = ThreeLayerConvNet(num_filters=3, filter_size=3, input_dim=(3, 16, 16), hidden_dim=7, dtype=np.float64)
    _, grads = model.loss(X, y)
    for name in sorted(grads):
        numerical = eval_numerical_gradient(lambda _: model.loss(X, y)[0], model.params[name], verbose=False, h=1e-6)
        # "correct implementations may have relative errors up to the order of e-2"
        checks.below(f"ThreeLayerConvNet {name} max relative error", rel_error(numerical, grads[name]), 5e-2)

    np.random.seed(231)
    small_data = {"X_train": data["X_train"][:100], "y_train": data["y_train"][:100],
                  "X_val": data["X_val"], "y_val": data["y_val"]}
    model = ThreeLayerConvNet(weight_scale=1e-2)
    solver = Solver(model, small_data, num_epochs=15, batch_size=50, update_rule="adam",
                    optim_config={"learning_rate": 1e-3}, verbose=not (checks.quiet or quick), print_every=1)
    solver.train()
    checks.at_least("overfitting 100 samples: best train accuracy", max(solver.train_acc_history), 0.9)
    checks.say(f"  final train accuracy {solver.check_accuracy(small_data['X_train'], small_data['y_train']):.3f}, "
               f"validation {solver.check_accuracy(small_data['X_val'], small_data['y_val']):.3f}")
    return solver


def cell_spatial_batchnorm(checks):
    checks.say("Spatial batch normalisation")
    np.random.seed(231)
    N, C, H, W = 2, 3, 4, 5
    x = 4 * np.random.randn(N, C, H, W) + 10
    out, _ = spatial_batchnorm_forward(x, np.ones(C), np.zeros(C), {"mode": "train"})
    checks.below("train-time means (should be ~0)", np.max(np.abs(out.mean(axis=(0, 2, 3)))), 1e-12)
    checks.below("train-time stds - 1", np.max(np.abs(out.std(axis=(0, 2, 3)) - 1)), 1e-5)
    gamma, beta = np.asarray([3, 4, 5]), np.asarray([6, 7, 8])
    out, _ = spatial_batchnorm_forward(x, gamma, beta, {"mode": "train"})
    checks.below("train-time means - beta", np.max(np.abs(out.mean(axis=(0, 2, 3)) - beta)), 1e-12)
    checks.below("train-time stds - gamma", np.max(np.abs(out.std(axis=(0, 2, 3)) - gamma)), 1e-4)

    np.random.seed(231)
    N, C, H, W = 10, 4, 11, 12
    bn_param = {"mode": "train"}
    gamma, beta = np.ones(C), np.zeros(C)
    for _ in range(50):
        x = 2.3 * np.random.randn(N, C, H, W) + 13
        spatial_batchnorm_forward(x, gamma, beta, bn_param)
    bn_param["mode"] = "test"
    x = 2.3 * np.random.randn(N, C, H, W) + 13
    a_norm, _ = spatial_batchnorm_forward(x, gamma, beta, bn_param)
    # "close to zero and one, but noisier than training-time"
    checks.below("test-time means (should be ~0)", np.max(np.abs(a_norm.mean(axis=(0, 2, 3)))), 0.2)
    checks.below("test-time stds - 1", np.max(np.abs(a_norm.std(axis=(0, 2, 3)) - 1)), 0.1)

    np.random.seed(231)
    N, C, H, W = 2, 3, 4, 5
    x = 5 * np.random.randn(N, C, H, W) + 12
    gamma = np.random.randn(C)
    beta = np.random.randn(C)
    dout = np.random.randn(N, C, H, W)
    bn_param = {"mode": "train"}
    fx = lambda x: spatial_batchnorm_forward(x, gamma, beta, bn_param)[0]  # noqa: E731
    fg = lambda a: spatial_batchnorm_forward(x, gamma, beta, bn_param)[0]  # noqa: E731
    fb = lambda b: spatial_batchnorm_forward(x, gamma, beta, bn_param)[0]  # noqa: E731
    numerical = [eval_numerical_gradient_array(fx, x, dout), eval_numerical_gradient_array(fg, gamma, dout),
                 eval_numerical_gradient_array(fb, beta, dout)]
    _, cache = spatial_batchnorm_forward(x, gamma, beta, bn_param)
    # "errors of magnitudes between 1e-12 and 1e-06"
    for name, got, want in zip(("dx", "dgamma", "dbeta"), spatial_batchnorm_backward(dout, cache), numerical):
        checks.below(f"spatial batchnorm {name}", rel_error(want, got), 1e-6)


def cell_spatial_groupnorm(checks):
    checks.say("Spatial group normalisation")
    np.random.seed(231)
    N, C, H, W = 2, 6, 4, 5
    G = 2
    x = 4 * np.random.randn(N, C, H, W) + 10
    out, _ = spatial_groupnorm_forward(x, np.ones((1, C, 1, 1)), np.zeros((1, C, 1, 1)), G, {"mode": "train"})
    out_g = out.reshape((N * G, -1))
    checks.below("group means (should be ~0)", np.max(np.abs(out_g.mean(axis=1))), 1e-12)
    checks.below("group stds - 1", np.max(np.abs(out_g.std(axis=1) - 1)), 1e-5)

    np.random.seed(231)
    x = 5 * np.random.randn(N, C, H, W) + 12
    gamma = np.random.randn(1, C, 1, 1)
    beta = np.random.randn(1, C, 1, 1)
    dout = np.random.randn(N, C, H, W)
    gn_param = {}
    fx = lambda x: spatial_groupnorm_forward(x, gamma, beta, G, gn_param)[0]  # noqa: E731
    fg = lambda a: spatial_groupnorm_forward(x, gamma, beta, G, gn_param)[0]  # noqa: E731
    fb = lambda b: spatial_groupnorm_forward(x, gamma, beta, G, gn_param)[0]  # noqa: E731
    numerical = [eval_numerical_gradient_array(fx, x, dout), eval_numerical_gradient_array(fg, gamma, dout),
                 eval_numerical_gradient_array(fb, beta, dout)]
    _, cache = spatial_groupnorm_forward(x, gamma, beta, G, gn_param)
    # "errors of magnitudes between 1e-12 and 1e-07"
    for name, got, want in zip(("dx", "dgamma", "dbeta"), spatial_groupnorm_backward(dout, cache), numerical):
        checks.below(f"spatial groupnorm {name}", rel_error(want, got), 1e-7)


def cell_train(checks, data, quick, real_data):
    checks.say("Training the network for one epoch")
    model = ThreeLayerConvNet(weight_scale=0.001, hidden_dim=500, reg=0.001)
    solver = Solver(model, data, num_epochs=1, batch_size=50, update_rule="adam", optim_config={"learning_rate": 1e-3},
                    verbose=not checks.quiet, print_every=20, num_train_samples=200 if quick else 1000)
    started = time.perf_counter()
    solver.train()
    seconds = time.perf_counter() - started
    steps = len(solver.loss_history)
    checks.say(f"  {steps} steps in {seconds:.1f} s ({seconds / steps * 1e3:.1f} ms per step of batch 50, "
               "accuracy checks included)")
    if real_data:
        # "you should achieve greater than 40% accuracy on the training set"
        checks.at_least("train accuracy after one epoch", solver.check_accuracy(data["X_train"], data["y_train"]), 0.4)
    return solver, seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cifar", help="the cifar-10-batches-py folder (default: synthetic data)")
    parser.add_argument("--quick", action="store_true", help="smaller batches and data: a few seconds")
    parser.add_argument("--quiet", action="store_true", help="print only failures")
    args = parser.parse_args(argv)
    checks = Checks(args.quiet)
    if args.cifar:
        data = get_CIFAR10_data(cifar10_dir=args.cifar, num_training=4900 if args.quick else 49000)
    else:
        data = synthetic_cifar(250 if args.quick else 49000, 50 if args.quick else 1000, 50 if args.quick else 1000)
    for key, value in data.items():
        checks.say(f"{key}: {value.shape}")
    cell_conv_and_pool(checks, args.quick)
    cell_sandwiches(checks)
    overfit = cell_three_layer_net(checks, data, args.quick)
    cell_spatial_batchnorm(checks)
    cell_spatial_groupnorm(checks)
    trained, seconds = cell_train(checks, data, args.quick, bool(args.cifar))
    if checks.failed:
        print("missed: " + ", ".join(checks.failed))
    return {"checks": checks.results, "failed": checks.failed, "overfit_solver": overfit,
            "train_solver": trained, "train_seconds": seconds}


if __name__ == "__main__":
    results = main()
    sys.exit(1 if results["failed"] else 0)
