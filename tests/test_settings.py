"""Run-time settings (thread count, workspace budget), the scratch pool, BLAS thread control."""
import threading

import numpy as np
import pytest

import fastconv
from fastconv import _blas, _scratch


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True, None])
def test_set_num_threads_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="num_threads must be an int >= 1"):
        fastconv.set_num_threads(bad)


@pytest.mark.parametrize("bad", [0, -5, 2.5, "1M", False])
def test_set_workspace_limit_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="workspace limit must be a positive int"):
        fastconv.set_workspace_limit(bad)


def test_workspace_limit_round_trip():
    saved = fastconv.get_workspace_limit()
    try:
        fastconv.set_workspace_limit(12345)
        assert fastconv.get_workspace_limit() == 12345
        fastconv.set_workspace_limit(None)
        assert fastconv.get_workspace_limit() == 32 * 2**20
    finally:
        fastconv.set_workspace_limit(saved)


def test_scratch_buffers_are_never_shared_while_borrowed():
    pool = _scratch._ScratchPool(keep=2)
    with pool.borrow(np.float32, (3, 4)) as first:
        with pool.borrow(np.float32, (3, 4)) as second:
            assert first.shape == second.shape == (3, 4)
            assert first.dtype == np.float32
            assert not np.shares_memory(first, second)
    # returned buffers are reused, and no more than `keep` are kept
    with pool.borrow(np.float64, (2, 2)) as again:
        assert again.dtype == np.float64 and again.shape == (2, 2)
    with pool.borrow(np.float32, (5,)), pool.borrow(np.float32, (5,)), \
            pool.borrow(np.float32, (5,)):
        pass
    assert len(pool._free) == 2


def test_scratch_arrays_from_one_buffer_are_apart_and_aligned():
    pool = _scratch._ScratchPool()
    with pool.borrow(np.float64, (3, 5), (0,), (7,), (2, 1)) as arrays:
        assert [a.shape for a in arrays] == [(3, 5), (0,), (7,), (2, 1)]
        for i, a in enumerate(arrays):
            assert a.dtype == np.float64 and a.flags.c_contiguous and a.flags.writeable
            assert a.size == 0 or a.ctypes.data % 64 == 0
            for b in arrays[i + 1:]:
                assert not np.shares_memory(a, b)
        for value, a in enumerate(arrays):
            a[...] = value
        assert [set(a.ravel().tolist()) for a in arrays] == [{0}, set(), {2}, {3}]


def test_scratch_handles_empty_shapes():
    pool = _scratch._ScratchPool()
    with pool.borrow(np.float32, (2, 0, 7)) as empty:
        assert empty.shape == (2, 0, 7)


def _blas_thread_counts():
    from threadpoolctl import threadpool_info

    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_blas_is_single_threaded_inside_kernels_called_from_any_python_thread():
    # threadpoolctl >= 3.8 ignores OpenBLAS limits set from any Python thread but the one
    # that set one first, unless released: a call from a worker thread after one from the
    # main thread used to run BLAS multi-threaded inside the kernels' OpenMP threads
    from fastconv._blas import single_threaded_blas

    before = _blas_thread_counts()
    seen = []

    def worker():
        with single_threaded_blas():
            seen.append(_blas_thread_counts())

    for _ in range(2):
        with single_threaded_blas():  # the main thread first
            seen.append(_blas_thread_counts())
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
    assert len(seen) == 4 and all(counts and set(counts) == {1} for counts in seen), seen
    assert _blas_thread_counts() == before  # and restored afterwards


def test_conv_from_another_python_thread_matches_the_main_thread_bit_for_bit():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 3, 99, 99))  # big enough for threads and BLAS threads
    w = rng.standard_normal((32, 3, 11, 11))
    saved = fastconv.get_num_threads()
    fastconv.set_num_threads(2)
    try:
        def call():
            out, cache = fastconv.conv2d_forward(x, w, None, 4, 0, algorithm="im2col")
            return (out,) + fastconv.conv2d_backward(np.cos(out), cache)[:2]

        main = call()
        results = []
        thread = threading.Thread(target=lambda: results.append(call()))
        thread.start()
        thread.join()
    finally:
        fastconv.set_num_threads(saved)
    for got, want in zip(results[0], main):
        np.testing.assert_array_equal(got, want)


class _FakeBlas:
    def __init__(self, internal_api, architecture):
        self.internal_api, self.architecture = internal_api, architecture


@pytest.mark.parametrize("libraries, limit", [
    ([_FakeBlas("openblas", "SkylakeX")], 100**3),
    ([_FakeBlas("openblas", "SkylakeX"), _FakeBlas("openblas", "SapphireRapids")], 100**3),
    ([_FakeBlas("openblas", "Haswell")], 0),                 # AVX2 kernels: no small path
    ([_FakeBlas("openblas", "SkylakeX"), _FakeBlas("mkl", None)], 0),
    ([], 0),
])
def test_small_gemm_limit_only_for_openblas_avx512_kernels(libraries, limit, monkeypatch):
    monkeypatch.setattr(_blas, "_blas_libraries", lambda: libraries)
    monkeypatch.setattr(_blas, "_small_gemm", None)
    assert _blas.small_gemm_limit() == limit


def test_blas_held_to_one_thread_by_the_c_functions_or_by_threadpoolctl(monkeypatch):
    """Both ways of holding the BLAS (the C functions directly, where every library is
    OpenBLAS with its own pool, and threadpoolctl otherwise) limit it and restore it."""
    from fastconv._blas import single_threaded_blas

    libraries = _blas._blas_libraries()
    plain_openblas = libraries and all(
        library.internal_api == "openblas" and getattr(library, "threading_layer", None) != "openmp"
        for library in libraries)
    assert bool(_blas._direct_controls()) == bool(plain_openblas)
    before = _blas_thread_counts()
    for direct in (_blas._direct_controls(), []):
        monkeypatch.setattr(_blas, "_direct", direct)
        with single_threaded_blas():
            assert set(_blas_thread_counts()) == {1}
        assert _blas_thread_counts() == before
