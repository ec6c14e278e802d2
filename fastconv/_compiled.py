"""The compiled kernel modules, loaded once, with the ISA-specific copies chosen for this CPU.

Every caller reaches the kernels through this module's attributes (``_compiled.conv``,
``_compiled.winograd``, ...), so a test can swap one for a recording double.
"""
import importlib
import os

# GNU OpenMP's idle threads spin for a long while (GOMP_SPINCOUNT, 300,000 by default) after
# each parallel region, holding a core that BLAS, torch or the caller's next step wants; on a
# busy machine that makes small parallel calls many times slower. Unless the user chose a
# policy, the kernels' OpenMP runtime, which reads the environment once as it loads, is told to
# spin only briefly; the variable is removed again so that it reaches no other library.
_SPIN_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
_set_spin = not any(name in os.environ for name in _SPIN_SETTINGS)
if _set_spin:
    os.environ["GOMP_SPINCOUNT"] = "10000"
try:
    from ._kernels import _conv as conv
    from ._kernels import _depthwise as depthwise
    from ._kernels import _elementwise as elementwise
    from ._kernels import _im2col as im2col
    from ._kernels import _linear as linear
    from ._kernels import _norm as _norm_baseline
    from ._kernels import _optim as optim
    from ._kernels import _pool as pool
    from ._kernels import _winograd as _winograd_baseline

    IMPORT_ERROR = None
except ImportError as error:  # the package was not compiled (e.g. a source checkout)
    IMPORT_ERROR = error
finally:
    if _set_spin:
        del os.environ["GOMP_SPINCOUNT"]


def _switched_off(variable):
    return os.environ.get(variable, "").strip().lower() in ("1", "true", "yes", "on")


def _avx2_copy(baseline, name):
    """The build of a kernel module compiled for AVX2 and FMA (`name`, e.g. "_winograd_avx2")
    where the CPU and OS support both (checked by the compiler's __builtin_cpu_supports), it
    was built (x86-64 with a compiler that takes the flags) and FASTCONV_NO_AVX2 is not set;
    else the baseline build. Both compute the same thing."""
    if _switched_off("FASTCONV_NO_AVX2") or not _winograd_baseline.cpu_has_avx2_fma():
        return baseline
    try:
        return importlib.import_module(f"._kernels.{name}", __package__)
    except ImportError:
        return baseline


def winograd_for_this_cpu():
    return _avx2_copy(_winograd_baseline, "_winograd_avx2")


def norm_for_this_cpu():
    return _avx2_copy(_norm_baseline, "_norm_avx2")


if IMPORT_ERROR is None:
    winograd = winograd_for_this_cpu()
    norm = norm_for_this_cpu()


def available():
    """True when the Cython kernels were built and import."""
    return IMPORT_ERROR is None
