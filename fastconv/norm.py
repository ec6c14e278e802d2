"""Batch, layer and group normalisation forward and backward: validate, choose backend, run the kernels.

Every function follows the CS231n contract, ``forward(...) -> (out, cache)`` and
``backward(dout, cache) -> (dx, dweight, dbias)``, on float32 or float64 arrays of any
memory layout (never written, except a batch norm's running estimates, which are updated
in place). Statistics are computed in float64 whatever the dtype, from one pass over the
data (blocks of at most 2048 values take two passes while in cache and are merged by Chan's
formula), so a large mean (1e4 + noise in float32) costs no precision. A NaN in a normalised
set makes that set's whole output NaN. The backward is the fused closed form
dx = inv_std * (g - mean(g) - x_hat * mean(g * x_hat)), g = dout * weight, in two passes
over dout and x; ``need_dx=False`` skips dx and returns None in its place.
"""
import math

import numpy as np

from . import _backend, _compiled
from ._cache import NormCache
from ._settings import get_num_threads
from ._validate import batch_norm_inputs, contiguous, group_norm_inputs, layer_norm_inputs, norm_backward_inputs
from .reference import norm as reference

# Below this many elements a call takes some microseconds: one thread, no waking others.
_PARALLEL_MIN_ELEMENTS = 2**17


def _threads(elements, units):
    if elements < _PARALLEL_MIN_ELEMENTS:
        return 1
    return max(1, min(get_num_threads(), units))


