"""Presenting results: the text table, geometric means, machine info, JSON and the bar chart."""
import json
import math
import os
import platform

from . import machine as machine_module
from .runner import usable_cores

MEMORY_METHOD = (
    "peak MiB: the most memory the fastconv call had allocated at once beyond what existed "
    "before it, outputs included, traced by tracemalloc (NumPy reports its array memory to it) "
    "in one extra untimed call"
)


def cpu_model(cpuinfo_text=None):
    """The CPU's model name from /proc/cpuinfo, else what platform knows."""
    text = machine_module.read_cpuinfo() if cpuinfo_text is None else cpuinfo_text
    return (machine_module.parse_cpuinfo(text)["model_name"]
            or platform.processor() or platform.machine() or "unknown")


def machine_info(threads, torch=None, *, cpuinfo_text=None, threadpools=None, environ=None,
                 architecture=None):
    """Where and with what the benchmark ran. Call inside thread_limits() so the BLAS
    entries show the thread counts in use. The CPU details, each thread pool's kernels and
    the BLAS pin warnings come from fastconv.bench.machine.

    cpuinfo_text, threadpools, environ, architecture : stand-ins (for tests) for
        /proc/cpuinfo's text, threadpoolctl.threadpool_info(), os.environ and
        platform.machine(), which are read when None.
    """
    import numpy
    import scipy
    from threadpoolctl import threadpool_info

    import fastconv

    if cpuinfo_text is None:
        cpuinfo_text = machine_module.read_cpuinfo()
    if threadpools is None:
        threadpools = threadpool_info()
    if environ is None:
        environ = os.environ
    if architecture is None:
        architecture = platform.machine()
    return {
        "cpu": cpu_model(cpuinfo_text),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable_cores(),
        "threads_used": threads,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "fastconv": fastconv.__version__,
        "fastconv_path": os.path.dirname(os.path.abspath(fastconv.__file__)),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "torch": None if torch is None else torch.__version__,
        # cpu_details, threadpools, blas_environment, blas_warnings
        **machine_module.describe(cpuinfo_text, threadpools, environ, architecture),
    }


