"""Leaks and threads: flat memory over many calls, identical results from concurrent calls, GIL released.

- RSS: a child process calls each op 10,000 times on tiny inputs and reports how much its
  resident memory grew after a warm-up; a deliberate leak in the same child shows the
  measurement would catch one.
- Threads: calls from several Python threads at once give bit-identical results to the
  same calls made one after another (the kernels are deterministic for a fixed thread count).
- GIL: while one thread is inside a compiled op, another thread runs Python code. With the
  interpreter's switch interval raised to 1 s, a call that held the GIL would let the other
  thread run only when it returned; a control call in pure Python shows exactly that.
"""
import json
import math
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import fastconv

# ---- RSS stays flat --------------------------------------------------------------------

CALLS = 10_000
WARMUP = 1_000
# Allocator noise stays well below this; a leak of one output array per call (each >= 1 KiB
# here, plus its header) would be over 10 MiB.
RSS_GROWTH_LIMIT = 2 * 2**20

RSS_CHILD = """
import gc, json, os
import numpy as np
import fastconv

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

rng = np.random.default_rng(0)
x = rng.standard_normal((2, 4, 8, 8)).astype(np.float32)          # 2 KiB
w = rng.standard_normal((4, 4, 3, 3)).astype(np.float32)
w1 = rng.standard_normal((4, 4, 1, 1)).astype(np.float32)
b = rng.standard_normal(4).astype(np.float32)
out, conv_cache = fastconv.conv2d_forward(x, w, b, 1, 1)
out1, conv1_cache = fastconv.conv2d_forward(x, w1, b)
x16 = rng.standard_normal((1, 16, 6, 6))
w16 = rng.standard_normal((16, 16, 3, 3))
out16, winograd_cache = fastconv.conv2d_forward(x16, w16, None, 1, 1, algorithm="winograd")
cols = fastconv.im2col(x, 3, 1, 1)
pooled, max_cache = fastconv.max_pool2d_forward(x, 2)
_, avg_cache = fastconv.avg_pool2d_forward(x, 3, 1, 1)

def bad_call():
    try:
        fastconv.conv2d_forward(x, w[:, :2], b)
    except ValueError:
        pass

ops = {{
    "im2col": lambda: fastconv.im2col(x, 3, 1, 1),
    "col2im": lambda: fastconv.col2im(cols, x.shape, 3, 1, 1),
    "conv2d_forward im2col": lambda: fastconv.conv2d_forward(x, w, b, 1, 1),
    "conv2d_backward im2col": lambda: fastconv.conv2d_backward(out, conv_cache),
    "conv2d_forward gemm-1x1": lambda: fastconv.conv2d_forward(x, w1, b),
    "conv2d_backward gemm-1x1": lambda: fastconv.conv2d_backward(out1, conv1_cache),
    "conv2d_forward winograd": lambda: fastconv.conv2d_forward(x16, w16, None, 1, 1, algorithm="winograd"),
    "conv2d_backward winograd": lambda: fastconv.conv2d_backward(out16, winograd_cache),
    "max_pool2d_forward": lambda: fastconv.max_pool2d_forward(x, 2),
    "max_pool2d_backward": lambda: fastconv.max_pool2d_backward(pooled, max_cache),
    "avg_pool2d_forward": lambda: fastconv.avg_pool2d_forward(x, 3, 1, 1),
    "avg_pool2d_backward": lambda: fastconv.avg_pool2d_backward(x, avg_cache),
    "rejected call (ValueError)": bad_call,
}}
growth = {{}}
for name, call in ops.items():
    for _ in range({warmup}):
        call()
    gc.collect()
    before = rss()
    for _ in range({calls}):
        call()
    gc.collect()
    growth[name] = rss() - before

# the control: the same measurement around a loop that keeps every output
kept = []
before = rss()
for _ in range({calls}):
    kept.append(fastconv.conv2d_forward(x, w, b, 1, 1)[0])
growth["control: keeping every output"] = rss() - before
print("@@" + json.dumps(growth))
"""


@pytest.fixture(scope="module")
def rss_growth(run_python):
    process = run_python(RSS_CHILD.format(calls=CALLS, warmup=WARMUP), timeout=600)
    assert process.returncode == 0, process.stderr[-3000:]
    return json.loads(process.stdout.split("@@")[-1])


def test_measurement_would_catch_a_leak(rss_growth):
    assert rss_growth["control: keeping every output"] > 4 * RSS_GROWTH_LIMIT


