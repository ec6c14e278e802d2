"""Every public function against every class of bad input: ValueError/TypeError naming the argument.

The table runs in a child interpreter (one for the whole table, restarted after a crash),
so a case that segfaults, aborts or hangs fails on its own instead of killing the test
run. Each public op is called three ways: fastconv with backend="cython", fastconv with
backend="reference", and its twin in fastconv.reference.
"""
import json
import re
import signal

import numpy as np
import pytest

import fastconv
from fastconv import reference
from fastconv._cache import ConvCache, NormCache, PoolCache

VARIANTS = ("cython", "reference", "twin")
OPS = ("im2col", "col2im", "conv2d_forward", "conv2d_backward",
       "conv1d_forward", "conv1d_backward", "conv3d_forward", "conv3d_backward",
       "conv_transpose1d_forward", "conv_transpose1d_backward",
       "conv_transpose2d_forward", "conv_transpose2d_backward",
       "conv_transpose3d_forward", "conv_transpose3d_backward",
       "max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward",
       "batch_norm_forward", "batch_norm_backward", "layer_norm_forward", "layer_norm_backward",
       "group_norm_forward", "group_norm_backward")
SECONDS_PER_CASE = 10  # a case still running after this is reported as hung


class Api:
    """The public functions as one variant calls them."""

    def __init__(self, variant):
        self.variant = variant

    def __getattr__(self, name):
        if self.variant == "twin":
            return getattr(reference, name)
        function = getattr(fastconv, name)
        if name.endswith("_backward"):  # the backend is the one the forward used
            return function
        return lambda *args, **kwargs: function(*args, backend=self.variant, **kwargs)


# ---- inputs ---------------------------------------------------------------------------

def _x(dtype=np.float32):
    return np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(dtype)


def _w(dtype=np.float32):
    return np.random.default_rng(1).standard_normal((4, 3, 3, 3)).astype(dtype)


def _b(dtype=np.float32):
    return np.random.default_rng(2).standard_normal(4).astype(dtype)


def _cols():
    return np.zeros((27, 2 * 8 * 8), np.float32)  # im2col of _x() with kernel 3, padding 1


def _conv_cache(api, dtype=np.float32):
    return api.conv2d_forward(_x(dtype), _w(dtype), _b(dtype), 1, 1)[1]


def _pool_cache(api, kind):
    return getattr(api, f"{kind}_pool2d_forward")(_x(), 2)[1]


def _tampered(cache, **fields):
    for name, value in fields.items():
        setattr(cache, name, value)
    return cache


# Bad values of one argument, shared by the ops that take it: (label, value, error, message).
BAD_ARRAYS = [  # NAME stands for the argument's name
    ("3-D", lambda a: a[0], ValueError, r"NAME must be 4-D .*got 3-D shape"),
    ("5-D", lambda a: a[None], ValueError, r"NAME must be 4-D .*got 5-D shape"),
    ("0-D", lambda a: np.array(1.0, a.dtype), ValueError, r"NAME must be 4-D .*got 0-D shape"),
    ("int64", lambda a: a.astype(np.int64), TypeError, r"NAME must have dtype float32 or float64, got int64"),
    ("int8", lambda a: a.astype(np.int8), TypeError, r"NAME must have dtype .*got int8"),
    ("bool", lambda a: a > 0, TypeError, r"NAME must have dtype .*got bool"),
    ("float16", lambda a: a.astype(np.float16), TypeError, r"NAME must have dtype .*got float16"),
    ("longdouble", lambda a: a.astype(np.longdouble), TypeError, r"NAME must have dtype .*got (float128|longdouble)"),
    ("complex", lambda a: a.astype(np.complex64), TypeError, r"NAME must have dtype .*got complex64"),
    ("object", lambda a: a.astype(object), TypeError, r"NAME must have dtype .*got object"),
    ("big-endian", lambda a: a.astype(">f4"), TypeError, r"NAME must have dtype .*got >f4"),
    ("list", lambda a: a.tolist(), TypeError, r"NAME must be a numpy.ndarray .*got list"),
    ("None", lambda a: None, TypeError, r"NAME must be a numpy.ndarray .*got NoneType"),
    ("float", lambda a: 1.0, TypeError, r"NAME must be a numpy.ndarray .*got float"),
]

BAD_STRIDES = [
    ("zero", 0, ValueError, r"stride must be >= 1"),
    ("negative", -1, ValueError, r"stride must be >= 1"),
    ("zero in w", (1, 0), ValueError, r"stride must be >= 1"),
    ("float", 1.5, TypeError, r"stride must be an int"),
    ("whole float", 2.0, TypeError, r"stride must be an int"),
    ("bool", True, TypeError, r"stride must be an int"),
    ("str", "2", TypeError, r"stride must be an int"),
    ("three values", (1, 1, 1), ValueError, r"stride must be .*got 3 values"),
    ("beyond int64", 2**63, ValueError, r"stride"),
]

BAD_PADDINGS = [
    ("negative", -1, ValueError, r"padding must be >= 0"),
    ("negative in w", (0, -2), ValueError, r"padding must be >= 0"),
    ("float", 0.5, TypeError, r"padding must be an int"),
    ("None", None, TypeError, r"padding must be an int"),
    ("one value", (1,), ValueError, r"padding must be .*got 1 values"),
    # an output of 2**41 x 2**41 elements can never be allocated: say so, naming padding
    ("2**40", 2**40, ValueError, r"padding"),
    ("2**62", 2**62, ValueError, r"padding"),
]

BAD_KERNELS = [
    ("zero", 0, ValueError, r"kernel_size must be >= 1"),
    ("zero in h", (0, 2), ValueError, r"kernel_size must be >= 1"),
    ("negative", -3, ValueError, r"kernel_size must be >= 1"),
    ("float", 2.5, TypeError, r"kernel_size must be an int"),
    ("None", None, TypeError, r"kernel_size must be an int"),
    ("three values", (2, 2, 2), ValueError, r"kernel_size must be .*got 3 values"),
    ("larger than input", 11, ValueError, r"kernel_size \(11, 11\) is larger than the padded input"),
    ("too tall", (11, 2), ValueError, r"kernel_size \(11, 2\) is larger than the padded input"),
    ("too wide", (2, 11), ValueError, r"kernel_size \(2, 11\) is larger than the padded input"),
]

BAD_BACKENDS = [
    ("unknown", "cuda", ValueError, r"unknown backend 'cuda'.*auto, cython, reference"),
    ("upper case", "CYTHON", ValueError, r"unknown backend 'CYTHON'"),
    ("None", None, (ValueError, TypeError), r"backend"),
    ("int", 1, (ValueError, TypeError), r"backend"),
]

# ---- the table ------------------------------------------------------------------------
# Each case: (op, label, call(api), error class(es), message regex, variants).

CASES = []


def case(op, label, call, error, message, variants=VARIANTS):
    CASES.append((op, label, call, error, message, variants))


def _arrays_into(op, argument, place):
    """One case per BAD_ARRAYS entry, putting the bad array in `argument` of `op`."""
    for label, bad, error, message in BAD_ARRAYS:
        case(op, f"{argument} {label}", lambda api, bad=bad: place(api, bad),
             error, message.replace("NAME", argument))


def _window_arguments(op, call, kernels=True):
    """call(api, kernel_size=..., stride=..., padding=...) with one bad window argument."""
    if kernels:
        for label, value, error, message in BAD_KERNELS:
            case(op, f"kernel {label}", lambda api, v=value: call(api, kernel_size=v), error, message)
    for label, value, error, message in BAD_STRIDES:
        case(op, f"stride {label}", lambda api, v=value: call(api, stride=v), error, message)
    for label, value, error, message in BAD_PADDINGS:
        case(op, f"padding {label}", lambda api, v=value: call(api, padding=v), error, message)
    for label, value, error, message in BAD_BACKENDS:  # the same call whatever the variant
        case(op, f"backend {label}", lambda api, v=value: call(api, backend=v), error, message, ("cython",))


_UNSET = object()


def _call_with(function_name, defaults):
    def call(api, backend=_UNSET, **changes):
        arguments = {**defaults, **changes}
        if backend is _UNSET:
            return getattr(api, function_name)(**arguments)
        return getattr(fastconv, function_name)(**arguments, backend=backend)
    return call


# im2col
_arrays_into("im2col", "x", lambda api, bad: api.im2col(bad(_x()), 3, 1, 1))
_window_arguments("im2col", _call_with("im2col", dict(x=_x(), kernel_size=3, stride=1, padding=1)))
case("im2col", "x without height", lambda api: api.im2col(_x()[:, :, :0], 3), ValueError,
     r"kernel_size \(3, 3\) is larger than the padded input")

# col2im
for label, bad, error, message in BAD_ARRAYS:
    if "-D" in label:
        continue  # cols is 2-D: below
    case("col2im", f"cols {label}", lambda api, bad=bad: api.col2im(bad(_cols()), (2, 3, 8, 8), 3, 1, 1),
         error, message.replace("NAME", "cols"))
case("col2im", "cols 1-D", lambda api: api.col2im(_cols()[0], (2, 3, 8, 8), 3, 1, 1), ValueError,
     r"cols must be 2-D")
case("col2im", "cols 3-D", lambda api: api.col2im(_cols()[None], (2, 3, 8, 8), 3, 1, 1), ValueError,
     r"cols must be 2-D")
case("col2im", "cols wrong columns", lambda api: api.col2im(_cols()[:, 1:], (2, 3, 8, 8), 3, 1, 1),
     ValueError, r"cols must have shape \(C\*KH\*KW, N\*OH\*OW\) = \(27, 128\).*got \(27, 127\)")
case("col2im", "cols for other channels", lambda api: api.col2im(_cols(), (2, 4, 8, 8), 3, 1, 1),
     ValueError, r"cols must have shape .*= \(36, 128\)")
