"""The course's ``cs231n.data_utils``: CIFAR-10 from its "python version" batch files, read from disk only.

The CIFAR-10 python version (https://www.cs.toronto.edu/~kriz/cifar.html, cifar-10-python.tar.gz,
unpacked to a folder ``cifar-10-batches-py``) holds ``data_batch_1`` ... ``data_batch_5`` and
``test_batch``: each a pickled dict with ``'data'``, a uint8 array (n, 3072) of images (1024
red, then green, then blue values, row-major 32x32) and ``'labels'``, a list of n ints in
[0, 10). The files were pickled by Python 2, so they are read with encoding "latin1". Nothing
is downloaded here: the course's ``get_datasets.sh`` or the address above gives the folder.

Unpickling can run code; these loaders accept only what a CIFAR-10 batch contains (dicts,
lists, strings, numbers and NumPy arrays) and reject any other object in the file.
"""
import os
import pickle

import numpy as np

__all__ = ["load_pickle", "load_CIFAR_batch", "load_CIFAR10", "get_CIFAR10_data"]

_WHERE = ("the CIFAR-10 python version: download cifar-10-python.tar.gz from "
          "https://www.cs.toronto.edu/~kriz/cifar.html (or run the course's cs231n/datasets/get_datasets.sh) "
          "and unpack it; its folder cifar-10-batches-py holds data_batch_1 ... data_batch_5 and test_batch")
TRAIN_BATCHES = tuple(f"data_batch_{index}" for index in range(1, 6))
TEST_BATCH = "test_batch"
# the course's default place, relative to the folder a course notebook runs in
DEFAULT_FOLDER = os.path.join("cs231n", "datasets", "cifar-10-batches-py")
FOLDER_VARIABLE = "FASTCONV_CIFAR10_DIR"

# the globals a pickled dict of NumPy arrays refers to (NumPy 1 and 2 module names; protocol-2
# pickles written by Python 3 store raw bytes through _codecs.encode)
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a CIFAR-10 batch holds only a dict of "
                                     "lists and NumPy arrays")


def load_pickle(f):
    """Unpickle a CIFAR-10 batch from the open binary file f (latin1 strings, NumPy arrays only)."""
    return _BatchUnpickler(f, encoding="latin1").load()


def _field(batch, key, filename):
    for candidate in (key, key.encode()):  # str keys with latin1; bytes keys if pickled so
        if candidate in batch:
            return batch[candidate]
    raise ValueError(f"{filename} is not a CIFAR-10 batch: its dict has no {key!r} entry "
                     f"(keys: {sorted(map(str, batch))}); expected {_WHERE}")


def load_CIFAR_batch(filename):
    """One batch file -> (X (n, 32, 32, 3) float64, y (n,) int64), images as height x width x RGB."""
    if not os.path.isfile(filename):
        raise FileNotFoundError(f"no CIFAR-10 batch file {filename}; expected {_WHERE}")
    try:
        with open(filename, "rb") as handle:
            batch = load_pickle(handle)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError) as error:
        raise ValueError(f"{filename} is not a readable CIFAR-10 batch ({type(error).__name__}: {error}); "
                         f"expected {_WHERE}") from error
    if not isinstance(batch, dict):
        raise ValueError(f"{filename} is not a CIFAR-10 batch: it holds a {type(batch).__name__}, not a dict; "
                         f"expected {_WHERE}")
    data, labels = _field(batch, "data", filename), _field(batch, "labels", filename)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        described = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise ValueError(f"{filename}: 'data' must be a uint8 array of shape (n, 3072), got a {described}")
    labels = np.asarray(labels)
    if labels.shape != (data.shape[0],) or labels.dtype.kind not in "iu":
        raise ValueError(f"{filename}: 'labels' must hold {data.shape[0]} integer labels, one per image, "
                         f"got {labels.dtype} of shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{filename}: labels must lie in [0, 10), got values from {labels.min()} to {labels.max()}")
    images = data.reshape(data.shape[0], 3, 32, 32).transpose(0, 2, 3, 1).astype(np.float64)
    return images, labels.astype(np.int64)


