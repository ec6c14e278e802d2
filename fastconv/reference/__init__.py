"""Readable NumPy twins of every fast kernel: the specification the compiled path is tested against.

Same public names, signatures and results as the top-level ``fastconv`` functions
(without the ``backend`` argument); slow by design.
"""
from .conv import conv2d_backward, conv2d_forward
from .im2col import col2im, im2col
from .pool import avg_pool2d_backward, avg_pool2d_forward, max_pool2d_backward, max_pool2d_forward
from .elementwise import (dropout_backward, dropout_forward, leaky_relu_backward, leaky_relu_forward,
                          relu_backward, relu_forward)
from .linear import linear_backward, linear_forward

__all__ = [
    "im2col", "col2im", "conv2d_forward", "conv2d_backward",
    "max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward",
    "relu_forward", "relu_backward", "leaky_relu_forward", "leaky_relu_backward",
    "dropout_forward", "dropout_backward", "linear_forward", "linear_backward",
]
