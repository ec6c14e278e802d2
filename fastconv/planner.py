"""Which algorithm runs a convolution: the one place that decides.

algorithm="auto" (the default) takes the cheapest supported algorithm by the cost model;
an explicit name is checked against the geometry (UnsupportedAlgorithm if it cannot do it).
"""
from . import algorithms

# Interim rule (today's, to be replaced by the cost model): below this many channels or
# filters the Winograd transforms cost more than they save, ...
_WINOGRAD_MIN_CHANNELS = 16
# ... F(4x4, 3x3) only where its tiles need at most 0.6 of F(2x2, 3x3)'s multiplications ...
_WINOGRAD_4X4_MAX_SHARE = 0.6
# ... and s2d-winograd only at <= 0.5 of the direct method's multiplications.
_S2D_MAX_SHARE = 0.5


def _s2d_pays(geometry):
    phases = geometry.stride_height * geometry.stride_width
    products = 36 * -(-geometry.out_height // 4) * -(-geometry.out_width // 4) * phases
    direct = geometry.kernel_height * geometry.kernel_width * geometry.out_height * geometry.out_width
    return (min(geometry.channels * phases, geometry.filters) >= _WINOGRAD_MIN_CHANNELS
            and products <= _S2D_MAX_SHARE * direct)


def _winograd_4x4_pays(geometry):
    height, width = geometry.out_height, geometry.out_width
    return (36 * -(-height // 4) * -(-width // 4)
            <= _WINOGRAD_4X4_MAX_SHARE * 16 * -(-height // 2) * -(-width // 2))


def _automatic(geometry, dtype, pass_name):
    usable = algorithms.supporting(geometry)
    if not usable:
        raise algorithms.UnsupportedAlgorithm(
            f"no compiled algorithm handles this convolution ({geometry.describe()}; x shape "
            f"{geometry.input_shape}); backend='reference' computes it")
    winograd = {"winograd-4x4", "winograd-2x2", "winograd-s2"}  # s2d: its own channel rule
    if min(geometry.channels, geometry.filters) < _WINOGRAD_MIN_CHANNELS:
        usable = [m for m in usable if m.NAME not in winograd]
    usable = [m for m in usable if not (m.NAME == "s2d-winograd" and not _s2d_pays(geometry))]
    usable = [m for m in usable
              if not (m.NAME == "winograd-4x4" and not _winograd_4x4_pays(geometry))]
    return usable[0]


def choose(geometry, dtype, algorithm="auto", pass_name="forward"):
    """The algorithm module for this convolution. `algorithm`: "auto" or a name of
    algorithms.names(); pass_name "forward" or "backward"."""
    if algorithm == "auto":
        return _automatic(geometry, dtype, pass_name)
    return algorithms.lookup(algorithm, geometry)


def available_algorithms(geometry=None):
    """Names accepted by ``algorithm=`` (registry order, then the aliases); with a
    geometry, only the registry's algorithms that can do it."""
    if geometry is None:
        return algorithms.names()
    return [module.NAME for module in algorithms.supporting(geometry)]
