"""Every tuning constant of the compiled paths, each beside the measurement that set it.

The measurements themselves (commands, machines, figures) are in docs/performance.md under
the constant's name; change a constant only with a new measurement there.
"""

# ---- threads ---------------------------------------------------------------------------
# Below about this much work per conv call, waking a second thread costs more than it saves
# (performance.md: "MIN_PARALLEL_FLOPS").
MIN_PARALLEL_FLOPS = 10_000_000
# Below about this many elements, the (memory-bound) space-to-depth phase copies run on one
# thread.
MIN_PARALLEL_COPY = 100_000
# Below this many input elements a pooling call takes some microseconds: one thread.
POOL_PARALLEL_MIN_ELEMENTS = 2**17

# ---- im2col bands ----------------------------------------------------------------------
# A band's im2col buffer stays near this size, so it is still in cache when its GEMM reads it,
# and has at least this many columns, so the GEMM runs at speed (the suite's six shapes).
BAND_BYTES = 128 * 2**10
BAND_MIN_COLUMNS = 256
# The staged im2col pays off where each input pixel lands in at least this many columns
# (KH*KW / (stride_h*stride_w)); 3x3 stride-2 windows (2.25) ran as fast or faster without.
STAGE_MIN_OVERLAP = 4

# ---- GEMM pieces -----------------------------------------------------------------------
# OpenBLAS's kernels for AVX-512 CPUs multiply a product of M*N*K <= 100**3 straight from the
# caller's arrays, skipping the packing copies of its general path, and faster at the sizes of
# a conv band; products are split into pieces under that limit (bench/gemm_pieces.py times
# both ways: cnn-cifar's forward 8.43 -> 5.72 ms on one thread).
SMALL_GEMM_LIMIT = 100**3
SMALL_GEMM_ARCHITECTURES = ("skylakex", "cooperlake", "sapphirerapids")
# Pieces of at most this many rows and inner terms (32-64 rows and 50-128 inner terms ran
# fastest when the suite's products were split several ways), then as many columns
# (multiples of 16) as the limit allows.
GEMM_PIECE_ROWS = 64
GEMM_PIECE_INNER = 128
# A piece narrower than this is slower than the packed path (one 512-bit vector of floats).
MIN_GEMM_COLUMNS = 16
# OpenBLAS 0.3.30's SkylakeX small-matrix path takes a product of two "inner dimension
# contiguous" operands (TN in its column-major terms) only up to this many result elements.
SMALL_TN_RESULT = 1200
# ... and the transposed weight gradient, whose pieces each add onto all of dW, gained only
# while dW fitted in about half of a core's L2 cache: res-s2's (1.1 MiB in float32) was 1.07x
# slower that way (bench/gemm_pieces.py --weight-gradient).
TRANSPOSED_DW_BYTES = 512 * 2**10

# ---- Winograd --------------------------------------------------------------------------
# A Winograd band's transformed tiles are kept near this size per thread: large enough that
# each GEMM has tiles enough to run at speed (res-s2's stride-2 rows are 7 tiles wide). Of
# 1, 2, 4 and 8 MiB, 4 ran res-s2 fastest (float32 and float64) and vgg-3x3 as fast as any.
WINOGRAD_BAND_BYTES = 4 * 2**20
