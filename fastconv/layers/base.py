"""The object-layer contract: forward(x) -> out keeps what backward(dout) -> dx needs."""
import functools
import inspect
from typing import NamedTuple

import numpy as np

# The layer types fastconv.load_model may build, by class name: every public Layer subclass
# defined in a fastconv.layers module, registered as it is defined (Layer.__init_subclass__).
# Loading consults this allowlist only; it never imports or calls anything named by a file.
LAYER_TYPES = {}


class LoadResult(NamedTuple):
    """What load_state_dict did not match: keys the layer has but `state` lacked, and keys
    of `state` the layer does not have (both empty after a strict load)."""

    missing_keys: list
    unexpected_keys: list


def _recording_init(init):
    """Wrap a subclass's __init__ so the instance remembers its constructor arguments.

    Only the outermost __init__ of a call records (a subclass calling super().__init__
    keeps its own arguments), so type(layer)(**layer._config()) rebuilds the same layer.
    """
    signature = inspect.signature(init)
    self_name = next(iter(signature.parameters))

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        if "_constructor_arguments" not in self.__dict__:
            try:
                bound = signature.bind(self, *args, **kwargs)
            except TypeError:
                return init(self, *args, **kwargs)  # raises Python's own message for the call
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            del arguments[self_name]
            self.__dict__["_constructor_arguments"] = arguments
        init(self, *args, **kwargs)

    return __init__


def _contract_backward(backward):
    """Wrap a subclass's backward so every layer keeps the shared backward contract:

    - it takes ``need_dx`` (passed on when the layer's own backward accepts it; a layer
      that does not may still return dx, which the contract allows);
    - a frozen layer (``trainable = False``) leaves ``grads`` empty, whether or not its own
      backward knows about freezing.
    """
    accepts_need_dx = "need_dx" in inspect.signature(backward).parameters

    @functools.wraps(backward)
    def wrapper(self, *args, need_dx=True, **kwargs):
        if accepts_need_dx:
            kwargs["need_dx"] = need_dx
        dx = backward(self, *args, **kwargs)
        if not self.trainable:
            self.grads.clear()
        return dx

    return wrapper


