"""Space-to-depth (polyphase) rearrangement, the NumPy twin of the compiled copies: a strided convolution as a 3x3 stride-1 one.

With stride (s_h, s_w), output (oh, ow) of a KH x KW convolution reads padded input pixels
(s_h*oh + kh, s_w*ow + kw). Write kh = s_h*i + a (0 <= a < s_h) and kw = s_w*j + b: the pixel
is then pixel (oh + i, ow + j) of the phase image (a, b) of channel c,

    phases[n, (c, a, b), p, q] = padded x[n, c, s_h*p + a, s_w*q + b],

and the convolution is a stride-1 one over the C*s_h*s_w phase images with the kernels
cut the same way, kernels[f, (c, a, b), i, j] = w[f, c, s_h*i + a, s_w*j + b] (zero where
that tap lies past KH or KW). With KH <= 3*s_h and KW <= 3*s_w those kernels are 3x3, and the
phase images need OH + 2 rows and OW + 2 columns. Every padded input pixel lies in exactly
one phase image, so the gradient with respect to x is the phases' gradient put back in place.
"""


def _span(phase, stride, pad, size, count):
    """For phase `phase` along one axis: the phase positions [first, stop) (of `count`) that
    fall inside the input (0 <= stride*p + phase - pad < size), and the input index of the
    first; (0, 0, 0) when none do."""
    first = max(0, -((phase - pad) // stride))  # ceil((pad - phase) / stride)
    stop = min(count, (size - 1 + pad - phase) // stride + 1)
    if stop <= first:
        return 0, 0, 0
    return first, stop, stride * first + phase - pad


def _phase_views(window, phases):
    """(view of phase image (a, b) of every channel (N, C, OH + 2, OW + 2), row span,
    column span) for each phase (a, b), the spans as _span gives them."""
    stride_h, stride_w = window.stride
    batch, _, rows, columns = phases.shape
    split = phases.reshape(batch, window.channels, stride_h, stride_w, rows, columns)
    for a in range(stride_h):
        row_span = _span(a, stride_h, window.pad_height, window.height, rows)
        for b in range(stride_w):
            column_span = _span(b, stride_w, window.pad_width, window.width, columns)
            yield split[:, :, a, b], row_span, column_span


def _strided(first, stop, start, stride):
    """The input slice of phase positions [first, stop): start, start + stride, ..."""
    return slice(start, start + stride * (stop - first - 1) + 1, stride)


def space_to_depth(x, window, phases):
    """Fill phases (phase_shape(window), or fewer images) from x (N, C, H, W): zero where
    the padded input is padding or lies past x."""
    stride_h, stride_w = window.stride
    for target, (p0, p1, r0), (q0, q1, c0) in _phase_views(window, phases):
        if p1 == p0 or q1 == q0:
            target[...] = 0
            continue
        target[:, :, :p0] = 0
        target[:, :, p1:] = 0
        target[:, :, p0:p1, :q0] = 0
        target[:, :, p0:p1, q1:] = 0
        target[:, :, p0:p1, q0:q1] = x[:, :, _strided(p0, p1, r0, stride_h),
                                       _strided(q0, q1, c0, stride_w)]


def depth_to_space(phases, window, dx):
    """dx (N, C, H, W) from the gradient of the phase images (the adjoint of space_to_depth):
    each input pixel takes its phase pixel; pixels that no phase holds (rows or columns past
    the last window) get zero."""
    stride_h, stride_w = window.stride
    for source, (p0, p1, r0), (q0, q1, c0) in _phase_views(window, phases):
        if p1 > p0 and q1 > q0:
            dx[:, :, _strided(p0, p1, r0, stride_h), _strided(q0, q1, c0, stride_w)] = (
                source[:, :, p0:p1, q0:q1])
    rows, columns = phases.shape[2:]
    dx[:, :, max(0, stride_h * rows - window.pad_height):] = 0
    dx[:, :, :, max(0, stride_w * columns - window.pad_width):] = 0
