"""The im2col copy alone: microseconds per call of the compiled im2col kernel into a kept
buffer (no allocation, no GEMM), float32, one thread; run it for two builds, alternating, to
compare.

    PYTHONPATH=/path/to/build python bench/im2col_copy.py [CALLS]

prints, per input, the fastest and the median of CALLS calls (default 1000) after 50 untimed
ones. docs/performance.md ("im2col at stride 2: the zero-padding path") records what this
measured.
"""
import importlib
import sys

import numpy as np
from _timing import fastest_and_median_ms

from fastconv import _compiled

# the module, not the function fastconv.im2col that the package exports under the same name
_im2col = importlib.import_module("fastconv.im2col")

# (input shape, kernel, stride, padding)
CASES = {
    "cs231n-nb 3x3 s2": ((100, 3, 31, 31), 3, 2, 1),
    "r18 l2.0.conv1 3x3 s2": ((1, 64, 56, 56), 3, 2, 1),
    "r18 l2.0.down 1x1 s2": ((1, 64, 56, 56), 1, 2, 0),
    "cifar 3x3 s1": ((16, 3, 32, 32), 3, 1, 1),
}


def time_case(shape, kernel, stride, padding, calls):
    """(fastest, median) us of one im2col of a random input of this shape."""
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    window = _im2col.window_inputs(x, kernel, stride, padding)
    cols = np.empty((window.channels * kernel * kernel,
                     window.batch * window.out_height * window.out_width), np.float32)
    kernel_window = _im2col._kernel_window(window)
    x5 = x[:, :, None]  # the kernels take 5-D (N, C, D, H, W) views

    def call():
        _compiled.im2col.im2col(x5, cols, kernel_window, 1)

    fastest, median = fastest_and_median_ms(call, calls, warmup=50)
    return fastest * 1e3, median * 1e3


def main(argv):
    calls = int(argv[0]) if argv else 1000
    for name, case in CASES.items():
        fastest, median = time_case(*case, calls)
        print(f"{name:24s} min {fastest:8.1f} us  median {median:8.1f} us")


if __name__ == "__main__":
    main(sys.argv[1:])
