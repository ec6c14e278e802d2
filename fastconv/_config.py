"""Run-time settings: thread count, workspace budget, and keeping BLAS single-threaded inside our threads."""
import math
import os
import threading
from contextlib import contextmanager

import numpy as np


def _default_threads():
    for variable in ("FASTCONV_NUM_THREADS", "OMP_NUM_THREADS"):
        text = os.environ.get(variable, "").split(",")[0].strip()
        if text.isdigit() and int(text) > 0:
            return int(text)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


_num_threads = _default_threads()


def get_num_threads():
    """Number of threads fastconv's kernels use."""
    return _num_threads


def set_num_threads(n):
    """Set the number of threads fastconv's kernels use (an int >= 1)."""
    global _num_threads
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"num_threads must be an int >= 1, got {n!r}")
    _num_threads = n


_DEFAULT_WORKSPACE = 32 * 2**20
_workspace_bytes = _DEFAULT_WORKSPACE


def get_workspace_limit():
    """Bytes of scratch memory a conv call may use for im2col buffers (all threads together)."""
    return _workspace_bytes


def set_workspace_limit(nbytes=None):
    """Set the conv scratch budget in bytes (None restores the default, 32 MiB).

    Convolutions work on bands of output rows sized to fit this budget, so their extra
    memory does not grow with the batch. At least one output row per thread is always used.
    """
    global _workspace_bytes
    if nbytes is None:
        nbytes = _DEFAULT_WORKSPACE
    if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 1:
        raise ValueError(f"workspace limit must be a positive int (bytes), got {nbytes!r}")
    _workspace_bytes = nbytes
    _pool.clear()


class _ScratchPool:
    """Scratch buffers kept between calls.

    A fresh multi-MiB np.empty is new memory from the OS on every call, paid for with a page
    fault per 4 KiB as the kernel first writes it: for a mid-sized conv that is a large share of
    the run time. Buffers are handed out one caller at a time (several Python threads may call
    fastconv at once) and at most `keep` of them are kept.
    """

    def __init__(self, keep=2):
        self._keep = keep
        # (size in bytes past its first 64-byte boundary, buffer, offset of that boundary),
        # kept sorted by size
        self._free = []
        self._lock = threading.Lock()

    def clear(self):
        with self._lock:
            self._free = []

    def borrow(self, dtype, *shapes):
        """Uninitialised arrays of `dtype` and the given shapes for the duration of a `with`
        block (one array: the array; several: a tuple), carved from one buffer. Each starts
        on a 64-byte boundary, so no two share a cache line."""
        return _Borrowed(self, np.dtype(dtype), shapes)

    def _take(self, nbytes):
        with self._lock:
            # the smallest kept buffer that fits
            for index, entry in enumerate(self._free):
                if entry[0] >= nbytes:
                    return self._free.pop(index)
        buffer = np.empty(nbytes + _LINE, dtype=np.uint8)
        offset = -buffer.ctypes.data % _LINE
        return (nbytes + _LINE - offset, buffer, offset)

    def _give_back(self, entry):
        with self._lock:
            self._free.append(entry)
            self._free.sort(key=lambda kept: kept[0])
            del self._free[: max(0, len(self._free) - self._keep)]


class _Borrowed:
    """The context manager of one _ScratchPool.borrow (a class: cheaper than a generator on
    a path taken on every call)."""

    __slots__ = ("_pool", "_dtype", "_shapes", "_entry")

    def __init__(self, pool, dtype, shapes):
        self._pool, self._dtype, self._shapes = pool, dtype, shapes

    def __enter__(self):
        itemsize = self._dtype.itemsize
        counts = [math.prod(shape) for shape in self._shapes]
        # bytes of each array rounded up to whole cache lines
        spans = [-(-count * itemsize // _LINE) * _LINE for count in counts]
        self._entry = self._pool._take(sum(spans))
        _, buffer, offset = self._entry
        arrays = []
        for shape, span in zip(self._shapes, spans):
            arrays.append(np.ndarray(shape, self._dtype, buffer, offset))
            offset += span
        return arrays[0] if len(arrays) == 1 else tuple(arrays)

    def __exit__(self, *exc_info):
        self._pool._give_back(self._entry)
        self._entry = None


_LINE = 64
_pool = _ScratchPool()


def scratch(dtype, *shapes):
    """Borrow reusable uninitialised scratch arrays of the given shapes (a context manager
    giving the array, or a tuple of them for several shapes)."""
    return _pool.borrow(dtype, *shapes)


# Several Python threads may call fastconv at once. The BLAS limit is a process-wide
# setting, so it is taken by the first caller in and given back by the last one out.
_lock = threading.Lock()
_holders = 0
_restore = None  # [(library controller, its thread count before the limit)]
_libraries = None
_clear_control = None


def _blas_libraries():
    """threadpoolctl's controllers of the loaded BLAS libraries (looked up once)."""
    global _libraries, _clear_control
    if _libraries is None:
        import threadpoolctl

        # threadpoolctl 3.8 and later let only one "controlling" Python thread change a
        # process-wide OpenBLAS pool: the first to do so, until it is released; calls from
        # any other thread are silently ignored. Left held by one thread, fastconv calls
        # made from another would run BLAS multi-threaded inside the kernels' own threads
        # (more threads than cores, and other rounding). fastconv changes the limit only
        # under its own lock, and releases control before and after each change.
        controller = getattr(threadpoolctl, "OpenBLASController", None)
        _clear_control = getattr(controller, "clear_controlling_thread", None)
        _libraries = threadpoolctl.ThreadpoolController().select(user_api="blas").lib_controllers
    return _libraries


# OpenBLAS's kernels for AVX-512 CPUs multiply a product of M*N*K <= 100**3 straight from
# the caller's arrays, without the packing copies of its general path, and faster at the
# sizes of a conv band; the kernels split larger products into pieces under the limit
# (conv._gemm_pieces; bench/gemm_pieces.py times both ways).
_SMALL_GEMM_LIMIT = 100**3
_SMALL_GEMM_ARCHITECTURES = ("skylakex", "cooperlake", "sapphirerapids")
_small_gemm = None


def small_gemm_limit():
    """M*N*K up to which the BLAS has its unpacked small-matrix GEMM, or 0 if it has none.

    Only OpenBLAS on the AVX-512 architectures above is known to have it; any other BLAS
    library loaded (MKL, or OpenBLAS's AVX2 kernels) gives 0, and products are not split.
    """
    global _small_gemm
    if _small_gemm is None:
        libraries = _blas_libraries()
        _small_gemm = _SMALL_GEMM_LIMIT if libraries and all(
            library.internal_api == "openblas"
            and str(getattr(library, "architecture", "")).lower() in _SMALL_GEMM_ARCHITECTURES
            for library in libraries
        ) else 0
    return _small_gemm


def _set_threads(changes):
    if _clear_control is not None:
        _clear_control(force=True)
    for library, count in changes:
        library.set_num_threads(count)
    if _clear_control is not None:
        _clear_control(force=True)


@contextmanager
def single_threaded_blas():
    """Run the body with every loaded BLAS limited to one thread.

    Used around kernels that call BLAS from inside their own OpenMP threads, so the
    two thread pools do not oversubscribe the cores. Works from any Python thread.
    """
    global _holders, _restore
    with _lock:
        if _holders == 0:
            counts = [(library, library.get_num_threads()) for library in _blas_libraries()]
            _restore = [(library, count) for library, count in counts if count != 1]
            _set_threads([(library, 1) for library, _ in _restore])
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0:
                _set_threads(_restore)
                _restore = None
