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
from fastconv._geometry import conv_geometry

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
    geometry = conv_geometry(x.shape, w.shape, stride, padding)
    algorithm = draw(st.sampled_from(["auto"] + fastconv.available_algorithms(geometry)))
    return x, w, b, stride, padding, algorithm


# Winograd F(2x2, 3x3) adds and subtracts values of a whole 4x4 input tile before
# multiplying, so its rounding follows the largest magnitudes of the plane, not of each window;
# F(4x4, 3x3) does so over 6x6 tiles with coefficients up to 8: its actual error ran 14-24x
# F(2x2, 3x3)'s on random float32 data, though both stay far inside these bounds (a growth
# of 1 passed the "ci" profile for both).
# s2d-winograd runs F(4x4, 3x3) over phase images (every s-th pixel of x), whose planes are
# within x's.
WINOGRAD_GROWTH = {"winograd-2x2": 4, "winograd-s2": 4, "winograd-4x4": 16, "s2d-winograd": 16}


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


# ---- convolution kinds: rank, dilation, groups, padding forms and modes, transposed ------

@st.composite
def kind_problems(draw):
    """(ndim, x, w, b, options) for conv{1,2,3}d with every option drawn; the kernel (dilated)
    fits the padded input and reflect/circular padding fits the input."""
    ndim = draw(st.sampled_from([1, 2, 2, 3]))
    max_size = {1: 12, 2: 8, 3: 5}[ndim]
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    channels = groups * draw(st.integers(1, 2))
    filters = groups * draw(st.integers(1, 3))
    size = tuple(draw(st.integers(1, max_size)) for _ in range(ndim))
    mode = draw(st.sampled_from(["zeros", "zeros", "reflect", "replicate", "circular"]))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    form = draw(st.sampled_from(["int", "axes", "sides", "same", "valid"]))
    limit = [min(2, s - 1) if mode == "reflect" else min(2, s) if mode == "circular" else 2
             for s in size]
    if form == "int":
        padding = draw(st.integers(0, min(limit)))
    elif form == "axes":
        padding = tuple(draw(st.integers(0, m)) for m in limit)
    elif form == "sides":
        padding = tuple(draw(st.integers(0, m)) for m in limit for _ in range(2))
    else:
        padding = form
    geometry_padding = fastconv._geometry._padding_sides(padding, ndim, size, (1,) * ndim, stride, dilation)
    kernel = []
    for s, before, after, d in zip(size, *geometry_padding, dilation):
        room = (s + before + after - 1) // d + 1  # the most taps that fit
        kernel.append(draw(st.integers(1, max(1, min(4, room)))))
    kernel = tuple(kernel)
    if form == "same":  # its padding depends on the kernel
        geometry_padding = fastconv._geometry._padding_sides("same", ndim, size, kernel, stride, dilation)
        if mode == "reflect" and any(max(b, a) >= s for s, b, a in zip(size, *geometry_padding)):
            mode = "zeros"
        if mode == "circular" and any(max(b, a) > s for s, b, a in zip(size, *geometry_padding)):
            mode = "zeros"
    assume(all((k - 1) * d + 1 <= s + b + a for k, d, s, b, a in zip(kernel, dilation, size,
                                                                        *geometry_padding)))
    dtype = draw(st.sampled_from(DTYPES))
    batch = draw(st.integers(1, 3))
    x = draw(laid_out(_values(draw, (batch, channels) + size, dtype)))
    w = draw(laid_out(_values(draw, (filters, channels // groups) + kernel, dtype)))
    b = draw(laid_out(_values(draw, (filters,), dtype))) if draw(st.booleans()) else None
    options = dict(stride=stride, padding=padding, dilation=dilation, groups=groups,
                   padding_mode=mode)
    return ndim, x, w, b, options


@given(problem=kind_problems(), data=st.data(), run=run_settings)
def test_conv_kinds_equal_reference(problem, data, run):
    ndim, x, w, b, options = problem
    forward = getattr(fastconv, f"conv{ndim}d_forward")
    with settings_for_call(*run):
        out, cache = forward(x, w, b, **options, backend="cython", algorithm="im2col")
        dout = data.draw(laid_out(_values(data.draw, out.shape, out.dtype)))
        grads = getattr(fastconv, f"conv{ndim}d_backward")(dout, cache)
    event(f"{ndim}-D, padding_mode {options['padding_mode']}, groups {options['groups']}")
    plain = [None if a is None else np.array(a) for a in (x, w, b, dout)]
    ref_forward = getattr(reference, f"conv{ndim}d_forward")
    ref_backward = getattr(reference, f"conv{ndim}d_backward")
    expected, ref_cache = ref_forward(*plain[:3], **options)
    magnitude, abs_cache = ref_forward(_abs64(x), _abs64(w), _abs64(b), **options)
    # a padding mode may read one input pixel for several padded positions of a window
    copies = 1 if options["padding_mode"] == "zeros" else 2 ** ndim
    terms = w[0].size * copies + 1
    assert_matches(out, expected, magnitude, terms, "out")
    batch_positions = out.shape[0] * int(np.prod(out.shape[2:]))
    counts = (out.shape[1] // options["groups"] * int(np.prod(w.shape[2:])) * copies,
              batch_positions * copies, batch_positions)
    for name, got, want, size, count in zip(("dx", "dw", "db"), grads,
                                            ref_backward(plain[3], ref_cache),
                                            ref_backward(_abs64(dout), abs_cache), counts):
        if want is None:
            assert got is None
        else:
            assert_matches(got, want, size, count, name)



@st.composite
def dilated_winograd_problems(draw):
    """(x, w, b, padding, dilation) of a dilated 3x3 stride-1 2-D convolution with zero
    padding in every form (int, per axis, per side, "same"): s2b-winograd's shapes."""
    dilation = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    assume(dilation != (1, 1))
    size = tuple(draw(st.integers(1, 14)) for _ in range(2))
    form = draw(st.sampled_from(["int", "axes", "sides", "same"]))
    padding = {"int": lambda: draw(st.integers(0, 5)),
               "axes": lambda: tuple(draw(st.integers(0, 5)) for _ in range(2)),
               "sides": lambda: tuple(draw(st.integers(0, 5)) for _ in range(4)),
               "same": lambda: "same"}[form]()
    before, after = fastconv._geometry._padding_sides(padding, 2, size, (3, 3), (1, 1), dilation)
    assume(all(2 * d + 1 <= s + b + a for d, s, b, a in zip(dilation, size, before, after)))
    dtype = draw(st.sampled_from(DTYPES))
    batch, channels, filters = draw(st.integers(1, 3)), draw(st.integers(1, 6)), draw(st.integers(1, 6))
    x = draw(laid_out(_values(draw, (batch, channels) + size, dtype)))
    w = draw(laid_out(_values(draw, (filters, channels, 3, 3), dtype)))
    b = draw(laid_out(_values(draw, (filters,), dtype))) if draw(st.booleans()) else None
    return x, w, b, padding, dilation


@given(problem=dilated_winograd_problems(), data=st.data(), run=run_settings)
def test_s2b_winograd_equals_reference(problem, data, run):
    """F(4x4, 3x3) over the phase images, whose planes are within the padded x's: the
    Winograd bound of the full planes holds."""
    x, w, b, padding, dilation = problem
    with settings_for_call(*run):
        out, cache = fastconv.conv2d_forward(x, w, b, 1, padding, dilation=dilation,
                                             algorithm="s2b-winograd")
        dout = data.draw(laid_out(_values(data.draw, out.shape, out.dtype)))
        grads = fastconv.conv2d_backward(dout, cache)
    plain = [None if a is None else np.array(a) for a in (x, w, b, dout)]
    expected, ref_cache = reference.conv2d_forward(*plain[:3], 1, padding, dilation=dilation)
    magnitude, abs_cache = reference.conv2d_forward(_abs64(x), _abs64(w), _abs64(b), 1, padding,
                                                    dilation=dilation)
    magnitudes = list(reference.conv2d_backward(_abs64(dout), abs_cache))
    magnitude = _winograd_magnitude(magnitude, "winograd-4x4")
    magnitudes[:2] = [_winograd_magnitude(m, "winograd-4x4") for m in magnitudes[:2]]
    assert_matches(out, expected, magnitude, w[0].size + 1, "out")
    batch_positions = out.shape[0] * out.shape[2] * out.shape[3]
    counts = (out.shape[1] * 9, batch_positions, batch_positions)
    for name, got, want, size, count in zip(("dx", "dw", "db"), grads,
                                            reference.conv2d_backward(plain[3], ref_cache),
                                            magnitudes, counts):
        if want is None:
            assert got is None
        else:
            assert_matches(got, want, size, count, name)

@st.composite
def transposed_problems(draw):
    ndim = draw(st.sampled_from([1, 2, 3]))
    groups = draw(st.sampled_from([1, 2]))
    channels = groups * draw(st.integers(1, 2))
    per_group = draw(st.integers(1, 2))
    size = tuple(draw(st.integers(1, {1: 8, 2: 5, 3: 3}[ndim])) for _ in range(ndim))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(ndim))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(ndim))
    extra = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    padding = tuple(draw(st.integers(0, 2)) for _ in range(ndim))
    assume(all((n - 1) * s - 2 * p + d * (k - 1) + e + 1 >= 1
               for n, s, p, d, k, e in zip(size, stride, padding, dilation, kernel, extra)))
    dtype = draw(st.sampled_from(DTYPES))
    x = draw(laid_out(_values(draw, (draw(st.integers(1, 2)), channels) + size, dtype)))
    w = draw(laid_out(_values(draw, (channels, per_group) + kernel, dtype)))
    b = draw(laid_out(_values(draw, (per_group * groups,), dtype))) if draw(st.booleans()) else None
    return ndim, x, w, b, dict(stride=stride, padding=padding, output_padding=extra,
                               dilation=dilation, groups=groups)


@given(problem=transposed_problems(), data=st.data(), run=run_settings)
def test_conv_transpose_equals_reference(problem, data, run):
    ndim, x, w, b, options = problem
    name = f"conv_transpose{ndim}d"
    with settings_for_call(*run):
        out, cache = getattr(fastconv, f"{name}_forward")(x, w, b, **options, backend="cython")
        dout = data.draw(laid_out(_values(data.draw, out.shape, out.dtype)))
        grads = getattr(fastconv, f"{name}_backward")(dout, cache)
    plain = [None if a is None else np.array(a) for a in (x, w, b, dout)]
    expected, ref_cache = getattr(reference, f"{name}_forward")(*plain[:3], **options)
    magnitude, abs_cache = getattr(reference, f"{name}_forward")(_abs64(x), _abs64(w), _abs64(b), **options)
    growth = WINOGRAD_GROWTH.get(cache.algorithm, 1)
    terms = w.shape[0] // options["groups"] * int(np.prod(w.shape[2:])) + 1
    assert_matches(out, expected, growth * magnitude, terms, "out")
    positions = x.shape[0] * int(np.prod(x.shape[2:]))
    counts = (w[0].size, positions, positions)
    for what, got, want, size, count in zip(("dx", "dw", "db"), grads,
                                            getattr(reference, f"{name}_backward")(plain[3], ref_cache),
                                            getattr(reference, f"{name}_backward")(_abs64(dout), abs_cache),
                                            counts):
        if want is None:
            assert got is None
        else:
            assert_matches(got, want, growth * size, count, what)


# ---- batch, layer and group norm ------------------------------------------------------

@st.composite
def norm_problems(draw):
    """(kind, x, weight, bias, options): a batch (training or evaluation), layer or group norm call."""
    dtype = draw(st.sampled_from(DTYPES))
    channels = draw(st.integers(1, 6))
    spatial = tuple(draw(st.lists(st.integers(1, 6), min_size=0, max_size=2)))
    shape = (draw(st.integers(1, 4)), channels) + spatial
    kind = draw(st.sampled_from(["batch", "batch-eval", "layer", "group"]))
    if kind == "batch" and np.prod(shape) // channels < 2:
        shape = (shape[0] + 1,) + shape[1:]
    x = draw(laid_out(_values(draw, shape, dtype) * dtype(draw(st.sampled_from([1.0, 50.0])))
                      + dtype(draw(st.sampled_from([0.0, 3.0, -1e3])))))
    options = {}
    if kind == "layer":
        trailing = draw(st.integers(1, len(shape) - 1))
        parameter_shape = shape[len(shape) - trailing:]
    else:
        parameter_shape = (channels,)
    if kind == "group":
        options["num_groups"] = draw(st.sampled_from([g for g in range(1, channels + 1) if channels % g == 0]))
    if kind == "batch-eval":
        options["running_mean"] = _values(draw, (channels,), dtype)
        options["running_var"] = np.abs(_values(draw, (channels,), dtype)) + dtype(0.1)
    weight = _values(draw, parameter_shape, dtype)
    bias = _values(draw, parameter_shape, dtype)
    return kind, x, weight, bias, options


def _norm_call(api, kind, x, weight, bias, options, **backend):
    if kind.startswith("batch"):
        running = [options[name].copy() for name in ("running_mean", "running_var") if name in options]
        return (api.batch_norm_forward(x, weight, bias, *running, training=kind == "batch", **backend),
                api.batch_norm_backward)
    if kind == "layer":
        return api.layer_norm_forward(x, weight, bias, **backend), api.layer_norm_backward
    return api.group_norm_forward(x, weight, bias, options["num_groups"], **backend), api.group_norm_backward


@given(problem=norm_problems(), data=st.data(), threads=st.sampled_from([1, 2, 3]), need_dx=st.booleans())
def test_norms_equal_reference(problem, data, threads, need_dx):
    kind, x, weight, bias, options = problem
    x_before = np.array(x)
    minimum = fastconv.norm._PARALLEL_MIN_ELEMENTS
    fastconv.norm._PARALLEL_MIN_ELEMENTS = 0  # threads even on these tiny inputs
    try:
        with settings_for_call(threads, None):
            (out, cache), backward = _norm_call(fastconv, kind, x, weight, bias, options, backend="cython")
            dout = data.draw(laid_out(_values(data.draw, out.shape, out.dtype)))
            grads = backward(dout, cache, need_dx=need_dx)
    finally:
        fastconv.norm._PARALLEL_MIN_ELEMENTS = minimum
    (expected, ref_cache), ref_backward = _norm_call(reference, kind, np.array(x), weight, bias, options)
    expected_grads = ref_backward(np.array(dout), ref_cache, need_dx=need_dx)
    np.testing.assert_array_equal(np.array(x), x_before)
    eps = np.finfo(x.dtype).eps
    # both compute in float64 and round once; float64 results differ by summation order only,
    # amplified where a large mean is subtracted (|x| / std)
    conditioning = 1.0 + float(np.max(np.abs(x_before), initial=0.0) * np.max(ref_cache.inv_std, initial=0.0))
    for what, got, want in zip(("out", "dx", "dweight", "dbias"), (out,) + tuple(grads), (expected,) + tuple(expected_grads)):
        if want is None:
            assert got is None and not need_dx
            continue
        assert got.dtype == x.dtype and got.shape == want.shape
        scale = max(1.0, float(np.max(np.abs(want), initial=0.0)))
        bound = 64 * eps * scale * (1.0 if x.dtype == np.float32 else conditioning)
        assert np.max(np.abs(got.astype(np.float64) - want), initial=0.0) <= bound, what
    np.testing.assert_allclose(cache.mean, ref_cache.mean, rtol=1e-12, atol=1e-9)


# ---- pooling options (issue 23): 1-D to 3-D, dilation, ceil_mode, divisors, adaptive, unpool

@st.composite
def pool_option_problems(draw, dilated=True):
    """(x in a drawn layout, kernel, stride, padding, dilation, ceil_mode), any rank 1-3."""
    from fastconv._geometry import pool_geometry

    ndim = draw(st.sampled_from([1, 2, 3]))
    axis = st.integers(1, 7 if ndim < 3 else 5)
    size = tuple(draw(axis) for _ in range(ndim))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(ndim))
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(ndim)) if dilated else (1,) * ndim
    stride = draw(st.one_of(st.none(), st.tuples(*[st.integers(1, 3)] * ndim)))
    ceil_mode = draw(st.booleans())
    shape = (draw(st.integers(0, 3)), draw(st.integers(0, 3))) + size
    try:
        pool_geometry(shape, kernel, stride, padding, dilation=dilation, ceil_mode=ceil_mode)
    except ValueError:
        assume(False)
    dtype = draw(st.sampled_from(DTYPES))
    if draw(st.booleans()):  # a handful of integers: windows often hold ties
        values = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).integers(-2, 3, shape).astype(dtype)
    else:
        values = _values(draw, shape, dtype)
    event(f"pool rank {ndim}")
    return draw(laid_out(values)), kernel, stride, padding, dilation, ceil_mode


