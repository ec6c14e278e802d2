"""Calibrate the planner's cost model (fastconv._tuning.COST_MODEL) on this machine.

    python tools/calibrate.py measure --dtype float32 --out cal-f32.json   # about 10-20 min
    python tools/calibrate.py fit cal-f32.json                             # prints the constants
    python tools/calibrate.py check cal-f32.json --oracle oracle.json      # a few variants scored

`measure` times every algorithm that supports each of a few hundred convolution layers drawn
from a broad distribution of real-network shapes (channels 3-512, maps 7-224, batches 1-64,
1x1/3x3/5x5/7x7/11x11 kernels, strides 1-4, depthwise and grouped), each pass (forward;
forward and both gradients) in one process, the candidates alternating in rounds, and keeps
the median per candidate. `fit` adjusts every constant of the model (GEMM rates and their
saturation, the per-element cost of each kind of work, a second thread's efficiency, a fixed
cost per call of each algorithm) by least squares on log(predicted / measured) time, and
reports how well the fitted model ranks the candidates: for each layer and pass, the
measured time of the model's choice over the measured best.

Run it with the BLAS a user gets (env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE) on a quiet
machine. The benchmark's layers (public suite and networks) are not in the sample: they test
the fit (python -m fastconv.bench --oracle). docs/performance.md, "The cost model", records
each calibration.
"""
import argparse
import copy
import glob
import json
import math
import os
import random
import statistics
import sys
import time

import numpy as np

# the checkout this script is in when it has an in-place build; else the installed fastconv
_CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if glob.glob(os.path.join(_CHECKOUT, "fastconv", "_kernels", "_conv.*.so")):
    sys.path.insert(0, _CHECKOUT)

import fastconv  # noqa: E402
from fastconv import _tuning, algorithms, planner  # noqa: E402
from fastconv._geometry import ConvGeometry, conv_geometry  # noqa: E402

SIZES = (7, 8, 10, 13, 14, 16, 20, 27, 28, 32, 40, 48, 56, 64, 80, 112, 160, 224)
CHANNELS = (3, 8, 16, 24, 32, 48, 64, 96, 128, 160, 192, 256, 320, 384, 512)
BATCHES = (1, 1, 2, 4, 8, 16, 32, 64)
PASSES = ("forward", "backward")


