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
from fastconv._cache import ConvCache, PoolCache

VARIANTS = ("cython", "reference", "twin")
OPS = ("im2col", "col2im", "conv2d_forward", "conv2d_backward",
       "max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward")
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
    ("gemm-1x1 for 3x3", "gemm-1x1", r"'gemm-1x1' does not support kernel \(3, 3\)"),
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
    from fastconv.layers import Dropout, LeakyReLU, Linear, ReLU, Residual

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
for case_id in {ids!r}:
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
def outcomes(run_python):
    """Outcome of every case, running the cases in order and restarting after a crash."""
    results, remaining = {}, list(CASE_IDS)
    while remaining:
        process = run_python(
            WORKER.format(path=__file__, ids=remaining, seconds=SECONDS_PER_CASE, mark=MARK),
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
