"""pytest-benchmark settings for bench/: dtype and threads, applied to fastconv, BLAS and torch alike.

Run with `pytest bench/ --benchmark-group-by=group` (plain `pytest` collects tests/ only).
"""
import pytest

from fastconv.bench import runner


def pytest_addoption(parser):
    group = parser.getgroup("fastconv bench")
    group.addoption("--bench-dtype", choices=("float32", "float64"), default="float32",
                    help="dtype of the benchmark inputs (default float32)")
    group.addoption("--bench-threads", type=int, default=None,
                    help="threads for fastconv, BLAS and torch (default: usable cores)")


@pytest.fixture(scope="session")
def bench_dtype(request):
    return request.config.getoption("--bench-dtype")


@pytest.fixture(scope="session")
def torch_module():
    """torch when installed, else None (the torch benchmarks skip themselves)."""
    try:
        import torch
    except ImportError:
        return None
    return torch


@pytest.fixture(scope="session", autouse=True)
def bench_threads(request, torch_module):
    threads = request.config.getoption("--bench-threads") or runner.usable_cores()
    with runner.thread_limits(threads, torch_module):
        yield threads
