"""Sequential: a chain of layers seen as one layer, with flat "index.name" params and grads."""
from .base import Layer


class Sequential(Layer):
    """Layers applied in order; backward runs them in reverse.

    layers : a list (or other iterable) of Layer objects, at least one.

    ``params`` and ``grads`` are flat dicts built from the layers on every access, keyed
    "<index>.<name>" (e.g. "0.weight", "3.bias"; nested containers give "1.0.weight").
    The arrays are the layers' own objects, so an optimiser updating ``params`` in place
    updates the layers. ``grads`` holds the gradients of the latest backward.
    ``train()`` / ``eval()`` switch every layer.
    """

    def __init__(self, layers):
        # Not Layer.__init__: params and grads are views over the children, not dicts of our own.
        layers = list(layers)
        if not layers:
            raise ValueError("Sequential needs at least one layer, got an empty list")
        for index, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(
                    f"Sequential: item {index} must be a fastconv.layers.Layer, got {type(layer).__name__}"
                )
        self.layers = layers
        self.training = True
        self._cache = None

    @staticmethod
    def _flat(dicts):
        return {f"{index}.{name}": value for index, entries in enumerate(dicts) for name, value in entries.items()}

    @property
    def params(self):
        return self._flat(layer.params for layer in self.layers)

    @property
    def grads(self):
        return self._flat(layer.grads for layer in self.layers)

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, dout, *, need_dx=True):
        """Run the layers' backwards in reverse; need_dx goes to the first layer only (every
        other layer's input gradient is the upstream gradient of the layer before it)."""
        for index in range(len(self.layers) - 1, -1, -1):
            dout = self.layers[index].backward(dout, need_dx=need_dx or index > 0)
        return dout

    def train(self):
        self.training = True
        for layer in self.layers:
            layer.train()
        return self

    def eval(self):
        self.training = False
        for layer in self.layers:
            layer.eval()
        return self

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, index):
        return self.layers[index]

    def __iter__(self):
        return iter(self.layers)

    def __repr__(self):
        lines = "".join(f"\n  ({index}): {layer!r}" for index, layer in enumerate(self.layers))
        return f"Sequential({lines}\n)"
