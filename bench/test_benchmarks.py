"""One pytest-benchmark per operation x shape x implementation, grouped per operation and shape.

    pytest bench/ --benchmark-group-by=group          # implementations side by side
    pytest bench/ -k "vgg and fwd" --bench-dtype float64

The shapes come from fastconv.bench.suite and the timed calls from fastconv.bench.operations,
the same ones `python -m fastconv.bench` times.
"""
import pytest

from fastconv.bench import operations, suite


def _parameters():
    for case in suite.all_cases():
        for pass_name in operations.PASSES:
            for implementation in operations.IMPLEMENTATIONS:
                # one reference call of a full-run-only (batch 256) shape takes seconds:
                # pytest-benchmark's repeated rounds of it are not worth the wait
                if implementation == "reference" and case.full_only:
                    continue
                yield pytest.param(
                    case, pass_name, implementation,
                    id=f"{operations.operation_name(case, pass_name).replace(' ', '-')}-{case.name}-{implementation}",
                )


@pytest.mark.parametrize("case, pass_name, implementation", list(_parameters()))
def test_benchmark(benchmark, case, pass_name, implementation, bench_dtype, bench_threads, torch_module):
    if implementation == "torch":
        torch_module = pytest.importorskip("torch")
    inputs = operations.make_inputs(case, bench_dtype)
    call = operations.implementations(case, pass_name, inputs, torch_module)[implementation]
    benchmark.group = f"{operations.operation_name(case, pass_name)} {case.name} {case.describe()}"
    benchmark.extra_info.update(
        implementation=implementation, dtype=bench_dtype, threads=bench_threads,
        gflop=operations.gflop(case, pass_name),
    )
    if implementation == "reference":
        benchmark.pedantic(call, rounds=3, iterations=1, warmup_rounds=1)
    else:
        benchmark(call)