@pytest.mark.parametrize("op", [
    "im2col", "col2im",
    "conv2d_forward im2col", "conv2d_backward im2col",
    "conv2d_forward gemm-1x1", "conv2d_backward gemm-1x1",
    "conv2d_forward winograd", "conv2d_backward winograd",
    "max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward",
    "rejected call (ValueError)",
])
def test_rss_stays_flat_over_10000_calls(op, rss_growth):
    growth = rss_growth[op]
    assert growth <= RSS_GROWTH_LIMIT, f"{op}: RSS grew by {growth / 2**20:.2f} MiB over {CALLS} calls"


# ---- concurrent calls ------------------------------------------------------------------

def _problems():
    """name -> zero-argument call returning a tuple of arrays; small and mid-sized shapes,
    the mid-sized ones big enough for the multi-threaded kernel path."""
    rng = np.random.default_rng(5)

    def r(*shape, dtype=np.float32):
        return rng.standard_normal(shape).astype(dtype)

    def conv(x, w, b, stride, padding, algorithm="auto"):
        def call():
            out, cache = fastconv.conv2d_forward(x, w, b, stride, padding, algorithm=algorithm)
            dout = np.cos(out)  # any fixed function of out
            return (out,) + tuple(g for g in fastconv.conv2d_backward(dout, cache) if g is not None)
        return call

    def pool(kind, x, kernel, stride, padding):
        def call():
            out, cache = getattr(fastconv, f"{kind}_pool2d_forward")(x, kernel, stride, padding)
            return out, getattr(fastconv, f"{kind}_pool2d_backward")(np.cos(out), cache)
        return call

    x_small, x_mid = r(2, 3, 9, 8), r(4, 16, 24, 24)
    x_pool = r(4, 16, 64, 64)
    return {
        "conv small": conv(x_small, r(4, 3, 3, 2), r(4), (2, 1), 1),
        "conv mid float64": conv(x_mid.astype(np.float64), r(32, 16, 3, 3, dtype=np.float64), None, 1, 1,
                                 "im2col"),
        "conv mid winograd": conv(x_mid, r(16, 16, 3, 3), r(16), 1, 1, "winograd"),
        "conv mid 1x1": conv(x_mid, r(32, 16, 1, 1), r(32), 1, 0),
        "conv one image": conv(x_mid[:1], r(32, 16, 5, 5), None, 2, 2),
        "im2col": lambda: (fastconv.im2col(x_mid, (3, 2), (1, 2), 1),),
        "col2im": lambda: (fastconv.col2im(np.cos(np.arange(16 * 9 * 4 * 24 * 24, dtype=np.float32))
                                           .reshape(16 * 9, 4 * 24 * 24), x_mid.shape, 3, 1, 1),),
        "max pool small": pool("max", x_small, 2, None, 0),
        "max pool mid": pool("max", x_pool, 3, 2, 1),
        "avg pool mid": pool("avg", x_pool, (3, 2), (2, 1), (1, 0)),
    }


@pytest.mark.parametrize("threads", [1, 2])
def test_concurrent_calls_give_the_serial_results_bit_for_bit(threads):
    saved = fastconv.get_num_threads()
    fastconv.set_num_threads(threads)
    try:
        problems = _problems()
        serial = {name: call() for name, call in problems.items()}
        again = {name: call() for name, call in problems.items()}
        order = [name for _ in range(4) for name in problems]
        with ThreadPoolExecutor(max_workers=4) as pool:
            concurrent = list(zip(order, pool.map(lambda name: problems[name](), order)))
    finally:
        fastconv.set_num_threads(saved)
    for name in problems:  # deterministic: the same call twice gives the same bits
        for first, second in zip(serial[name], again[name]):
            np.testing.assert_array_equal(first, second, err_msg=f"{name}: repeated serial calls differ")
    for name, result in concurrent:
        for got, want in zip(result, serial[name]):
            np.testing.assert_array_equal(got, want, err_msg=f"{name}: concurrent call differs from serial")


# ---- the GIL is released ---------------------------------------------------------------

