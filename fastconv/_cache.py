"""Caches returned by forward calls and read back by the matching backward calls."""


class _ReadOnlyCache:
    """Base of the caches: read-only once built.

    The compiled backward trusts a cache (its shapes, its argmax indices) without checking
    it again, so a changed cache raises TypeError instead of reaching a kernel.
    """

    __slots__ = ()

    def __init__(self, *values):
        for name, value in zip(self.__slots__, values):
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        raise TypeError(f"{type(self).__name__} is read-only: a cache must stay as its forward "
                        f"returned it (tried to set {name!r})")

    def __delattr__(self, name):
        raise TypeError(f"{type(self).__name__} is read-only: a cache must stay as its forward "
                        f"returned it (tried to delete {name!r})")

    def __reduce__(self):  # copy and pickle through __init__, as __setattr__ is closed
        return (type(self), tuple(getattr(self, name) for name in self.__slots__))


class ConvCache(_ReadOnlyCache):
    """What conv2d_backward needs from conv2d_forward. Treat as opaque; read-only.

    x, weight: the forward's inputs as C-contiguous arrays (the caller's own arrays
    when they already were; never written). window: the Window2d geometry.
    algorithm: the one the forward ran; automatic: whether "auto" chose it.
    """

    __slots__ = ("x", "weight", "has_bias", "window", "backend", "algorithm", "automatic")

    def __init__(self, x, weight, has_bias, window, backend, algorithm, automatic=False):
        super().__init__(x, weight, has_bias, window, backend, algorithm, automatic)

    @property
    def out_shape(self):
        return (self.window.batch, self.weight.shape[0], self.window.out_height, self.window.out_width)

    def __repr__(self):
        return (
            f"ConvCache(x={self.x.shape}, weight={self.weight.shape}, bias={self.has_bias}, "
            f"stride={self.window.stride}, padding={self.window.padding}, "
            f"backend={self.backend!r}, algorithm={self.algorithm!r})"
        )


class PoolCache(_ReadOnlyCache):
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
        super().__init__(kind, window, dtype, argmax, backend)

    @property
    def out_shape(self):
        return (self.window.batch, self.window.channels, self.window.out_height, self.window.out_width)

    def __repr__(self):
        return (
            f"PoolCache(kind={self.kind!r}, x={self.window.input_shape}, dtype={self.dtype}, "
            f"kernel_size={self.window.kernel_size}, stride={self.window.stride}, "
            f"padding={self.window.padding}, backend={self.backend!r})"
        )


class MaskCache(_ReadOnlyCache):
    """What the backward of an elementwise op (relu, leaky_relu, dropout) needs from its
    forward. Treat as opaque; read-only.

    kind: "relu", "leaky_relu" or "dropout". mask: which elements passed (x > 0, or kept),
    a boolean array of the input's shape (reference backend) or, compiled, one bit per
    element packed little-endian into uint8 (np.packbits(..., bitorder="little")) over the
    elements in `order` ("C" or "F": the memory order the forward read x in). shape, dtype:
    the forward output's. parameter: alpha (leaky_relu), the survivors' scale (dropout), or
    None.
    """

    __slots__ = ("kind", "mask", "order", "shape", "dtype", "parameter", "backend")

    def __init__(self, kind, mask, order, shape, dtype, parameter, backend):
        mask.flags.writeable = False
        super().__init__(kind, mask, order, shape, dtype, parameter, backend)

    @property
    def out_shape(self):
        return self.shape

    def __repr__(self):
        return (f"MaskCache(kind={self.kind!r}, shape={self.shape}, dtype={self.dtype}, "
                f"backend={self.backend!r})")


class LinearCache(_ReadOnlyCache):
    """What linear_backward needs from linear_forward. Treat as opaque; read-only.

    x, weight: the forward's inputs as C-contiguous arrays (the caller's own arrays when they
    already were; never written); has_bias: whether the forward added a bias.
    """

    __slots__ = ("x", "weight", "has_bias", "backend")

    def __init__(self, x, weight, has_bias, backend):
        super().__init__(x, weight, has_bias, backend)

    @property
    def out_shape(self):
        return (self.x.shape[0], self.weight.shape[0])

    def __repr__(self):
        return (f"LinearCache(x={self.x.shape}, weight={self.weight.shape}, bias={self.has_bias}, "
                f"backend={self.backend!r})")
