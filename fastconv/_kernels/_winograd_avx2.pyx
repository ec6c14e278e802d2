"""The Winograd kernels of _winograd.pyx, compiled again with AVX2 and FMA enabled (setup.py
adds the flags where the compiler takes them). fastconv._dispatch uses this module instead of
_winograd when the CPU and operating system support both (cpu_has_avx2_fma)."""
include "_winograd.pyx"
