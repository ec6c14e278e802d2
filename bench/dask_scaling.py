"""fastconv.dask on a local 2-worker cluster: batch-chunked conv throughput against the local call, and an image larger than a worker's memory limit convolved out of core.

    python bench/dask_scaling.py                       # both parts
    python bench/dask_scaling.py --part throughput --repeats 7
    python bench/dask_scaling.py --part out-of-core --width 12288 --height 36864 --memory-limit 400MiB

Throughput: conv2d of a float32 batch (default 1024 x 16 x 32 x 32, 32 filters 3x3, padding
1) by conv2d_forward here (fastconv's own threads, one per core) and by fastconv.dask.conv2d
on 2 worker processes of 1 thread each (the batch in 8 chunks along N), alternated in one
process; the dask side is timed twice: with x already on the workers and the output left
there (persist), and from a NumPy array here to a NumPy array back (compute).

Out of core: a single-channel float32 image (default 12288 x 12288), larger than one worker's
memory_limit, stored in an np.memmap file in a temporary directory, read chunk by chunk by
the workers (each task opens the file and copies its chunk), convolved 3x3 "same" and
written into a second memmap file by da.store. Peak worker memory is the largest resident
set size of each worker process, sampled every 20 ms during the run; a few random patches
of the result, edges included, are checked against conv2d_forward on the same pixels.
"""
import argparse
import os
import statistics
import tempfile
import threading
import time

import numpy as np
import psutil

import fastconv
import fastconv.dask as fd


def _cluster(memory_limit, local_directory):
    import distributed

    root = os.path.dirname(os.path.dirname(os.path.abspath(fastconv.__file__)))
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, memory_limit=memory_limit,
                                       local_directory=local_directory, env={"PYTHONPATH": path})
    return cluster, distributed.Client(cluster)


# ---- throughput -----------------------------------------------------------------------------

