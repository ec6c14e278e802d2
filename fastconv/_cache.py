"""Caches returned by forward calls and read back by the matching backward calls."""


class ConvCache:
    """What conv2d_backward needs from conv2d_forward. Treat as opaque.

    x, weight: the forward's inputs as C-contiguous arrays (the caller's own arrays
    when they already were; never written). window: the Window2d geometry.
    """

    __slots__ = ("x", "weight", "has_bias", "window", "backend", "algorithm")

    def __init__(self, x, weight, has_bias, window, backend, algorithm):
        self.x = x
        self.weight = weight
        self.has_bias = has_bias
        self.window = window
        self.backend = backend
        self.algorithm = algorithm

    @property
    def out_shape(self):
        return (self.window.batch, self.weight.shape[0], self.window.out_height, self.window.out_width)

    def __repr__(self):
        return (
            f"ConvCache(x={self.x.shape}, weight={self.weight.shape}, bias={self.has_bias}, "
            f"stride={self.window.stride}, padding={self.window.padding}, "
            f"backend={self.backend!r}, algorithm={self.algorithm!r})"
        )
