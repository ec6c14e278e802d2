"""Pooling layers (max, average, adaptive, global, unpooling; 1-D to 3-D) on top of the functional pooling ops."""
from .. import _backend
from .. import pool as ops
from .._geometry import as_tuple
from .._validate import check_divisor_override, check_flag
from .base import Layer


class _Pool(Layer):
    """Shared body of the layers without parameters: each subclass says how to call its
    forward op; backward calls the matching backward op on the saved cache."""

    _backward_op = None

    def __init__(self, backend):
        super().__init__()
        self.backend = _backend.check_name(backend, "the backend argument")

    def backward(self, dout, *, need_dx=True):
        """dx of the input's shape, or None with need_dx=False (nothing else to compute: no
        parameters)."""
        cache = self._saved()
        if not need_dx:
            return None
        return self._backward_op(dout, cache)


class _WindowPool(_Pool):
    """Max and average pooling with kernel_size, stride, padding in `ndim` spatial axes."""

    ndim = 2
    _defaults = {}

    def __init__(self, kernel_size, stride=None, padding=0, *, backend="auto", **options):
        super().__init__(backend)
        self.kernel_size = as_tuple(kernel_size, "kernel_size", self.ndim, minimum=1)
        self.stride = (self.kernel_size if stride is None
                       else as_tuple(stride, "stride", self.ndim, minimum=1))
        self.padding = as_tuple(padding, "padding", self.ndim, minimum=0)
        self._options = options

    def __repr__(self):
        changed = "".join(f", {name}={value!r}" for name, value in self._options.items()
                          if value != self._defaults[name])
        return (f"{type(self).__name__}(kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}{changed})")


class _MaxPool(_WindowPool):
    _defaults = {"dilation": 1, "ceil_mode": False, "return_indices": False}

    def __init__(self, kernel_size, stride=None, padding=0, *, dilation=1, ceil_mode=False,
                 return_indices=False, backend="auto"):
        super().__init__(kernel_size, stride, padding, backend=backend,
                         dilation=as_tuple(dilation, "dilation", self.ndim, minimum=1),
                         ceil_mode=check_flag(ceil_mode, "ceil_mode"),
                         return_indices=check_flag(return_indices, "return_indices"))
        if self._options["dilation"] == (1,) * self.ndim:
            self._options["dilation"] = 1
        self.dilation = as_tuple(dilation, "dilation", self.ndim, minimum=1)
        self.ceil_mode = self._options["ceil_mode"]
        self.return_indices = self._options["return_indices"]

    def forward(self, x):
        """out, or (out, indices) with return_indices (indices: int64, out's shape, flat
        positions in each input plane, for MaxUnpool2d)."""
        result = self._forward_op(x, self.kernel_size, self.stride, self.padding,
                                  dilation=self.dilation, ceil_mode=self.ceil_mode,
                                  return_indices=self.return_indices, backend=self.backend)
        self._cache = result[-1]
        return result[:-1] if self.return_indices else result[0]


class _AvgPool(_WindowPool):
    _defaults = {"ceil_mode": False, "count_include_pad": True, "divisor_override": None}

    def __init__(self, kernel_size, stride=None, padding=0, *, ceil_mode=False,
                 count_include_pad=True, divisor_override=None, backend="auto"):
        super().__init__(kernel_size, stride, padding, backend=backend,
                         ceil_mode=check_flag(ceil_mode, "ceil_mode"),
                         count_include_pad=check_flag(count_include_pad, "count_include_pad"),
                         divisor_override=check_divisor_override(divisor_override))
        self.ceil_mode = self._options["ceil_mode"]
        self.count_include_pad = self._options["count_include_pad"]
        self.divisor_override = self._options["divisor_override"]

    def forward(self, x):
        out, self._cache = self._forward_op(
            x, self.kernel_size, self.stride, self.padding, ceil_mode=self.ceil_mode,
            count_include_pad=self.count_include_pad, divisor_override=self.divisor_override,
            backend=self.backend)
        return out


