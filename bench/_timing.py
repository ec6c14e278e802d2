"""The timing loop of the A/B scripts in bench/ (pool_builds.py, net_fusion.py)."""
import time

import numpy as np


def median_ms(function, calls=40, warmup=10):
    """The median ms of `calls` calls of function() after `warmup` untimed ones."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3
