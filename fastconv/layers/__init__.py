"""Object layers: forward(x) -> out, backward(dout) -> dx, with params/grads dicts."""
from .base import Layer
from .container import Sequential
from .conv import Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d, ConvTranspose3d
from .core import Dropout, Flatten, LeakyReLU, Linear, ReLU
from .norm import BatchNorm1d, BatchNorm2d, GroupNorm, LayerNorm
from .pool import AvgPool2d, MaxPool2d
from .pool import (AdaptiveAvgPool2d, AdaptiveMaxPool2d, AvgPool1d, AvgPool3d, GlobalAvgPool2d,  # issue 23
                   MaxPool1d, MaxPool3d, MaxUnpool2d)
from .residual import Residual

__all__ = [
    "Layer",
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "ConvTranspose3d",
    "MaxPool2d",
    "AvgPool2d",
    "MaxPool1d",
    "MaxPool3d",
    "AvgPool1d",
    "AvgPool3d",
    "AdaptiveAvgPool2d",
    "AdaptiveMaxPool2d",
    "GlobalAvgPool2d",
    "MaxUnpool2d",
    "Linear",
    "ReLU",
    "LeakyReLU",
    "Flatten",
    "Dropout",
    "BatchNorm2d",
    "BatchNorm1d",
    "LayerNorm",
    "GroupNorm",
    "Sequential",
    "Residual",
]
