"""Sliding-window geometry, N-d (1-D, 2-D, 3-D): argument normalisation and output sizes, the one place for both.

Every op turns its window arguments into one immutable geometry here, before any kernel runs:
- `ConvGeometry` for convolutions (stride, per-side padding or "same"/"valid", dilation,
  groups, padding mode), and for transposed convolutions as the convolution they are the
  adjoint of (`transposed_geometry`);
- `Window2d` for the plain 2-D windows of im2col/col2im;
- `PoolGeometry` for max/avg pooling, 1-D to 3-D (dilation, ceil_mode), `AdaptiveGeometry` and
  `UnpoolGeometry` for adaptive pooling and max-unpooling.
"""
import math
import numbers
from typing import NamedTuple

import numpy as np

# BLAS takes 32-bit ints for sizes and leading dimensions.
BLAS_INT_MAX = 2**31 - 1
# The largest index (and element count) numpy and the kernels' Py_ssize_t arithmetic hold.
INDEX_MAX = int(np.iinfo(np.intp).max)

# How each spatial rank names its axes, for messages.
_AXES = {1: "(length,)", 2: "(height, width) pair", 3: "(depth, height, width) triple"}
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _is_int(value):
    return isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, (bool, np.bool_))


def as_tuple(value, name, ndim, *, minimum):
    """Normalise an int or a sequence of `ndim` ints to a tuple of `ndim` Python ints.

    Raises TypeError for anything that is not an int or a sequence of ints (bools and floats
    included), ValueError for a wrong length or a value below `minimum`.
    """
    axes = _AXES[ndim]
    # the common cases, checked first: this runs on every call
    if type(value) is int:
        values = (value,) * ndim
    elif type(value) is tuple and len(value) == ndim and all(type(item) is int for item in value):
        values = value
    elif _is_int(value):
        values = (int(value),) * ndim
    elif isinstance(value, (tuple, list, np.ndarray)):
        items = list(np.asarray(value, dtype=object).ravel()) if isinstance(value, np.ndarray) else list(value)
        for item in items:
            if not _is_int(item):
                raise TypeError(f"{name} must be an int or a {axes} of ints, got {value!r}")
        if len(items) != ndim:
            raise ValueError(f"{name} must be an int or a {axes}, got {len(items)} values: {value!r}")
        values = tuple(int(item) for item in items)
    else:
        raise TypeError(f"{name} must be an int or a {axes} of ints, got {type(value).__name__} {value!r}")
    if any(item < minimum for item in values):
        where = "in every dimension" if ndim > 1 else ""
        raise ValueError(f"{name} must be >= {minimum} {where}, got {value!r}".replace("  ", " "))
    return values


def as_pair(value, name, *, minimum):
    """as_tuple for two spatial dimensions: an int or an (h, w) pair of ints."""
    return as_tuple(value, name, 2, minimum=minimum)


