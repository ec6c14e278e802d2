"""PyTorch interop: from_torch(nn.Sequential) -> Sequential and to_torch(model) -> nn.Sequential, weights copied.

torch is imported inside these two functions only, so importing fastconv never imports it.
Each supported module type is one entry in a table: _FROM_TORCH, keyed by the torch.nn
class name, maps a module to a fastconv layer; _TO_TORCH, keyed by the fastconv class,
maps a layer back. A converter raises _Unsupported naming an option fastconv lacks
(e.g. ``dilation=(2, 2)``); the caller turns it into a ValueError naming the module.
"""
import numpy as np

from .layers import AvgPool2d, BatchNorm2d, Conv2d, Dropout, Flatten, LeakyReLU, Linear, MaxPool2d, ReLU, Sequential
from .layers.base import Layer


class _Unsupported(Exception):
    """A module option with no fastconv equivalent; the message names it."""


def _import_torch():
    try:
        import torch
    except ImportError as error:
        raise ImportError(
            "fastconv.interop needs PyTorch, which is not installed (python -m pip install torch)"
        ) from error
    return torch


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _require(module, **expected):
    """Raise _Unsupported for each option of `module` that differs from the expected value."""
    for name, wanted in expected.items():
        actual = getattr(module, name)
        if actual != wanted:
            raise _Unsupported(f"{name}={actual!r} (fastconv supports only {wanted!r})")


def _copy(target, tensor):
    """Copy a torch tensor into a fastconv layer's array (same shape, the array's dtype)."""
    values = tensor.detach().cpu().numpy()
    if values.shape != target.shape:
        raise _Unsupported(f"a tensor of shape {tuple(values.shape)} where fastconv has {target.shape}")
    np.copyto(target, values, casting="same_kind")


def _tensor(torch, array):
    return torch.from_numpy(np.array(array, copy=True))


# --- torch -> fastconv: one converter per torch.nn class name --------------------------------

def _conv2d_from_torch(module, dtype):
    if _pair(module.dilation) != (1, 1):
        raise _Unsupported(f"dilation={module.dilation} (fastconv's Conv2d has no dilation yet)")
    _require(module, groups=1, padding_mode="zeros")
    padding = module.padding
    if padding == "valid":
        padding = (0, 0)
    elif padding == "same":
        # stride 1 (torch requires it for 'same'): an odd kernel pads (k - 1) / 2 on each side
        if any(size % 2 == 0 for size in module.kernel_size):
            raise _Unsupported(f"padding='same' with the even kernel {module.kernel_size} (pads unequally)")
        padding = tuple((size - 1) // 2 for size in module.kernel_size)
    layer = Conv2d(module.in_channels, module.out_channels, module.kernel_size, module.stride, padding,
                   bias=module.bias is not None, dtype=dtype, rng=0)
    _copy(layer.params["weight"], module.weight)
    if module.bias is not None:
        _copy(layer.params["bias"], module.bias)
    return layer


def _linear_from_torch(module, dtype):
    layer = Linear(module.in_features, module.out_features, bias=module.bias is not None, dtype=dtype, rng=0)
    _copy(layer.params["weight"], module.weight)
    if module.bias is not None:
        _copy(layer.params["bias"], module.bias)
    return layer


def _batchnorm2d_from_torch(module, dtype):
    _require(module, affine=True, track_running_stats=True)
    if module.momentum is None:
        raise _Unsupported("momentum=None (a cumulative average; fastconv's running statistics are exponential)")
    layer = BatchNorm2d(module.num_features, eps=module.eps, momentum=module.momentum, dtype=dtype)
    _copy(layer.params["weight"], module.weight)
    _copy(layer.params["bias"], module.bias)
    _copy(layer.running_mean, module.running_mean)
    _copy(layer.running_var, module.running_var)
    return layer


def _max_pool2d_from_torch(module, dtype):
    if _pair(module.dilation) != (1, 1):
        raise _Unsupported(f"dilation={module.dilation}")
    _require(module, ceil_mode=False, return_indices=False)
    return MaxPool2d(module.kernel_size, module.stride, module.padding)


def _avg_pool2d_from_torch(module, dtype):
    _require(module, ceil_mode=False, divisor_override=None)
    if not module.count_include_pad and _pair(module.padding) != (0, 0):
        raise _Unsupported("count_include_pad=False with padding (fastconv divides by the whole window)")
    return AvgPool2d(module.kernel_size, module.stride, module.padding)


def _flatten_from_torch(module, dtype):
    _require(module, start_dim=1, end_dim=-1)
    return Flatten()


_FROM_TORCH = {
    "Conv2d": _conv2d_from_torch,
    "Linear": _linear_from_torch,
    "BatchNorm2d": _batchnorm2d_from_torch,
    "MaxPool2d": _max_pool2d_from_torch,
    "AvgPool2d": _avg_pool2d_from_torch,
    "ReLU": lambda module, dtype: ReLU(),
    "LeakyReLU": lambda module, dtype: LeakyReLU(module.negative_slope),
    "Flatten": _flatten_from_torch,
    "Dropout": lambda module, dtype: Dropout(module.p),
}


def _torch_dtype(torch, module):
    """The numpy dtype of every floating parameter and buffer of `module` (float32 if none)."""
    dtypes = {tensor.dtype for tensor in list(module.parameters()) + list(module.buffers())
              if tensor.is_floating_point()}
    if len(dtypes) > 1:
        raise ValueError(f"from_torch: the module mixes tensor dtypes {sorted(map(str, dtypes))}; "
                         "convert it to one with .float() or .double()")
    dtype = dtypes.pop() if dtypes else torch.float32
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"from_torch: fastconv layers are float32 or float64, the module is {dtype}")
    return np.dtype(np.float32 if dtype == torch.float32 else np.float64)


