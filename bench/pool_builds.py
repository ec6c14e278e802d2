"""Time one pooling case of this checkout's build; run it for two builds, alternating, to compare.

    PYTHONPATH=/path/to/build python bench/pool_builds.py CASE THREADS

prints "CASE fwd <ms> bwd <ms>": the median of 40 calls after 10 untimed ones, each of the
forward and of the backward, float32. Each run is a process of its own, so alternating two
builds' runs (a checkout of the earlier commit built in place, and this one) compares them
on equal terms on a shared machine, e.g.

    for r in 1 2; do for build in /tmp/old /work/main; do
        PYTHONPATH=$build python bench/pool_builds.py incep 2; done; done

docs/pooling.md ("Average pooling in two passes") records what this measured.
"""
import sys

import numpy as np
from _timing import median_ms

import fastconv

# name: (x shape, the op's name, its forward's keywords)
CASES = {
    "incep": ((16, 192, 35, 35), "avg_pool2d", dict(kernel_size=3, stride=1, padding=1,
                                                     count_include_pad=False)),
    "s2ceil": ((16, 256, 28, 28), "avg_pool2d", dict(kernel_size=3, stride=2, padding=1,
                                                      ceil_mode=True, count_include_pad=False)),
    "k2": ((32, 64, 56, 56), "avg_pool2d", dict(kernel_size=2, stride=2)),
    "3d": ((4, 32, 16, 28, 28), "avg_pool3d", dict(kernel_size=3, stride=2, padding=1)),
    "adaptive": ((32, 256, 13, 13), "adaptive_avg_pool2d", dict(output_size=6)),
    "audio-avg": ((32, 64, 4000), "avg_pool1d", dict(kernel_size=4, stride=4, ceil_mode=True)),
    "audio-max": ((32, 64, 4000), "max_pool1d", dict(kernel_size=3, stride=2, padding=1)),
    "adaptive-max": ((16, 512, 14, 14), "adaptive_max_pool2d", dict(output_size=7)),
    # x is the 2x2/2 max pooling of a (8, 64, 112, 112) input, indices its argmax
    "unpool": ((8, 64, 56, 56), "max_unpool2d", dict(kernel_size=2, stride=2)),
    "global": ((32, 2048, 7, 7), "adaptive_avg_pool2d", dict(output_size=1)),
    "dil2": ((16, 64, 55, 55), "max_pool2d", dict(kernel_size=3, stride=2, padding=1, dilation=2)),
    "dil2-1d": ((32, 64, 4000), "max_pool1d", dict(kernel_size=3, stride=2, padding=1, dilation=2)),
    # the undilated pool dil2 runs on its planes' phase, from a contiguous array
    "dil2-phase": ((16, 64, 27, 27), "max_pool2d", dict(kernel_size=3, stride=1, padding=1)),
}


def main(argv):
    name, threads = argv[0], int(argv[1])
    shape, op, keywords = CASES[name]
    fastconv.set_num_threads(threads)
    forward, backward = getattr(fastconv, f"{op}_forward"), getattr(fastconv, f"{op}_backward")
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    if op == "max_unpool2d":
        source = np.random.default_rng(2).standard_normal(
            shape[:2] + tuple(2 * size for size in shape[2:])).astype(np.float32)
        x, indices, _ = fastconv.max_pool2d_forward(source, 2, 2, return_indices=True)
        keywords = dict(keywords, indices=indices)
    result = forward(x, **keywords)
    out, cache = result[0], result[-1]
    dout = np.random.default_rng(1).standard_normal(out.shape).astype(np.float32)
    print(f"{name} fwd {median_ms(lambda: forward(x, **keywords)):.2f} "
          f"bwd {median_ms(lambda: backward(dout, cache)):.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
