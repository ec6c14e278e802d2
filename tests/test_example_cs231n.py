"""examples/cs231n_notebook.py: the ConvolutionalNetworks notebook's sequence runs and passes on the drop-in."""
import importlib.util
import pathlib

import numpy as np

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "cs231n_notebook.py"


def load_example():
    spec = importlib.util.spec_from_file_location("cs231n_notebook", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_run_passes_every_notebook_check(capsys):
    state = np.random.get_state()
    try:
        results = load_example().main(["--quick", "--quiet"])
    finally:
        np.random.set_state(state)  # the notebook seeds NumPy's global generator
    assert capsys.readouterr().out == ""  # --quiet prints only failures
    assert results["failed"] == []
    checks = results["checks"]
    for name in ("conv_forward_naive vs correct_out", "max_pool_forward_naive vs correct_out",
                 "conv_backward_naive dx", "conv_backward_fast dx vs naive", "conv_relu_pool dw",
                 "ThreeLayerConvNet W2 max relative error", "overfitting 100 samples: best train accuracy",
                 "test-time means (should be ~0)", "spatial groupnorm dx"):
        assert name in checks, name
    assert checks["conv_forward_naive vs correct_out"][0] < 5e-8  # the notebook: "around e-8"
    assert checks["overfitting 100 samples: best train accuracy"][0] >= 0.9
    assert len(results["overfit_solver"].train_acc_history) == 16  # 15 epochs of 2 steps, and the first step
    assert len(results["train_solver"].loss_history) == 5  # one epoch of the 250 quick samples


def test_checks_report_a_miss():
    checks = load_example().Checks(quiet=True)
    checks.below("too big", 1.0, 0.5)
    checks.at_least("too small", 0.1, 0.9)
    checks.below("fine", 0.1, 0.5)
    assert checks.failed == ["too big", "too small"]
