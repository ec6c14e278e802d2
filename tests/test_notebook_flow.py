"""A CS231n assignment-2 style notebook flow, run against the drop-in.

The cells below follow the convolutional-networks notebook's sequence (naive conv and pool,
their gradient checks, naive vs fast, the sandwich layers), written fresh for this test. The
only change a course notebook needs is its import line::

    from fastconv.compat.cs231n import *

The numerical-gradient helpers stand in for the course's gradient-check utilities; the
expected forward outputs come from implementations independent of fastconv (SciPy's
correlate and NumPy's sliding_window_view). Run ``python tests/test_notebook_flow.py`` to
see the printed rel_error lines, as in the notebook.
"""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import correlate

from fastconv.compat.cs231n import *  # noqa: F401,F403  -- the notebook's one changed line
from fastconv.gradcheck import numerical_gradient_array as eval_numerical_gradient_array
from fastconv.gradcheck import rel_error


# Centred differences with the notebook's step h = 1e-5 lose about 1e-7 of relative precision
# on gradient entries near 1e-3 (rounding, not the kinks: the analytic gradients match PyTorch),
# so the sandwich checks, whose elementwise error is dominated by such entries, allow 1e-6.
SANDWICH_BOUND = 1e-6


def report(name, value, bound):
    print(f"{name}: {value:e}")
    assert value < bound, f"{name} = {value:e} is not below {bound:e}"


def independent_conv(x, w, b, stride, pad):
    """Cross-correlation by SciPy, one (image, filter) pair at a time."""
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.stack([
        np.stack([correlate(image, kernel, mode="valid")[0] + bias for kernel, bias in zip(w, b)])
        for image in padded
    ])
    return out[:, :, ::stride, ::stride]


def independent_max_pool(x, pool_height, pool_width, stride):
    windows = sliding_window_view(x, (pool_height, pool_width), axis=(2, 3))
    return windows[:, :, ::stride, ::stride].max(axis=(4, 5))


# --- cell: convolution, naive forward pass ----------------------------------------------------

def test_cell_conv_naive_forward():
    x_shape, w_shape = (2, 3, 4, 4), (3, 3, 4, 4)
    x = np.linspace(-0.1, 0.5, num=np.prod(x_shape)).reshape(x_shape)
    w = np.linspace(-0.2, 0.3, num=np.prod(w_shape)).reshape(w_shape)
    b = np.linspace(-0.1, 0.2, num=3)
    conv_param = {"stride": 2, "pad": 1}
    out, _ = conv_forward_naive(x, w, b, conv_param)
    correct_out = independent_conv(x, w, b, 2, 1)
    assert out.shape == correct_out.shape == (2, 3, 2, 2)
    report("Testing conv_forward_naive, difference", rel_error(out, correct_out), 1e-7)


# --- cell: convolution, naive backward pass ---------------------------------------------------

def test_cell_conv_naive_backward():
    np.random.seed(231)
    x = np.random.randn(4, 3, 5, 5)
    w = np.random.randn(2, 3, 3, 3)
    b = np.random.randn(2,)
    dout = np.random.randn(4, 2, 5, 5)
    conv_param = {"stride": 1, "pad": 1}

    dx_num = eval_numerical_gradient_array(lambda x: conv_forward_naive(x, w, b, conv_param)[0], x, dout)
    dw_num = eval_numerical_gradient_array(lambda w: conv_forward_naive(x, w, b, conv_param)[0], w, dout)
    db_num = eval_numerical_gradient_array(lambda b: conv_forward_naive(x, w, b, conv_param)[0], b, dout)

    out, cache = conv_forward_naive(x, w, b, conv_param)
    dx, dw, db = conv_backward_naive(dout, cache)
    report("Testing conv_backward_naive, dx error", rel_error(dx, dx_num), 1e-8)
    report("Testing conv_backward_naive, dw error", rel_error(dw, dw_num), 1e-8)
    report("Testing conv_backward_naive, db error", rel_error(db, db_num), 1e-8)


