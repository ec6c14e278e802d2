"""Time the (layer, pass) pairs whose "auto" choice a change of the cost model flips.

Draws tools/calibrate.py's random layer sample, plans every pass of each layer under two
versions of the float32 constants (today's, and today's with the Winograd weight gradient's
"sum" GEMM rated like an ordinary "nn" product, as before docs/performance.md's "The weight
gradient's sums"), and times each flipped pair's two choices alternately in this process:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/cost_model_flips.py --samples 600

Backward passes only: the forward does not use the term. Prints one row per pair (old and
new choice, median ms) and the geometric mean of new/old.
"""
import argparse
import copy
import os
import sys
import time

import numpy as np

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [_ROOT, os.path.join(_ROOT, "tools")]

import calibrate  # noqa: E402

import fastconv  # noqa: E402
from fastconv import _tuning, algorithms, planner  # noqa: E402
from fastconv._geometry import conv_geometry  # noqa: E402

PASSES = ("backward", "backward-weights")


def _choice(geometry, pass_name, constants):
    machine = planner.Machine(np.float32, fastconv.get_num_threads(), constants)
    costs = {module.NAME: module.cost(geometry, machine, pass_name) + machine.call(module.NAME)
             for module in algorithms.supporting(geometry)}
    return min(costs, key=costs.get)


def flips(samples, seed):
    new = _tuning.COST_MODEL["float32"]
    old = copy.deepcopy(new)
    old["gemm"]["sum"] = dict(old["gemm"]["nn"])
    for x_shape, w_shape, stride, padding, groups in (layer[:5] for layer in
                                                      calibrate.sample(samples, seed, 4.0, 0.5)):
        geometry = conv_geometry(x_shape, w_shape, stride, padding, groups=groups)
        for pass_name in PASSES:
            before, after = _choice(geometry, pass_name, old), _choice(geometry, pass_name, new)
            if before != after:
                yield x_shape, w_shape, stride, padding, groups, pass_name, before, after


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=600)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    ratios = []
    for x_shape, w_shape, stride, padding, groups, pass_name, before, after in flips(args.samples, args.seed):
        x = rng.standard_normal(x_shape).astype(np.float32)
        w = rng.standard_normal(w_shape).astype(np.float32)
        caches = {}
        for name in (before, after):
            out, caches[name] = fastconv.conv2d_forward(x, w, None, stride, padding, groups=groups,
                                                        algorithm=name)
        dout = rng.standard_normal(out.shape).astype(np.float32)
        times = {before: [], after: []}
        for _ in range(args.rounds):
            for name in (before, after):
                start = time.perf_counter()
                fastconv.conv2d_backward(dout, caches[name], need_dx=pass_name == "backward")
                times[name].append(time.perf_counter() - start)
        old_ms, new_ms = (np.median(times[name][1:]) * 1e3 for name in (before, after))
        ratios.append(new_ms / old_ms)
        print(f"{x_shape} {w_shape} s{stride} {pass_name:16s} {before:13s} {old_ms:8.2f}  "
              f"{after:13s} {new_ms:8.2f}  new/old {new_ms / old_ms:.2f}", flush=True)
    ratios = np.array(ratios)
    if ratios.size:
        print(f"{ratios.size} pairs flipped; new/old geomean {np.exp(np.log(ratios).mean()):.3f}, "
              f"{int((ratios > 1.15).sum())} above 1.15, {int((ratios < 1 / 1.15).sum())} below 1/1.15")


if __name__ == "__main__":
    main()
