"""Time Winograd forwards with whole bands per thread against bands shared by the threads.

A Winograd forward cuts its rows of output tiles into bands. Either each thread takes whole
bands, or (fastconv's choice for few or narrow bands, algorithms/_winograd.py's plan) every
thread works on every band: its share of the channels in the input transform, then of the
filters in the GEMMs and the output transform. This script runs batch-1 and small-batch
ResNet-18 layers both ways in one process, in alternating blocks, through the inference
path (conv_inference: the transformed weights kept, as in a network's forward), and prints
the median of each and their ratio:

    python bench/winograd_bands.py
    python bench/winograd_bands.py --threads 2 --rounds 8

The way is forced by setting _tuning.SHARED_BANDS_MIN_EXCESS and SHARED_BANDS_MAX_TILES so
that plan() shares every band (where each thread has SHARED_BANDS_MIN_WIDTH channels and
filters) or none; "chosen" is what plan() takes with the shipped constants.
"""
import argparse
import time

import numpy as np
from _timing import median_ms

import fastconv
from fastconv import _tuning, algorithms
from fastconv._geometry import conv_geometry
from fastconv.algorithms import _winograd
from fastconv.conv import conv_inference

# name: (x shape, w shape, stride, algorithm)
CASES = {
    "b1 l1 64ch 56x56 4x4": ((1, 64, 56, 56), (64, 64, 3, 3), 1, "winograd-4x4"),
    "b1 l2 128ch 28x28 2x2": ((1, 128, 28, 28), (128, 128, 3, 3), 1, "winograd-2x2"),
    "b1 l2 128ch 28x28 4x4": ((1, 128, 28, 28), (128, 128, 3, 3), 1, "winograd-4x4"),
    "b1 l2.0.conv1 s2": ((1, 64, 56, 56), (128, 64, 3, 3), 2, "winograd-s2"),
    "b1 l3 256ch 14x14 2x2": ((1, 256, 14, 14), (256, 256, 3, 3), 1, "winograd-2x2"),
    "b1 l3 256ch 14x14 4x4": ((1, 256, 14, 14), (256, 256, 3, 3), 1, "winograd-4x4"),
    "b1 l3.0.conv1 s2": ((1, 128, 28, 28), (256, 128, 3, 3), 2, "winograd-s2"),
    "b1 l4 512ch 7x7 2x2": ((1, 512, 7, 7), (512, 512, 3, 3), 1, "winograd-2x2"),
    "b1 l4.0.conv1 s2": ((1, 256, 14, 14), (512, 256, 3, 3), 2, "winograd-s2"),
    "b1 64ch 12x12 2x2": ((1, 64, 12, 12), (64, 64, 3, 3), 1, "winograd-2x2"),
    "b2 l3 256ch 14x14 2x2": ((2, 256, 14, 14), (256, 256, 3, 3), 1, "winograd-2x2"),
    "b2 l4 512ch 7x7 2x2": ((2, 512, 7, 7), (512, 512, 3, 3), 1, "winograd-2x2"),
    "b4 l3 256ch 14x14 2x2": ((4, 256, 14, 14), (256, 256, 3, 3), 1, "winograd-2x2"),
    "b4 l4 512ch 7x7 2x2": ((4, 512, 7, 7), (512, 512, 3, 3), 1, "winograd-2x2"),
    "b16 vgg 64ch 32x32 4x4": ((16, 64, 32, 32), (64, 64, 3, 3), 1, "winograd-4x4"),
}
# (SHARED_BANDS_MIN_EXCESS, SHARED_BANDS_MAX_TILES) that force each way
_WAYS = {"whole": (float("inf"), 0), "shared": (-1.0, 2**62)}


def _plan_shares(x_shape, w_shape, stride, algorithm, dtype):
    _, elements, tile = _winograd.SETS[algorithms.REGISTRY[algorithm].TRANSFORMS]
    out = conv_geometry(x_shape, w_shape, stride, 1).out
    return _winograd.plan(x_shape[0], x_shape[1], w_shape[0], *out, np.dtype(dtype).itemsize,
                          elements, tile, share_bands=True)[3]


def time_case(x_shape, w_shape, stride, algorithm, dtype, rounds, calls):
    """Median ms per call of each way (_WAYS), over `rounds` rounds of alternating blocks."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)

    def call():
        conv_inference(2, x, w, None, stride, 1, algorithm=algorithm)

    saved = _tuning.SHARED_BANDS_MIN_EXCESS, _tuning.SHARED_BANDS_MAX_TILES
    medians = {way: [] for way in _WAYS}
    try:
        for index in range(rounds):
            ways = list(_WAYS) if index % 2 else list(_WAYS)[::-1]
            for way in ways:
                _tuning.SHARED_BANDS_MIN_EXCESS, _tuning.SHARED_BANDS_MAX_TILES = _WAYS[way]
                time.sleep(0.1)  # the other way's threads go idle
                medians[way].append(median_ms(call, calls=calls, warmup=3))
    finally:
        _tuning.SHARED_BANDS_MIN_EXCESS, _tuning.SHARED_BANDS_MAX_TILES = saved
    return {way: float(np.median(values)) for way, values in medians.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--calls", type=int, default=40)
    args = parser.parse_args()
    if args.threads is not None:
        fastconv.set_num_threads(args.threads)
    print(f"{fastconv.get_num_threads()} threads, {args.dtype}; medians of {args.rounds} "
          f"blocks of {args.calls} calls each way")
    print(f"{'layer':26s} {'algorithm':13s} {'whole ms':>9s} {'shared ms':>9s} "
          f"{'shared/whole':>12s}  chosen")
    for name, (x_shape, w_shape, stride, algorithm) in CASES.items():
        times = time_case(x_shape, w_shape, stride, algorithm, args.dtype, args.rounds,
                          args.calls)
        chosen = "shared" if _plan_shares(x_shape, w_shape, stride, algorithm, args.dtype) \
            else "whole"
        print(f"{name:26s} {algorithm:13s} {times['whole']:9.3f} {times['shared']:9.3f} "
              f"{times['shared'] / times['whole']:12.2f}  {chosen}")


if __name__ == "__main__":
    main()
