#!/usr/bin/env bash
# Fuzz the convolution kinds (tools/fuzz_conv.py: compiled vs reference on random geometries)
# against a build compiled with AddressSanitizer, for the given number of seconds.
#
#   tools/fuzz.sh [seconds=60] [more libFuzzer options]
#
# The build happens in a temporary copy of this checkout (as tools/asan_tests.sh). A finding
# (a mismatch, a wrong error type, a crash or an ASan report) stops the run with a non-zero
# exit and leaves its input as crash-* in the copy (KEEP=1 keeps the copy).
set -euo pipefail
seconds="${1:-60}"
shift || true
source "$(dirname "$0")/_copy_checkout.sh" fuzz
cd "$work"
echo "== building with FASTCONV_ASAN=1 in $work"
FASTCONV_ASAN=1 python setup.py build_ext --inplace -q > build.log 2>&1 || { cat build.log; exit 1; }
runtime="$("${CC:-gcc}" -print-file-name=libasan.so)"
[ -f "$runtime" ] || { echo "no libasan.so for ${CC:-gcc}"; exit 1; }
export LD_PRELOAD="$runtime"
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=1"
echo "== fuzzing for $seconds s"
python tools/fuzz_conv.py -max_total_time="$seconds" -timeout=60 -rss_limit_mb=4096 "$@"
