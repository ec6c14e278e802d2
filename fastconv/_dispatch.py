"""Backend choice: "auto" | "cython" | "reference", with FASTCONV_BACKEND as the default."""
import os
import warnings

BACKENDS = ("cython", "reference")
_CHOICES = ("auto",) + BACKENDS

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
    from ._kernels import _conv, _im2col, _pool, _winograd  # noqa: F401
    from ._kernels import _elementwise, _linear, _optim  # noqa: F401

    _IMPORT_ERROR = None
except ImportError as error:  # the package was not compiled (e.g. a source checkout)
    _IMPORT_ERROR = error
finally:
    if _set_spin:
        del os.environ["GOMP_SPINCOUNT"]


def _winograd_for_this_cpu():
    """The Winograd kernels built for AVX2 and FMA where the CPU has both, they were built
    (x86-64 with a compiler that takes the flags) and FASTCONV_NO_AVX2 is not set; else the
    baseline build. Both compute the same thing."""
    from ._kernels import _winograd as baseline

    if os.environ.get("FASTCONV_NO_AVX2", "").strip().lower() in ("1", "true", "yes", "on"):
        return baseline
    if not baseline.cpu_has_avx2_fma():
        return baseline
    try:
        from ._kernels import _winograd_avx2
    except ImportError:
        return baseline
    return _winograd_avx2


if _IMPORT_ERROR is None:
    _winograd = _winograd_for_this_cpu()

_default = None  # None: not set by set_backend(), read FASTCONV_BACKEND
_warned = False


def compiled_available():
    """True when the Cython kernels were built and import."""
    return _IMPORT_ERROR is None


def available_backends():
    """The backends usable in this installation, compiled first."""
    return list(BACKENDS) if compiled_available() else ["reference"]


def _check_name(name, source):
    if name not in _CHOICES:
        raise ValueError(
            f"unknown backend {name!r} ({source}); valid names are: {', '.join(_CHOICES)}"
        )
    return name


def _require_compiled():
    if not compiled_available():
        raise RuntimeError(
            "the 'cython' backend is not available: fastconv's compiled kernels did not import "
            f"({_IMPORT_ERROR}). Build them with `pip install .` (a C compiler is needed) or, in a "
            "source checkout, `python setup.py build_ext --inplace`; or use backend='reference'."
        )


def _default_name():
    if _default is not None:
        return _default
    # read on every call, so a change to the environment takes effect at once
    name = os.environ.get("FASTCONV_BACKEND", "").strip().lower() or "auto"
    return _check_name(name, "from the environment variable FASTCONV_BACKEND")


def resolve(backend="auto"):
    """Turn a backend argument into "cython" or "reference"."""
    global _warned
    if backend == "auto":
        backend = _default_name()
    else:
        _check_name(backend, "the backend argument")
    if backend == "auto":
        if compiled_available():
            return "cython"
        if not _warned:
            _warned = True
            warnings.warn(
                "fastconv's compiled kernels are not built; falling back to the slow NumPy "
                f"reference backend ({_IMPORT_ERROR}). Install with `pip install .` to compile them.",
                RuntimeWarning,
                stacklevel=3,
            )
        return "reference"
    if backend == "cython":
        _require_compiled()
    return backend


def get_backend():
    """The backend that backend="auto" resolves to now: "cython" or "reference"."""
    return resolve("auto")


def set_backend(name):
    """Set the default backend ("auto", "cython" or "reference"); overrides FASTCONV_BACKEND.

    ``set_backend(None)`` forgets the setting, so FASTCONV_BACKEND is the default again.
    """
    global _default
    if name is not None:
        if not isinstance(name, str):
            raise TypeError(
                f"backend must be a str, one of {', '.join(_CHOICES)}, or None; got {name!r}"
            )
        _check_name(name, "the backend argument")
        if name == "cython":
            _require_compiled()
    _default = name