class Layer:
    """Base class of every object layer.

    Subclasses implement ``forward(x) -> out`` (storing what backward needs) and
    ``backward(dout, *, need_dx=True) -> dx`` (filling ``self.grads``; with need_dx=False a
    layer may skip its input gradient and return None). ``params`` and ``grads`` are dicts
    of arrays with the same keys; layers without parameters keep them empty.
    ``training`` switches layers whose behaviour differs between training and evaluation.

    ``trainable`` (default True): a frozen layer (``trainable = False``) gets no parameter
    gradients, so its ``grads`` stay empty and an optimiser leaves its parameters alone.
    Non-parameter state that belongs in a saved model (BatchNorm's running statistics) is
    named in the class attribute ``_buffers``; ``state_dict()`` holds params and buffers.

    Every subclass's constructor arguments are recorded (``_config()``), so that
    ``fastconv.save_model`` can store any layer without code of its own; public subclasses
    defined in fastconv.layers are registered by name in ``LAYER_TYPES`` for loading.
    """

    _buffers = ()
    _trainable = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _recording_init(cls.__dict__["__init__"])
        if "backward" in cls.__dict__:
            cls.backward = _contract_backward(cls.__dict__["backward"])
        if cls.__module__.startswith("fastconv.layers.") and not cls.__name__.startswith("_"):
            known = LAYER_TYPES.get(cls.__name__)
            if known is not None and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
                raise TypeError(
                    f"two fastconv layer types named {cls.__name__}: {known.__module__} and {cls.__module__}"
                )
            LAYER_TYPES[cls.__name__] = cls

    def __init__(self):
        self.params = {}
        self.grads = {}
        self.training = True
        self._cache = None

    def forward(self, x):
        raise NotImplementedError

    def backward(self, dout, *, need_dx=True):
        raise NotImplementedError

    def infer(self, x):
        """forward(x) for inference: the output alone, in the layer's current mode.

        Nothing is kept for a backward: what an earlier forward saved is dropped too, so a
        backward after infer raises as one before any forward does, never mixing two inputs.
        That frees containers to fuse layers: Sequential.infer runs Conv -> BatchNorm (with
        running statistics) -> ReLU as one convolution, with the output equal to forward's
        within a rounding (fastconv/_epilogue.py). predict, predict_scores and accuracy use it.
        """
        out = self.forward(x)
        self._forget()
        return out

    def _forget(self):
        """Drop what forward saved for backward (containers: in every layer)."""
        self._cache = None

    def __call__(self, x):
        return self.forward(x)

    def train(self):
        """Switch to training behaviour; returns self."""
        self.training = True
        return self

    def eval(self):
        """Switch to evaluation behaviour; returns self."""
        self.training = False
        return self

    def _saved(self):
        """What forward stored, or a clear error when backward comes first."""
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        return self._cache

    # --- freezing -------------------------------------------------------------------------

    @property
    def trainable(self):
        """False freezes the layer: backward computes no parameter gradients (grads stay empty)."""
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"trainable must be True or False, got {type(value).__name__} {value!r}")
        self._trainable = bool(value)
        if not value and getattr(self, "grads", None):
            # gradients of an earlier backward must not reach an optimiser after freezing
            self.grads.clear()

    def _needs_param_grads(self):
        """Whether a backward through this layer has parameter gradients to compute."""
        return self.trainable and bool(self.params)

    # --- state ----------------------------------------------------------------------------

    def _config(self):
        """The constructor arguments this layer was built with, name -> value."""
        return dict(self.__dict__.get("_constructor_arguments", {}))

    def _state_arrays(self):
        """name -> the layer's own arrays (not copies): its params, then its buffers."""
        arrays = dict(self.params)
        for name in self._buffers:
            arrays[name] = getattr(self, name)
        return arrays

    def state_dict(self):
        """A snapshot of the layer's parameters and buffers: dict of name -> ndarray (copies).

        Keys are the ``params`` names ("weight", "bias") followed by the buffers (e.g.
        BatchNorm's "running_mean", "running_var"); a Sequential prefixes each layer's keys
        with its index ("0.weight", "1.0.bias", "4.running_var").
        """
        return {name: np.array(value, copy=True) for name, value in self._state_arrays().items()}

    def load_state_dict(self, state, strict=True):
        """Copy the arrays of `state` (e.g. from state_dict()) into the layer's own arrays.

        Parameters
        ----------
        state : dict of name -> ndarray, each of the same shape and dtype as the layer's.
        strict : True (default): `state` must have exactly the layer's keys. False: keys
            missing from `state` keep their values and keys the layer lacks are ignored.

        Returns
        -------
        LoadResult (missing_keys, unexpected_keys), both empty after a strict load.

        The values are copied into the existing arrays, so an optimiser holding
        ``model.params`` keeps updating the model. Everything is checked before anything is
        copied: on a ValueError (which lists every offending key) the layer is unchanged.
        """
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict of name -> ndarray, got {type(state).__name__}")
        targets = self._state_arrays()
        missing = [name for name in targets if name not in state]
        unexpected = [name for name in state if name not in targets]
        problems = []
        if strict and missing:
            problems.append(f"missing keys {missing}")
        if strict and unexpected:
            problems.append(f"unexpected keys {unexpected}")
        for name, target in targets.items():
            if name not in state:
                continue
            value = state[name]
            if not isinstance(value, np.ndarray):
                problems.append(f"{name!r} must be an ndarray, got {type(value).__name__}")
            elif value.shape != target.shape:
                problems.append(f"{name!r} has shape {value.shape} but the layer's has shape {target.shape}")
            elif value.dtype != target.dtype:
                problems.append(f"{name!r} has dtype {value.dtype} but the layer's has dtype {target.dtype}")
            elif not target.flags.writeable:
                problems.append(f"the layer's {name!r} (shape {target.shape}) is read-only")
        if problems:
            raise ValueError(f"{type(self).__name__}.load_state_dict: " + "; ".join(problems))
        for name, target in targets.items():
            if name in state:
                np.copyto(target, state[name])
        return LoadResult(missing, unexpected)