def _from_torch_module(torch, module, path, dtype):
    name = type(module).__name__
    where = f"module {path!r} ({name})" if path else f"the module ({name})"
    if type(module) is torch.nn.Sequential:
        children = list(module.named_children())
        if not children:
            raise ValueError(f"from_torch: {where} is empty; a fastconv Sequential needs a layer")
        layer = Sequential([
            _from_torch_module(torch, child, f"{path}.{child_name}" if path else child_name, dtype)
            for child_name, child in children
        ])
    else:
        converter = _FROM_TORCH.get(name)
        if converter is None or type(module) is not getattr(torch.nn, name, None):
            base = next((kind for kind in sorted(_FROM_TORCH) if isinstance(module, getattr(torch.nn, kind))), None)
            raise ValueError(
                f"from_torch: {where} is not supported; supported modules: nn.Sequential, "
                + ", ".join(f"nn.{supported}" for supported in sorted(_FROM_TORCH))
                + ("" if base is None else
                   f" (exactly: it subclasses nn.{base}, and a subclass may compute something else)")
            )
        try:
            layer = converter(module, dtype)
        except _Unsupported as error:
            raise ValueError(f"from_torch: {where}: {error}") from None
        except (TypeError, ValueError) as error:
            raise ValueError(f"from_torch: {where}: no fastconv equivalent: {error}") from error
        flags = {parameter.requires_grad for parameter in module.parameters(recurse=False)}
        if len(flags) > 1:
            raise ValueError(f"from_torch: {where} has some parameters frozen and some not; "
                             "fastconv freezes whole layers")
        if flags == {False}:
            layer.trainable = False
    layer.training = module.training
    return layer


def from_torch(module):
    """A fastconv Sequential computing what a PyTorch ``nn.Sequential`` computes, weights copied.

    Parameters
    ----------
    module : torch.nn.Sequential (possibly nested) of supported modules, or one supported
        module: nn.Conv2d (zero padding, including 'same' for odd kernels and 'valid'),
        nn.Linear, nn.BatchNorm2d (affine, tracking running statistics), nn.MaxPool2d,
        nn.AvgPool2d, nn.ReLU, nn.LeakyReLU (slope >= 0), nn.Flatten (start_dim=1),
        nn.Dropout. Its floating tensors must all be float32 or all float64.

    Returns
    -------
    Sequential of the same layers (nested where the module nests), of the module's dtype,
    with copies of its parameters and BatchNorm running statistics, its training/eval
    modes, and a layer frozen (``trainable = False``) where every parameter has
    ``requires_grad=False``. In eval mode both compute the same outputs up to rounding.

    Raises ValueError naming the module (by its path, e.g. '3' or 'features.2') for any
    module or option fastconv cannot express, TypeError if `module` is not an nn.Module.
    """
    torch = _import_torch()
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"from_torch: module must be a torch.nn.Module, got {type(module).__name__}")
    dtype = _torch_dtype(torch, module)
    model = _from_torch_module(torch, module, "", dtype)
    if not isinstance(model, Sequential):
        model = Sequential([model])
        model.training = module.training
    return model