def _layer(rng):
    """(x shape, w shape, stride, padding, groups) of one random layer."""
    kind = rng.choices(["3x3", "3x3-s2", "1x1", "1x1-s2", "big", "depthwise", "other"],
                       [30, 12, 16, 5, 10, 12, 15])[0]
    size = rng.choice(SIZES)
    channels, filters = rng.choice(CHANNELS), rng.choice(CHANNELS)
    batch = rng.choice(BATCHES)
    groups = 1
    if kind == "3x3":
        kernel, stride, padding = 3, 1, rng.choice([0, 1, 1, 1, 2])
    elif kind == "3x3-s2":
        kernel, stride, padding = 3, 2, 1
    elif kind == "1x1":
        kernel, stride, padding = 1, 1, 0
    elif kind == "1x1-s2":
        kernel, stride, padding = 1, 2, 0
    elif kind == "big":
        kernel = rng.choice([5, 7, 11])
        stride = rng.choice([1, 2, 2, 4])
        padding = rng.choice([0, kernel // 2])
        channels = rng.choice((3, 3, 16, 32, 64))
    elif kind == "depthwise":
        kernel, stride, padding = 3, rng.choice([1, 1, 2]), 1
        groups = channels = filters = rng.choice(CHANNELS[2:] + (576, 960))
    else:
        kernel = rng.choice([2, 4, 5])
        stride = rng.choice([1, 2])
        padding = rng.choice([0, 1, 2])
        groups = rng.choice([1, 1, 2, 4])
        channels, filters = channels * groups // math.gcd(channels, groups), filters * groups
    return (batch, channels, size, size), (filters, channels // groups, kernel, kernel), stride, \
        padding, groups


def sample(count, seed, max_gflop, min_mflop):
    rng = random.Random(seed)
    layers = []
    while len(layers) < count:
        x_shape, w_shape, stride, padding, groups = _layer(rng)
        try:
            geometry = conv_geometry(x_shape, w_shape, stride, padding, groups=groups)
        except ValueError:
            continue
        flop = 2 * geometry.macs()
        if min_mflop * 1e6 <= flop <= max_gflop * 1e9:
            layers.append((x_shape, w_shape, stride, padding, groups))
    return layers


def _timed(function, calls):
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def measure_layer(layer, dtype, rounds, budget):
    """{pass: {algorithm: median seconds}} for one layer, the candidates alternating."""
    x_shape, w_shape, stride, padding, groups = layer
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    geometry = conv_geometry(x_shape, w_shape, stride, padding, groups=groups)
    dout = rng.standard_normal(geometry.output_shape).astype(dtype)
    names = fastconv.available_algorithms(geometry)
    result = {}
    for pass_name in PASSES:
        calls = {}
        for name in names:
            if pass_name == "forward":
                calls[name] = lambda n=name: fastconv.conv2d_forward(
                    x, w, b, stride, padding, groups=groups, algorithm=n)
            else:
                _, cache = fastconv.conv2d_forward(x, w, b, stride, padding, groups=groups,
                                                   algorithm=name)
                calls[name] = lambda c=cache: fastconv.conv2d_backward(dout, c)
        # warm up; the slowest candidate sets how many calls a round makes
        first = {}
        for name, call in calls.items():
            call()
            first[name] = min(_timed(call, 2))
        per_round = {name: max(1, min(10, int(budget / max(seconds, 1e-6) / rounds)))
                     for name, seconds in first.items()}
        samples = {name: [] for name in calls}
        for round_index in range(rounds):
            order = names[round_index % len(names):] + names[:round_index % len(names)]
            for name in order:
                samples[name] += _timed(calls[name], per_round[name])
        # every sample kept: `fit --statistic` chooses how they are summarised
        result[pass_name] = {name: times for name, times in samples.items()}
    return geometry, result


def command_measure(args):
    dtype = np.dtype(args.dtype)
    fastconv.set_num_threads(args.threads)
    layers = sample(args.samples, args.seed, args.max_gflop, args.min_mflop)
    records = []
    started = time.perf_counter()
    for index, layer in enumerate(layers):
        geometry, result = measure_layer(layer, dtype, args.rounds, args.budget)
        records.append({"geometry": list(geometry), "times": result})
        if index % 10 == 0:
            print(f"{index + 1}/{len(layers)} layers, {time.perf_counter() - started:.0f} s",
                  file=sys.stderr, flush=True)
    from fastconv.bench import report

    document = {"dtype": dtype.name, "threads": args.threads, "seed": args.seed,
                "machine": report.machine_info(args.threads), "records": records}
    with open(args.out, "w") as handle:
        json.dump(document, handle)
    print(f"wrote {args.out}: {len(records)} layers", file=sys.stderr)


# ---- fitting ----------------------------------------------------------------------------

def _leaves(constants):
    """(path, value) of every number in the model, path a tuple of keys; the GEMM halves and
    rates, element costs, call costs and the efficiency."""
    out = []

    def walk(node, path):
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, path + (key,))
            else:
                out.append((path + (key,), float(value)))

    walk(constants, ())
    return out


def _with(constants, paths, values):
    result = copy.deepcopy(constants)
    for path, value in zip(paths, values):
        node = result
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return result


def _geometry(raw):
    fields = dict(zip(ConvGeometry._fields, raw))
    for name in ("size", "kernel", "stride", "dilation", "pad_before", "pad_after", "out"):
        fields[name] = tuple(fields[name])
    return ConvGeometry(**fields)


def _predict(constants, geometry, name, pass_name, dtype, threads):
    machine = planner.Machine(dtype, threads, constants)
    return algorithms.REGISTRY[name].cost(geometry, machine, pass_name) + machine.call(name)


STATISTICS = {"median": statistics.median, "min": min}
_statistic = statistics.median


def _summarised(times):
    """{algorithm: seconds} of one layer and pass, by the chosen statistic (files from before
    samples were kept hold one number per algorithm)."""
    return {name: (value if isinstance(value, float) else _statistic(value))
            for name, value in times.items()}


def _observations(document):
    for record in document["records"]:
        geometry = _geometry(record["geometry"])
        for pass_name, times in record["times"].items():
            for name, seconds in _summarised(times).items():
                yield geometry, pass_name, name, seconds


def fit(document, constants):
    from scipy.optimize import least_squares

    dtype, threads = np.dtype(document["dtype"]), document["threads"]
    constants = copy.deepcopy(constants)
    # a fixed call cost for every algorithm, fitted on its own
    calls = constants.setdefault("calls", {"default": 30e-6})
    for name in algorithms.REGISTRY:
        calls.setdefault(name, calls["default"])
    leaves = _leaves(constants)
    # the efficiency is in (0.5, 1]: fitted as a logit; every other constant positive: as a log
    paths = [path for path, _ in leaves]
    start = np.array([math.log(value) for _, value in leaves])
    observations = list(_observations(document))

    def residuals(logs):
        trial = _with(constants, paths, np.exp(logs))
        trial["parallel_efficiency"] = min(1.0, trial["parallel_efficiency"])
        return np.array([math.log(_predict(trial, g, n, p, dtype, threads) / s)
                         for g, p, n, s in observations])

    solution = least_squares(residuals, start, loss="soft_l1", f_scale=0.1, max_nfev=300,
                             x_scale=1.0)
    fitted = _with(constants, paths, np.exp(solution.x))
    fitted["parallel_efficiency"] = min(1.0, fitted["parallel_efficiency"])
    return fitted, residuals(solution.x)


def regret(document, constants):
    """For each (layer, pass): measured time of the model's choice / the measured best."""
    dtype, threads = np.dtype(document["dtype"]), document["threads"]
    ratios = []
    for record in document["records"]:
        geometry = _geometry(record["geometry"])
        for pass_name, times in record["times"].items():
            times = _summarised(times)
            predicted = {name: _predict(constants, geometry, name, pass_name, dtype, threads)
                         for name in times}
            choice = min(predicted, key=predicted.get)
            ratios.append((times[choice] / min(times.values()), geometry, pass_name, choice,
                           min(times, key=times.get)))
    return ratios


def _summary(ratios, label):
    values = sorted(r[0] for r in ratios)
    geomean = math.exp(sum(math.log(v) for v in values) / len(values))
    worst = max(ratios, key=lambda r: r[0])
    return (f"{label}: choice/best geometric mean {geomean:.3f}, 90th percentile "
            f"{values[int(0.9 * (len(values) - 1))]:.2f}, worst {worst[0]:.2f} "
            f"({worst[2]} {worst[1].input_shape} {worst[1].describe()}: chose {worst[3]}, best {worst[4]}), "
            f"{sum(v > 1.15 for v in values)} of {len(values)} above 1.15")


def command_fit(args):
    global _statistic
    _statistic = STATISTICS[args.statistic]
    with open(args.measurements) as handle:
        document = json.load(handle)
    current = _tuning.COST_MODEL[document["dtype"]]
    print(_summary(regret(document, current), "the current constants"))
    fitted, residual = fit(document, current)
    errors = np.exp(np.abs(residual))
    print(f"fit: |predicted/measured| median {np.median(errors):.2f}, 90th percentile "
          f"{np.percentile(errors, 90):.2f} over {len(residual)} timings")
    print(_summary(regret(document, fitted), "the fitted constants"))
    print(json.dumps(fitted, indent=1, sort_keys=True))
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(fitted, handle, indent=1, sort_keys=True)


# ---- checking variants of the constants -------------------------------------------------

# Variants `check` scores beside the current constants: each a function of a copy of them.
def _scaled_gemm(scale):
    def change(constants):
        for rate in constants["gemm"].values():
            rate["peak"] *= scale
    return change


def _scaled_elements(scale, *kinds):
    def change(constants):
        for kind in kinds:
            constants["elements"][kind] *= scale
    return change


VARIANTS = {
    "every GEMM rate x0.5": _scaled_gemm(0.5),
    "every GEMM rate x0.75": _scaled_gemm(0.75),
    "Winograd weight transforms x0.7": _scaled_elements(
        0.7, "winograd-weight-2x2", "winograd-weight-4x4", "winograd-weight-stride-2"),
    "depthwise taps x1.5": _scaled_elements(1.5, "depthwise-tap"),
    "depthwise per-row call x2": _scaled_elements(2.0, "depthwise-run"),
}


def _load(path):
    """A JSON file, gzipped or not (the records under docs/benchmarks/data/ are)."""
    import gzip

    with (gzip.open if path.endswith(".gz") else open)(path, "rt") as handle:
        return json.load(handle)


def _choice(constants, geometry, candidates, pass_name, dtype, threads):
    return min(candidates, key=lambda name: _predict(constants, geometry, name, pass_name,
                                                     dtype, threads))


def oracle_regret(path, constants, threads):
    """choice/best per (layer, pass) of a `python -m fastconv.bench --oracle --json` file,
    the choice made with `constants` and every time the fastest of the candidate's timed
    calls; forward+backward rows whose forward and backward the constants give to different
    algorithms have no single-algorithm entry and are left out."""
    from fastconv.bench import suite

    rows = _load(path)["oracle"]
    layers = {case.name: case for case in suite.select("networks,conv")}
    ratios = {}
    for row in rows:
        geometry, dtype = layers[row["case"]].window, np.dtype(row["dtype"])
        fastest = {name: min(times) for name, times in row["times_ms"].items() if name != "auto"}

        forward = _choice(constants, geometry, fastest, "forward", dtype, threads)
        if row["pass"] != "forward" and _choice(constants, geometry, fastest, "backward",
                                                dtype, threads) != forward:
            continue
        ratios.setdefault(row["pass"], []).append(fastest[forward] / min(fastest.values()))
    return ratios


def command_check(args):
    global _statistic
    _statistic = STATISTICS[args.statistic]
    document = _load(args.measurements)
    current = _tuning.COST_MODEL[document["dtype"]]
    variants = {"the current constants": current}
    for label, change in VARIANTS.items():
        variants[label] = copy.deepcopy(current)
        change(variants[label])
    for label, constants in variants.items():
        print(_summary(regret(document, constants), label))
        for path in args.oracle or ():
            for pass_name, values in oracle_regret(path, constants, document["threads"]).items():
                geomean = math.exp(sum(math.log(v) for v in values) / len(values))
                print(f"    {os.path.basename(path)} {pass_name}: geometric mean {geomean:.3f}, "
                      f"{sum(v > 1.15 for v in values)} of {len(values)} above 1.15")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    measure = commands.add_parser("measure")
    measure.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    measure.add_argument("--threads", type=int, default=2)
    measure.add_argument("--samples", type=int, default=240)
    measure.add_argument("--seed", type=int, default=1)
    measure.add_argument("--rounds", type=int, default=5)
    measure.add_argument("--budget", type=float, default=0.15,
                         help="seconds of timed calls per candidate and pass")
    measure.add_argument("--max-gflop", type=float, default=4.0)
    measure.add_argument("--min-mflop", type=float, default=0.5)
    measure.add_argument("--out", required=True)
    fitting = commands.add_parser("fit")
    fitting.add_argument("measurements")
    fitting.add_argument("--out")
    fitting.add_argument("--statistic", choices=sorted(STATISTICS), default="min",
                         help="how each candidate's timed calls are summarised")
    checking = commands.add_parser(
        "check", help="score the current constants and a few variants of them (VARIANTS)")
    checking.add_argument("measurements")
    checking.add_argument("--oracle", action="append",
                          help="also score them on a --oracle --json file (repeatable)")
    checking.add_argument("--statistic", choices=sorted(STATISTICS), default="min")
    args = parser.parse_args(argv)
    {"measure": command_measure, "fit": command_fit, "check": command_check}[args.command](args)


if __name__ == "__main__":
    main()
