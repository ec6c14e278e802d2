"""Reference batch, layer and group normalisation: NumPy in float64, the specification the kernels are tested against.

Rules the compiled kernels follow:
- Statistics are the mean and the biased variance (dividing by the number of values) of
  each normalised set, computed in float64 whatever x's dtype; x_hat = (x - mean) / sqrt(var + eps).
- out = x_hat * weight + bias, rounded once to x's dtype.
- The backward differentiates through the statistics when they came from x:
  dx = inv_std * (g - mean(g) - x_hat * mean(g * x_hat)) with g = dout * weight and the
  means over each normalised set; with fixed statistics (batch norm in evaluation)
  dx = g * inv_std. dweight = sum(dout * x_hat), dbias = sum(dout), over everything but
  the parameter's own axes.
- A NaN anywhere in a normalised set makes that whole set's output NaN (its mean is NaN).
"""
import math

import numpy as np

from .._cache import NormCache
from .._validate import batch_norm_inputs, contiguous, group_norm_inputs, layer_norm_inputs, norm_backward_inputs


def update_running(running_mean, running_var, mean, var, count, momentum):
    """running = (1 - momentum) * running + momentum * batch statistic, in place.

    The running variance takes the unbiased batch variance var * count / (count - 1).
    """
    unbiased = var * (count / (count - 1))
    np.copyto(running_mean, (1 - momentum) * running_mean + momentum * mean, casting="same_kind")
    np.copyto(running_var, (1 - momentum) * running_var + momentum * unbiased, casting="same_kind")


def _batch_axes(x):
    return (0,) + tuple(range(2, x.ndim))


def _per_channel(values, x):
    """(C,) values shaped to broadcast against x (N, C, *spatial)."""
    return values.reshape((1, -1) + (1,) * (x.ndim - 2))


def batch_statistics(x):
    """Per-channel mean and biased variance of x (N, C, *spatial), float64 (C,) each, two-pass."""
    x64 = x.astype(np.float64)
    axes = _batch_axes(x)
    mean = x64.mean(axis=axes)
    centred = x64 - _per_channel(mean, x)
    return mean, (centred * centred).mean(axis=axes)


def batch_forward(x, weight, bias, mean, inv_std):
    normalised = (x.astype(np.float64) - _per_channel(mean, x)) * _per_channel(inv_std, x)
    out = normalised * _per_channel(weight.astype(np.float64), x) + _per_channel(bias.astype(np.float64), x)
    return out.astype(x.dtype)


def batch_backward(dout, x, weight, mean, inv_std, batch_statistics_used, need_dx):
    axes = _batch_axes(x)
    dout64 = dout.astype(np.float64)
    normalised = (x.astype(np.float64) - _per_channel(mean, x)) * _per_channel(inv_std, x)
    dweight = (dout64 * normalised).sum(axis=axes).astype(x.dtype)
    dbias = dout64.sum(axis=axes).astype(x.dtype)
    if not need_dx:
        return None, dweight, dbias
    scaled = dout64 * _per_channel(weight.astype(np.float64), x)
    if batch_statistics_used:
        # mean and var depend on every element of the channel: remove the components of the
        # scaled gradient along the constant direction and along x_hat itself
        scaled = (scaled - scaled.mean(axis=axes, keepdims=True)
                  - normalised * (scaled * normalised).mean(axis=axes, keepdims=True))
    return (scaled * _per_channel(inv_std, x)).astype(x.dtype), dweight, dbias


