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

# ---- pooling options (issue 23): one family per option, selectable with --only -------------

@dataclass(frozen=True)
class PoolOptionCase:
    """One pooling layer of a real network using an option plain max-pooling lacks.

    op : "max" or "avg" (1-D to 3-D, by x's rank), "adaptive_avg", "adaptive_max" (2-D) or
        "unpool" (2-D; x is the pooled input, its indices come from max-pooling an input of
        the unpooled size).
    options : (name, value) pairs passed as keywords: dilation, ceil_mode, count_include_pad,
        divisor_override, or output_size for the adaptive pools.
    """

    name: str
    family: str
    op: str
    x_shape: tuple
    kernel_size: object = None
    stride: object = None
    padding: object = 0
    options: tuple = ()
    full_only: bool = False

    kind = "pool-option"

    @property
    def ndim(self):
        return len(self.x_shape) - 2

    @property
    def keywords(self):
        return dict(self.options)

    @property
    def out_shape(self):
        from .._geometry import adaptive_geometry, pool_geometry, unpool_geometry

        if self.op.startswith("adaptive"):
            return adaptive_geometry(self.x_shape, self.keywords["output_size"]).output_shape
        if self.op == "unpool":
            return unpool_geometry(self.x_shape, self.kernel_size, self.stride, self.padding).output_shape
        options = {k: v for k, v in self.options if k in ("dilation", "ceil_mode")}
        return pool_geometry(self.x_shape, self.kernel_size, self.stride, self.padding, **options).output_shape

    def forward_gflop(self):
        return None  # comparisons and adds, not multiply-adds: no GFLOP figure

    def describe(self):
        text = f"{self.op} {_tuple(self.x_shape)}"
        if self.kernel_size is not None:
            text += f" k{self.kernel_size} s{self.stride or self.kernel_size} p{self.padding}"
        for key, value in self.options:
            text += f" {key}={value}"
        return text


POOL_OPTION_CASES = (
    # GoogLeNet / Inception (and Caffe-converted nets): ceil_mode max-pools
    PoolOptionCase("googlenet-mp2", "maxpool-ceil", "max", (8, 192, 56, 56), 3, 2, 0, (("ceil_mode", True),)),
    PoolOptionCase("googlenet-mp3", "maxpool-ceil", "max", (16, 480, 28, 28), 3, 2, 0, (("ceil_mode", True),)),
    PoolOptionCase("pool-55-dil2", "maxpool-dilated", "max", (16, 64, 55, 55), 3, 2, 1, (("dilation", 2),)),
    # CS231n-style and Inception average pools that leave padding out of the mean
    PoolOptionCase("inception-avg", "avgpool", "avg", (16, 192, 35, 35), 3, 1, 1,
                   (("count_include_pad", False),)),
    PoolOptionCase("avg-k3s2-ceil", "avgpool", "avg", (16, 256, 28, 28), 3, 2, 1,
                   (("ceil_mode", True), ("count_include_pad", False))),
    # ResNet heads: global average pooling; AlexNet's adaptive 6x6
    PoolOptionCase("resnet18-head", "adaptive", "adaptive_avg", (32, 512, 7, 7), options=(("output_size", 1),)),
    PoolOptionCase("resnet50-head", "adaptive", "adaptive_avg", (32, 2048, 7, 7), options=(("output_size", 1),)),
    PoolOptionCase("alexnet-adaptive", "adaptive", "adaptive_avg", (32, 256, 13, 13),
                   options=(("output_size", 6),)),
    PoolOptionCase("adaptive-max-7", "adaptive", "adaptive_max", (16, 512, 14, 14), options=(("output_size", 7),)),
    # SegNet decoders: max-unpooling with the encoder's indices
    PoolOptionCase("segnet-unpool-56", "unpool", "unpool", (8, 64, 56, 56), 2, 2),
    PoolOptionCase("segnet-unpool-14", "unpool", "unpool", (8, 512, 14, 14), 2, 2),
    # audio (1-D) and volumetric (3-D) nets
    PoolOptionCase("audio-max", "pool1d", "max", (32, 64, 4000), 3, 2, 1),
    PoolOptionCase("audio-avg", "pool1d", "avg", (32, 64, 4000), 4, 4, 0, (("ceil_mode", True),)),
    PoolOptionCase("c3d-pool1", "pool3d", "max", (2, 64, 16, 56, 56), (1, 2, 2), (1, 2, 2)),
    PoolOptionCase("c3d-pool2", "pool3d", "max", (2, 128, 16, 28, 28), 2, 2),
    PoolOptionCase("avg3d-k3s2", "pool3d", "avg", (2, 64, 8, 28, 28), 3, 2, 1),
)
POOL_OPTION_FAMILIES = ("maxpool-ceil", "maxpool-dilated", "avgpool", "adaptive", "unpool", "pool1d", "pool3d")


# ---- convolution kinds (issue 22): dilated, transposed and 1-D, one family each -----------

