"""Timing: warm-up, implementations in rotating blocks, medians; GEMM rate, peak memory, threads."""
import gc
import os
import statistics
import sys
import time
import tracemalloc
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from . import operations


@dataclass(frozen=True)
class Settings:
    """How long to measure.

    blocks : rounds in which every implementation runs one block, in rotating order.
    block_seconds : an implementation's block holds as many calls as fit in this time
        (by its warm-up call), at least 1 and at most `max_calls_per_block`.
    reference_budget : seconds one reference call may take; slower operations are
        reported as skipped, never extrapolated.
    settle_seconds : pause before each block. A thread pool that has just worked keeps its
        threads spinning for a while: NumPy's OpenBLAS (which the reference uses) spins
        about 0.1 s after a multi-threaded call on this machine, taking a core from
        whatever runs next. The pause lets it go idle, so no block pays for the one before.
    block_warmup_seconds : untimed calls at the start of each block, about this long (at
        least one): after the pause, the first calls of an implementation whose threads
        went to sleep run slowly while they wake up.
    process_warmup_calls, process_warmup_seconds : with --isolate, a worker process first
        makes this many untimed calls (fewer if they take longer than process_warmup_seconds
        together). The first calls of a fresh process page-fault the new memory of their
        outputs until glibc's malloc has adapted its mmap threshold to their size: on
        inception-avg (two 15 MB arrays per forward+backward) fastconv's first six calls
        took 30 ms each, the rest 10.5 ms (docs/performance.md, "Warm-up in worker
        processes"). A training loop pays that once; so does each library
        here, before its timed calls.
    """

    blocks: int
    block_seconds: float
    max_calls_per_block: int
    reference_budget: float
    gemm_repeats: int
    settle_seconds: float = 0.0
    block_warmup_seconds: float = 0.0
    process_warmup_calls: int = 0
    process_warmup_seconds: float = 0.0


QUICK = Settings(blocks=3, block_seconds=0.08, max_calls_per_block=10, reference_budget=2.0, gemm_repeats=5,
                 settle_seconds=0.15, block_warmup_seconds=0.02, process_warmup_calls=8,
                 process_warmup_seconds=1.0)
FULL = Settings(blocks=7, block_seconds=0.25, max_calls_per_block=50, reference_budget=10.0, gemm_repeats=11,
                settle_seconds=0.15, block_warmup_seconds=0.02, process_warmup_calls=8,
                process_warmup_seconds=2.0)
TINY = Settings(blocks=2, block_seconds=0.002, max_calls_per_block=2, reference_budget=2.0, gemm_repeats=2)


def usable_cores():
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@contextmanager
def thread_limits(threads, torch=None):
    """Run the body with fastconv, every loaded BLAS and torch all set to `threads` threads.

    Import torch (and fastconv's kernels, which load SciPy's BLAS) before entering:
    threadpoolctl only limits libraries already loaded.
    """
    import fastconv
    from threadpoolctl import threadpool_limits

    previous_fastconv = fastconv.get_num_threads()
    previous_torch = None if torch is None else torch.get_num_threads()
    fastconv.set_num_threads(threads)
    if torch is not None:
        torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads, user_api="blas"):
            yield
    finally:
        fastconv.set_num_threads(previous_fastconv)
        if torch is not None:
            torch.set_num_threads(previous_torch)


def _timed(function):
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


