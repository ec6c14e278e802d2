"""The course's ``cs231n.fast_layers``: its fast conv and pooling names, all on fastconv's compiled kernels.

The course had several fast implementations (strided views, im2col, a reshape trick for
pools that tile the input); here every name runs fastconv's compiled kernels, for any kernel
and pool shape, with the arguments and results of the naive functions in ``layers``:

- ``conv_forward_fast``, ``conv_forward_strides``: the algorithm fastconv chooses ("auto");
  ``conv_forward_im2col``: im2col + GEMM; each returns (out, cache), and every
  ``conv_backward_*`` takes any of their caches and returns (dx, dw, db);
- ``max_pool_forward_fast``, ``max_pool_forward_reshape``, ``max_pool_forward_im2col``:
  (out, cache); every ``max_pool_backward_*`` takes any of their caches and returns dx.
"""
from . import (_conv_arrays, _conv_backward, _conv_geometry, conv_backward_fast, conv_forward_fast,
               max_pool_backward_fast, max_pool_forward_fast)
from ...conv import conv2d_forward

__all__ = [
    "conv_forward_fast", "conv_backward_fast", "conv_forward_strides", "conv_backward_strides",
    "conv_forward_im2col", "conv_backward_im2col",
    "max_pool_forward_fast", "max_pool_backward_fast", "max_pool_forward_reshape", "max_pool_backward_reshape",
    "max_pool_forward_im2col", "max_pool_backward_im2col",
]


def conv_forward_strides(x, w, b, conv_param):
    """Convolution on the compiled kernels (the course's strided-view version); as conv_forward_fast."""
    return conv_forward_fast(x, w, b, conv_param)


def conv_forward_im2col(x, w, b, conv_param):
    """Convolution by im2col and one GEMM per band of output rows, compiled.

    x (N, C, H, W), w (F, C, HH, WW), b (F,), conv_param {'stride', 'pad'} -> (out, cache).
    """
    stride, padding = _conv_geometry(conv_param)
    x, w, b = _conv_arrays(x, w, b)
    return conv2d_forward(x, w, b, stride, padding, backend="cython", algorithm="im2col")


def conv_backward_strides(dout, cache):
    """Backward pass of any fast conv forward: (dx, dw, db)."""
    return _conv_backward(dout, cache)


def conv_backward_im2col(dout, cache):
    """Backward pass of any fast conv forward: (dx, dw, db)."""
    return _conv_backward(dout, cache)


def max_pool_forward_reshape(x, pool_param):
    """Max pooling on the compiled kernels (the course's version needed square pools tiling x)."""
    return max_pool_forward_fast(x, pool_param)


def max_pool_forward_im2col(x, pool_param):
    """Max pooling on the compiled kernels; as max_pool_forward_fast."""
    return max_pool_forward_fast(x, pool_param)


def max_pool_backward_reshape(dout, cache):
    """Backward pass of any fast max-pool forward: dx."""
    return max_pool_backward_fast(dout, cache)


def max_pool_backward_im2col(dout, cache):
    """Backward pass of any fast max-pool forward: dx."""
    return max_pool_backward_fast(dout, cache)