@given(problem=pool_option_problems(), data=st.data(), threads=st.sampled_from([1, 2, 3]))
def test_max_pool_options_equal_reference(problem, data, threads):
    x, kernel, stride, padding, dilation, ceil_mode = problem
    ndim = x.ndim - 2
    forward = getattr(fastconv, f"max_pool{ndim}d_forward")
    with settings_for_call(threads, None):
        out, indices, cache = forward(x, kernel, stride, padding, dilation=dilation, ceil_mode=ceil_mode,
                                      return_indices=True, backend="cython")
        dout = data.draw(laid_out(_values(data.draw, out.shape, out.dtype)))
        dx = getattr(fastconv, f"max_pool{ndim}d_backward")(dout, cache)
    twin = getattr(reference, f"max_pool{ndim}d_forward")
    expected, expected_indices, ref_cache = twin(np.array(x), kernel, stride, padding, dilation=dilation,
                                                 ceil_mode=ceil_mode, return_indices=True)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(indices, expected_indices)
    assert indices.dtype == np.int64 and out.dtype == dx.dtype == x.dtype
    # every index lies in its plane and names the value it returned
    plane = int(np.prod(x.shape[2:]))
    flat_x = np.array(x).reshape(x.shape[0] * x.shape[1], plane)
    flat_indices = indices.reshape(flat_x.shape[0], int(np.prod(out.shape[2:])))
    assert np.all((flat_indices >= 0) & (flat_indices < plane))
    np.testing.assert_array_equal(np.take_along_axis(flat_x, flat_indices, axis=1), out.reshape(flat_indices.shape))
    expected_dx = getattr(reference, f"max_pool{ndim}d_backward")(np.array(dout), ref_cache)
    _, cache64 = twin(np.array(x, dtype=np.float64), kernel, stride, padding, dilation=dilation,
                      ceil_mode=ceil_mode)  # float64 keeps the argmax
    magnitude = getattr(reference, f"max_pool{ndim}d_backward")(_abs64(dout), cache64)
    assert_matches(dx, expected_dx, magnitude, int(np.prod(kernel)), "dx")


