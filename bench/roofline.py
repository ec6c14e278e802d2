"""Memory-bound pools against the memory roofline: one case per process.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/roofline.py CASE THREADS [torch] [batch=N]

For CASE (a name from fastconv.bench.suite's pooling cases: resnet18-head, resnet50-head,
segnet-unpool-56, ...) this prints the fastconv forward's and forward+backward's median times, the
bytes each must move at least (each input read once, each output written once; an unpooling's
indices as the caller's int64), and the roofline: those bytes at
the best rate the machine gave for a plain pass over an array of the same size, measured in
this process, right before, on the same number of threads. The readers are NumPy's sum (one
thread) and, with `torch` on the command line and PyTorch installed, torch.sum (THREADS
threads, AVX-512 where the CPU has it); the writer is NumPy's fill. Medians of 40 calls after
10. batch=N replaces the case's batch size (e.g. 256: an input past the L3, read from DRAM,
where the suite's own sizes stay in the L3 from one call to the next). docs/pooling.md ("Against the memory roofline") records what this measured.
"""
import dataclasses
import sys

import numpy as np
from _timing import median_ms

import fastconv
from fastconv.bench import suite


def _case(name):
    for case in suite.POOL_OPTION_CASES:
        if case.name == name:
            return case
    raise SystemExit(f"no pooling case {name!r}")


def _inputs(case, rng):
    """x (and for unpooling, indices from max-pooling an input of the unpooled size)."""
    if case.op != "unpool":
        return rng.standard_normal(case.x_shape).astype(np.float32), None
    source = rng.standard_normal(case.out_shape).astype(np.float32)
    x, indices, _ = fastconv.max_pool2d_forward(source, case.kernel_size, case.stride,
                                                case.padding, return_indices=True)
    return x, indices


def _forward(case, x, indices):
    if case.op == "unpool":
        return lambda: fastconv.max_unpool2d_forward(x, indices, case.kernel_size, case.stride,
                                                     case.padding)
    if case.op == "adaptive_avg":
        return lambda: fastconv.adaptive_avg_pool2d_forward(x, case.keywords["output_size"])
    raise SystemExit(f"{case.name}: only global/adaptive average pooling and unpooling")


def _read_rates(a, threads, with_torch):
    """Bytes per second of the fastest plain read of `a` this process finds."""
    rates = {"numpy sum": a.nbytes / (median_ms(lambda: np.add.reduce(a, axis=None)) / 1e3)}
    if with_torch:
        import torch
        torch.set_num_threads(threads)
        t = torch.from_numpy(a)
        rates["torch sum"] = a.nbytes / (median_ms(lambda: t.sum()) / 1e3)
    return rates


def _backward(case):
    if case.op == "unpool":
        return fastconv.max_unpool2d_backward
    return fastconv.adaptive_avg_pool2d_backward


def main(argv):
    name, threads, with_torch = argv[0], int(argv[1]), "torch" in argv[2:]
    fastconv.set_num_threads(threads)
    case = _case(name)
    for option in argv[2:]:
        if option.startswith("batch="):
            case = dataclasses.replace(case, x_shape=(int(option[6:]),) + case.x_shape[1:])
    x, indices = _inputs(case, np.random.default_rng(0))
    forward, backward = _forward(case, x, indices), _backward(case)
    out = forward()[0]
    dout = np.random.default_rng(2).standard_normal(out.shape).astype(np.float32)
    index_bytes = 0 if indices is None else indices.nbytes
    # the least traffic: the forward reads x (and the indices) and writes out once; the
    # backward reads dout (and the indices) and writes dx once
    passes = {"fwd": (x.nbytes + index_bytes, out.nbytes),
              "fwd+bwd": (x.nbytes + out.nbytes + 2 * index_bytes, out.nbytes + x.nbytes)}
    biggest = max(read for read, _ in passes.values())
    reads = _read_rates(np.random.default_rng(1).standard_normal(biggest // 4).astype(np.float32),
                        threads, with_torch)
    target = np.empty(max(out.nbytes, x.nbytes) // 4, np.float32)
    write_rate = target.nbytes / (median_ms(lambda: target.fill(1.0)) / 1e3)
    read_rate = max(reads.values())

    def both():
        backward(dout, forward()[-1])

    times = {"fwd": median_ms(forward), "fwd+bwd": median_ms(both)}
    rates = ", ".join(f"{k} {v / 1e9:.1f} GB/s" for k, v in reads.items())
    print(f"{name} x={case.x_shape} threads={threads}; {rates}, numpy fill "
          f"{write_rate / 1e9:.1f} GB/s")
    for label, (read, written) in passes.items():
        roofline_ms = 1e3 * (read / read_rate + written / write_rate)
        print(f"  {label}: {times[label]:.3f} ms; reads {read / 1e6:.1f} MB, writes "
              f"{written / 1e6:.1f} MB; roofline {roofline_ms:.3f} ms; fastconv / roofline "
              f"{times[label] / roofline_ms:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
