"""PyTorch interop: from_torch(nn.Sequential) -> Sequential and to_torch(model) -> nn.Sequential, weights copied.

torch is imported inside these two functions only, so importing fastconv never imports it.
Each supported module type is one entry in a table: _FROM_TORCH, keyed by the torch.nn
class name, maps a module to a fastconv layer; _TO_TORCH, keyed by the fastconv class,
maps a layer back. A converter raises _Unsupported naming an option fastconv lacks
(e.g. ``dilation=(2, 2)``); the caller turns it into a ValueError naming the module.
"""
import numpy as np

from . import layers
from .layers import Dropout, Flatten, GroupNorm, LayerNorm, LeakyReLU, Linear, ReLU, Sequential
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

def _tuple(value, ndim):
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * ndim


def _with_parameters(layer, module, names=("weight", "bias")):
    for name in names:
        tensor = getattr(module, name, None)
        if tensor is not None:
            _copy(layer.params[name], tensor)
    return layer


def _conv_from_torch(kind):
    """Conv1d/2d/3d and ConvTranspose1d/2d/3d: every option fastconv has (stride, padding
    incl. 'same'/'valid', dilation, groups, padding_mode; output_padding)."""
    ndim = int(kind[-2])
    transposed = kind.startswith("ConvTranspose")

    def convert(module, dtype):
        padding = module.padding
        if not isinstance(padding, str):
            padding = _tuple(padding, ndim)
        options = dict(dilation=_tuple(module.dilation, ndim), groups=module.groups)
        if transposed:
            _require(module, padding_mode="zeros")
            options["output_padding"] = _tuple(module.output_padding, ndim)
        else:
            options["padding_mode"] = module.padding_mode
        layer = getattr(layers, kind)(module.in_channels, module.out_channels,
                                      _tuple(module.kernel_size, ndim), _tuple(module.stride, ndim),
                                      padding, bias=module.bias is not None, dtype=dtype, rng=0,
                                      **options)
        return _with_parameters(layer, module)

    return convert


def _linear_from_torch(module, dtype):
    layer = Linear(module.in_features, module.out_features, bias=module.bias is not None, dtype=dtype, rng=0)
    return _with_parameters(layer, module)


def _batchnorm_from_torch(kind):
    def convert(module, dtype):
        _require(module, affine=True, track_running_stats=True)
        if module.momentum is None:
            raise _Unsupported("momentum=None (a cumulative average; fastconv's running statistics "
                               "are exponential)")
        layer = getattr(layers, kind)(module.num_features, eps=module.eps, momentum=module.momentum,
                                      dtype=dtype)
        _with_parameters(layer, module)
        _copy(layer.running_mean, module.running_mean)
        _copy(layer.running_var, module.running_var)
        return layer

    return convert


def _layer_norm_from_torch(module, dtype):
    if not module.elementwise_affine or getattr(module, "bias", None) is None:
        raise _Unsupported("elementwise_affine=False or bias=False (fastconv's LayerNorm has both)")
    return _with_parameters(LayerNorm(tuple(module.normalized_shape), eps=module.eps, dtype=dtype),
                            module)


def _group_norm_from_torch(module, dtype):
    _require(module, affine=True)
    return _with_parameters(GroupNorm(module.num_groups, module.num_channels, eps=module.eps,
                                      dtype=dtype), module)


def _max_pool_from_torch(kind):
    ndim = int(kind[-2])

    def convert(module, dtype):
        _require(module, return_indices=False)  # a Sequential passes one array on
        return getattr(layers, kind)(_tuple(module.kernel_size, ndim),
                                     _tuple(module.stride or module.kernel_size, ndim),
                                     _tuple(module.padding, ndim),
                                     dilation=_tuple(module.dilation, ndim),
                                     ceil_mode=bool(module.ceil_mode))

    return convert


def _avg_pool_from_torch(kind):
    ndim = int(kind[-2])

    def convert(module, dtype):
        return getattr(layers, kind)(_tuple(module.kernel_size, ndim),
                                     _tuple(module.stride or module.kernel_size, ndim),
                                     _tuple(module.padding, ndim), ceil_mode=bool(module.ceil_mode),
                                     count_include_pad=bool(module.count_include_pad),
                                     divisor_override=getattr(module, "divisor_override", None))

    return convert


def _adaptive_from_torch(kind):
    def convert(module, dtype):
        if getattr(module, "return_indices", False):
            raise _Unsupported("return_indices=True")
        size = module.output_size
        if isinstance(size, (tuple, list)) and None in size:
            raise _Unsupported(f"output_size={size} (None keeps an input size; give both)")
        return getattr(layers, kind)(size)

    return convert


def _flatten_from_torch(module, dtype):
    _require(module, start_dim=1, end_dim=-1)
    return Flatten()


