"""One conv layer's forward by one algorithm: min and median ms of `conv2d_forward` with a
bias, float32, for A/B runs of two builds (run each build's processes in turn).

    PYTHONPATH=/path/to/build python bench/conv_call.py THREADS ALGORITHM LAYER [CALLS]

LAYER is "(x shape, w shape, stride, padding)", e.g. "((16,256,14,14),(512,256,1,1),2,0)";
CALLS defaults to 200, after 20 untimed ones. docs/performance.md ("Images side by side")
records what this measured.
"""
import ast
import sys

import numpy as np
from _timing import fastest_and_median_ms

import fastconv


def time_layer(threads, algorithm, layer, calls):
    """(fastest, median) ms of the layer's forward."""
    x_shape, w_shape, stride, padding = layer
    fastconv.set_num_threads(threads)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape, dtype=np.float32)
    w = rng.standard_normal(w_shape, dtype=np.float32)
    b = rng.standard_normal(w_shape[0], dtype=np.float32)

    def call():
        fastconv.conv2d_forward(x, w, b, stride, padding, algorithm=algorithm)

    return fastest_and_median_ms(call, calls, warmup=20)


def main(argv):
    threads, algorithm, layer = int(argv[0]), argv[1], ast.literal_eval(argv[2])
    calls = int(argv[3]) if len(argv) > 3 else 200
    fastest, median = time_layer(threads, algorithm, layer, calls)
    print(f"min {fastest:.4f} med {median:.4f} ms")


if __name__ == "__main__":
    main(sys.argv[1:])