def throughput(args):
    import dask.array as da
    import distributed

    rng = np.random.default_rng(0)
    shape = (args.batch, args.channels, args.size, args.size)
    x = rng.standard_normal(shape, dtype=np.float32)
    w = rng.standard_normal((args.filters, args.channels, 3, 3), dtype=np.float32) * 0.1
    b = np.zeros(args.filters, np.float32)
    cluster, client = _cluster("auto", None)
    try:
        chunks = (-(-args.batch // args.chunks), args.channels, args.size, args.size)
        resident = da.from_array(x, chunks=chunks).persist()
        distributed.wait(resident)
        expected = fastconv.conv2d_forward(x, w, b, 1, 1)[0]
        check = fd.conv2d(resident, w, b, 1, 1).compute()
        error = float(np.max(np.abs(check - expected)))

        def local():
            fastconv.conv2d_forward(x, w, b, 1, 1)

        def on_workers():
            out = fd.conv2d(resident, w, b, 1, 1).persist()
            distributed.wait(out)
            del out

        def numpy_to_numpy():
            fd.conv2d(da.from_array(x, chunks=chunks), w, b, 1, 1).compute()

        timings = {"local conv2d_forward": [], "dask, resident (persist)": [],
                   "dask, numpy in and out (compute)": []}
        calls = dict(zip(timings, (local, on_workers, numpy_to_numpy)))
        for call in calls.values():
            call()  # warm-up
        for _ in range(args.repeats):
            for name, call in calls.items():  # alternated, so drifts in load hit all three
                started = time.perf_counter()
                call()
                timings[name].append(time.perf_counter() - started)
        print(f"throughput: x {shape} float32, w {w.shape}, padding 1, {args.chunks} batch chunks, "
              f"2 workers x 1 thread; local fastconv threads: {fastconv.get_num_threads()}")
        print(f"  dask result vs local: max abs difference {error:.2e}")
        base = statistics.median(timings["local conv2d_forward"])
        for name, seconds in timings.items():
            median = statistics.median(seconds)
            print(f"  {name:34s} median {median * 1e3:8.1f} ms  min {min(seconds) * 1e3:8.1f} ms  "
                  f"{args.batch / median:8.0f} images/s  ({base / median:.2f}x local)")
    finally:
        client.close()
        cluster.close()


# ---- out of core ------------------------------------------------------------------------------

class MemmapImage:
    """A (1, 1, height, width) float32 image in a file, read a chunk at a time: pickles as
    its path, so a graph holds no pixels, and each read copies only the requested chunk."""

    def __init__(self, path, height, width):
        self.path, self.shape = path, (1, 1, height, width)
        self.dtype, self.ndim = np.dtype(np.float32), 4

    def _open(self, mode):
        return np.memmap(self.path, dtype=self.dtype, mode=mode, shape=self.shape)

    def __getitem__(self, index):
        image = self._open("r")
        chunk = np.array(image[index])
        del image
        return chunk

    def __setitem__(self, index, values):  # da.store's target
        image = self._open("r+")
        image[index] = values
        image.flush()
        del image


def _fill(path, height, width, seed):
    image = np.memmap(path, dtype=np.float32, mode="w+", shape=(1, 1, height, width))
    rng = np.random.default_rng(seed)
    band = 1024
    for top in range(0, height, band):
        image[0, 0, top:top + band] = rng.standard_normal((min(band, height - top), width),
                                                          dtype=np.float32)
    image.flush()
    del image


class PeakMemory:
    """The largest resident set size of each process in `pids`, sampled in a thread."""

    def __init__(self, pids, interval=0.02):
        self.processes = {pid: psutil.Process(pid) for pid in pids}
        self.peak = {pid: 0 for pid in pids}
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        while not self._stop.is_set():
            for pid, process in self.processes.items():
                try:
                    self.peak[pid] = max(self.peak[pid], process.memory_info().rss)
                except psutil.NoSuchProcess:
                    pass
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join()


def out_of_core(args):
    import dask.array as da
    from dask.utils import parse_bytes

    width = args.width
    height = args.height or width
    chunk_height = args.chunk_height or args.chunk
    limit = parse_bytes(args.memory_limit)
    image_bytes = height * width * 4
    with tempfile.TemporaryDirectory(prefix="fastconv-dask-bench-") as folder:
        source = MemmapImage(os.path.join(folder, "image.f32"), height, width)
        target = MemmapImage(os.path.join(folder, "out.f32"), height, width)
        started = time.perf_counter()
        _fill(source.path, height, width, seed=1)
        np.memmap(target.path, dtype=np.float32, mode="w+", shape=target.shape).flush()
        print(f"out of core: image {height} x {width} float32 = {image_bytes / 2**20:.0f} MiB "
              f"(written in {time.perf_counter() - started:.1f} s), worker memory_limit "
              f"{limit / 2**20:.0f} MiB, chunks {chunk_height} x {args.chunk}")
        w = np.random.default_rng(2).standard_normal((1, 1, 3, 3)).astype(np.float32)
        cluster, client = _cluster(limit, folder)
        try:
            pids = client.run(os.getpid)
            baseline = {pid: psutil.Process(pid).memory_info().rss for pid in pids.values()}
            x = da.from_array(source, chunks=(1, 1, chunk_height, args.chunk), name="memmap-image",
                              meta=np.empty((0, 0, 0, 0), np.float32))
            out = fd.conv2d(x, w, None, 1, "same")
            started = time.perf_counter()
            with PeakMemory(pids.values()) as memory:
                da.store(out, target, lock=False)
            seconds = time.perf_counter() - started
            still = client.run(os.getpid)
            print(f"  conv2d 3x3 'same' + store: {seconds:.1f} s, {height * width / seconds / 1e6:.1f} "
                  f"Mpixel/s; workers restarted: {'yes' if still != pids else 'no'}")
            for name, pid in pids.items():
                print(f"  worker {name}: peak RSS {memory.peak[pid] / 2**20:.0f} MiB "
                      f"(at start {baseline[pid] / 2**20:.0f} MiB) of memory_limit {limit / 2**20:.0f} MiB")
        finally:
            client.close()
            cluster.close()
        # spot checks: patches at the corners and at random places
        rng = np.random.default_rng(3)
        image = np.memmap(source.path, dtype=np.float32, mode="r", shape=source.shape)
        result = np.memmap(target.path, dtype=np.float32, mode="r", shape=target.shape)
        worst, patch = 0.0, 256
        bottom, right = height - patch, width - patch
        corners = [(0, 0), (0, right), (bottom, 0), (bottom, right)]
        inside = [(rng.integers(0, bottom), rng.integers(0, right)) for _ in range(4)]
        for top, left in corners + inside:
            rows = slice(max(top - 1, 0), min(top + patch + 1, height))
            cols = slice(max(left - 1, 0), min(left + patch + 1, width))
            pads = (1 if top == 0 else 0, 1 if top == bottom else 0,
                    1 if left == 0 else 0, 1 if left == right else 0)
            expected = fastconv.conv2d_forward(np.array(image[:, :, rows, cols]), w, None, 1, pads)[0]
            got = result[:, :, top:top + patch, left:left + patch]
            worst = max(worst, float(np.max(np.abs(got - expected))))
        print(f"  8 patches of {patch} x {patch} against conv2d_forward: max abs difference {worst:.2e}")
        del image, result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("throughput", "out-of-core", "all"), default="all")
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--filters", type=int, default=32)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--chunks", type=int, default=8, help="batch chunks (throughput)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--width", type=int, default=12288, help="image width (out of core)")
    parser.add_argument("--height", type=int, help="image height (out of core; default --width)")
    parser.add_argument("--chunk", type=int, default=1024, help="chunk width (out of core)")
    parser.add_argument("--chunk-height", type=int, help="chunk height (default --chunk)")
    parser.add_argument("--memory-limit", default="400MiB", help="per worker (out of core)")
    args = parser.parse_args(argv)
    if args.part in ("throughput", "all"):
        throughput(args)
    if args.part in ("out-of-core", "all"):
        out_of_core(args)


if __name__ == "__main__":
    main()
