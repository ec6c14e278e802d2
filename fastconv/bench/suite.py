"""The benchmark shape suite: every shape `python -m fastconv.bench` and bench/ time, in one place."""
from dataclasses import dataclass

from .._geometry import conv_geometry, window2d


def _tuple(shape):
    return "(" + ",".join(map(str, shape)) + ")"


@dataclass(frozen=True)
class ConvCase:
    """One 2-D convolution layer: x (N, C, H, W), w (F, C // groups, KH, KW), stride, padding,
    groups (ints). family: "conv" for the public suite, else the network the layer is from;
    count: how many layers of that network have this shape."""

    name: str
    x_shape: tuple
    w_shape: tuple
    stride: int
    padding: int
    full_only: bool = False  # too big for --quick
    groups: int = 1
    family: str = "conv"
    count: int = 1

    kind = "conv"

    @property
    def window(self):
        return conv_geometry(self.x_shape, self.w_shape, self.stride, self.padding,
                             groups=self.groups)

    @property
    def out_shape(self):
        return self.window.output_shape

    def forward_gflop(self):
        """2 * N * F * OH * OW * C/groups * KH * KW multiply-adds of the forward pass, in GFLOP."""
        return 2 * self.window.macs() / 1e9

    def describe(self):
        groups = f" g{self.groups}" if self.groups != 1 else ""
        return f"{_tuple(self.x_shape)} {_tuple(self.w_shape)} s{self.stride} p{self.padding}{groups}"


@dataclass(frozen=True)
class PoolCase:
    """One max-pool layer: x (N, C, H, W), square window, stride, no padding."""

    name: str
    x_shape: tuple
    kernel_size: int
    stride: int
    full_only: bool = False

    family = "maxpool"
    kind = "maxpool"
    padding = 0

    @property
    def window(self):
        return window2d(self.x_shape, self.kernel_size, self.stride, self.padding)

    @property
    def out_shape(self):
        window = self.window
        return (window.batch, window.channels, window.out_height, window.out_width)

    def forward_gflop(self):
        return None  # comparisons, not multiply-adds: no GFLOP figure

    def describe(self):
        return f"{_tuple(self.x_shape)} k{self.kernel_size} s{self.stride}"


CONV_CASES = (
    ConvCase("cs231n-nb", (100, 3, 31, 31), (25, 3, 3, 3), stride=2, padding=1),
    ConvCase("cnn-cifar", (50, 3, 32, 32), (32, 3, 7, 7), stride=1, padding=3),
    ConvCase("vgg-3x3", (16, 64, 32, 32), (64, 64, 3, 3), stride=1, padding=1),
    ConvCase("res-s2", (16, 128, 28, 28), (256, 128, 3, 3), stride=2, padding=1),
    ConvCase("1x1", (32, 256, 14, 14), (64, 256, 1, 1), stride=1, padding=0),
    ConvCase("alexnet-c1", (8, 3, 227, 227), (96, 3, 11, 11), stride=4, padding=0),
    # batch 256: shows that a call's extra memory stays bounded as the batch grows
    ConvCase("vgg-3x3-b256", (256, 64, 32, 32), (64, 64, 3, 3), stride=1, padding=1, full_only=True),
)

POOL_CASES = (
    PoolCase("pool-cifar", (100, 3, 32, 32), kernel_size=2, stride=2),
    PoolCase("pool-56", (32, 64, 56, 56), kernel_size=2, stride=2),
    PoolCase("pool-55-k3s2", (32, 64, 55, 55), kernel_size=3, stride=2),
)

# Small shapes for the test of the bench itself (hidden --tiny option); never reported.
TINY_CASES = (
    ConvCase("tiny-conv", (2, 3, 9, 8), (4, 3, 3, 2), stride=2, padding=1),
    ConvCase("tiny-1x1", (2, 5, 6, 6), (3, 5, 1, 1), stride=1, padding=0),
    PoolCase("tiny-pool", (2, 3, 8, 7), kernel_size=3, stride=2),
)

FAMILIES = ("conv", "maxpool")


def all_cases(*, tiny=False):
    return TINY_CASES if tiny else CONV_CASES + POOL_CASES


def _groups(tiny):
    """Names that stand for several families: each network ("resnet18": both its batches) and
    "networks" (every network family); none in the tiny suite."""
    if tiny:
        return {}
    from . import networks

    groups = {"networks": networks.families()}
    for network in networks.NETWORKS:
        groups[network] = [family for family in networks.families()
                           if family.startswith(f"{network}-")]
    return groups


def select(only=None, *, quick=False, tiny=False):
    """The cases to run, in suite order.

    only : None (the public suite), or a comma-separated list of case names, families
        ("conv", "maxpool", the network families of bench/networks.py such as "resnet18-b1"),
        networks ("resnet18": both of its batches) or "networks" (every network family).
        Named cases run even when they are full-run only.
    quick : leave out the full-run-only cases (unless named in `only`).
    Raises ValueError for a name that is none of these.
    """
    cases = all_cases(tiny=tiny)
    if only is None:
        return [case for case in cases if not (quick and case.full_only)]
    groups = _groups(tiny)
    if not tiny:
        from . import networks

        cases = list(cases) + networks.all_cases()
    families = list(dict.fromkeys(case.family for case in cases))
    wanted = [name.strip() for name in only.split(",") if name.strip()]
    known = {case.name for case in cases} | set(families) | set(groups)
    unknown = [name for name in wanted if name not in known]
    if unknown or not wanted:
        raise ValueError(
            f"unknown name(s) {', '.join(unknown) or repr(only)} for --only; valid names are: "
            f"{', '.join(families + list(groups))}, or a case name (see --list)"
        )
    wanted = set(wanted) | {family for name in wanted for family in groups.get(name, ())}
    return [
        case for case in cases
        if case.name in wanted or (case.family in wanted and not (quick and case.full_only))
    ]
