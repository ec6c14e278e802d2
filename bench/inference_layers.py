"""ResNet-18's distinct conv layers at batch 1 as inference (conv_inference: Winograd keeps
its weight transform between calls), every algorithm that supports each, beside the one
"auto" plans for the inference pass; one process, the algorithms of a layer in rotating
rounds (a relative comparison among fastconv's own algorithms).

    PYTHONPATH=/path/to/build python bench/inference_layers.py [THREADS]

prints per layer: auto's choice and each algorithm's median ms (docs/performance.md,
"Transformed weights kept for inference").
"""
import sys

import numpy as np
from _timing import median_ms

import fastconv
from fastconv import planner
from fastconv._geometry import conv_geometry
from fastconv.conv import conv_inference

LAYERS = [  # name, x shape, w shape, stride, padding (ResNet-18 at 224x224, batch 1)
    ("conv1", (1, 3, 224, 224), (64, 3, 7, 7), 2, 3),
    ("l1", (1, 64, 56, 56), (64, 64, 3, 3), 1, 1),
    ("l2.0.conv1", (1, 64, 56, 56), (128, 64, 3, 3), 2, 1),
    ("l2.conv2", (1, 128, 28, 28), (128, 128, 3, 3), 1, 1),
    ("l3.0.conv1", (1, 128, 28, 28), (256, 128, 3, 3), 2, 1),
    ("l3.conv2", (1, 256, 14, 14), (256, 256, 3, 3), 1, 1),
    ("l4.0.conv1", (1, 256, 14, 14), (512, 256, 3, 3), 2, 1),
    ("l4.conv2", (1, 512, 7, 7), (512, 512, 3, 3), 1, 1),
]


def main(argv):
    fastconv.set_num_threads(int(argv[0]) if argv else 2)
    rng = np.random.default_rng(0)
    for name, x_shape, w_shape, stride, padding in LAYERS:
        x = rng.standard_normal(x_shape).astype(np.float32)
        w = rng.standard_normal(w_shape).astype(np.float32) * 0.05
        geometry = conv_geometry(x_shape, w_shape, stride, padding)
        auto = planner.choose(geometry, np.float32, "auto", "inference").NAME
        candidates = fastconv.available_algorithms(geometry)
        times = {a: [] for a in candidates}
        for _ in range(3):
            for algorithm in candidates:
                def call(x=x, w=w, stride=stride, padding=padding, algorithm=algorithm):
                    return conv_inference(2, x, w, None, stride, padding, algorithm=algorithm)

                times[algorithm].append(median_ms(call, calls=15, warmup=3))
        cells = ", ".join(f"{a} {min(t):.2f}" for a, t in times.items())
        print(f"{name:11s} auto {auto:13s} {cells}")


if __name__ == "__main__":
    main(sys.argv[1:])
