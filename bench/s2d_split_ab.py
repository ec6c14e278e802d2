"""A/B of s2d-winograd's kernel split in a whole call: dcgan-up8's backward (its dx is the
adjoint convolution's forward, which auto runs by s2d-winograd), with the compiled split or
its NumPy twin (fastconv.reference.polyphase), one variant per process:

    for r in 1 2 3; do for v in numpy compiled; do
        env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/s2d_split_ab.py $v; done; done

Prints the median and min of 11 timed calls after one (docs/performance.md, "The kernels'
split, compiled").
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _timing import fastest_and_median_ms  # noqa: E402

import fastconv  # noqa: E402
from fastconv.algorithms import s2d_winograd  # noqa: E402
from fastconv.reference import polyphase  # noqa: E402


def main():
    variant = sys.argv[1] if len(sys.argv) > 1 else "compiled"
    if variant not in ("numpy", "compiled"):
        raise SystemExit("usage: s2d_split_ab.py numpy|compiled")
    if variant == "numpy":
        s2d_winograd.split_kernels = polyphase.split_kernels
        s2d_winograd.merge_kernels = polyphase.merge_kernels
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 512, 4, 4)).astype(np.float32)
    w = (rng.standard_normal((512, 256, 4, 4)) * 0.05).astype(np.float32)
    out, cache = fastconv.conv_transpose2d_forward(x, w, None, 2, 1)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    fastest, median = fastest_and_median_ms(lambda: fastconv.conv_transpose2d_backward(dout, cache),
                                            calls=11, warmup=1)
    print(f"{variant}: dcgan-up8 backward median {median:.1f} min {fastest:.1f} ms")


if __name__ == "__main__":
    main()