@given(problem=pool_option_problems(dilated=False), data=st.data(), threads=st.sampled_from([1, 2, 3]),
       count_include_pad=st.booleans(), divisor=st.one_of(st.none(), st.integers(1, 20)))
def test_avg_pool_options_equal_reference(problem, data, threads, count_include_pad, divisor):
    x, kernel, stride, padding, _, ceil_mode = problem
    ndim = x.ndim - 2
    options = dict(ceil_mode=ceil_mode, count_include_pad=count_include_pad, divisor_override=divisor)
    with settings_for_call(threads, None):
        out, cache = getattr(fastconv, f"avg_pool{ndim}d_forward")(x, kernel, stride, padding, backend="cython",
                                                                    **options)
        dout = data.draw(laid_out(_values(data.draw, out.shape, out.dtype)))
        dx = getattr(fastconv, f"avg_pool{ndim}d_backward")(dout, cache)
    twin, twin_backward = (getattr(reference, f"avg_pool{ndim}d_{side}") for side in ("forward", "backward"))
    expected, ref_cache = twin(np.array(x), kernel, stride, padding, **options)
    magnitude, abs_cache = twin(_abs64(x), kernel, stride, padding, **options)
    terms = int(np.prod(kernel)) + 1
    assert_matches(out, expected, magnitude, terms, "out")
    assert_matches(dx, twin_backward(np.array(dout), ref_cache), twin_backward(_abs64(dout), abs_cache), terms, "dx")
    # the divisor rule, independently of the twin: constant inputs give (inputs in the window) / divisor
    ones, _ = getattr(fastconv, f"avg_pool{ndim}d_forward")(np.ones(x.shape), kernel, stride, padding, **options)
    if ones.size and not count_include_pad and divisor is None:
        np.testing.assert_allclose(ones, 1.0, rtol=1e-14)  # the mean of inputs only
    if ones.size and divisor is not None:
        assert np.all(ones * divisor <= np.prod(kernel) + 1e-9)  # window sums, at most the kernel's size


