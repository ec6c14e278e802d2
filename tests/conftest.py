"""Shared test configuration: Hypothesis profiles and a runner for code that must not share our process."""
import os
import subprocess
import sys
import textwrap

import pytest
from hypothesis import HealthCheck, settings

# "fast" (loaded by default) keeps the property tests inside the normal run: a bounded number
# of examples, the same examples every run. `pytest --hypothesis-profile=ci` searches longer,
# with fresh random examples each run (a failure prints how to reproduce it).
settings.register_profile(
    "fast",
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "ci",
    max_examples=600,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("fast")  # the plugin loads --hypothesis-profile after this file

# The folder holding the fastconv package this test session imports, so that child
# processes import the same build (installed or in-place).
_PACKAGE_FILE = os.path.abspath(__import__("fastconv").__file__)
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(_PACKAGE_FILE))
_CHECK_SAME_PACKAGE = f"""
import os, sys, fastconv
if os.path.abspath(fastconv.__file__) != {_PACKAGE_FILE!r}:
    sys.exit("child imported another fastconv: " + fastconv.__file__)
"""


@pytest.fixture(autouse=True)
def _fresh_im2col_recipes():
    """im2col keeps each problem's plan (its recipe) for the process, keyed on the tuning
    constants but not on the planning functions; tests patch those (transposed_weight_gradient,
    _blas.gemm_pieces) and must not be served a plan made before the patch."""
    from fastconv.algorithms import im2col_gemm

    im2col_gemm.forget_recipes()
    yield


@pytest.fixture(scope="session")
def run_python():
    """Run Python source in a fresh interpreter importing this session's fastconv.

    Returns the CompletedProcess (text stdout/stderr). A crash (segfault, abort) shows up
    as a negative returncode instead of killing the test run.
    """

    def run(source, timeout=120, env=None):
        child_env = dict(os.environ)
        child_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (_PACKAGE_ROOT, child_env.get("PYTHONPATH")) if p
        )
        child_env.update(env or {})
        return subprocess.run(
            [sys.executable, "-c", _CHECK_SAME_PACKAGE + textwrap.dedent(source)],
            capture_output=True, text=True, timeout=timeout, env=child_env, cwd=_PACKAGE_ROOT,
        )

    return run
