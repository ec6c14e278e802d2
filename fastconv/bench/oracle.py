"""`--oracle`: for each conv layer, algorithm="auto" beside every algorithm that supports it.

Every candidate runs in the same process on the same arrays, in rotating blocks (runner's
time_alternating), so the ratios compare like with like. For forward+backward, an explicit
algorithm runs its own backward; "auto" plans its backward separately (the planner may pick
another algorithm for it), so auto can come out below every single algorithm.
"""
import fastconv

from . import operations, runner

PASSES = operations.PASSES


def _calls(case, pass_name, inputs, names):
    """{label: callable}: "auto" first, then each algorithm name."""
    calls = {"auto": operations.numpy_call(fastconv, case, pass_name, inputs, backend="cython")}
    for name in names:
        calls[name] = operations.numpy_call(fastconv, case, pass_name, inputs, backend="cython",
                                            algorithm=name)
    return calls


def measure_case(case, pass_name, inputs, settings):
    """One oracle row: per-call medians (ms) of auto and every supported algorithm."""
    names = fastconv.available_algorithms(case.window)
    timings = runner.time_alternating(_calls(case, pass_name, inputs, names), settings)
    times = {label: timing.median * 1e3 for label, timing in timings.items()}
    _, cache = fastconv.conv2d_forward(inputs["x"], inputs["w"], inputs["b"], case.stride,
                                       case.padding, groups=case.groups)
    best = min(names, key=lambda name: times[name])
    backward = (fastconv.planner.choose(cache.window, inputs["x"].dtype, "auto", "backward").NAME
                if pass_name != "forward" else None)
    return {
        "case": case.name,
        "family": case.family,
        "count": case.count,
        "shape": case.describe(),
        "pass": pass_name,
        "dtype": str(inputs["x"].dtype),
        "auto_choice": cache.algorithm,
        "auto_backward": backward,
        "auto_ms": times["auto"],
        "best": best,
        "best_ms": times[best],
        "auto_over_best": times["auto"] / times[best],
        "choice_over_best": (None if backward not in (None, cache.algorithm)
                             else times[cache.algorithm] / times[best]),
        "algorithm_ms": {name: times[name] for name in names},
        "times_ms": {label: [t * 1e3 for t in timing.times] for label, timing in timings.items()},
    }


def run(cases, *, dtype, settings, progress=None, seed=0):
    rows = []
    for case in cases:
        if case.kind != "conv":
            continue
        inputs = operations.make_inputs(case, dtype, seed)
        for pass_name in PASSES:
            if progress is not None:
                progress.show(f"oracle {operations.SHORT_PASS[pass_name]} {case.name}")
            rows.append(measure_case(case, pass_name, inputs, settings))
            if progress is not None:
                progress.advance()
    return rows


def table(rows):
    """The oracle table as text: per layer and pass, auto's pick and time, the best and the
    ratio, then every algorithm's time."""
    lines = []
    header = ["case", "pass", "auto (fwd; bwd)", "auto ms", "best", "best ms", "auto/best",
              "every algorithm (ms)"]
    for row in rows:
        pick = row["auto_choice"] + (f"; {row['auto_backward']}" if row["auto_backward"] else "")
        others = ", ".join(f"{name} {ms:.2f}" for name, ms in row["algorithm_ms"].items())
        lines.append([row["case"], operations.SHORT_PASS[row["pass"]], pick, f"{row['auto_ms']:.2f}",
                      row["best"], f"{row['best_ms']:.2f}", f"{row['auto_over_best']:.2f}", others])
    widths = [max(len(cell) for cell in column) for column in zip(header, *lines)]
    out = ["  ".join(cell.ljust(width) for cell, width in zip(header, widths)).rstrip(),
           "  ".join("-" * width for width in widths)]
    out += ["  ".join(cell.ljust(width) if i in (0, 1, 2, 4, 7) else cell.rjust(width)
                      for i, (cell, width) in enumerate(zip(cells, widths))).rstrip()
            for cells in lines]
    return "\n".join(out)


def summary(rows):
    """Per pass: the worst and the geometric mean of auto/best, over every layer."""
    from .report import geometric_mean

    lines = []
    for pass_name in PASSES:
        ratios = [row["auto_over_best"] for row in rows if row["pass"] == pass_name]
        if ratios:
            worst = max((row for row in rows if row["pass"] == pass_name),
                        key=lambda row: row["auto_over_best"])
            lines.append(f"auto/best {operations.SHORT_PASS[pass_name]:8}: geometric mean "
                         f"{geometric_mean(ratios):.3f}, worst {worst['auto_over_best']:.2f} "
                         f"({worst['case']}), over {len(ratios)} layers")
    for pass_name in PASSES:
        picked = [row for row in rows if row["pass"] == pass_name
                  and row.get("choice_over_best") is not None]
        mixed = sum(row["pass"] == pass_name for row in rows) - len(picked)
        if picked:
            ratios = [row["choice_over_best"] for row in picked]
            worst = max(picked, key=lambda row: row["choice_over_best"])
            lines.append(
                f"choice/best {operations.SHORT_PASS[pass_name]:8}: geometric mean "
                f"{geometric_mean(ratios):.3f}, worst {worst['choice_over_best']:.2f} "
                f"({worst['case']}), {sum(r > 1.15 for r in ratios)} above 1.15, over "
                f"{len(ratios)} layers" + (f" ({mixed} with forward and backward on different "
                                           f"algorithms left out)" if mixed else ""))
    if any(row.get("choice_over_best") is not None for row in rows):
        lines.append("(choice/best: the chosen algorithm's own entry in the same rotation, "
                     "so free of the noise between two entries running the same code)")
    return "\n".join(lines)