@dataclass(frozen=True)
class KindCase:
    """One convolution of a kind plain 2-D convolution is not: x (N, C, *size) and w as the
    kind's forward takes them (transposed: (C, F // groups, *kernel)); stride, padding,
    dilation, output_padding (transposed only) as ints or per-axis tuples, groups an int."""

    name: str
    family: str
    x_shape: tuple
    w_shape: tuple
    stride: object = 1
    padding: object = 0
    dilation: object = 1
    output_padding: object = 0
    groups: int = 1
    full_only: bool = False

    kind = "conv-kind"

    @property
    def ndim(self):
        return len(self.x_shape) - 2

    @property
    def transposed(self):
        return self.family == "transposed"

    @property
    def op(self):
        """The fastconv/torch function name, e.g. "conv1d" or "conv_transpose2d"."""
        return f"conv_transpose{self.ndim}d" if self.transposed else f"conv{self.ndim}d"

    @property
    def keywords(self):
        """The keywords the kind's forward takes beyond (x, w, b, stride, padding), the same
        for fastconv's and torch's: output_padding only for a transposed convolution."""
        keywords = {"dilation": self.dilation, "groups": self.groups}
        if self.transposed:
            keywords["output_padding"] = self.output_padding
        return keywords

    @property
    def window(self):
        """The geometry of the convolution (for a transposed one: the convolution it is the
        adjoint of, whose `.size` is the transposed output's size)."""
        from .._geometry import transposed_geometry

        if self.transposed:
            return transposed_geometry(self.x_shape, self.w_shape, self.stride, self.padding,
                                       self.output_padding, dilation=self.dilation,
                                       groups=self.groups)
        return conv_geometry(self.x_shape, self.w_shape, self.stride, self.padding,
                             dilation=self.dilation, groups=self.groups)

    @property
    def out_shape(self):
        window = self.window
        return window.input_shape if self.transposed else window.output_shape

    def forward_gflop(self):
        """2 * the multiply-adds of the forward: a transposed convolution's are those of the
        convolution it is the adjoint of."""
        return 2 * self.window.macs() / 1e9

    def describe(self):
        text = f"{self.op} {_tuple(self.x_shape)} {_tuple(self.w_shape)} s{self.stride} p{self.padding}"
        if self.dilation != 1:
            text += f" d{self.dilation}"
        if self.output_padding:
            text += f" op{self.output_padding}"
        if self.groups != 1:
            text += f" g{self.groups}"
        return text


KIND_CASES = (
    # DeepLab-style dilated 3x3s, each beside the undilated layer of the same FLOPs (the
    # target: dilated within 1.2x of undilated)
    KindCase("deeplab-d2", "dilated", (8, 256, 33, 33), (256, 256, 3, 3), 1, 2, dilation=2),
    KindCase("deeplab-d1", "dilated", (8, 256, 33, 33), (256, 256, 3, 3), 1, 1),
    KindCase("wide-d2", "dilated", (16, 64, 56, 56), (64, 64, 3, 3), 1, 2, dilation=2),
    KindCase("wide-d1", "dilated", (16, 64, 56, 56), (64, 64, 3, 3), 1, 1),
    # DCGAN generator (4x4 stride 2) and U-Net decoder (2x2 stride 2) upsampling layers
    KindCase("dcgan-up8", "transposed", (64, 512, 4, 4), (512, 256, 4, 4), 2, 1),
    KindCase("dcgan-up16", "transposed", (64, 256, 8, 8), (256, 128, 4, 4), 2, 1),
    KindCase("dcgan-up32", "transposed", (64, 128, 16, 16), (128, 64, 4, 4), 2, 1),
    KindCase("unet-up56", "transposed", (4, 512, 28, 28), (512, 256, 2, 2), 2, 0),
    KindCase("unet-up112", "transposed", (4, 256, 56, 56), (256, 128, 2, 2), 2, 0),
    # audio: a 9-tap layer over one second at 16 kHz, and a strided 5-tap one
    KindCase("audio-k9", "conv1d", (16, 64, 16000), (64, 64, 9), 1, 4),
    KindCase("audio-k5s2", "conv1d", (16, 128, 8000), (128, 128, 5), 2, 2),
)
KIND_FAMILIES = ("dilated", "transposed", "conv1d")


# Small shapes for the test of the bench itself (hidden --tiny option); never reported.
TINY_CASES = (
    ConvCase("tiny-conv", (2, 3, 9, 8), (4, 3, 3, 2), stride=2, padding=1),
    ConvCase("tiny-1x1", (2, 5, 6, 6), (3, 5, 1, 1), stride=1, padding=0),
    PoolCase("tiny-pool", (2, 3, 8, 7), kernel_size=3, stride=2),
)

FAMILIES = ("conv", "maxpool") + POOL_OPTION_FAMILIES + KIND_FAMILIES


def all_cases(*, tiny=False):
    return TINY_CASES if tiny else CONV_CASES + POOL_CASES + POOL_OPTION_CASES + KIND_CASES


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


def known_names(*, tiny=False):
    """Every name select() takes: case names, families and group names."""
    cases = list(all_cases(tiny=tiny))
    if not tiny:
        from . import networks

        cases += networks.all_cases()
    return ({case.name for case in cases} | {case.family for case in cases} | set(FAMILIES)
            | set(_groups(tiny)))


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