for label, shape in [("3 values", (2, 3, 8)), ("5 values", (2, 3, 8, 8, 1)), ("negative", (2, 3, -8, 8)),
                     ("float", (2, 3, 8.0, 8)), ("None", None), ("int", 8), ("str", "2,3,8,8")]:
    case("col2im", f"x_shape {label}", lambda api, s=shape: api.col2im(_cols(), s, 3, 1, 1),
         (TypeError, ValueError), r"x_shape must be")
_window_arguments("col2im", _call_with(
    "col2im", dict(cols=_cols(), x_shape=(2, 3, 8, 8), kernel_size=3, stride=1, padding=1)))

# conv2d_forward
_arrays_into("conv2d_forward", "x", lambda api, bad: api.conv2d_forward(bad(_x()), _w(), _b()))
_arrays_into("conv2d_forward", "w", lambda api, bad: api.conv2d_forward(_x(), bad(_w()), _b()))
case("conv2d_forward", "b 2-D", lambda api: api.conv2d_forward(_x(), _w(), _b()[:, None]), ValueError,
     r"b must be 1-D")
case("conv2d_forward", "b list", lambda api: api.conv2d_forward(_x(), _w(), _b().tolist()), TypeError,
     r"b must be a numpy.ndarray")
case("conv2d_forward", "b int", lambda api: api.conv2d_forward(_x(), _w(), _b().astype(int)), TypeError,
     r"b must have dtype float32 or float64")
case("conv2d_forward", "b one entry short", lambda api: api.conv2d_forward(_x(), _w(), _b()[:3]), ValueError,
     r"b must have one entry per filter.*4 filters")
case("conv2d_forward", "channels differ", lambda api: api.conv2d_forward(_x()[:, :2], _w(), _b()), ValueError,
     r"channel mismatch: x has 2 channels .*w expects 3")
case("conv2d_forward", "w float64", lambda api: api.conv2d_forward(_x(), _w(np.float64), _b()), TypeError,
     r"one dtype.*x: float32, w: float64, b: float32")
case("conv2d_forward", "b float64", lambda api: api.conv2d_forward(_x(), _w(), _b(np.float64)), TypeError,
     r"one dtype.*b: float64")
case("conv2d_forward", "x without height", lambda api: api.conv2d_forward(_x()[:, :, :0], _w(), _b()),
     ValueError, r"kernel \(w.shape\[2:\]\) \(3, 3\) is larger than the padded input")
case("conv2d_forward", "kernel too tall", lambda api: api.conv2d_forward(_x()[:, :, :2], _w()[:, :, :, :2], _b()),
     ValueError, r"kernel .*\(3, 2\) is larger than the padded input.*\(2, 8\)")
case("conv2d_forward", "kernel too wide", lambda api: api.conv2d_forward(_x()[..., :2], _w()[:, :, :2], _b()),
     ValueError, r"kernel .*\(2, 3\) is larger than the padded input.*\(8, 2\)")
_window_arguments("conv2d_forward", _call_with("conv2d_forward", dict(x=_x(), w=_w(), b=_b())), kernels=False)
for label, algorithm, message in [
    ("unknown", "fft", r"unknown algorithm 'fft'"),
    ("None", None, r"algorithm"),
    ("gemm-1x1 for 3x3", "gemm-1x1", r"'gemm-1x1' does not support .*kernel \(3, 3\): only 1x1"),
]:
    case("conv2d_forward", f"algorithm {label}",
         lambda api, a=algorithm: api.conv2d_forward(_x(), _w(), _b(), algorithm=a),
         ValueError, message, ("cython", "reference"))
case("conv2d_forward", "algorithm winograd for stride 3",
     lambda api: api.conv2d_forward(_x(), _w(), _b(), stride=3, algorithm="winograd"),
     ValueError, r"'winograd' does not support .*stride \(3, 3\)", ("cython", "reference"))


def _conv_backward_cases():
    out_shape = (2, 4, 8, 8)
    dout = lambda dtype=np.float32: np.ones(out_shape, dtype)  # noqa: E731
    op = "conv2d_backward"
    case(op, "dout one column short", lambda api: api.conv2d_backward(dout()[..., 1:], _conv_cache(api)),
         ValueError, r"dout must have the forward output's shape \(2, 4, 8, 8\), got \(2, 4, 8, 7\)")
    case(op, "dout 3-D", lambda api: api.conv2d_backward(dout()[0], _conv_cache(api)), ValueError,
         r"dout must be 4-D")
    case(op, "dout float64", lambda api: api.conv2d_backward(dout(np.float64), _conv_cache(api)), TypeError,
         r"dout must have the forward output's dtype float32, got float64")
    case(op, "dout int", lambda api: api.conv2d_backward(dout(np.int32), _conv_cache(api)), TypeError,
         r"dout must have dtype float32 or float64, got int32")
    case(op, "dout list", lambda api: api.conv2d_backward(dout().tolist(), _conv_cache(api)), TypeError,
         r"dout must be a numpy.ndarray")
    case(op, "dout None", lambda api: api.conv2d_backward(None, _conv_cache(api)), TypeError,
         r"dout must be a numpy.ndarray")
    case(op, "cache of another conv", lambda api: api.conv2d_backward(
        dout(), api.conv2d_forward(_x(), _w(), _b(), 2, 1)[1]), ValueError, r"dout must have the forward output's shape")
    for label, foreign in [
        ("None", lambda api: None),
        ("CS231n tuple", lambda api: (_x(), _w(), _b(), {"stride": 1, "pad": 1})),
        ("dict", lambda api: {"x": _x(), "w": _w()}),
        ("max pool cache", lambda api: _pool_cache(api, "max")),
        ("avg pool cache", lambda api: _pool_cache(api, "avg")),
    ]:
        case(op, f"cache {label}", lambda api, f=foreign: api.conv2d_backward(dout(), f(api)), TypeError,
             r"cache must be the ConvCache returned by .*conv2d_forward")
    # A ConvCache whose contents were replaced after the forward: the backward must notice
    # rather than run its kernels on arrays of other shapes.
    for label, fields, variants in [
        ("x replaced by a larger array", lambda: dict(x=np.zeros((2, 30, 70, 60), np.float32)), VARIANTS),
        ("x replaced by a smaller array", lambda: dict(x=np.zeros((1, 1, 2, 2), np.float32)), VARIANTS),
        ("weight replaced by a 9x9 kernel", lambda: dict(weight=np.zeros((4, 3, 9, 9), np.float32)), VARIANTS),
        # only the compiled backend reads the algorithm
        ("algorithm switched to gemm-1x1", lambda: dict(algorithm="gemm-1x1"), ("cython",)),
    ]:
        case(op, f"tampered cache: {label}",
             lambda api, f=fields: api.conv2d_backward(dout(), _tampered(_conv_cache(api), **f())),
             (ValueError, TypeError), r"cache", variants)


_conv_backward_cases()


def _pool_cases(kind):
    forward, backward = f"{kind}_pool2d_forward", f"{kind}_pool2d_backward"
    call_forward = lambda api, *args, **kwargs: getattr(api, forward)(*args, **kwargs)  # noqa: E731
    _arrays_into(forward, "x", lambda api, bad: call_forward(api, bad(_x()), 2))
    case(forward, "x without width", lambda api: call_forward(api, _x()[..., :0], 1), ValueError,
         r"x must have a non-zero height and width")
    _window_arguments(forward, _call_with(forward, dict(x=_x(), kernel_size=2, stride=None, padding=0)))
    case(forward, "padding more than half the window", lambda api: call_forward(api, _x(), 3, 1, 2),
         ValueError, r"padding \(2, 2\) must be at most half of kernel_size \(3, 3\)")
    case(forward, "padding more than half the window in w", lambda api: call_forward(api, _x(), (2, 2), 1, (1, 2)),
         ValueError, r"padding \(1, 2\) must be at most half of kernel_size")

    call_backward = lambda api, dout, cache: getattr(api, backward)(dout, cache)  # noqa: E731
    dout = lambda dtype=np.float32: np.ones((2, 3, 4, 4), dtype)  # noqa: E731
    case(backward, "dout one row short", lambda api: call_backward(api, dout()[:, :, 1:], _pool_cache(api, kind)),
         ValueError, r"dout must have the forward output's shape \(2, 3, 4, 4\), got \(2, 3, 3, 4\)")
    case(backward, "dout 5-D", lambda api: call_backward(api, dout()[None], _pool_cache(api, kind)),
         ValueError, r"dout must be 4-D")
    case(backward, "dout float64", lambda api: call_backward(api, dout(np.float64), _pool_cache(api, kind)),
         TypeError, r"dout must have the forward output's dtype float32, got float64")
    case(backward, "dout complex", lambda api: call_backward(api, dout(np.complex64), _pool_cache(api, kind)),
         TypeError, r"dout must have dtype float32 or float64")
    case(backward, "dout list", lambda api: call_backward(api, dout().tolist(), _pool_cache(api, kind)),
         TypeError, r"dout must be a numpy.ndarray")
    other = "avg" if kind == "max" else "max"
    for label, foreign in [
        ("None", lambda api: None),
        ("CS231n tuple", lambda api: (_x(), {"pool_height": 2, "pool_width": 2, "stride": 2})),
        ("conv cache", lambda api: _conv_cache(api)),
        (f"{other} pool cache", lambda api: _pool_cache(api, other)),
    ]:
        case(backward, f"cache {label}", lambda api, f=foreign: call_backward(api, dout(), f(api)), TypeError,
             rf"cache must be the PoolCache returned by .*{kind}_pool2d_forward")
    case(backward, "cache of another pooling", lambda api: call_backward(
        api, dout(), getattr(api, forward)(_x(), 4)[1]), ValueError, r"dout must have the forward output's shape")
    # Replaced contents: the backward must notice rather than index out of its arrays.
    tamperings = [("window of a larger input", lambda api: dict(window=getattr(api, forward)(
        np.zeros((2, 3, 40, 40), np.float32), 10)[1].window))]
    if kind == "max":
        tamperings += [
            ("argmax beyond the plane", lambda api: dict(argmax=np.full((2, 3, 4, 4), 10**6, np.int32))),
            ("argmax negative", lambda api: dict(argmax=np.full((2, 3, 4, 4), -1000, np.int32))),
            ("argmax float", lambda api: dict(argmax=np.zeros((2, 3, 4, 4), np.float32))),
        ]
    for label, fields in tamperings:
        case(backward, f"tampered cache: {label}",
             lambda api, f=fields: call_backward(api, dout(), _tampered(_pool_cache(api, kind), **f(api))),
             (ValueError, TypeError), r"cache")
    if kind == "max":
        def overwrite_argmax(api):
            cache = _pool_cache(api, kind)
            cache.argmax[...] = 10**6  # in place, past the end of every plane
            return call_backward(api, dout(), cache)

        case(backward, "tampered cache: argmax overwritten in place", overwrite_argmax,
             (ValueError, TypeError), r"read-only|cache")