@st.composite
def adaptive_problems(draw):
    size = (draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    output_size = draw(st.one_of(st.integers(0, 10), st.tuples(st.integers(0, 10), st.integers(0, 10))))
    shape = (draw(st.integers(0, 3)), draw(st.integers(0, 3))) + size
    dtype = draw(st.sampled_from(DTYPES))
    if draw(st.booleans()):
        values = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).integers(-2, 3, shape).astype(dtype)
    else:
        values = _values(draw, shape, dtype)
    return draw(laid_out(values)), output_size


@given(problem=adaptive_problems(), data=st.data(), threads=st.sampled_from([1, 2, 3]),
       kind=st.sampled_from(["avg", "max"]))
def test_adaptive_pools_equal_reference(problem, data, threads, kind):
    x, output_size = problem
    forward, backward = (getattr(fastconv, f"adaptive_{kind}_pool2d_{side}") for side in ("forward", "backward"))
    twin, twin_backward = (getattr(reference, f"adaptive_{kind}_pool2d_{side}") for side in ("forward", "backward"))
    with settings_for_call(threads, None):
        out, cache = forward(x, output_size, backend="cython")
        dout = data.draw(laid_out(_values(data.draw, out.shape, out.dtype)))
        dx = backward(dout, cache)
    expected, ref_cache = twin(np.array(x), output_size)
    magnitude, abs_cache = twin(_abs64(x), output_size)
    # an adaptive window spans at most ceil(size / out) + 1 inputs per axis
    terms = (x.shape[2] + 1) * (x.shape[3] + 1)
    if kind == "max":
        np.testing.assert_array_equal(out, expected)
        np.testing.assert_array_equal(cache.argmax, ref_cache.argmax)
    else:
        assert_matches(out, expected, magnitude, terms, "out")
    assert_matches(dx, twin_backward(np.array(dout), ref_cache), twin_backward(_abs64(dout), abs_cache), terms, "dx")


