"""Property-based tests: on random sizes, dtypes and memory layouts every compiled op equals its reference twin.

Sizes, kernel, stride, padding, dtype, layout of every input, thread count, workspace
budget (band height) and conv algorithm are all drawn by Hypothesis. The example count is
bounded by the "fast" profile in conftest.py; `pytest --hypothesis-profile=ci` runs longer.

Tolerance: both sides compute the same sums of products in different orders, so each
differs from the exact value by at most about terms * eps * (the same sum over absolute
values). That magnitude is computed by the reference on |inputs|, so the bound is tight
where values are small and exact (zero) where a result has no terms at all.
"""
import contextlib

import numpy as np
import pytest
from hypothesis import assume, event, given, note
from hypothesis import strategies as st

import fastconv
from fastconv import reference
from fastconv._geometry import window2d

DTYPES = (np.float32, np.float64)
LAYOUTS = ("C", "F", "strided", "reversed", "transposed", "readonly", "unaligned", "broadcast")


# ---- inputs ---------------------------------------------------------------------------

def _unaligned(values):
    """A C-contiguous copy of `values` starting one byte past an aligned address."""
    raw = np.zeros(values.nbytes + values.itemsize, dtype=np.uint8)
    out = raw[1:1 + values.nbytes].view(values.dtype).reshape(values.shape)
    out[...] = values
    return out


@st.composite
def laid_out(draw, values):
    """`values` (or, for "broadcast", values repeated along one axis) in a drawn memory layout.

    The caller gives the reference `np.array(result)`, so a layout may change the values.
    """
    layout = draw(st.sampled_from(LAYOUTS))
    ndim = values.ndim
    if layout == "C":
        out = np.ascontiguousarray(values)
    elif layout == "F":
        out = np.asfortranarray(values)
    elif layout == "strided":
        steps = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
        big = np.zeros(tuple(s * max(n, 1) for s, n in zip(steps, values.shape)), values.dtype)
        out = big[tuple(slice(None, None, s) for s in steps)][tuple(slice(0, n) for n in values.shape)]
        out[...] = values
    elif layout == "reversed":
        flips = tuple(slice(None, None, -1) for _ in range(ndim))
        out = np.ascontiguousarray(values[flips])[flips]
    elif layout == "transposed":
        order = draw(st.permutations(range(ndim)))
        out = np.ascontiguousarray(values.transpose(order)).transpose(np.argsort(order))
    elif layout == "readonly":
        out = np.array(values)
        out.flags.writeable = False
    elif layout == "unaligned":
        out = _unaligned(values)
    else:  # broadcast: a zero-stride axis over one slice of the values (read-only view)
        axis = draw(st.integers(0, ndim - 1))
        one = np.take(values, [0], axis=axis) if values.shape[axis] else values
        out = np.broadcast_to(one, values.shape)
    note(f"layout {layout}: shape {out.shape} strides {out.strides}")
    assert out.shape == values.shape and out.dtype == values.dtype
    return out


def _values(draw, shape, dtype):
    seed = draw(st.integers(0, 2**32 - 1))
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@st.composite
def windows(draw, max_size=8):
    """(height, width, kernel, stride, padding), the kernel fitting the padded input."""
    height, width = draw(st.integers(1, max_size)), draw(st.integers(1, max_size))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    kernel = (draw(st.integers(1, min(5, height + 2 * padding[0]))),
              draw(st.integers(1, min(5, width + 2 * padding[1]))))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    return height, width, kernel, stride, padding


@contextlib.contextmanager
def settings_for_call(threads, workspace):
    saved = fastconv.get_num_threads(), fastconv.get_workspace_limit()
    fastconv.set_num_threads(threads)
    fastconv.set_workspace_limit(workspace)
    try:
        yield
    finally:
        fastconv.set_num_threads(saved[0])
        fastconv.set_workspace_limit(saved[1])


# thread count x workspace budget: 1 byte forces one output row per band
run_settings = st.tuples(st.sampled_from([1, 2, 3]), st.sampled_from([1, 2048, None]))


