"""The scratch pool: reusable, cache-line aligned work buffers for the kernels."""
import math
import threading

import numpy as np


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



def clear():
    """Forget every kept buffer (the workspace budget changed)."""
    _pool.clear()
