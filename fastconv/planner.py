"""Which algorithm runs a convolution: the one place that decides.

- An explicit name: that algorithm, checked against the geometry (UnsupportedAlgorithm if it
  cannot do it); the old name "winograd" resolves by stride.
- "auto" (the default): the plan remembered for this problem (wisdom: learned by "measure"
  earlier in the process, or loaded with load_wisdom), else the supported algorithm with the
  lowest cost by the cost model. Nothing is timed.
- "measure": wisdom if there is some for this problem, else every supported algorithm is run
  twice on the call's own arrays and the faster second run wins, once per problem; the
  winner becomes wisdom (FFTW's planner does this for FFTs).

A problem is (pass, dtype, thread count, geometry). Passes: "forward", "backward" (dx and dW),
"backward-data" (dx alone: a transposed convolution's forward), "backward-weights" (dW
alone) and "inference" (a forward through conv_inference, with a layer's weights: its cost
leaves out the weight transforms the Winograd algorithms keep between such calls). The
forward's choice does not bind the backward: under "auto" and "measure" each pass is
planned on its own.

The cost model: each algorithm module's cost(geometry, machine, pass_name) estimates seconds
from the work its own plan does (GEMMs, transforms, copies) and how many threads that plan keeps
busy; `Machine` turns work into seconds with the calibrated rates of _tuning.COST_MODEL
(docs/performance.md, "The cost model", says how they were measured).
"""
import json
import math
import os
import threading
import time
import warnings

import numpy as np

from . import _tuning, algorithms
from ._geometry import PADDING_MODES, ConvGeometry
from ._settings import get_num_threads

PASSES = ("forward", "backward", "backward-data", "backward-weights", "inference")
PLANNING = ("auto", "measure")


# ---- the cost model -------------------------------------------------------------------

class Machine:
    """What work costs here, in seconds: GEMMs by their sizes, elementwise work by kind, and
    how tasks spread over threads. `constants`: one dtype's entry of _tuning.COST_MODEL."""

    def __init__(self, dtype, threads, constants=None, weights_kept=False):
        self.dtype = np.dtype(dtype)
        self.threads = threads
        self.constants = constants or _tuning.COST_MODEL[self.dtype.name]
        # an inference pass: algorithms that keep their weight transform (KEEPS_WEIGHTS)
        # do not pay for it on the call
        self.weights_kept = weights_kept

    def gemm(self, m, n, k, calls=1, layout="nn"):
        """Seconds of `calls` products (m x k) @ (k x n) on one thread. The rate saturates
        with each dimension: peak * m/(m + m_half) * n/(n + n_half) * k/(k + k_half), plus a
        fixed cost per call."""
        if m <= 0 or n <= 0 or k <= 0 or calls <= 0:
            return 0.0
        c = self.constants["gemm"][layout]
        rate = c["peak"] * m / (m + c["m_half"]) * n / (n + c["n_half"]) * k / (k + c["k_half"])
        return calls * (2.0 * m * n * k / rate + c["call"])

    def work(self, kind, count):
        """Seconds of `count` elements of an elementwise kind of work on one thread."""
        return count * self.constants["elements"][kind]

    def call(self, name):
        """The fixed cost of one call of an algorithm: validation, planning, allocation, waking
        the threads."""
        calls = self.constants["calls"]
        return calls.get(name, calls["default"])

    def spread(self, seconds, tasks, threads):
        """Wall seconds of `seconds` of work cut into `tasks` equal tasks run on `threads`
        threads: whole tasks per thread, and a measured efficiency for a second thread."""
        threads = max(1, min(threads, tasks))
        if threads == 1 or tasks <= 1:
            return seconds
        rounds = math.ceil(tasks / threads)
        return seconds * rounds / tasks / self.constants["parallel_efficiency"]


def machine(dtype, threads=None, weights_kept=False):
    return Machine(dtype, get_num_threads() if threads is None else threads,
                   weights_kept=weights_kept)


def costs(geometry, dtype, pass_name="forward", threads=None):
    """{name: estimated seconds} of every supported algorithm for this pass (an "inference"
    is costed as a forward on a Machine with weights_kept)."""
    inference = pass_name == "inference"
    here = machine(dtype, threads, weights_kept=inference)
    pass_name = "forward" if inference else pass_name
    return {module.NAME: module.cost(geometry, here, pass_name) + here.call(module.NAME)
            for module in algorithms.supporting(geometry)}


