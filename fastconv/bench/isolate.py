"""`--isolate`: every library timed in worker processes of its own, alternating between libraries.

In one process the libraries share more than the machine: thread pools left spinning, caches,
the allocator's state, and PyTorch's CPU convolutions, whose forward runs up to 3.5x faster
once a backward has run in the process. Here the parent sends each worker a JSON spec
(family, case, passes, library, dtype, threads, seed, settings); the worker
(`python -m fastconv.bench._worker`, run_spec below) rebuilds the inputs and the callable
itself, times it and prints JSON. Each case runs `processes` workers per library, in an order
rotated by one each round (fastconv torch reference, torch reference fastconv, ...); a
library's figure is the median over its processes of each process's median call.
"""
import json
import os
import statistics
import subprocess
import sys

from . import nets, operations, runner, suite

# Worker processes per library and case: by the run's settings name.
PROCESSES = {"tiny": 1, "quick": 3, "full": 5}
WORKER = "fastconv.bench._worker"
# A worker that has not answered in this long is stopped (and reported as failed).
WORKER_TIMEOUT = 900


# --- the worker side --------------------------------------------------------------------

def _suite_case(name, tiny):
    cases = list(suite.all_cases(tiny=tiny))
    if not tiny:
        from . import networks

        cases += networks.all_cases()
    for case in cases:
        if case.name == name:
            return case
    raise KeyError(f"no suite case named {name!r}")