_pool_cases("max")
_pool_cases("avg")


# ---- convolution kinds: dilation, groups, padding forms and modes, 1-D/3-D, transposed -----

def _kind_inputs(ndim, dtype=np.float32, channels=4, filters=6, per_group=None, kernel=3):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, channels) + (7,) * ndim).astype(dtype)
    w = rng.standard_normal((filters, per_group or channels) + (kernel,) * ndim).astype(dtype)
    return x, w


def _kind_cases(ndim):
    forward = f"conv{ndim}d_forward"
    call = lambda api, name=forward, **kw: getattr(api, name)(*kw.pop("arrays"), **kw)  # noqa: E731
    x, w = _kind_inputs(ndim)
    grouped = _kind_inputs(ndim, per_group=2)
    arrays_into = lambda api, bad, ndim=ndim, name=forward: getattr(api, name)(  # noqa: E731
        bad(_kind_inputs(ndim)[0]), _kind_inputs(ndim)[1])
    case(forward, "x list", lambda api, f=arrays_into: f(api, lambda a: a.tolist()), TypeError,
         r"x must be a numpy.ndarray")
    case(forward, "x int64", lambda api, f=arrays_into: f(api, lambda a: a.astype(np.int64)),
         TypeError, r"x must have dtype float32 or float64, got int64")
    case(forward, "x one dimension short", lambda api, f=arrays_into: f(api, lambda a: a[0]),
         ValueError, rf"x must be {ndim + 2}-D")
    case(forward, "groups not dividing C", lambda api, c=call, a=(x, w): c(
        api, arrays=(x, _kind_inputs(ndim, per_group=1)[1]), groups=3), ValueError,
        r"groups \(3\) must divide both the channels of x \(4")
    case(forward, "groups not dividing F", lambda api, c=call: c(
        api, arrays=(x, _kind_inputs(ndim, filters=5, per_group=2)[1]), groups=2), ValueError,
        r"groups \(2\) must divide both .*filters of w \(5")
    case(forward, "w with the wrong channels per group", lambda api, c=call, a=(x, w): c(
        api, arrays=a, groups=2), ValueError, r"w.shape\[1\] must be 4 // 2 = 2, but w has 4")
    case(forward, "groups zero", lambda api, c=call, a=grouped: c(api, arrays=a, groups=0),
         ValueError, r"groups must be >= 1")
    case(forward, "groups float", lambda api, c=call, a=grouped: c(api, arrays=a, groups=2.0),
         TypeError, r"groups must be an int")
    case(forward, "dilation zero", lambda api, c=call, a=(x, w): c(api, arrays=a, dilation=0),
         ValueError, r"dilation must be >= 1")
    case(forward, "dilation too large for the input", lambda api, c=call, a=(x, w): c(
        api, arrays=a, dilation=4), ValueError, r"dilated by .* is larger than the padded input")
    case(forward, "dilation of the wrong length", lambda api, c=call, a=(x, w), n=ndim: c(
        api, arrays=a, dilation=(1,) * (n + 1)), ValueError, r"dilation must be an int or a")
    case(forward, "stride of the wrong length", lambda api, c=call, a=(x, w), n=ndim: c(
        api, arrays=a, stride=(1,) * (n + 1)), ValueError, r"stride must be an int or a")
    case(forward, "padding of the wrong length", lambda api, c=call, a=(x, w), n=ndim: c(
        api, arrays=a, padding=(1,) * (2 * n + 1)), ValueError,
        rf"padding must be an int, {ndim} values .*{2 * ndim} values")
    case(forward, "padding string unknown", lambda api, c=call, a=(x, w): c(
        api, arrays=a, padding="full"), ValueError, r"padding must be an int, a tuple of ints, 'same' or 'valid', got 'full'")
    case(forward, "padding per side negative", lambda api, c=call, a=(x, w), n=ndim: c(
        api, arrays=a, padding=(1, -1) * n), ValueError, r"padding must be >= 0")
    case(forward, "padding_mode unknown", lambda api, c=call, a=(x, w): c(
        api, arrays=a, padding=1, padding_mode="mirror"), ValueError,
        r"padding_mode must be one of 'zeros', 'reflect', 'replicate', 'circular', got 'mirror'")
    case(forward, "padding_mode None", lambda api, c=call, a=(x, w): c(
        api, arrays=a, padding=1, padding_mode=None), ValueError, r"padding_mode must be one of")
    case(forward, "reflect padding as large as the input", lambda api, c=call, a=(x, w): c(
        api, arrays=a, padding=7, padding_mode="reflect"), ValueError,
        r"padding_mode 'reflect' needs padding < the input size: axis 0 has size 7")
    case(forward, "circular padding beyond the input", lambda api, c=call, a=(x, w): c(
        api, arrays=a, padding=8, padding_mode="circular"), ValueError,
        r"padding_mode 'circular' needs padding <= the input size")
    case(forward, "2-D input", lambda api, name=forward: getattr(api, name)(
        np.zeros((2, 3), np.float32), np.zeros((2, 3) + (1,) * ndim, np.float32)),
         ValueError, rf"x must be {ndim + 2}-D")
    backward = f"conv{ndim}d_backward"
    cache_of = lambda api, name=forward, a=(x, w): getattr(api, name)(*a)  # noqa: E731
    out_shape = (2, 6) + (5,) * ndim
    case(backward, "dout one element short", lambda api, c=cache_of, shape=out_shape: getattr(
        api, backward)(np.ones(shape[:-1] + (4,), np.float32), c(api)[1]), ValueError,
        r"dout must have the forward output's shape")
    case(backward, "cache None", lambda api, b=backward, shape=out_shape: getattr(api, b)(
        np.ones(shape, np.float32), None), TypeError, r"cache must be the ConvCache")
    case(backward, "cache CS231n tuple", lambda api, b=backward, shape=out_shape: getattr(api, b)(
        np.ones(shape, np.float32), (1, 2, 3, {})), TypeError, r"cache must be the ConvCache")
    case(backward, "dout float64", lambda api, c=cache_of, b=backward, shape=out_shape: getattr(
        api, b)(np.ones(shape, np.float64), c(api)[1]), TypeError,
        r"dout must have the forward output's dtype float32")

    t_forward, t_backward = f"conv_transpose{ndim}d_forward", f"conv_transpose{ndim}d_backward"
    t_call = lambda api, name=t_forward, **kw: getattr(api, name)(*kw.pop("arrays"), **kw)  # noqa: E731
    tx, tw = _kind_inputs(ndim, channels=4, filters=4, per_group=3)  # w (C=4, F/groups=3, ...)
    case(t_forward, "x list", lambda api, c=t_call, w=tw: c(api, arrays=(tx.tolist(), w)),
         TypeError, r"x must be a numpy.ndarray")
    case(t_forward, "w channels differ from x", lambda api, c=t_call: c(
        api, arrays=(tx, tw[:3])), ValueError, r"channel mismatch: x has 4 channels .*w.shape\[0\]")
    case(t_forward, "groups not dividing C", lambda api, c=t_call: c(
        api, arrays=(tx, tw), groups=3), ValueError, r"groups \(3\) must divide the channels of x \(4")
    case(t_forward, "output_padding as large as the stride", lambda api, c=t_call: c(
        api, arrays=(tx, tw), stride=2, output_padding=2), ValueError,
        r"output_padding .* must be smaller than stride .* or dilation")
    case(t_forward, "output_padding with stride and dilation 1", lambda api, c=t_call: c(
        api, arrays=(tx, tw), output_padding=1), ValueError, r"output_padding .* must be smaller")
    case(t_forward, "output_padding negative", lambda api, c=t_call: c(
        api, arrays=(tx, tw), stride=2, output_padding=-1), ValueError, r"output_padding must be >= 0")
    case(t_forward, "padding 'same'", lambda api, c=t_call: c(
        api, arrays=(tx, tw), padding="same"), ValueError,
        r"padding of a transposed convolution must be an int or a tuple of ints")
    case(t_forward, "padding larger than the output", lambda api, c=t_call: c(
        api, arrays=(tx, tw), padding=9), ValueError, r"padding .* is too large for x")
    case(t_forward, "x with an empty spatial axis", lambda api, c=t_call, w=tw: c(
        api, arrays=(tx[..., :0], w), stride=3), ValueError,
        r"transposed convolution needs every spatial size >= 1, got spatial shape")
    case(t_forward, "dilation zero", lambda api, c=t_call: c(api, arrays=(tx, tw), dilation=0),
         ValueError, r"dilation must be >= 1")
    case(t_forward, "b of the wrong length", lambda api, name=t_forward: getattr(api, name)(
        tx, tw, np.zeros(4, np.float32)), ValueError, r"b must have one entry per filter.*makes 3 filters")
    t_out = (2, 3) + (9,) * ndim
    t_cache = lambda api, name=t_forward: getattr(api, name)(tx, tw)[1]  # noqa: E731
    case(t_backward, "dout one element short", lambda api, c=t_cache, b=t_backward: getattr(api, b)(
        np.ones(t_out[:-1] + (8,), np.float32), c(api)), ValueError,
        r"dout must have the forward output's shape")
    case(t_backward, "cache None", lambda api, b=t_backward: getattr(api, b)(
        np.ones(t_out, np.float32), None), TypeError, r"cache must be the ConvTransposeCache")
    case(t_backward, "cache of a convolution", lambda api, b=t_backward, c=cache_of: getattr(api, b)(
        np.ones(t_out, np.float32), c(api)[1]), TypeError, r"cache must be the ConvTransposeCache")


