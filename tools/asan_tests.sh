#!/usr/bin/env bash
# Run tests against a build compiled with AddressSanitizer (FASTCONV_ASAN=1).
#
#   tools/asan_tests.sh [pytest arguments]
#
# Default: the tests that exercise the kernels (properties, edge sizes, bad inputs, no data
# loss, threads, and the per-op test modules), minus those that cannot run under ASan:
# RSS measurements (ASan keeps freed memory in quarantine) and address-space limits (ASan
# reserves terabytes of shadow memory). The build happens in a temporary copy of this
# checkout; the shared in-place build is left alone. Python itself is not instrumented, so
# the ASan runtime is preloaded; leak detection is off because CPython frees little at exit.
# Any ASan report, in the test process or in a child it starts, fails the run.
set -euo pipefail
source "$(dirname "$0")/_copy_checkout.sh" asan
cd "$work"
echo "== building with FASTCONV_ASAN=1 in $work"
FASTCONV_ASAN=1 python setup.py build_ext --inplace -q > build.log 2>&1 || { cat build.log; exit 1; }
runtime="$("${CC:-gcc}" -print-file-name=libasan.so)"
[ -f "$runtime" ] || { echo "no libasan.so for ${CC:-gcc}"; exit 1; }
ldd fastconv/_kernels/_conv*.so | grep -c libasan > /dev/null || { echo "kernels were not linked with ASan"; exit 1; }
mkdir -p asan-reports
export LD_PRELOAD="$runtime"
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=1:log_path=$work/asan-reports/report"
if [ "$#" -eq 0 ]; then
    set -- -q tests/test_properties.py tests/test_edge_sizes.py tests/test_bad_inputs.py \
        tests/test_no_data_loss.py tests/test_memory_threads.py \
        tests/test_im2col.py tests/test_conv.py tests/test_conv_kinds.py tests/test_pool.py \
        tests/test_pool_options.py tests/test_norm.py tests/test_algorithms.py \
        tests/test_elementwise.py tests/test_linear.py tests/test_optim.py tests/test_losses.py \
        tests/test_inference_fusion.py tests/test_sequential_fusion.py tests/test_dilated_winograd.py \
        -k "not rss and not leak and not 32_bit"
fi
echo "== running the tests under AddressSanitizer"
status=0
python -m pytest -p no:cacheprovider "$@" || status=$?
if compgen -G "$work/asan-reports/report*" > /dev/null; then
    echo "== AddressSanitizer reports:"
    cat "$work"/asan-reports/report*
    status=1
else
    echo "== no AddressSanitizer report"
fi
exit "$status"