@given(problem=pool_problems(), data=st.data(), threads=st.sampled_from([1, 2, 3]))
def test_unpool_of_max_pool_equals_reference_and_restores_the_maxima(problem, data, threads):
    x, kernel, stride, padding = problem
    assume(all(x.shape))
    pooled, indices, _ = fastconv.max_pool2d_forward(x, kernel, stride, padding, return_indices=True)
    values = data.draw(laid_out(_values(data.draw, pooled.shape, pooled.dtype)))
    with settings_for_call(threads, None):
        out, cache = fastconv.max_unpool2d_forward(values, indices, kernel, stride, padding, x.shape,
                                                   backend="cython")
        dout = data.draw(laid_out(_values(data.draw, out.shape, out.dtype)))
        dx = fastconv.max_unpool2d_backward(dout, cache)
    expected, ref_cache = reference.max_unpool2d_forward(np.array(values), indices, kernel, stride, padding, x.shape)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(dx, reference.max_unpool2d_backward(np.array(dout), ref_cache))
    # unpooling the maxima themselves puts each back where it came from
    restored, _ = fastconv.max_unpool2d_forward(pooled, indices, kernel, stride, padding, x.shape)
    flat = restored.reshape(x.shape[0] * x.shape[1], x.shape[2] * x.shape[3])
    positions = indices.reshape(flat.shape[0], pooled.shape[2] * pooled.shape[3])
    np.testing.assert_array_equal(np.take_along_axis(flat, positions, axis=1), pooled.reshape(positions.shape))
    # every dout position is read back by at most one x element
    assert np.count_nonzero(dx) <= np.count_nonzero(dout)


