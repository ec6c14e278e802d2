"""The convolution algorithms of the compiled backend: a registry, as data.

Each algorithm is a module exposing
    NAME            its name for ``algorithm=``;
    HANDLES         one line: the shapes it can do;
    supports(geometry) -> None, or the reason it cannot do this ConvGeometry;
    forward(x, w, b, geometry) -> (out, finite);
    backward(dout, x, w, has_bias, geometry, need_dx=True, need_dw=True)
        -> ((dx, dw, db), finite), dx None unless need_dx, dw and db None unless need_dw
        (x may then be None);
and, where its kernel runs an _epilogue.Epilogue on its output blocks, EPILOGUE = True with
    forward(x, w, b, geometry, epilogue=None);
and, where its transforms can turn an infinity into NaN, TRANSFORMS_INFINITIES = True:
`finite` then says whether the result came out all finite ("auto" recomputes one that did not
by the direct method); else it is None. Inputs are C-contiguous and valid (the front checked
them); outputs are fresh arrays. What an algorithm costs is the planner's business
(fastconv/planner.py), so that the choice lives in one place.

Adding an algorithm: write its module, then add it to _MODULES below.
"""
from . import (depthwise, gemm_1x1, im2col_gemm, s2b_winograd, s2d_winograd, winograd_2x2,
               winograd_4x4, winograd_s2)

_MODULES = (
    depthwise,
    gemm_1x1,
    winograd_4x4,
    winograd_2x2,
    winograd_s2,
    s2d_winograd,
    s2b_winograd,
    im2col_gemm,
)

REGISTRY = {module.NAME: module for module in _MODULES}

# Old names, still accepted. "winograd" was F(2x2, 3x3) at stride 1 and its stride-2
# counterpart at stride 2.
ALIASES = {"winograd": lambda geometry: "winograd-s2" if geometry.stride == (2, 2) else "winograd-2x2"}

# The one that handles every shape a compiled kernel can: the fallback of "auto" when a
# Winograd result came out non-finite.
DIRECT = im2col_gemm


class UnsupportedAlgorithm(ValueError):
    """An algorithm was asked for a shape it cannot do (not an invalid input: another
    algorithm, or "auto", can do it)."""


def names():
    """Every algorithm name accepted by ``algorithm=``, registry order, then the aliases."""
    return list(REGISTRY) + list(ALIASES)


def lookup(name, geometry):
    """The module for `name` (an alias is resolved for this geometry). Raises ValueError for
    an unknown name and UnsupportedAlgorithm when it cannot do `geometry`."""
    if not isinstance(name, str) or name not in REGISTRY and name not in ALIASES:
        raise ValueError(
            f"unknown algorithm {name!r}; valid names are: auto, measure, {', '.join(names())}")
    module = REGISTRY[ALIASES[name](geometry) if name in ALIASES else name]
    reason = module.supports(geometry)
    if reason is not None:
        raise UnsupportedAlgorithm(
            f"algorithm {name!r} does not support this convolution ({geometry.describe()}; "
            f"x shape {geometry.input_shape}): it does not handle {reason}. It handles "
            f"{module.HANDLES}; algorithm='auto' chooses one that does")
    return module


def supporting(geometry):
    """The modules that can do `geometry`, registry order."""
    return [module for module in _MODULES if module.supports(geometry) is None]
