"""A source checkout with no compiled kernels hands its import over to an installed build of the same sources.

At a clone's root, `python -m fastconv.bench` (or any `python -c`/`python -m` run there) puts
the current folder first on sys.path, so `import fastconv` finds the source folder, which has
no compiled kernels, rather than the package `pip install .` just built. `hand_over` lets the
source folder's ``__init__`` replace itself in sys.modules with that installed build, but only
when (a) this folder holds no compiled kernel module for this interpreter, so an in-place build
(``python setup.py build_ext --inplace``, as tools/checked_tests.sh and tools/asan_tests.sh make
in a temporary copy) is always the one imported, and (b) the installed copy was built from
exactly these sources: every .py, .pyx and .pxd file byte for byte the same (so the same
version too). An edited checkout therefore never runs a stale build behind the user's back.
This module imports nothing from fastconv: it runs before the rest of the package.
"""
import importlib.machinery
import importlib.util
import os
import sys

_SOURCE_SUFFIXES = (".py", ".pyx", ".pxd")


def has_compiled_kernels(package_dir):
    """Whether ``package_dir/_kernels`` holds an extension module this interpreter can import."""
    try:
        names = os.listdir(os.path.join(package_dir, "_kernels"))
    except OSError:
        return False
    for name in names:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            # "_conv.cpython-312-x86_64-linux-gnu.so" also ends in ".so", but as "_conv.cpython-312-..."
            # it is no module name: only a dot-free stem is importable under this suffix
            if name.endswith(suffix) and "." not in name[: -len(suffix)]:
                return True
    return False


def package_sources(package_dir):
    """{path relative to package_dir: bytes} of the package's .py, .pyx and .pxd files."""
    sources = {}
    for folder, subfolders, files in os.walk(package_dir):
        subfolders[:] = sorted(name for name in subfolders if name != "__pycache__")
        for name in sorted(files):
            if name.endswith(_SOURCE_SUFFIXES):
                path = os.path.join(folder, name)
                with open(path, "rb") as handle:
                    sources[os.path.relpath(path, package_dir).replace(os.sep, "/")] = handle.read()
    return sources


def first_difference(ours, theirs):
    """A file that differs between two package_sources() results (or is in one only), or None."""
    for path in sorted(set(ours) | set(theirs)):
        if ours.get(path) != theirs.get(path):
            return path
    return None


def find_installed_build(name, package_dir, search_path):
    """Another copy of package `name` on `search_path` with compiled kernels and the same
    sources as `package_dir`.

    Returns (spec, None) for the first such copy, else (None, reason): why none was taken.
    """
    here = os.path.realpath(package_dir)
    ours = None
    declined = []
    for entry in search_path:
        spec = importlib.machinery.PathFinder.find_spec(name, [entry or os.curdir])
        if spec is None or not spec.submodule_search_locations:
            continue
        candidate = spec.submodule_search_locations[0]
        if os.path.realpath(candidate) == here or not has_compiled_kernels(candidate):
            continue
        if ours is None:
            ours = package_sources(package_dir)
        differing = first_difference(ours, package_sources(candidate))
        if differing is None:
            return spec, None
        declined.append(f"{candidate} was built from other sources ({name}/{differing} differs)")
    if declined:
        return None, "; ".join(declined)
    return None, "no build of these sources is installed elsewhere on sys.path"


def hand_over(name, package_dir):
    """Called first thing by the package's ``__init__``: if `package_dir` (that package's
    folder) has no compiled kernels and an installed build of the same sources is on
    sys.path, execute that build as `name` and put it in sys.modules, so that the ongoing
    ``import`` returns it (the import system returns whatever sys.modules holds once the
    package's ``__init__`` has run; the rest of this ``__init__`` then only binds names of
    the installed build's modules, which are identical).

    Returns None when this folder is the one to use (it has compiled kernels, or was handed
    over), else the reason no installed build was taken (for error messages).
    """
    if has_compiled_kernels(package_dir):
        return None
    spec, reason = find_installed_build(name, package_dir, sys.path)
    if spec is None:
        return reason
    source_package = sys.modules[name]
    # submodules this folder has loaded so far (this one): the installed build loads its own
    ours = {key: sys.modules.pop(key) for key in list(sys.modules) if key.startswith(name + ".")}
    installed = importlib.util.module_from_spec(spec)
    sys.modules[name] = installed
    try:
        spec.loader.exec_module(installed)
    except Exception as error:  # a broken install: keep importing the source folder
        for key in [key for key in sys.modules if key.startswith(name + ".")]:
            del sys.modules[key]
        sys.modules.update(ours)
        sys.modules[name] = source_package
        return f"the build at {spec.submodule_search_locations[0]} failed to import ({error!r})"
    return None
