"""The `nets` family of `python -m fastconv.bench`: whole networks, fastconv layers against torch.nn.

Each net is written once, as a list of layer specs (tuples such as ("conv", 3, 32, 7, 1, 3,
True)), and built from it twice: from fastconv layers, and as the same torch.nn modules holding
copies of the fastconv net's initial weights, so that both compute the same function on the
same inputs. A training-step case times forward, softmax loss, backward and one optimiser step;
an inference case times the forward in evaluation mode. Importing this module never imports
torch.
"""
import math
import statistics
import time
from dataclasses import dataclass

import numpy as np

from .._memory import retain_freed_memory

FAMILY = "nets"
TRAIN = "train step"
INFERENCE = "inference"
SHORT_PASS = {TRAIN: "train", INFERENCE: "infer"}


# --- the nets as layer specs ------------------------------------------------------------
# ("conv", in, out, kernel, stride, padding, bias), ("bn", channels), ("relu", inplace),
# ("maxpool", kernel, stride, padding), ("avgpool", kernel), ("flatten",),
# ("linear", in, out), ("residual", body specs, shortcut specs or None)

def three_layer_convnet(input_shape=(3, 32, 32), filters=32, filter_size=7, hidden=100, classes=10):
    """CS231n's ThreeLayerConvNet: conv-ReLU-2x2 max pool-affine-ReLU-affine ('same' conv)."""
    channels, height, width = input_shape
    pooled = filters * (height // 2) * (width // 2)
    return [
        ("conv", channels, filters, filter_size, 1, (filter_size - 1) // 2, True), ("relu", True),
        ("maxpool", 2, 2, 0), ("flatten",),
        ("linear", pooled, hidden), ("relu", True), ("linear", hidden, classes),
    ]


def small_vgg(input_shape=(3, 32, 32), widths=(64, 128), classes=10):
    """2x[conv3x3-BN-ReLU], 2x2 max pool, 2x[conv3x3-BN-ReLU], 2x2 max pool, linear."""
    channels, height, width = input_shape
    layers = []
    for out in widths:
        for _ in range(2):
            layers += [("conv", channels, out, 3, 1, 1, False), ("bn", out), ("relu", True)]
            channels = out
        layers.append(("maxpool", 2, 2, 0))
        height, width = height // 2, width // 2
    return layers + [("flatten",), ("linear", channels * height * width, classes)]


def _basic_block(channels, out, stride):
    body = [("conv", channels, out, 3, stride, 1, False), ("bn", out), ("relu", True),
            ("conv", out, out, 3, 1, 1, False), ("bn", out)]
    shortcut = None
    if stride != 1 or channels != out:
        shortcut = [("conv", channels, out, 1, stride, 0, False), ("bn", out)]
    return [("residual", body, shortcut), ("relu", True)]


def resnet18(input_shape=(3, 224, 224), widths=(64, 128, 256, 512), classes=1000):
    """ResNet-18: conv7x7 s2-BN-ReLU, 3x3 s2 max pool, 4 stages of 2 basic blocks (the first
    block of stages 2-4 at stride 2 with a 1x1 stride-2 projection), global average pool
    (an AvgPool2d over the whole final map), linear."""
    channels, height, width = input_shape
    layers = [("conv", channels, widths[0], 7, 2, 3, False), ("bn", widths[0]), ("relu", True),
              ("maxpool", 3, 2, 1)]
    size = (height + 6 - 7) // 2 + 1
    size = (size + 2 - 3) // 2 + 1
    channels = widths[0]
    for stage, out in enumerate(widths):
        stride = 1 if stage == 0 else 2
        layers += _basic_block(channels, out, stride) + _basic_block(out, out, 1)
        channels = out
        if stride == 2:
            size = (size + 2 - 3) // 2 + 1
    return layers + [("avgpool", size), ("flatten",), ("linear", channels, classes)]


@dataclass(frozen=True)
class NetCase:
    """One network: what it is built from and how it is timed.

    spec : the layer specs; batch : images per call; input_shape : (C, H, W);
    pass_name : TRAIN (forward, softmax loss, backward, optimiser step) or INFERENCE
    (forward in evaluation mode); optimizer : ("adam", {}) or ("sgd", {"momentum": 0.9}).
    """

    name: str
    title: str
    spec: tuple
    batch: int
    input_shape: tuple
    pass_name: str
    optimizer: tuple = None
    lr: float = 1e-3
    full_only: bool = False

    family = FAMILY

    @property
    def x_shape(self):
        return (self.batch,) + tuple(self.input_shape)

    @property
    def classes(self):
        return _final_width(self.spec)

    def describe(self):
        optimiser = "" if self.optimizer is None else f", {self.optimizer[0]}"
        return f"{self.title} x{_tuple(self.x_shape)}{optimiser}"

    def forward_gflop(self):
        """Multiply-adds (x2) of the convolutions and linear layers of one forward, in GFLOP."""
        return _forward_flops(self.spec, self.input_shape) * self.batch / 1e9


def _tuple(shape):
    return "(" + ",".join(map(str, shape)) + ")"


def _final_width(spec):
    for entry in reversed(spec):
        if entry[0] == "linear":
            return entry[2]
    raise ValueError("a net spec must end in a linear layer")


def _forward_flops(spec, shape):
    """FLOPs (2 per multiply-add) of the convs and linear layers for one image of `shape`."""
    flops, _ = _walk_flops(spec, tuple(shape))
    return flops


def _walk_flops(spec, shape):
    flops = 0
    for entry in spec:
        kind = entry[0]
        if kind == "conv":
            _, channels, out, kernel, stride, padding, _bias = entry
            height = (shape[1] + 2 * padding - kernel) // stride + 1
            width = (shape[2] + 2 * padding - kernel) // stride + 1
            flops += 2 * out * height * width * channels * kernel * kernel
            shape = (out, height, width)
        elif kind in ("maxpool", "avgpool"):
            kernel = entry[1]
            stride, padding = (entry[2], entry[3]) if kind == "maxpool" else (kernel, 0)
            shape = (shape[0], (shape[1] + 2 * padding - kernel) // stride + 1,
                     (shape[2] + 2 * padding - kernel) // stride + 1)
        elif kind == "flatten":
            shape = (math.prod(shape),)
        elif kind == "linear":
            flops += 2 * entry[1] * entry[2]
            shape = (entry[2],)
        elif kind == "residual":
            body_flops, out_shape = _walk_flops(entry[1], shape)
            shortcut_flops = 0 if entry[2] is None else _walk_flops(entry[2], shape)[0]
            flops += body_flops + shortcut_flops
            shape = out_shape
    return flops, shape


NET_CASES = (
    NetCase("cs231n-3layer", "ThreeLayerConvNet conv7x7x32-relu-pool-fc100-relu-fc10",
            tuple(three_layer_convnet()), 50, (3, 32, 32), TRAIN, ("adam", {}), lr=1e-3),
    NetCase("vgg-bn", "small VGG 2x[conv3x3-bn-relu]-pool x2 (64, 128)-fc10",
            tuple(small_vgg()), 64, (3, 32, 32), TRAIN, ("sgd", {"momentum": 0.9}), lr=1e-2),
    NetCase("resnet18-net-b1", "ResNet-18 inference", tuple(resnet18()), 1, (3, 224, 224), INFERENCE),
    NetCase("resnet18-net-b16", "ResNet-18 inference", tuple(resnet18()), 16, (3, 224, 224), INFERENCE,
            full_only=True),
)

# Small nets for the tests of the bench itself (hidden --tiny option); never reported.
TINY_NET_CASES = (
    NetCase("tiny-3layer", "3-layer convnet", tuple(three_layer_convnet((3, 8, 8), 4, 3, 6, 5)),
            3, (3, 8, 8), TRAIN, ("adam", {})),
    NetCase("tiny-vgg", "VGG-BN", tuple(small_vgg((3, 8, 8), (4, 6), 5)), 3, (3, 8, 8), TRAIN,
            ("sgd", {"momentum": 0.9}), lr=1e-2),
    NetCase("tiny-resnet", "ResNet-18", tuple(resnet18((3, 32, 32), (4, 6, 6, 8), 5)), 2,
            (3, 32, 32), INFERENCE),
)


def all_cases(*, tiny=False):
    return TINY_NET_CASES if tiny else NET_CASES


def select(only=None, *, quick=False, tiny=False):
    """Split an --only list between this family and the shape suite.

    Returns (net cases to run, in suite order; what is left of `only` for suite.select, or
    None when `only` is None: every suite case). The family name "nets" selects every net.
    Raises ValueError for a name that is neither a net, a suite case nor a family.
    """
    from . import suite

    cases = all_cases(tiny=tiny)
    if only is None:
        return [case for case in cases if not (quick and case.full_only)], None
    wanted = [name.strip() for name in only.split(",") if name.strip()]
    net_names = {case.name for case in cases} | {FAMILY}
    suite_names = suite.known_names(tiny=tiny)
    unknown = [name for name in wanted if name not in net_names | suite_names]
    if unknown or not wanted:
        raise ValueError(
            f"unknown name(s) {', '.join(unknown) or repr(only)} for --only; valid names are: "
            f"{', '.join(suite.FAMILIES)}, {FAMILY}, "
            f"{', '.join(sorted(suite_names - set(suite.FAMILIES)))}, "
            f"{', '.join(case.name for case in cases)}"
        )
    selected = [case for case in cases
                if case.name in wanted or (FAMILY in wanted and not (quick and case.full_only))]
    return selected, ",".join(name for name in wanted if name in suite_names)


def notes(rows):
    """Footer lines on the net rows (none when there are none)."""
    if not any(row["family"] == FAMILY for row in rows):
        return []
    return [
        "nets: 'net train' = one training step (forward, softmax loss, backward, optimiser step; "
        "fastconv by Trainer.train_step, torch by zero_grad/cross_entropy/backward/step), "
        "'net infer' = one forward in evaluation mode (fastconv predict_scores, torch under "
        "inference_mode); the same layers and initial weights on the same inputs; torch nets "
        "run one forward+backward before timing; GFLOP = the convs' and linear layers' "
        "multiply-adds x2 (x3 for a training step); the reference is not timed on networks",
    ]


def find(name, *, tiny=False):
    for case in all_cases(tiny=tiny):
        if case.name == name:
            return case
    raise KeyError(f"no net case named {name!r}")


# --- building the nets ------------------------------------------------------------------

def build_fastconv(spec, dtype, rng):
    """A fastconv Sequential for `spec`, parameters of `dtype`, initial weights from `rng`."""
    from .. import layers

    def build(entries):
        built = []
        for entry in entries:
            kind = entry[0]
            if kind == "conv":
                _, channels, out, kernel, stride, padding, bias = entry
                built.append(layers.Conv2d(channels, out, kernel, stride, padding, bias=bias,
                                           dtype=dtype, rng=rng))
            elif kind == "bn":
                built.append(layers.BatchNorm2d(entry[1], dtype=dtype))
            elif kind == "relu":
                built.append(layers.ReLU(inplace=entry[1]))
            elif kind == "maxpool":
                built.append(layers.MaxPool2d(entry[1], entry[2], entry[3]))
            elif kind == "avgpool":
                built.append(layers.AvgPool2d(entry[1]))
            elif kind == "flatten":
                built.append(layers.Flatten())
            elif kind == "linear":
                built.append(layers.Linear(entry[1], entry[2], dtype=dtype, rng=rng))
            elif kind == "residual":
                shortcut = None if entry[2] is None else build(entry[2])
                built.append(layers.Residual(build(entry[1]), shortcut))
            else:
                raise ValueError(f"unknown layer spec {entry!r}")
        return layers.Sequential(built)

    return build(spec)


def build_torch(torch, spec, model):
    """The torch.nn twin of the fastconv net `model` built from `spec`: the same layers, in its
    dtype, holding copies of its current parameters (and running statistics)."""
    nn = torch.nn
    first = next(iter(model.params.values()))
    dtype = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[first.dtype]

    def copy(tensor, array):
        with torch.no_grad():
            tensor.copy_(torch.from_numpy(np.ascontiguousarray(array)))

    class Residual(nn.Module):
        def __init__(self, body, shortcut):
            super().__init__()
            self.body, self.shortcut = body, shortcut

        def forward(self, x):
            return self.body(x) + (x if self.shortcut is None else self.shortcut(x))

    def build(entries, sequential):
        modules = []
        for entry, layer in zip(entries, sequential.layers):
            kind = entry[0]
            if kind == "conv":
                _, channels, out, kernel, stride, padding, bias = entry
                module = nn.Conv2d(channels, out, kernel, stride, padding, bias=bias, dtype=dtype)
                copy(module.weight, layer.params["weight"])
                if bias:
                    copy(module.bias, layer.params["bias"])
            elif kind == "bn":
                module = nn.BatchNorm2d(entry[1], eps=layer.eps, momentum=layer.momentum, dtype=dtype)
                copy(module.weight, layer.params["weight"])
                copy(module.bias, layer.params["bias"])
                copy(module.running_mean, layer.running_mean)
                copy(module.running_var, layer.running_var)
            elif kind == "relu":
                module = nn.ReLU(inplace=entry[1])
            elif kind == "maxpool":
                module = nn.MaxPool2d(entry[1], entry[2], entry[3])
            elif kind == "avgpool":
                module = nn.AvgPool2d(entry[1])
            elif kind == "flatten":
                module = nn.Flatten()
            elif kind == "linear":
                module = nn.Linear(entry[1], entry[2], dtype=dtype)
                copy(module.weight, layer.params["weight"])
                copy(module.bias, layer.params["bias"])
            elif kind == "residual":
                shortcut = None if entry[2] is None else build(entry[2], layer.shortcut)
                module = Residual(build(entry[1], layer.body), shortcut)
            else:
                raise ValueError(f"unknown layer spec {entry!r}")
            modules.append(module)
        return nn.Sequential(*modules)

    return build(spec, model)


def make_inputs(case, dtype, seed=0):
    """x (the case's batch, float `dtype`) and integer labels y, from `seed`."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(case.x_shape, dtype=np.dtype(dtype))
    y = rng.integers(0, case.classes, size=case.batch).astype(np.int64)
    return x, y


def fastconv_net(case, dtype, seed=0):
    """(model, optimizer or None) of fastconv for `case`: weights from `seed`, in training
    mode for a training step and evaluation mode for inference."""
    from .. import optim

    model = build_fastconv(case.spec, np.dtype(dtype), np.random.default_rng(seed + 1))
    if case.pass_name == INFERENCE:
        return model.eval(), None
    name, options = case.optimizer
    make = {"adam": optim.Adam, "sgd": optim.SGD}[name]
    return model, make(model.params, lr=case.lr, **options)


def fastconv_call(case, dtype, seed=0):
    """A no-argument callable running one pass of `case` through fastconv, as a user does:
    a training step by Trainer.train_step (forward, softmax loss, backward without the data's
    gradient, optimiser step; returns the loss), an inference by predict_scores (the scores)."""
    from ..train import Trainer, predict_scores

    x, y = make_inputs(case, dtype, seed)
    model, optimizer = fastconv_net(case, dtype, seed)
    if case.pass_name == INFERENCE:
        return lambda: predict_scores(model, x, batch_size=case.batch)
    trainer = Trainer(model, optimizer, loss="softmax", batch_size=case.batch, verbose=False)
    return lambda: trainer.train_step(x, y)


def torch_net(torch, case, dtype, seed=0):
    """(net, optimizer or None): the torch.nn twin of fastconv_net(case, dtype, seed)."""
    model, _ = fastconv_net(case, dtype, seed)
    net = build_torch(torch, case.spec, model)
    if case.pass_name == INFERENCE:
        return net.eval(), None
    name, options = case.optimizer
    make = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[name]
    return net.train(), make(net.parameters(), lr=case.lr, **options)


def warm_torch(torch, net, x):
    """One forward and backward of `net` (PyTorch's CPU convolutions run their forward faster,
    up to 3.5x, once a backward has run in the process; timing after one is the harder
    baseline). Leaves no gradients behind and restores the net's mode (running statistics of
    batch norm move by one batch in training mode)."""
    was_training = net.training
    net.train()
    net(x).sum().backward()
    for parameter in net.parameters():
        parameter.grad = None
    net.train(was_training)


def torch_call(torch, case, dtype, seed=0):
    """A no-argument callable running one pass of `case` through the torch twin, after one
    forward+backward of the net (warm_torch)."""
    functional = torch.nn.functional
    x_array, y_array = make_inputs(case, dtype, seed)
    x, y = torch.from_numpy(x_array), torch.from_numpy(y_array)
    net, optimizer = torch_net(torch, case, dtype, seed)
    warm_torch(torch, net, x)
    if case.pass_name == INFERENCE:
        def inference():
            with torch.inference_mode():
                return net(x)

        return inference

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        loss = functional.cross_entropy(net(x), y)
        loss.backward()
        optimizer.step()
        return loss

    return train_step


def implementations(case, dtype, torch=None, seed=0):
    """{name: callable} for fastconv and (when given) torch; the reference is not timed on
    whole networks (a step of its NumPy convolutions takes seconds)."""
    calls = {"fastconv": fastconv_call(case, dtype, seed)}
    if torch is not None:
        calls["torch"] = torch_call(torch, case, dtype, seed)
    return calls


def operation_name(case):
    return f"net {SHORT_PASS[case.pass_name]}"


REFERENCE_STATUS = "not timed on networks"


def make_row(case, dtype, fastconv_ms, torch_ms, times_ms, peak_bytes=None, held_bytes=None):
    """A result row for `case` in the shape of the suite's rows (runner.measure_case)."""
    work = case.forward_gflop() * (3 if case.pass_name == TRAIN else 1)
    return {
        "operation": operation_name(case),
        "family": FAMILY,
        "pass": case.pass_name,
        "case": case.name,
        "shape": case.describe(),
        "x_shape": list(case.x_shape),
        "dtype": str(np.dtype(dtype)),
        "gflop": work,
        "reference_ms": None,
        "reference_status": REFERENCE_STATUS,
        "fastconv_ms": fastconv_ms,
        "torch_ms": torch_ms,
        "speedup_vs_reference": None,
        "fastconv_over_torch": None if torch_ms is None else fastconv_ms / torch_ms,
        "gflop_per_s": work / (fastconv_ms / 1e3),
        "percent_of_gemm": None,
        "fastconv_peak_bytes": peak_bytes,
        "fastconv_result_bytes": held_bytes,
        "times_ms": times_ms,
    }


def measure_case(case, dtype, settings, torch=None, seed=0):
    """Time one net with every implementation in this process (runner.time_alternating);
    its result row."""
    from . import runner

    calls = implementations(case, dtype, torch, seed)
    timings = runner.time_alternating(calls, settings)
    peak, held = runner.traced_memory(calls["fastconv"])
    torch_timing = timings.get("torch")
    return make_row(
        case, dtype, timings["fastconv"].median * 1e3,
        None if torch_timing is None else torch_timing.median * 1e3,
        {name: [seconds * 1e3 for seconds in timing.times] for name, timing in timings.items()},
        peak, held,
    )


# --- where the time goes ----------------------------------------------------------------

def leaf_layers(model, prefix=""):
    """(path, layer) of every non-container layer of `model`, in forward order; paths like
    "4.body.0" (Sequential indices, Residual body/shortcut)."""
    from ..layers import Residual, Sequential

    if isinstance(model, Sequential):
        for index, layer in enumerate(model.layers):
            yield from leaf_layers(layer, f"{prefix}{index}.")
    elif isinstance(model, Residual):
        yield from leaf_layers(model.body, f"{prefix}body.")
        if model.shortcut is not None:
            yield from leaf_layers(model.shortcut, f"{prefix}shortcut.")
        yield prefix + "add", model
    else:
        yield prefix.rstrip("."), model


class _Timed:
    """Wraps one layer's forward and backward (as instance attributes) to record call times."""

    def __init__(self, layer):
        self.layer = layer
        self.forward, self.backward = [], []
        original_forward, original_backward = layer.forward, layer.backward

        def forward(x):
            start = time.perf_counter()
            out = original_forward(x)
            self.forward.append(time.perf_counter() - start)
            return out

        def backward(dout, **options):
            start = time.perf_counter()
            dx = original_backward(dout, **options)
            self.backward.append(time.perf_counter() - start)
            return dx

        layer.forward, layer.backward = forward, backward

    def remove(self):
        del self.layer.forward, self.layer.backward


def profile_fastconv(case, dtype, steps=10, seed=0):
    """Per-layer times of `steps` passes of `case` through fastconv, after one untimed pass.

    Returns a list of {"layer", "type", "forward_ms", "backward_ms"} (medians per call, the
    backward None for inference) in forward order, then rows for the loss and the optimiser
    step of a training step, and "total" (the median pass).
    """
    from ..layers import Residual
    from ..losses import softmax_loss

    x, y = make_inputs(case, dtype, seed)
    model, optimizer = fastconv_net(case, dtype, seed)
    if case.pass_name == TRAIN:
        retain_freed_memory()  # as a Trainer does
    leaves = list(leaf_layers(model))
    timers = [_Timed(layer) for _, layer in leaves]
    # a Residual's own share (the addition and its gradient) is its time minus its branches'
    branches = {id(layer): [_Timed(branch) for branch in (layer.body, layer.shortcut) if branch is not None]
                for _, layer in leaves if isinstance(layer, Residual)}
    every_timer = timers + [timer for inner in branches.values() for timer in inner]
    phases = {"loss": [], "optimizer step": [], "total": []}

    def one_pass():
        # what Trainer.train_step and predict_scores do, timed piece by piece
        start = time.perf_counter()
        scores = model.forward(x)
        if case.pass_name == TRAIN:
            loss_start = time.perf_counter()
            _, dscores = softmax_loss(scores, y)
            phases["loss"].append(time.perf_counter() - loss_start)
            model.backward(dscores, need_dx=False)
            step_start = time.perf_counter()
            optimizer.step(model.grads)
            phases["optimizer step"].append(time.perf_counter() - step_start)
        phases["total"].append(time.perf_counter() - start)

    try:
        one_pass()
        for timer in every_timer:
            timer.forward.clear()
            timer.backward.clear()
        for values in phases.values():
            values.clear()
        for _ in range(steps):
            one_pass()
    finally:
        for timer in reversed(every_timer):
            timer.remove()
    rows = []
    for (path, layer), timer in zip(leaves, timers):
        forward, backward = list(timer.forward), list(timer.backward)
        for inner in branches.get(id(layer), ()):  # call by call
            forward = [a - b for a, b in zip(forward, inner.forward)]
            backward = [a - b for a, b in zip(backward, inner.backward)]
        rows.append({
            "layer": path,
            "type": "add" if isinstance(layer, Residual) else type(layer).__name__,
            "forward_ms": statistics.median(forward) * 1e3 if forward else None,
            "backward_ms": statistics.median(backward) * 1e3 if backward else None,
        })
    for name, values in phases.items():
        if values:
            rows.append({"layer": name, "type": "", "forward_ms": statistics.median(values) * 1e3,
                         "backward_ms": None})
    return rows


def profile_table(case, rows):
    """The per-layer rows of profile_fastconv as text, with a sum per layer type."""
    lines = [f"fastconv per-layer times, {case.name} ({case.describe()}), median ms per call:",
             f"  {'layer':22} {'type':12} {'forward':>9} {'backward':>9}"]

    def cell(value):
        return "-" if value is None else f"{value:9.3f}"

    totals = {}
    for row in rows:
        lines.append(f"  {row['layer']:22} {row['type']:12} {cell(row['forward_ms'])} "
                     f"{cell(row['backward_ms'])}")
        if row["type"]:
            total = totals.setdefault(row["type"], [0.0, 0.0])
            total[0] += row["forward_ms"] or 0.0
            total[1] += row["backward_ms"] or 0.0
    lines.append("  by layer type (sum of the medians):")
    for kind, (forward, backward) in sorted(totals.items(), key=lambda item: -sum(item[1])):
        lines.append(f"  {kind:35} {forward:9.3f} {backward:9.3f}")
    return "\n".join(lines)


def profile_torch(torch, case, dtype, steps=10, seed=0, rows=12):
    """torch.profiler's table of the operators taking the most time over `steps` passes of the
    torch twin (self CPU time), as text."""
    from torch.profiler import ProfilerActivity, profile

    call = torch_call(torch, case, dtype, seed)
    call()
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(steps):
            call()
    table = profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)
    return f"torch operators, {case.name}, {steps} passes:\n{table}"
