"""fastconv: fast, tested convolution and pooling kernels for NumPy.

Functional API (``forward(...) -> (out, cache)``, ``backward(dout, cache) -> grads``) backed by
Cython + BLAS kernels, with readable NumPy twins in ``fastconv.reference``.
"""
from ._config import get_num_threads, get_workspace_limit, set_num_threads, set_workspace_limit
from ._dispatch import available_backends, get_backend, set_backend
from .conv import available_algorithms, conv2d_backward, conv2d_forward
from .im2col import col2im, im2col

__version__ = "0.1.0"

__all__ = [
    "conv2d_forward",
    "conv2d_backward",
    "im2col",
    "col2im",
    "available_backends",
    "get_backend",
    "set_backend",
    "available_algorithms",
    "get_num_threads",
    "set_num_threads",
    "get_workspace_limit",
    "set_workspace_limit",
]