_MAX_DOC = """{rank} max pooling layer; padding never wins a max. No parameters.

    Parameters
    ----------
    kernel_size : int or {axes}
    stride : int or {axes}, default kernel_size (windows may overlap or leave gaps)
    padding : int or {axes}, at most half of kernel_size in each dimension
    dilation : int or {axes}, keyword-only, default 1
    ceil_mode : bool, keyword-only: round the output size up (PyTorch's rule)
    return_indices : bool, keyword-only: forward returns (out, indices)
    backend : "auto", "cython" or "reference", passed to {op}_forward.

    forward : x {layout}, float32 or float64 -> out {out_layout} of x's dtype (see
        fastconv.{op}_forward), or (out, indices) with return_indices.
    backward : dout {out_layout} -> dx {layout}; each gradient goes to its window's first
        maximum. backward(dout, need_dx=False) returns None.
    """

_AVG_DOC = """{rank} average pooling layer; padding counts as zeros. No parameters.

    Parameters
    ----------
    kernel_size : int or {axes}
    stride : int or {axes}, default kernel_size
    padding : int or {axes}, at most half of kernel_size in each dimension
    ceil_mode : bool, keyword-only: round the output size up (PyTorch's rule)
    count_include_pad : bool, keyword-only, default True: padding counts in the divisor
    divisor_override : None or int >= 1, keyword-only: the divisor of every window
    backend : "auto", "cython" or "reference", passed to {op}_forward.

    forward : x {layout}, float32 or float64 -> out {out_layout} of x's dtype (see
        fastconv.{op}_forward for the divisor rule).
    backward : dout {out_layout} -> dx {layout}. backward(dout, need_dx=False) returns None.
    """

_RANKS = {
    1: dict(rank="1-D", axes="(length,) tuple", layout="(N, C, L)", out_layout="(N, C, OL)"),
    2: dict(rank="2-D", axes="(h, w) pair", layout="(N, C, H, W)", out_layout="(N, C, OH, OW)"),
    3: dict(rank="3-D", axes="(d, h, w) triple", layout="(N, C, D, H, W)",
            out_layout="(N, C, OD, OH, OW)"),
}


class MaxPool1d(_MaxPool):
    __doc__ = _MAX_DOC.format(op="max_pool1d", **_RANKS[1])
    ndim = 1
    _forward_op = staticmethod(ops.max_pool1d_forward)
    _backward_op = staticmethod(ops.max_pool1d_backward)


class MaxPool2d(_MaxPool):
    __doc__ = _MAX_DOC.format(op="max_pool2d", **_RANKS[2])
    ndim = 2
    _forward_op = staticmethod(ops.max_pool2d_forward)
    _backward_op = staticmethod(ops.max_pool2d_backward)


class MaxPool3d(_MaxPool):
    __doc__ = _MAX_DOC.format(op="max_pool3d", **_RANKS[3])
    ndim = 3
    _forward_op = staticmethod(ops.max_pool3d_forward)
    _backward_op = staticmethod(ops.max_pool3d_backward)


class AvgPool1d(_AvgPool):
    __doc__ = _AVG_DOC.format(op="avg_pool1d", **_RANKS[1])
    ndim = 1
    _forward_op = staticmethod(ops.avg_pool1d_forward)
    _backward_op = staticmethod(ops.avg_pool1d_backward)


class AvgPool2d(_AvgPool):
    __doc__ = _AVG_DOC.format(op="avg_pool2d", **_RANKS[2])
    ndim = 2
    _forward_op = staticmethod(ops.avg_pool2d_forward)
    _backward_op = staticmethod(ops.avg_pool2d_backward)


class AvgPool3d(_AvgPool):
    __doc__ = _AVG_DOC.format(op="avg_pool3d", **_RANKS[3])
    ndim = 3
    _forward_op = staticmethod(ops.avg_pool3d_forward)
    _backward_op = staticmethod(ops.avg_pool3d_backward)


