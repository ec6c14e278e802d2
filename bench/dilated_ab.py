"""A/B of a dilated 3x3 layer: s2b-winograd and im2col beside the undilated layer of the same
FLOPs on winograd-4x4, alternating in one process, median forward and backward ms:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/dilated_ab.py "(8,256,33,33)" "(256,256,3,3)" 9
"""
import ast
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import fastconv  # noqa: E402

xs, ws = ast.literal_eval(sys.argv[1]), ast.literal_eval(sys.argv[2])
rng = np.random.default_rng(0)
x = rng.standard_normal(xs).astype(np.float32); w = rng.standard_normal(ws).astype(np.float32)
b = np.zeros(ws[0], np.float32)
cases = {"d2-s2b": (2, 2, "s2b-winograd"), "d2-im2col": (2, 2, "im2col"), "d1-w4": (1, 1, "winograd-4x4")}
fw = {k: [] for k in cases}; bw = {k: [] for k in cases}
for rep in range(int(sys.argv[3]) if len(sys.argv) > 3 else 9):
    for k, (pad, dil, alg) in cases.items():
        s = time.perf_counter(); out, c = fastconv.conv2d_forward(x, w, b, 1, pad, dilation=dil, algorithm=alg); fw[k].append(time.perf_counter() - s)
        d = np.ones_like(out)
        s = time.perf_counter(); fastconv.conv2d_backward(d, c); bw[k].append(time.perf_counter() - s)
for k in cases:
    print(f"{k:10s} fwd {np.median(fw[k][1:])*1e3:7.2f}  bwd {np.median(bw[k][1:])*1e3:7.2f}")