# --- cell: max pooling, naive forward and backward --------------------------------------------

def test_cell_max_pool_naive_forward():
    x_shape = (2, 3, 4, 4)
    x = np.linspace(-0.3, 0.4, num=np.prod(x_shape)).reshape(x_shape)
    pool_param = {"pool_width": 2, "pool_height": 2, "stride": 2}
    out, _ = max_pool_forward_naive(x, pool_param)
    correct_out = independent_max_pool(x, 2, 2, 2)
    assert out.shape == (2, 3, 2, 2)
    report("Testing max_pool_forward_naive, difference", rel_error(out, correct_out), 1e-7)


def test_cell_max_pool_naive_backward():
    np.random.seed(231)
    x = np.random.randn(3, 2, 8, 8)
    dout = np.random.randn(3, 2, 4, 4)
    pool_param = {"pool_height": 2, "pool_width": 2, "stride": 2}
    dx_num = eval_numerical_gradient_array(lambda x: max_pool_forward_naive(x, pool_param)[0], x, dout)
    out, cache = max_pool_forward_naive(x, pool_param)
    dx = max_pool_backward_naive(dout, cache)
    report("Testing max_pool_backward_naive, dx error", rel_error(dx, dx_num), 1e-8)


# --- cell: fast layers against naive ----------------------------------------------------------

def test_cell_conv_fast_vs_naive():
    np.random.seed(231)
    x = np.random.randn(20, 3, 31, 31)  # the notebook uses N=100; smaller keeps the naive side quick
    w = np.random.randn(25, 3, 3, 3)
    b = np.random.randn(25,)
    dout = np.random.randn(20, 25, 16, 16)
    conv_param = {"stride": 2, "pad": 1}

    out_naive, cache_naive = conv_forward_naive(x, w, b, conv_param)
    out_fast, cache_fast = conv_forward_fast(x, w, b, conv_param)
    report("Testing conv_forward_fast, difference", rel_error(out_naive, out_fast), 1e-9)

    dx_naive, dw_naive, db_naive = conv_backward_naive(dout, cache_naive)
    dx_fast, dw_fast, db_fast = conv_backward_fast(dout, cache_fast)
    report("Testing conv_backward_fast, dx difference", rel_error(dx_naive, dx_fast), 1e-9)
    report("Testing conv_backward_fast, dw difference", rel_error(dw_naive, dw_fast), 1e-9)
    report("Testing conv_backward_fast, db difference", rel_error(db_naive, db_fast), 1e-9)


def test_cell_pool_fast_vs_naive():
    np.random.seed(231)
    x = np.random.randn(20, 3, 32, 32)
    dout = np.random.randn(20, 3, 16, 16)
    pool_param = {"pool_height": 2, "pool_width": 2, "stride": 2}

    out_naive, cache_naive = max_pool_forward_naive(x, pool_param)
    out_fast, cache_fast = max_pool_forward_fast(x, pool_param)
    report("Testing pool_forward_fast, difference", rel_error(out_naive, out_fast), 1e-12)

    dx_naive = max_pool_backward_naive(dout, cache_naive)
    dx_fast = max_pool_backward_fast(dout, cache_fast)
    report("Testing pool_backward_fast, dx difference", rel_error(dx_naive, dx_fast), 1e-12)


# --- cell: sandwich layers --------------------------------------------------------------------

