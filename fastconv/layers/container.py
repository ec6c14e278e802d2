"""Sequential: a chain of layers seen as one layer, with flat "index.name" params and grads."""
import numbers

from .. import _epilogue
from .base import Layer
from .conv import Conv1d, Conv2d, Conv3d
from .core import ReLU
from .norm import BatchNorm1d, BatchNorm2d
from .pool import _MaxPool

# the batch norm that may follow each convolution into its epilogue
_NORM_AFTER = {Conv1d: BatchNorm1d, Conv2d: BatchNorm2d, Conv3d: None}


def _relu_then_max_pool(first, second):
    """Whether `first` (a ReLU) then `second` (a max pool without indices) may run as the max
    pool then the ReLU. max(relu(a), relu(b)) == relu(max(a, b)) exactly (relu is monotone and
    keeps NaN, as max pooling does), and both orders send a window's gradient to the same
    element (its first maximum; nothing where that maximum is <= 0 or NaN), so the results and
    gradients are identical while the ReLU touches only the pooled output: a quarter of the
    elements behind a 2x2 pool. LeakyReLU is left alone: alpha * x rounds two different
    negative inputs to one value, and a tie could move a window's gradient."""
    return (type(first) is ReLU and isinstance(second, _MaxPool)
            and not second.return_indices)


