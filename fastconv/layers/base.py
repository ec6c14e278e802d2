"""The object-layer contract: forward(x) -> out keeps what backward(dout) -> dx needs."""


class Layer:
    """Base class of every object layer.

    Subclasses implement ``forward(x) -> out`` (storing what backward needs) and
    ``backward(dout, *, need_dx=True) -> dx`` (filling ``self.grads``; with need_dx=False
    the layer may skip its input gradient and return None). ``params`` and ``grads`` are dicts
    of arrays with the same keys; layers without parameters keep them empty.
    ``training`` switches layers whose behaviour differs between training and evaluation.
    """

    def __init__(self):
        self.params = {}
        self.grads = {}
        self.training = True
        self._cache = None

    def forward(self, x):
        raise NotImplementedError

    def backward(self, dout, *, need_dx=True):
        raise NotImplementedError

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
