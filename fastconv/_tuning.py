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
# A small batch is cut into at least this many bands per thread (dynamic scheduling then
# evens out a slow thread), bands no shorter than BAND_MIN_COLUMNS columns; where that still
# leaves fewer tasks than threads, each band's filters are shared out in blocks of at least
# BLOCK_MIN_FILTERS (docs/performance.md, "Batch 1").
BAND_TASKS_PER_THREAD = 2
# An image of at most this many output pixels goes into a forward task with the next ones,
# their columns side by side in one GEMM of about BAND_MIN_COLUMNS columns, its product then
# copied out image by image. Batch 16, 2 threads, min of 60 calls, 3 processes per build
# (docs/performance.md, "Images side by side"): 7x7 outputs (49) gained 4-6% (ResNet-18's
# l4.0.conv1 9.8 -> 9.3 ms, l4.0.down 1.18 -> 1.13 ms); 8x8 (64) was even; at 10x10 and
# 14x14 the copying lost 7-10%.
SIDE_BY_SIDE_MAX_PIXELS = 49
# The weight gradient puts images of fewer output pixels than this side by side, so that
# each dW product's inner dimension has about this many columns (one image of a 4x4 output
# gave 16, and every such product read and wrote all of dW): DW_SIDE_BY_SIDE_COLUMNS,
# measured in docs/performance.md, "The weight gradient, images side by side".
DW_SIDE_BY_SIDE_COLUMNS = 256
BLOCK_MIN_FILTERS = 16
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

# Whole Winograd bands per thread would leave the busiest thread this much above an even
# share of the rows (one image's 7 rows of tiles on 2 threads: 4 of 3.5, 0.14), or hold
# fewer tiles than SHARED_BANDS_MAX_TILES (the GEMMs' columns): the threads share every
# band instead, the input transform by channels and the GEMMs and output transform by
# filters, where each thread then has at least SHARED_BANDS_MIN_WIDTH of both (set by the
# measurements beside algorithms/_winograd.py's plan: docs/performance.md, "Winograd bands
# shared by the threads", bench/winograd_bands.py: batch-1 and batch-2 layers with 8-32
# tiles a thread ran 0.64-0.94x the time shared, with 49-98 tiles 0.96-1.09x).
SHARED_BANDS_MIN_EXCESS = 0.05
SHARED_BANDS_MAX_TILES = 40
SHARED_BANDS_MIN_WIDTH = 16

# The weight transform shares its filters out over the threads from this many transformed
# values (E x F x C) up; below it one thread does it (set in the measurement beside
# algorithms/_winograd.py's transform_weights: docs/performance.md, "The weight transform
# on every thread").
WEIGHT_TRANSFORM_PARALLEL_ELEMENTS = 2**15

# Transformed Winograd weights kept between inference calls (algorithms/_winograd.py), with
# the copies of the weights they were made from, at most this many bytes, least recently
# used dropped first: ResNet-18's Winograd layers at batch 1 keep about 15 MiB.
KEPT_WEIGHTS_BYTES = 64 * 2**20

# The cost model's weight transform (algorithms/_winograd.py, weight_transform_cost): up to
# this many bytes of transformed weights it ran at its arithmetic's rate, per value 0.22-0.30
# ns for F(2x2) and stride 2 and 0.55-0.57 ns for F(4x4) on one thread, from 9.4 MB up at
# 0.71-0.86 ns whatever the set, its stores going to memory (the "elements" constants
# "winograd-weight-*" below; docs/performance.md, "The weight transform's cost").
WEIGHT_TRANSFORM_CACHED_BYTES = 8 * 2**20

# ---- the planner's cost model (planner.Machine) ----------------------------------------
# GEMM rates on one thread, the layouts the kernels use: "nn" (forward, Winograd), "tn"
# (dcols = W^T @ dout), "nt" (dW = dout @ cols^T); seconds per element of each kind of
# elementwise work; and what a second thread adds. The values are first-principles estimates
# checked against tools/calibrate.py's measurements (docs/performance.md, "The cost model"):
# a free least-squares fit of every constant to 400 sampled float32 layers (AMD EPYC Zen 5,
# 2 threads) ran into unphysical values and improved the choices only from a 1.041 to a 1.038
# geometric mean of chosen/best, so only the terms whose absence made systematic wrong choices
# were added by hand: the 1x1 path's pass over the output below 32 input channels, and the depthwise inner loop's
# cost per call ("depthwise-run", best of 0-50 ns at 15 ns); with them, 1.031 (float32).
def _gemm(peak, m_half=12.0, n_half=24.0, k_half=24.0, call=3e-7):
    return {"peak": peak, "m_half": m_half, "n_half": n_half, "k_half": k_half, "call": call}


