"""Coverage-guided fuzzing of the convolution kinds: compiled against the reference twin.

    python tools/fuzz_conv.py -max_total_time=600      # libFuzzer options pass through
    bash tools/fuzz.sh 600                             # the same under an AddressSanitizer build

Each input drives one problem: rank 1-3, sizes, kernel, stride, dilation, padding (an int, per
axis, per side, "same" or "valid"), padding mode, groups (depthwise included), dtype, memory
layout, thread count and algorithm (any that supports the geometry), or a transposed
convolution with output_padding. Invalid combinations must raise ValueError/TypeError
(anything else is a finding); valid ones must give the reference's out, dx, dw and db within
the tolerance tests/test_conv_kinds.py uses, and never write their inputs. atheris instruments
fastconv's Python modules, so the planner's and the fronts' branches guide the search.
"""
import glob
import os
import sys

import atheris

# the checkout this script is in when it has an in-place build; else the installed fastconv
_CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if glob.glob(os.path.join(_CHECKOUT, "fastconv", "_kernels", "_conv.*.so")):
    sys.path.insert(0, _CHECKOUT)
# the tests' memory layouts (tests/_helpers.py), so the fuzzer feeds the same ones
sys.path.append(os.path.join(_CHECKOUT, "tests"))

with atheris.instrument_imports(include=["fastconv"]):
    import numpy as np

    import fastconv
    from fastconv import reference

from _helpers import LAYOUTS, with_layout  # noqa: E402

MODES = ("zeros", "reflect", "replicate", "circular")


class Finding(AssertionError):
    """A mismatch between the compiled backend and the reference, or a wrong error type."""


def _problem(data):
    """The arguments of one call, drawn from the fuzzer's bytes."""
    ndim = data.ConsumeIntInRange(1, 3)
    largest = {1: 14, 2: 9, 3: 5}[ndim]
    transposed = data.ConsumeIntInRange(0, 4) == 0
    groups = data.PickValueInList([1, 1, 2, 3])
    channels = groups * data.ConsumeIntInRange(1, 3)
    filters = groups * data.ConsumeIntInRange(1, 3)
    depthwise = not transposed and data.ConsumeIntInRange(0, 3) == 0
    if depthwise:
        groups = channels = data.ConsumeIntInRange(1, 6)
        filters = channels * data.ConsumeIntInRange(1, 2)
    size = tuple(data.ConsumeIntInRange(0 if data.ConsumeIntInRange(0, 20) == 0 else 1, largest)
                 for _ in range(ndim))
    kernel = tuple(data.ConsumeIntInRange(1, 4) for _ in range(ndim))
    stride = tuple(data.ConsumeIntInRange(1, 3) for _ in range(ndim))
    dilation = tuple(data.ConsumeIntInRange(1, 3) for _ in range(ndim))
    dtype = data.PickValueInList([np.float32, np.float64])
    batch = data.ConsumeIntInRange(0 if data.ConsumeIntInRange(0, 20) == 0 else 1, 3)
    options = {"stride": stride, "dilation": dilation, "groups": groups}
    form = data.ConsumeIntInRange(0, 4)
    if transposed:
        options["padding"] = tuple(data.ConsumeIntInRange(0, 2) for _ in range(ndim))
        options["output_padding"] = tuple(data.ConsumeIntInRange(0, 2) for _ in range(ndim))
        w_shape = (channels, filters // groups) + kernel
    else:
        options["padding"] = (data.ConsumeIntInRange(0, 3) if form == 0 else
                              tuple(data.ConsumeIntInRange(0, 3) for _ in range(ndim)) if form == 1 else
                              tuple(data.ConsumeIntInRange(0, 3) for _ in range(2 * ndim)) if form == 2 else
                              "same" if form == 3 else "valid")
        options["padding_mode"] = data.PickValueInList(list(MODES))
        w_shape = (filters, channels // groups) + kernel
    seed = data.ConsumeIntInRange(0, 2**16)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, channels) + size).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(filters).astype(dtype) if data.ConsumeBool() else None
    layout = data.PickValueInList(list(LAYOUTS))
    threads = data.ConsumeIntInRange(1, 3)
    choice = data.ConsumeIntInRange(0, 7)
    return ndim, transposed, x, w, b, options, layout, threads, choice


def _close(got, want, dtype, what):
    scale = max(float(np.max(np.abs(want), initial=0.0)), 1.0)
    tolerance = 2e-4 if dtype == np.float32 else 1e-9  # Winograd's float32 bound, generously
    error = float(np.max(np.abs(got.astype(np.float64) - want), initial=0.0))
    if got.shape != want.shape or got.dtype != want.dtype or not error <= tolerance * scale:
        raise Finding(f"{what}: shape {got.shape}/{want.shape}, dtype {got.dtype}/{want.dtype}, "
                      f"max error {error:.3e} at scale {scale:.3e}")


def test_one_input(raw):
    data = atheris.FuzzedDataProvider(raw)
    ndim, transposed, x, w, b, options, layout, threads, choice = _problem(data)
    name = f"conv{'_transpose' if transposed else ''}{ndim}d"
    try:
        expected, ref_cache = getattr(reference, f"{name}_forward")(x, w, b, **options)
    except (ValueError, TypeError):
        # invalid: the compiled front must refuse it the same way, never crash
        try:
            getattr(fastconv, f"{name}_forward")(x, w, b, **options, backend="cython")
        except (ValueError, TypeError):
            return
        raise Finding(f"{name} accepted what the reference refused: {options}, x {x.shape}, w {w.shape}")
    if expected.size > 200_000:
        return  # keep each input fast
    fastconv.set_num_threads(threads)
    if len(fastconv.planner._wisdom) > 10_000:  # "measure" remembers every problem
        fastconv.forget_wisdom()
    inputs = [None if a is None else with_layout(a, layout) for a in (x, w, b)]
    saved = [None if a is None else a.copy() for a in inputs]
    geometry = ref_cache.window
    names = ["auto", "measure"] + fastconv.available_algorithms(geometry)
    algorithm = names[choice % len(names)]
    out, cache = getattr(fastconv, f"{name}_forward")(*inputs, **options, backend="cython",
                                                      algorithm=algorithm)
    _close(out, expected, x.dtype, f"{name} out ({algorithm}, {options})")
    dout = np.random.default_rng(1).standard_normal(out.shape).astype(x.dtype)
    got = getattr(fastconv, f"{name}_backward")(dout, cache)
    want = getattr(reference, f"{name}_backward")(dout, ref_cache)
    for part, g, e in zip(("dx", "dw", "db"), got, want):
        if e is None:
            if g is not None:
                raise Finding(f"{name} {part}: expected None")
            continue
        _close(g, e, x.dtype, f"{name} {part} ({algorithm}, {options})")
    for given, before in zip(inputs, saved):
        if given is not None and not np.array_equal(given, before):
            raise Finding(f"{name} wrote one of its inputs ({options})")


def main():
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
