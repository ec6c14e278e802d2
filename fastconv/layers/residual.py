"""Residual: out = body(x) + shortcut(x), the block of residual networks (ResNet)."""
import numpy as np

from .base import Layer
from .core import check_layer_dout, check_layer_input


class Residual(Layer):
    """A residual block: ``out = body(x) + x``, or ``body(x) + shortcut(x)`` with a projection.

    Parameters
    ----------
    body : Layer, typically a Sequential such as conv-BN-ReLU-conv-BN. Its output must have
        the shape and dtype of the shortcut's output.
    shortcut : None (the identity: x itself is added) or a Layer, e.g. a 1x1 stride-2
        Conv2d followed by a BatchNorm2d where the body changes the shape.

    forward : x of any shape the body takes -> out of the body's output shape; out is a
        new array (neither x nor the body's output is written).
    backward : dout of out's shape and dtype -> dx of x's shape: the body's input gradient
        plus the shortcut's (plus dout itself for the identity). With ``need_dx=False``
        both branches skip their input gradients and None is returned; the parameter
        gradients are computed either way.

    ``params`` and ``grads`` are flat dicts built on every access, keyed "body.<name>" and
    "shortcut.<name>" with the children's own keys (e.g. "body.0.weight"); the arrays are
    the children's own objects. The activation after the addition (ReLU in ResNet) is not
    part of the block: put it after the Residual in a Sequential.
    """

    def __init__(self, body, shortcut=None):
        # Not Layer.__init__: params and grads are views over the children, as in Sequential.
        if not isinstance(body, Layer):
            raise TypeError(f"Residual: body must be a fastconv.layers.Layer, got {type(body).__name__}")
        if shortcut is not None and not isinstance(shortcut, Layer):
            raise TypeError(
                f"Residual: shortcut must be None (the identity) or a fastconv.layers.Layer, "
                f"got {type(shortcut).__name__}"
            )
        self.body = body
        self.shortcut = shortcut
        self.training = True
        self._cache = None

    def _children(self):
        return {"body": self.body} if self.shortcut is None else {"body": self.body, "shortcut": self.shortcut}

    @property
    def params(self):
        return {f"{prefix}.{name}": value for prefix, child in self._children().items()
                for name, value in child.params.items()}

    @property
    def grads(self):
        return {f"{prefix}.{name}": value for prefix, child in self._children().items()
                for name, value in child.grads.items()}

    def forward(self, x):
        check_layer_input(self, x)
        main = self.body.forward(x)
        side = x if self.shortcut is None else self.shortcut.forward(x)
        self._check_branches(x, main, side)
        self._cache = (main.shape, main.dtype)
        return np.add(main, side)

    def infer(self, x):
        """body.infer(x) + shortcut.infer(x) (or + x), keeping nothing (Layer.infer): the
        branches fuse their own layers."""
        check_layer_input(self, x)
        main = self.body.infer(x)
        side = x if self.shortcut is None else self.shortcut.infer(x)
        self._check_branches(x, main, side)
        self._cache = None
        return np.add(main, side)

    def _forget(self):
        self._cache = None
        for child in self._children().values():
            child._forget()

    def _check_branches(self, x, main, side):
        if not isinstance(main, np.ndarray) or not isinstance(side, np.ndarray) \
                or main.shape != side.shape or main.dtype != side.dtype:
            described = {name: f"{value.shape} {value.dtype}" if isinstance(value, np.ndarray)
                         else type(value).__name__ for name, value in (("body", main), ("shortcut", side))}
            raise ValueError(
                f"Residual: the body's output ({described['body']}) and the "
                f"{'identity shortcut (x)' if self.shortcut is None else 'shortcut output'} "
                f"({described['shortcut']}) must have one shape and dtype to be added; "
                f"x has shape {x.shape}"
                + ("; give the Residual a projection shortcut" if self.shortcut is None else "")
            )

    def backward(self, dout, *, need_dx=True):
        """dout (the forward output's shape and dtype) -> dx (x's shape), or None with need_dx=False."""
        shape, dtype = self._saved()
        check_layer_dout(self, dout, shape, dtype)
        dbody = self.body.backward(dout, need_dx=need_dx)
        if self.shortcut is None:
            dside = dout
        else:
            dside = self.shortcut.backward(dout, need_dx=need_dx)
        if not need_dx:
            return None
        # a fresh array: either branch may hand back dout itself (or a view of it)
        return np.add(dbody, dside)

    @property
    def trainable(self):
        """True when both branches are trainable; setting it freezes or unfreezes both."""
        return all(child.trainable for child in self._children().values())

    @trainable.setter
    def trainable(self, value):
        for child in self._children().values():
            child.trainable = value

    def _needs_param_grads(self):
        return any(child._needs_param_grads() for child in self._children().values())

    def _config(self):
        # the current branches: a replaced body must be saved as it is now
        return {"body": self.body, "shortcut": self.shortcut}

    def _state_arrays(self):
        return {f"{prefix}.{name}": value for prefix, child in self._children().items()
                for name, value in child._state_arrays().items()}

    def train(self):
        self.training = True
        for child in self._children().values():
            child.train()
        return self

    def eval(self):
        self.training = False
        for child in self._children().values():
            child.eval()
        return self

    def __repr__(self):
        body = repr(self.body).replace("\n", "\n  ")
        if self.shortcut is None:
            return f"Residual(\n  (body): {body}\n)"
        shortcut = repr(self.shortcut).replace("\n", "\n  ")
        return f"Residual(\n  (body): {body}\n  (shortcut): {shortcut}\n)"
