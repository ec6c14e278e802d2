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
    """What a pooling backward needs from its forward. Treat as opaque; read-only.

    kind: "max", "avg", "adaptive_max", "adaptive_avg" or "unpool". window: the geometry
    (PoolGeometry, AdaptiveGeometry or UnpoolGeometry; its ndim names the 1-D/2-D/3-D op).
    dtype: the input's dtype. argmax (max kinds: int32 or int64 of the output's shape, each
    output's source as a flat index into its input plane; unpool: the int64 indices, x's
    shape; else None). count_include_pad, divisor_override: average pooling's divisor rule.

    Read-only, argmax included: the compiled backward scatters through argmax without
    checking it, so a changed cache raises (TypeError, or NumPy's ValueError for argmax)
    instead of making the backward write out of bounds.
    """

    __slots__ = ("kind", "window", "dtype", "argmax", "backend", "count_include_pad",
                 "divisor_override")

    def __init__(self, kind, window, dtype, argmax, backend, count_include_pad=True,
                 divisor_override=None):
        if argmax is not None:
            argmax.flags.writeable = False
        super().__init__(kind, window, dtype, argmax, backend, count_include_pad, divisor_override)

    @property
    def out_shape(self):
        return self.window.output_shape

    def __repr__(self):
        options = ""
        if self.kind == "avg":
            options = f", count_include_pad={self.count_include_pad}"
            if self.divisor_override is not None:
                options += f", divisor_override={self.divisor_override}"
        return (
            f"PoolCache(kind={self.kind!r}, x={self.window.input_shape}, dtype={self.dtype}, "
            f"{self.window.describe()}{options}, backend={self.backend!r})"
        )
