"""Time s2d-winograd's two rearrangements: the split of the weights into phase kernels (the
compiled copy against its NumPy twin, alternating in this process, then the compiled copy
alone on 1 and 2 threads), and the phase copy of x on one thread, per value.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/s2d_copies.py

Prints the median ms of `--calls` calls per shape (docs/performance.md, "The kernels' split,
compiled"): the cost model's "s2d-kernel-split" and "s2d-phase-copy".
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _timing import median_ms  # noqa: E402

import fastconv  # noqa: E402
from fastconv import _compiled  # noqa: E402
from fastconv._geometry import conv_geometry  # noqa: E402
from fastconv.algorithms import s2d_winograd  # noqa: E402
from fastconv.reference import polyphase  # noqa: E402

# (x shape, w shape, stride): DCGAN's discriminator layers (the adjoints of dcgan-up8 and
# up16) and alexnet-c1
LAYERS = (((64, 256, 8, 8), (512, 256, 4, 4), 2), ((64, 128, 16, 16), (256, 128, 4, 4), 2),
          ((16, 3, 227, 227), (64, 3, 11, 11), 4))
# (x shape, w shape, stride, padding) for the phase copy: those three layers and others that
# s2d-winograd supports, maps of 4-57 phase columns
COPY_LAYERS = (
    ((64, 256, 8, 8), (512, 256, 4, 4), 2, 1), ((64, 128, 16, 16), (256, 128, 4, 4), 2, 1),
    ((64, 64, 32, 32), (128, 64, 4, 4), 2, 1), ((16, 3, 227, 227), (64, 3, 11, 11), 4, 2),
    ((16, 128, 28, 28), (256, 128, 3, 3), 2, 1), ((1, 512, 14, 14), (512, 512, 3, 3), 2, 1),
    ((32, 8, 7, 7), (96, 8, 3, 3), 2, 1), ((8, 64, 56, 56), (64, 64, 3, 3), 2, 1),
    ((4, 32, 112, 112), (64, 32, 3, 3), 2, 1), ((2, 256, 28, 28), (64, 256, 5, 5), 2, 2))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=15)
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    args = parser.parse_args()
    for x_shape, w_shape, stride in LAYERS:
        window = conv_geometry(x_shape, w_shape, stride, 1)
        w = np.random.default_rng(0).standard_normal(w_shape).astype(args.dtype)
        times = {"numpy": [], "compiled": []}
        for _ in range(args.calls):
            for name, split in (("numpy", polyphase.split_kernels),
                                ("compiled", s2d_winograd.split_kernels)):
                times[name].append(median_ms(lambda: split(w, window), 1, warmup=0))
        alone, before = [], fastconv.get_num_threads()
        for threads in (1, 2):
            fastconv.set_num_threads(threads)
            alone.append(median_ms(lambda: s2d_winograd.split_kernels(w, window), args.calls,
                                   warmup=0))
        fastconv.set_num_threads(before)
        print(f"{str(w_shape):18s} stride {stride}: numpy {np.median(times['numpy']):7.3f}  "
              f"compiled {np.median(times['compiled']):7.3f}  alone on 1 / 2 threads "
              f"{alone[0]:7.3f} / {alone[1]:7.3f} ms", flush=True)
    per_value = []
    for x_shape, w_shape, stride, padding in COPY_LAYERS:
        window = conv_geometry(x_shape, w_shape, stride, padding)
        x = np.random.default_rng(0).standard_normal(x_shape).astype(args.dtype)
        phases = np.empty(s2d_winograd.phase_shape(window), dtype=args.dtype)
        ms = median_ms(lambda: _compiled.im2col.space_to_depth(x, phases, *window.stride,
                                                               *window.padding, 1),
                       args.calls, warmup=0)
        per_value.append(ms * 1e6 / phases.size)
        print(f"phase copy {str(x_shape):18s} {str(w_shape):18s} stride {stride}: {ms:7.3f} ms "
              f"on one thread, {per_value[-1]:.2f} ns a value", flush=True)
    print(f"phase copy: median {np.median(per_value):.2f} ns a value "
          f"({min(per_value):.2f}-{max(per_value):.2f})")


if __name__ == "__main__":
    main()