# ---- comparisons ----------------------------------------------------------------------

def assert_matches(got, want, magnitude, terms, what):
    """got == want up to rounding: |got - want| <= 2 (terms + 1) eps magnitude, elementwise.

    eps is that of got's dtype; want may be a float64 result computed independently.
    """
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    assert got.dtype == want.dtype or want.dtype == np.float64, f"{what}: dtype {got.dtype} != {want.dtype}"
    bound = 2 * (terms + 1) * np.finfo(got.dtype).eps * magnitude
    error = np.abs(got.astype(np.float64) - want.astype(np.float64))
    worst = np.unravel_index(np.argmax(error - bound), error.shape) if error.size else None
    assert np.all(error <= bound), (
        f"{what}: error {error[worst]:.3e} > bound {bound[worst]:.3e} at {worst} "
        f"(got {got[worst]!r}, want {want[worst]!r})"
    )


def _abs64(a):
    return None if a is None else np.abs(np.asarray(a, dtype=np.float64))


# ---- im2col / col2im ------------------------------------------------------------------

@st.composite
def im2col_problems(draw):
    height, width, kernel, stride, padding = draw(windows())
    shape = (draw(st.integers(0, 3)), draw(st.integers(0, 3)), height, width)
    dtype = draw(st.sampled_from(DTYPES))
    return shape, kernel, stride, padding, dtype


@given(problem=im2col_problems(), data=st.data(), threads=st.sampled_from([1, 2, 3]))
def test_im2col_equals_reference_exactly(problem, data, threads):
    shape, kernel, stride, padding, dtype = problem
    x = data.draw(laid_out(_values(data.draw, shape, dtype)))
    with settings_for_call(threads, None):
        cols = fastconv.im2col(x, kernel, stride, padding, backend="cython")
    expected = reference.im2col(np.array(x), kernel, stride, padding)
    assert cols.dtype == x.dtype == expected.dtype
    np.testing.assert_array_equal(cols, expected)  # pure copies: bit for bit


@given(problem=im2col_problems(), data=st.data(), threads=st.sampled_from([1, 2, 3]))
def test_col2im_equals_reference(problem, data, threads):
    shape, kernel, stride, padding, dtype = problem
    rows = shape[1] * kernel[0] * kernel[1]
    out_h = (shape[2] + 2 * padding[0] - kernel[0]) // stride[0] + 1
    out_w = (shape[3] + 2 * padding[1] - kernel[1]) // stride[1] + 1
    cols = data.draw(laid_out(_values(data.draw, (rows, shape[0] * out_h * out_w), dtype)))
    with settings_for_call(threads, None):
        folded = fastconv.col2im(cols, shape, kernel, stride, padding, backend="cython")
    assert folded.dtype == cols.dtype
    expected = reference.col2im(np.array(cols), shape, kernel, stride, padding)
    magnitude = reference.col2im(_abs64(cols), shape, kernel, stride, padding)
    assert_matches(folded, expected, magnitude, kernel[0] * kernel[1], "col2im")


@pytest.mark.parametrize("backend", ["cython", "reference"])
@given(problem=im2col_problems(), data=st.data())
def test_col2im_is_the_adjoint_of_im2col(backend, problem, data):
    """<im2col(x), y> == <x, col2im(y)> for every x and y."""
    shape, kernel, stride, padding, dtype = problem
    x = _values(data.draw, shape, dtype)
    cols = fastconv.im2col(x, kernel, stride, padding, backend=backend)
    y = _values(data.draw, cols.shape, dtype)
    folded = fastconv.col2im(y, shape, kernel, stride, padding, backend=backend)
    lhs = np.sum(cols.astype(np.float64) * y)
    rhs = np.sum(x.astype(np.float64) * folded)
    # folded carries float rounding of up to KH*KW terms per pixel; the sums are in float64
    magnitude = np.sum(np.abs(x.astype(np.float64)) * reference.col2im(_abs64(y), shape, kernel, stride, padding))
    terms = kernel[0] * kernel[1] + cols.size
    assert abs(lhs - rhs) <= 2 * terms * np.finfo(dtype).eps * magnitude


