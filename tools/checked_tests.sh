#!/usr/bin/env bash
# Run the test suite against a build with Cython bounds checking on (FASTCONV_BOUNDSCHECK=1).
#
#   tools/checked_tests.sh [pytest arguments]     (default: the whole suite)
#
# The build happens in a temporary copy of this checkout, so the shared in-place build is
# left alone. In the checked build every memoryview index is range-checked: an index out of
# bounds raises IndexError (or, inside a nogil helper that cannot raise, is reported as an
# "Exception ignored" unraisable error), which this script turns into a failure.
set -euo pipefail
source "$(dirname "$0")/_copy_checkout.sh" checked
cd "$work"
echo "== building with FASTCONV_BOUNDSCHECK=1 in $work"
FASTCONV_BOUNDSCHECK=1 python setup.py build_ext --inplace -q > build.log 2>&1 || { cat build.log; exit 1; }
# the generated C must contain the bounds checks, and the tests must import this build
grep -q "__Pyx_RaiseBufferIndexError" build/cython-checked/fastconv/_kernels/_conv.c
python -c "import fastconv, sys; sys.exit(not fastconv.__file__.startswith('$work'))"
echo "== running the tests against the checked build"
status=0
python -m pytest -p no:cacheprovider -W error::pytest.PytestUnraisableExceptionWarning "${@:--q}" \
    2>&1 | tee pytest.log || status=$?
if grep -q "Out of bounds on buffer access" pytest.log; then
    echo "checked build: an out-of-bounds index was reported (see above)"
    status=1
fi
exit "$status"
