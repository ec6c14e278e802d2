"""Reference N-d convolution (1-D, 2-D, 3-D) and its transpose: a loop over the kernel's taps,
each tap one strided slice of the padded input (as Chainer's im2col), groups as a batch axis.

Padding reads zeros, or, with padding_mode, the input mirrored ("reflect", without repeating
the edge), its edge value ("replicate") or the other end ("circular"), as PyTorch. Every padded
position is one input position (or none, for zeros), so the gradient of the padding folds back
onto the positions it copied.

A transposed convolution is the adjoint of a convolution (_geometry.transposed_geometry): its
forward is that convolution's input gradient, its backward that convolution's forward (dx)
and weight gradient (dw).
"""
import itertools

import numpy as np

from .._cache import ConvCache, ConvTransposeCache
from .._validate import check_cache, check_dout, contiguous, conv_inputs, conv_transpose_inputs


def source_indices(length, before, after, mode):
    """For each position of an axis padded by `before` and `after` (after may be negative: the
    last -after positions dropped), the input position it reads, or -1 for a zero."""
    positions = np.arange(-before, length + after)
    if mode == "zeros" or length == 0:
        return np.where((positions >= 0) & (positions < length), positions, -1)
    if mode == "replicate":
        return np.clip(positions, 0, length - 1)
    if mode == "circular":
        return positions % length
    # reflect: padding < length, so one reflection at either end reaches the input
    positions = np.abs(positions)
    return np.where(positions >= length, 2 * (length - 1) - positions, positions)


def pad(x, geometry):
    """x (N, C, *size) padded as the geometry says: (N, C, *padded)."""
    if x.size == 0:
        return np.zeros(x.shape[:2] + tuple(s + b + a for s, b, a in zip(
            geometry.size, geometry.pad_before, geometry.pad_after)), x.dtype)
    for axis in range(geometry.ndim):
        index = source_indices(geometry.size[axis], geometry.pad_before[axis],
                               geometry.pad_after[axis], geometry.padding_mode)
        taken = np.take(x, np.maximum(index, 0), axis=2 + axis)
        if (index < 0).any():  # a select, not a product: padding is zero even beside a NaN
            shape = [1] * x.ndim
            shape[2 + axis] = index.size
            taken = np.where((index >= 0).reshape(shape), taken, x.dtype.type(0))
        x = taken
    return x


def unpad(dpadded, geometry):
    """The adjoint of pad: each padded position's gradient added onto the input position it
    read."""
    for axis in range(geometry.ndim):
        index = source_indices(geometry.size[axis], geometry.pad_before[axis],
                               geometry.pad_after[axis], geometry.padding_mode)
        moved = np.moveaxis(dpadded, 2 + axis, 0)
        folded = np.zeros((geometry.size[axis],) + moved.shape[1:], dtype=dpadded.dtype)
        keep = index >= 0
        np.add.at(folded, index[keep], moved[keep])
        dpadded = np.moveaxis(folded, 0, 2 + axis)
    return np.ascontiguousarray(dpadded)


def _taps(geometry):
    """(kernel index tuple, slices of the padded input) for every tap: the slice holds, for each
    output position, the input that tap multiplies."""
    for tap in itertools.product(*(range(k) for k in geometry.kernel)):
        yield tap, tuple(slice(t * d, t * d + s * (o - 1) + 1, s) for t, d, s, o in zip(
            tap, geometry.dilation, geometry.stride, geometry.out))


