"""The compiled conv against PyTorch's conv2d (skipped when torch is not installed)."""
import numpy as np
import pytest

import fastconv

from _helpers import with_layout

torch = pytest.importorskip("torch")
functional = torch.nn.functional

TOLERANCE = {np.float32: 2e-4, np.float64: 1e-10}


def _relative(actual, expected):
    return float(np.max(np.abs(actual - expected)) / max(np.max(np.abs(expected)), 1e-30))


def _random_case(rng):
    kernel = (int(rng.integers(1, 6)), int(rng.integers(1, 6)))
    stride = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    padding = (int(rng.integers(0, 4)), int(rng.integers(0, 4)))
    height = int(rng.integers(max(1, kernel[0] - 2 * padding[0]), 16))
    width = int(rng.integers(max(1, kernel[1] - 2 * padding[1]), 16))
    x_shape = (int(rng.integers(1, 5)), int(rng.integers(1, 6)), height, width)
    w_shape = (int(rng.integers(1, 7)), x_shape[1]) + kernel
    return x_shape, w_shape, stride, padding


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", range(12))
def test_conv_matches_torch(seed, dtype):
    rng = np.random.default_rng(seed)
    x_shape, w_shape, stride, padding = _random_case(rng)
    layout = ("C", "F", "strided", "readonly")[seed % 4]
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    out, cache = fastconv.conv2d_forward(with_layout(x, layout), with_layout(w, layout), b, stride, padding)
    dout = rng.standard_normal(out.shape).astype(dtype)
    dx, dw, db = fastconv.conv2d_backward(with_layout(dout, layout), cache)

    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    tout = functional.conv2d(tx, tw, tb, stride=stride, padding=padding)
    tout.backward(torch.from_numpy(dout))
    tolerance = TOLERANCE[dtype]
    assert out.shape == tuple(tout.shape)
    assert _relative(out, tout.detach().numpy()) < tolerance
    assert _relative(dx, tx.grad.numpy()) < tolerance
    assert _relative(dw, tw.grad.numpy()) < tolerance
    assert _relative(db, tb.grad.numpy()) < tolerance


@pytest.mark.parametrize("algorithm", ["im2col", "winograd"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_suite_sized_conv_matches_torch(dtype, algorithm):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((4, 64, 16, 16)).astype(dtype)
    w = rng.standard_normal((32, 64, 3, 3)).astype(dtype)
    out, cache = fastconv.conv2d_forward(x, w, None, 1, 1, algorithm=algorithm)
    dout = rng.standard_normal(out.shape).astype(dtype)
    dx, dw, _ = fastconv.conv2d_backward(dout, cache)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    tout = functional.conv2d(tx, tw, stride=1, padding=1)
    tout.backward(torch.from_numpy(dout))
    assert _relative(out, tout.detach().numpy()) < TOLERANCE[dtype]
    assert _relative(dx, tx.grad.numpy()) < TOLERANCE[dtype]
    assert _relative(dw, tw.grad.numpy()) < TOLERANCE[dtype]
