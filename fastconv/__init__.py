"""fastconv: fast, tested convolution and pooling kernels for NumPy.

Functional API (``forward(...) -> (out, cache)``, ``backward(dout, cache) -> grads``) backed by
Cython + BLAS kernels, with readable NumPy twins in ``fastconv.reference``.
"""
# At a source checkout's root, `python -m ...` imports this folder rather than the installed
# package. If this folder has no compiled kernels and a build of exactly these sources is
# installed, the import is handed over to that build (docs/install.md, "Running at the
# checkout's root"); an in-place build is always imported as it is.
from ._source_checkout import hand_over as _hand_over

_CHECKOUT_NOTE = _hand_over(__name__, __path__[0])  # None, or why no installed build was taken

from ._backend import available_backends, get_backend, set_backend
from ._settings import get_num_threads, get_workspace_limit, set_num_threads, set_workspace_limit
from ._memory import freed_memory_retained, retain_freed_memory
from .algorithms import UnsupportedAlgorithm
from .planner import forget_wisdom, load_wisdom, save_wisdom
from .conv import (available_algorithms, conv1d_backward, conv1d_forward, conv2d_backward,
                   conv2d_forward, conv3d_backward, conv3d_forward, conv_transpose1d_backward,
                   conv_transpose1d_forward, conv_transpose2d_backward, conv_transpose2d_forward,
                   conv_transpose3d_backward, conv_transpose3d_forward)
from .im2col import col2im, im2col
from .norm import (batch_norm_backward, batch_norm_forward, group_norm_backward, group_norm_forward,
                   layer_norm_backward, layer_norm_forward)
from . import interop
from .serialize import load_model, save_model
from .pool import (adaptive_avg_pool2d_backward, adaptive_avg_pool2d_forward,
                   adaptive_max_pool2d_backward, adaptive_max_pool2d_forward, avg_pool1d_backward,
                   avg_pool1d_forward, avg_pool2d_backward, avg_pool2d_forward, avg_pool3d_backward,
                   avg_pool3d_forward, max_pool1d_backward, max_pool1d_forward, max_pool2d_backward,
                   max_pool2d_forward, max_pool3d_backward, max_pool3d_forward,
                   max_unpool2d_backward, max_unpool2d_forward)
from .elementwise import (dropout_backward, dropout_forward, leaky_relu_backward, leaky_relu_forward,
                          relu_backward, relu_forward)
from .linear import linear_backward, linear_forward

__version__ = "0.1.0"

__all__ = [
    "conv1d_forward",
    "conv1d_backward",
    "conv2d_forward",
    "conv2d_backward",
    "conv3d_forward",
    "conv3d_backward",
    "conv_transpose1d_forward",
    "conv_transpose1d_backward",
    "conv_transpose2d_forward",
    "conv_transpose2d_backward",
    "conv_transpose3d_forward",
    "conv_transpose3d_backward",
    "im2col",
    "col2im",
    "max_pool2d_forward",
    "max_pool2d_backward",
    "avg_pool2d_forward",
    "avg_pool2d_backward",
    "batch_norm_forward",
    "batch_norm_backward",
    "layer_norm_forward",
    "layer_norm_backward",
    "group_norm_forward",
    "group_norm_backward",
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
    "retain_freed_memory",
    "freed_memory_retained",
    "UnsupportedAlgorithm",
    "save_wisdom",
    "load_wisdom",
    "forget_wisdom",
    "save_model",
    "load_model",
]