# ---- conv2d ---------------------------------------------------------------------------

@st.composite
def winograd_windows(draw):
    """3x3 stride-1 windows, padding <= 2: the shapes the Winograd algorithm handles."""
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    height = draw(st.integers(max(1, 3 - 2 * padding[0]), 9))
    width = draw(st.integers(max(1, 3 - 2 * padding[1]), 9))
    return height, width, (3, 3), (1, 1), padding


@st.composite
def pointwise_windows(draw):
    """1x1 kernels, stride 1, no padding: the shapes the gemm-1x1 algorithm handles."""
    return draw(st.integers(1, 8)), draw(st.integers(1, 8)), (1, 1), (1, 1), (0, 0)


@st.composite
def conv_problems(draw):
    height, width, kernel, stride, padding = draw(st.one_of(windows(), winograd_windows(), pointwise_windows()))
    batch, channels, filters = draw(st.integers(0, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    if kernel == (3, 3) and stride == (1, 1) and draw(st.booleans()):
        # enough channels and filters for algorithm="auto" to pick Winograd
        channels, filters = draw(st.integers(1, 20)), draw(st.integers(1, 20))
    dtype = draw(st.sampled_from(DTYPES))
    x = draw(laid_out(_values(draw, (batch, channels, height, width), dtype)))
    w = draw(laid_out(_values(draw, (filters, channels) + kernel, dtype)))
    b = draw(laid_out(_values(draw, (filters,), dtype))) if draw(st.booleans()) else None
    window = window2d(x.shape, kernel, stride, padding)
    algorithm = draw(st.sampled_from(["auto"] + fastconv.available_algorithms(window)))
    return x, w, b, stride, padding, algorithm


# Winograd F(2x2, 3x3) adds and subtracts values of a whole 4x4 input tile before
# multiplying, so its rounding follows the largest magnitudes of the plane, not of each window;
# F(4x4, 3x3) does so over 6x6 tiles with coefficients up to 8: its actual error ran 14-24x
# F(2x2, 3x3)'s on random float32 data, though both stay far inside these bounds (a growth
# of 1 passed the "ci" profile for both).
# s2d-winograd runs F(4x4, 3x3) over phase images (every s-th pixel of x), whose planes are
# within x's.
WINOGRAD_GROWTH = {"winograd": 4, "winograd-4x4": 16, "s2d-winograd": 16}


def _winograd_magnitude(magnitude, algorithm):
    plane_max = np.max(magnitude, axis=(-2, -1), keepdims=True, initial=0.0)
    return np.broadcast_to(WINOGRAD_GROWTH[algorithm] * plane_max, magnitude.shape)


@given(problem=conv_problems(), data=st.data(), run=run_settings)
def test_conv2d_forward_and_backward_equal_reference(problem, data, run):
    x, w, b, stride, padding, algorithm = problem
    with settings_for_call(*run):
        out, cache = fastconv.conv2d_forward(x, w, b, stride, padding, backend="cython", algorithm=algorithm)
        dout = data.draw(laid_out(_values(data.draw, out.shape, out.dtype)))
        grads = fastconv.conv2d_backward(dout, cache)
    event(f"algorithm {cache.algorithm}")
    assert out.dtype == x.dtype and all(g is None or g.dtype == x.dtype for g in grads)

    plain = [None if a is None else np.array(a) for a in (x, w, b, dout)]
    expected, ref_cache = reference.conv2d_forward(plain[0], plain[1], plain[2], stride, padding)
    expected_grads = reference.conv2d_backward(plain[3], ref_cache)
    # the same sums over absolute values bound the rounding error of each result
    magnitude, abs_cache = reference.conv2d_forward(_abs64(x), _abs64(w), _abs64(b), stride, padding)
    magnitudes = list(reference.conv2d_backward(_abs64(dout), abs_cache))
    if cache.algorithm in WINOGRAD_GROWTH:  # out, dx and dw all come from Winograd transforms
        magnitude = _winograd_magnitude(magnitude, cache.algorithm)
        magnitudes[:2] = [_winograd_magnitude(m, cache.algorithm) for m in magnitudes[:2]]

    filters, channels, kernel_height, kernel_width = w.shape
    if cache.algorithm == "s2d-winograd":  # a 3x3 conv over C*stride_h*stride_w phase images
        channels, kernel_height, kernel_width = channels * stride[0] * stride[1], 3, 3
    batch_positions = out.shape[0] * out.shape[2] * out.shape[3]
    assert_matches(out, expected, magnitude, channels * kernel_height * kernel_width + 1, "out")
    terms = (filters * kernel_height * kernel_width, batch_positions, batch_positions)
    for name, got, want, size, count in zip(("dx", "dw", "db"), grads, expected_grads, magnitudes, terms):
        if want is None:
            assert got is None, f"{name} should be None without a bias"
        else:
            assert_matches(got, want, size, count, name)


@given(problem=conv_problems(), threads=st.sampled_from([1, 2, 3]))
def test_conv2d_is_deterministic_for_a_fixed_thread_count(problem, threads):
    """Two identical calls give bit-identical results (static schedule, fixed reduction order)."""
    x, w, b, stride, padding, algorithm = problem
    with settings_for_call(threads, None):
        results = []
        for _ in range(2):
            out, cache = fastconv.conv2d_forward(x, w, b, stride, padding, algorithm=algorithm)
            results.append((out,) + tuple(fastconv.conv2d_backward(np.ones_like(out), cache)))
    for first, second in zip(*results):
        if first is None:
            assert second is None
        else:
            np.testing.assert_array_equal(first, second)


# ---- pooling --------------------------------------------------------------------------

@st.composite
def pool_problems(draw):
    """x (any layout), kernel, stride (None: the kernel), padding <= kernel // 2.

    Values come from a handful of integers half of the time, so windows often hold ties.
    """
    height, width = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    padding = (draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, kernel[1] // 2)))
    assume(kernel[0] <= height + 2 * padding[0] and kernel[1] <= width + 2 * padding[1])
    stride = draw(st.one_of(st.none(), st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    shape = (draw(st.integers(0, 3)), draw(st.integers(0, 3)), height, width)
    dtype = draw(st.sampled_from(DTYPES))
    if draw(st.booleans()):
        seed = draw(st.integers(0, 2**32 - 1))
        values = np.random.default_rng(seed).integers(-2, 3, shape).astype(dtype)
    else:
        values = _values(draw, shape, dtype)
    return draw(laid_out(values)), kernel, stride, padding


def _pool_columns(a, kernel, stride, padding):
    """(C, KH*KW, N*OH*OW) windows of a, from the im2col reference (zero padded)."""
    stride = kernel if stride is None else stride
    cols = reference.im2col(a, kernel, stride, padding)
    return cols.reshape(a.shape[1], kernel[0] * kernel[1], cols.shape[1])


def _to_nchw(values, shape):
    """(C, N*OH*OW) -> (N, C, OH, OW)."""
    batch, channels, out_h, out_w = shape
    return values.reshape(channels, batch, out_h, out_w).transpose(1, 0, 2, 3)


def _from_nchw(a):
    """(N, C, OH, OW) -> (C, N*OH*OW)."""
    batch, channels, out_h, out_w = a.shape
    return a.transpose(1, 0, 2, 3).reshape(channels, batch * out_h * out_w)


@given(problem=pool_problems(), data=st.data(), threads=st.sampled_from([1, 2, 3]))
def test_max_pool_equals_reference(problem, data, threads):
    x, kernel, stride, padding = problem
    with settings_for_call(threads, None):
        out, cache = fastconv.max_pool2d_forward(x, kernel, stride, padding, backend="cython")
        dout = data.draw(laid_out(_values(data.draw, out.shape, out.dtype)))
        dx = fastconv.max_pool2d_backward(dout, cache)
    assert out.dtype == x.dtype and dx.dtype == x.dtype
    expected, ref_cache = reference.max_pool2d_forward(np.array(x), kernel, stride, padding)
    np.testing.assert_array_equal(out, expected)  # a max is one of the inputs: exact
    expected_dx = reference.max_pool2d_backward(np.array(dout), ref_cache)
    _, cache64 = reference.max_pool2d_forward(np.array(x, dtype=np.float64), kernel, stride, padding)
    magnitude = reference.max_pool2d_backward(_abs64(dout), cache64)  # float64 keeps the argmax
    assert_matches(dx, expected_dx, magnitude, kernel[0] * kernel[1], "dx")


@given(problem=pool_problems(), data=st.data())
def test_max_pool_follows_its_rules(problem, data):
    """Written from the documented rules, not from the reference: padding never wins, the
    first maximum in row-major window order takes the gradient, and all of dout arrives."""
    x, kernel, stride, padding = problem
    plain = np.array(x, dtype=np.float64)
    out, cache = fastconv.max_pool2d_forward(x, kernel, stride, padding)
    dout = _values(data.draw, out.shape, out.dtype)
    dx = fastconv.max_pool2d_backward(dout, cache)

    windows_ = _pool_columns(plain, kernel, stride, padding)
    inside = _pool_columns(np.ones_like(plain), kernel, stride, padding) == 1
    windows_ = np.where(inside, windows_, -np.inf)
    np.testing.assert_array_equal(out, _to_nchw(windows_.max(axis=1), out.shape))
    winner = windows_.argmax(axis=1)  # the first maximum in (kh, kw) order
    stride_ = kernel if stride is None else stride

    def route(values):
        """Each output's value put at its window's winner, folded back onto the input."""
        routed = np.zeros_like(windows_)
        np.put_along_axis(routed, winner[:, None, :], _from_nchw(values)[:, None, :], axis=1)
        rows = routed.reshape(routed.shape[0] * routed.shape[1], routed.shape[2])
        return reference.col2im(rows, x.shape, kernel, stride_, padding)

    # overlapping windows may pick the same input: its gradient is a sum, exact up to rounding
    assert_matches(dx, route(dout.astype(np.float64)), route(_abs64(dout)), kernel[0] * kernel[1], "dx")
    # gradient mass: every element of dout lands on exactly one input
    total = float(np.sum(dout, dtype=np.float64))
    scale = float(np.sum(np.abs(dout), dtype=np.float64))
    assert abs(float(np.sum(dx, dtype=np.float64)) - total) <= 4 * dout.size * np.finfo(dx.dtype).eps * scale


@given(problem=pool_problems(), data=st.data(), threads=st.sampled_from([1, 2, 3]))
def test_avg_pool_equals_reference_and_spreads_dout_evenly(problem, data, threads):
    x, kernel, stride, padding = problem
    with settings_for_call(threads, None):
        out, cache = fastconv.avg_pool2d_forward(x, kernel, stride, padding, backend="cython")
        dout = data.draw(laid_out(_values(data.draw, out.shape, out.dtype)))
        dx = fastconv.avg_pool2d_backward(dout, cache)
    assert out.dtype == x.dtype and dx.dtype == x.dtype
    area = kernel[0] * kernel[1]
    expected, ref_cache = reference.avg_pool2d_forward(np.array(x), kernel, stride, padding)
    magnitude, _ = reference.avg_pool2d_forward(_abs64(x), kernel, stride, padding)
    assert_matches(out, expected, magnitude, area + 1, "out")
    expected_dx = reference.avg_pool2d_backward(np.array(dout), ref_cache)
    _, cache64 = reference.avg_pool2d_forward(_abs64(x), kernel, stride, padding)
    dx_magnitude = reference.avg_pool2d_backward(_abs64(dout), cache64)
    assert_matches(dx, expected_dx, dx_magnitude, area + 1, "dx")

    # independently of the pooling reference: each dout element, divided by KH*KW, is
    # added to every input of its window (padding takes its share and drops it)
    stride_ = kernel if stride is None else stride
    spread = np.repeat(_from_nchw(np.array(dout, dtype=np.float64))[:, None, :] / area, area, axis=1)
    evenly = reference.col2im(spread.reshape(spread.shape[0] * area, spread.shape[2]), x.shape, kernel, stride_, padding)
    assert_matches(dx, evenly, dx_magnitude, area + 1, "dx spread")
    # the forward is the matching mean over the zero-padded windows
    means = _to_nchw(_pool_columns(np.array(x, dtype=np.float64), kernel, stride, padding).sum(axis=1) / area,
                     out.shape)
    assert_matches(out, means, magnitude, area + 1, "out mean")


# ---- elementwise, linear, losses, optimisers (issue 21) -------------------------------

@st.composite
def any_shape(draw, max_dims=4, max_side=9):
    return tuple(draw(st.integers(0, max_side)) for _ in range(draw(st.integers(1, max_dims))))


def _with_specials(draw, values):
    """Some elements replaced by 0, -0, NaN or +-inf (the activations' edge cases)."""
    if values.size and draw(st.booleans()):
        flat = values.reshape(-1).copy()
        picks = draw(st.lists(st.integers(0, flat.size - 1), max_size=4))
        flat[picks] = draw(st.sampled_from([0.0, -0.0, np.nan, np.inf, -np.inf]))
        values = flat.reshape(values.shape)
    return values


def _identical(got, want, what):
    assert got.shape == want.shape and got.dtype == want.dtype, what
    assert np.array_equal(got, want, equal_nan=True), what
    assert np.array_equal(np.signbit(got), np.signbit(want)), what


@pytest.mark.filterwarnings("ignore:invalid value")
@given(data=st.data(), shape=any_shape(), dtype=st.sampled_from(DTYPES), threads=st.sampled_from([1, 2, 3]),
       kind=st.sampled_from(["relu", "leaky_relu", "dropout"]))
def test_elementwise_ops_equal_reference_exactly(data, shape, dtype, threads, kind):
    x = data.draw(laid_out(_with_specials(data.draw, _values(data.draw, shape, dtype))))
    dout = data.draw(laid_out(_with_specials(data.draw, _values(data.draw, shape, dtype))))
    alpha = data.draw(st.sampled_from([0.0, 0.01, 0.5]))
    p = data.draw(st.sampled_from([0.0, 0.25, 0.9]))
    uniform = data.draw(laid_out(np.random.default_rng(data.draw(st.integers(0, 99))).random(shape)))
    compiled = {"relu": lambda a: fastconv.relu_forward(a, backend="cython"),
                "leaky_relu": lambda a: fastconv.leaky_relu_forward(a, alpha, backend="cython"),
                "dropout": lambda a: fastconv.dropout_forward(a, p, uniform, backend="cython")}[kind]
    twin = {"relu": reference.relu_forward, "leaky_relu": lambda a: reference.leaky_relu_forward(a, alpha),
            "dropout": lambda a: reference.dropout_forward(a, p, np.array(uniform))}[kind]
    before = np.array(x)
    with settings_for_call(threads, None):
        out, cache = compiled(x)
        dx = getattr(fastconv, f"{kind}_backward")(dout, cache)
    expected, expected_cache = twin(np.array(x))
    _identical(out, expected, "out")
    _identical(dx, getattr(reference, f"{kind}_backward")(np.array(dout), expected_cache), "dx")
    assert np.array_equal(np.array(x), before, equal_nan=True)  # x was not written


@given(data=st.data(), sizes=st.tuples(st.integers(0, 12), st.integers(0, 40), st.integers(1, 12)),
       dtype=st.sampled_from(DTYPES), threads=st.sampled_from([1, 2, 3]), with_bias=st.booleans(),
       need_dx=st.booleans())
def test_linear_equals_reference(data, sizes, dtype, threads, with_bias, need_dx):
    batch, features, outputs = sizes
    x = data.draw(laid_out(_values(data.draw, (batch, features), dtype)))
    w = data.draw(laid_out(_values(data.draw, (outputs, features), dtype)))
    b = data.draw(laid_out(_values(data.draw, (outputs,), dtype))) if with_bias else None
    dout = data.draw(laid_out(_values(data.draw, (batch, outputs), dtype)))
    with settings_for_call(threads, None):
        out, cache = fastconv.linear_forward(x, w, b, backend="cython")
        dx, dw, db = fastconv.linear_backward(dout, cache, need_dx=need_dx)
    expected, expected_cache = reference.linear_forward(np.array(x), np.array(w), None if b is None else np.array(b))
    want_dx, want_dw, want_db = reference.linear_backward(np.array(dout), expected_cache)
    # magnitudes: the same products over absolute values, terms = the summed dimension
    magnitude = _abs64(x) @ _abs64(w).T + (0 if b is None else _abs64(b))
    assert_matches(out, expected, magnitude, features + 1, "out")
    assert_matches(dw, want_dw, _abs64(dout).T @ _abs64(x), batch, "dw")
    if need_dx:
        assert_matches(dx, want_dx, _abs64(dout) @ _abs64(w), outputs, "dx")
    else:
        assert dx is None
    if with_bias:
        assert_matches(db, want_db, _abs64(dout).sum(axis=0), batch, "db")


@given(data=st.data(), sizes=st.tuples(st.integers(1, 20), st.integers(1, 12)), dtype=st.sampled_from(DTYPES),
       loss=st.sampled_from(["softmax_loss", "svm_loss"]))
def test_losses_equal_reference(data, sizes, dtype, loss):
    from fastconv import losses
    from fastconv.reference import losses as reference_losses

    scores = data.draw(laid_out(_values(data.draw, sizes, dtype) * data.draw(st.sampled_from([1.0, 30.0]))))
    y = np.random.default_rng(data.draw(st.integers(0, 99))).integers(0, sizes[1], sizes[0])
    value, dscores = getattr(losses, loss)(scores, y)
    expected_value, expected = getattr(reference_losses, loss)(np.array(scores), y)
    assert dscores.dtype == dtype
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    assert abs(value - expected_value) <= tolerance * max(1.0, abs(expected_value))
    np.testing.assert_allclose(dscores, expected, rtol=0, atol=tolerance)


@given(data=st.data(), dtype=st.sampled_from(DTYPES), threads=st.sampled_from([1, 2, 3]),
       rule=st.sampled_from(["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"]),
       shapes=st.lists(any_shape(max_dims=3, max_side=40), min_size=1, max_size=4))
def test_optimiser_updates_equal_reference_exactly(data, dtype, threads, rule, shapes):
    from fastconv.optim import SGD, AdaGrad, Adam, RMSProp

    make = {"sgd": lambda p, b: SGD(p, 0.1, backend=b),
            "momentum": lambda p, b: SGD(p, 0.1, momentum=0.9, backend=b),
            "nesterov": lambda p, b: SGD(p, 0.1, momentum=0.9, nesterov=True, backend=b),
            "adagrad": lambda p, b: AdaGrad(p, 0.1, backend=b),
            "rmsprop": lambda p, b: RMSProp(p, 0.01, backend=b),
            "adam": lambda p, b: Adam(p, 0.01, backend=b)}[rule]
    params = {}
    for index, shape in enumerate(shapes):
        values = _values(data.draw, shape, dtype)
        drawn = data.draw(laid_out(values))
        # a parameter is updated in place: a writeable array of the drawn layout
        params[f"p{index}"] = drawn if drawn.flags.writeable else np.array(drawn, order="K")
    twin = {name: np.array(value) for name, value in params.items()}
    compiled, numpy = make(params, "cython"), make(twin, "reference")
    with settings_for_call(threads, None):
        for _ in range(data.draw(st.integers(1, 3))):
            names = data.draw(st.lists(st.sampled_from(sorted(params)), unique=True))  # some frozen
            grads = {name: data.draw(laid_out(_values(data.draw, params[name].shape, dtype))) for name in names}
            compiled.step(grads)
            numpy.step({name: np.array(grad) for name, grad in grads.items()})
    for name in params:
        _identical(np.array(params[name]), twin[name], name)
