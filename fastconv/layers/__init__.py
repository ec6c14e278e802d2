"""Object layers: forward(x) -> out, backward(dout) -> dx, with params/grads dicts."""
from .base import Layer
from .conv import Conv2d
from .pool import AvgPool2d, MaxPool2d

__all__ = ["Layer", "Conv2d", "MaxPool2d", "AvgPool2d"]
