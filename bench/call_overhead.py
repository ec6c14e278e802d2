"""The fixed cost of a call: microseconds per call of this checkout's build on problems too
small for the arithmetic to matter; run it for two builds, alternating, to compare.

    PYTHONPATH=/path/to/build python bench/call_overhead.py [THREADS]

prints one line per call: the median of 2000 calls after 200 untimed ones, float32, on one
thread unless THREADS says otherwise. docs/performance.md ("Per-call overhead") records what
this measured.
"""
import sys

import numpy as np
from _timing import median_ms

import fastconv
from fastconv.layers import BatchNorm2d, Conv2d, ReLU, Sequential


def main(argv):
    fastconv.set_num_threads(int(argv[0]) if argv else 1)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 8, 4, 4)).astype(np.float32)
    w = rng.standard_normal((8, 8, 3, 3)).astype(np.float32)
    conv = Conv2d(8, 8, 3, padding=1, rng=rng)
    net = Sequential([Conv2d(8, 8, 3, padding=1, bias=False, rng=rng), BatchNorm2d(8), ReLU()]).eval()
    out, cache = fastconv.conv2d_forward(x, w, None, 1, 1)
    dout = np.ones_like(out)
    calls = {
        "conv2d_forward (1, 8, 4, 4) 3x3": lambda: fastconv.conv2d_forward(x, w, None, 1, 1),
        "conv2d_backward": lambda: fastconv.conv2d_backward(dout, cache),
        "Conv2d.infer": lambda: conv.infer(x),
        "Sequential conv-bn-relu infer": lambda: net.infer(x),
        "max_pool2d_forward 2x2/2": lambda: fastconv.max_pool2d_forward(x, 2, 2),
    }
    for name, call in calls.items():
        print(f"{name:34s} {median_ms(call, calls=2000, warmup=200) * 1e3:7.1f} us")


if __name__ == "__main__":
    main(sys.argv[1:])