def _column_blocks(columns):
    return -(-columns // 256)  # the kernels' COLUMN_BLOCK


# --- batch norm -----------------------------------------------------------------------------

class _Channels:
    """x (N, C, *spatial) seen by the kernels: as (N*C, S) planes, or as (N, C) columns when S == 1."""

    def __init__(self, x):
        self.batch, self.channels = x.shape[0], x.shape[1]
        self.spatial = math.prod(x.shape[2:])
        self.columns = self.spatial == 1
        self.count = self.batch * self.spatial  # values per channel

    def view(self, a):
        if self.columns:
            return a.reshape(self.batch, self.channels)
        return a.reshape(self.batch * self.channels, self.spatial)

    def per_plane(self, values):
        """(C,) float64 values, one per plane (repeated for each sample) or as they are for columns."""
        return values if self.columns else np.tile(values, self.batch)

    def threads(self):
        units = _column_blocks(self.channels) if self.columns else self.batch * self.channels
        return _threads(self.count * self.channels, units)


def _batch_statistics_compiled(x, layout):
    kernels = _compiled.norm
    view, threads = layout.view(x), layout.threads()
    if layout.columns:
        mean, m2 = np.empty(layout.channels), np.empty(layout.channels)
        kernels.column_moments(view, mean, m2, threads)
        return mean, m2 / layout.count
    planes = layout.batch * layout.channels
    plane_mean, plane_m2 = np.empty(planes), np.empty(planes)
    kernels.plane_moments(view, plane_mean, plane_m2, threads)
    plane_mean = plane_mean.reshape(layout.batch, layout.channels)
    # every plane holds S values, so the merged mean is the mean of the plane means and the
    # merged m2 adds each plane's spread about the common mean (Chan's formula for many sets)
    mean = plane_mean.mean(axis=0)
    deviation = plane_mean - mean
    m2 = plane_m2.reshape(layout.batch, layout.channels).sum(axis=0) + layout.spatial * (deviation * deviation).sum(axis=0)
    return mean, m2 / layout.count


def _affine_map(mean, inv_std, weight, bias):
    """(mean, scale, shift), float64 (C,), of out = (x - mean) * scale + shift."""
    return mean, weight * inv_std, bias.astype(np.float64)


def running_affine_map(weight, bias, running_mean, running_var, eps):
    """The (mean, scale, shift) by which batch_norm_forward(training=False) maps x, computed
    as it computes them: for a convolution's epilogue (fastconv/_epilogue.py)."""
    mean = running_mean.astype(np.float64)
    return _affine_map(mean, 1 / np.sqrt(running_var.astype(np.float64) + eps), weight, bias)


def _batch_affine_compiled(x, layout, mean, scale, shift):
    out = np.empty_like(x)
    if x.size:
        affine = _compiled.norm.column_affine if layout.columns else _compiled.norm.plane_affine
        affine(layout.view(x), layout.per_plane(mean), layout.per_plane(scale), layout.per_plane(shift),
               layout.view(out), layout.threads())
    return out


def _batch_backward_compiled(dout, x, weight, mean, inv_std, batch_statistics, need_dx):
    kernels = _compiled.norm
    layout = _Channels(x)
    threads = layout.threads()
    dout_view, x_view = layout.view(dout), layout.view(x)
    if x.size == 0:
        dout_sum = centred_sum = np.zeros(layout.channels)
    elif layout.columns:
        dout_sum, centred_sum = np.empty(layout.channels), np.empty(layout.channels)
        kernels.column_gradient_sums(dout_view, x_view, mean, dout_sum, centred_sum, threads)
    else:
        planes = layout.batch * layout.channels
        dout_sum, centred_sum = np.empty(planes), np.empty(planes)
        kernels.plane_gradient_sums(dout_view, x_view, layout.per_plane(mean), dout_sum, centred_sum, threads)
        dout_sum = dout_sum.reshape(layout.batch, layout.channels).sum(axis=0)
        centred_sum = centred_sum.reshape(layout.batch, layout.channels).sum(axis=0)
    dweight = (centred_sum * inv_std).astype(x.dtype)
    dbias = dout_sum.astype(x.dtype)
    if not need_dx:
        return None, dweight, dbias
    dout_scale = weight.astype(np.float64) * inv_std
    if batch_statistics:
        centred_scale = -dout_scale * inv_std * inv_std * centred_sum / layout.count
        shift = -dout_scale * dout_sum / layout.count
    else:
        centred_scale = shift = np.zeros(layout.channels)
    dx = np.empty_like(x)
    if x.size:
        gradient = kernels.column_input_gradient if layout.columns else kernels.plane_input_gradient
        gradient(dout_view, x_view, layout.per_plane(mean), layout.per_plane(dout_scale),
                 layout.per_plane(centred_scale), layout.per_plane(shift), layout.view(dx), threads)
    return dx, dweight, dbias


def batch_norm_forward(x, weight, bias, running_mean=None, running_var=None, *, training=True,
                       momentum=0.1, eps=1e-5, backend="auto"):
    """Batch normalisation: each channel normalised over the batch (and spatial positions).

    out = weight[c] * (x - mean[c]) / sqrt(var[c] + eps) + bias[c]

    Parameters
    ----------
    x : ndarray of shape (N, C) or (N, C, *spatial) (e.g. (N, C, H, W)), float32 or float64.
    weight, bias : ndarrays of shape (C,), x's dtype.
    running_mean, running_var : ndarrays of shape (C,), x's dtype, or None.
        In training they are updated in place (when given):
        running = (1 - momentum) * running + momentum * batch statistic, the running
        variance taking the unbiased batch variance (dividing by N*S - 1), as PyTorch.
        Required when training=False, where they are the statistics used.
    training : bool. True: the batch's own mean and biased variance (dividing by
        N*S, S = the product of the spatial sizes; N*S must be > 1); False: the running ones.
    momentum : float in [0, 1], the newest batch's weight in the running estimates.
    eps : float > 0, added to the variance.
    backend : "auto", "cython" or "reference".

    Returns
    -------
    out : ndarray of x's shape and dtype.
    cache : NormCache for batch_norm_backward; ``cache.mean`` and ``cache.var`` are the
        float64 (C,) statistics used (the batch's in training).
    """
    training, momentum, eps = batch_norm_inputs(x, weight, bias, running_mean, running_var, training, momentum, eps)
    if _backend.resolve(backend) == "reference":
        return reference.batch_norm_forward(x, weight, bias, running_mean, running_var, training=training,
                                            momentum=momentum, eps=eps)
    x = contiguous(x)
    layout = _Channels(x)
    if training:
        mean, var = _batch_statistics_compiled(x, layout)
        if running_mean is not None:
            reference.update_running(running_mean, running_var, mean, var, layout.count, momentum)
    else:
        mean, var = running_mean.astype(np.float64), running_var.astype(np.float64)
    inv_std = 1 / np.sqrt(var + eps)
    out = _batch_affine_compiled(x, layout, *_affine_map(mean, inv_std, weight, bias))
    return out, NormCache("batch", x, weight.copy(), mean, var, inv_std, training, None, "cython")


def batch_norm_backward(dout, cache, *, need_dx=True):
    """Gradients of batch_norm_forward, computed by the backend the forward used.

    dout : ndarray of x's shape, the forward output's dtype.
    need_dx : False skips the input gradient (e.g. for a network's first layer).

    Returns
    -------
    dx : ndarray of x's shape and dtype (None when need_dx is False). In training it
        includes the path through the batch statistics:
        dx = weight * inv_std * (dout - mean(dout) - x_hat * mean(dout * x_hat)),
        means over each channel's N*S values; in evaluation dx = weight * inv_std * dout.
    dweight, dbias : ndarrays of shape (C,): sum(dout * x_hat) and sum(dout) per channel.
    """
    need_dx = norm_backward_inputs(dout, cache, "batch", need_dx)
    if cache.backend == "reference":
        return reference.batch_norm_backward(dout, cache, need_dx=need_dx)
    return _batch_backward_compiled(contiguous(dout), cache.x, cache.weight, cache.mean, cache.inv_std,
                                    cache.batch_statistics, need_dx)


# --- layer norm -----------------------------------------------------------------------------

def _row_statistics_compiled(rows, eps):
    count = rows.shape[0]
    mean, m2 = np.empty(count), np.empty(count)
    if rows.size:
        _compiled.norm.plane_moments(rows, mean, m2, _threads(rows.size, count))
    var = m2 / rows.shape[1]
    return mean, var, 1 / np.sqrt(var + eps)


def layer_norm_forward(x, weight, bias, *, eps=1e-5, backend="auto"):
    """Layer normalisation: each sample normalised over its trailing dimensions.

    With normalized_shape = weight.shape (k dimensions), each x[i] of shape normalized_shape
    (i running over x's leading dimensions) becomes
    out[i] = weight * (x[i] - mean_i) / sqrt(var_i + eps) + bias, var biased. The same in
    training and evaluation.

    Parameters
    ----------
    x : ndarray of shape (..., *normalized_shape), e.g. (N, D) with weight (D,), or
        (N, C, H, W) with weight (C, H, W); float32 or float64.
    weight, bias : ndarrays of shape normalized_shape, x's dtype.
    eps : float > 0.
    backend : "auto", "cython" or "reference".

    Returns
    -------
    out : ndarray of x's shape and dtype.
    cache : NormCache for layer_norm_backward.
    """
    eps = layer_norm_inputs(x, weight, bias, eps)
    if _backend.resolve(backend) == "reference":
        return reference.layer_norm_forward(x, weight, bias, eps=eps)
    x = contiguous(x)
    weight = np.ascontiguousarray(weight).copy()
    rows = x.reshape(-1, weight.size)
    mean, var, inv_std = _row_statistics_compiled(rows, eps)
    out = np.empty_like(x)
    if x.size:
        _compiled.norm.row_affine(rows, mean, inv_std, weight.reshape(-1), np.ascontiguousarray(bias).reshape(-1),
                                   out.reshape(rows.shape), _threads(x.size, rows.shape[0]))
    return out, NormCache("layer", x, weight, mean, var, inv_std, True, None, "cython")


def layer_norm_backward(dout, cache, *, need_dx=True):
    """Gradients of layer_norm_forward, computed by the backend the forward used.

    dout : ndarray of x's shape and dtype. need_dx : False skips dx.

    Returns
    -------
    dx : ndarray of x's shape and dtype, or None:
        inv_std * (g - mean(g) - x_hat * mean(g * x_hat)), g = dout * weight, means over
        each sample's normalised values.
    dweight, dbias : ndarrays of the normalised shape: sum(dout * x_hat), sum(dout) over
        the leading dimensions.
    """
    need_dx = norm_backward_inputs(dout, cache, "layer", need_dx)
    if cache.backend == "reference":
        return reference.layer_norm_backward(dout, cache, need_dx=need_dx)
    x, weight = cache.x, cache.weight
    rows = x.reshape(-1, weight.size)
    threads = _threads(x.size, rows.shape[0])
    weight_partial = np.zeros((threads, weight.size))
    bias_partial = np.zeros((threads, weight.size))
    dx = np.empty_like(x) if need_dx else None
    if x.size:
        _compiled.norm.row_backward(contiguous(dout).reshape(rows.shape), rows, cache.mean, cache.inv_std,
                                     weight.reshape(-1), None if dx is None else dx.reshape(rows.shape),
                                     weight_partial, bias_partial, need_dx, threads)
    dweight = weight_partial.sum(axis=0).reshape(weight.shape).astype(x.dtype)
    dbias = bias_partial.sum(axis=0).reshape(weight.shape).astype(x.dtype)
    return dx, dweight, dbias


# --- group norm -----------------------------------------------------------------------------

def group_norm_forward(x, weight, bias, num_groups, *, eps=1e-5, backend="auto"):
    """Group normalisation: each sample's channels split into groups, each group normalised.

    The C channels form num_groups groups of C / num_groups consecutive channels; the
    values of one sample's group (C / num_groups * S of them, S the product of the
    spatial sizes) are normalised together, then each channel scaled and shifted:
    out[n, c] = weight[c] * (x[n, c] - mean[n, g]) / sqrt(var[n, g] + eps) + bias[c],
    var biased. num_groups = 1 is a layer norm over (C, *spatial) with per-channel
    parameters; num_groups = C an instance norm.

    Parameters
    ----------
    x : ndarray of shape (N, C, *spatial), float32 or float64.
    weight, bias : ndarrays of shape (C,), x's dtype.
    num_groups : int >= 1 dividing C.
    eps : float > 0.
    backend : "auto", "cython" or "reference".

    Returns
    -------
    out : ndarray of x's shape and dtype.
    cache : NormCache for group_norm_backward; its statistics have shape (N, num_groups).
    """
    num_groups, eps = group_norm_inputs(x, weight, bias, num_groups, eps)
    if _backend.resolve(backend) == "reference":
        return reference.group_norm_forward(x, weight, bias, num_groups, eps=eps)
    x = contiguous(x)
    batch, channels = x.shape[0], x.shape[1]
    spatial = math.prod(x.shape[2:])
    per_group = channels // num_groups if num_groups else 0
    out = np.empty_like(x)
    if x.size == 0:
        mean, var = np.zeros((batch, num_groups)), np.zeros((batch, num_groups))
        return out, NormCache("group", x, weight.copy(), mean, var, 1 / np.sqrt(var + eps), True, num_groups, "cython")
    runs = x.reshape(batch * num_groups, per_group * spatial)
    mean, var, inv_std = _row_statistics_compiled(runs, eps)
    mean, var, inv_std = (a.reshape(batch, num_groups) for a in (mean, var, inv_std))
    # the (n, c) planes of a group follow one another, so each group's statistic repeats per channel
    plane_mean = np.repeat(mean.ravel(), per_group)
    plane_scale = np.repeat(inv_std.ravel(), per_group) * np.tile(weight.astype(np.float64), batch)
    plane_shift = np.tile(bias.astype(np.float64), batch)
    planes = x.reshape(batch * channels, spatial)
    _compiled.norm.plane_affine(planes, plane_mean, plane_scale, plane_shift, out.reshape(planes.shape),
                                 _threads(x.size, planes.shape[0]))
    return out, NormCache("group", x, weight.copy(), mean, var, inv_std, True, num_groups, "cython")


def group_norm_backward(dout, cache, *, need_dx=True):
    """Gradients of group_norm_forward, computed by the backend the forward used.

    dout : ndarray of x's shape and dtype. need_dx : False skips dx.

    Returns
    -------
    dx : ndarray of x's shape and dtype, or None:
        inv_std * (g - mean(g) - x_hat * mean(g * x_hat)), g = dout * weight[c], means over
        each sample's group.
    dweight, dbias : ndarrays of shape (C,): sum(dout * x_hat), sum(dout) over N and space.
    """
    need_dx = norm_backward_inputs(dout, cache, "group", need_dx)
    if cache.backend == "reference":
        return reference.group_norm_backward(dout, cache, need_dx=need_dx)
    x, weight, groups = cache.x, cache.weight, cache.groups
    batch, channels = x.shape[0], x.shape[1]
    spatial = math.prod(x.shape[2:])
    per_group = channels // groups
    if x.size == 0:
        zeros = np.zeros(channels, x.dtype)
        return (np.empty_like(x) if need_dx else None), zeros, zeros.copy()
    kernels = _compiled.norm
    planes = x.reshape(batch * channels, spatial)
    dout_planes = contiguous(dout).reshape(planes.shape)
    threads = _threads(x.size, planes.shape[0])
    plane_mean = np.repeat(cache.mean.ravel(), per_group)
    dout_sum, centred_sum = np.empty(planes.shape[0]), np.empty(planes.shape[0])
    kernels.plane_gradient_sums(dout_planes, planes, plane_mean, dout_sum, centred_sum, threads)
    dout_sum = dout_sum.reshape(batch, groups, per_group)
    centred_sum = centred_sum.reshape(batch, groups, per_group)
    inv_std = cache.inv_std
    dweight = (centred_sum * inv_std[..., None]).sum(axis=0).reshape(channels).astype(x.dtype)
    dbias = dout_sum.sum(axis=0).reshape(channels).astype(x.dtype)
    if not need_dx:
        return None, dweight, dbias
    group_weight = weight.astype(np.float64).reshape(groups, per_group)
    weighted_sum = (dout_sum * group_weight).sum(axis=2)          # sum(g) per (n, group)
    weighted_centred = (centred_sum * group_weight).sum(axis=2)   # sum(g * (x - mean))
    count = per_group * spatial
    dout_scale = np.repeat(inv_std.ravel(), per_group) * np.tile(weight.astype(np.float64), batch)
    centred_scale = np.repeat((-inv_std**3 * weighted_centred / count).ravel(), per_group)
    shift = np.repeat((-inv_std * weighted_sum / count).ravel(), per_group)
    dx = np.empty_like(x)
    kernels.plane_input_gradient(dout_planes, planes, plane_mean, dout_scale, centred_scale, shift,
                                 dx.reshape(planes.shape), threads)
    return dx, dweight, dbias
