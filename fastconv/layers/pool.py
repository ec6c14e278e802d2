"""MaxPool2d and AvgPool2d: pooling layers on top of the functional pooling ops."""
from .. import _dispatch
from .._geometry import as_pair
from ..pool import avg_pool2d_backward, avg_pool2d_forward, max_pool2d_backward, max_pool2d_forward
from .base import Layer


class _Pool2d(Layer):
    """Shared body of the pooling layers; subclasses name their forward/backward ops."""

    _forward_op = None
    _backward_op = None

    def __init__(self, kernel_size, stride=None, padding=0, *, backend="auto"):
        super().__init__()
        self.kernel_size = as_pair(kernel_size, "kernel_size", minimum=1)
        self.stride = self.kernel_size if stride is None else as_pair(stride, "stride", minimum=1)
        self.padding = as_pair(padding, "padding", minimum=0)
        self.backend = _dispatch._check_name(backend, "the backend argument")

    def forward(self, x):
        out, self._cache = self._forward_op(
            x, self.kernel_size, self.stride, self.padding, backend=self.backend
        )
        return out

    def backward(self, dout, *, need_dx=True):
        dx = self._backward_op(dout, self._saved())
        return dx if need_dx else None

    def __repr__(self):
        return (
            f"{type(self).__name__}(kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding})"
        )


class MaxPool2d(_Pool2d):
    """2-D max pooling layer; padding never wins a max. No parameters.

    Parameters
    ----------
    kernel_size : int or (h, w) pair
    stride : int or (h, w) pair, default kernel_size (windows may overlap or leave gaps)
    padding : int or (h, w) pair, at most half of kernel_size in each dimension
    backend : "auto", "cython" or "reference", passed to max_pool2d_forward.

    forward : x (N, C, H, W), float32 or float64 -> out (N, C, OH, OW) of x's dtype,
        OH = floor((H + 2*pad_h - KH) / stride_h) + 1, OW likewise.
    backward : dout (N, C, OH, OW) -> dx (N, C, H, W); each gradient goes to its
        window's first maximum.
    """

    _forward_op = staticmethod(max_pool2d_forward)
    _backward_op = staticmethod(max_pool2d_backward)


class AvgPool2d(_Pool2d):
    """2-D average pooling layer; padded positions count as zeros (divisor KH*KW). No parameters.

    Parameters
    ----------
    kernel_size : int or (h, w) pair
    stride : int or (h, w) pair, default kernel_size
    padding : int or (h, w) pair, at most half of kernel_size in each dimension
    backend : "auto", "cython" or "reference", passed to avg_pool2d_forward.

    forward : x (N, C, H, W), float32 or float64 -> out (N, C, OH, OW) of x's dtype.
    backward : dout (N, C, OH, OW) -> dx (N, C, H, W).
    """

    _forward_op = staticmethod(avg_pool2d_forward)
    _backward_op = staticmethod(avg_pool2d_backward)
