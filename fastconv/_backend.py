"""Backend choice: "auto" | "cython" | "reference", with FASTCONV_BACKEND as the default."""
import os
import sys
import warnings

from . import _compiled

BACKENDS = ("cython", "reference")
_CHOICES = ("auto",) + BACKENDS

_default = None  # None: not set by set_backend(), read FASTCONV_BACKEND
_warned = False


def compiled_available():
    """True when the Cython kernels were built and import."""
    return _compiled.available()


def available_backends():
    """The backends usable in this installation, compiled first."""
    return list(BACKENDS) if compiled_available() else ["reference"]


def check_name(name, source):
    if name not in _CHOICES:
        raise ValueError(
            f"unknown backend {name!r} ({source}); valid names are: {', '.join(_CHOICES)}"
        )
    return name


def _require_compiled():
    if not compiled_available():
        raise RuntimeError(
            "the 'cython' backend is not available: fastconv's compiled kernels did not import "
            f"({_compiled.IMPORT_ERROR}). Build them with `pip install .` (a C compiler is needed) "
            "or, in a source checkout, `python setup.py build_ext --inplace`; or use "
            "backend='reference'."
        )


def _default_name():
    if _default is not None:
        return _default
    # read on every call, so a change to the environment takes effect at once
    name = os.environ.get("FASTCONV_BACKEND", "").strip().lower() or "auto"
    return check_name(name, "from the environment variable FASTCONV_BACKEND")


_PACKAGE = os.path.dirname(os.path.abspath(__file__))


def _caller_level():
    """The stacklevel of the first frame outside fastconv: the user's call, however deep
    inside fastconv the backend was resolved."""
    level, frame = 1, sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE):
        level, frame = level + 1, frame.f_back
    return level


def resolve(backend="auto"):
    """Turn a backend argument into "cython" or "reference"."""
    global _warned
    if backend == "auto":
        backend = _default_name()
    else:
        check_name(backend, "the backend argument")
    if backend == "auto":
        if compiled_available():
            return "cython"
        if not _warned:
            _warned = True
            warnings.warn(
                "fastconv's compiled kernels are not built; falling back to the slow NumPy "
                f"reference backend ({_compiled.IMPORT_ERROR}). Install with `pip install .` to "
                "compile them.",
                RuntimeWarning,
                stacklevel=_caller_level(),
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
        check_name(name, "the backend argument")
        if name == "cython":
            _require_compiled()
    _default = name
