"""Object layers: forward(x) -> out, backward(dout) -> dx, with params/grads dicts."""
from .base import Layer

__all__ = ["Layer"]