class AdaptiveAvgPool2d(_Pool):
    """2-D adaptive average pooling layer to a fixed output size. No parameters.

    Parameters
    ----------
    output_size : int or (OH, OW) pair of ints >= 0
    backend : "auto", "cython" or "reference", passed to adaptive_avg_pool2d_forward.

    forward : x (N, C, H, W) -> out (N, C, OH, OW): cell (i, j) the mean of rows
        [floor(i*H/OH), ceil((i+1)*H/OH)) and the columns likewise (PyTorch's rule).
    backward : dout (N, C, OH, OW) -> dx (N, C, H, W); None with need_dx=False.
    """

    _backward_op = staticmethod(ops.adaptive_avg_pool2d_backward)
    _forward_op = staticmethod(ops.adaptive_avg_pool2d_forward)

    def __init__(self, output_size, *, backend="auto"):
        super().__init__(backend)
        self.output_size = as_tuple(output_size, "output_size", 2, minimum=0)

    def forward(self, x):
        out, self._cache = self._forward_op(x, self.output_size, backend=self.backend)
        return out

    def __repr__(self):
        return f"{type(self).__name__}(output_size={self.output_size})"


class AdaptiveMaxPool2d(AdaptiveAvgPool2d):
    """2-D adaptive max pooling layer to a fixed output size. No parameters.

    Parameters
    ----------
    output_size : int or (OH, OW) pair of ints >= 0
    backend : "auto", "cython" or "reference", passed to adaptive_max_pool2d_forward.

    forward : x (N, C, H, W) -> out (N, C, OH, OW): the max of each adaptive window.
    backward : dout (N, C, OH, OW) -> dx (N, C, H, W): each gradient to its window's first
        maximum (last NaN); None with need_dx=False.
    """

    _backward_op = staticmethod(ops.adaptive_max_pool2d_backward)
    _forward_op = staticmethod(ops.adaptive_max_pool2d_forward)


class GlobalAvgPool2d(AdaptiveAvgPool2d):
    """Global average pooling layer (ResNet's head): the mean of each (H, W) plane. No parameters.

    Parameters
    ----------
    backend : "auto", "cython" or "reference"

    forward : x (N, C, H, W) -> out (N, C, 1, 1) (follow it with Flatten for (N, C)); a
        compiled per-plane sum over contiguous memory, threads over planes.
    backward : dout (N, C, 1, 1) -> dx (N, C, H, W), each plane dout / (H*W).
    """

    def __init__(self, *, backend="auto"):
        super().__init__(1, backend=backend)

    def __repr__(self):
        return f"{type(self).__name__}()"


class MaxUnpool2d(_Pool):
    """2-D max-unpooling layer: the inverse placement of a MaxPool2d with return_indices.

    Parameters
    ----------
    kernel_size, stride (default kernel_size), padding : int or (h, w) pair, those of the
        max pooling being undone.
    backend : "auto", "cython" or "reference", passed to max_unpool2d_forward.

    forward(x, indices, output_size=None) : x (N, C, H, W) and indices (integers, x's shape,
        flat positions in each output plane) -> out (N, C, OH, OW), zeros where no index
        points (see fastconv.max_unpool2d_forward for output_size and repeated indices).
    backward : dout (N, C, OH, OW) -> dx (N, C, H, W); None with need_dx=False.
    """

    _backward_op = staticmethod(ops.max_unpool2d_backward)

    def __init__(self, kernel_size, stride=None, padding=0, *, backend="auto"):
        super().__init__(backend)
        self.kernel_size = as_tuple(kernel_size, "kernel_size", 2, minimum=1)
        self.stride = self.kernel_size if stride is None else as_tuple(stride, "stride", 2, minimum=1)
        self.padding = as_tuple(padding, "padding", 2, minimum=0)

    def forward(self, x, indices, output_size=None):
        out, self._cache = ops.max_unpool2d_forward(x, indices, self.kernel_size, self.stride,
                                                    self.padding, output_size, backend=self.backend)
        return out

    def __repr__(self):
        return (f"{type(self).__name__}(kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding})")
