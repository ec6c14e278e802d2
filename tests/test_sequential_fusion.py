"""Sequential's fusion: a ReLU directly before a max pool runs after it, with outputs and
gradients identical to the listed order (fuse=False), including NaN, ties and windows that
hold no positive value."""
import numpy as np
import pytest
from _helpers import with_layout

import fastconv
from fastconv import layers
from fastconv.layers import Conv2d, Linear, MaxPool2d, ReLU, Sequential


def _tricky(shape, dtype, seed):
    """Values with ties, zeros (both signs), all-negative windows and a few NaN."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-3, 3, size=shape).astype(dtype)  # many ties and zeros
    x[rng.random(shape) < 0.05] = -0.0
    flat = x.reshape(-1)
    flat[rng.choice(flat.size, size=max(1, flat.size // 97), replace=False)] = np.nan
    return x



POOLS = [
    (2, lambda: layers.MaxPool2d(2)),
    (2, lambda: layers.MaxPool2d(3, stride=2)),                   # overlapping windows
    (2, lambda: layers.MaxPool2d((3, 2), stride=(2, 1), padding=(1, 0), ceil_mode=True)),
    (2, lambda: layers.MaxPool2d(2, stride=1, dilation=2)),
    (1, lambda: layers.MaxPool1d(3, stride=2, padding=1)),
    (3, lambda: layers.MaxPool3d(2, stride=(1, 2, 2))),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", range(len(POOLS)))
@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_relu_max_pool_swap_is_exact(dtype, case, layout):
    ndim, make = POOLS[case]
    shape = (2, 3) + (7, 6, 5)[:ndim] if ndim != 1 else (2, 3, 11)
    x = with_layout(_tricky(shape, dtype, case), layout)
    x_before = x.copy()
    fused, plain = Sequential([ReLU(), make()]), Sequential([ReLU(), make()], fuse=False)
    out_fused, out_plain = fused.forward(x), plain.forward(x)
    # the fused net ran the pool first: its ReLU saw the pooled shape
    assert fused.layers[0]._saved().shape == out_fused.shape
    assert plain.layers[0]._saved().shape == x.shape
    np.testing.assert_array_equal(out_fused, out_plain)  # NaN where NaN, same values
    dout = np.random.default_rng(1).standard_normal(out_plain.shape).astype(dtype)
    np.testing.assert_array_equal(fused.backward(dout), plain.backward(dout))
    np.testing.assert_array_equal(x, x_before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_net_matches_unfused_net(dtype):
    """A conv net with the swap inside, trained parameters' gradients and dx all identical;
    need_dx=False skips the same layers."""
    rng = np.random.default_rng(3)

    def net(fuse):
        r = np.random.default_rng(4)
        return Sequential([Conv2d(3, 4, 3, padding=1, dtype=dtype, rng=r), ReLU(), MaxPool2d(2), ReLU(),
                           Conv2d(4, 5, 3, dtype=dtype, rng=r), ReLU(inplace=True), MaxPool2d(2, stride=1),
                           layers.Flatten(), Linear(5 * 1 * 2, 3, dtype=dtype, rng=r)], fuse=fuse)

    x = rng.standard_normal((2, 3, 8, 10)).astype(dtype)
    fused, plain = net(True), net(False)
    assert fused._run_order() == [0, 2, 1, 3, 4, 6, 5, 7, 8]
    assert plain._run_order() == list(range(9))
    out = fused.forward(x)
    np.testing.assert_array_equal(out, plain.forward(x))
    dout = rng.standard_normal(out.shape).astype(dtype)
    np.testing.assert_array_equal(fused.backward(dout), plain.backward(dout))
    for name, grad in plain.grads.items():
        np.testing.assert_array_equal(fused.grads[name], grad, err_msg=name)
    fused.forward(x)
    plain.forward(x)
    assert fused.backward(dout, need_dx=False) is None
    for name, grad in plain.grads.items():
        np.testing.assert_array_equal(fused.grads[name], grad, err_msg=name)


def test_no_swap_where_it_would_change_results():
    """Max pools with indices, LeakyReLU and average pools keep their listed order."""
    assert Sequential([ReLU(), MaxPool2d(2, return_indices=True)])._run_order() == [0, 1]
    assert Sequential([layers.LeakyReLU(0.1), MaxPool2d(2)])._run_order() == [0, 1]
    assert Sequential([ReLU(), layers.AvgPool2d(2)])._run_order() == [0, 1]
    # each ReLU is swapped with at most one pool
    assert Sequential([ReLU(), MaxPool2d(2), MaxPool2d(2)])._run_order() == [1, 0, 2]


def test_fuse_flag_is_checked_and_saved(tmp_path):
    with pytest.raises(TypeError, match="fuse"):
        Sequential([ReLU()], fuse=1)
    model = Sequential([ReLU(), MaxPool2d(2)], fuse=False)
    path = tmp_path / "m.npz"
    fastconv.save_model(model, path)
    loaded = fastconv.load_model(path)
    assert loaded.fuse is False and loaded._run_order() == [0, 1]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cs231n_conv_relu_pool_equals_the_listed_order(dtype):
    """conv_relu_pool pools before its ReLU: outputs and all three gradients equal conv, then
    ReLU, then max pool, run as listed, on inputs that give ties, zeros and NaN."""
    from fastconv.compat import cs231n
    from fastconv.compat.cs231n import layers as course

    rng = np.random.default_rng(11)
    x = _tricky((2, 3, 8, 9), dtype, 11)
    w = rng.integers(-1, 2, size=(4, 3, 3, 3)).astype(dtype)  # integer sums: many ties
    b = np.array([0, -1, 1, 0], dtype=dtype)
    conv_param, pool_param = {"stride": 1, "pad": 1}, {"pool_height": 3, "pool_width": 2, "stride": 2}
    out, cache = cs231n.conv_relu_pool_forward(x, w, b, conv_param, pool_param)
    conv_out, conv_cache = cs231n.conv_forward_fast(x, w, b, conv_param)
    relu_out, relu_cache = course.relu_forward(conv_out)
    expected, pool_cache = cs231n.max_pool_forward_fast(relu_out, pool_param)
    np.testing.assert_array_equal(out, expected)
    dout = rng.standard_normal(out.shape).astype(dtype)
    dconv = course.relu_backward(cs231n.max_pool_backward_fast(dout, pool_cache), relu_cache)
    for got, want in zip(cs231n.conv_relu_pool_backward(dout, cache),
                         cs231n.conv_backward_fast(dconv, conv_cache)):
        np.testing.assert_array_equal(got, want)
