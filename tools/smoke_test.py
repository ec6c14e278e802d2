"""Check an installed fastconv: the compiled backend imports and agrees with fastconv.reference.

    python tools/smoke_test.py [--bare]

Run it with the interpreter of the environment under test, from a folder that holds no
fastconv source (tools/build_wheels.sh runs it in a bare virtual environment). --bare also
checks that no C compiler is reachable, so that the compiled kernels can only have come from
the wheel. Exits non-zero, saying what failed, on any mismatch.
"""
import argparse
import os
import shutil
import sys


def _check(condition, message):
    if not condition:
        sys.exit(f"smoke test failed: {message}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bare", action="store_true",
                        help="also require that no C compiler is reachable")
    args = parser.parse_args()
    if args.bare:
        reachable = [name for name in ("cc", "gcc", "clang") if shutil.which(name)]
        _check(not reachable, f"a compiler is reachable on PATH: {', '.join(reachable)}")
        _check(os.environ.get("CC") == "/bin/false", "CC is not /bin/false")

    import numpy as np

    import fastconv
    from fastconv import reference

    _check(fastconv.get_backend() == "cython",
           f"get_backend() is {fastconv.get_backend()!r}, not 'cython'")
    _check(os.path.realpath(fastconv.__file__).startswith(os.path.realpath(sys.prefix)),
           f"fastconv was imported from {fastconv.__file__}, outside this environment ({sys.prefix})")

    rng = np.random.default_rng(0)
    # (x shape, w shape, stride, padding, algorithm): im2col on non-square sizes, and both
    # Winograd variants (their AVX2 build where the CPU has it) on a 16-channel 3x3 layer
    convs = [((3, 4, 11, 9), (5, 4, 3, 2), 2, 1, "im2col"),
             ((2, 16, 10, 12), (16, 16, 3, 3), 1, 1, "winograd"),
             ((2, 16, 10, 12), (16, 16, 3, 3), 1, 1, "winograd-4x4")]
    for dtype, tolerance in ((np.float32, 1e-4), (np.float64, 1e-10)):
        for x_shape, w_shape, stride, padding, algorithm in convs:
            x = rng.standard_normal(x_shape).astype(dtype)
            w = rng.standard_normal(w_shape).astype(dtype)
            b = rng.standard_normal(w_shape[0]).astype(dtype)
            out, cache = fastconv.conv2d_forward(x, w, b, stride, padding, backend="cython",
                                                 algorithm=algorithm)
            want, want_cache = reference.conv2d_forward(x, w, b, stride, padding)
            dout = rng.standard_normal(out.shape).astype(dtype)
            got = (out, *fastconv.conv2d_backward(dout, cache))
            expected = (want, *reference.conv2d_backward(dout, want_cache))
            for name, value, target in zip(("out", "dx", "dw", "db"), got, expected):
                label = f"conv {name} ({algorithm}, {np.dtype(dtype)})"
                _check(value.dtype == dtype and value.shape == target.shape,
                       f"{label}: {value.dtype} {value.shape}, expected {target.shape}")
                error = np.max(np.abs(value - target)) / max(1.0, np.max(np.abs(target)))
                _check(error <= tolerance, f"{label} differs from the reference by {error:.3g}")

        x = rng.standard_normal((3, 4, 11, 9)).astype(dtype)
        pooled, pool_cache = fastconv.max_pool2d_forward(x, 3, 2, backend="cython")
        want_pooled, want_pool_cache = reference.max_pool2d_forward(x, 3, 2)
        _check(np.array_equal(pooled, want_pooled), f"max pool forward ({np.dtype(dtype)}) differs")
        dpool = rng.standard_normal(pooled.shape).astype(dtype)
        _check(np.array_equal(fastconv.max_pool2d_backward(dpool, pool_cache),
                              reference.max_pool2d_backward(dpool, want_pool_cache)),
               f"max pool backward ({np.dtype(dtype)}) differs")

    from fastconv import _compiled

    print(f"ok: fastconv {fastconv.__version__}, compiled backend ({_compiled.winograd.__name__} for "
          f"Winograd), Python {sys.version.split()[0]}, numpy {np.__version__}, from "
          f"{os.path.dirname(fastconv.__file__)}")


if __name__ == "__main__":
    main()