# ---- spatial tiling (fastconv._tiling, what fastconv.dask builds its graphs from) ------------

@st.composite
def chunkings(draw, size):
    """Chunk lengths summing to `size`, uneven, possibly with empty chunks."""
    cuts = sorted(draw(st.lists(st.integers(0, size), max_size=6)) + [0, size])
    return tuple(stop - start for start, stop in zip(cuts, cuts[1:]))


@st.composite
def tiled_conv_problems(draw):
    size = (draw(st.integers(1, 24)), draw(st.integers(1, 24)))
    kernel = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = draw(st.one_of(st.sampled_from(["same", "valid"]),
                             st.tuples(*[st.integers(0, 6)] * 4)))
    try:
        geometry = conv_geometry((2, 2) + size, (3, 2) + kernel, stride, padding, dilation=dilation)
    except ValueError:
        assume(False)
    chunks = (draw(chunkings(size[0])), draw(chunkings(size[1])))
    return geometry, padding, chunks


@given(problem=tiled_conv_problems(), seed=st.integers(0, 2**32 - 1))
def test_tiles_planned_per_chunk_make_up_the_whole_convolution(problem, seed):
    """Each output chunk, computed from its input chunk plus the planned halo (as dask's
    overlap delivers it) with the tile's own padding, equals that part of the whole
    convolution: integer-valued inputs make every sum exact, so equal means identical."""
    from fastconv import _tiling

    geometry, padding, chunks = problem
    rng = np.random.default_rng(seed)
    x = rng.integers(-3, 4, geometry.input_shape).astype(np.float64)
    w = rng.integers(-2, 3, geometry.weight_shape).astype(np.float64)
    b = rng.integers(-2, 3, geometry.filters).astype(np.float64)
    whole = fastconv.conv2d_forward(x, w, b, geometry.stride, padding, dilation=geometry.dilation,
                                    backend="reference")[0]
    plans = [_tiling.plan_axis(window, axis_chunks)
             for window, axis_chunks in zip(_tiling.conv_axes(geometry), chunks)]
    blocks = []
    for plan in plans:
        assert sum(plan.chunks) == plan.window.size and sum(plan.out_chunks) == plan.window.out
        if len(plan.chunks) > 1:  # what dask's overlap needs: no chunk shorter than the halo
            assert min(plan.chunks) >= max(plan.halo)
        assert max(plan.halo) <= _tiling.largest_halo(plan.window)
        axis_blocks, out_start = [], 0
        for index, (start, length, out_length) in enumerate(zip(plan.starts, plan.chunks, plan.out_chunks)):
            begin = start - (plan.halo[0] if index > 0 else 0)
            end = start + length + (plan.halo[1] if index < len(plan.chunks) - 1 else 0)
            axis_blocks.append((begin, end, out_start, out_start + out_length))
            out_start += out_length
        blocks.append(axis_blocks)
    tiled = np.full(whole.shape, np.nan)
    for j, (top, bottom, out_top, out_bottom) in enumerate(blocks[0]):
        for k, (left, right, out_left, out_right) in enumerate(blocks[1]):
            if out_top == out_bottom or out_left == out_right:
                continue
            block = x[:, :, top:bottom, left:right]
            rows = _tiling.tile_rows(plans[0], j, out_top, out_bottom, block.shape[2])
            cols = _tiling.tile_rows(plans[1], k, out_left, out_right, block.shape[3])
            if rows is None or cols is None:  # windows of padding only: the bias
                tile_out = np.broadcast_to(b[:, None, None], (2, 3, out_bottom - out_top,
                                                              out_right - out_left))
            else:
                tile = block[:, :, rows[0]:rows[1], cols[0]:cols[1]]
                tile_out = fastconv.conv2d_forward(tile, w, b, geometry.stride,
                                                   rows[2:] + cols[2:], dilation=geometry.dilation,
                                                   backend="reference")[0]
            tiled[:, :, out_top:out_bottom, out_left:out_right] = tile_out
    np.testing.assert_array_equal(tiled, whole)


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


