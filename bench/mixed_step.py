"""Time one training step that mixes fastconv's kernels with NumPy matrix products.

A CS231n-style step: conv 3x3 - ReLU - 2x2 max-pool - affine - ReLU - affine, forward and
backward, on a CIFAR-sized batch. The affine layers are NumPy matmuls, so NumPy's BLAS and
fastconv's OpenMP threads take turns, as in a real model. Run it twice to see what a BLAS
thread pool left spinning costs the kernels that follow it:

    python bench/mixed_step.py
    OPENBLAS_THREAD_TIMEOUT=4 python bench/mixed_step.py

(OpenBLAS reads OPENBLAS_THREAD_TIMEOUT once, when it loads: it has to be set before
Python starts.)
"""
import argparse
import statistics
import time

import numpy as np

import fastconv


def make_step(batch, seed=0):
    """A no-argument callable running one forward+backward step; float32 throughout."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, 3, 32, 32), dtype=np.float32)
    conv_w = rng.standard_normal((16, 3, 3, 3), dtype=np.float32) * 0.1
    conv_b = np.zeros(16, dtype=np.float32)
    hidden_w = rng.standard_normal((16 * 16 * 16, 100), dtype=np.float32) * 0.01
    out_w = rng.standard_normal((100, 10), dtype=np.float32) * 0.1

    def step():
        conv, conv_cache = fastconv.conv2d_forward(x, conv_w, conv_b, 1, 1)
        relu = np.maximum(conv, 0)
        pooled, pool_cache = fastconv.max_pool2d_forward(relu, 2, 2)
        flat = pooled.reshape(batch, -1)
        hidden = flat @ hidden_w
        scores = np.maximum(hidden, 0) @ out_w
        dscores = scores - scores.mean(axis=1, keepdims=True)  # a stand-in for the loss gradient
        dhidden = (dscores @ out_w.T) * (hidden > 0)
        grads = [flat.T @ dhidden]
        dpooled = (dhidden @ hidden_w.T).reshape(pooled.shape)
        drelu = fastconv.max_pool2d_backward(dpooled, pool_cache)
        grads += fastconv.conv2d_backward(drelu * (conv > 0), conv_cache)[1:]
        return grads

    return step


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--steps", type=int, default=40, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    step = make_step(args.batch)
    step()  # warm-up
    medians = []
    for _ in range(args.rounds):
        times = []
        for _ in range(args.steps):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        medians.append(statistics.median(times) * 1e3)
    print(f"batch {args.batch}, fastconv threads {fastconv.get_num_threads()}: median step "
          f"per round (ms): {' '.join(f'{m:.2f}' for m in medians)}")


if __name__ == "__main__":
    main()
