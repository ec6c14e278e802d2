"""`--oracle`: auto beside every algorithm, per layer and pass, on the hidden tiny cases."""
import json

import pytest

import fastconv
from fastconv.bench import oracle, suite
from fastconv.bench.__main__ import main

pytestmark = pytest.mark.skipif("cython" not in fastconv.available_backends(),
                                reason="needs the compiled kernels")


def test_oracle_rows_summary_and_json(tmp_path, capsys):
    path = tmp_path / "oracle.json"
    assert main(["--tiny", "--threads", "1", "--oracle", "--only", "tiny-conv,tiny-1x1",
                 "--json", str(path)]) == 0
    out = capsys.readouterr().out
    document = json.loads(path.read_text())
    rows = document["oracle"]
    assert {(row["case"], row["pass"]) for row in rows} == {
        (case, pass_name) for case in ("tiny-conv", "tiny-1x1") for pass_name in oracle.PASSES}
    for row in rows:
        window = next(case.window for case in suite.all_cases(tiny=True)
                      if case.name == row["case"])
        # every algorithm that supports the layer is timed, and "best" is the fastest of them
        assert set(row["algorithm_ms"]) == set(fastconv.available_algorithms(window))
        assert row["best_ms"] == min(row["algorithm_ms"].values())
        assert row["auto_over_best"] == pytest.approx(row["auto_ms"] / row["best_ms"])
        assert row["auto_choice"] == fastconv.planner.choose(window, "float32", "auto",
                                                             "forward").NAME
        if row["choice_over_best"] is not None:
            assert row["choice_over_best"] == pytest.approx(
                row["algorithm_ms"][row["auto_choice"]] / row["best_ms"])
            assert row["choice_over_best"] >= 1.0
        else:  # only a forward+backward whose backward the planner gives to another algorithm
            assert row["pass"] != "forward" and row["auto_backward"] != row["auto_choice"]
        assert f"{row['case']}" in out
    assert document["summary"] == oracle.summary(rows).splitlines()
    assert "auto/best fwd" in out and "choice/best fwd" in out


def test_summary_counts_layers_above_the_target():
    def row(case, pass_name, choice, best):
        return {"case": case, "pass": pass_name, "auto_over_best": choice / best,
                "choice_over_best": choice / best}

    rows = [row("a", "forward", 1.0, 1.0), row("b", "forward", 2.0, 1.0),
            row("c", "forward", 1.1, 1.0)]
    text = oracle.summary(rows)
    assert "worst 2.00 (b)" in text and "1 above 1.15, over 3 layers" in text
    # geometric mean of 1, 2 and 1.1
    assert f"geometric mean {(2.0 * 1.1) ** (1 / 3):.3f}" in text