@given(problem=conv_problems(), data=st.data(), threads=st.sampled_from([1, 2, 3]))
def test_conv_epilogue_equals_the_separate_passes(problem, data, threads):
    """conv_inference with an epilogue (Sequential.infer's Conv -> BatchNorm -> ReLU) equals
    the same algorithm's conv2d_forward followed by the epilogue's NumPy twin, to within one
    rounding of the double-precision map (the ISA-specific Winograd copy may contract it into
    an FMA)."""
    from fastconv import _epilogue
    from fastconv.conv import conv_inference
    from fastconv.reference.conv import epilogue as reference_epilogue

    x, w, b, stride, padding, algorithm = problem
    filters = w.shape[0]
    affine, relu = data.draw(st.sampled_from([(True, True), (True, False), (False, True)]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    epilogue = (_epilogue.batch_norm(rng.standard_normal(filters), rng.uniform(-2, 2, filters),
                                     rng.standard_normal(filters), relu)
                if affine else _epilogue.Epilogue(relu=True))
    with settings_for_call(threads, None):
        out, _ = fastconv.conv2d_forward(x, w, b, stride, padding, algorithm=algorithm)
        got = conv_inference(2, x, w, b, stride, padding, algorithm=algorithm, epilogue=epilogue)
    want = reference_epilogue(out, epilogue)
    assert got.shape == want.shape and got.dtype == want.dtype
    eps = np.finfo(x.dtype).eps
    np.testing.assert_allclose(got, want, rtol=2 * eps, atol=2 * eps * (np.max(np.abs(want), initial=0) + 1))
