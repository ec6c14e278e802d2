"""The timing loop of the A/B scripts in bench/ (pool_builds.py, net_fusion.py, conv_call.py,
im2col_copy.py, ...)."""
import time

import numpy as np


def fastest_and_median_ms(function, calls=40, warmup=10):
    """(fastest, median) ms of `calls` calls of function() after `warmup` untimed ones."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times) * 1e3, float(np.median(times)) * 1e3


def median_ms(function, calls=40, warmup=10):
    """The median ms of `calls` calls of function() after `warmup` untimed ones."""
    return fastest_and_median_ms(function, calls, warmup)[1]
