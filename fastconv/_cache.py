"""Caches returned by forward calls and read back by the matching backward calls."""


class _ReadOnlyCache:
    """Base of the caches: read-only once built.

    The compiled backward trusts a cache (its shapes, its argmax indices) without checking
    it again, so a changed cache raises TypeError instead of reaching a kernel.
    """

    __slots__ = ()

    _fields = ()  # the slots a cache's __init__ fills, in order

    def __init_subclass__(cls, **kwargs):
        # a cache class's own slots are its fields; a subclass adding none keeps its parent's
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("__slots__"):
            cls._fields = tuple(cls.__slots__)

    def __init__(self, *values):
        for name, value in zip(self._fields, values):
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        raise TypeError(f"{type(self).__name__} is read-only: a cache must stay as its forward "
                        f"returned it (tried to set {name!r})")

    def __delattr__(self, name):
        raise TypeError(f"{type(self).__name__} is read-only: a cache must stay as its forward "
                        f"returned it (tried to delete {name!r})")

    def __reduce__(self):  # copy and pickle through __init__, as __setattr__ is closed
        return (type(self), tuple(getattr(self, name) for name in self._fields))


class ConvCache(_ReadOnlyCache):
    """What conv{1,2,3}d_backward needs from the forward. Treat as opaque; read-only.

    x, weight: the forward's inputs as C-contiguous arrays (the caller's own arrays
    when they already were; never written). window: the ConvGeometry.
    algorithm: the one the forward ran; planning: "auto" or "measure" when the planner chose
    it (each backward pass is then planned the same way), None for an explicit algorithm.
    """

    __slots__ = ("x", "weight", "has_bias", "window", "backend", "algorithm", "planning")

    def __init__(self, x, weight, has_bias, window, backend, algorithm, planning=None):
        super().__init__(x, weight, has_bias, window, backend, algorithm, planning)

    @property
    def out_shape(self):
        return self.window.output_shape

    def __repr__(self):
        return (
            f"{type(self).__name__}(x={self.x.shape}, weight={self.weight.shape}, "
            f"bias={self.has_bias}, {self.window.describe()}, backend={self.backend!r}, "
            f"algorithm={self.algorithm!r})"
        )


class ConvTransposeCache(ConvCache):
    """What conv_transpose{1,2,3}d_backward needs from the forward; as ConvCache, with
    window the geometry of the convolution this one is the transpose of (whose input has the
    transposed output's shape)."""

    __slots__ = ()

    @property
    def out_shape(self):
        return self.window.input_shape


class PoolCache(_ReadOnlyCache):
    """What a pooling backward needs from its forward. Treat as opaque; read-only.

    kind: "max", "avg", "adaptive_max", "adaptive_avg" or "unpool". window: the geometry
    (PoolGeometry, AdaptiveGeometry or UnpoolGeometry; its ndim names the 1-D/2-D/3-D op).
    dtype: the input's dtype. argmax (max kinds: int32 or int64 of the output's shape, each
    output's source as a flat index into its input plane; unpool: the indices, x's shape,
    int32 where the output plane allows, else int64; else None). count_include_pad, divisor_override: average pooling's divisor rule.
    repeats (unpool): whether a plane may name one output position twice, so that the
    backward must find the overwritten elements (the compiled forward checks; False lets the
    backward run as a plain gather).

    Read-only, argmax included: the compiled backward scatters through argmax without
    checking it, so a changed cache raises (TypeError, or NumPy's ValueError for argmax)
    instead of making the backward write out of bounds.
    """

    __slots__ = ("kind", "window", "dtype", "argmax", "backend", "count_include_pad",
                 "divisor_override", "repeats")

    def __init__(self, kind, window, dtype, argmax, backend, count_include_pad=True,
                 divisor_override=None, repeats=True):
        if argmax is not None:
            argmax.flags.writeable = False
        super().__init__(kind, window, dtype, argmax, backend, count_include_pad, divisor_override,
                         bool(repeats))

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


class NormCache(_ReadOnlyCache):
    """What batch_norm_backward, layer_norm_backward and group_norm_backward need. Treat as opaque.

    kind: "batch", "layer" or "group". x: the forward's input, C-contiguous (the caller's
    own array when it already was; never written). weight: the scale parameter.
    mean, var, inv_std: float64 statistics, one per normalised set (read-only):
    (C,) for batch norm (the batch's in training, the running estimates in evaluation),
    one per row of the flattened (M, D) input for layer norm, (N, G) for group norm;
    inv_std = 1 / sqrt(var + eps). batch_statistics: whether the statistics came from x,
    so that the backward differentiates through them. groups: group norm's G, else None.
    """

    __slots__ = ("kind", "x", "weight", "mean", "var", "inv_std", "batch_statistics", "groups", "backend")

    def __init__(self, kind, x, weight, mean, var, inv_std, batch_statistics, groups, backend):
        for statistic in (mean, var, inv_std):
            statistic.flags.writeable = False
        super().__init__(kind, x, weight, mean, var, inv_std, batch_statistics, groups, backend)

    def __repr__(self):
        groups = "" if self.groups is None else f", groups={self.groups}"
        return (
            f"NormCache(kind={self.kind!r}, x={self.x.shape}, dtype={self.x.dtype}{groups}, "
            f"batch_statistics={self.batch_statistics}, backend={self.backend!r})"
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
