"""fastconv.retain_freed_memory: freed arrays reused without page faults; Trainer and Solver
call it unless told not to.

The malloc setting is for the whole process and cannot be undone, so every check of its
effect runs in a child process of its own.
"""
import json
import subprocess
import sys

import numpy as np
import pytest

import fastconv
from fastconv import _memory, train
from fastconv.compat.cs231n import solver as cs231n_solver
from fastconv.compat.cs231n.classifiers.fc_net import FullyConnectedNet
from fastconv.layers import Linear, Sequential
from fastconv.optim import SGD

GLIBC = _memory._glibc() is not None

# A child: a "step" allocating and freeing three 3 MiB arrays (below NumPy's 4 MiB
# huge-page limit, so every page is a 4 KiB fault when fresh), repeated; reports the minor
# page faults per step after a warm-up, with or without retain_freed_memory() first.
_CHILD = """
import json, resource, sys
import numpy as np
import fastconv
applied = fastconv.retain_freed_memory() if sys.argv[1] == "retain" else None
def step():
    arrays = [np.ones(3 * 2**20 // 8) for _ in range(3)]
    del arrays
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    step()
start = faults()
for _ in range(20):
    step()
print(json.dumps({"applied": applied, "retained": fastconv.freed_memory_retained(),
                  "faults_per_step": (faults() - start) / 20}))
"""

PAGES_PER_STEP = 3 * 3 * 2**20 // 4096


def _child(mode):
    done = subprocess.run([sys.executable, "-c", _CHILD, mode], capture_output=True, text=True,
                          timeout=120, check=True)
    return json.loads(done.stdout)


@pytest.mark.skipif(not GLIBC, reason="retain_freed_memory applies to glibc's malloc only")
def test_retained_memory_is_reused_without_page_faults():
    kept = _child("retain")
    default = _child("default")
    assert kept["applied"] is True and kept["retained"] is True
    assert default["retained"] is False
    # every page touched afresh would be PAGES_PER_STEP (2304) faults a step; kept, the
    # arrays come back from the heap already mapped
    assert kept["faults_per_step"] < 0.05 * PAGES_PER_STEP, (kept, default)


def test_retain_freed_memory_reports_whether_it_applies_and_is_idempotent():
    first = fastconv.retain_freed_memory()
    assert first is GLIBC
    assert fastconv.freed_memory_retained() is GLIBC
    assert fastconv.retain_freed_memory() is first


def test_no_glibc_means_no_effect(monkeypatch):
    monkeypatch.setattr(_memory, "_retained", False)
    monkeypatch.setattr(_memory, "_glibc", lambda: None)
    assert fastconv.retain_freed_memory() is False
    assert fastconv.freed_memory_retained() is False


def _calls(monkeypatch, module):
    calls = []
    monkeypatch.setattr(module, "retain_freed_memory", lambda: calls.append(1) or True)
    return calls


def _model():
    return Sequential([Linear(4, 3, rng=0)])


def test_trainer_retains_freed_memory_unless_told_not_to(monkeypatch):
    calls = _calls(monkeypatch, train)
    model = _model()
    train.Trainer(model, SGD(model.params, lr=0.1), verbose=False)
    assert calls == [1]
    train.Trainer(model, SGD(model.params, lr=0.1), verbose=False, retain_memory=False)
    assert calls == [1]
    with pytest.raises(TypeError, match="retain_memory must be True or False"):
        train.Trainer(model, SGD(model.params, lr=0.1), verbose=False, retain_memory=1)
    assert calls == [1]


def _data():
    rng = np.random.default_rng(0)
    return {"X_train": rng.standard_normal((6, 5)), "y_train": rng.integers(0, 3, 6),
            "X_val": rng.standard_normal((4, 5)), "y_val": rng.integers(0, 3, 4)}


def test_solver_retains_freed_memory_unless_told_not_to(monkeypatch):
    calls = _calls(monkeypatch, cs231n_solver)
    model = FullyConnectedNet([4], input_dim=5, num_classes=3)
    cs231n_solver.Solver(model, _data(), verbose=False)
    assert calls == [1]
    cs231n_solver.Solver(model, _data(), verbose=False, retain_memory=False)
    assert calls == [1]
    with pytest.raises(TypeError, match="retain_memory must be True or False"):
        cs231n_solver.Solver(model, _data(), retain_memory="yes")
    assert calls == [1]