def _grouped(a, groups):
    """(N, G*k, ...) -> (N, G, k, ...)."""
    return a.reshape((a.shape[0], groups, a.shape[1] // groups) + a.shape[2:])


def _weights(w, groups):
    """(F, C/G, *kernel) -> (G, F/G, C/G, *kernel)."""
    return w.reshape((groups, w.shape[0] // groups) + w.shape[1:])


def _forward(x, w, b, geometry):
    groups = geometry.groups
    padded = _grouped(pad(x, geometry), groups)
    weights = _weights(w, groups)
    out = np.zeros((geometry.batch, groups, geometry.filters_per_group) + geometry.out, x.dtype)
    everything = (slice(None),) * 3
    for tap, window in _taps(geometry):
        out += np.einsum("gfc,ngc...->ngf...", weights[(Ellipsis,) + tap],
                         padded[everything + window])
    out = out.reshape(geometry.output_shape)
    if b is not None:
        out += b.reshape((1, -1) + (1,) * geometry.ndim)
    return out


def _input_gradient(dout, w, geometry, dtype):
    """dx of the convolution: each tap's W^T @ dout added back where the tap read."""
    groups = geometry.groups
    dgrouped = _grouped(dout, groups)
    weights = _weights(w, groups)
    padded_shape = (geometry.batch, groups, geometry.channels_per_group) + tuple(
        s + b + a for s, b, a in zip(geometry.size, geometry.pad_before, geometry.pad_after))
    dpadded = np.zeros(padded_shape, dtype)
    everything = (slice(None),) * 3
    for tap, window in _taps(geometry):
        dpadded[everything + window] += np.einsum("gfc,ngf...->ngc...", weights[(Ellipsis,) + tap],
                                                  dgrouped)
    return unpad(dpadded.reshape((geometry.batch, geometry.channels) + padded_shape[3:]), geometry)


def _weight_gradient(dout, x, geometry):
    groups = geometry.groups
    padded = _grouped(pad(x, geometry), groups)
    dgrouped = _grouped(dout, groups)
    dw = np.zeros((groups, geometry.filters_per_group, geometry.channels_per_group)
                  + geometry.kernel, x.dtype)
    everything = (slice(None),) * 3
    flat = dgrouped.reshape(dgrouped.shape[:3] + (geometry.out_pixels,))
    for tap, window in _taps(geometry):
        taken = padded[everything + window]
        dw[(Ellipsis,) + tap] = np.einsum("ngfp,ngcp->gfc", flat,
                                          taken.reshape(taken.shape[:3] + (geometry.out_pixels,)))
    return dw.reshape(geometry.weight_shape)


def _bias_gradient(dout):
    return dout.sum(axis=(0,) + tuple(range(2, dout.ndim)))


def _backward(dout, x, w, has_bias, geometry):
    return (_input_gradient(dout, w, geometry, x.dtype), _weight_gradient(dout, x, geometry),
            _bias_gradient(dout) if has_bias else None)


def epilogue(out, epilogue):
    """The NumPy twin of a convolution's epilogue (fastconv/_epilogue.py), on a fresh array:
    the batch norm map in float64, rounded once to out's dtype, then v <= 0 -> 0 (NaN stays)."""
    if epilogue.mean is not None:
        shape = (1, -1) + (1,) * (out.ndim - 2)
        out = ((out - epilogue.mean.reshape(shape)) * epilogue.scale.reshape(shape)
               + epilogue.shift.reshape(shape)).astype(out.dtype)
    if epilogue.relu:
        out = np.where(out <= 0, out.dtype.type(0), out)
    return out


def _transpose_forward(x, w, b, geometry):
    """The transposed convolution of x: the input gradient of its adjoint convolution."""
    out = _input_gradient(x, w, geometry, x.dtype)
    if b is not None:
        out += b.reshape((1, -1) + (1,) * geometry.ndim)
    return out


def _transpose_backward(dout, x, w, has_bias, geometry):
    """dx: the adjoint convolution's forward of dout; dw: its weight gradient (its input is
    dout, its output gradient x)."""
    return (_forward(dout, w, None, geometry), _weight_gradient(x, dout, geometry),
            _bias_gradient(dout) if has_bias else None)


# ---- public twins ---------------------------------------------------------------------

def _conv_forward(ndim, x, w, b, stride, padding, dilation, groups, padding_mode):
    geometry = conv_inputs(x, w, b, ndim, stride, padding, dilation, groups, padding_mode)
    x, w = contiguous(x), contiguous(w)
    b = None if b is None else contiguous(b)
    out = _forward(x, w, b, geometry)
    return out, ConvCache(x, w, b is not None, geometry, "reference", "direct")


def _conv_backward(dout, cache, name):
    check_cache(cache, ConvCache, name)
    check_dout(dout, cache.out_shape, cache.x.dtype)
    return _backward(contiguous(dout), cache.x, cache.weight, cache.has_bias, cache.window)


def _transpose_forward_public(ndim, x, w, b, stride, padding, output_padding, dilation, groups):
    geometry = conv_transpose_inputs(x, w, b, ndim, stride, padding, output_padding, dilation,
                                     groups)
    x, w = contiguous(x), contiguous(w)
    b = None if b is None else contiguous(b)
    out = _transpose_forward(x, w, b, geometry)
    return out, ConvTransposeCache(x, w, b is not None, geometry, "reference", "direct")


def _transpose_backward_public(dout, cache, name):
    check_cache(cache, ConvTransposeCache, name)
    check_dout(dout, cache.out_shape, cache.x.dtype)
    return _transpose_backward(contiguous(dout), cache.x, cache.weight, cache.has_bias,
                               cache.window)


def conv1d_forward(x, w, b=None, stride=1, padding=0, *, dilation=1, groups=1, padding_mode="zeros"):
    """1-D convolution of x (N, C, L) with w (F, C // groups, K); see conv2d_forward."""
    return _conv_forward(1, x, w, b, stride, padding, dilation, groups, padding_mode)


def conv2d_forward(x, w, b=None, stride=1, padding=0, *, dilation=1, groups=1, padding_mode="zeros"):
    """2-D convolution (cross-correlation, as in deep learning).

    x : (N, C, H, W); w : (F, C // groups, KH, KW); b : (F,) or None; one float dtype.
    stride, dilation : int or (h, w) pair. padding : int, (h, w), (top, bottom, left, right),
    "valid" or "same". padding_mode : "zeros", "reflect", "replicate" or "circular".
    Returns out of shape (N, F, OH, OW),
    OH = floor((H + pad_top + pad_bottom - dilation_h*(KH - 1) - 1) / stride_h) + 1,
    and a cache for conv2d_backward.
    """
    return _conv_forward(2, x, w, b, stride, padding, dilation, groups, padding_mode)


def conv3d_forward(x, w, b=None, stride=1, padding=0, *, dilation=1, groups=1, padding_mode="zeros"):
    """3-D convolution of x (N, C, D, H, W) with w (F, C // groups, KD, KH, KW); see conv2d_forward."""
    return _conv_forward(3, x, w, b, stride, padding, dilation, groups, padding_mode)


def conv1d_backward(dout, cache):
    """Gradients of conv1d_forward: dx, dw, db (None without a bias)."""
    return _conv_backward(dout, cache, "conv1d_forward")


def conv2d_backward(dout, cache):
    """Gradients of conv2d_forward.

    dout : (N, F, OH, OW), the forward output's shape and dtype.
    Returns dx (N, C, H, W), dw (F, C // groups, KH, KW), db (F,) or None when the forward
    had no bias.
    """
    return _conv_backward(dout, cache, "conv2d_forward")


def conv3d_backward(dout, cache):
    """Gradients of conv3d_forward: dx, dw, db (None without a bias)."""
    return _conv_backward(dout, cache, "conv3d_forward")


def conv_transpose1d_forward(x, w, b=None, stride=1, padding=0, output_padding=0, *, dilation=1,
                             groups=1):
    """1-D transposed convolution of x (N, C, L) with w (C, F // groups, K); see
    conv_transpose2d_forward."""
    return _transpose_forward_public(1, x, w, b, stride, padding, output_padding, dilation, groups)


def conv_transpose2d_forward(x, w, b=None, stride=1, padding=0, output_padding=0, *, dilation=1,
                             groups=1):
    """2-D transposed convolution ("deconvolution"), the adjoint of conv2d.

    x : (N, C, H, W); w : (C, F // groups, KH, KW); b : (F,) or None.
    Returns out of shape (N, F, OH, OW),
    OH = (H - 1)*stride_h - 2*pad_h + dilation_h*(KH - 1) + output_padding_h + 1,
    with output_padding < max(stride, dilation) in each axis, and a cache.
    """
    return _transpose_forward_public(2, x, w, b, stride, padding, output_padding, dilation, groups)


def conv_transpose3d_forward(x, w, b=None, stride=1, padding=0, output_padding=0, *, dilation=1,
                             groups=1):
    """3-D transposed convolution of x (N, C, D, H, W) with w (C, F // groups, KD, KH, KW)."""
    return _transpose_forward_public(3, x, w, b, stride, padding, output_padding, dilation, groups)


def conv_transpose1d_backward(dout, cache):
    return _transpose_backward_public(dout, cache, "conv_transpose1d_forward")


def conv_transpose2d_backward(dout, cache):
    """Gradients of conv_transpose2d_forward: dx (N, C, H, W), dw (C, F // groups, KH, KW),
    db (F,) or None."""
    return _transpose_backward_public(dout, cache, "conv_transpose2d_forward")


def conv_transpose3d_backward(dout, cache):
    return _transpose_backward_public(dout, cache, "conv_transpose3d_forward")