# ---- plans: the cost model's, the measured ones, the remembered ones -------------------

_lock = threading.Lock()
_modelled = {}  # problem key -> algorithm name, the cost model's choice (a cache)
_wisdom = {}    # problem key -> algorithm name, measured here or loaded


def _key(geometry, dtype, pass_name, threads=None):
    return (pass_name, np.dtype(dtype).name, get_num_threads() if threads is None else threads,
            tuple(geometry))


def _no_algorithm(geometry):
    return algorithms.UnsupportedAlgorithm(
        f"no compiled algorithm handles this convolution ({geometry.describe()}; x shape "
        f"{geometry.input_shape}); backend='reference' computes it")


def _modelled_choice(geometry, dtype, pass_name, key):
    name = _modelled.get(key)
    if name is None and geometry.batch * geometry.filters * geometry.out_pixels * geometry.patch == 0:
        supported = algorithms.supporting(geometry)  # nothing to compute: any will do
        if not supported:
            raise _no_algorithm(geometry)
        name = supported[0].NAME
    if name is None:
        estimates = costs(geometry, dtype, pass_name, key[2])
        if not estimates:
            raise _no_algorithm(geometry)
        name = min(estimates, key=estimates.get)  # ties: registry order
        with _lock:
            _modelled[key] = name
    return algorithms.REGISTRY[name]


def choose(geometry, dtype, algorithm="auto", pass_name="forward"):
    """The algorithm module for this convolution pass without timing anything: for "auto"
    and "measure" the remembered plan or the cost model's choice (measure() times), else
    the named algorithm, checked."""
    if algorithm not in PLANNING:
        return algorithms.lookup(algorithm, geometry)
    key = _key(geometry, dtype, pass_name)
    name = _wisdom.get(key)
    if name is not None:
        return algorithms.REGISTRY[name]
    return _modelled_choice(geometry, dtype, pass_name, key)


def measure(geometry, dtype, pass_name, run):
    """The fastest supported algorithm for this pass, timed: run(module) runs the pass once
    by that module on the call's own arrays and returns its result. Each candidate runs
    twice (the first run pays for first-touch scratch pages and cold caches) and the faster
    second run wins. Returns (module, its result). With wisdom for the problem, no timing:
    that algorithm runs once."""
    key = _key(geometry, dtype, pass_name)
    name = _wisdom.get(key)
    if name is not None:
        module = algorithms.REGISTRY[name]
        return module, run(module)
    candidates = algorithms.supporting(geometry)
    if not candidates:
        raise _no_algorithm(geometry)
    best = result = None
    best_seconds = math.inf
    for module in candidates:
        run(module)
        start = time.perf_counter()
        outcome = run(module)
        seconds = time.perf_counter() - start
        if seconds < best_seconds:
            best, best_seconds, result = module, seconds, outcome
    with _lock:
        _wisdom[key] = best.NAME
    return best, result


def available_algorithms(geometry=None):
    """Names accepted by ``algorithm=`` besides "auto" and "measure" (registry order, then
    the aliases); with a geometry, only the registry's algorithms that can do it."""
    if geometry is None:
        return algorithms.names()
    return [module.NAME for module in algorithms.supporting(geometry)]


# ---- wisdom files ---------------------------------------------------------------------

WISDOM_FORMAT = "fastconv-wisdom"
WISDOM_VERSION = 1
_GEOMETRY_TUPLES = {"size", "kernel", "stride", "dilation", "pad_before", "pad_after", "out"}


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def _machine_description():
    """The CPU and the BLAS kernels a plan was measured with."""
    from ._blas import _blas_libraries

    libraries = sorted({f"{lib.internal_api} {getattr(lib, 'architecture', None)}"
                        for lib in _blas_libraries()})
    return {"cpu": _cpu_model(), "blas": libraries}


def save_wisdom(path):
    """Write every plan measured (or loaded) in this process to `path` as JSON: format,
    version, the machine it was measured on, and one entry per problem."""
    with _lock:
        entries = [
            {"pass": key[0], "dtype": key[1], "threads": key[2],
             "geometry": dict(zip(ConvGeometry._fields, key[3])), "algorithm": name}
            for key, name in sorted(_wisdom.items(), key=lambda item: repr(item[0]))
        ]
    document = {"format": WISDOM_FORMAT, "version": WISDOM_VERSION, "machine": _machine_description(),
                "plans": entries}
    with open(os.fspath(path), "w") as handle:
        json.dump(document, handle, indent=1)