def geometric_mean(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return math.exp(sum(math.log(v) for v in values) / len(values))


def geometric_means(rows):
    """Per operation (in table order) and over all rows: geometric means of the speedup
    vs the reference and of the fastconv/torch time ratio, each over the rows that have it."""
    groups = {}
    for row in rows:
        groups.setdefault(row["operation"], []).append(row)
    if len(groups) > 1:
        groups["all"] = list(rows)
    return [
        {
            "operation": operation,
            "speedup_vs_reference": geometric_mean(r["speedup_vs_reference"] for r in members),
            "reference_rows": sum(r["speedup_vs_reference"] is not None for r in members),
            "fastconv_over_torch": geometric_mean(r["fastconv_over_torch"] for r in members),
            "torch_rows": sum(r["fastconv_over_torch"] is not None for r in members),
            "rows": len(members),
        }
        for operation, members in groups.items()
    ]


def _milliseconds(value):
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _times(value):
    if value is None:
        return "-"
    return f"{value:.0f}x" if value >= 100 else f"{value:.1f}x" if value >= 10 else f"{value:.2f}x"


def _plain(value, spec):
    return "-" if value is None else format(value, spec)


def _layout(header, lines, left_columns):
    widths = [max(len(cell) for cell in column) for column in zip(header, *lines)]

    def line(cells):
        return "  ".join(
            cell.ljust(width) if index < left_columns else cell.rjust(width)
            for index, (cell, width) in enumerate(zip(cells, widths))
        ).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return [line(header), rule] + [line(cells) for cells in lines]


def table(rows, with_torch):
    """The results table as text, one line per row."""
    header = ["operation", "case", "shape", "GFLOP", "ref ms", "fastconv ms", "vs ref"]
    if with_torch:
        header += ["torch ms", "fc/torch"]
    header += ["GFLOP/s", "% GEMM", "peak MiB"]
    lines = []
    for row in rows:
        reference = _milliseconds(row["reference_ms"]) if row["reference_status"] == "ok" else "skipped"
        cells = [
            row["operation"], row["case"], row["shape"], _plain(row["gflop"], ".3f"), reference,
            _milliseconds(row["fastconv_ms"]), _times(row["speedup_vs_reference"]),
        ]
        if with_torch:
            cells += [_milliseconds(row["torch_ms"]), _plain(row["fastconv_over_torch"], ".2f")]
        cells += [
            _plain(row["gflop_per_s"], ".1f"), _plain(row["percent_of_gemm"], ".0f"),
            f"{row['fastconv_peak_bytes'] / 2**20:.1f}",
        ]
        lines.append(cells)
    return "\n".join(_layout(header, lines, left_columns=3))


def geomean_table(means, with_torch):
    header = ["geometric mean", "vs ref", "(rows)"]
    if with_torch:
        header += ["fc/torch", "(rows)"]
    lines = []
    for mean in means:
        cells = [mean["operation"], _times(mean["speedup_vs_reference"]), str(mean["reference_rows"])]
        if with_torch:
            cells += [_plain(mean["fastconv_over_torch"], ".2f"), str(mean["torch_rows"])]
        lines.append(cells)
    return "\n".join(_layout(header, lines, left_columns=1))


def notes(rows, *, machine, settings_name, settings, gemm_gflops, dtype, torch_note=None):
    """Footer lines: what was measured how. torch_note: why torch is missing (None: it ran)."""
    lines = [
        f"machine: {machine['cpu']}, {machine['usable_cpus']} usable cores; {machine['threads_used']} "
        f"thread{'s' if machine['threads_used'] != 1 else ''} for fastconv, BLAS and torch alike; {dtype}",
        f"GEMM rate (numpy.matmul, 1024x1024 {dtype}, same threads; the highest of samples taken "
        f"before the suite and after each case): {gemm_gflops:.1f} GFLOP/s; % GEMM = fastconv's "
        "GFLOP/s as a share of it",
        f"times: median per call over {settings.blocks} rounds of blocks in rotating order, after "
        f"warm-up ({settings_name} settings), each block after a {settings.settle_seconds:g} s pause "
        "for the thread pools of the block before to go idle and "
        f"{settings.block_warmup_seconds:g} s of untimed calls; every implementation on the same arrays",
        "vs ref = reference ms / fastconv ms"
        + ("; fc/torch = fastconv ms / torch ms (< 1: fastconv faster)" if torch_note is None else ""),
        "GFLOP: 2*N*F*OH*OW*C*KH*KW for a conv forward, 3x that with the backward; '-' for pooling",
        MEMORY_METHOD,
    ]
    if torch_note is None:
        lines.append("torch: F.conv2d / F.max_pool2d on torch.from_numpy views of the same arrays, "
                     "inputs requiring grad (as in training)")
    skipped = sorted({row["reference_status"] for row in rows if row["reference_status"] != "ok"})
    lines += [f"reference {reason}" for reason in skipped]
    if torch_note is not None:
        lines.append(torch_note)
    lines.append(machine_module.cpu_line(machine))
    lines += machine_module.blas_lines(machine)
    lines += machine["blas_warnings"]
    return "\n".join(lines)


def write_json(path, document):
    with open(path, "w") as stream:
        json.dump(document, stream, indent=1)
        stream.write("\n")


def write_plot(path, rows, title):
    """A PNG bar chart of fastconv's speedups (log scale). Raises ImportError without matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    labels = [f"{row['operation']}\n{row['case']}" for row in rows]
    series = {
        "vs reference (reference ms / fastconv ms)": [row["speedup_vs_reference"] for row in rows],
        "vs torch (torch ms / fastconv ms)": [
            None if row["fastconv_over_torch"] is None else 1 / row["fastconv_over_torch"] for row in rows
        ],
    }
    series = {name: values for name, values in series.items() if any(v is not None for v in values)}
    figure, axes = plt.subplots(figsize=(max(6.0, 0.7 * len(rows) + 2), 4.5))
    width = 0.8 / max(len(series), 1)
    for index, (name, values) in enumerate(series.items()):
        positions = [i + (index - (len(series) - 1) / 2) * width for i in range(len(rows))]
        present = [(p, v) for p, v in zip(positions, values) if v is not None]
        axes.bar([p for p, _ in present], [v for _, v in present], width, label=name)
    axes.axhline(1.0, color="black", linewidth=0.8)
    axes.set_yscale("log")
    axes.yaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}x"))
    axes.yaxis.set_minor_formatter(ticker.NullFormatter())
    axes.set_ylabel("fastconv speedup (x)")
    axes.set_xticks(range(len(rows)))
    axes.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
    axes.set_title(title, fontsize=9)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
