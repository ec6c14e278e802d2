"""im2col / col2im: compiled vs reference, adjointness, the column convention, errors."""
import numpy as np
import pytest

import fastconv
from fastconv import reference

from _helpers import LAYOUTS, assert_close, with_layout

CASES = [
    ((2, 3, 7, 8), (3, 3), 1, 1),
    ((2, 3, 9, 7), (2, 3), (1, 2), (0, 1)),
    ((3, 2, 8, 9), (3, 2), (2, 1), (1, 0)),
    ((1, 1, 5, 5), 5, 1, 0),
    ((1, 2, 11, 13), (11, 11), (3, 2), (3, 2)),
    ((2, 2, 13, 11), (5, 4), 3, (2, 3)),
    ((2, 4, 6, 6), 1, 2, 1),
    ((2, 2, 9, 17), (3, 5), (1, 4), (0, 2)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, kernel, stride, padding", CASES)
def test_compiled_matches_reference_exactly(x_shape, kernel, stride, padding, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(dtype)
    cols = fastconv.im2col(x, kernel, stride, padding)
    expected = reference.im2col(x, kernel, stride, padding)
    assert cols.dtype == dtype
    np.testing.assert_array_equal(cols, expected)  # pure copies: bit-exact
    y = rng.standard_normal(cols.shape).astype(dtype)
    folded = fastconv.col2im(y, x.shape, kernel, stride, padding)
    expected_folded = reference.col2im(y, x.shape, kernel, stride, padding)
    assert folded.dtype == dtype
    # the same terms summed in another order: equal to rounding
    assert_close(folded, expected_folded)


@pytest.mark.parametrize("backend", ["cython", "reference"])
@pytest.mark.parametrize("x_shape, kernel, stride, padding", CASES)
def test_col2im_is_the_adjoint_of_im2col(x_shape, kernel, stride, padding, backend):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(x_shape)
    cols = fastconv.im2col(x, kernel, stride, padding, backend=backend)
    y = rng.standard_normal(cols.shape)
    lhs = np.sum(cols * y)
    rhs = np.sum(x * fastconv.col2im(y, x_shape, kernel, stride, padding, backend=backend))
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs))


def test_matrix_product_with_columns_is_the_convolution():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 2, 7, 6))
    w = rng.standard_normal((4, 2, 3, 2))
    cols = fastconv.im2col(x, (3, 2), (2, 1), (1, 0))
    out, _ = reference.conv2d_forward(x, w, None, (2, 1), (1, 0))
    product = (w.reshape(4, -1) @ cols).reshape(4, 3, out.shape[2], out.shape[3]).transpose(1, 0, 2, 3)
    np.testing.assert_allclose(product, out, rtol=1e-12, atol=1e-12)


def test_column_order_is_n_oh_ow_and_rows_c_kh_kw():
    x = np.arange(2 * 2 * 3 * 3, dtype=np.float64).reshape(2, 2, 3, 3)
    cols = fastconv.im2col(x, (2, 2), 1, 0)
    assert cols.shape == (2 * 2 * 2, 2 * 2 * 2)
    # column 5 = image 1, output (0, 1); row 6 = channel 1, kernel (1, 0)
    assert cols[6, 5] == x[1, 1, 0 + 1, 1 + 0]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_layouts(layout):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 8, 7)).astype(np.float32)
    expected = fastconv.im2col(x, (3, 2), (2, 1), 1)
    np.testing.assert_array_equal(fastconv.im2col(with_layout(x, layout), (3, 2), (2, 1), 1), expected)
    y = rng.standard_normal(expected.shape).astype(np.float32)
    folded = fastconv.col2im(y, x.shape, (3, 2), (2, 1), 1)
    np.testing.assert_array_equal(fastconv.col2im(with_layout(y, layout), x.shape, (3, 2), (2, 1), 1), folded)


def test_bad_inputs():
    x = np.zeros((2, 3, 5, 5), np.float32)
    for fn in (fastconv.im2col, reference.im2col):
        with pytest.raises(ValueError, match=r"x must be 4-D"):
            fn(x[0], 3)
        with pytest.raises(TypeError, match=r"x must have dtype float32 or float64, got int32"):
            fn(x.astype(np.int32), 3)
        with pytest.raises(ValueError, match=r"kernel_size \(7, 7\) is larger than the padded input"):
            fn(x, 7)
        with pytest.raises(ValueError, match=r"kernel_size must be >= 1"):
            fn(x, (0, 2))
    cols = fastconv.im2col(x, 3, 1, 1)
    for fn in (fastconv.col2im, reference.col2im):
        with pytest.raises(ValueError, match=r"cols must have shape \(C\*KH\*KW, N\*OH\*OW\) = \(27, 50\).*got \(27, 49\)"):
            fn(cols[:, :49], x.shape, 3, 1, 1)
        with pytest.raises(TypeError, match=r"x_shape must be a tuple of 4 non-negative ints"):
            fn(cols, (2, 3, 5), 3, 1, 1)
        with pytest.raises(TypeError, match=r"x_shape must be"):
            fn(cols, (2, 3, 5.0, 5), 3, 1, 1)
        with pytest.raises(ValueError, match=r"cols must be 2-D"):
            fn(cols[0], x.shape, 3, 1, 1)
