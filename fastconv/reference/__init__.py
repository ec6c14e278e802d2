"""Readable NumPy twins of every fast kernel: the specification the compiled path is tested against.

Same public names, signatures and results as the top-level ``fastconv`` functions
(without the ``backend`` argument); slow by design.
"""
from .conv import conv2d_backward, conv2d_forward
from .im2col import col2im, im2col
from .pool import (adaptive_avg_pool2d_backward, adaptive_avg_pool2d_forward,
                   adaptive_max_pool2d_backward, adaptive_max_pool2d_forward, avg_pool1d_backward,
                   avg_pool1d_forward, avg_pool2d_backward, avg_pool2d_forward, avg_pool3d_backward,
                   avg_pool3d_forward, max_pool1d_backward, max_pool1d_forward, max_pool2d_backward,
                   max_pool2d_forward, max_pool3d_backward, max_pool3d_forward,
                   max_unpool2d_backward, max_unpool2d_forward)

__all__ = [
    "im2col", "col2im", "conv2d_forward", "conv2d_backward",
    "max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward",
    # pooling options (issue 23)
    "max_pool1d_forward", "max_pool1d_backward", "max_pool3d_forward", "max_pool3d_backward",
    "avg_pool1d_forward", "avg_pool1d_backward", "avg_pool3d_forward", "avg_pool3d_backward",
    "adaptive_avg_pool2d_forward", "adaptive_avg_pool2d_backward",
    "adaptive_max_pool2d_forward", "adaptive_max_pool2d_backward",
    "max_unpool2d_forward", "max_unpool2d_backward",
]