for _ndim in (1, 2, 3):
    _kind_cases(_ndim)

# batch, layer and group norm: x (2, 3, 8, 8), weight and bias (3,) (layer norm: (8,) or (3, 8, 8))
def _c(dtype=np.float32, size=3):
    return np.linspace(0.5, 1.5, size).astype(dtype)


_DEFAULT = object()


def _norm_call(name, default_weight):
    def call(api, x=_DEFAULT, weight=_DEFAULT, bias=_DEFAULT, **options):
        arguments = [_x() if x is _DEFAULT else x, default_weight() if weight is _DEFAULT else weight,
                     default_weight() if bias is _DEFAULT else bias]
        if name == "group_norm_forward":
            arguments.append(options.pop("num_groups", 3))
        return getattr(api, name)(*arguments, **options)
    return call


_NORM_FORWARDS = {
    "batch_norm_forward": _norm_call("batch_norm_forward", _c),
    "layer_norm_forward": _norm_call("layer_norm_forward", lambda: _c(size=8)),
    "group_norm_forward": _norm_call("group_norm_forward", _c),
}


def _norm_cache(api, kind):
    return _NORM_FORWARDS[f"{kind}_norm_forward"](api)[1]


for _op, _forward in _NORM_FORWARDS.items():
    for label, bad, error, message in BAD_ARRAYS:
        if label in ("3-D", "5-D"):
            continue  # any rank from 2 up is an input
        if label == "0-D":
            message = r"x must be at least \d-D"
        case(_op, f"x {label}", lambda api, bad=bad, f=_forward: f(api, x=bad(_x())), error, message.replace("NAME", "x"))
    size = 8 if _op == "layer_norm_forward" else 3
    case(_op, "weight float64", lambda api, f=_forward, n=size: f(api, weight=_c(np.float64, n)), TypeError,
         r"weight must have x's dtype float32, got float64")
    case(_op, "weight list", lambda api, f=_forward, n=size: f(api, weight=_c(size=n).tolist()), TypeError,
         r"weight must be a numpy.ndarray")
    case(_op, "bias too long", lambda api, f=_forward, n=size: f(api, bias=_c(size=n + 1)), ValueError,
         r"bias must have shape")
    for label, eps, error in [("zero", 0.0, ValueError), ("nan", float("nan"), ValueError),
                              ("inf", float("inf"), ValueError), ("str", "1e-5", TypeError)]:
        case(_op, f"eps {label}", lambda api, f=_forward, e=eps: f(api, eps=e), error, r"eps must be a")
    for label, value, error, message in BAD_BACKENDS:
        case(_op, f"backend {label}", lambda api, f=_forward, v=value: f(fastconv, backend=v), error, message,
             ("cython",))
case("batch_norm_forward", "weight too short", lambda api: _NORM_FORWARDS["batch_norm_forward"](api, weight=_c(size=2)),
     ValueError, r"weight must have shape \(3,\), got \(2,\)")
case("batch_norm_forward", "running_mean alone", lambda api: api.batch_norm_forward(_x(), _c(), _c(), _c()),
     ValueError, r"give both running_mean and running_var")
case("batch_norm_forward", "evaluation without running statistics",
     lambda api: api.batch_norm_forward(_x(), _c(), _c(), training=False), ValueError,
     r"training=False normalises with running_mean and running_var")
case("batch_norm_forward", "running_var float64", lambda api: api.batch_norm_forward(_x(), _c(), _c(), _c(), _c(np.float64)),
     TypeError, r"running_var must have x's dtype float32")


def _read_only(a):
    a.flags.writeable = False
    return a


case("batch_norm_forward", "running_mean read-only", lambda api: api.batch_norm_forward(
    _x(), _c(), _c(), _read_only(_c()), _c()), ValueError, r"running_mean .*is read-only")
case("batch_norm_forward", "running_var wrong shape", lambda api: api.batch_norm_forward(
    _x(), _c(), _c(), _c(), _c(size=4)), ValueError, r"running_var must have shape \(3,\)")
case("batch_norm_forward", "momentum above 1", lambda api: api.batch_norm_forward(_x(), _c(), _c(), momentum=1.5),
     ValueError, r"momentum must lie in \[0, 1\]")
case("batch_norm_forward", "momentum None", lambda api: api.batch_norm_forward(_x(), _c(), _c(), momentum=None),
     TypeError, r"momentum must be a number")
case("batch_norm_forward", "training str", lambda api: api.batch_norm_forward(_x(), _c(), _c(), training="yes"),
     TypeError, r"training must be True or False")
case("batch_norm_forward", "one value per channel", lambda api: api.batch_norm_forward(_x()[:1, :, :1, :1], _c(), _c()),
     ValueError, r"more than one value per channel")
case("batch_norm_forward", "x 1-D", lambda api: api.batch_norm_forward(_c(), _c(), _c()), ValueError,
     r"x must be at least 2-D with shape \(N, C\) or \(N, C, \*spatial\), got 1-D")
case("layer_norm_forward", "weight of other trailing shape", lambda api: api.layer_norm_forward(_x(), _c(size=3), _c(size=3)),
     ValueError, r"weight's shape \(3,\) must equal the trailing dimensions of x")
case("layer_norm_forward", "weight 0-D", lambda api: api.layer_norm_forward(_x(), np.ones((), np.float32), np.zeros((), np.float32)),
     ValueError, r"weight's shape \(\) must equal")
case("layer_norm_forward", "weight larger than x", lambda api: api.layer_norm_forward(
    _x()[0, 0], np.ones((3, 8, 8), np.float32), np.zeros((3, 8, 8), np.float32)), ValueError, r"x must be at least 3-D")
for label, groups, error, message in [("not dividing C", 2, ValueError, r"num_groups \(2\) must divide .*C = 3"),
                                      ("zero", 0, ValueError, r"num_groups must be >= 1"),
                                      ("float", 1.5, TypeError, r"num_groups must be an int"),
                                      ("bool", True, TypeError, r"num_groups must be an int")]:
    case("group_norm_forward", f"num_groups {label}", lambda api, g=groups: _NORM_FORWARDS["group_norm_forward"](
        api, num_groups=g), error, message)

for _kind in ("batch", "layer", "group"):
    _backward = f"{_kind}_norm_backward"
    _other = "group" if _kind == "batch" else "batch"

    case(_backward, "dout float64", lambda api, k=_kind, b=_backward: getattr(api, b)(
        _x(np.float64), _norm_cache(api, k)), TypeError, r"dout must have the forward output's dtype float32, got float64")
    case(_backward, "dout complex", lambda api, k=_kind, b=_backward: getattr(api, b)(
        _x().astype(np.complex64), _norm_cache(api, k)), TypeError, r"dout must have dtype float32 or float64")
    case(_backward, "dout list", lambda api, k=_kind, b=_backward: getattr(api, b)(
        _x().tolist(), _norm_cache(api, k)), TypeError, r"dout must be a numpy.ndarray")
    case(_backward, "dout wrong shape", lambda api, k=_kind, b=_backward: getattr(api, b)(
        _x()[:, :, :4], _norm_cache(api, k)), ValueError, r"dout must have the forward output's shape \(2, 3, 8, 8\)")
    case(_backward, "need_dx str", lambda api, k=_kind, b=_backward: getattr(api, b)(
        _x(), _norm_cache(api, k), need_dx="no"), TypeError, r"need_dx must be True or False")
    for label, foreign in [("None", lambda api: None),
                           ("CS231n tuple", lambda api: (_x(), _c(), _c())),
                           ("conv cache", lambda api: _conv_cache(api)),
                           (f"{_other} norm cache", lambda api, o=_other: _norm_cache(api, o))]:
        case(_backward, f"cache {label}", lambda api, f=foreign, b=_backward: getattr(api, b)(_x(), f(api)), TypeError,
             rf"cache must be the NormCache returned by .*{_kind}_norm_forward")
    case(_backward, "tampered cache: mean replaced", lambda api, k=_kind, b=_backward: getattr(api, b)(
        _x(), _tampered(_norm_cache(api, k), mean=np.zeros(1))), (ValueError, TypeError), r"read-only|cache")
    case(_backward, "tampered cache: mean written in place", lambda api, k=_kind: _norm_cache(api, k).mean.__setitem__(
        0, 1.0), (ValueError, TypeError), r"read-only")

    def _hand_built(api, kind=_kind, backward=_backward):
        cache = _norm_cache(api, kind)
        short = np.zeros(1)
        forged = NormCache(kind, cache.x, cache.weight, short, short.copy(), short.copy(), True, cache.groups,
                           cache.backend)
        return getattr(api, backward)(_x(), forged)

    case(_backward, "tampered cache: built by hand with short statistics", _hand_built, (ValueError, TypeError),
         r"cache.mean must be a C-contiguous float64 array")



# ---- pooling options (issue 23): 1-D/3-D pools, dilation, ceil_mode, divisors, adaptive, unpool

OPS += tuple(f"{kind}_pool{ndim}d_{side}" for kind in ("max", "avg") for ndim in (1, 3)
             for side in ("forward", "backward"))
OPS += ("adaptive_avg_pool2d_forward", "adaptive_avg_pool2d_backward", "adaptive_max_pool2d_forward",
        "adaptive_max_pool2d_backward", "max_unpool2d_forward", "max_unpool2d_backward")
_SPATIAL = {1: (9,), 2: (8, 8), 3: (5, 6, 7)}
_AXES_WORD = {1: r"\(length,\)", 2: r"\(height, width\) pair", 3: r"\(depth, height, width\) triple"}


def _x_nd(ndim, dtype=np.float32):
    return np.random.default_rng(0).standard_normal((2, 3) + _SPATIAL[ndim]).astype(dtype)


