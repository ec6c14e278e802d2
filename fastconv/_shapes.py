"""Output-size arithmetic and int-or-(h, w) argument normalisation: the one place for both."""
import numbers
from typing import NamedTuple

import numpy as np

# BLAS takes 32-bit ints for sizes and leading dimensions.
BLAS_INT_MAX = 2**31 - 1
# The largest index (and element count) numpy and the kernels' Py_ssize_t arithmetic hold.
INDEX_MAX = int(np.iinfo(np.intp).max)


def as_pair(value, name, *, minimum):
    """Normalise an int or an (h, w) pair of ints to a tuple of two Python ints.

    Raises TypeError for anything that is not an int or a length-2 sequence of ints
    (bools and floats included), ValueError for a wrong length or a value below `minimum`.
    """
    # the common cases, checked first: this runs on every call
    if type(value) is int:
        pair = (value, value)
    elif type(value) is tuple and len(value) == 2 and type(value[0]) is int and type(value[1]) is int:
        pair = value
    elif isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, (bool, np.bool_)):
        pair = (int(value), int(value))
    elif isinstance(value, (tuple, list, np.ndarray)):
        items = list(np.asarray(value, dtype=object).ravel()) if isinstance(value, np.ndarray) else list(value)
        for item in items:
            if isinstance(item, (bool, np.bool_)) or not isinstance(item, (numbers.Integral, np.integer)):
                raise TypeError(
                    f"{name} must be an int or a (height, width) pair of ints, got {value!r}"
                )
        if len(items) != 2:
            raise ValueError(
                f"{name} must be an int or a (height, width) pair, got {len(items)} values: {value!r}"
            )
        pair = (int(items[0]), int(items[1]))
    else:
        raise TypeError(
            f"{name} must be an int or a (height, width) pair of ints, got {type(value).__name__} {value!r}"
        )
    if pair[0] < minimum or pair[1] < minimum:
        raise ValueError(f"{name} must be >= {minimum} in both dimensions, got {value!r}")
    return pair


def output_size(size, kernel, stride, padding):
    """Sliding-window output length: floor((size + 2 * padding - kernel) / stride) + 1."""
    return (size + 2 * padding - kernel) // stride + 1


class Window2d(NamedTuple):
    """Geometry of a 2-D sliding window over an (N, C, H, W) input.

    Everything a kernel needs besides the data: input sizes, window, stride, padding
    and the resulting output sizes, all plain ints. (A named tuple: immutable, and
    quicker to make than a frozen dataclass, on a path taken on every call.)
    """

    batch: int
    channels: int
    height: int
    width: int
    kernel_height: int
    kernel_width: int
    stride_height: int
    stride_width: int
    pad_height: int
    pad_width: int
    out_height: int
    out_width: int

    @property
    def input_shape(self):
        return (self.batch, self.channels, self.height, self.width)

    @property
    def kernel_size(self):
        return (self.kernel_height, self.kernel_width)

    @property
    def stride(self):
        return (self.stride_height, self.stride_width)

    @property
    def padding(self):
        return (self.pad_height, self.pad_width)


def window2d(input_shape, kernel_size, stride, padding, *, kernel_name="kernel_size", input_name="x"):
    """Validate and normalise window arguments against an (N, C, H, W) input shape.

    `kernel_size`, `stride` and `padding` take an int or an (h, w) pair. Raises ValueError
    when the window does not fit the padded input, naming the shapes.
    """
    batch, channels, height, width = map(int, input_shape)
    kernel_height, kernel_width = as_pair(kernel_size, kernel_name, minimum=1)
    stride_height, stride_width = as_pair(stride, "stride", minimum=1)
    pad_height, pad_width = as_pair(padding, "padding", minimum=0)
    if kernel_height > height + 2 * pad_height or kernel_width > width + 2 * pad_width:
        raise ValueError(
            f"{kernel_name} ({kernel_height}, {kernel_width}) is larger than the padded input: "
            f"{input_name} has spatial shape ({height}, {width}) and padding "
            f"({pad_height}, {pad_width}) gives ({height + 2 * pad_height}, {width + 2 * pad_width})"
        )
    out_height = output_size(height, kernel_height, stride_height, pad_height)
    out_width = output_size(width, kernel_width, stride_width, pad_width)
    _check_indexable(height, width, (stride_height, stride_width), (pad_height, pad_width),
                     (out_height, out_width))
    return Window2d(
        batch, channels, height, width,
        kernel_height, kernel_width,
        stride_height, stride_width,
        pad_height, pad_width,
        out_height, out_width,
    )


def _check_indexable(height, width, stride, padding, out):
    """Raise ValueError, naming the argument, for a stride or padding no array could index.

    Positions in the padded input must fit the kernels' signed 64-bit (Py_ssize_t) index
    arithmetic and the output plane (out: its height and width) must fit an array; otherwise
    numpy or Cython would fail later with a message that names neither argument.
    """
    if stride[0] > INDEX_MAX or stride[1] > INDEX_MAX:
        raise ValueError(f"stride {stride} is too large: at most {INDEX_MAX} in each dimension")
    padded = (height + 2 * padding[0], width + 2 * padding[1])
    if padded[0] > INDEX_MAX or padded[1] > INDEX_MAX or out[0] * out[1] > INDEX_MAX:
        raise ValueError(
            f"padding {padding} is too large: it makes a padded input of {padded} and an output "
            f"of {out} per plane, beyond what an array can index ({INDEX_MAX} elements)"
        )