def load_CIFAR10(ROOT):
    """All of CIFAR-10 from the folder ROOT -> (X_train, y_train, X_test, y_test).

    X_train (50000, 32, 32, 3) and X_test (10000, 32, 32, 3) float64 in [0, 255], y int64
    (fewer images if the batches hold fewer).
    """
    if not isinstance(ROOT, (str, os.PathLike)):
        raise TypeError(f"ROOT must be a path to the cifar-10-batches-py folder, got {type(ROOT).__name__}")
    if not os.path.isdir(ROOT):
        raise FileNotFoundError(f"no folder {ROOT}; expected {_WHERE}")
    missing = [name for name in TRAIN_BATCHES + (TEST_BATCH,) if not os.path.isfile(os.path.join(ROOT, name))]
    if missing:
        raise FileNotFoundError(f"{ROOT} lacks {', '.join(missing)}; expected {_WHERE}")
    parts = [load_CIFAR_batch(os.path.join(ROOT, name)) for name in TRAIN_BATCHES]
    X_train = np.concatenate([images for images, _ in parts])
    y_train = np.concatenate([labels for _, labels in parts])
    X_test, y_test = load_CIFAR_batch(os.path.join(ROOT, TEST_BATCH))
    return X_train, y_train, X_test, y_test


def _count(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    return int(value)


def get_CIFAR10_data(num_training=49000, num_validation=1000, num_test=1000, subtract_mean=True, *,
                     cifar10_dir=None, dtype=np.float64):
    """CIFAR-10 split and preprocessed as the course does.

    The first num_training training images are the training set, the next num_validation
    the validation set, the first num_test test images the test set; with subtract_mean
    the training set's mean image is subtracted from all three. Images come channels first.

    Parameters
    ----------
    num_training, num_validation, num_test : ints >= 0 (49000, 1000, 1000).
    subtract_mean : bool.
    cifar10_dir : the cifar-10-batches-py folder. None: the environment variable
        FASTCONV_CIFAR10_DIR, else cs231n/datasets/cifar-10-batches-py under the current
        folder (where the course keeps it, next to its notebooks).
    dtype : float64 (the course's) or float32 (half the memory).

    Returns
    -------
    dict with 'X_train' (num_training, 3, 32, 32), 'y_train' (num_training,), 'X_val',
    'y_val', 'X_test', 'y_test'.
    """
    num_training = _count(num_training, "num_training")
    num_validation = _count(num_validation, "num_validation")
    num_test = _count(num_test, "num_test")
    if np.dtype(dtype) not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}")
    if cifar10_dir is None:
        cifar10_dir = os.environ.get(FOLDER_VARIABLE) or DEFAULT_FOLDER
    X_train, y_train, X_test, y_test = load_CIFAR10(cifar10_dir)
    if num_training + num_validation > X_train.shape[0] or num_test > X_test.shape[0]:
        raise ValueError(f"asked for {num_training} + {num_validation} training and validation images and "
                         f"{num_test} test images; {cifar10_dir} holds {X_train.shape[0]} and {X_test.shape[0]}")
    X_val = X_train[num_training:num_training + num_validation]
    y_val = y_train[num_training:num_training + num_validation]
    X_train, y_train = X_train[:num_training], y_train[:num_training]
    X_test, y_test = X_test[:num_test], y_test[:num_test]
    if subtract_mean and num_training:
        mean_image = X_train.mean(axis=0)
        X_train, X_val, X_test = X_train - mean_image, X_val - mean_image, X_test - mean_image

    def channels_first(images):
        return np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=dtype)

    return {
        "X_train": channels_first(X_train), "y_train": y_train,
        "X_val": channels_first(X_val), "y_val": y_val,
        "X_test": channels_first(X_test), "y_test": y_test,
    }
