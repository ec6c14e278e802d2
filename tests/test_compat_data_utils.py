"""fastconv.compat.cs231n.data_utils on small synthetic batches in CIFAR-10's python-version format,
and every way a folder can be missing or malformed."""
import os
import pickle

import numpy as np
import pytest

from fastconv.compat.cs231n import data_utils
from fastconv.compat.cs231n.data_utils import get_CIFAR10_data, load_CIFAR10, load_CIFAR_batch

NAMES = [f"data_batch_{index}" for index in range(1, 6)] + ["test_batch"]


def make_batch(count, seed):
    """A batch dict as CIFAR-10 stores it: 'data' uint8 (count, 3072) (R, G, B planes of 32x32), 'labels' list."""
    rng = np.random.default_rng(seed)
    return {
        "batch_label": f"synthetic batch {seed}",
        "labels": [int(label) for label in rng.integers(0, 10, count)],
        "data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
        "filenames": [f"image_{seed}_{index}.png" for index in range(count)],
    }


def write(path, value, protocol=2):
    with open(path, "wb") as handle:
        pickle.dump(value, handle, protocol=protocol)


@pytest.fixture
def cifar_dir(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batches = {}
    for seed, name in enumerate(NAMES):
        batches[name] = make_batch(6 if name != "test_batch" else 5, seed)
        write(folder / name, batches[name])
    return folder, batches


def test_load_batch_layout_and_dtypes(cifar_dir):
    folder, batches = cifar_dir
    X, y = load_CIFAR_batch(str(folder / "data_batch_1"))
    assert X.shape == (6, 32, 32, 3) and X.dtype == np.float64 and y.dtype == np.int64
    data = batches["data_batch_1"]["data"]
    # pixel (row 2, column 5) of image 3: red at 2*32+5, green 1024 later, blue 2048 later
    np.testing.assert_array_equal(X[3, 2, 5], data[3, [2 * 32 + 5, 1024 + 2 * 32 + 5, 2048 + 2 * 32 + 5]])
    np.testing.assert_array_equal(y, batches["data_batch_1"]["labels"])


def test_load_cifar10_concatenates_the_five_batches(cifar_dir):
    folder, batches = cifar_dir
    X_train, y_train, X_test, y_test = load_CIFAR10(str(folder))
    assert X_train.shape == (30, 32, 32, 3) and X_test.shape == (5, 32, 32, 3)
    expected = np.concatenate([batches[name]["labels"] for name in NAMES[:5]])
    np.testing.assert_array_equal(y_train, expected)
    np.testing.assert_array_equal(y_test, batches["test_batch"]["labels"])


def test_get_cifar10_data_splits_and_subtracts_the_mean(cifar_dir):
    folder, _ = cifar_dir
    X_train, y_train, X_test, y_test = load_CIFAR10(folder)
    data = get_CIFAR10_data(20, 5, 3, cifar10_dir=str(folder))
    assert set(data) == {"X_train", "y_train", "X_val", "y_val", "X_test", "y_test"}
    assert data["X_train"].shape == (20, 3, 32, 32) and data["X_val"].shape == (5, 3, 32, 32)
    assert data["X_test"].shape == (3, 3, 32, 32) and data["X_train"].flags.c_contiguous
    mean = X_train[:20].mean(axis=0)
    np.testing.assert_allclose(data["X_train"], (X_train[:20] - mean).transpose(0, 3, 1, 2))
    np.testing.assert_allclose(data["X_val"], (X_train[20:25] - mean).transpose(0, 3, 1, 2))
    np.testing.assert_allclose(data["X_test"], (X_test[:3] - mean).transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(data["y_val"], y_train[20:25])
    raw = get_CIFAR10_data(20, 5, 3, subtract_mean=False, cifar10_dir=folder, dtype=np.float32)
    assert raw["X_train"].dtype == np.float32
    np.testing.assert_array_equal(raw["X_train"], X_train[:20].transpose(0, 3, 1, 2))


def test_default_folder_from_the_environment_and_the_course_place(cifar_dir, monkeypatch, tmp_path):
    folder, _ = cifar_dir
    monkeypatch.setenv(data_utils.FOLDER_VARIABLE, str(folder))
    assert get_CIFAR10_data(10, 2, 2)["X_train"].shape == (10, 3, 32, 32)
    monkeypatch.delenv(data_utils.FOLDER_VARIABLE)
    course = tmp_path / "assignment2"
    (course / "cs231n" / "datasets").mkdir(parents=True)
    os.symlink(folder, course / "cs231n" / "datasets" / "cifar-10-batches-py")
    monkeypatch.chdir(course)
    assert get_CIFAR10_data(10, 2, 2)["y_test"].shape == (2,)


def test_bytes_keys_and_a_python2_numpy_module_name(cifar_dir):
    folder, batches = cifar_dir
    batch = batches["data_batch_2"]
    write(folder / "data_batch_2", {key.encode(): value for key, value in batch.items()})
    X, y = load_CIFAR_batch(str(folder / "data_batch_2"))
    np.testing.assert_array_equal(y, batch["labels"])
    # the real files were pickled by Python 2 with NumPy 1, naming numpy.core.multiarray
    text = pickle.dumps(batch, protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray" in text
    (folder / "data_batch_3").write_bytes(text)
    X3, _ = load_CIFAR_batch(str(folder / "data_batch_3"))
    np.testing.assert_array_equal(X3, X)


class Evil:
    def __reduce__(self):
        return (os.system, ("echo owned",))


@pytest.mark.parametrize("content, match", [
    (b"not a pickle at all", "not a readable CIFAR-10 batch"),
    (pickle.dumps([1, 2, 3], protocol=2), "holds a list, not a dict"),
    (pickle.dumps({"labels": [1]}, protocol=2), "has no 'data' entry"),
    (pickle.dumps({"data": np.zeros((2, 3072), np.uint8)}, protocol=2), "has no 'labels' entry"),
    (pickle.dumps({"data": np.zeros((2, 3072), np.float32), "labels": [1, 2]}, protocol=2), "uint8 array of shape"),
    (pickle.dumps({"data": np.zeros((2, 1024), np.uint8), "labels": [1, 2]}, protocol=2), r"\(n, 3072\)"),
    (pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [1]}, protocol=2), "2 integer labels"),
    (pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [1, 10]}, protocol=2), r"labels must lie in \[0, 10\)"),
    (pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": Evil()}, protocol=2), "refusing to load"),
])
def test_malformed_batches_are_clear_errors(cifar_dir, content, match):
    folder, _ = cifar_dir
    (folder / "data_batch_4").write_bytes(content)
    with pytest.raises(ValueError, match=match):
        load_CIFAR10(str(folder))