def _warm_up_process(function, settings, first):
    """Untimed calls: settings.process_warmup_calls of them, fewer if they would take longer
    than settings.process_warmup_seconds (by the first call's time)."""
    calls = settings.process_warmup_calls
    if settings.process_warmup_seconds:
        calls = min(calls, int(settings.process_warmup_seconds // max(first, 1e-9)))
    for _ in range(calls):
        function()


def _time_in_process(function, settings, budget=None):
    """{"times": per-call seconds} of `function` in this process, or {"skipped": why}.

    The first call, the process warm-up (_warm_up_process) and a second call warm up; the
    faster of the two timed ones sets how many calls fill settings.blocks *
    settings.block_seconds (at least 3, at most blocks * max_calls_per_block); then untimed
    calls for block_warmup_seconds and the timed calls, with the garbage collector paused.
    """
    first = runner._timed(function)
    if budget is not None and first > budget:
        return {"skipped": f"skipped: too slow (one call took {first:.1f} s, budget {budget:g} s)"}
    _warm_up_process(function, settings, first)
    estimate = min(first, runner._timed(function))
    total_seconds = settings.blocks * settings.block_seconds
    count = int(min(max(3, total_seconds // max(estimate, 1e-9)),
                    settings.blocks * settings.max_calls_per_block))
    warmup = 0 if not settings.block_warmup_seconds else int(
        min(settings.max_calls_per_block, settings.block_warmup_seconds // max(estimate, 1e-9)))
    with runner._gc_paused():
        for _ in range(warmup):
            function()
        times = [runner._timed(function) for _ in range(count)]
    return {"times": times}


def run_spec(spec):
    """Run one worker spec in this process; the JSON-able result.

    spec : {"family", "case", "passes" (list), "library" ("fastconv", "torch" or
    "reference"), "dtype", "threads", "seed", "tiny", "settings" (runner.Settings fields),
    "memory" (bool: trace fastconv's peak memory of each pass)}.
    Returns {"library", "passes": {pass: {"times": [...]} or {"skipped": reason}, plus
    "peak_bytes"/"held_bytes" with memory}, "torch_warmed" (bool)}.
    """
    library = spec["library"]
    torch = None
    if library == "torch":
        import torch
    import fastconv
    from fastconv import reference

    settings = runner.Settings(**spec["settings"])
    dtype, seed, tiny = spec["dtype"], spec.get("seed", 0), spec.get("tiny", False)
    result = {"library": library, "passes": {}, "torch_warmed": False}
    with runner.thread_limits(spec["threads"], torch):
        if spec["family"] == nets.FAMILY:
            case = nets.find(spec["case"], tiny=tiny)
            if library == "fastconv":
                calls = {case.pass_name: nets.fastconv_call(case, dtype, seed)}
            elif library == "torch":
                calls = {case.pass_name: nets.torch_call(torch, case, dtype, seed)}  # warmed
                result["torch_warmed"] = True
            else:
                raise ValueError("the reference is not timed on networks")
        else:
            case = _suite_case(spec["case"], tiny)
            inputs = operations.make_inputs(case, dtype, seed)
            if library == "torch":
                # one forward+backward before anything is timed: the harder baseline
                operations.torch_call(torch, case, "forward+backward", inputs)()
                result["torch_warmed"] = True
            calls = {}
            for pass_name in spec["passes"]:
                if library == "torch":
                    calls[pass_name] = operations.torch_call(torch, case, pass_name, inputs)
                elif library == "fastconv":
                    calls[pass_name] = operations.numpy_call(fastconv, case, pass_name, inputs,
                                                             backend="cython")
                else:
                    calls[pass_name] = operations.numpy_call(reference, case, pass_name, inputs)
        budget = settings.reference_budget if library == "reference" else None
        for pass_name, function in calls.items():
            timed = _time_in_process(function, settings, budget)
            if spec.get("memory") and "times" in timed:
                timed["peak_bytes"], timed["held_bytes"] = runner.traced_memory(function)
            result["passes"][pass_name] = timed
            if "skipped" in timed:
                # forward+backward includes a forward: over budget too
                for later in list(calls)[list(calls).index(pass_name) + 1:]:
                    result["passes"][later] = {"skipped": "skipped: too slow (its forward alone "
                                                          "was over budget)"}
                break
    return result


# --- the parent side --------------------------------------------------------------------

def _environment():
    """os.environ for a worker that imports this same fastconv (installed or in place)."""
    import fastconv

    package_root = os.path.dirname(os.path.dirname(os.path.abspath(fastconv.__file__)))
    path = os.environ.get("PYTHONPATH")
    return dict(os.environ, PYTHONPATH=package_root + (os.pathsep + path if path else ""))


def run_worker(spec, timeout=WORKER_TIMEOUT):
    """Run one spec in a fresh `python -m fastconv.bench._worker`; its result. A worker that
    fails raises RuntimeError with its error output."""
    completed = subprocess.run(
        [sys.executable, "-m", WORKER], input=json.dumps(spec), capture_output=True, text=True,
        env=_environment(), timeout=timeout,
    )
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines:
        raise RuntimeError(
            f"benchmark worker for {spec['library']} {spec['case']} failed (exit code "
            f"{completed.returncode}):\n{completed.stderr.strip()[-2000:]}"
        )
    return json.loads(lines[-1])


def _libraries(family, with_torch):
    names = ["fastconv"]
    if with_torch:
        names.append("torch")
    if family != nets.FAMILY:
        names.append("reference")
    return names


def _rotations(libraries, processes):
    """The worker order: `processes` rounds, each every library once, rotated by one a round."""
    order = []
    for round_index in range(processes):
        shift = round_index % len(libraries)
        order += libraries[shift:] + libraries[:shift]
    return order


def measure(case, passes, *, dtype, settings, threads, seed, tiny, with_torch, processes,
            progress=None, run=run_worker):
    """{pass: {library: (per-process median seconds list, skipped reason or None, raw
    per-process times)}} and fastconv's {pass: (peak, held)} for one case.

    run : the function that runs a spec (run_worker; the tests pass run_spec to stay in process).
    """
    libraries = _libraries(case.family, with_torch)
    medians = {pass_name: {name: [] for name in libraries} for pass_name in passes}
    raw = {pass_name: {name: [] for name in libraries} for pass_name in passes}
    skipped = {pass_name: {} for pass_name in passes}
    memory = {}
    for library in _rotations(libraries, processes):
        todo = [pass_name for pass_name in passes if library not in skipped[pass_name]]
        if not todo:
            continue
        if progress is not None:
            progress.show(f"{case.name} {library} (own process)")
        spec = {
            "family": case.family, "case": case.name, "passes": todo, "library": library,
            "dtype": str(dtype), "threads": threads, "seed": seed, "tiny": tiny,
            "settings": vars(settings), "memory": library == "fastconv" and not memory,
        }
        result = run(spec)
        for pass_name in todo:
            timed = result["passes"][pass_name]
            if "skipped" in timed:
                skipped[pass_name][library] = timed["skipped"]
                continue
            medians[pass_name][library].append(statistics.median(timed["times"]))
            raw[pass_name][library].append(timed["times"])
            if "peak_bytes" in timed:
                memory[pass_name] = (timed["peak_bytes"], timed["held_bytes"])
    return medians, skipped, raw, memory


def run_cases(suite_cases, net_cases, *, dtype, settings, settings_name, threads, seed=0,
              tiny=False, with_torch=True, processes=None, progress=None, after_case=None,
              run=run_worker):
    """Rows (as the in-process bench's) for every suite case x pass and every net, each
    library timed in its own processes. Run the parent outside thread_limits or inside: the
    workers set their own."""
    processes = PROCESSES[settings_name] if processes is None else processes
    rows = []
    for case in list(suite_cases) + list(net_cases):
        passes = [case.pass_name] if case.family == nets.FAMILY else list(operations.PASSES)
        medians, skipped, raw, memory = measure(
            case, passes, dtype=dtype, settings=settings, threads=threads, seed=seed, tiny=tiny,
            with_torch=with_torch, processes=processes, progress=progress, run=run)
        for pass_name in passes:
            timings = {
                name: runner.Timing(skipped=skipped[pass_name][name]) if name in skipped[pass_name]
                else runner.Timing(times=values)
                for name, values in medians[pass_name].items()
            }
            peak, held = memory.get(pass_name, (None, None))
            if case.family == nets.FAMILY:
                torch_timing = timings.get("torch")
                row = nets.make_row(case, dtype, timings["fastconv"].median * 1e3,
                                    None if torch_timing is None else torch_timing.median * 1e3,
                                    {}, peak, held)
            else:
                row = runner.case_row(case, pass_name, str(dtype), timings, peak, held)
            # times_ms: each process's median call; process_times_ms: every call, by process
            row["times_ms"] = {name: [value * 1e3 for value in values]
                               for name, values in medians[pass_name].items() if values}
            row["process_times_ms"] = {name: [[value * 1e3 for value in times] for times in runs]
                                       for name, runs in raw[pass_name].items() if runs}
            row["timing"] = "own processes"
            rows.append(row)
            if progress is not None:
                progress.advance()
        if after_case is not None:
            after_case()
    return rows


def notes(processes):
    """Footer lines on how --isolate timed."""
    return [
        f"--isolate: each library timed in {processes} worker process(es) of its own per case "
        "(python -m fastconv.bench._worker, rebuilding its inputs from the seed), libraries "
        "alternating (rotated by one each round); a figure is the median over the processes of "
        "each process's median call; the same thread count in every process",
        "torch in its own processes: every torch worker runs one forward+backward of the layer "
        "or net before timing anything (PyTorch's CPU convolution forward runs up to 3.5x faster "
        "once a backward has run in its process: the harder baseline)",
    ]
