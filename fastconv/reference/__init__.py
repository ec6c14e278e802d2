"""Readable NumPy twins of every fast kernel: the specification the compiled path is tested against.

Same public names, signatures and results as the top-level ``fastconv`` functions
(without the ``backend`` argument); slow by design.
"""
from .conv import conv2d_backward, conv2d_forward
from .im2col import col2im, im2col

__all__ = ["im2col", "col2im", "conv2d_forward", "conv2d_backward"]