def _pool_option_cases(kind, ndim):
    forward, backward = f"{kind}_pool{ndim}d_forward", f"{kind}_pool{ndim}d_backward"
    call = _call_with(forward, dict(x=_x_nd(ndim), kernel_size=2))
    layout = {1: r"\(N, C, L\)", 2: r"\(N, C, H, W\)", 3: r"\(N, C, D, H, W\)"}[ndim]
    if ndim != 2:  # 2-D: the cases above
        for label, bad, error, message in BAD_ARRAYS:
            if "-D" in label:
                continue
            case(forward, f"x {label}", lambda api, b=bad: call(api, x=b(_x_nd(ndim))), error,
                 message.replace("NAME", "x"))
        for wrong in (ndim + 1, ndim + 3):
            case(forward, f"x {wrong}-D", lambda api, w=wrong: call(
                api, x=np.zeros((1,) * w, np.float32)), ValueError, rf"x must be {ndim + 2}-D with shape {layout}")
        case(forward, "x empty along an axis", lambda api: call(api, x=_x_nd(ndim)[..., :0]), ValueError,
             r"x must have a non-zero")
        for name, minimum in (("kernel_size", 1), ("stride", 1), ("padding", 0)):
            value = minimum - 1
            case(forward, f"{name} {value}", lambda api, n=name, v=value: call(api, **{n: v}), ValueError,
                 rf"{name} must be >= {minimum}")
            case(forward, f"{name} float", lambda api, n=name: call(api, **{n: 1.5}), TypeError,
                 rf"{name} must be an int or a {_AXES_WORD[ndim]} of ints")
        case(forward, "kernel larger than the padded input", lambda api: call(api, kernel_size=12), ValueError,
             r"kernel_size .* is larger than the padded input")
        case(forward, "padding 2**62", lambda api: call(api, padding=2**62), ValueError, r"padding")
        case(forward, "backend unknown", lambda api: call(api, backend="cuda"), ValueError,
             r"unknown backend 'cuda'", ("cython",))
    for name in ("kernel_size", "stride", "padding") + (("dilation",) if kind == "max" else ()):
        for length in (ndim - 1, ndim + 1):
            if length == 0:
                continue
            case(forward, f"{name} with {length} values", lambda api, n=name, k=length: call(
                api, **{n: (1,) * k}), ValueError, rf"{name} must be an int or a .*got {length} values")
    case(forward, "padding above half the window", lambda api: call(api, kernel_size=3, stride=1, padding=2),
         ValueError, r"padding \(2,( 2)*(, 2)?\) must be at most half of kernel_size \(3,( 3)*(, 3)?\)")
    case(forward, "ceil_mode 1", lambda api: call(api, ceil_mode=1), TypeError, r"ceil_mode must be True or False")
    case(forward, "ceil_mode None", lambda api: call(api, ceil_mode=None), TypeError, r"ceil_mode must be")
    if kind == "max":
        for label, value, error, message in [
            ("zero", 0, ValueError, r"dilation must be >= 1"),
            ("negative", -2, ValueError, r"dilation must be >= 1"),
            ("float", 1.5, TypeError, r"dilation must be an int"),
            ("bool", True, TypeError, r"dilation must be an int"),
            ("beyond int64", 2**63, ValueError, r"dilation"),
        ]:
            case(forward, f"dilation {label}", lambda api, v=value: call(api, dilation=v), error, message)
        # PyTorch's rule: at most half the undilated kernel, so above half the dilated window too
        case(forward, "padding above half the dilated window", lambda api: call(
            api, kernel_size=2, padding=2, dilation=3), ValueError, r"must be at most half of kernel_size")
        case(forward, "dilated window larger than the padded input", lambda api: call(
            api, kernel_size=3, dilation=5), ValueError, r"dilated by .* is larger than the padded input")
        case(forward, "a window on padding and gaps only", lambda api: call(
            api, x=np.zeros((1, 1) + (4,) * ndim, np.float32), kernel_size=2, stride=1, padding=1, dilation=5),
            ValueError, r"window 0 along spatial axis 0 holds no input element")
        case(forward, "return_indices 'yes'", lambda api: call(api, return_indices="yes"), TypeError,
             r"return_indices must be True or False")
    else:
        for label, value, error, message in [
            ("zero", 0, ValueError, r"divisor_override must be >= 1"),
            ("negative", -3, ValueError, r"divisor_override must be >= 1"),
            ("float", 2.0, TypeError, r"divisor_override must be None or an int"),
            ("bool", True, TypeError, r"divisor_override must be None or an int"),
            ("str", "4", TypeError, r"divisor_override must be None or an int"),
            ("beyond 2**62", 2**63, ValueError, r"divisor_override .* is too large"),
        ]:
            case(forward, f"divisor_override {label}", lambda api, v=value: call(api, divisor_override=v),
                 error, message)
        case(forward, "count_include_pad 0", lambda api: call(api, count_include_pad=0), TypeError,
             r"count_include_pad must be True or False")

    def cache_of(api, rank=ndim, which=kind):
        return getattr(api, f"{which}_pool{rank}d_forward")(_x_nd(rank), 2)[1]

    out_shape = (2, 3) + tuple(s // 2 for s in _SPATIAL[ndim])
    dout = lambda dtype=np.float32: np.ones(out_shape, dtype)  # noqa: E731
    call_backward = lambda api, d, c: getattr(api, backward)(d, c)  # noqa: E731
    if ndim != 2:
        case(backward, "dout one short", lambda api: call_backward(api, dout()[..., 1:], cache_of(api)),
             ValueError, r"dout must have the forward output's shape " + re.escape(str(out_shape)))
        case(backward, "dout float64", lambda api: call_backward(api, dout(np.float64), cache_of(api)),
             TypeError, r"dout must have the forward output's dtype float32, got float64")
        case(backward, "dout list", lambda api: call_backward(api, dout().tolist(), cache_of(api)), TypeError,
             r"dout must be a numpy.ndarray")
        case(backward, "cache None", lambda api: call_backward(api, dout(), None), TypeError,
             rf"cache must be the PoolCache returned by .*{kind}_pool{ndim}d_forward")
        case(backward, "cache CS231n tuple", lambda api: call_backward(api, dout(), (dout(), {})), TypeError,
             rf"cache must be the PoolCache returned by .*{kind}_pool{ndim}d_forward")
    other_rank = 2 if ndim != 2 else 3
    case(backward, f"cache of the {other_rank}-D pool", lambda api: call_backward(
        api, dout(), cache_of(api, other_rank)), TypeError,
        rf"cache must be the PoolCache returned by {kind}_pool{ndim}d_forward, got one from "
        rf"{kind}_pool{other_rank}d_forward")


for _kind in ("max", "avg"):
    for _ndim in (1, 2, 3):
        _pool_option_cases(_kind, _ndim)


def _adaptive_cases(kind):
    forward, backward = f"adaptive_{kind}_pool2d_forward", f"adaptive_{kind}_pool2d_backward"
    call = _call_with(forward, dict(x=_x(), output_size=3))
    _arrays_into(forward, "x", lambda api, bad: call(api, x=bad(_x())))
    for label, value, error, message in [
        ("negative", -1, ValueError, r"output_size must be >= 0"),
        ("negative in w", (2, -2), ValueError, r"output_size must be >= 0"),
        ("float", 2.5, TypeError, r"output_size must be an int or a \(height, width\) pair of ints"),
        ("None", None, TypeError, r"output_size must be an int"),
        ("bool", True, TypeError, r"output_size must be an int"),
        ("three values", (2, 2, 2), ValueError, r"output_size must be .*got 3 values"),
        ("one value", (2,), ValueError, r"output_size must be .*got 1 values"),
        ("2**62", 2**62, ValueError, r"output_size .* is too large"),
    ]:
        case(forward, f"output_size {label}", lambda api, v=value: call(api, output_size=v), error, message)
    case(forward, "x without height", lambda api: call(api, x=_x()[:, :, :0]), ValueError,
         r"x must have a non-zero height and width")
    case(forward, "backend unknown", lambda api: call(api, backend="cuda"), ValueError, r"unknown backend",
         ("cython",))
    cache_of = lambda api, which=forward: getattr(api, which)(_x(), 3)[1]  # noqa: E731
    dout = lambda dtype=np.float32: np.ones((2, 3, 3, 3), dtype)  # noqa: E731
    call_backward = lambda api, d, c: getattr(api, backward)(d, c)  # noqa: E731
    case(backward, "dout one row short", lambda api: call_backward(api, dout()[:, :, 1:], cache_of(api)),
         ValueError, r"dout must have the forward output's shape \(2, 3, 3, 3\), got \(2, 3, 2, 3\)")
    case(backward, "dout float64", lambda api: call_backward(api, dout(np.float64), cache_of(api)), TypeError,
         r"dout must have the forward output's dtype float32")
    other = "max" if kind == "avg" else "avg"
    for label, foreign in [
        ("None", lambda api: None),
        ("CS231n tuple", lambda api: (_x(), {"stride": 2})),
        (f"adaptive {other} cache", lambda api: cache_of(api, f"adaptive_{other}_pool2d_forward")),
        (f"{kind} pool cache", lambda api: getattr(api, f"{kind}_pool2d_forward")(_x(), 3, 2, 1)[1]),
    ]:
        case(backward, f"cache {label}", lambda api, f=foreign: call_backward(api, dout(), f(api)), TypeError,
             rf"cache must be the PoolCache returned by .*adaptive_{kind}_pool2d_forward")


_adaptive_cases("avg")
_adaptive_cases("max")


def _pooled_indices(api):
    """x (2, 3, 4, 4) pooled from (2, 3, 8, 8) by 2x2/2, with its int64 indices."""
    return api.max_pool2d_forward(_x(), 2, return_indices=True)[:2]


def _unpool_cases():
    op, back = "max_unpool2d_forward", "max_unpool2d_backward"

    def call(api, x=_UNSET, indices=_UNSET, backend=_UNSET, **changes):
        pooled, pooled_indices = _pooled_indices(Api("cython"))
        arguments = {"x": pooled if x is _UNSET else x,
                     "indices": pooled_indices if indices is _UNSET else indices,
                     "kernel_size": 2, **changes}
        if backend is _UNSET:
            return api.max_unpool2d_forward(**arguments)
        return fastconv.max_unpool2d_forward(**arguments, backend=backend)

    pooled_x = lambda: _pooled_indices(Api("cython"))[0]  # noqa: E731
    good = lambda: _pooled_indices(Api("cython"))[1]  # noqa: E731
    _arrays_into(op, "x", lambda api, bad: call(api, x=bad(pooled_x())))
    for label, indices, error, message in [
        ("float", lambda: good().astype(np.float64), TypeError, r"indices must have an integer dtype"),
        ("bool", lambda: good() > 3, TypeError, r"indices must have an integer dtype"),
        ("object", lambda: good().astype(object), TypeError, r"indices must have an integer dtype"),
        ("list", lambda: good().tolist(), TypeError, r"indices must be a numpy.ndarray"),
        ("one column short", lambda: good()[..., 1:], ValueError,
         r"indices must have x's shape \(2, 3, 4, 4\), got \(2, 3, 4, 3\)"),
        ("3-D", lambda: good()[0], ValueError, r"indices must have x's shape"),
        ("negative", lambda: good() - 1, ValueError, r"indices must lie in \[0, 64\).*got -1"),
        ("one past the plane", lambda: np.where(good() == 63, 64, good()), ValueError,
         r"indices must lie in \[0, 64\), the flat positions of an output plane of \(8, 8\); got 64"),
        ("2**40", lambda: np.full((2, 3, 4, 4), 2**40), ValueError, r"indices must lie in \[0, 64\)"),
        ("uint64 beyond int64", lambda: np.full((2, 3, 4, 4), 2**63 + 5, np.uint64), ValueError,
         r"indices must lie in \[0, 64\)"),
        ("int64 minimum", lambda: np.full((2, 3, 4, 4), np.iinfo(np.int64).min), ValueError,
         r"indices must lie in \[0, 64\)"),
    ]:
        case(op, f"indices {label}", lambda api, i=indices: call(api, indices=i()), error, message)
    case(op, "indices past a smaller output_size", lambda api: call(api, output_size=(7, 7)), ValueError,
         r"indices must lie in \[0, 49\)")
    for label, size, error, message in [
        ("too large", (10, 8), ValueError, r"output_size \(10, 8\) must lie strictly between 6 and 10"),
        ("too small", (6, 8), ValueError, r"strictly between 6 and 10"),
        ("three values", (8, 8, 8), ValueError, r"output_size must have 2 values .* or 4"),
        ("floats", (8.0, 8.0), TypeError, r"output_size must be None or a tuple of ints"),
        ("int", 8, TypeError, r"output_size must be None or a tuple of ints"),
    ]:
        case(op, f"output_size {label}", lambda api, v=size: call(api, output_size=v), error, message)
    case(op, "kernel_size zero", lambda api: call(api, kernel_size=0), ValueError, r"kernel_size must be >= 1")
    case(op, "stride three values", lambda api: call(api, stride=(2, 2, 2)), ValueError,
         r"stride must be .*got 3 values")
    case(op, "padding negative", lambda api: call(api, padding=-1), ValueError, r"padding must be >= 0")
    case(op, "padding making the output empty", lambda api: call(api, padding=5), ValueError,
         r"padding \(5, 5\) is too large")
    case(op, "backend unknown", lambda api: call(api, backend="cuda"), ValueError, r"unknown backend", ("cython",))

    def cache_of(api):
        pooled, indices = _pooled_indices(Api("cython"))
        return api.max_unpool2d_forward(pooled, indices, 2)[1]

    dout = lambda dtype=np.float32: np.ones((2, 3, 8, 8), dtype)  # noqa: E731
    case(back, "dout one row short", lambda api: api.max_unpool2d_backward(dout()[:, :, 1:], cache_of(api)),
         ValueError, r"dout must have the forward output's shape \(2, 3, 8, 8\)")
    case(back, "dout float64", lambda api: api.max_unpool2d_backward(dout(np.float64), cache_of(api)), TypeError,
         r"dout must have the forward output's dtype float32")
    for label, foreign in [("None", lambda api: None), ("CS231n tuple", lambda api: (_x(), {})),
                           ("max pool cache", lambda api: _pool_cache(api, "max"))]:
        case(back, f"cache {label}", lambda api, f=foreign: api.max_unpool2d_backward(dout(), f(api)), TypeError,
             r"cache must be the PoolCache returned by .*max_unpool2d_forward")

    def overwrite_indices(api):
        cache = cache_of(api)
        cache.argmax[...] = 10**6  # in place, past the end of every output plane
        return api.max_unpool2d_backward(dout(), cache)

    case(back, "tampered cache: indices overwritten in place", overwrite_indices, (ValueError, TypeError),
         r"read-only|cache")


_unpool_cases()


def test_pooling_options_meet_every_bad_input_the_issue_lists():
    """Issue 23's Reliability list, per op."""
    labels = {op: {label for o, label, *_ in CASES if o == op} for op in OPS}
    for ndim in (1, 2, 3):
        for kind in ("max", "avg"):
            assert {"padding above half the window", f"kernel_size with {ndim + 1} values",
                    f"stride with {ndim + 1} values", "ceil_mode 1"} <= labels[f"{kind}_pool{ndim}d_forward"]
        assert {"dilation zero", "dilation negative", "padding above half the dilated window",
                "a window on padding and gaps only"} <= labels[f"max_pool{ndim}d_forward"]
        assert {"divisor_override zero", "divisor_override negative"} <= labels[f"avg_pool{ndim}d_forward"]
    for kind in ("avg", "max"):
        assert {"output_size negative", "output_size three values"} <= labels[f"adaptive_{kind}_pool2d_forward"]
    assert {"indices float", "indices one column short", "indices negative", "indices one past the plane",
            "indices 2**40", "output_size too large"} <= labels["max_unpool2d_forward"]

# ---- elementwise, linear, losses and the layers on them (issue 21) ---------------------

OPS = OPS + ("relu_forward", "relu_backward", "leaky_relu_forward", "leaky_relu_backward",
             "dropout_forward", "dropout_backward", "linear_forward", "linear_backward")
# ops in the table that are not top-level functions: the losses module and the object layers
OPS_OUTSIDE_TOP_LEVEL = ("losses.softmax_loss", "losses.svm_loss", "layers")

# any-shape arrays: what makes them bad is their type or dtype, not their rank
BAD_ANY_SHAPE = [(label, bad, error, message) for label, bad, error, message in BAD_ARRAYS
                 if "-D" not in label]


def _uniform():
    return np.random.default_rng(3).random((2, 3, 8, 8))


def _readonly(a):
    a.flags.writeable = False
    return a


def _mask_cache(api, kind):
    if kind == "relu":
        return api.relu_forward(_x())[1]
    if kind == "leaky_relu":
        return api.leaky_relu_forward(_x(), 0.1)[1]
    return api.dropout_forward(_x(), 0.5, _uniform())[1]


for _kind, _forward in [("relu", lambda api, x, **kw: api.relu_forward(x, **kw)),
                        ("leaky_relu", lambda api, x, **kw: api.leaky_relu_forward(x, 0.1, **kw)),
                        ("dropout", lambda api, x, **kw: api.dropout_forward(x, 0.5, _uniform(), **kw))]:
    _op = f"{_kind}_forward"
    for label, bad, error, message in BAD_ANY_SHAPE:
        case(_op, f"x {label}", lambda api, bad=bad, f=_forward: f(api, bad(_x())), error,
             message.replace("NAME", "x"))
    case(_op, "backend unknown", lambda api, f=_forward: f(fastconv, _x(), backend="gpu"), ValueError,
         r"unknown backend 'gpu'", ("cython",))
    _backward_op = f"{_kind}_backward"
    _call = lambda api, dout, cache, k=_kind: getattr(api, f"{k}_backward")(dout, cache)  # noqa: E731
    case(_backward_op, "dout one column short",
         lambda api, c=_call, k=_kind: c(api, np.ones((2, 3, 8, 7), np.float32), _mask_cache(api, k)),
         ValueError, r"dout must have the forward output's shape \(2, 3, 8, 8\), got \(2, 3, 8, 7\)")
    case(_backward_op, "dout float64",
         lambda api, c=_call, k=_kind: c(api, np.ones((2, 3, 8, 8)), _mask_cache(api, k)),
         TypeError, r"dout must have the forward output's dtype float32, got float64")
    case(_backward_op, "dout list",
         lambda api, c=_call, k=_kind: c(api, np.ones((2, 3, 8, 8)).tolist(), _mask_cache(api, k)),
         TypeError, r"dout must be a numpy.ndarray")
    _other = "leaky_relu" if _kind != "leaky_relu" else "relu"
    for label, foreign in [("None", lambda api: None), ("CS231n tuple", lambda api: (_x(), _x() > 0)),
                           ("conv cache", lambda api: _conv_cache(api)),
                           (f"{_other} cache", lambda api, o=_other: _mask_cache(api, o))]:
        case(_backward_op, f"cache {label}",
             lambda api, c=_call, f=foreign: c(api, np.ones((2, 3, 8, 8), np.float32), f(api)),
             TypeError, rf"cache must be the MaskCache returned by .*{_kind}_forward")
    case(_backward_op, "tampered cache: mask replaced by a shorter one",
         lambda api, c=_call, k=_kind: c(api, np.ones((2, 3, 8, 8), np.float32),
                                         _tampered(_mask_cache(api, k), mask=np.zeros(3, np.uint8))),
         (ValueError, TypeError), r"cache")

    def _rebuilt_mask(api, c=_call, k=_kind):
        # a new MaskCache around another forward's fields but a one-byte mask: the compiled
        # backward must not read past it
        from fastconv._cache import MaskCache
        good = _mask_cache(api, k)
        forged = MaskCache(k, np.zeros(1, np.uint8), good.order, good.shape, good.dtype, good.parameter,
                           good.backend)
        return c(api, np.ones((2, 3, 8, 8), np.float32), forged)

    case(_backward_op, "tampered cache: rebuilt with a one-byte mask", _rebuilt_mask, (ValueError, TypeError),
         r"cache|mask|shape", ("cython",))

case("relu_forward", "inplace on a read-only x",
     lambda api: fastconv.relu_forward(_readonly(_x()), inplace=True, backend=api.variant),
     ValueError, r"inplace=True writes the result into x, but x .* is read-only", ("cython", "reference"))
for label, alpha in [("negative", -0.5), ("None", None), ("str", "0.1"), ("NaN", float("nan"))]:
    case("leaky_relu_forward", f"alpha {label}", lambda api, a=alpha: api.leaky_relu_forward(_x(), a),
         ValueError, r"alpha must be a number >= 0")
for label, value in [("1", 1.0), ("negative", -0.1), ("None", None), ("NaN", float("nan")), ("True", True)]:
    case("dropout_forward", f"p {label}", lambda api, v=value: api.dropout_forward(_x(), v, _uniform()),
         ValueError, r"p \(the drop probability\) must lie in \[0, 1\)")
case("dropout_forward", "uniform of another shape",
     lambda api: api.dropout_forward(_x(), 0.5, _uniform()[:, :2]), ValueError,
     r"uniform must have x's shape \(2, 3, 8, 8\), got \(2, 2, 8, 8\)")
case("dropout_forward", "uniform float32",
     lambda api: api.dropout_forward(_x(), 0.5, _uniform().astype(np.float32)), TypeError,
     r"uniform must have dtype float64")
case("dropout_forward", "uniform list", lambda api: api.dropout_forward(_x(), 0.5, [0.5] * 4), TypeError,
     r"uniform must be a numpy.ndarray")


def _lx(dtype=np.float32):
    return np.random.default_rng(4).standard_normal((5, 6)).astype(dtype)


def _lw(dtype=np.float32):
    return np.random.default_rng(5).standard_normal((4, 6)).astype(dtype)


def _lb(dtype=np.float32):
    return np.random.default_rng(6).standard_normal(4).astype(dtype)


def _linear_cache(api):
    return api.linear_forward(_lx(), _lw(), _lb())[1]


for label, bad, error, message in BAD_ARRAYS:
    if "-D" in label:
        continue
    case("linear_forward", f"x {label}", lambda api, bad=bad: api.linear_forward(bad(_lx()), _lw(), _lb()),
         error, message.replace("NAME", "x"))
    case("linear_forward", f"w {label}", lambda api, bad=bad: api.linear_forward(_lx(), bad(_lw()), _lb()),
         error, message.replace("NAME", "w"))
case("linear_forward", "x 3-D", lambda api: api.linear_forward(_lx()[None], _lw(), _lb()), ValueError,
     r"x must be 2-D with shape \(N, in_features\)")
case("linear_forward", "x 1-D", lambda api: api.linear_forward(_lx()[0], _lw(), _lb()), ValueError,
     r"x must be 2-D")
case("linear_forward", "w 4-D", lambda api: api.linear_forward(_lx(), _lw()[None, None], _lb()), ValueError,
     r"w must be 2-D with shape \(out_features, in_features\)")
case("linear_forward", "b 2-D", lambda api: api.linear_forward(_lx(), _lw(), _lb()[None]), ValueError,
     r"b must be 1-D")
case("linear_forward", "b one entry short", lambda api: api.linear_forward(_lx(), _lw(), _lb()[:3]),
     ValueError, r"b must have one entry per output: w has 4 rows")
case("linear_forward", "features differ", lambda api: api.linear_forward(_lx()[:, :5], _lw(), _lb()),
     ValueError, r"x has 5 features per row \(shape \(5, 5\)\) but w expects 6")
case("linear_forward", "w float64", lambda api: api.linear_forward(_lx(), _lw(np.float64), _lb()), TypeError,
     r"one dtype.*x: float32, w: float64, b: float32")
case("linear_forward", "backend unknown", lambda api: fastconv.linear_forward(_lx(), _lw(), _lb(), backend=3),
     ValueError, r"unknown backend 3", ("cython",))
case("linear_backward", "dout one column short",
     lambda api: api.linear_backward(np.ones((5, 3), np.float32), _linear_cache(api)), ValueError,
     r"dout must have the forward output's shape \(5, 4\), got \(5, 3\)")
case("linear_backward", "dout 3-D",
     lambda api: api.linear_backward(np.ones((5, 4, 1), np.float32), _linear_cache(api)), ValueError,
     r"dout must be 2-D with shape \(N, out_features\)")
case("linear_backward", "dout float64",
     lambda api: api.linear_backward(np.ones((5, 4)), _linear_cache(api)), TypeError,
     r"dout must have the forward output's dtype float32, got float64")
case("linear_backward", "dout list",
     lambda api: api.linear_backward(np.ones((5, 4)).tolist(), _linear_cache(api)), TypeError,
     r"dout must be a numpy.ndarray")
for label, foreign in [("None", lambda api: None), ("CS231n tuple", lambda api: (_lx(), _lw(), _lb())),
                       ("conv cache", lambda api: _conv_cache(api)),
                       ("relu cache", lambda api: _mask_cache(api, "relu"))]:
    case("linear_backward", f"cache {label}",
         lambda api, f=foreign: api.linear_backward(np.ones((5, 4), np.float32), f(api)), TypeError,
         r"cache must be the LinearCache returned by .*linear_forward")


def _forged_linear(api, x, weight):
    from fastconv._cache import LinearCache
    good = _linear_cache(api)
    return api.linear_backward(np.ones((5, 4), np.float32), LinearCache(x, weight, True, good.backend))


case("linear_backward", "tampered cache: weight replaced", lambda api: api.linear_backward(
    np.ones((5, 4), np.float32), _tampered(_linear_cache(api), weight=np.zeros((4, 60), np.float32))),
     (ValueError, TypeError), r"cache")
case("linear_backward", "tampered cache: rebuilt with narrower x",
     lambda api: _forged_linear(api, np.zeros((5, 2), np.float32), _lw()), ValueError, r"cache")
case("linear_backward", "tampered cache: rebuilt with weight of another dtype",
     lambda api: _forged_linear(api, _lx(), _lw(np.float64)), ValueError, r"cache")
case("linear_backward", "tampered cache: rebuilt with a list",
     lambda api: _forged_linear(api, _lx().tolist(), _lw()), ValueError, r"cache")


class _Losses:
    """softmax_loss / svm_loss as a variant calls them (the twin: fastconv.reference.losses)."""

    def __init__(self, api):
        self.api = api

    def __getattr__(self, name):
        from fastconv import losses
        from fastconv.reference import losses as reference_losses
        if self.api.variant == "twin":
            return getattr(reference_losses, name)
        return lambda *args: getattr(losses, name)(*args, backend=self.api.variant)


def _scores():
    return np.random.default_rng(7).standard_normal((4, 3)).astype(np.float32)


_LABELS = np.array([0, 2, 1, 0])
for _loss in ("softmax_loss", "svm_loss"):
    _op = f"losses.{_loss}"
    _run = lambda api, scores, y, n=_loss: getattr(_Losses(api), n)(scores, y)  # noqa: E731
    case(_op, "scores 1-D", lambda api, r=_run: r(api, _scores()[0], _LABELS[:1]), ValueError,
         r"scores must be 2-D")
    case(_op, "scores int", lambda api, r=_run: r(api, _scores().astype(int), _LABELS), TypeError,
         r"scores must have dtype float32 or float64")
    case(_op, "scores list", lambda api, r=_run: r(api, _scores().tolist(), _LABELS), TypeError,
         r"scores must be a numpy.ndarray")
    case(_op, "no classes", lambda api, r=_run: r(api, _scores()[:, :0], _LABELS), ValueError,
         r"at least one sample and one class")
    case(_op, "y float", lambda api, r=_run: r(api, _scores(), _LABELS.astype(float)), TypeError,
         r"y must hold integer class labels")
    case(_op, "y list", lambda api, r=_run: r(api, _scores(), [0, 1, 2, 0]), TypeError,
         r"y must be a numpy.ndarray")
    case(_op, "y too short", lambda api, r=_run: r(api, _scores(), _LABELS[:3]), ValueError,
         r"y must have shape \(N,\) = \(4,\)")
    case(_op, "label too large", lambda api, r=_run: r(api, _scores(), np.array([0, 3, 1, 0])), ValueError,
         r"labels in y must lie in \[0, 3\)")
    case(_op, "label negative", lambda api, r=_run: r(api, _scores(), np.array([0, -1, 1, 0])), ValueError,
         r"labels in y must lie in \[0, 3\)")
case("losses.svm_loss", "margin negative", lambda api: getattr(_Losses(api), "svm_loss")(_scores(), _LABELS, -1.0),
     ValueError, r"margin must be a number >= 0")


def _layer_cases():
    from fastconv.layers import (
        BatchNorm2d,
        Conv2d,
        Dropout,
        LeakyReLU,
        Linear,
        ReLU,
        Residual,
        Sequential,
    )

    variants = ("cython", "reference")
    makers = {
        "ReLU": lambda api: ReLU(backend=api.variant),
        "ReLU inplace": lambda api: ReLU(inplace=True, backend=api.variant),
        "LeakyReLU": lambda api: LeakyReLU(0.1, backend=api.variant),
        "Dropout": lambda api: Dropout(0.5, rng=0, backend=api.variant),
        "Residual": lambda api: Residual(ReLU(backend=api.variant)),
    }
    for name, make in makers.items():
        layer_name = name.split()[0]
        case("layers", f"{name} x int", lambda api, m=make: m(api).forward(np.ones((2, 3), np.int32)), TypeError,
             rf"{layer_name} input x must have dtype float32 or float64", variants)
        case("layers", f"{name} x list", lambda api, m=make: m(api).forward([1.0, 2.0]), TypeError,
             rf"{layer_name} input x must be a numpy.ndarray", variants)

        def wrong_dout(api, m=make):
            layer = m(api)
            layer.forward(_x())
            return layer.backward(np.ones((2, 3, 8, 7), np.float32))

        case("layers", f"{name} dout of another shape", wrong_dout, ValueError,
             rf"{layer_name}.backward: dout must have the forward output's shape \(2, 3, 8, 8\)", variants)
        case("layers", f"{name} backward before forward",
             lambda api, m=make: m(api).backward(np.ones(3, np.float32)), RuntimeError,
             rf"{layer_name}.backward called before forward", variants)
    case("layers", "ReLU inplace on a read-only x",
         lambda api: ReLU(inplace=True, backend=api.variant).forward(_readonly(_x())), ValueError,
         r"read-only", variants)
    case("layers", "ReLU inplace 'yes'", lambda api: ReLU(inplace="yes"), TypeError,
         r"inplace must be True or False", variants)
    case("layers", "ReLU backend unknown", lambda api: ReLU(backend="fast"), ValueError,
         r"unknown backend 'fast'", ("cython",))
    case("layers", "Linear x of other features",
         lambda api: Linear(6, 4, backend=api.variant).forward(_lx()[:, :5]), ValueError,
         r"Linear expects x of shape \(N, 6\), got \(5, 5\)", variants)
    case("layers", "Linear x float64 for float32 parameters",
         lambda api: Linear(6, 4, backend=api.variant).forward(_lx(np.float64)), TypeError,
         r"Linear has float32 parameters but input x is float64", variants)
    case("layers", "Linear backend unknown", lambda api: Linear(6, 4, backend=None), ValueError,
         r"unknown backend None", ("cython",))
    case("layers", "Residual body not a layer", lambda api: Residual(np.tanh), TypeError,
         r"body must be a fastconv.layers.Layer", ("cython",))
    case("layers", "Residual shapes differ",
         lambda api: Residual(Linear(6, 4, backend=api.variant)).forward(_lx()), ValueError,
         r"the body's output \(\(5, 4\) float32\) and the identity shortcut \(x\) \(\(5, 6\) float32\)", variants)
    case("layers", "Dropout p 1", lambda api: Dropout(1.0), ValueError, r"p \(the drop probability\)", ("cython",))
    case("layers", "Sequential fuse not a bool", lambda api: Sequential([ReLU()], fuse="yes"),
         TypeError, r"fuse must be True or False, got str 'yes'", ("cython",))
    case("layers", "infer of a fused Conv-BN-ReLU, x float64",
         lambda api: Sequential([Conv2d(3, 4, 3, backend=api.variant), BatchNorm2d(4),
                                 ReLU()]).eval().infer(_x().astype(np.float64)), TypeError,
         r"Conv2d has float32 parameters but input x is float64", variants)
    case("layers", "infer of a fused Conv-BN-ReLU, x with 5 channels",
         lambda api: Sequential([Conv2d(3, 4, 3, backend=api.variant), BatchNorm2d(4),
                                 ReLU()]).eval().infer(np.zeros((2, 5, 8, 8), np.float32)),
         ValueError, r"Conv2d expects x of shape \(N, 3, H, W\), got \(2, 5, 8, 8\)", variants)


_layer_cases()


def test_elementwise_linear_and_loss_cases_are_valid_when_repaired():
    """The good inputs of this section are accepted, so each case fails for its one fault."""
    for variant in VARIANTS:
        api = Api(variant)
        for kind in ("relu", "leaky_relu", "dropout"):
            getattr(api, f"{kind}_backward")(np.ones((2, 3, 8, 8), np.float32), _mask_cache(api, kind))
        out, cache = api.linear_forward(_lx(), _lw(), _lb())
        assert out.shape == (5, 4)
        api.linear_backward(np.ones((5, 4), np.float32), cache)
        for loss in ("softmax_loss", "svm_loss"):
            getattr(_Losses(api), loss)(_scores(), _LABELS)

# Tampered caches last: while a backward still trusts them they may corrupt the child's heap,
# which must not take the ordinary cases down with it.
CASE_IDS = sorted(
    (f"{op} | {label} | {variant}" for op, label, _, _, _, variants in CASES for variant in variants),
    key=lambda case_id: "tampered" in case_id,
)
_BY_ID = {f"{op} | {label} | {variant}": (call, variant)
          for op, label, call, _, _, variants in CASES for variant in variants}
_EXPECTED = {f"{op} | {label} | {variant}": (error, message)
             for op, label, _, error, message, variants in CASES for variant in variants}


def run_case(case_id):
    """Run one case here; describe the outcome as a JSON-able dict."""
    call, variant = _BY_ID[case_id]
    try:
        result = call(Api(variant))
    except Exception as error:  # noqa: BLE001 - the outcome is what we report
        return {"raised": [c.__name__ for c in type(error).__mro__], "message": str(error)}
    return {"returned": type(result).__name__}


# ---- running the table in a child -----------------------------------------------------

MARK = "@@case "
WORKER = """
import faulthandler, importlib.util, json
faulthandler.enable()
spec = importlib.util.spec_from_file_location("bad_input_table", {path!r})
table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(table)
with open({ids_path!r}) as handle:  # a file: thousands of ids exceed a command line's limit
    case_ids = json.load(handle)
for case_id in case_ids:
    faulthandler.dump_traceback_later({seconds}, exit=True)
    outcome = table.run_case(case_id)
    faulthandler.cancel_dump_traceback_later()
    print({mark!r} + json.dumps(dict(outcome, id=case_id)), flush=True)
"""


def _describe_death(process):
    code = process.returncode
    if code < 0:
        how = f"killed by {signal.Signals(-code).name}"
    elif "Timeout" in process.stderr:
        how = f"still running after {SECONDS_PER_CASE} s (hung)"
    else:
        how = f"exited with code {code}"
    return f"the child process {how}; its stderr ends:\n{process.stderr[-3000:]}"


@pytest.fixture(scope="module")
def outcomes(run_python, tmp_path_factory):
    """Outcome of every case, running the cases in order and restarting after a crash."""
    results, remaining = {}, list(CASE_IDS)
    ids_path = str(tmp_path_factory.mktemp("bad_inputs") / "case_ids.json")
    while remaining:
        with open(ids_path, "w") as handle:
            json.dump(remaining, handle)
        process = run_python(
            WORKER.format(path=__file__, ids_path=ids_path, seconds=SECONDS_PER_CASE, mark=MARK),
            timeout=SECONDS_PER_CASE * 3 + 2 * len(remaining),
        )
        for line in process.stdout.splitlines():
            if line.startswith(MARK):
                record = json.loads(line[len(MARK):])
                results[record.pop("id")] = record
        remaining = [case_id for case_id in remaining if case_id not in results]
        if remaining:
            # the child stopped inside the first case it did not report
            results[remaining.pop(0)] = {"died": _describe_death(process)}
    return results


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_bad_input_is_rejected_with_a_clear_error(case_id, outcomes):
    outcome = outcomes[case_id]
    error, message = _EXPECTED[case_id]
    expected = tuple(e.__name__ for e in (error if isinstance(error, tuple) else (error,)))
    assert "died" not in outcome, outcome.get("died")
    assert "returned" not in outcome, f"returned a {outcome.get('returned')} instead of raising {expected}"
    assert set(expected) & set(outcome["raised"]), (
        f"raised {outcome['raised'][0]} ({outcome['message']!r}), expected {' or '.join(expected)}"
    )
    assert re.search(message, outcome["message"]), (
        f"message {outcome['message']!r} does not match {message!r}"
    )


def test_every_public_op_is_in_the_table():
    ops_in_table = {op for op, *_ in CASES}
    public = {name for name in fastconv.__all__ if callable(getattr(fastconv, name))}
    assert set(OPS) <= public
    assert ops_in_table == set(OPS) | set(OPS_OUTSIDE_TOP_LEVEL)
    # and every op meets every class of bad argument it takes
    labels = {op: {label for o, label, *_ in CASES if o == op} for op in OPS}
    for op in ("im2col", "conv2d_forward", "max_pool2d_forward", "avg_pool2d_forward"):
        assert {"x 3-D", "x int64", "x complex", "x object", "x list"} <= labels[op]
        assert {"stride zero", "stride negative", "padding negative", "padding 2**62", "backend unknown"} <= labels[op]
    for op in ("conv2d_backward", "max_pool2d_backward", "avg_pool2d_backward"):
        assert {"dout float64", "cache None", "cache CS231n tuple"} <= labels[op]


def test_table_cases_are_valid_when_repaired():
    """The good inputs the table starts from are accepted, so each case fails for its one fault."""
    for variant in VARIANTS:
        api = Api(variant)
        api.im2col(_x(), 3, 1, 1)
        api.col2im(_cols(), (2, 3, 8, 8), 3, 1, 1)
        out, cache = api.conv2d_forward(_x(), _w(), _b(), 1, 1)
        assert out.shape == (2, 4, 8, 8)
        api.conv2d_backward(np.ones(out.shape, np.float32), cache)
        for kind in ("max", "avg"):
            out, cache = getattr(api, f"{kind}_pool2d_forward")(_x(), 2)
            assert out.shape == (2, 3, 4, 4)
            getattr(api, f"{kind}_pool2d_backward")(np.ones(out.shape, np.float32), cache)
        assert isinstance(_conv_cache(api), ConvCache) and isinstance(_pool_cache(api, "max"), PoolCache)
        for kind in ("batch", "layer", "group"):
            out, cache = _NORM_FORWARDS[f"{kind}_norm_forward"](api)
            assert out.shape == (2, 3, 8, 8) and isinstance(cache, NormCache)
            getattr(api, f"{kind}_norm_backward")(np.ones(out.shape, np.float32), cache)
        api.batch_norm_forward(_x(), _c(), _c(), _c(), _c(), training=False)
