"""Time one training step that mixes fastconv's kernels with matrix products.

A CS231n-style step: conv 3x3 - ReLU - 2x2 max-pool - affine - ReLU - affine, forward and
backward, on a CIFAR-sized batch. With --linear numpy (the default) the affine layers are
NumPy matmuls, so NumPy's BLAS and fastconv's OpenMP threads take turns, as in a model that
mixes them; with --linear fastconv they are fastconv.linear_forward/backward, which run BLAS
on fastconv's own threads with BLAS's pool held to one thread, as the convolutions do.
Compare the two (--linear both alternates them in one process), and see what a BLAS thread
pool left spinning costs the kernels that follow it:

    python bench/mixed_step.py --linear both
    OPENBLAS_THREAD_TIMEOUT=4 python bench/mixed_step.py

(OpenBLAS reads OPENBLAS_THREAD_TIMEOUT once, when it loads: it has to be set before
Python starts.)
"""
import argparse
import statistics
import time

import numpy as np

import fastconv


def make_step(batch, seed=0, linear="numpy"):
    """A no-argument callable running one forward+backward step; float32 throughout.

    linear : "numpy" (x @ w matmuls) or "fastconv" (fastconv.linear_forward/backward).
    """
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, 3, 32, 32), dtype=np.float32)
    conv_w = rng.standard_normal((16, 3, 3, 3), dtype=np.float32) * 0.1
    conv_b = np.zeros(16, dtype=np.float32)
    hidden_w = rng.standard_normal((16 * 16 * 16, 100), dtype=np.float32) * 0.01
    out_w = rng.standard_normal((100, 10), dtype=np.float32) * 0.1
    # fastconv's linear layers take w as (out_features, in_features)
    hidden_wt, out_wt = np.ascontiguousarray(hidden_w.T), np.ascontiguousarray(out_w.T)

    def affine_numpy(a, w, _):
        return a @ w, (a, w)

    def affine_back_numpy(dout, cache):
        a, w = cache
        return dout @ w.T, a.T @ dout

    def affine_fastconv(a, _, wt):
        return fastconv.linear_forward(a, wt)

    def affine_back_fastconv(dout, cache):
        dx, dw, _ = fastconv.linear_backward(dout, cache)
        return dx, dw

    affine, affine_back = {"numpy": (affine_numpy, affine_back_numpy),
                           "fastconv": (affine_fastconv, affine_back_fastconv)}[linear]

    def step():
        conv, conv_cache = fastconv.conv2d_forward(x, conv_w, conv_b, 1, 1)
        relu = np.maximum(conv, 0)
        pooled, pool_cache = fastconv.max_pool2d_forward(relu, 2, 2)
        flat = pooled.reshape(batch, -1)
        hidden, hidden_cache = affine(flat, hidden_w, hidden_wt)
        scores, scores_cache = affine(np.maximum(hidden, 0), out_w, out_wt)
        dscores = scores - scores.mean(axis=1, keepdims=True)  # a stand-in for the loss gradient
        dhidden_relu, dout_w = affine_back(dscores, scores_cache)
        dhidden = dhidden_relu * (hidden > 0)
        dflat, dhidden_w = affine_back(dhidden, hidden_cache)
        drelu = fastconv.max_pool2d_backward(dflat.reshape(pooled.shape), pool_cache)
        return [dhidden_w, dout_w] + list(fastconv.conv2d_backward(drelu * (conv > 0), conv_cache)[1:])

    return step


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--steps", type=int, default=40, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--linear", choices=("numpy", "fastconv", "both"), default="numpy",
                        help="the affine layers' products (both: alternate the two each round)")
    args = parser.parse_args(argv)
    ways = ("numpy", "fastconv") if args.linear == "both" else (args.linear,)
    steps = {way: make_step(args.batch, linear=way) for way in ways}
    for step in steps.values():
        step()  # warm-up
    medians = {way: [] for way in ways}
    for _ in range(args.rounds):
        for way, step in steps.items():
            times = []
            for _ in range(args.steps):
                start = time.perf_counter()
                step()
                times.append(time.perf_counter() - start)
            medians[way].append(statistics.median(times) * 1e3)
    for way in ways:
        print(f"batch {args.batch}, fastconv threads {fastconv.get_num_threads()}, linear {way}: median "
              f"step per round (ms): {' '.join(f'{m:.2f}' for m in medians[way])}")


if __name__ == "__main__":
    main()
