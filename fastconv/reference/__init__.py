"""Readable NumPy twins of every fast kernel: the specification the compiled path is tested against.

Same public names, signatures and results as the top-level ``fastconv`` functions
(without the ``backend`` argument); slow by design.
"""
from .conv import (conv1d_backward, conv1d_forward, conv2d_backward, conv2d_forward,
                   conv3d_backward, conv3d_forward, conv_transpose1d_backward,
                   conv_transpose1d_forward, conv_transpose2d_backward, conv_transpose2d_forward,
                   conv_transpose3d_backward, conv_transpose3d_forward)
from .im2col import col2im, im2col
from .norm import (batch_norm_backward, batch_norm_forward, group_norm_backward, group_norm_forward,
                   layer_norm_backward, layer_norm_forward)
from .pool import (adaptive_avg_pool2d_backward, adaptive_avg_pool2d_forward,
                   adaptive_max_pool2d_backward, adaptive_max_pool2d_forward, avg_pool1d_backward,
                   avg_pool1d_forward, avg_pool2d_backward, avg_pool2d_forward, avg_pool3d_backward,
                   avg_pool3d_forward, max_pool1d_backward, max_pool1d_forward, max_pool2d_backward,
                   max_pool2d_forward, max_pool3d_backward, max_pool3d_forward,
                   max_unpool2d_backward, max_unpool2d_forward)
from .elementwise import (dropout_backward, dropout_forward, leaky_relu_backward, leaky_relu_forward,
                          relu_backward, relu_forward)
from .linear import linear_backward, linear_forward

__all__ = [
    "im2col", "col2im",
    "conv1d_forward", "conv1d_backward", "conv2d_forward", "conv2d_backward",
    "conv3d_forward", "conv3d_backward",
    "conv_transpose1d_forward", "conv_transpose1d_backward",
    "conv_transpose2d_forward", "conv_transpose2d_backward",
    "conv_transpose3d_forward", "conv_transpose3d_backward",
    "max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward",
    "batch_norm_forward", "batch_norm_backward", "layer_norm_forward", "layer_norm_backward",
    "group_norm_forward", "group_norm_backward",
    # pooling options (issue 23)
    "max_pool1d_forward", "max_pool1d_backward", "max_pool3d_forward", "max_pool3d_backward",
    "avg_pool1d_forward", "avg_pool1d_backward", "avg_pool3d_forward", "avg_pool3d_backward",
    "adaptive_avg_pool2d_forward", "adaptive_avg_pool2d_backward",
    "adaptive_max_pool2d_forward", "adaptive_max_pool2d_backward",
    "max_unpool2d_forward", "max_unpool2d_backward",
    "relu_forward", "relu_backward", "leaky_relu_forward", "leaky_relu_backward",
    "dropout_forward", "dropout_backward", "linear_forward", "linear_backward",
]
