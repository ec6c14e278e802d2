"""Build the Cython kernels: optimised, with OpenMP when the compiler has it.

Build switches (environment variables, all off by default):
  FASTCONV_BOUNDSCHECK=1  compile with Cython bounds and wraparound checks on
  FASTCONV_ASAN=1         compile and link with -fsanitize=address
  FASTCONV_NATIVE=1       add -march=native (not for distributable wheels)
  FASTCONV_NO_OPENMP=1    build without OpenMP even if the compiler has it
"""
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

KERNELS = ["_im2col", "_conv", "_pool", "_winograd", "_depthwise", "_norm", "_elementwise",
           "_optim", "_linear"]


def _flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _compiles(source, flags):
    """Whether the configured C compiler compiles and links `source` with these flags."""
    if sys.platform == "win32":
        return False
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    compiler = os.environ.get("CC", compiler).split()[0]
    if shutil.which(compiler) is None:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "probe.c")
        with open(path, "w") as handle:
            handle.write(source)
        result = subprocess.run(
            [compiler, *flags, path, "-o", os.path.join(tmp, "probe")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    return result.returncode == 0


def _compiler_has_openmp():
    """Try to compile and link a tiny OpenMP program with the configured C compiler."""
    if _flag("FASTCONV_NO_OPENMP"):
        return False
    return _compiles("#include <omp.h>\nint main(void){return omp_get_max_threads() < 1;}\n",
                     ["-fopenmp"])


# Compiled a second time for AVX2 and FMA, as _winograd_avx2, on x86-64 (the default build
# targets the baseline x86-64 instruction set); fastconv._compiled picks it at import where
# the CPU has both (docs/performance.md: "AVX2 build of the Winograd kernels"). Likewise
# _norm_avx2 (docs/normalization.md: 4-wide float64 lanes, 20-40% faster).
AVX2_KERNELS = {"_winograd_avx2": ["-mavx2", "-mfma"], "_norm_avx2": ["-mavx2", "-mfma"]}


# Extra flags of single kernel modules. The optimiser loops take square roots: without errno
# to set (C's sqrt sets it for a negative input, which these never see) the compiler can
# vectorise them; results are the same.
KERNEL_FLAGS = {"_optim": ["-fno-math-errno"]}


def _x86_64():
    return platform.machine().lower() in ("x86_64", "amd64")


def _extensions():
    compile_args = ["-O3"]
    link_args = []
    if _compiler_has_openmp():
        compile_args.append("-fopenmp")
        link_args.append("-fopenmp")
    else:
        print("fastconv: building without OpenMP (kernels run single-threaded)")
    if _flag("FASTCONV_NATIVE"):
        compile_args.append("-march=native")
    if _flag("FASTCONV_ASAN"):
        compile_args += ["-fsanitize=address", "-fno-omit-frame-pointer", "-O1"]
        link_args.append("-fsanitize=address")
    checks = _flag("FASTCONV_BOUNDSCHECK")
    directives = {
        "language_level": 3,
        "boundscheck": checks,
        "wraparound": False,  # so the checked build also rejects negative indices
        "initializedcheck": checks,
        "cdivision": True,
    }
    kernels = {name: list(KERNEL_FLAGS.get(name, ())) for name in KERNELS}
    if _x86_64():
        for name, flags in AVX2_KERNELS.items():
            if _compiles("int main(void){return 0;}\n", flags):
                kernels[name] = flags
            else:
                print(f"fastconv: the compiler does not take {' '.join(flags)}; not building {name}")
    extensions = [
        Extension(
            f"fastconv._kernels.{name}",
            [f"fastconv/_kernels/{name}.pyx"],
            include_dirs=[numpy.get_include()],
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
            extra_compile_args=compile_args + flags,
            extra_link_args=link_args,
        )
        for name, flags in kernels.items()
    ]
    # A separate folder per configuration, so switching a switch regenerates the C.
    variant = "checked" if checks else "release"
    return cythonize(extensions, compiler_directives=directives, build_dir=f"build/cython-{variant}")


setup(ext_modules=_extensions())
