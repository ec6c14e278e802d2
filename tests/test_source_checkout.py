"""fastconv._source_checkout: when a source folder hands its import over to an installed build, and when never.

Each case lays out a small stand-in package twice in a temporary folder, a "checkout" and an
"installed" copy, and imports it in a fresh interpreter with both on sys.path, checkout first
(as `python -m` at a clone's root puts the current folder first). The compiled kernels are
stood in for by files with this interpreter's extension-module names: only names are looked at.
"""
import importlib.machinery
import textwrap

import pytest

from fastconv import _source_checkout

PACKAGE = "fcprobe"
INIT = textwrap.dedent('''
    """stand-in package"""
    from fastconv._source_checkout import hand_over as _hand_over
    _CHECKOUT_NOTE = _hand_over(__name__, __path__[0])
    from . import helper
    ''')
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


def _lay_out(root, *, kernels, helper="VALUE = 1\n"):
    package = root / PACKAGE
    (package / "_kernels").mkdir(parents=True)
    (package / "__init__.py").write_text(INIT)
    (package / "helper.py").write_text(helper)
    (package / "_kernels" / "__init__.py").write_text("")
    (package / "_kernels" / "_conv.pyx").write_text("# kernel source\n")
    if kernels:
        (package / "_kernels" / f"_conv{SUFFIX}").write_bytes(b"\x7fELF stand-in")
    return package


def _import_both(run_python, tmp_path):
    completed = run_python(f"""
        import sys
        sys.path[:0] = [{str(tmp_path / 'checkout')!r}, {str(tmp_path / 'installed')!r}]
        import {PACKAGE}, {PACKAGE}.helper
        print({PACKAGE}.__file__)
        print({PACKAGE}.helper.__file__)
        print({PACKAGE}._CHECKOUT_NOTE)
        print(sys.modules[{PACKAGE!r}] is {PACKAGE})
        """)
    assert completed.returncode == 0, completed.stderr
    return completed.stdout.splitlines()


def test_a_checkout_without_kernels_imports_the_installed_build_of_its_sources(run_python, tmp_path):
    _lay_out(tmp_path / "checkout", kernels=False)
    installed = _lay_out(tmp_path / "installed", kernels=True)
    package_file, helper_file, note, same = _import_both(run_python, tmp_path)
    assert package_file == str(installed / "__init__.py")
    assert helper_file == str(installed / "helper.py")  # its submodules come from there too
    assert note == "None" and same == "True"


def test_an_in_place_build_is_always_imported(run_python, tmp_path):
    checkout = _lay_out(tmp_path / "checkout", kernels=True)
    _lay_out(tmp_path / "installed", kernels=True)
    package_file, helper_file, note, _ = _import_both(run_python, tmp_path)
    assert package_file == str(checkout / "__init__.py") and note == "None"


def test_an_installed_build_of_other_sources_is_not_taken(run_python, tmp_path):
    checkout = _lay_out(tmp_path / "checkout", kernels=False, helper="VALUE = 2  # edited\n")
    _lay_out(tmp_path / "installed", kernels=True)
    package_file, _, note, _ = _import_both(run_python, tmp_path)
    assert package_file == str(checkout / "__init__.py")
    assert "built from other sources" in note and f"{PACKAGE}/helper.py differs" in note


def test_nothing_installed(run_python, tmp_path):
    checkout = _lay_out(tmp_path / "checkout", kernels=False)
    (tmp_path / "installed").mkdir()
    package_file, _, note, _ = _import_both(run_python, tmp_path)
    assert package_file == str(checkout / "__init__.py")
    assert note == "no build of these sources is installed elsewhere on sys.path"


def test_an_installed_copy_without_kernels_is_not_taken(run_python, tmp_path):
    checkout = _lay_out(tmp_path / "checkout", kernels=False)
    _lay_out(tmp_path / "installed", kernels=False)
    package_file, _, _, _ = _import_both(run_python, tmp_path)
    assert package_file == str(checkout / "__init__.py")


@pytest.mark.parametrize("name, compiled", [
    (f"_conv{SUFFIX}", True),
    ("_conv.so", True),  # a plain .so imports too
    ("_conv.cpython-27-x86_64-linux-gnu.so", False),  # another interpreter's build
    ("_conv.pyx", False),
    ("_conv.c", False),
])
def test_has_compiled_kernels(tmp_path, name, compiled):
    (tmp_path / "_kernels").mkdir()
    (tmp_path / "_kernels" / name).write_text("")
    assert _source_checkout.has_compiled_kernels(str(tmp_path)) is compiled


def test_package_sources_skip_caches_and_build_products(tmp_path):
    package = _lay_out(tmp_path, kernels=True)
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "helper.cpython-311.pyc").write_bytes(b"cached")
    (package / "_kernels" / "_tiles.pxd").write_text("# shared prototypes\n")
    sources = _source_checkout.package_sources(str(package))
    assert sorted(sources) == ["__init__.py", "_kernels/__init__.py", "_kernels/_conv.pyx",
                               "_kernels/_tiles.pxd", "helper.py"]
    assert _source_checkout.first_difference(sources, dict(sources)) is None
    assert _source_checkout.first_difference(sources, {**sources, "extra.py": b""}) == "extra.py"
