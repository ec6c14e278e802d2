"""`--busy-neighbour`: the benchmark beside a busy loop pinned to one core.

On a shared host another tenant's work takes one core for a while, and a library whose threads
wait for each other at every band is held back by the one thread that shares that core. To
measure that, a child process spins on one core (the last one this process may use; it is
pinned there, the benchmark is not) for as long as the timing runs. The loop is bounded: it
stops when the benchmark stops it, when its parent exits, or after MAX_SECONDS whatever
happens, so a killed benchmark never leaves a core spinning.
"""
import os
import subprocess
import sys
import time

# the longest a neighbour spins, even if nobody stops it (a full --isolate run takes about an
# hour on 2 cores)
MAX_SECONDS = 3 * 3600.0

# the child: pin itself, then spin until the deadline or until its parent is gone (checked
# every few milliseconds: 20 000 additions)
_LOOP = """
import os, sys, time
core, deadline, parent = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
os.sched_setaffinity(0, {core})
sys.stdout.write("pinned\\n")
sys.stdout.flush()
total = 0
while os.getppid() == parent and time.monotonic() < deadline:
    for step in range(20000):
        total += step
"""


def available():
    """None, or why this platform cannot pin a process to a core."""
    if not hasattr(os, "sched_setaffinity") or not hasattr(os, "sched_getaffinity"):
        return "--busy-neighbour needs os.sched_setaffinity (Linux)"
    return None


def neighbour_core():
    """The core the neighbour spins on: the highest-numbered one this process may use."""
    return max(os.sched_getaffinity(0))


class BusyNeighbour:
    """A context manager: a child process spinning on `core` while the block runs.

    `seconds` bounds the spin (MAX_SECONDS by default). On entry it waits until the child has
    pinned itself, so the block starts beside a busy core; on exit it stops the child."""

    def __init__(self, core=None, seconds=MAX_SECONDS):
        reason = available()
        if reason is not None:
            raise RuntimeError(reason)
        self.core = neighbour_core() if core is None else core
        if self.core not in os.sched_getaffinity(0):
            raise ValueError(f"core {self.core} is not one this process may use "
                             f"({sorted(os.sched_getaffinity(0))})")
        self.seconds = seconds
        self.process = None

    def __enter__(self):
        # time.monotonic() is system-wide on Linux, so the child compares against the same clock
        deadline = time.monotonic() + self.seconds
        self.process = subprocess.Popen(
            [sys.executable, "-c", _LOOP, str(self.core), repr(deadline), str(os.getpid())],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        line = self.process.stdout.readline()
        if line.strip() != "pinned":
            self.stop()
            raise RuntimeError(f"the busy neighbour did not start on core {self.core}")
        return self

    def running(self):
        return self.process is not None and self.process.poll() is None

    def stop(self):
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()

    def __exit__(self, *exc):
        self.stop()
        return False


def note(core):
    """The report's footer line for a run beside a neighbour on `core`."""
    return (f"busy neighbour (--busy-neighbour): a process spinning on core {core}, pinned "
            "there, through every timing (the first GEMM-rate sample is taken before it "
            "starts); the benchmark's own threads are not pinned, so one of them shares that "
            "core")
