"""Object layers: forward(x) -> out, backward(dout) -> dx, with params/grads dicts."""
from .base import Layer
from .container import Sequential
from .conv import Conv2d
from .core import Dropout, Flatten, LeakyReLU, Linear, ReLU
from .norm import BatchNorm2d
from .pool import AvgPool2d, MaxPool2d
from .residual import Residual

__all__ = [
    "Layer",
    "Conv2d",
    "MaxPool2d",
    "AvgPool2d",
    "Linear",
    "ReLU",
    "LeakyReLU",
    "Flatten",
    "Dropout",
    "BatchNorm2d",
    "Sequential",
    "Residual",
]
