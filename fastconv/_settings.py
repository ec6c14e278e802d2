"""Run-time settings: the kernels' thread count and the conv workspace budget."""
import os

from . import _scratch


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
    _scratch.clear()