# "sum": the Winograd weight gradient's products, each adding a rank-k update (k = a band's
# tiles, often 8-64) into per-thread sums of E x C x F values that outgrow the caches (75 MB
# on dcgan-up8's adjoint, s2d-winograd over 1024 phase channels): every call reads and writes
# the whole sum block for 2k flops per value, so the rate saturates in k far more slowly.
# k_half 100 (against 24) was fitted to the measured dW of ten layers, six through
# s2d-winograd (k 8-64) and four stride-1 (k 44-224), where the old value had the model
# 2-3.5x low and choosing s2d-winograd's dW at 2.3x im2col's (docs/performance.md, "The
# weight gradient's sums").
# "s2d-kernel-split": s2d-winograd's split of the weights into (F, C*s_h*s_w, 3, 3) phase
# kernels, per split value on one thread (rows of three values, so well below "copy"). It was
# not counted, and on dcgan's (512, 256, 4, 4) stride-2 weights it is 4.7M values, 8.5 ms on
# one thread, 4.2 on two: 1.75-1.88 ns a value in float32 over four layers' weights, 1.6-3.7
# in float64 (bench/s2d_copies.py; docs/performance.md, "The kernels' split, compiled").
# "s2d-phase-copy": its phase copy of x, per phase value on one thread. It had been costed as
# "copy" (0.2 ns); over ten layers s2d-winograd supports it took 0.38-1.52 ns a value, the
# medians of four runs 0.56-0.89 in float32 and of three 0.74-0.85 in float64 (rows of OW + 2
# values read at a stride; same script). It moves no choice on the two latest oracle records.
# float32 "nn" k_half 16: the forward products with few inner terms (Winograd's and
# gemm-1x1's are over the channels) ran faster than k_half 24 has them. 16 (or 12) scored
# better on both oracles and both 300-layer samples, and flipped res-s2's and ResNet-18
# l3.0.conv1's batch-16 forward to winograd-s2, 8.2-8.8 ms against im2col's 9.7-10.3
# (docs/performance.md, "The cost model: few inner terms"). float64 keeps 24: not measured.
COST_MODEL = {
    "float32": {
        "gemm": {"nn": _gemm(150e9, k_half=16.0), "tn": _gemm(140e9), "nt": _gemm(120e9),
                 "sum": _gemm(150e9, k_half=100.0)},
        "elements": {
            "im2col": 0.25e-9, "col2im": 0.4e-9, "copy": 0.2e-9,
            "winograd-input-2x2": 0.3e-9, "winograd-output-2x2": 0.3e-9,
            "winograd-input-4x4": 0.45e-9, "winograd-output-4x4": 0.45e-9,
            "winograd-input-stride-2": 0.35e-9, "winograd-output-stride-2": 0.35e-9,
            "winograd-weight-2x2": 0.3e-9, "winograd-weight-4x4": 0.55e-9,
            "winograd-weight-stride-2": 0.3e-9, "winograd-weight-memory": 0.8e-9,
            "winograd-dout-2x2": 0.4e-9, "winograd-dout-4x4": 0.5e-9,
            "depthwise-tap": 0.08e-9, "depthwise-pad": 0.3e-9, "depthwise-run": 15e-9,
            "s2d-kernel-split": 1.85e-9, "s2d-phase-copy": 0.7e-9,
        },
        "parallel_efficiency": 0.92,
        "calls": {"default": 30e-6},
    },
    "float64": {
        "gemm": {"nn": _gemm(75e9), "tn": _gemm(70e9), "nt": _gemm(60e9),
                 "sum": _gemm(75e9, k_half=100.0)},
        "elements": {
            "im2col": 0.35e-9, "col2im": 0.6e-9, "copy": 0.3e-9,
            "winograd-input-2x2": 0.5e-9, "winograd-output-2x2": 0.5e-9,
            "winograd-input-4x4": 0.7e-9, "winograd-output-4x4": 0.7e-9,
            "winograd-input-stride-2": 0.55e-9, "winograd-output-stride-2": 0.55e-9,
            "winograd-weight-2x2": 0.36e-9, "winograd-weight-4x4": 0.66e-9,
            "winograd-weight-stride-2": 0.36e-9, "winograd-weight-memory": 1.6e-9,
            "winograd-dout-2x2": 0.6e-9, "winograd-dout-4x4": 0.8e-9,
            "depthwise-tap": 0.16e-9, "depthwise-pad": 0.45e-9, "depthwise-run": 15e-9,
            "s2d-kernel-split": 2.6e-9, "s2d-phase-copy": 0.8e-9,
        },
        "parallel_efficiency": 0.92,
        "calls": {"default": 30e-6},
    },
}