class Sequential(Layer):
    """Layers applied in order; backward runs them in reverse.

    layers : a list (or other iterable) of Layer objects, at least one.

    ``params`` and ``grads`` are flat dicts built from the layers on every access, keyed
    "<index>.<name>" (e.g. "0.weight", "3.bias"; nested containers give "1.0.weight").
    The arrays are the layers' own objects, so an optimiser updating ``params`` in place
    updates the layers. ``grads`` holds the gradients of the latest backward.
    ``train()`` / ``eval()`` switch every layer.

    Freezing: ``freeze(up_to=k)`` freezes ``layers[:k]`` (all layers by default; ``up_to=-1``
    all but the last), ``unfreeze`` undoes it, and setting ``trainable`` sets it on every
    layer. ``backward(dout, need_dx=False)`` runs no layer below the lowest one that has
    trainable parameters: a frozen body costs nothing in the backward pass.
    ``state_dict()`` keys are those of ``params`` plus each layer's buffers ("4.running_mean").

    fuse : True (default) runs a ReLU directly followed by a max pool (MaxPool1d/2d/3d
        without return_indices) as the pool then the ReLU, which gives identical outputs and
        gradients at a fraction of the ReLU's cost (see _relu_then_max_pool); each layer still
        runs its own forward and backward. In infer() it also runs each convolution
        followed by a BatchNorm with running statistics and/or a ReLU as one convolution
        (see infer). False runs every layer on its own, in the listed order.
    """

    def __init__(self, layers, *, fuse=True):
        # Not Layer.__init__: params and grads are views over the children, not dicts of our own.
        layers = list(layers)
        if not layers:
            raise ValueError("Sequential needs at least one layer, got an empty list")
        for index, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(
                    f"Sequential: item {index} must be a fastconv.layers.Layer, got {type(layer).__name__}"
                )
        if not isinstance(fuse, bool):
            raise TypeError(f"fuse must be True or False, got {type(fuse).__name__} {fuse!r}")
        self.layers = layers
        self.fuse = fuse
        self.training = True
        self._cache = None
        self._order = None  # the order of the latest forward, which its backward reverses

    @staticmethod
    def _flat(dicts):
        return {f"{index}.{name}": value for index, entries in enumerate(dicts) for name, value in entries.items()}

    @property
    def params(self):
        return self._flat(layer.params for layer in self.layers)

    @property
    def grads(self):
        return self._flat(layer.grads for layer in self.layers)

    def _run_order(self):
        """Indices of self.layers in the order forward runs them."""
        order = list(range(len(self.layers)))
        if self.fuse:
            index = 0
            while index + 1 < len(order):
                if _relu_then_max_pool(self.layers[index], self.layers[index + 1]):
                    order[index], order[index + 1] = index + 1, index
                    index += 2
                else:
                    index += 1
        return order

    def forward(self, x):
        # the layer list may have changed since the last call (a replaced head)
        self._order = order = self._run_order()
        for index in order:
            x = self.layers[index].forward(x)
        return x

    def _conv_epilogue(self, index):
        """(number of layers, Epilogue) when layers[index] is a convolution followed by a
        BatchNorm with running statistics and/or a ReLU, which can then run as one call
        with that Epilogue; else None."""
        layers = self.layers
        conv = layers[index]
        if type(conv) not in _NORM_AFTER:
            return None
        end, norm_map = index + 1, None
        norm = layers[end] if end < len(layers) else None
        if (norm is not None and type(norm) is _NORM_AFTER[type(conv)]
                and norm.num_features == conv.out_channels and norm.dtype == conv.dtype):
            norm_map = norm._running_map()
            if norm_map is not None:
                end += 1
        relu = end < len(layers) and type(layers[end]) is ReLU
        end += relu
        if end == index + 1:
            return None
        epilogue = (_epilogue.batch_norm(*norm_map, relu) if norm_map is not None
                    else _epilogue.Epilogue(relu=True))
        return end - index, epilogue

    def infer(self, x):
        """The output of forward(x), keeping nothing for a backward (Layer.infer). With
        fuse=True a convolution followed by a BatchNorm using its running statistics
        (evaluation mode, or frozen) and/or a ReLU runs as one convolution whose kernel
        applies them to each block of its output (fastconv/_epilogue.py): the output equals
        forward's within one rounding. A ReLU before a max pool runs after it, as in forward."""
        layers, index = self.layers, 0
        self._order = None
        while index < len(layers):
            fused = self._conv_epilogue(index) if self.fuse else None
            if fused is not None:
                count, epilogue = fused
                x = layers[index]._infer_with(x, epilogue)
                for layer in layers[index + 1:index + count]:
                    layer._forget()
                index += count
            elif (self.fuse and index + 1 < len(layers)
                  and _relu_then_max_pool(layers[index], layers[index + 1])):
                x = layers[index].infer(layers[index + 1].infer(x))
                index += 2
            else:
                x = layers[index].infer(x)
                index += 1
        return x

    def _forget(self):
        self._order = None
        for layer in self.layers:
            layer._forget()

    def backward(self, dout, *, need_dx=True):
        """dout (the forward output's shape) -> dx (the input's shape), or None with need_dx=False.

        With need_dx=False the layers below the lowest one with trainable parameters are
        skipped (nothing below it needs a gradient) and that layer is asked for no dx.
        """
        lowest = 0
        if not need_dx:
            needed = [index for index, layer in enumerate(self.layers) if layer._needs_param_grads()]
            if not needed:
                return None
            lowest = needed[0]
        order = self._order if self._order is not None else self._run_order()
        for index in reversed(order):
            if index < lowest:
                continue  # a swapped pair has no parameters: it lies wholly above or below
            dout = self.layers[index].backward(dout, need_dx=need_dx or index > lowest)
        return dout if need_dx else None

    @property
    def trainable(self):
        """True when every layer is trainable; setting it freezes or unfreezes every layer."""
        return all(layer.trainable for layer in self.layers)

    @trainable.setter
    def trainable(self, value):
        for layer in self.layers:  # each checks the value; a bad one fails at the first layer
            layer.trainable = value

    def _set_trainable(self, value, up_to):
        if up_to is None:
            up_to = len(self.layers)
        if isinstance(up_to, bool) or not isinstance(up_to, numbers.Integral):
            raise TypeError(f"up_to must be an int (layers[:up_to]) or None, got {type(up_to).__name__} {up_to!r}")
        for layer in self.layers[:up_to]:
            layer.trainable = value
        return self

    def freeze(self, up_to=None):
        """Freeze ``layers[:up_to]`` (every layer when None); returns self."""
        return self._set_trainable(False, up_to)

    def unfreeze(self, up_to=None):
        """Make ``layers[:up_to]`` trainable again (every layer when None); returns self."""
        return self._set_trainable(True, up_to)

    def _needs_param_grads(self):
        return any(layer._needs_param_grads() for layer in self.layers)

    def _config(self):
        # the current layers, not the constructor's list: a replaced head must be saved
        return {"layers": list(self.layers), "fuse": self.fuse}

    def _state_arrays(self):
        return self._flat(layer._state_arrays() for layer in self.layers)

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
