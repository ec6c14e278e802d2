"""fastconv: fast, tested convolution and pooling kernels for NumPy.

Functional API (``forward(...) -> (out, cache)``, ``backward(dout, cache) -> grads``) backed by
Cython + BLAS kernels, with readable NumPy twins in ``fastconv.reference``.
"""
from ._config import get_num_threads, get_workspace_limit, set_num_threads, set_workspace_limit
from ._dispatch import available_backends, get_backend, set_backend
from .conv import available_algorithms, conv2d_backward, conv2d_forward
from .im2col import col2im, im2col
from .pool import avg_pool2d_backward, avg_pool2d_forward, max_pool2d_backward, max_pool2d_forward
from .elementwise import (dropout_backward, dropout_forward, leaky_relu_backward, leaky_relu_forward,
                          relu_backward, relu_forward)
from .linear import linear_backward, linear_forward

__version__ = "0.1.0"

__all__ = [
    "conv2d_forward",
    "conv2d_backward",
    "im2col",
    "col2im",
    "max_pool2d_forward",
    "max_pool2d_backward",
    "avg_pool2d_forward",
    "avg_pool2d_backward",
    "relu_forward",
    "relu_backward",
    "leaky_relu_forward",
    "leaky_relu_backward",
    "dropout_forward",
    "dropout_backward",
    "linear_forward",
    "linear_backward",
    "available_backends",
    "get_backend",
    "set_backend",
    "available_algorithms",
    "get_num_threads",
    "set_num_threads",
    "get_workspace_limit",
    "set_workspace_limit",
]