def _wisdom_error(path, problem):
    return ValueError(f"{path} is not a usable fastconv wisdom file: {problem}")


def _entry_key(entry, path, index):
    """The problem key of one wisdom entry, every field checked."""
    where = f"plan {index}"
    if not isinstance(entry, dict) or set(entry) != {"pass", "dtype", "threads", "geometry",
                                                    "algorithm"}:
        raise _wisdom_error(path, f"{where} must have the keys pass, dtype, threads, geometry, "
                                  f"algorithm")
    if entry["pass"] not in PASSES:
        raise _wisdom_error(path, f"{where} has an unknown pass {entry['pass']!r}")
    if entry["dtype"] not in ("float32", "float64"):
        raise _wisdom_error(path, f"{where} has dtype {entry['dtype']!r}")
    threads = entry["threads"]
    if type(threads) is not int or threads < 1:
        raise _wisdom_error(path, f"{where} has threads {threads!r}")
    raw = entry["geometry"]
    if not isinstance(raw, dict) or set(raw) != set(ConvGeometry._fields):
        raise _wisdom_error(path, f"{where} has a geometry without the fields "
                                  f"{', '.join(ConvGeometry._fields)}")
    values = {}
    for field, value in raw.items():
        if field in _GEOMETRY_TUPLES:
            if not isinstance(value, list) or not 1 <= len(value) <= 3 or not all(
                    type(v) is int and v >= 0 for v in value):
                raise _wisdom_error(path, f"{where}: geometry field {field} must be 1 to 3 ints")
            values[field] = tuple(value)
        elif field == "padding_mode":
            if value not in PADDING_MODES:
                raise _wisdom_error(path, f"{where}: unknown padding_mode {value!r}")
            values[field] = value
        else:
            if type(value) is not int or value < 0:
                raise _wisdom_error(path, f"{where}: geometry field {field} must be an int >= 0")
            values[field] = value
    geometry = ConvGeometry(**values)
    name = entry["algorithm"]
    module = algorithms.REGISTRY.get(name) if isinstance(name, str) else None
    if module is None:
        raise _wisdom_error(path, f"{where} names an unknown algorithm {name!r}")
    if len({len(geometry.size), len(geometry.kernel), len(geometry.stride), len(geometry.out)}) != 1:
        raise _wisdom_error(path, f"{where}: geometry fields of different ranks")
    reason = module.supports(geometry)
    if reason is not None:
        raise _wisdom_error(path, f"{where}: algorithm {name!r} cannot do its geometry ({reason})")
    return (entry["pass"], entry["dtype"], threads, tuple(geometry)), name


def load_wisdom(path):
    """Read plans written by save_wisdom and remember them (they override the cost model
    for "auto" and spare "measure" its timing). The whole file is checked first: a file that
    is not valid wisdom (corrupt, truncated, another format or version, an unknown
    algorithm, a geometry it cannot do) raises ValueError and changes nothing. Plans measured
    on another CPU or BLAS load with a warning. Returns how many plans were loaded."""
    path = os.fspath(path)
    try:
        with open(path) as handle:
            document = json.load(handle)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _wisdom_error(path, f"not JSON ({error})") from None
    if not isinstance(document, dict) or document.get("format") != WISDOM_FORMAT:
        raise _wisdom_error(path, f"its format is not {WISDOM_FORMAT!r}")
    if document.get("version") != WISDOM_VERSION:
        raise _wisdom_error(path, f"version {document.get('version')!r}; this fastconv reads "
                                  f"version {WISDOM_VERSION}")
    plans = document.get("plans")
    if not isinstance(plans, list):
        raise _wisdom_error(path, "it has no list of plans")
    loaded = dict(_entry_key(entry, path, index) for index, entry in enumerate(plans))
    if document.get("machine") != _machine_description():
        warnings.warn(f"wisdom in {path} was measured on {document.get('machine')!r}, not on this "
                      f"machine ({_machine_description()!r}); its plans may not be the fastest "
                      "here", RuntimeWarning, stacklevel=2)
    with _lock:
        _wisdom.update(loaded)
    return len(loaded)


def forget_wisdom():
    """Drop every remembered plan (measured or loaded) and the cost model's cached choices."""
    with _lock:
        _wisdom.clear()
        _modelled.clear()