def _python_progress_during(call, repeat):
    """Loop iterations another thread completed while `call` ran `repeat` times in a worker.

    The switch interval is 1 s, so the counting thread only runs while the worker has
    released the GIL (or waits for it). Each count also releases the GIL for a moment
    (np.copyto on 1000 elements), so the worker is never kept waiting.
    """
    state = {"inside": False, "done": False}
    source, target = np.ones(1000), np.empty(1000)

    def worker():
        state["inside"] = True
        try:
            for _ in range(repeat):
                call()
        finally:
            state["inside"] = False
            state["done"] = True

    saved = sys.getswitchinterval()
    sys.setswitchinterval(1.0)
    count = 0
    try:
        thread = threading.Thread(target=worker)
        thread.start()
        while not state["done"]:
            if state["inside"]:
                count += 1
            np.copyto(target, source)
        thread.join()
    finally:
        sys.setswitchinterval(saved)
    return count


# Far more iterations than the moments when a front's NumPy calls release the GIL could give.
PROGRESS_NEEDED = 100


def _progress(call, attempts=5):
    """Largest progress count over a few attempts, each running `call` for >= about 50 ms."""
    start = time.perf_counter()
    call()
    repeat = min(50, max(1, math.ceil(0.05 / max(time.perf_counter() - start, 1e-6))))
    best = 0
    for _ in range(attempts):
        best = max(best, _python_progress_during(call, repeat))
        if best >= PROGRESS_NEEDED:
            break
    return best


GIL_OPS = [
    "im2col", "col2im",
    "conv2d_forward im2col", "conv2d_backward im2col",
    "conv2d_forward winograd", "conv2d_backward winograd",
    "conv2d_forward gemm-1x1", "conv2d_backward gemm-1x1",
    "max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward",
]


@pytest.fixture(scope="module")
def gil_ops():
    """Each compiled op on inputs that keep it busy for milliseconds."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((4, 32, 48, 48)).astype(np.float32)
    w = rng.standard_normal((32, 32, 3, 3)).astype(np.float32)
    w1 = rng.standard_normal((64, 32, 1, 1)).astype(np.float32)
    cols = fastconv.im2col(x, 3, 1, 1)
    out, cache = fastconv.conv2d_forward(x, w, None, 1, 1, algorithm="im2col")
    out_w, cache_w = fastconv.conv2d_forward(x, w, None, 1, 1, algorithm="winograd")
    out_1, cache_1 = fastconv.conv2d_forward(x, w1, None, algorithm="gemm-1x1")
    pooled, max_cache = fastconv.max_pool2d_forward(x, 3, 1, 1)
    _, avg_cache = fastconv.avg_pool2d_forward(x, 3, 1, 1)
    return {
        "im2col": lambda: fastconv.im2col(x, 3, 1, 1),
        "col2im": lambda: fastconv.col2im(cols, x.shape, 3, 1, 1),
        "conv2d_forward im2col": lambda: fastconv.conv2d_forward(x, w, None, 1, 1, algorithm="im2col"),
        "conv2d_backward im2col": lambda: fastconv.conv2d_backward(out, cache),
        "conv2d_forward winograd": lambda: fastconv.conv2d_forward(x, w, None, 1, 1, algorithm="winograd"),
        "conv2d_backward winograd": lambda: fastconv.conv2d_backward(out_w, cache_w),
        "conv2d_forward gemm-1x1": lambda: fastconv.conv2d_forward(x, w1, None, algorithm="gemm-1x1"),
        "conv2d_backward gemm-1x1": lambda: fastconv.conv2d_backward(out_1, cache_1),
        "max_pool2d_forward": lambda: fastconv.max_pool2d_forward(x, 3, 1, 1),
        "max_pool2d_backward": lambda: fastconv.max_pool2d_backward(pooled, max_cache),
        "avg_pool2d_forward": lambda: fastconv.avg_pool2d_forward(x, 3, 1, 1),
        "avg_pool2d_backward": lambda: fastconv.avg_pool2d_backward(pooled, avg_cache),
    }


@pytest.fixture(scope="module")
def one_thread_each():
    """fastconv and BLAS on one thread, so the probe's two threads fit on two cores."""
    saved = fastconv.get_num_threads()
    fastconv.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        fastconv.set_num_threads(saved)


def test_gil_probe_sees_a_call_that_holds_the_gil(one_thread_each):
    def pure_python():
        total = 0
        for i in range(300_000):
            total += i * i
        return total

    assert _progress(pure_python, attempts=1) < PROGRESS_NEEDED


@pytest.mark.parametrize("op", GIL_OPS)
def test_compiled_ops_release_the_gil(op, gil_ops, one_thread_each):
    assert set(gil_ops) == set(GIL_OPS)
    progress = _progress(gil_ops[op])
    assert progress >= PROGRESS_NEEDED, (
        f"{op}: another thread made only {progress} steps while it ran; it seems to hold the GIL"
    )
