#!/usr/bin/env bash
# Fuzz the convolution kinds (tools/fuzz_conv.py: compiled vs reference on random geometries)
# against a build compiled with AddressSanitizer, for the given number of seconds.
#
#   tools/fuzz.sh [seconds=60] [more libFuzzer options]
#
# Half the time coverage-guided on this checkout's build, growing a corpus; the other half
# replays that corpus and fuzzes on against an AddressSanitizer build made in a temporary copy
# of this checkout (as tools/asan_tests.sh). A finding (a mismatch, a wrong error type, a
# crash or an ASan report) stops the run with a non-zero exit; libFuzzer prints its input in
# Base64, and leaves it as crash-* in the copy (KEEP=1 keeps the copy).
set -euo pipefail
seconds="${1:-60}"
shift || true
source "$(dirname "$0")/_copy_checkout.sh" fuzz
first=$(( seconds / 2 )); second=$(( seconds - first ))
# 1. Coverage-guided, on this checkout's own build (its in-place build, or the installed one
# it hands over to): atheris's coverage feedback does not work with gcc's libasan preloaded
# (it takes the coverage symbols), so the corpus is grown here ...
mkdir -p "$work/corpus"
echo "== coverage-guided fuzzing for $first s (this checkout's build), corpus in $work/corpus"
python "$repo/tools/fuzz_conv.py" "$work/corpus" -max_total_time="$first" -timeout=60 \
    -rss_limit_mb=4096 -artifact_prefix="$work/" "$@"
# 2. ... and replayed, then mutated further, against the AddressSanitizer build
cd "$work"
echo "== building with FASTCONV_ASAN=1 in $work"
FASTCONV_ASAN=1 python setup.py build_ext --inplace -q > build.log 2>&1 || { cat build.log; exit 1; }
runtime="$("${CC:-gcc}" -print-file-name=libasan.so)"
[ -f "$runtime" ] || { echo "no libasan.so for ${CC:-gcc}"; exit 1; }
echo "== the corpus ($(ls corpus | wc -l) inputs) and $second s more under AddressSanitizer"
LD_PRELOAD="$runtime" ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=1" \
    python tools/fuzz_conv.py corpus -max_total_time="$second" -timeout=60 -rss_limit_mb=4096 \
    -artifact_prefix="$work/" "$@"
