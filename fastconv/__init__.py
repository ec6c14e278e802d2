"""fastconv: fast, tested convolution and pooling kernels for NumPy.

Functional API (``forward(...) -> (out, cache)``, ``backward(dout, cache) -> grads``) backed by
Cython + BLAS kernels, with readable NumPy twins in ``fastconv.reference``.
"""
from ._config import get_num_threads, get_workspace_limit, set_num_threads, set_workspace_limit
from ._dispatch import available_backends, get_backend, set_backend
from .conv import available_algorithms, conv2d_backward, conv2d_forward
from .im2col import col2im, im2col
from .pool import (adaptive_avg_pool2d_backward, adaptive_avg_pool2d_forward,
                   adaptive_max_pool2d_backward, adaptive_max_pool2d_forward, avg_pool1d_backward,
                   avg_pool1d_forward, avg_pool2d_backward, avg_pool2d_forward, avg_pool3d_backward,
                   avg_pool3d_forward, max_pool1d_backward, max_pool1d_forward, max_pool2d_backward,
                   max_pool2d_forward, max_pool3d_backward, max_pool3d_forward,
                   max_unpool2d_backward, max_unpool2d_forward)

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
    # pooling options (issue 23)
    "max_pool1d_forward",
    "max_pool1d_backward",
    "max_pool3d_forward",
    "max_pool3d_backward",
    "avg_pool1d_forward",
    "avg_pool1d_backward",
    "avg_pool3d_forward",
    "avg_pool3d_backward",
    "adaptive_avg_pool2d_forward",
    "adaptive_avg_pool2d_backward",
    "adaptive_max_pool2d_forward",
    "adaptive_max_pool2d_backward",
    "max_unpool2d_forward",
    "max_unpool2d_backward",
    "available_backends",
    "get_backend",
    "set_backend",
    "available_algorithms",
    "get_num_threads",
    "set_num_threads",
    "get_workspace_limit",
    "set_workspace_limit",
]