@contextmanager
def _gc_paused():
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def gemm_rate(dtype, repeats, size=1024, seed=0):
    """GFLOP/s of numpy.matmul on two (size, size) matrices of `dtype`: median of `repeats`
    timed products after two warm-up ones. Run inside thread_limits()."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((size, size), dtype=np.dtype(dtype))
    b = rng.standard_normal((size, size), dtype=np.dtype(dtype))
    out = np.empty_like(a)

    def product():
        np.matmul(a, b, out=out)

    with _gc_paused():
        product()
        product()
        seconds = statistics.median(_timed(product) for _ in range(repeats))
    return 2 * size**3 / seconds / 1e9


def traced_memory(function):
    """(peak, held) bytes of one call of `function`, as traced by tracemalloc (NumPy reports
    its array memory to it): peak = the most allocated at once during the call above what was
    allocated before it, outputs included; held = what its result still holds afterwards."""
    started_here = not tracemalloc.is_tracing()
    if started_here:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        result = function()
        held, peak = tracemalloc.get_traced_memory()
        del result
    finally:
        if started_here:
            tracemalloc.stop()
    return peak - before, held - before


@dataclass
class Timing:
    """Per-call times (seconds) of one implementation, or why it was not timed."""

    times: list = None
    skipped: str = None

    @property
    def median(self):
        return statistics.median(self.times) if self.times else None


def _calls_filling(seconds, estimate, settings):
    """Calls of about `estimate` seconds each that fill `seconds`: at least 1, at most
    settings.max_calls_per_block."""
    return int(min(max(1, seconds // max(estimate, 1e-9)), settings.max_calls_per_block))


def time_alternating(calls, settings, skip=None):
    """Time the callables in `calls` ({name: callable}) against each other.

    Each implementation is warmed up first (the reference's first call also decides
    whether it fits `settings.reference_budget`). Then `settings.blocks` rounds run, each
    giving every implementation one block of consecutive calls, in an order rotated by
    one each round (A B C, B C A, C A B, ...). A thread pool that has just finished keeps
    spinning for a while and slows whatever runs next: each block starts after a pause of
    `settle_seconds` for it to go idle, then makes untimed calls for about
    `block_warmup_seconds`, and the rotation spreads what remains over all implementations.
    Every call is timed on its own; the median is taken per implementation.

    skip : {name: reason} for implementations not to run at all.
    Returns {name: Timing}.
    """
    skip = dict(skip or {})
    timings = {name: Timing(skipped=reason) for name, reason in skip.items() if name in calls}
    calls_per_block = {}
    warmup_calls = {}
    with _gc_paused():
        for name, function in calls.items():
            if name in skip:
                continue
            first = _timed(function)
            if name == "reference" and first > settings.reference_budget:
                timings[name] = Timing(
                    skipped=f"skipped: too slow (one call took {first:.1f} s, budget "
                    f"{settings.reference_budget:g} s)"
                )
                continue
            # the reference, when slow, needs no second warm-up; every other call is timed
            # again once warm, and the faster of the two sets the block's length: a cold first
            # call or a stall of the machine would otherwise leave one call per block (torch's
            # cs231n-nb forward+backward once got three samples, two of them 4x its usual time)
            if name == "reference" and first > settings.block_seconds:
                estimate = first
            else:
                estimate = min(first, _timed(function))
            calls_per_block[name] = _calls_filling(settings.block_seconds, estimate, settings)
            warmup_calls[name] = 0 if not settings.block_warmup_seconds else _calls_filling(
                settings.block_warmup_seconds, estimate, settings)
        order = list(calls_per_block)
        samples = {name: [] for name in order}
        for block in range(settings.blocks):
            shift = block % len(order) if order else 0
            for name in order[shift:] + order[:shift]:
                function = calls[name]
                if settings.settle_seconds:
                    time.sleep(settings.settle_seconds)
                for _ in range(warmup_calls[name]):
                    function()
                samples[name].extend(_timed(function) for _ in range(calls_per_block[name]))
    for name in order:
        timings[name] = Timing(times=samples[name])
    return timings


class Progress:
    """A one-line progress bar on stderr (one line per step when stderr is not a terminal)."""

    def __init__(self, total, stream=None, width=24):
        self.total = total
        self.done = 0
        self.stream = sys.stderr if stream is None else stream
        self.width = width
        self.interactive = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.started = time.perf_counter()

    def show(self, label):
        filled = self.width * self.done // max(self.total, 1)
        bar = "#" * filled + "." * (self.width - filled)
        elapsed = time.perf_counter() - self.started
        text = f"[{bar}] {self.done}/{self.total} {elapsed:5.0f} s  {label}"
        if self.interactive:
            self.stream.write("\r\x1b[K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def advance(self):
        self.done += 1

    def close(self):
        if self.interactive:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
        else:
            self.show("done")


def _median_ms(timing):
    return None if timing is None or timing.median is None else timing.median * 1e3


def _ratio(numerator, denominator):
    if numerator is None or denominator is None:
        return None
    return numerator / denominator


def measure_case(case, pass_name, inputs, settings, torch=None, reference_skip=None):
    """Time one operation of one case with every implementation; return its result row (a dict)."""
    calls = operations.implementations(case, pass_name, inputs, torch)
    skip = {} if reference_skip is None else {"reference": reference_skip}
    timings = time_alternating(calls, settings, skip)
    peak, held = traced_memory(calls["fastconv"])
    return case_row(case, pass_name, str(inputs["x"].dtype), timings, peak, held)


def case_row(case, pass_name, dtype, timings, peak, held):
    """The result row of one operation from its {implementation: Timing} and fastconv's
    traced (peak, held) bytes."""
    reference_ms = _median_ms(timings["reference"])
    fastconv_ms = _median_ms(timings["fastconv"])
    torch_ms = _median_ms(timings.get("torch"))
    work = operations.gflop(case, pass_name)
    achieved = None if work is None else work / (fastconv_ms / 1e3)
    row = {
        "operation": operations.operation_name(case, pass_name),
        "family": case.family,
        "pass": pass_name,
        "case": case.name,
        "shape": case.describe(),
        "x_shape": list(case.x_shape),
        "dtype": dtype,
        "gflop": work,
        "reference_ms": reference_ms,
        "reference_status": timings["reference"].skipped or "ok",
        "fastconv_ms": fastconv_ms,
        "torch_ms": torch_ms,
        "speedup_vs_reference": _ratio(reference_ms, fastconv_ms),
        "fastconv_over_torch": _ratio(fastconv_ms, torch_ms),
        "gflop_per_s": achieved,
        "percent_of_gemm": None,  # set by add_gemm_share() once the GEMM rate is known
        "fastconv_peak_bytes": peak,
        "fastconv_result_bytes": held,
        "times_ms": {
            name: [seconds * 1e3 for seconds in timing.times]
            for name, timing in timings.items() if timing.times
        },
    }
    if case.kind == "conv":
        row.update(w_shape=list(case.w_shape), stride=case.stride, padding=case.padding)
    elif case.kind == "conv-kind":
        row.update(w_shape=list(case.w_shape), stride=case.stride, padding=case.padding,
                   dilation=case.dilation, groups=case.groups, output_padding=case.output_padding)
    else:
        row.update(kernel_size=case.kernel_size, stride=case.stride, padding=case.padding)
    return row


def run_suite(cases, *, dtype, settings, torch=None, progress=None, seed=0, after_case=None):
    """Rows for every case x pass, forward first. Run inside thread_limits().

    after_case : called with no arguments after each case (e.g. to sample the GEMM rate).
    """
    rows = []
    for case in cases:
        inputs = operations.make_inputs(case, dtype, seed)
        reference_skip = None
        for pass_name in operations.PASSES:  # forward first
            if progress is not None:
                progress.show(f"{operations.operation_name(case, pass_name)} {case.name}")
            row = measure_case(case, pass_name, inputs, settings, torch, reference_skip)
            if row["reference_status"] != "ok":
                # forward+backward includes a forward: if that alone was over budget, so is this
                reference_skip = "skipped: too slow (its forward alone was over budget)"
            rows.append(row)
            if progress is not None:
                progress.advance()
        if after_case is not None:
            after_case()
    return rows


def add_gemm_share(rows, gemm_gflops):
    """Set each row's percent_of_gemm: its GFLOP/s as a share of the machine's GEMM rate."""
    for row in rows:
        if row["gflop_per_s"] is not None:
            row["percent_of_gemm"] = 100 * row["gflop_per_s"] / gemm_gflops