def test_cell_conv_relu_pool():
    np.random.seed(231)
    x = np.random.randn(2, 3, 16, 16)
    w = np.random.randn(3, 3, 3, 3)
    b = np.random.randn(3,)
    dout = np.random.randn(2, 3, 8, 8)
    conv_param = {"stride": 1, "pad": 1}
    pool_param = {"pool_height": 2, "pool_width": 2, "stride": 2}

    out, cache = conv_relu_pool_forward(x, w, b, conv_param, pool_param)
    dx, dw, db = conv_relu_pool_backward(dout, cache)

    dx_num = eval_numerical_gradient_array(lambda x: conv_relu_pool_forward(x, w, b, conv_param, pool_param)[0], x, dout)
    dw_num = eval_numerical_gradient_array(lambda w: conv_relu_pool_forward(x, w, b, conv_param, pool_param)[0], w, dout)
    db_num = eval_numerical_gradient_array(lambda b: conv_relu_pool_forward(x, w, b, conv_param, pool_param)[0], b, dout)
    report("Testing conv_relu_pool, dx error", rel_error(dx_num, dx), SANDWICH_BOUND)
    report("Testing conv_relu_pool, dw error", rel_error(dw_num, dw), SANDWICH_BOUND)
    report("Testing conv_relu_pool, db error", rel_error(db_num, db), SANDWICH_BOUND)


def test_cell_conv_relu():
    np.random.seed(231)
    x = np.random.randn(2, 3, 8, 8)
    w = np.random.randn(3, 3, 3, 3)
    b = np.random.randn(3,)
    dout = np.random.randn(2, 3, 8, 8)
    conv_param = {"stride": 1, "pad": 1}

    out, cache = conv_relu_forward(x, w, b, conv_param)
    dx, dw, db = conv_relu_backward(dout, cache)

    dx_num = eval_numerical_gradient_array(lambda x: conv_relu_forward(x, w, b, conv_param)[0], x, dout)
    dw_num = eval_numerical_gradient_array(lambda w: conv_relu_forward(x, w, b, conv_param)[0], w, dout)
    db_num = eval_numerical_gradient_array(lambda b: conv_relu_forward(x, w, b, conv_param)[0], b, dout)
    report("Testing conv_relu, dx error", rel_error(dx_num, dx), SANDWICH_BOUND)
    report("Testing conv_relu, dw error", rel_error(dw_num, dw), SANDWICH_BOUND)
    report("Testing conv_relu, db error", rel_error(db_num, db), SANDWICH_BOUND)


# --- what the course code could not do -------------------------------------------------------

def test_cell_non_square_kernel_and_overlapping_pool():
    np.random.seed(231)
    x = np.random.randn(2, 3, 9, 10)
    w = np.random.randn(4, 3, 3, 2)
    b = np.random.randn(4,)
    conv_param = {"stride": 1, "pad": 1}
    pool_param = {"pool_height": 3, "pool_width": 2, "stride": 2}  # non-square, overlapping in h

    out_naive, _ = conv_forward_naive(x, w, b, conv_param)
    out_fast, _ = conv_forward_fast(x, w, b, conv_param)
    report("Non-square kernel, naive vs independent", rel_error(out_naive, independent_conv(x, w, b, 1, 1)), 1e-9)
    report("Non-square kernel, fast vs naive", rel_error(out_naive, out_fast), 1e-9)

    pooled_naive, _ = max_pool_forward_naive(out_naive, pool_param)
    pooled_fast, _ = max_pool_forward_fast(out_fast, pool_param)
    windows = sliding_window_view(out_naive, (3, 2), axis=(2, 3))[:, :, ::2, ::2].max(axis=(4, 5))
    report("Overlapping pool, naive vs independent", rel_error(pooled_naive, windows), 1e-12)
    report("Overlapping pool, fast vs naive", rel_error(pooled_naive, pooled_fast), 1e-9)

    dout = np.random.randn(*pooled_naive.shape)
    out, cache = conv_relu_pool_forward(x, w, b, conv_param, pool_param)
    dx, dw, db = conv_relu_pool_backward(dout, cache)
    dw_num = eval_numerical_gradient_array(lambda w: conv_relu_pool_forward(x, w, b, conv_param, pool_param)[0], w, dout)
    report("Non-square conv_relu_pool, dw error", rel_error(dw_num, dw), SANDWICH_BOUND)


if __name__ == "__main__":
    for name, cell in list(globals().items()):
        if name.startswith("test_cell_"):
            cell()
