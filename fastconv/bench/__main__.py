"""`python -m fastconv.bench`: time fastconv against its reference twin and PyTorch CPU."""
import argparse
import contextlib
import sys

from . import isolate, neighbour, nets, report, runner, suite

INSTALL_HINT = "python -m pip install 'fastconv[bench]'"


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m fastconv.bench",
        description="Time fastconv's compiled kernels against the NumPy reference twin and "
        "PyTorch CPU on the shape suite, in one process, on the same inputs and threads.",
    )
    parser.add_argument("--quick", action="store_true",
                        help="few repeats and no full-run-only shapes (minutes on 2 cores; --only picks families)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="threads for fastconv, BLAS and torch alike (default: usable cores, "
                        f"here {runner.usable_cores()})")
    parser.add_argument("--only", metavar="NAME",
                        help="comma-separated case names and/or families (conv, maxpool, nets); "
                        "see --list")
    parser.add_argument("--json", metavar="PATH", help="write every row and the machine info here")
    parser.add_argument("--plot", metavar="PATH", help="write a PNG bar chart of the speedups "
                        "(needs matplotlib)")
    parser.add_argument("--oracle", action="store_true",
                        help="per conv layer: algorithm='auto' beside every algorithm that "
                        "supports it, fastconv alone, and auto's ratio to the best")
    parser.add_argument("--list", action="store_true", help="list the shape suite and exit")
    parser.add_argument("--isolate", action="store_true",
                        help="time every library in worker processes of its own, alternating "
                        "between libraries (figures: medians of per-process medians)")
    parser.add_argument("--processes", type=int, default=None, metavar="N",
                        help="with --isolate: worker processes per library and case (default "
                        f"{isolate.PROCESSES['quick']} quick, {isolate.PROCESSES['full']} full)")
    parser.add_argument("--profile", action="store_true",
                        help="after the timings, print where each net's time goes: per-layer "
                        "forward and backward times of fastconv (and torch's profiler table)")
    parser.add_argument("--busy-neighbour", action="store_true",
                        help="time everything beside a busy loop pinned to one core (a shared "
                        "host's other tenant); Linux only")
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    # small shapes and minimal repeats, for the bench's own tests
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    return parser


def _import_optional(name):
    """The module, or None with the reason it did not import."""
    try:
        return __import__(name), None
    except ImportError as error:
        return None, str(error)


def _print_profiles(net_cases, dtype, threads, torch, tiny):
    """--profile: where each net's time goes, fastconv per layer and torch per operator."""
    steps = 2 if tiny else 10
    with runner.thread_limits(threads, torch):
        for case in net_cases:
            print()
            print(nets.profile_table(case, nets.profile_fastconv(case, dtype, steps=steps)))
            if torch is not None:
                print()
                print(nets.profile_torch(torch, case, dtype, steps=steps))


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    if args.processes is not None and args.processes < 1:
        parser.error(f"--processes must be >= 1, got {args.processes}")
    if args.busy_neighbour:
        if args.oracle:
            parser.error("--busy-neighbour times the suite against torch; it does not apply "
                         "to --oracle")
        if neighbour.available() is not None:
            parser.error(neighbour.available())
    try:
        net_cases, suite_only = nets.select(args.only, quick=args.quick, tiny=args.tiny)
        cases = [] if suite_only == "" else suite.select(suite_only, quick=args.quick, tiny=args.tiny)
    except ValueError as error:
        parser.error(str(error))
    if args.list:
        for case in list(suite.all_cases(tiny=args.tiny)) + list(nets.all_cases(tiny=args.tiny)):
            extra = "  (full run only)" if case.full_only else ""
            print(f"{case.family:8} {case.name:14} {case.describe()}{extra}")
        return 0

    import fastconv

    if "cython" not in fastconv.available_backends():
        print("fastconv's compiled kernels are not built, so there is nothing fast to time. "
              "Build them with `python -m pip install .` (or, in a source checkout, "
              "`python setup.py build_ext --inplace`).", file=sys.stderr)
        if fastconv._CHECKOUT_NOTE:  # imported from a source folder: why not the installed build
            print(f"(imported the source folder {fastconv.__path__[0]}: {fastconv._CHECKOUT_NOTE})",
                  file=sys.stderr)
        return 1

    torch, torch_error = _import_optional("torch")
    torch_note = None
    if torch is None:
        torch_note = (f"torch: not installed ({torch_error}), torch columns omitted; "
                      f"to compare with PyTorch CPU: {INSTALL_HINT}")
        print(torch_note, file=sys.stderr)
    plot_note = None
    if args.plot:
        matplotlib, plot_error = _import_optional("matplotlib")
        if matplotlib is None:
            plot_note = (f"--plot: matplotlib is not installed ({plot_error}), so no chart is "
                         f"written; install it with {INSTALL_HINT} (or pip install matplotlib)")
            print(plot_note, file=sys.stderr)

    settings_name = "tiny" if args.tiny else "quick" if args.quick else "full"
    settings = {"tiny": runner.TINY, "quick": runner.QUICK, "full": runner.FULL}[settings_name]
    threads = args.threads or runner.usable_cores()
    if args.oracle:
        return _oracle(args, cases, settings_name, settings, threads, torch)
    progress = runner.Progress(total=len(cases) * 2 + len(net_cases))
    with runner.thread_limits(threads, torch):
        machine = report.machine_info(threads, torch)
        for warning in machine["blas_warnings"]:  # at the start too, before minutes of timing
            print(warning, file=sys.stderr)
        # sampled before the suite and after each case: the highest rate is the machine's,
        # lower ones were disturbed (by other work on the machine, or warming up)
        gemm_samples = []

        def sample_gemm():
            gemm_samples.append(runner.gemm_rate(args.dtype, settings.gemm_repeats))

        progress.show("GEMM rate")
        sample_gemm()
        busy = (neighbour.BusyNeighbour() if args.busy_neighbour
                else contextlib.nullcontext())
        try:
            with busy:
                if args.isolate:
                    rows = isolate.run_cases(
                        cases, net_cases, dtype=args.dtype, settings=settings,
                        settings_name=settings_name, threads=threads, seed=args.seed,
                        tiny=args.tiny, with_torch=torch is not None, processes=args.processes,
                        progress=progress, after_case=sample_gemm)
                else:
                    rows = runner.run_suite(cases, dtype=args.dtype, settings=settings,
                                            torch=torch, progress=progress, seed=args.seed,
                                            after_case=sample_gemm)
                    for case in net_cases:
                        progress.show(f"{nets.operation_name(case)} {case.name}")
                        rows.append(nets.measure_case(case, args.dtype, settings, torch, args.seed))
                        progress.advance()
                        sample_gemm()
        finally:
            progress.close()
    gemm_gflops = max(gemm_samples)
    runner.add_gemm_share(rows, gemm_gflops)

    with_torch = torch is not None
    means = report.geometric_means(rows)
    footer = report.notes(rows, machine=machine, settings_name=settings_name, settings=settings,
                          gemm_gflops=gemm_gflops, dtype=args.dtype, torch_note=torch_note)
    extra_notes = nets.notes(rows)
    if args.isolate:
        extra_notes += isolate.notes(args.processes or isolate.PROCESSES[settings_name])
    if args.busy_neighbour:
        extra_notes.append(neighbour.note(busy.core))
    footer = "\n".join([footer] + extra_notes)
    print(report.table(rows, with_torch))
    print()
    print(report.geomean_table(means, with_torch))
    print()
    print(footer)
    if args.profile:
        _print_profiles(net_cases, args.dtype, threads, torch, args.tiny)

    if args.json:
        report.write_json(args.json, {
            "machine": machine,
            "settings": {"mode": settings_name, "dtype": args.dtype, "threads": threads,
                         "seed": args.seed,
                         "busy_neighbour_core": busy.core if args.busy_neighbour else None,
                         **vars(settings)},
            "gemm_gflop_per_s": gemm_gflops,
            "gemm_gflop_per_s_samples": gemm_samples,
            "results": rows,
            "geometric_means": means,
            "notes": footer.splitlines(),
        })
        print(f"wrote {args.json}", file=sys.stderr)
    if args.plot:
        if plot_note is None:
            title = f"fastconv speedups, {args.dtype}, {threads} threads, {machine['cpu']}"
            report.write_plot(args.plot, rows, title)
            print(f"wrote {args.plot}", file=sys.stderr)
        else:
            print(plot_note, file=sys.stderr)
    return 0


def _oracle(args, cases, settings_name, settings, threads, torch):
    from . import oracle

    conv_cases = [case for case in cases if case.kind == "conv"]
    progress = runner.Progress(total=len(conv_cases) * len(oracle.PASSES))
    with runner.thread_limits(threads, torch):
        machine = report.machine_info(threads, torch)
        try:
            rows = oracle.run(conv_cases, dtype=args.dtype, settings=settings, progress=progress,
                              seed=args.seed)
        finally:
            progress.close()
    print(oracle.table(rows))
    print()
    print(oracle.summary(rows))
    print()
    print(f"machine: {machine['cpu']}, {threads} threads, {args.dtype}, {settings_name} settings; "
          "every time a per-call median over rotating blocks in one process")
    if args.json:
        report.write_json(args.json, {
            "machine": machine,
            "settings": {"mode": settings_name, "dtype": args.dtype, "threads": threads,
                         "seed": args.seed, "oracle": True, **vars(settings)},
            "oracle": rows,
            "summary": oracle.summary(rows).splitlines(),
        })
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