def test_missing_folder_or_files_say_what_is_expected(cifar_dir, tmp_path, monkeypatch):
    folder, _ = cifar_dir
    with pytest.raises(FileNotFoundError, match="no folder .*cifar-10-python.tar.gz.*cifar.html"):
        load_CIFAR10(str(tmp_path / "nowhere"))
    (folder / "data_batch_5").unlink()
    (folder / "test_batch").unlink()
    with pytest.raises(FileNotFoundError, match="lacks data_batch_5, test_batch"):
        load_CIFAR10(folder)
    with pytest.raises(FileNotFoundError, match="no CIFAR-10 batch file"):
        load_CIFAR_batch(str(folder / "data_batch_5"))
    monkeypatch.delenv(data_utils.FOLDER_VARIABLE, raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"cs231n/datasets/cifar-10-batches-py"):
        get_CIFAR10_data()


def test_bad_arguments(cifar_dir):
    folder, _ = cifar_dir
    with pytest.raises(ValueError, match="asked for 29 \\+ 5 training and validation images"):
        get_CIFAR10_data(29, 5, 1, cifar10_dir=folder)
    with pytest.raises(ValueError, match="num_training must be an int >= 0"):
        get_CIFAR10_data(-1, cifar10_dir=folder)
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        get_CIFAR10_data(1, 1, 1, cifar10_dir=folder, dtype=np.int32)
    with pytest.raises(TypeError, match="ROOT must be a path"):
        load_CIFAR10(3)
