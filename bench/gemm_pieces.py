"""Time conv calls with their GEMMs split into small-matrix pieces and unsplit.

fastconv splits each GEMM of a conv kernel into pieces that stay on the BLAS's
small-matrix path (see "GEMM pieces" in docs/performance.md). This script runs the conv
shapes of the benchmark suite both ways in one process, in alternating blocks, and prints the best
time of each (min over rounds of blocks) and their ratio:

    python bench/gemm_pieces.py
    python bench/gemm_pieces.py --threads 1 --dtype float64 --backward

Where the BLAS has no such path (small_gemm_limit() is 0) both columns run the same code.

With --weight-gradient it times conv2d_backward with the im2col weight gradient taken as
cols @ dout^T (a band of dout transposed, on the small-matrix path; fastconv's choice where
BLAS would pack dout @ cols^T and dW stays in cache) against dout @ cols^T, both with GEMM
pieces:

    python bench/gemm_pieces.py --weight-gradient --dtype float64
"""
import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

import fastconv
from fastconv import _blas
from fastconv._blas import small_gemm_limit
from fastconv.algorithms import im2col_gemm
from fastconv.bench.suite import CONV_CASES, ConvCase, select


def _unsplit(rows, inner):
    return np.zeros(3, dtype=np.intc)


def time_case(case, dtype, backward, rounds, calls, module, attribute, variants,
              algorithm="auto"):
    """Best milliseconds per call of one suite case with module.<attribute> set to each of
    the two variants in turn."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(case.x_shape).astype(dtype)
    w = rng.standard_normal(case.w_shape).astype(dtype)
    b = rng.standard_normal(case.w_shape[0]).astype(dtype)
    out, cache = fastconv.conv2d_forward(x, w, b, case.stride, case.padding, groups=case.groups,
                                         algorithm=algorithm)
    dout = rng.standard_normal(out.shape).astype(dtype)

    def call():
        if backward:
            fastconv.conv2d_backward(dout, cache)
        else:
            fastconv.conv2d_forward(x, w, b, case.stride, case.padding, groups=case.groups,
                                    algorithm=algorithm)

    saved = getattr(module, attribute)
    best = [float("inf")] * len(variants)
    try:
        for _ in range(rounds):
            for index, variant in enumerate(variants):
                setattr(module, attribute, variant)
                # im2col's kept plan was made under the other variant
                im2col_gemm.forget_recipes()
                time.sleep(0.05)  # let the other block's threads go idle
                call()
                for _ in range(calls):
                    start = time.perf_counter()
                    call()
                    best[index] = min(best[index], time.perf_counter() - start)
    finally:
        setattr(module, attribute, saved)
    return [t * 1e3 for t in best]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--backward", action="store_true", help="time conv2d_backward")
    parser.add_argument("--weight-gradient", action="store_true",
                        help="time conv2d_backward, dW transposed against not")
    parser.add_argument("--only", default=None,
                        help="cases or families as python -m fastconv.bench --only takes "
                             "(conv layers only; default: the public suite's convs)")
    parser.add_argument("--algorithm", default="auto", help="conv2d_forward's algorithm")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--calls", type=int, default=3, help="timed calls per block")
    args = parser.parse_args(argv)
    fastconv.set_num_threads(args.threads)
    if args.weight_gradient:
        module, attribute = im2col_gemm, "transposed_weight_gradient"
        names = ("cols@dout^T", "dout@cols^T")
        variants = (lambda *_: True, lambda *_: False)
    else:
        module, attribute, names = _blas, "gemm_pieces", ("split", "unsplit")
        variants = (_blas.gemm_pieces, _unsplit)
    backward = args.backward or args.weight_gradient
    print(f"small-matrix limit M*N*K <= {small_gemm_limit()}; {args.threads} threads, "
          f"{args.dtype}, {'backward' if backward else 'forward'}, "
          f"min over {args.rounds} rounds of {args.calls} calls")
    print(f"{'case':24s} {names[0] + ' ms':>14s} {names[1] + ' ms':>14s} {'ratio':>6s}")
    with threadpool_limits(args.threads):
        cases = [case for case in CONV_CASES if not case.full_only]
        if args.only:
            cases = [case for case in select(args.only) if isinstance(case, ConvCase)]
        for case in cases:
            first, second = time_case(case, np.dtype(args.dtype), backward, args.rounds,
                                      args.calls, module, attribute, variants, args.algorithm)
            print(f"{case.name:24s} {first:14.2f} {second:14.2f} {first / second:6.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
