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


class PoolCache:
    """What max_pool2d_backward / avg_pool2d_backward need from the forward. Treat as opaque.

    kind: "max" or "avg". window: the Window2d geometry. dtype: the input's dtype.
    argmax (max only, else None): int32 or int64 array of shape (N, C, OH, OW), each
    output's source as a flat index into its H*W input plane.

    Read-only, argmax included: the compiled backward scatters through argmax without
    checking it, so a changed cache raises (TypeError, or NumPy's ValueError for argmax)
    instead of making the backward write out of bounds.
    """

    __slots__ = ("kind", "window", "dtype", "argmax", "backend")

    def __init__(self, kind, window, dtype, argmax, backend):
        if argmax is not None:
            argmax.flags.writeable = False
        for name, value in zip(self.__slots__, (kind, window, dtype, argmax, backend)):
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        raise TypeError(f"PoolCache is read-only: a cache must stay as its forward returned it "
                        f"(tried to set {name!r})")

    def __delattr__(self, name):
        raise TypeError(f"PoolCache is read-only: a cache must stay as its forward returned it "
                        f"(tried to delete {name!r})")

    def __reduce__(self):  # copy and pickle through __init__, as __setattr__ is closed
        return (PoolCache, (self.kind, self.window, self.dtype, self.argmax, self.backend))

    @property
    def out_shape(self):
        return (self.window.batch, self.window.channels, self.window.out_height, self.window.out_width)

    def __repr__(self):
        return (
            f"PoolCache(kind={self.kind!r}, x={self.window.input_shape}, dtype={self.dtype}, "
            f"kernel_size={self.window.kernel_size}, stride={self.window.stride}, "
            f"padding={self.window.padding}, backend={self.backend!r})"
        )
