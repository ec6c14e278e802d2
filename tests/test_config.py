"""Run-time settings: thread count, workspace budget, the scratch pool."""
import numpy as np
import pytest

import fastconv
from fastconv import _config


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
    pool = _config._ScratchPool(keep=2)
    with pool.borrow((3, 4), np.float32) as first:
        with pool.borrow((3, 4), np.float32) as second:
            assert first.shape == second.shape == (3, 4)
            assert first.dtype == np.float32
            assert not np.shares_memory(first, second)
    # returned buffers are reused, and no more than `keep` are kept
    with pool.borrow((2, 2), np.float64) as again:
        assert again.dtype == np.float64 and again.shape == (2, 2)
    with pool.borrow((5,), np.float32), pool.borrow((5,), np.float32), pool.borrow((5,), np.float32):
        pass
    assert len(pool._free) == 2


def test_scratch_handles_empty_shapes():
    pool = _config._ScratchPool()
    with pool.borrow((2, 0, 7), np.float32) as empty:
        assert empty.shape == (2, 0, 7)
