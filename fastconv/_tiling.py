"""Spatial tiling of a sliding-window op over a chunked image, one axis at a time: which output rows go with each input chunk, the input rows each output tile reads, and the halo a chunk needs from its neighbours.

Plain integer arithmetic on the geometry `_geometry` normalised (no dask here);
fastconv.dask turns a plan into a task graph. "Rows" below means positions along any one
spatial axis.

The rule that lines the output chunks up with the input's: output row r goes with the input
chunk that holds its window's centre row,

    centre(r) = r * stride - pad_before + ((kernel - 1) * dilation) // 2,

clamped to the image (rows whose centre lies in the padding go with the first or the last
chunk). So with stride 1 and "same" padding the output chunks are the input chunks, and
with stride s and no padding an interior input chunk of k*s rows on the stride grid gives
k output rows (every such chunk, for a 2x2 stride-2 pool). A chunk may get no output rows
(when it is smaller than the stride); its output chunk is then empty.
"""
from typing import NamedTuple


class AxisWindow(NamedTuple):
    """A sliding window along one spatial axis, as conv_geometry or window2d normalised it."""

    size: int
    kernel: int
    stride: int
    dilation: int
    pad_before: int
    pad_after: int
    out: int

    @property
    def span(self):
        """Input rows one window covers: (kernel - 1) * dilation + 1."""
        return (self.kernel - 1) * self.dilation + 1

    @property
    def centre(self):
        """How far the window's centre row lies past its first row."""
        return (self.span - 1) // 2


def conv_axes(geometry):
    """The (height, width) AxisWindows of a 2-D ConvGeometry."""
    return tuple(AxisWindow(geometry.size[axis], geometry.kernel[axis], geometry.stride[axis],
                            geometry.dilation[axis], geometry.pad_before[axis],
                            geometry.pad_after[axis], geometry.out[axis]) for axis in (0, 1))


def pool_axes(window):
    """The (height, width) AxisWindows of a 2-D PoolGeometry (symmetric padding, no dilation)."""
    return (AxisWindow(window.height, window.kernel_height, window.stride_height, 1,
                       window.pad_height, window.pad_height, window.out_height),
            AxisWindow(window.width, window.kernel_width, window.stride_width, 1,
                       window.pad_width, window.pad_width, window.out_width))


def output_start(window, input_start):
    """The first output row going with the input chunk that starts at row `input_start`:
    the first row whose window centre is at or past `input_start` (0 for the first chunk)."""
    if input_start <= 0:
        return 0
    first = -(-(input_start + window.pad_before - window.centre) // window.stride)
    return min(max(first, 0), window.out)


def _starts(chunks):
    starts, position = [], 0
    for length in chunks:
        starts.append(position)
        position += length
    return starts


def output_chunks(window, chunks):
    """Output chunk lengths along the axis, one per input chunk, by the centre-row rule."""
    bounds = [output_start(window, start) for start in _starts(chunks)] + [window.out]
    return tuple(stop - start for start, stop in zip(bounds, bounds[1:]))


def input_region(window, out_start, out_stop):
    """The input rows that output rows [out_start, out_stop) read, for a non-empty range.

    Returns (start, stop, pad_before, pad_after): rows [start, stop) of the image, and how
    many padding rows the tile needs before and after them (non-zero only at the image's
    own edges), so that the windows of a tile of (stop - start) rows padded so are exactly
    those of output rows out_start..out_stop-1. None when those windows read padding only.
    """
    first = out_start * window.stride - window.pad_before
    stop = (out_stop - 1) * window.stride - window.pad_before + window.span
    if first >= window.size or stop <= 0:
        return None
    start, end = max(first, 0), min(stop, window.size)
    return start, end, start - first, stop - end


def largest_halo(window):
    """The most rows an output tile can read past either end of its input chunk.

    By the centre-row rule a tile reads at most `centre` rows before its chunk and
    span - 1 - centre (never fewer) after it, whatever the chunk boundaries and stride.
    """
    return window.span - 1 - window.centre


def merge_small_chunks(chunks, minimum):
    """Chunk lengths with every chunk shorter than `minimum` merged into a neighbour
    (into the one before it, the first chunk into the one after), so that each remaining
    chunk can give its neighbours the halo they need. A single chunk is left as it is."""
    merged = []
    for length in chunks:
        if merged and (length < minimum or merged[-1] < minimum):
            merged[-1] += length
        else:
            merged.append(length)
    if len(merged) > 1 and merged[-1] < minimum:
        merged[-2] += merged.pop()
    return tuple(merged)


def halo(window, chunks):
    """(before, after): the most rows any chunk's output tile reads before its chunk's
    first row and after its last; (0, 0) for a single chunk."""
    before = after = 0
    starts = _starts(chunks)
    outputs = output_chunks(window, chunks)
    out_start = 0
    for index, (start, length, out_length) in enumerate(zip(starts, chunks, outputs)):
        region = input_region(window, out_start, out_start + out_length) if out_length else None
        out_start += out_length
        if region is None:
            continue
        if index > 0:
            before = max(before, start - region[0])
        if index < len(chunks) - 1:
            after = max(after, region[1] - (start + length))
    return before, after


class AxisPlan(NamedTuple):
    """The tiling of one spatial axis: input chunks (after merging), their starts, the
    output chunks, and the uniform halo (before, after) every chunk gets from its neighbours."""

    window: AxisWindow
    chunks: tuple
    starts: tuple
    out_chunks: tuple
    halo: tuple


def plan_axis(window, chunks):
    """Plan one axis of input chunk lengths `chunks` (their sum is window.size)."""
    chunks = merge_small_chunks(tuple(int(c) for c in chunks), largest_halo(window))
    return AxisPlan(window, chunks, tuple(_starts(chunks)), output_chunks(window, chunks),
                    halo(window, chunks))


def tile_rows(plan, index, out_start, out_stop, block_rows):
    """Where output rows [out_start, out_stop) of chunk `index` find their input inside the
    chunk's block with halo (block_rows rows, starting plan.halo[0] rows before the chunk,
    or at the chunk for the first one).

    Returns (begin, end, pad_before, pad_after) within the block, or None when the rows'
    windows read padding only.
    """
    region = input_region(plan.window, out_start, out_stop)
    if region is None:
        return None
    start, stop, pad_before, pad_after = region
    origin = plan.starts[index] - (plan.halo[0] if index > 0 else 0)
    begin, end = start - origin, stop - origin
    if begin < 0 or end > block_rows:
        raise RuntimeError(  # a planning bug, never the caller's fault
            f"tile of output rows [{out_start}, {out_stop}) needs input rows [{start}, {stop}), "
            f"outside its block of rows [{origin}, {origin + block_rows}) (chunk {index} of "
            f"{plan.chunks}, halo {plan.halo})")
    return begin, end, pad_before, pad_after