# --- fastconv -> torch: one converter per fastconv layer class -------------------------------

def _torch_dtype_of(torch, layer):
    return torch.float32 if layer.dtype == np.float32 else torch.float64


def _load_parameters(torch, module, arrays):
    with torch.no_grad():
        for name, array in arrays.items():
            getattr(module, name).copy_(_tensor(torch, array))
    return module


def _conv2d_to_torch(torch, layer):
    module = torch.nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                             layer.padding, bias="bias" in layer.params, dtype=_torch_dtype_of(torch, layer))
    return _load_parameters(torch, module, layer.params)


def _linear_to_torch(torch, layer):
    module = torch.nn.Linear(layer.in_features, layer.out_features, bias="bias" in layer.params,
                             dtype=_torch_dtype_of(torch, layer))
    return _load_parameters(torch, module, layer.params)


def _batchnorm2d_to_torch(torch, layer):
    module = torch.nn.BatchNorm2d(layer.num_features, eps=layer.eps, momentum=layer.momentum,
                                  dtype=_torch_dtype_of(torch, layer))
    return _load_parameters(torch, module, dict(layer.params, running_mean=layer.running_mean,
                                                running_var=layer.running_var))


_TO_TORCH = {
    Conv2d: _conv2d_to_torch,
    Linear: _linear_to_torch,
    BatchNorm2d: _batchnorm2d_to_torch,
    MaxPool2d: lambda torch, layer: torch.nn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding),
    AvgPool2d: lambda torch, layer: torch.nn.AvgPool2d(layer.kernel_size, layer.stride, layer.padding,
                                                       count_include_pad=True),
    ReLU: lambda torch, layer: torch.nn.ReLU(),
    LeakyReLU: lambda torch, layer: torch.nn.LeakyReLU(layer.alpha),
    Flatten: lambda torch, layer: torch.nn.Flatten(),
    Dropout: lambda torch, layer: torch.nn.Dropout(layer.p),
}


def _to_torch_layer(torch, layer, path):
    where = f"layer {path!r} ({type(layer).__name__})" if path else f"the model ({type(layer).__name__})"
    if type(layer) is Sequential:
        module = torch.nn.Sequential(*[
            _to_torch_layer(torch, child, f"{path}.{index}" if path else str(index))
            for index, child in enumerate(layer.layers)
        ])
    else:
        converter = _TO_TORCH.get(type(layer))
        if converter is None:
            raise ValueError(
                f"to_torch: {where} is not supported; supported layers: Sequential, "
                + ", ".join(sorted(kind.__name__ for kind in _TO_TORCH))
            )
        module = converter(torch, layer)
        if not layer.trainable:
            module.requires_grad_(False)
    module.training = layer.training  # not .train(): that would also reset the children's modes
    return module


def to_torch(model):
    """A PyTorch ``nn.Sequential`` computing what a fastconv model computes, weights copied.

    Parameters
    ----------
    model : Sequential (possibly nested) of the layers from_torch produces, or one such layer.

    Returns
    -------
    torch.nn.Sequential of the matching modules, of the model's dtype, with copies of its
    parameters and running statistics, its training/eval modes, and ``requires_grad=False``
    on frozen layers' parameters. ``from_torch(to_torch(model))`` gives back equal arrays.

    Raises ValueError naming the layer (by its index path, e.g. '1.0') for a layer type
    with no converter, TypeError if `model` is not a fastconv layer.
    """
    torch = _import_torch()
    if not isinstance(model, Layer):
        raise TypeError(f"to_torch: model must be a fastconv.layers.Layer, got {type(model).__name__}")
    module = _to_torch_layer(torch, model, "")
    if not isinstance(module, torch.nn.Sequential):
        module = torch.nn.Sequential(module)
        module.training = model.training
    return module