def batch_norm_forward(x, weight, bias, running_mean=None, running_var=None, *, training=True,
                       momentum=0.1, eps=1e-5):
    """Batch normalisation over (N, *spatial) for each channel; see fastconv.batch_norm_forward."""
    training, momentum, eps = batch_norm_inputs(x, weight, bias, running_mean, running_var, training, momentum, eps)
    x = contiguous(x)
    if training:
        mean, var = batch_statistics(x)
        if running_mean is not None:
            update_running(running_mean, running_var, mean, var, x.size // x.shape[1], momentum)
    else:
        mean, var = running_mean.astype(np.float64), running_var.astype(np.float64)
    inv_std = 1 / np.sqrt(var + eps)
    out = batch_forward(x, weight, bias, mean, inv_std)
    return out, NormCache("batch", x, weight.copy(), mean, var, inv_std, training, None, "reference")


def batch_norm_backward(dout, cache, *, need_dx=True):
    """Gradients of batch_norm_forward: (dx or None, dweight, dbias); see fastconv.batch_norm_backward."""
    need_dx = norm_backward_inputs(dout, cache, "batch", need_dx)
    return batch_backward(dout, cache.x, cache.weight, cache.mean, cache.inv_std, cache.batch_statistics, need_dx)


def _rows(x, weight):
    """x as (M, D) rows, D the elements of the normalised (trailing) shape."""
    size = math.prod(weight.shape)
    return x.reshape(x.size // size, size)


def layer_statistics(rows):
    """Mean and biased variance of every row of (M, D), float64 (M,) each, two-pass."""
    rows64 = rows.astype(np.float64)
    mean = rows64.mean(axis=1)
    centred = rows64 - mean[:, None]
    return mean, (centred * centred).mean(axis=1)


def layer_norm_forward(x, weight, bias, *, eps=1e-5):
    """Layer normalisation over x's trailing weight.ndim dimensions; see fastconv.layer_norm_forward."""
    eps = layer_norm_inputs(x, weight, bias, eps)
    x = contiguous(x)
    rows = _rows(x, weight)
    mean, var = layer_statistics(rows)
    inv_std = 1 / np.sqrt(var + eps)
    normalised = (rows.astype(np.float64) - mean[:, None]) * inv_std[:, None]
    out = normalised * weight.astype(np.float64).ravel() + bias.astype(np.float64).ravel()
    return out.astype(x.dtype).reshape(x.shape), NormCache("layer", x, weight.copy(), mean, var, inv_std,
                                                           True, None, "reference")


def layer_norm_backward(dout, cache, *, need_dx=True):
    """Gradients of layer_norm_forward: (dx or None, dweight, dbias); see fastconv.layer_norm_backward."""
    need_dx = norm_backward_inputs(dout, cache, "layer", need_dx)
    x, weight = cache.x, cache.weight
    rows = _rows(x, weight)
    drows = _rows(dout, weight).astype(np.float64)
    normalised = (rows.astype(np.float64) - cache.mean[:, None]) * cache.inv_std[:, None]
    dweight = (drows * normalised).sum(axis=0).reshape(weight.shape).astype(x.dtype)
    dbias = drows.sum(axis=0).reshape(weight.shape).astype(x.dtype)
    if not need_dx:
        return None, dweight, dbias
    scaled = drows * weight.astype(np.float64).ravel()
    scaled = (scaled - scaled.mean(axis=1, keepdims=True)
              - normalised * (scaled * normalised).mean(axis=1, keepdims=True))
    return (scaled * cache.inv_std[:, None]).astype(x.dtype).reshape(x.shape), dweight, dbias


def _groups(x, num_groups):
    """x (N, C, *spatial) as (N, G, C/G * spatial): each group's values in one row."""
    return x.reshape(x.shape[0], num_groups, -1) if x.size else x.reshape(x.shape[0], num_groups, 0)


def group_statistics(x, num_groups):
    """Mean and biased variance of every (sample, group), float64 (N, G) each, two-pass."""
    grouped = _groups(x, num_groups).astype(np.float64)
    if grouped.shape[2] == 0:
        zeros = np.zeros(grouped.shape[:2])
        return zeros, zeros.copy()
    mean = grouped.mean(axis=2)
    centred = grouped - mean[..., None]
    return mean, (centred * centred).mean(axis=2)


def group_norm_forward(x, weight, bias, num_groups, *, eps=1e-5):
    """Group normalisation of (N, C, *spatial); see fastconv.group_norm_forward."""
    num_groups, eps = group_norm_inputs(x, weight, bias, num_groups, eps)
    x = contiguous(x)
    mean, var = group_statistics(x, num_groups)
    inv_std = 1 / np.sqrt(var + eps)
    normalised = ((_groups(x, num_groups).astype(np.float64) - mean[..., None]) * inv_std[..., None]).reshape(x.shape)
    out = normalised * _per_channel(weight.astype(np.float64), x) + _per_channel(bias.astype(np.float64), x)
    return out.astype(x.dtype), NormCache("group", x, weight.copy(), mean, var, inv_std, True, num_groups,
                                          "reference")


def group_norm_backward(dout, cache, *, need_dx=True):
    """Gradients of group_norm_forward: (dx or None, dweight, dbias); see fastconv.group_norm_backward."""
    need_dx = norm_backward_inputs(dout, cache, "group", need_dx)
    x, weight, groups = cache.x, cache.weight, cache.groups
    axes = _batch_axes(x)
    dout64 = dout.astype(np.float64)
    normalised = ((_groups(x, groups).astype(np.float64) - cache.mean[..., None])
                  * cache.inv_std[..., None]).reshape(x.shape)
    dweight = (dout64 * normalised).sum(axis=axes).astype(x.dtype)
    dbias = dout64.sum(axis=axes).astype(x.dtype)
    if not need_dx:
        return None, dweight, dbias
    scaled = _groups(dout64 * _per_channel(weight.astype(np.float64), x), groups)
    grouped = _groups(normalised, groups)
    if scaled.shape[2]:
        scaled = (scaled - scaled.mean(axis=2, keepdims=True)
                  - grouped * (scaled * grouped).mean(axis=2, keepdims=True))
    return (scaled * cache.inv_std[..., None]).reshape(x.shape).astype(x.dtype), dweight, dbias