def output_size(size, kernel, stride, padding, *, dilation=1, pad_after=None, ceil_mode=False):
    """Sliding-window output length over `size` inputs padded by `padding` before and
    `pad_after` (default: the same) after: floor((size + pads - dilation*(kernel-1) - 1) / stride) + 1.

    ceil_mode rounds up instead, as PyTorch's pooling does, keeping only windows that start
    inside the input or the leading padding.
    """
    pad_after = padding if pad_after is None else pad_after
    span = size + padding + pad_after - dilation * (kernel - 1) - 1
    if not ceil_mode:
        return span // stride + 1
    out = -(-span // stride) + 1
    if (out - 1) * stride >= size + padding:
        out -= 1
    return out


# ---- convolutions ------------------------------------------------------------------------

class ConvGeometry(NamedTuple):
    """Geometry of an N-d convolution of x (N, C, *size) with w (F, C // groups, *kernel).

    Every per-axis field is a tuple with one entry per spatial dimension (1, 2 or 3).
    pad_before / pad_after: zero (or `padding_mode`) padding at the start / end of each axis.
    out: the output's spatial size. (A named tuple: immutable, and quick to make, on a path
    taken on every call.) The 2-D properties (kernel_height, pad_width, ...) serve the 2-D
    algorithms.
    """

    batch: int
    channels: int
    filters: int
    groups: int
    size: tuple
    kernel: tuple
    stride: tuple
    dilation: tuple
    pad_before: tuple
    pad_after: tuple
    out: tuple
    padding_mode: str = "zeros"

    # -- shapes
    @property
    def ndim(self):
        return len(self.size)

    @property
    def input_shape(self):
        return (self.batch, self.channels) + self.size

    @property
    def output_shape(self):
        return (self.batch, self.filters) + self.out

    @property
    def weight_shape(self):
        return (self.filters, self.channels // self.groups) + self.kernel

    @property
    def channels_per_group(self):
        return self.channels // self.groups

    @property
    def filters_per_group(self):
        return self.filters // self.groups

    @property
    def patch(self):
        """Rows of a group's im2col matrix: C/groups * prod(kernel)."""
        return self.channels_per_group * math.prod(self.kernel)

    @property
    def out_pixels(self):
        return math.prod(self.out)

    def macs(self):
        """Multiply-adds of the direct method: N * F * prod(out) * C/groups * prod(kernel)."""
        return self.batch * self.filters * self.out_pixels * self.patch

    # -- properties of the window that algorithms test
    @property
    def symmetric(self):
        return self.pad_before == self.pad_after

    @property
    def undilated(self):
        return all(d == 1 for d in self.dilation)

    @property
    def zero_padded(self):
        """Padding (if any) reads zeros."""
        return self.padding_mode == "zeros" or not any(self.pad_before + self.pad_after)

    @property
    def depthwise(self):
        """One input channel per group (groups == C > 1), any number of filters per channel."""
        return self.groups == self.channels and self.groups > 1

    def as_3d(self):
        """The same convolution with leading unit axes up to three spatial dimensions
        (how the N-d kernels see every convolution)."""
        lead = 3 - self.ndim
        return self._replace(size=(1,) * lead + self.size, kernel=(1,) * lead + self.kernel,
                             stride=(1,) * lead + self.stride, dilation=(1,) * lead + self.dilation,
                             pad_before=(0,) * lead + self.pad_before,
                             pad_after=(0,) * lead + self.pad_after, out=(1,) * lead + self.out)

    def kernel_window(self):
        """The 16 values of _kernels/_tiles.pxd's Window (kernel, stride, padding before and
        dilation of (d, h, w), output size, padding mode) for the N-d im2col kernels."""
        g = self.as_3d()
        mode = 0 if self.zero_padded else PADDING_MODES.index(self.padding_mode)
        return np.array(g.kernel + g.stride + g.pad_before + g.dilation + g.out + (mode,),
                        dtype=np.intp)

    def key(self, dtype):
        """A hashable description of the problem for plan caches and wisdom."""
        return (np.dtype(dtype).name,) + tuple(self)

    # -- 2-D names, for the 2-D algorithms
    height = property(lambda self: self.size[-2])
    width = property(lambda self: self.size[-1])
    kernel_height = property(lambda self: self.kernel[-2])
    kernel_width = property(lambda self: self.kernel[-1])
    stride_height = property(lambda self: self.stride[-2])
    stride_width = property(lambda self: self.stride[-1])
    pad_height = property(lambda self: self.pad_before[-2])
    pad_width = property(lambda self: self.pad_before[-1])
    out_height = property(lambda self: self.out[-2])
    out_width = property(lambda self: self.out[-1])
    kernel_size = property(lambda self: self.kernel)
    padding = property(lambda self: self.pad_before)

    def describe(self):
        """A short text for messages: kernel, stride, padding, dilation, groups."""
        padding = self.pad_before if self.symmetric else tuple(zip(self.pad_before, self.pad_after))
        text = f"kernel {self.kernel}, stride {self.stride}, padding {padding}"
        if not self.undilated:
            text += f", dilation {self.dilation}"
        if self.groups > 1:
            text += f", groups {self.groups}"
        if self.padding_mode != "zeros":
            text += f", padding_mode {self.padding_mode!r}"
        return text


def _padding_sides(padding, ndim, size, kernel, stride, dilation):
    """(pad_before, pad_after) tuples from a conv `padding` argument:
    an int; one value per axis; two per axis (before, after), axis by axis, e.g.
    (top, bottom, left, right) in 2-D; "valid" (none); or "same"."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0,) * ndim, (0,) * ndim
        if padding == "same":
            before, after = [], []
            for length, k, s, d in zip(size, kernel, stride, dilation):
                out = -(-length // s)
                total = max((out - 1) * s + (k - 1) * d + 1 - length, 0)
                before.append(total // 2)
                after.append(total - total // 2)
            return tuple(before), tuple(after)
        raise ValueError(f"padding must be an int, a tuple of ints, 'same' or 'valid', got {padding!r}")
    if isinstance(padding, (tuple, list)) and len(padding) == 2 * ndim and ndim > 0 \
            and all(_is_int(item) for item in padding):
        values = [int(item) for item in padding]
        if any(item < 0 for item in values):
            raise ValueError(f"padding must be >= 0 on every side, got {padding!r}")
        return tuple(values[0::2]), tuple(values[1::2])
    try:
        pads = as_tuple(padding, "padding", ndim, minimum=0)
    except ValueError as error:
        if "values" in str(error):  # a wrong length: say which lengths work
            raise ValueError(
                f"padding must be an int, {ndim} values (one per spatial axis), {2 * ndim} values "
                f"(before and after, axis by axis), 'same' or 'valid'; got {len(padding)} values: "
                f"{padding!r}") from None
        raise
    return pads, pads


def _check_name(value, name, choices):
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def _check_padding_mode(mode, size, pad_before, pad_after):
    """PyTorch's limits: reflect needs padding < the input size, circular <= it."""
    if mode == "zeros":
        return
    for axis, (length, before, after) in enumerate(zip(size, pad_before, pad_after)):
        largest = max(before, after)
        if mode == "reflect" and largest >= length:
            raise ValueError(
                f"padding_mode 'reflect' needs padding < the input size: axis {axis} has size "
                f"{length} and padding ({before}, {after}) (input spatial shape {size})")
        if mode == "circular" and largest > length:
            raise ValueError(
                f"padding_mode 'circular' needs padding <= the input size: axis {axis} has size "
                f"{length} and padding ({before}, {after}) (input spatial shape {size})")
        if mode == "replicate" and largest > 0 and length == 0:
            raise ValueError(f"padding_mode 'replicate' needs a non-empty input, axis {axis} is empty")


# conv_geometry's results by their arguments, where every window argument is a plain int,
# str or tuple of ints (so that equal keys mean equal arguments: True == 1 and 2.0 == 2 hash
# alike, but they are errors, and never cached; the shapes are taken by int() either way, so
# equal shapes give the same geometry). A layer calls with the same arguments every time;
# validating them anew took 12 us of a 70 us call on a small convolution (docs/performance.md,
# "Per-call overhead"). The geometry is an immutable tuple, so one object serves every call.
_GEOMETRIES = {}
_GEOMETRY_CACHE_SIZE = 1024  # distinct problems kept; the cache starts over when full


def _plain(value):
    kind = type(value)
    return kind is int or kind is str or (kind is tuple and all(type(v) is int for v in value))


def conv_geometry(x_shape, w_shape, stride=1, padding=0, *, dilation=1, groups=1,
                  padding_mode="zeros", kernel_name="kernel (w.shape[2:])", input_name="x"):
    """Validate and normalise a convolution's window arguments against x's and w's shapes.

    x_shape (N, C, *size), w_shape (F, C // groups, *kernel), 1 to 3 spatial axes. Raises
    ValueError / TypeError naming the argument and the shapes.
    """
    key = None
    if (type(x_shape) is tuple and type(w_shape) is tuple and _plain(stride) and _plain(padding)
            and _plain(dilation) and type(groups) is int and type(padding_mode) is str):
        key = (x_shape, w_shape, stride, padding, dilation, groups, padding_mode, kernel_name,
               input_name)
        try:
            known = _GEOMETRIES.get(key)
        except TypeError:  # an unhashable dimension: validated below, never cached
            known = key = None
        if known is not None:
            return known
    geometry = _conv_geometry(x_shape, w_shape, stride, padding, dilation, groups, padding_mode,
                              kernel_name, input_name)
    if key is not None:
        if len(_GEOMETRIES) >= _GEOMETRY_CACHE_SIZE:
            _GEOMETRIES.clear()
        _GEOMETRIES[key] = geometry
    return geometry


def _conv_geometry(x_shape, w_shape, stride, padding, dilation, groups, padding_mode,
                   kernel_name, input_name):
    ndim = len(x_shape) - 2
    batch, channels = int(x_shape[0]), int(x_shape[1])
    size = tuple(int(s) for s in x_shape[2:])
    filters = int(w_shape[0])
    kernel = as_tuple(tuple(int(k) for k in w_shape[2:]), kernel_name, ndim, minimum=1)
    if not _is_int(groups):
        raise TypeError(f"groups must be an int, got {type(groups).__name__} {groups!r}")
    groups = int(groups)
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups}")
    if channels % groups or filters % groups:
        raise ValueError(
            f"groups ({groups}) must divide both the channels of x ({channels}, shape "
            f"{tuple(x_shape)}) and the filters of w ({filters}, shape {tuple(w_shape)})")
    if int(w_shape[1]) != channels // groups:
        if groups == 1:
            raise ValueError(
                f"channel mismatch: x has {channels} channels (shape {tuple(x_shape)}) but w "
                f"expects {w_shape[1]} (shape {tuple(w_shape)})")
        raise ValueError(
            f"channel mismatch: x has {channels} channels (shape {tuple(x_shape)}) in {groups} "
            f"groups, so w.shape[1] must be {channels} // {groups} = {channels // groups}, but w "
            f"has {w_shape[1]} channels per group (shape {tuple(w_shape)})")
    stride = as_tuple(stride, "stride", ndim, minimum=1)
    dilation = as_tuple(dilation, "dilation", ndim, minimum=1)
    padding_mode = _check_name(padding_mode, "padding_mode", PADDING_MODES)
    pad_before, pad_after = _padding_sides(padding, ndim, size, kernel, stride, dilation)
    _check_indexable(size, stride, pad_before, pad_after, dilation)
    padded = tuple(s + b + a for s, b, a in zip(size, pad_before, pad_after))
    span = tuple((k - 1) * d + 1 for k, d in zip(kernel, dilation))
    if any(k > p for k, p in zip(span, padded)):
        dilated = f" (dilated by {dilation}: {span})" if any(d > 1 for d in dilation) else ""
        raise ValueError(
            f"{kernel_name} {kernel}{dilated} is larger than the padded input: {input_name} has "
            f"spatial shape {size} and padding {_describe_padding(pad_before, pad_after)} gives {padded}")
    _check_padding_mode(padding_mode, size, pad_before, pad_after)
    out = tuple((p - k) // s + 1 for p, k, s in zip(padded, span, stride))
    _check_plane(out, padding)
    return ConvGeometry(batch, channels, filters, groups, size, kernel, stride, dilation,
                        pad_before, pad_after, out, padding_mode)


def transposed_geometry(x_shape, w_shape, stride=1, padding=0, output_padding=0, *, dilation=1,
                        groups=1):
    """The geometry of a transposed convolution of x (N, C, *size) with w (C, F // groups,
    *kernel), given as the convolution it is the adjoint of: that convolution maps the
    transposed output (N, F, *out_t) back to x's shape, with w as its weight (filters C,
    channels F), so `.size` is the transposed output's size and `.out` is x's.

    out_t = (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1,
    with output_padding < max(stride, dilation) (PyTorch's rule). The adjoint convolution's
    trailing padding may be negative: its last output_padding rows are read by no window.
    """
    ndim = len(x_shape) - 2
    batch, channels = int(x_shape[0]), int(x_shape[1])
    size = tuple(int(s) for s in x_shape[2:])
    kernel = tuple(int(k) for k in w_shape[2:])
    if not _is_int(groups):
        raise TypeError(f"groups must be an int, got {type(groups).__name__} {groups!r}")
    groups = int(groups)
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups}")
    if int(w_shape[0]) != channels:
        raise ValueError(
            f"channel mismatch: x has {channels} channels (shape {tuple(x_shape)}) but w, shaped "
            f"(C, F // groups, *kernel), has {w_shape[0]} in w.shape[0] (shape {tuple(w_shape)})")
    if channels % groups:
        raise ValueError(f"groups ({groups}) must divide the channels of x ({channels}, shape "
                         f"{tuple(x_shape)})")
    filters = int(w_shape[1]) * groups
    stride = as_tuple(stride, "stride", ndim, minimum=1)
    dilation = as_tuple(dilation, "dilation", ndim, minimum=1)
    if isinstance(padding, str):
        raise ValueError(f"padding of a transposed convolution must be an int or a tuple of "
                         f"ints, got {padding!r}")
    pads = as_tuple(padding, "padding", ndim, minimum=0)
    extra = as_tuple(output_padding, "output_padding", ndim, minimum=0)
    for axis, (e, s, d) in enumerate(zip(extra, stride, dilation)):
        if e >= max(s, d):
            raise ValueError(
                f"output_padding {extra} must be smaller than stride {stride} or dilation "
                f"{dilation} in every axis (axis {axis}: {e} >= max({s}, {d}))")
    _check_indexable(size, stride, pads, pads, dilation)
    if any(n < 1 for n in size):
        # PyTorch refuses these too; the formula below would invent an output from nothing
        raise ValueError(f"x of a transposed convolution needs every spatial size >= 1, got "
                         f"spatial shape {size} (shape {tuple(x_shape)})")
    out_t = tuple((n - 1) * s - 2 * p + d * (k - 1) + e + 1
                  for n, s, p, d, k, e in zip(size, stride, pads, dilation, kernel, extra))
    if any(o < 1 for o in out_t):
        raise ValueError(
            f"the transposed convolution's output would have spatial shape {out_t}: padding "
            f"{pads} is too large for x of spatial shape {size}, kernel {kernel}, stride {stride}")
    _check_plane(out_t, padding)
    pad_after = tuple(p - e for p, e in zip(pads, extra))
    return ConvGeometry(batch, filters, channels, groups, out_t, kernel, stride, dilation, pads,
                        pad_after, size, "zeros")


def _describe_padding(before, after):
    return before if before == after else tuple(zip(before, after))


# ---- 2-D windows (im2col / col2im, pooling) ----------------------------------------------

class Window2d(NamedTuple):
    """Geometry of a 2-D sliding window over an (N, C, H, W) input.

    Everything a kernel needs besides the data: input sizes, window, stride, padding
    and the resulting output sizes, all plain ints. (A named tuple: immutable, and
    quicker to make than a frozen dataclass, on a path taken on every call.)
    """

    batch: int
    channels: int
    height: int
    width: int
    kernel_height: int
    kernel_width: int
    stride_height: int
    stride_width: int
    pad_height: int
    pad_width: int
    out_height: int
    out_width: int

    @property
    def input_shape(self):
        return (self.batch, self.channels, self.height, self.width)

    @property
    def kernel_size(self):
        return (self.kernel_height, self.kernel_width)

    @property
    def stride(self):
        return (self.stride_height, self.stride_width)

    @property
    def padding(self):
        return (self.pad_height, self.pad_width)


def window2d(input_shape, kernel_size, stride, padding, *, kernel_name="kernel_size", input_name="x"):
    """Validate and normalise window arguments against an (N, C, H, W) input shape.

    `kernel_size`, `stride` and `padding` take an int or an (h, w) pair. Raises ValueError
    when the window does not fit the padded input, naming the shapes.
    """
    batch, channels, height, width = map(int, input_shape)
    kernel_height, kernel_width = as_pair(kernel_size, kernel_name, minimum=1)
    stride_height, stride_width = as_pair(stride, "stride", minimum=1)
    pad_height, pad_width = as_pair(padding, "padding", minimum=0)
    if kernel_height > height + 2 * pad_height or kernel_width > width + 2 * pad_width:
        raise ValueError(
            f"{kernel_name} ({kernel_height}, {kernel_width}) is larger than the padded input: "
            f"{input_name} has spatial shape ({height}, {width}) and padding "
            f"({pad_height}, {pad_width}) gives ({height + 2 * pad_height}, {width + 2 * pad_width})"
        )
    out_height = output_size(height, kernel_height, stride_height, pad_height)
    out_width = output_size(width, kernel_width, stride_width, pad_width)
    _check_indexable((height, width), (stride_height, stride_width), (pad_height, pad_width),
                     (pad_height, pad_width))
    _check_plane((out_height, out_width), (pad_height, pad_width))
    return Window2d(
        batch, channels, height, width,
        kernel_height, kernel_width,
        stride_height, stride_width,
        pad_height, pad_width,
        out_height, out_width,
    )


def _check_indexable(size, stride, pad_before, pad_after, dilation=None):
    """Raise ValueError, naming the argument, for a stride, dilation or padding no array could
    index: positions in the padded input must fit the kernels' signed 64-bit (Py_ssize_t)
    index arithmetic; otherwise numpy or Cython would fail later with a message that names
    neither argument."""
    if any(s > INDEX_MAX for s in stride):
        raise ValueError(f"stride {stride} is too large: at most {INDEX_MAX} in each dimension")
    if dilation is not None and any(d > INDEX_MAX // 4 for d in dilation):
        raise ValueError(f"dilation {dilation} is too large: at most {INDEX_MAX // 4} in each dimension")
    padded = tuple(s + b + a for s, b, a in zip(size, pad_before, pad_after))
    if any(p > INDEX_MAX for p in padded):
        raise ValueError(
            f"padding {_describe_padding(pad_before, pad_after)} is too large: it makes a padded "
            f"input of {padded}, beyond what an array can index ({INDEX_MAX} elements)")


def _check_plane(out, padding):
    """The output plane must fit an array."""
    if math.prod(out) > INDEX_MAX:
        raise ValueError(
            f"padding {padding} is too large: it makes an output of {out} per plane, beyond what "
            f"an array can index ({INDEX_MAX} elements)")


# ---- pooling -----------------------------------------------------------------------------

_EXTENT = {1: "a non-zero length", 2: "a non-zero height and width",
           3: "a non-zero depth, height and width"}


class PoolGeometry(NamedTuple):
    """Geometry of an N-d max or average pooling of x (N, C, *size) to (N, C, *out).

    Every per-axis field is a tuple with one entry per spatial dimension (1, 2 or 3).
    Window `o` along an axis reads the inputs o*stride - padding + j*dilation, j < kernel,
    that lie inside [0, size): padding is never read. ceil_mode: `out` was rounded up (the
    last window may run past the trailing padding). The 2-D properties (height, out_width,
    ...) name the last two axes.
    """

    batch: int
    channels: int
    size: tuple
    kernel: tuple
    stride: tuple
    dilation: tuple
    padding: tuple
    out: tuple
    ceil_mode: bool = False

    @property
    def ndim(self):
        return len(self.size)

    @property
    def input_shape(self):
        return (self.batch, self.channels) + self.size

    @property
    def output_shape(self):
        return (self.batch, self.channels) + self.out

    @property
    def planes(self):
        return self.batch * self.channels

    @property
    def plane_size(self):
        return math.prod(self.size)

    @property
    def undilated(self):
        return all(d == 1 for d in self.dilation)

    def as_3d(self):
        """The same pooling with leading unit axes up to three spatial dimensions (how the
        kernels see every pooling: (planes, D, H, W))."""
        lead = 3 - self.ndim
        return self._replace(size=(1,) * lead + self.size, kernel=(1,) * lead + self.kernel,
                             stride=(1,) * lead + self.stride, dilation=(1,) * lead + self.dilation,
                             padding=(0,) * lead + self.padding, out=(1,) * lead + self.out)

    def describe(self):
        text = f"kernel_size {self.kernel}, stride {self.stride}, padding {self.padding}"
        if not self.undilated:
            text += f", dilation {self.dilation}"
        if self.ceil_mode:
            text += ", ceil_mode"
        return text

    # -- 2-D names
    height = property(lambda self: self.size[-2])
    width = property(lambda self: self.size[-1])
    kernel_height = property(lambda self: self.kernel[-2])
    kernel_width = property(lambda self: self.kernel[-1])
    stride_height = property(lambda self: self.stride[-2])
    stride_width = property(lambda self: self.stride[-1])
    pad_height = property(lambda self: self.padding[-2])
    pad_width = property(lambda self: self.padding[-1])
    out_height = property(lambda self: self.out[-2])
    out_width = property(lambda self: self.out[-1])
    kernel_size = property(lambda self: self.kernel)


def check_flag(value, name):
    """A bool (or numpy bool) as a Python bool; TypeError for anything else (0 and 1 included)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return bool(value)


def pool_geometry(x_shape, kernel_size, stride=None, padding=0, *, dilation=1, ceil_mode=False,
                  input_name="x"):
    """Validate and normalise a pooling's window arguments against x's shape (N, C, *size).

    `kernel_size`, `stride` (None: the kernel size), `padding` and `dilation` take an int or
    one int per spatial axis. PyTorch's rules: padding at most half of kernel_size (of the
    undilated window) in each axis; ceil_mode keeps a last window only if it starts inside
    the input or the leading padding. One rule of our own: every window must hold at least
    one input element (a dilated window can otherwise fall wholly on padding and gaps,
    where PyTorch returns -inf and an index outside the plane). Raises ValueError /
    TypeError naming the argument and the shapes.
    """
    ndim = len(x_shape) - 2
    batch, channels = int(x_shape[0]), int(x_shape[1])
    size = tuple(int(s) for s in x_shape[2:])
    if 0 in size:
        raise ValueError(f"{input_name} must have {_EXTENT[ndim]}, got shape {tuple(x_shape)}")
    kernel = as_tuple(kernel_size, "kernel_size", ndim, minimum=1)
    stride = kernel if stride is None else as_tuple(stride, "stride", ndim, minimum=1)
    padding = as_tuple(padding, "padding", ndim, minimum=0)
    dilation = as_tuple(dilation, "dilation", ndim, minimum=1)
    ceil_mode = ceil_mode if type(ceil_mode) is bool else check_flag(ceil_mode, "ceil_mode")
    if max(stride + dilation) > 2**40 or max(size) + 2 * max(padding) > 2**40:
        _check_indexable(size, stride, padding, padding, dilation)  # only large values can fail
    # one loop over the axes, checks in the order of the messages below: this runs on every call
    out = []
    padding_fits = True
    for length, k, st, p, d in zip(size, kernel, stride, padding, dilation):
        padding_fits = padding_fits and 2 * p <= k
        if (k - 1) * d + 1 > length + 2 * p:
            span = tuple((k - 1) * d + 1 for k, d in zip(kernel, dilation))
            padded = tuple(s + 2 * p for s, p in zip(size, padding))
            dilated = f" (dilated by {dilation}: {span})" if any(d > 1 for d in dilation) else ""
            raise ValueError(
                f"kernel_size {kernel}{dilated} is larger than the padded input: {input_name} has "
                f"spatial shape {size} and padding {padding} gives {padded}")
        out.append(output_size(length, k, st, p, dilation=d, ceil_mode=ceil_mode))
    if not padding_fits:
        where = " in each dimension" if ndim > 1 else ""
        raise ValueError(f"padding {padding} must be at most half of kernel_size {kernel}{where}")
    out = tuple(out)
    _check_plane(out, padding)
    for axis, (length, st, p, d) in enumerate(zip(size, stride, padding, dilation)):
        # Windows starting at -p..-1 read first at (start mod d); windows starting inside
        # the input read their start. With p <= kernel // 2, only the former can miss.
        for index in range(min(-(-p // st), out[axis]) if d > 1 else 0):
            if (index * st - p) % d >= length:
                raise ValueError(
                    f"window {index} along spatial axis {axis} holds no input element: with "
                    f"{input_name} of spatial shape {size}, kernel_size {kernel}, stride {stride}, "
                    f"padding {padding} and dilation {dilation} it reads only padding and the "
                    "gaps of the dilation")
    return PoolGeometry(batch, channels, size, kernel, stride, dilation, padding, out, ceil_mode)


def pool_window_count(index, size, kernel, stride, padding, *, count_include_pad):
    """The number of elements average pooling divides window `index` of one axis by (PyTorch's
    rule): the window from index*stride - padding, cut at the end of the trailing padding
    (so a ceil_mode window's overhang past it never counts), and, without count_include_pad,
    cut to the input itself."""
    start = index * stride - padding
    stop = min(start + kernel, size + padding)
    if not count_include_pad:
        start, stop = max(start, 0), min(stop, size)
    return stop - start


class AdaptiveGeometry(NamedTuple):
    """Geometry of an adaptive pooling of x (N, C, *size) to (N, C, *out): output cell i of an
    axis covers inputs [floor(i*size/out), ceil((i+1)*size/out)) (PyTorch's rule)."""

    batch: int
    channels: int
    size: tuple
    out: tuple

    ndim = property(lambda self: len(self.size))
    input_shape = property(lambda self: (self.batch, self.channels) + self.size)
    output_shape = property(lambda self: (self.batch, self.channels) + self.out)
    planes = property(lambda self: self.batch * self.channels)
    plane_size = property(lambda self: math.prod(self.size))

    @property
    def is_global(self):
        """One output cell per plane: the window is the whole plane."""
        return all(o == 1 for o in self.out)

    def describe(self):
        return f"output_size {self.out}"


def adaptive_range(index, size, out):
    """Inputs [start, stop) of output cell `index` of an adaptive pooling of `size` to `out`."""
    return (index * size) // out, -(-((index + 1) * size) // out)


def adaptive_geometry(x_shape, output_size, *, input_name="x"):
    """Validate an adaptive pooling's output_size (an int or one int per spatial axis, >= 0;
    0 gives an empty output, as in PyTorch; larger than the input is allowed, windows then
    overlap) against x's shape (N, C, *size), whose spatial sizes must be non-zero."""
    ndim = len(x_shape) - 2
    batch, channels = int(x_shape[0]), int(x_shape[1])
    size = tuple(int(s) for s in x_shape[2:])
    out = as_tuple(output_size, "output_size", ndim, minimum=0)
    if any(s == 0 for s in size):
        raise ValueError(f"{input_name} must have {_EXTENT[ndim]}, got shape {tuple(x_shape)}")
    if any(s * o > INDEX_MAX for s, o in zip(size, out)):
        raise ValueError(f"output_size {out} is too large for {input_name} of spatial shape {size}: "
                         f"size * output_size must stay within {INDEX_MAX}")
    _check_plane(out, output_size)
    return AdaptiveGeometry(batch, channels, size, out)


class UnpoolGeometry(NamedTuple):
    """Geometry of a max-unpooling of x (N, C, *size) to (N, C, *out): every x element goes
    to the flat position its index names in its output plane (prod(out) elements)."""

    batch: int
    channels: int
    size: tuple
    kernel: tuple
    stride: tuple
    padding: tuple
    out: tuple

    ndim = property(lambda self: len(self.size))
    input_shape = property(lambda self: (self.batch, self.channels) + self.size)
    output_shape = property(lambda self: (self.batch, self.channels) + self.out)
    planes = property(lambda self: self.batch * self.channels)
    out_plane_size = property(lambda self: math.prod(self.out))

    def describe(self):
        return f"kernel_size {self.kernel}, stride {self.stride}, padding {self.padding}"


def unpool_geometry(x_shape, kernel_size, stride=None, padding=0, output_size=None, *,
                    input_name="x"):
    """Validate a max-unpooling's arguments against x's shape (N, C, *size).

    The default output size per axis is (size - 1) * stride - 2 * padding + kernel_size (the
    input of the max pooling that gave x). `output_size` (PyTorch's rule) may instead give
    the spatial sizes, or the whole (N, C, *spatial) shape, each strictly between the
    default minus and plus the stride.
    """
    ndim = len(x_shape) - 2
    batch, channels = int(x_shape[0]), int(x_shape[1])
    size = tuple(int(s) for s in x_shape[2:])
    kernel = as_tuple(kernel_size, "kernel_size", ndim, minimum=1)
    stride = kernel if stride is None else as_tuple(stride, "stride", ndim, minimum=1)
    padding = as_tuple(padding, "padding", ndim, minimum=0)
    _check_indexable(size, stride, padding, padding)
    default = tuple((s - 1) * st - 2 * p + k for s, st, p, k in zip(size, stride, padding, kernel))
    if output_size is None:
        out = default
        if any(o < 1 for o in out):
            raise ValueError(
                f"padding {padding} is too large: max-unpooling {input_name} of spatial shape "
                f"{size} with kernel_size {kernel} and stride {stride} gives an output of {out}")
    else:
        if not isinstance(output_size, (tuple, list)) or not all(_is_int(s) for s in output_size):
            raise TypeError(f"output_size must be None or a tuple of ints, got {output_size!r}")
        if len(output_size) == ndim + 2:
            output_size = output_size[2:]
        if len(output_size) != ndim:
            raise ValueError(
                f"output_size must have {ndim} values (the spatial sizes) or {ndim + 2} (the whole "
                f"shape), got {len(output_size)}: {output_size!r}")
        out = tuple(int(s) for s in output_size)
        for axis, (o, d, st) in enumerate(zip(out, default, stride)):
            if not d - st < o < d + st:
                raise ValueError(
                    f"output_size {out} must lie strictly between {d - st} and {d + st} along "
                    f"spatial axis {axis} (the default size {d} minus and plus the stride {st})")
    _check_plane(out, padding)
    return UnpoolGeometry(batch, channels, size, kernel, stride, padding, out)
