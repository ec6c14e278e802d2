"""Convolution layers, 1-D to 3-D, and transposed convolutions, on top of the functional ops."""
import math
import numbers

import numpy as np

from .. import _backend
from .._geometry import PADDING_MODES, as_tuple
from .. import conv as ops
from .base import Layer
from .core import _check_positive_int, as_param_dtype, check_layer_input, random_source

_LAYOUTS = {1: "(N, {c}, L)", 2: "(N, {c}, H, W)", 3: "(N, {c}, D, H, W)"}


def _padding_argument(padding, ndim):
    """The padding as conv_geometry takes it (validated there, against the input): an int,
    a tuple, or "same"/"valid"."""
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise ValueError(f"padding must be an int, a tuple of ints, 'same' or 'valid', got {padding!r}")
        return padding
    if isinstance(padding, (tuple, list)) and len(padding) == 2 * ndim:
        values = tuple(padding)
        if not all(isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, bool)
                   and v >= 0 for v in values):
            raise ValueError(f"padding must be ints >= 0, got {padding!r}")
        return tuple(int(v) for v in values)
    return as_tuple(padding, "padding", ndim, minimum=0)


class _ConvNd(Layer):
    """Shared body of the convolution layers: parameters, He initialisation, forward/backward
    through the functional op of their rank."""

    ndim = None
    transposed = False

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
                 dtype=np.float32, *, dilation=1, groups=1, padding_mode="zeros",
                 output_padding=0, rng=None, weight_scale=None, backend="auto",
                 algorithm="auto"):
        super().__init__()
        ndim = self.ndim
        self.in_channels = _check_positive_int(in_channels, "in_channels")
        self.out_channels = _check_positive_int(out_channels, "out_channels")
        self.groups = _check_positive_int(groups, "groups")
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"groups ({self.groups}) must divide both in_channels "
                             f"({self.in_channels}) and out_channels ({self.out_channels})")
        self.kernel_size = as_tuple(kernel_size, "kernel_size", ndim, minimum=1)
        self.stride = as_tuple(stride, "stride", ndim, minimum=1)
        self.dilation = as_tuple(dilation, "dilation", ndim, minimum=1)
        self.padding = _padding_argument(padding, ndim)
        if not isinstance(padding_mode, str) or padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {', '.join(map(repr, PADDING_MODES))}, "
                             f"got {padding_mode!r}")
        if self.transposed and padding_mode != "zeros":
            raise ValueError("a transposed convolution pads with zeros only (padding_mode 'zeros')")
        self.padding_mode = padding_mode
        self.output_padding = as_tuple(output_padding, "output_padding", ndim, minimum=0)
        if not self.transposed and any(self.output_padding):
            raise ValueError("output_padding applies to transposed convolutions only")
        self.dtype = as_param_dtype(dtype)
        self.backend = _backend.check_name(backend, "the backend argument")
        self.algorithm = algorithm
        # He initialisation by fan-in: the inputs each output sums over
        if self.transposed:
            shape = (self.in_channels, self.out_channels // self.groups) + self.kernel_size
            fan_in = self.in_channels // self.groups * math.prod(self.kernel_size)
        else:
            shape = (self.out_channels, self.in_channels // self.groups) + self.kernel_size
            fan_in = self.in_channels // self.groups * math.prod(self.kernel_size)
        if weight_scale is None:
            weight_scale = np.sqrt(2.0 / fan_in)
        elif isinstance(weight_scale, bool) or not isinstance(weight_scale, numbers.Real) \
                or not weight_scale >= 0:
            raise ValueError(f"weight_scale must be None or a number >= 0, got {weight_scale!r}")
        self.params["weight"] = (random_source(rng).standard_normal(shape) * weight_scale).astype(self.dtype)
        if bias:
            self.params["bias"] = np.zeros(self.out_channels, dtype=self.dtype)

    def _options(self):
        options = dict(dilation=self.dilation, groups=self.groups, backend=self.backend,
                       algorithm=self.algorithm)
        if self.transposed:
            return (self.stride, self.padding, self.output_padding), options
        options["padding_mode"] = self.padding_mode
        return (self.stride, self.padding), options

    def _check_input(self, x):
        layout = _LAYOUTS[self.ndim].format(c=self.in_channels)
        check_layer_input(self, x, ndim=self.ndim + 2, layout=layout, dtype=self.dtype)
        if x.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__} expects x of shape {layout}, got {x.shape}")

    def forward(self, x):
        """x (N, in_channels, *size) of the layer's dtype -> out (N, out_channels, *out)."""
        self._check_input(x)
        forward = getattr(ops, f"conv{'_transpose' if self.transposed else ''}{self.ndim}d_forward")
        arguments, options = self._options()
        out, self._cache = forward(x, self.params["weight"], self.params.get("bias"), *arguments,
                                   **options)
        return out

    def infer(self, x):
        """forward(x) for inference (Layer.infer): one call that keeps nothing for a
        backward, in which the Winograd algorithms keep their transform of the weights for
        the next call while the weights are unchanged (conv.conv_inference)."""
        if self.transposed:
            return super().infer(x)
        return self._infer_with(x, None)

    def _infer_with(self, x, epilogue):
        """The output of forward(x) then `epilogue` (an _epilogue.Epilogue), in one call,
        keeping nothing (Sequential.infer; not for transposed convolutions)."""
        self._check_input(x)
        self._cache = None
        arguments, options = self._options()
        return ops.conv_inference(self.ndim, x, self.params["weight"], self.params.get("bias"),
                                  *arguments, epilogue=epilogue, **options)

    def backward(self, dout, *, need_dx=True):
        """dout, the forward output's shape and dtype -> dx (x's shape), or None with
        need_dx=False. Fills ``grads["weight"]`` and ``grads["bias"]`` (with a bias)."""
        cache = self._saved()
        backward = getattr(ops, f"conv{'_transpose' if self.transposed else ''}{self.ndim}d_backward")
        dx, dweight, dbias = backward(dout, cache, need_dx=need_dx)
        self.grads["weight"] = dweight
        if "bias" in self.params:
            self.grads["bias"] = dbias
        return dx if need_dx else None

    def __repr__(self):
        extras = ""
        if any(d != 1 for d in self.dilation):
            extras += f", dilation={self.dilation}"
        if self.groups != 1:
            extras += f", groups={self.groups}"
        if self.padding_mode != "zeros":
            extras += f", padding_mode={self.padding_mode!r}"
        if any(self.output_padding):
            extras += f", output_padding={self.output_padding}"
        return (
            f"{type(self).__name__}({self.in_channels}, {self.out_channels}, "
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
            f"{extras}, bias={'bias' in self.params}, dtype=np.{self.dtype.name})"
        )


_DOC = """{rank} {kind} layer{extra}.

    Parameters
    ----------
    in_channels, out_channels : int >= 1, both divisible by `groups`
    kernel_size, stride, dilation : int or a tuple of {ndim}
    padding : as {function} takes it{padding_note}
    bias : bool, whether to learn an additive bias per output channel.
    dtype : float32 (default) or float64: the parameters' dtype; the input must match.
    groups : int >= 1 (in_channels: depthwise)
    {mode_line}rng : None (NumPy's global generator, seeded by ``np.random.seed``), an int seed,
        a numpy.random.Generator or a numpy.random.RandomState, for the initial weights.
    weight_scale : None for He initialisation, ``randn * sqrt(2 / fan_in)`` with
        fan_in = in_channels / groups * prod(kernel_size) (suited to ReLU networks), or a
        float standard deviation.
    backend, algorithm : passed to {function}.

    params : "weight" of shape {weight} and, when bias=True, "bias" of shape (out_channels,),
        initially zero. ``grads`` gets the same keys from each backward.
    forward : x {x_layout} -> out (N, out_channels, *out).
    backward : dout -> dx (x's shape); ``backward(dout, need_dx=False)`` skips dx.
    """


def _doc(ndim, transposed):
    kind = "transposed convolution" if transposed else "convolution (cross-correlation)"
    function = f"conv{'_transpose' if transposed else ''}{ndim}d_forward"
    weight = ("(in_channels, out_channels // groups, *kernel_size)" if transposed
              else "(out_channels, in_channels // groups, *kernel_size)")
    return _DOC.format(
        rank=f"{ndim}-D", kind=kind, ndim=ndim, function=f"fastconv.{function}",
        extra=" (the adjoint of a convolution: upsampling in U-Nets and GAN generators)" if transposed else "",
        padding_note=" (an int or a tuple of ints); output_padding : int or tuple, < max(stride, dilation)"
        if transposed else ": an int, a tuple per axis or per side, 'same' or 'valid'",
        mode_line="" if transposed else "padding_mode : 'zeros', 'reflect', 'replicate' or 'circular'\n    ",
        weight=weight, x_layout=_LAYOUTS[ndim].format(c="in_channels"))


class Conv1d(_ConvNd):
    __doc__ = _doc(1, False)
    ndim = 1


class Conv2d(_ConvNd):
    __doc__ = _doc(2, False)
    ndim = 2


class Conv3d(_ConvNd):
    __doc__ = _doc(3, False)
    ndim = 3


class ConvTranspose1d(_ConvNd):
    __doc__ = _doc(1, True)
    ndim, transposed = 1, True


class ConvTranspose2d(_ConvNd):
    __doc__ = _doc(2, True)
    ndim, transposed = 2, True


class ConvTranspose3d(_ConvNd):
    __doc__ = _doc(3, True)
    ndim, transposed = 3, True
