"""Time conv calls with their GEMMs split into small-matrix pieces and unsplit.

fastconv splits each GEMM of a conv kernel into pieces that stay on the BLAS's
small-matrix path (see "GEMM pieces" in the README). This script runs the conv shapes of
the benchmark suite both ways in one process, in alternating blocks, and prints the best
time of each (min over rounds of blocks) and their ratio:

    python bench/gemm_pieces.py
    python bench/gemm_pieces.py --threads 1 --dtype float64 --backward

Where the BLAS has no such path (small_gemm_limit() is 0) both columns run the same code.
"""
import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

import fastconv
import fastconv.conv
from fastconv._config import small_gemm_limit
from fastconv.bench.suite import CONV_CASES


def _unsplit(rows, inner):
    return np.zeros(3, dtype=np.intc)


def time_case(case, dtype, backward, rounds, calls):
    """Best milliseconds per call (split, unsplit) for one suite case."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(case.x_shape).astype(dtype)
    w = rng.standard_normal(case.w_shape).astype(dtype)
    b = rng.standard_normal(case.w_shape[0]).astype(dtype)
    out, cache = fastconv.conv2d_forward(x, w, b, case.stride, case.padding)
    dout = rng.standard_normal(out.shape).astype(dtype)

    def call():
        if backward:
            fastconv.conv2d_backward(dout, cache)
        else:
            fastconv.conv2d_forward(x, w, b, case.stride, case.padding)

    split = fastconv.conv._gemm_pieces
    best = {"split": float("inf"), "unsplit": float("inf")}
    try:
        for _ in range(rounds):
            for name, pieces in (("split", split), ("unsplit", _unsplit)):
                fastconv.conv._gemm_pieces = pieces
                time.sleep(0.05)  # let the other block's threads go idle
                call()
                for _ in range(calls):
                    start = time.perf_counter()
                    call()
                    best[name] = min(best[name], time.perf_counter() - start)
    finally:
        fastconv.conv._gemm_pieces = split
    return best["split"] * 1e3, best["unsplit"] * 1e3


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--backward", action="store_true", help="time conv2d_backward")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--calls", type=int, default=3, help="timed calls per block")
    args = parser.parse_args(argv)
    fastconv.set_num_threads(args.threads)
    print(f"small-matrix limit M*N*K <= {small_gemm_limit()}; {args.threads} threads, "
          f"{args.dtype}, {'backward' if args.backward else 'forward'}, "
          f"min over {args.rounds} rounds of {args.calls} calls")
    print(f"{'case':12s} {'split ms':>9s} {'unsplit ms':>11s} {'ratio':>6s}")
    with threadpool_limits(args.threads):
        for case in CONV_CASES:
            if case.full_only:
                continue
            split, unsplit = time_case(case, np.dtype(args.dtype), args.backward,
                                       args.rounds, args.calls)
            print(f"{case.name:12s} {split:9.2f} {unsplit:11.2f} {split / unsplit:6.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