_FROM_TORCH = {
    **{kind: _conv_from_torch(kind) for kind in ("Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d",
                                                 "ConvTranspose2d", "ConvTranspose3d")},
    "Linear": _linear_from_torch,
    "BatchNorm1d": _batchnorm_from_torch("BatchNorm1d"),
    "BatchNorm2d": _batchnorm_from_torch("BatchNorm2d"),
    "LayerNorm": _layer_norm_from_torch,
    "GroupNorm": _group_norm_from_torch,
    **{kind: _max_pool_from_torch(kind) for kind in ("MaxPool1d", "MaxPool2d", "MaxPool3d")},
    **{kind: _avg_pool_from_torch(kind) for kind in ("AvgPool1d", "AvgPool2d", "AvgPool3d")},
    "AdaptiveAvgPool2d": _adaptive_from_torch("AdaptiveAvgPool2d"),
    "AdaptiveMaxPool2d": _adaptive_from_torch("AdaptiveMaxPool2d"),
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


def _conv_to_torch(torch, layer):
    options = dict(dilation=layer.dilation, groups=layer.groups)
    if layer.transposed:
        options["output_padding"] = layer.output_padding
        padding = layer.padding
    else:
        options["padding_mode"] = layer.padding_mode
        padding = layer.padding
        if isinstance(padding, tuple) and len(padding) == 2 * layer.ndim:
            if padding[0::2] != padding[1::2]:
                raise _Unsupported(f"per-side padding {padding} with unequal sides (PyTorch's "
                                   "Conv pads both sides alike)")
            padding = padding[0::2]
    module = getattr(torch.nn, type(layer).__name__)(
        layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, padding,
        bias="bias" in layer.params, dtype=_torch_dtype_of(torch, layer), **options)
    return _load_parameters(torch, module, layer.params)


def _linear_to_torch(torch, layer):
    module = torch.nn.Linear(layer.in_features, layer.out_features, bias="bias" in layer.params,
                             dtype=_torch_dtype_of(torch, layer))
    return _load_parameters(torch, module, layer.params)


def _batchnorm_to_torch(torch, layer):
    module = getattr(torch.nn, type(layer).__name__)(layer.num_features, eps=layer.eps,
                                                     momentum=layer.momentum,
                                                     dtype=_torch_dtype_of(torch, layer))
    return _load_parameters(torch, module, dict(layer.params, running_mean=layer.running_mean,
                                                running_var=layer.running_var))


def _layer_norm_to_torch(torch, layer):
    module = torch.nn.LayerNorm(layer.params["weight"].shape, eps=layer.eps,
                                dtype=_torch_dtype_of(torch, layer))
    return _load_parameters(torch, module, layer.params)


def _group_norm_to_torch(torch, layer):
    module = torch.nn.GroupNorm(layer.num_groups, layer.num_channels, eps=layer.eps,
                                dtype=_torch_dtype_of(torch, layer))
    return _load_parameters(torch, module, layer.params)


def _max_pool_to_torch(torch, layer):
    return getattr(torch.nn, type(layer).__name__)(
        layer.kernel_size, layer.stride, layer.padding, dilation=layer.dilation,
        ceil_mode=layer.ceil_mode, return_indices=layer.return_indices)


def _avg_pool_to_torch(torch, layer):
    options = dict(ceil_mode=layer.ceil_mode, count_include_pad=layer.count_include_pad)
    if layer.divisor_override is not None:
        if type(layer) is layers.AvgPool1d:
            raise _Unsupported("divisor_override (PyTorch's AvgPool1d has none)")
        options["divisor_override"] = layer.divisor_override
    return getattr(torch.nn, type(layer).__name__)(layer.kernel_size, layer.stride, layer.padding,
                                                   **options)


_TO_TORCH = {
    **{getattr(layers, kind): _conv_to_torch for kind in (
        "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d")},
    Linear: _linear_to_torch,
    layers.BatchNorm1d: _batchnorm_to_torch,
    layers.BatchNorm2d: _batchnorm_to_torch,
    LayerNorm: _layer_norm_to_torch,
    GroupNorm: _group_norm_to_torch,
    **{getattr(layers, kind): _max_pool_to_torch for kind in ("MaxPool1d", "MaxPool2d", "MaxPool3d")},
    **{getattr(layers, kind): _avg_pool_to_torch for kind in ("AvgPool1d", "AvgPool2d", "AvgPool3d")},
    layers.AdaptiveAvgPool2d: lambda torch, layer: torch.nn.AdaptiveAvgPool2d(layer.output_size),
    layers.AdaptiveMaxPool2d: lambda torch, layer: torch.nn.AdaptiveMaxPool2d(layer.output_size),
    layers.GlobalAvgPool2d: lambda torch, layer: torch.nn.AdaptiveAvgPool2d(1),
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
        try:
            module = converter(torch, layer)
        except _Unsupported as error:
            raise ValueError(f"to_torch: {where}: {error}") from None
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
