"""The normalisation kernels of _norm.pyx, compiled again with AVX2 and FMA enabled (setup.py adds
the flags where the compiler takes them). fastconv._dispatch uses this module instead of _norm
where it uses the AVX2 build of the Winograd kernels (the CPU and OS support both)."""
include "_norm.pyx"
