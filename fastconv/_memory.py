"""Keeping freed memory in the process, so that a training loop's large temporaries do not
page-fault afresh at every step.

glibc's malloc gives memory above its mmap threshold back to the system at every free, and
trims the top of its heap once more than its trim threshold lies free there. Both
thresholds start small (128 KiB) and grow as large blocks are freed, so a training step's
activations and gradients of a few MiB are often handed back at the end of one step and
faulted in again, page by page, in the next. A page fault costs a few microseconds on a
VM; the CS231n ThreeLayerConvNet's step (batch 50) took about 530 of them per step, and
its median step fell from 15-17 ms to 12-13 ms with the thresholds below
(docs/performance.md, "Freed memory kept").
"""
import ctypes
import sys

# glibc's mallopt parameter numbers (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

# Blocks up to this size come from the heap and are reused there: glibc's largest allowed
# mmap threshold on 64-bit (32 MiB; mallopt refuses more). Larger blocks are still mapped
# and unmapped as glibc does by default.
MMAP_THRESHOLD = 32 * 2**20
# Up to this much freed memory stays at the heap's top instead of going back to the system.
TRIM_THRESHOLD = 512 * 2**20

_retained = False


def _glibc():
    """The C library as a ctypes handle if it is glibc (which has mallopt with these
    meanings), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        version = libc.gnu_get_libc_version
    except (OSError, AttributeError):  # musl and others have no gnu_get_libc_version
        return None
    version.restype = ctypes.c_char_p
    return libc if version() else None


def retain_freed_memory():
    """Keep freed blocks of up to 32 MiB in the process for reuse, and up to 512 MiB of free
    memory at the heap's top, instead of returning them to the system at every free.

    A training loop allocates and frees the same large arrays every step; kept, they are
    reused without page faults. The setting is for the whole process (glibc's mallopt), it
    cannot be undone, and it only changes speed and how much freed memory the process
    holds on to, never a result. Trainer and the CS231n Solver call this unless given
    ``retain_memory=False``.

    Returns True if it is in effect (Linux with glibc), False where it does not apply.
    Calling it again does nothing more.
    """
    global _retained
    if _retained:
        return True
    libc = _glibc()
    if libc is None:
        return False
    libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    libc.mallopt.restype = ctypes.c_int
    # the mmap threshold first: setting either fixes both (glibc stops adjusting them)
    _retained = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                     and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _retained


def freed_memory_retained():
    """Whether retain_freed_memory() has taken effect in this process."""
    return _retained
