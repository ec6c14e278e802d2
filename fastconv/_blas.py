"""BLAS thread control (threadpoolctl) and the shape of the GEMM calls the kernels make."""
import threading
from contextlib import contextmanager

import numpy as np

from . import _tuning

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


_small_gemm = None


def small_gemm_limit():
    """M*N*K up to which the BLAS has its unpacked small-matrix GEMM, or 0 if it has none.

    Only OpenBLAS on the AVX-512 architectures above is known to have it; any other BLAS
    library loaded (MKL, or OpenBLAS's AVX2 kernels) gives 0, and products are not split.
    """
    global _small_gemm
    if _small_gemm is None:
        libraries = _blas_libraries()
        _small_gemm = _tuning.SMALL_GEMM_LIMIT if libraries and all(
            library.internal_api == "openblas"
            and str(getattr(library, "architecture", "")).lower() in _tuning.SMALL_GEMM_ARCHITECTURES
            for library in libraries
        ) else 0
    return _small_gemm


_direct = None


def _direct_controls():
    """[(get, set)]: the C functions openblas_get_num_threads / openblas_set_num_threads of
    every loaded BLAS, called through ctypes, or [] where any library is not OpenBLAS with
    its own thread pool (OpenMP-threaded OpenBLAS, MKL, BLIS: threadpoolctl sets those).

    Through threadpoolctl, holding the BLAS to one thread and giving it back took 8 us per
    kernel call here (two OpenBLAS libraries loaded, numpy's and scipy's; a small
    convolution's whole call takes about 50 us); through the C functions, 3 us (a loop of
    `with single_threaded_blas(): pass`, each way). They are the functions threadpoolctl
    itself calls for these libraries; its record of a "controlling" Python thread is its
    own bookkeeping, which fastconv then never touches."""
    global _direct
    if _direct is None:
        controls = []
        for library in _blas_libraries():
            symbol = getattr(library, "_get_symbol", None)
            if (symbol is None or library.internal_api != "openblas"
                    or getattr(library, "threading_layer", None) == "openmp"):
                controls = []
                break
            get, put = symbol("openblas_get_num_threads"), symbol("openblas_set_num_threads")
            if get is None or put is None:
                controls = []
                break
            controls.append((get, put))
        _direct = controls
    return _direct


def _set_threads(changes):
    if _clear_control is not None:
        _clear_control(force=True)
    for library, count in changes:
        library.set_num_threads(count)
    if _clear_control is not None:
        _clear_control(force=True)


def _hold_one_thread():
    """Limit every loaded BLAS to one thread; what to pass _give_back."""
    direct = _direct_controls()
    if direct:
        counts = [(put, get()) for get, put in direct]
        for put, count in counts:
            if count != 1:
                put(1)
        return [(put, count) for put, count in counts if count != 1]
    counts = [(library, library.get_num_threads()) for library in _blas_libraries()]
    restore = [(library, count) for library, count in counts if count != 1]
    _set_threads([(library, 1) for library, _ in restore])
    return restore


def _give_back(restore):
    if _direct_controls():
        for put, count in restore:
            put(count)
    else:
        _set_threads(restore)


@contextmanager
def single_threaded_blas():
    """Run the body with every loaded BLAS limited to one thread.

    Used around kernels that call BLAS from inside their own OpenMP threads, so the
    two thread pools do not oversubscribe the cores. Works from any Python thread.
    """
    global _holders, _restore
    with _lock:
        if _holders == 0:
            _restore = _hold_one_thread()
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0:
                _give_back(_restore)
                _restore = None


def _even_piece(total, most):
    pieces = -(-total // most)
    return -(-total // pieces)


def gemm_pieces(rows, inner):
    """(rows, inner, columns) per GEMM call for (rows x inner) @ (inner x columns) products,
    each 0 for "not split": pieces that keep every call on the BLAS's small-matrix path
    (small_gemm_limit), as _kernels/_gemm.pxd's gemm_blocked takes them."""
    limit = small_gemm_limit()
    piece_rows = _even_piece(rows, _tuning.GEMM_PIECE_ROWS) if rows > 0 else 0
    piece_inner = _even_piece(inner, _tuning.GEMM_PIECE_INNER) if inner > 0 else 0
    columns = limit // max(1, piece_rows * piece_inner) // 16 * 16
    if columns < _tuning.MIN_GEMM_COLUMNS:
        return np.zeros(3, dtype=np.intc)
    return np.array((piece_rows, piece_inner, columns), dtype=np.intc)


def run_kernel(kernel, threads, *args, all_small=False):
    """kernel(*args, threads) with every loaded BLAS held to one thread, unless `all_small`:
    every product of the call is a piece on OpenBLAS's small-matrix path (gemm_pieces), which
    runs on the calling thread alone, so there is nothing to hold. The kernels split their
    work over their own threads (a small batch too), so BLAS threads would only oversubscribe
    the cores, and a BLAS thread count that another caller changes mid-call would change the
    sums' order: held, a call's result depends on fastconv's thread count alone."""
    if all_small:
        kernel(*args, threads)
    else:
        with single_threaded_blas():
            kernel(*args, threads)
