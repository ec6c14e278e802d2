"""fastconv.save_model / load_model: bit-for-bit round trips of every layer type, the file format,
and a suite of altered files that must each give a clear ValueError (and never unpickle)."""
import io
import json
import os
import zipfile

import numpy as np
import pytest

import fastconv
from fastconv import layers
from fastconv import load_model, save_model
from fastconv.layers import (AvgPool2d, BatchNorm2d, Conv2d, Dropout, Flatten, Layer, LeakyReLU, Linear,
                             MaxPool2d, ReLU, Sequential)
from fastconv.layers.base import LAYER_TYPES
from fastconv.serialize import ARCHITECTURE_KEY, FORMAT_VERSION

# One example per layer type, with arguments other than the defaults. A new layer type must
# get an entry here (test_every_layer_type_has_a_round_trip_example fails until it does).
EXAMPLES = {
    "Conv2d": lambda dtype: Conv2d(3, 4, (3, 2), stride=(2, 1), padding=(1, 0), dtype=dtype,
                                   rng=np.random.default_rng(0), backend="reference"),
    "Linear": lambda dtype: Linear(12, 5, bias=False, dtype=dtype, rng=1, weight_scale=0.5),
    "BatchNorm2d": lambda dtype: BatchNorm2d(3, eps=1e-3, momentum=0.25, dtype=dtype),
    "MaxPool2d": lambda dtype: MaxPool2d((3, 2), stride=(2, 1), padding=(1, 0)),
    "AvgPool2d": lambda dtype: AvgPool2d(2, stride=1, padding=1, backend="cython"),
    "ReLU": lambda dtype: ReLU(),
    "LeakyReLU": lambda dtype: LeakyReLU(0.2),
    "Flatten": lambda dtype: Flatten(),
    "Dropout": lambda dtype: Dropout(0.3, rng=7),
    "Sequential": lambda dtype: Sequential([Conv2d(3, 2, 1, dtype=dtype, rng=2), ReLU()]),
    "Conv1d": lambda dtype: layers.Conv1d(3, 4, 3, stride=2, padding="same", dilation=2,
                                          padding_mode="reflect", dtype=dtype, rng=3),
    "Conv3d": lambda dtype: layers.Conv3d(3, 4, (2, 3, 1), padding=(1, 0, 1, 1, 0, 0), dtype=dtype,
                                          rng=4),
    "ConvTranspose1d": lambda dtype: layers.ConvTranspose1d(3, 4, 4, stride=2, padding=1,
                                                            dtype=dtype, rng=5),
    "ConvTranspose2d": lambda dtype: layers.ConvTranspose2d(3, 6, 3, stride=2, padding=1,
                                                            output_padding=1, groups=3,
                                                            dtype=dtype, rng=6),
    "MaxPool1d": lambda dtype: layers.MaxPool1d(3, stride=2, padding=1, dilation=2, ceil_mode=True),
    "MaxPool3d": lambda dtype: layers.MaxPool3d((2, 3, 2), stride=(1, 2, 2), padding=(1, 1, 0)),
    "AvgPool1d": lambda dtype: layers.AvgPool1d(3, stride=2, padding=1, count_include_pad=False),
    "AvgPool3d": lambda dtype: layers.AvgPool3d(2, ceil_mode=True, divisor_override=3),
    "AdaptiveAvgPool2d": lambda dtype: layers.AdaptiveAvgPool2d((3, 2)),
    "AdaptiveMaxPool2d": lambda dtype: layers.AdaptiveMaxPool2d(2),
    "GlobalAvgPool2d": lambda dtype: layers.GlobalAvgPool2d(),
    "MaxUnpool2d": lambda dtype: layers.MaxUnpool2d(2, padding=(0, 1)),
    "Residual": lambda dtype: layers.Residual(
        Sequential([Conv2d(3, 4, 3, padding=1, dtype=dtype, rng=8), layers.BatchNorm2d(4, dtype=dtype)]),
        Conv2d(3, 4, 1, bias=False, dtype=dtype, rng=9)),
    "BatchNorm1d": lambda dtype: layers.BatchNorm1d(5, eps=1e-4, momentum=0.3, dtype=dtype),
    "LayerNorm": lambda dtype: layers.LayerNorm((3, 5, 6), eps=1e-4, dtype=dtype),
    "GroupNorm": lambda dtype: layers.GroupNorm(3, 6, eps=1e-4, dtype=dtype),
    "ConvTranspose3d": lambda dtype: layers.ConvTranspose3d(3, 2, 2, stride=2, bias=False,
                                                            dtype=dtype, rng=7),
}
INPUTS = {"MaxPool1d": (2, 3, 9), "AvgPool1d": (2, 3, 9), "MaxPool3d": (2, 3, 4, 5, 6),
          "AvgPool3d": (2, 3, 4, 5, 6), "BatchNorm1d": (4, 5), "GroupNorm": (2, 6, 5, 4), "Linear": (4, 12), "Flatten": (4, 3, 5, 6), "Conv1d": (2, 3, 9), "Conv3d": (2, 3, 4, 5, 6),
          "ConvTranspose1d": (2, 3, 7), "ConvTranspose3d": (2, 3, 3, 4, 2)}


def _randomise(model, seed=1):
    rng = np.random.default_rng(seed)
    for name, array in model._state_arrays().items():
        values = rng.standard_normal(array.shape)
        array[...] = np.abs(values) + 0.5 if name.endswith("running_var") else values
    return model


def _round_trip(model, tmp_path, name="model.npz"):
    path = tmp_path / name
    save_model(model, path)
    return load_model(path)


def _assert_same_state(loaded, model):
    state, expected = loaded.state_dict(), model.state_dict()
    assert list(state) == list(expected)
    for key, value in expected.items():
        assert state[key].dtype == value.dtype and state[key].shape == value.shape, key
        assert state[key].tobytes() == value.tobytes(), key  # bit for bit (NaN payloads too)


def _cnn(dtype=np.float32):
    """A CS231n-style net with every kind of layer, one nested block, BN statistics."""
    rng = np.random.default_rng(0)
    return _randomise(Sequential([
        Conv2d(3, 4, 3, padding=1, dtype=dtype, rng=rng),
        BatchNorm2d(4, dtype=dtype),
        ReLU(),
        MaxPool2d(2),
        Sequential([Conv2d(4, 6, 3, padding=1, dtype=dtype, rng=rng), LeakyReLU(0.1), AvgPool2d(2)]),
        Flatten(),
        Dropout(0.25, rng=rng),
        Linear(6 * 2 * 2, 5, dtype=dtype, rng=rng),
    ]))


# --- round trips --------------------------------------------------------------------------------

def test_every_layer_type_has_a_round_trip_example():
    missing = sorted(set(LAYER_TYPES) - set(EXAMPLES))
    assert not missing, f"add save/load round-trip examples for {missing}"


@pytest.mark.parametrize("dtype", (np.float32, np.float64))
@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_every_layer_type_round_trips_bit_for_bit(name, dtype, tmp_path):
    layer = _randomise(EXAMPLES[name](dtype), seed=3)
    layer.eval()
    loaded = _round_trip(layer, tmp_path)
    assert type(loaded) is type(layer) and loaded is not layer
    _assert_same_state(loaded, layer)
    assert repr(loaded) == repr(layer)
    assert not loaded.training
    shape = INPUTS.get(name, (4, 3, 5, 6))
    x = np.random.default_rng(4).standard_normal(shape).astype(dtype)
    extra = ()
    if name == "MaxUnpool2d":  # it takes the indices of the max pool it undoes
        pooled = np.random.default_rng(5).standard_normal((4, 3, 10, 10)).astype(dtype)
        x, indices, _ = fastconv.max_pool2d_forward(pooled, 2, 2, (0, 1), return_indices=True)
        extra = (indices,)
    assert loaded.forward(x, *extra).tobytes() == layer.forward(x, *extra).tobytes()


def test_a_whole_model_round_trips_with_its_flags(tmp_path):
    model = _cnn(np.float64)
    model.freeze(up_to=2)
    model[4][1].trainable = False
    model[6].eval()  # one layer in eval mode inside a model in training mode
    loaded = _round_trip(model, tmp_path)
    _assert_same_state(loaded, model)
    assert repr(loaded) == repr(model)
    assert [layer.trainable for layer in loaded] == [layer.trainable for layer in model]
    assert [layer.trainable for layer in loaded[4]] == [True, False, True]
    assert loaded.training and not loaded[6].training and loaded[0].training
    x = np.random.default_rng(5).standard_normal((2, 3, 8, 8))
    assert loaded.eval().forward(x).tobytes() == model.eval().forward(x).tobytes()
    # the loaded model trains: its params are its own arrays
    assert all(loaded.params[key] is not model.params[key] for key in model.params)


def test_the_current_layers_are_saved_not_the_constructors_list(tmp_path):
    layers = [Linear(4, 3, rng=0), ReLU(), Linear(3, 2, rng=1)]
    model = Sequential(layers)
    model.layers[-1] = Linear(3, 7, rng=2)  # a replaced head
    layers.append(ReLU())  # and the caller's list changing afterwards
    loaded = _round_trip(model, tmp_path)
    assert len(loaded) == 3 and loaded[2].out_features == 7
    _assert_same_state(loaded, model)


def test_the_file_is_a_plain_npz_with_a_json_architecture(tmp_path):
    model = _cnn()
    path = tmp_path / "plain.npz"
    save_model(model, path)
    with np.load(path, allow_pickle=False) as archive:
        assert sorted(archive.files) == sorted([*model.state_dict(), ARCHITECTURE_KEY])
        np.testing.assert_array_equal(archive["4.0.weight"], model[4][0].params["weight"])
        header = json.loads(archive[ARCHITECTURE_KEY].tobytes().decode("utf-8"))
    assert header["format"] == "fastconv-model" and header["version"] == FORMAT_VERSION == 1
    conv = header["model"]["arguments"]["layers"][0]["layer"]
    assert conv["type"] == "Conv2d"
    assert conv["arguments"]["kernel_size"] == 3 and conv["arguments"]["dtype"] == {"dtype": "float32"}
    assert conv["arguments"]["rng"] is None and conv["unstored"] == ["rng"]
    pool = header["model"]["arguments"]["layers"][3]["layer"]
    assert pool == {"type": "MaxPool2d", "trainable": True, "training": True,
                    "arguments": {"kernel_size": 2, "stride": None, "padding": 0, "dilation": 1,
                                  "ceil_mode": False, "return_indices": False, "backend": "auto"}}


def test_tuples_dtypes_and_seeds_are_stored_exactly(tmp_path):
    layer = Conv2d(2, 2, (3, 1), stride=(1, 2), padding=[1, 0], dtype=np.dtype("float64"), rng=11)
    loaded = _round_trip(layer, tmp_path)
    config = loaded._config()
    assert config["kernel_size"] == (3, 1) and config["stride"] == (1, 2) and config["padding"] == [1, 0]
    assert config["dtype"] == np.float64 and config["rng"] == 11


def test_path_is_used_exactly_and_file_objects_work(tmp_path):
    model = _cnn()
    path = tmp_path / "weights"  # no .npz added
    save_model(model, str(path))
    assert os.listdir(tmp_path) == ["weights"]
    _assert_same_state(load_model(str(path)), model)
    buffer = io.BytesIO()
    save_model(model, buffer)
    buffer.seek(0)
    _assert_same_state(load_model(buffer), model)


def test_overwriting_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "model.npz"
    save_model(Linear(2, 2, rng=0), path)
    save_model(_cnn(), path)
    assert os.listdir(tmp_path) == ["model.npz"]
    assert isinstance(load_model(path), Sequential)


def test_loading_leaves_numpys_global_random_state_alone(tmp_path):
    path = tmp_path / "model.npz"
    save_model(Sequential([Conv2d(3, 8, 3), Linear(8, 8)]), path)  # rng=None: the global generator
    np.random.seed(123)
    expected = np.random.random(3)
    np.random.seed(123)
    load_model(path)
    np.testing.assert_array_equal(np.random.random(3), expected)


class _Custom(Layer):
    def forward(self, x):
        return x


def test_saving_a_layer_load_model_could_not_build_fails_before_writing(tmp_path):
    path = tmp_path / "model.npz"
    with pytest.raises(ValueError, match=r"cannot save the model \(Sequential\) argument 'layers'\[1\]: "
                                         r"test_serialize._Custom is not a fastconv.layers type"):
        save_model(Sequential([ReLU(), _Custom()]), path)
    assert os.listdir(tmp_path) == []
    odd = Dropout(0.5)
    odd.__dict__["_constructor_arguments"]["p"] = object()
    with pytest.raises(ValueError, match="argument 'p': a object argument cannot be stored"):
        save_model(odd, path)
    with pytest.raises(TypeError, match="model must be a fastconv.layers.Layer"):
        save_model({"weight": np.zeros(2)}, path)
    assert os.listdir(tmp_path) == []


def test_private_and_foreign_classes_are_not_registered():
    assert "_Pool2d" not in LAYER_TYPES and "Layer" not in LAYER_TYPES and "_Custom" not in LAYER_TYPES
    assert LAYER_TYPES["Conv2d"] is Conv2d and fastconv.save_model is save_model


# --- altered files --------------------------------------------------------------------------------

@pytest.fixture
def saved(tmp_path):
    """(path, model) of a saved CS231n-style model."""
    model = _cnn()
    path = tmp_path / "model.npz"
    save_model(model, path)
    return path, model


def _members(path):
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def _write_members(path, members):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members:
            archive.writestr(name, data)


def _npy(array, allow_pickle=False):
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def _with_header(path, edit):
    """Rewrite the file with its architecture JSON changed by `edit(header)`."""
    members = _members(path)
    header = json.loads(np.lib.format.read_array(io.BytesIO(members[ARCHITECTURE_KEY + ".npy"])).tobytes())
    edit(header)
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    members[ARCHITECTURE_KEY + ".npy"] = _npy(np.frombuffer(text, np.uint8))
    _write_members(path, members.items())


def _load_fails(path, pattern):
    with pytest.raises(ValueError, match=pattern) as error:
        load_model(path)
    assert "is not a valid fastconv model file" in str(error.value)
    return str(error.value)


@pytest.mark.parametrize("fraction", (0.0, 0.1, 0.5, 0.9, 0.999))
def test_truncated_files(saved, fraction):
    path, _ = saved
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * fraction)])
    _load_fails(path, "not a readable .npz|damaged|truncated")


def test_a_truncated_member_inside_an_intact_archive(saved):
    path, _ = saved
    members = _members(path)
    members["0.weight.npy"] = members["0.weight.npy"][:-5]
    _write_members(path, members.items())
    _load_fails(path, r"array '0.weight' is damaged or truncated")


def test_a_flipped_byte_in_the_weights_fails_the_checksum(saved):
    path, model = saved
    data = bytearray(path.read_bytes())
    weight = model[0].params["weight"].tobytes()
    offset = bytes(data).index(weight[:16]) + 8
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    _load_fails(path, r"array '0.weight' is damaged.*Bad CRC-32")


def test_not_a_model_file(tmp_path):
    for name, data in [("noise", os.urandom(300)), ("empty", b""), ("npy", _npy(np.zeros(3)))]:
        path = tmp_path / name
        path.write_bytes(data)
        _load_fails(path, "not a readable .npz")
    path = tmp_path / "plain.npz"
    np.savez(path, weight=np.zeros(3))
    _load_fails(path, f"it has no '{ARCHITECTURE_KEY}' member")
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.npz")


@pytest.mark.parametrize("version", (2, 0, "1", None, True))
def test_wrong_format_version(saved, version):
    path, _ = saved
    _with_header(path, lambda header: header.__setitem__("version", version))
    _load_fails(path, r"format version .*; this fastconv reads version 1")


def test_wrong_format_name_and_fields(saved):
    path, _ = saved
    _with_header(path, lambda header: header.__setitem__("format", "keras"))
    _load_fails(path, "does not declare format 'fastconv-model'")
    _with_header(path, lambda header: (header.__setitem__("format", "fastconv-model"),
                                       header.__setitem__("comment", "hi")))
    _load_fails(path, r"the architecture has fields \['comment', 'format', 'model', 'version'\]")


def test_invalid_json(saved):
    path, _ = saved
    members = _members(path)
    members[ARCHITECTURE_KEY + ".npy"] = _npy(np.frombuffer(b'{"format": "fastconv-model", ', np.uint8))
    _write_members(path, members.items())
    _load_fails(path, "the architecture is not valid JSON")
    members[ARCHITECTURE_KEY + ".npy"] = _npy(np.frombuffer(b"\xff\xfe", np.uint8))
    _write_members(path, members.items())
    _load_fails(path, "the architecture is not valid JSON")
    members[ARCHITECTURE_KEY + ".npy"] = _npy(np.zeros(3, np.float32))
    _write_members(path, members.items())
    _load_fails(path, "must be 1-D uint8")


def _conv_spec(header):
    return header["model"]["arguments"]["layers"][4]["layer"]["arguments"]["layers"][0]["layer"]


def test_unknown_layer_type(saved):
    path, _ = saved
    _with_header(path, lambda header: _conv_spec(header).__setitem__("type", "os.system"))
    message = _load_fails(path, r"unknown layer type 'os.system'; known types: AdaptiveAvgPool2d, .*BatchNorm1d, BatchNorm2d, Conv1d")
    assert "argument 'layers'[4]" in message  # where in the model


@pytest.mark.parametrize("edit, pattern", [
    (lambda spec: spec["arguments"].__setitem__("colour", "red"), r"Conv2d has no argument\(s\) \['colour'\]"),
    (lambda spec: spec["arguments"].__setitem__("in_channels", -3),
     "the stored arguments are rejected: in_channels must be >= 1"),
    (lambda spec: spec["arguments"].__setitem__("kernel_size", {"set": [1]}), "unrecognised value"),
    (lambda spec: spec["arguments"].__setitem__("dtype", {"dtype": "object"}), "'object' is not a numeric dtype name"),
    (lambda spec: spec["arguments"].__setitem__("dtype", {"dtype": "f8"}), "'f8' is not a numeric dtype name"),
    (lambda spec: spec["arguments"].pop("in_channels"),
     "the stored arguments are rejected: .*missing 1 required positional argument: .in_channels."),
    (lambda spec: spec.__setitem__("trainable", "yes"), "'trainable' must be true or false"),
    (lambda spec: spec.__setitem__("code", "print(1)"), r"unknown fields \['code'\]"),
    (lambda spec: spec.pop("arguments"), "a layer must be an object with a 'type' string and an 'arguments' object"),
])
def test_altered_layer_descriptions(saved, edit, pattern):
    path, _ = saved
    _with_header(path, lambda header: edit(_conv_spec(header)))
    _load_fails(path, pattern)


def test_deep_nesting_is_refused(saved):
    path, _ = saved
    spec = {"type": "ReLU", "arguments": {}}
    for _ in range(40):
        spec = {"type": "Sequential", "arguments": {"layers": [{"layer": spec}]}}
    _with_header(path, lambda header: header.__setitem__("model", spec))
    _load_fails(path, "nested deeper than 32 levels")


def test_deeply_nested_values_are_refused(saved):
    path, _ = saved
    members = _members(path)
    text = np.lib.format.read_array(io.BytesIO(members[ARCHITECTURE_KEY + ".npy"])).tobytes()
    for depth in (40, 100_000):  # past our limit; past what the JSON parser itself can take
        nested = b"[" * depth + b"1" + b"]" * depth
        altered = text.replace(b'"kernel_size": 3', b'"kernel_size": ' + nested, 1)
        members[ARCHITECTURE_KEY + ".npy"] = _npy(np.frombuffer(altered, np.uint8))
        _write_members(path, members.items())
        _load_fails(path, "nested deeper than 32 levels|not valid JSON")


def test_wrong_shape(saved):
    path, _ = saved
    _with_header(path, lambda header: _conv_spec(header)["arguments"].__setitem__("out_channels", 7))
    message = _load_fails(path, r"'4.0.weight' is float32 of shape \(6, 4, 3, 3\) but the architecture needs "
                                r"float32 of shape \(7, 4, 3, 3\)")
    assert "'4.0.bias' is float32 of shape (6,)" in message and "'7.weight'" not in message


def test_wrong_dtype(saved):
    path, model = saved
    members = _members(path)
    members["7.bias.npy"] = _npy(model[7].params["bias"].astype(np.float64))
    _write_members(path, members.items())
    _load_fails(path, r"'7.bias' is float64 of shape \(5,\) but the architecture needs float32")


class _Payload:
    """Unpickling this would create the marker file: proof that nothing is unpickled."""

    marker = None

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_pickled_object_array_is_refused_without_unpickling(saved, tmp_path):
    path, _ = saved
    _Payload.marker = tmp_path / "unpickled"
    evil = np.empty(6, dtype=object)
    evil[:] = [_Payload() for _ in range(6)]
    for key in ("7.bias", "extra", ARCHITECTURE_KEY):
        members = _members(path)
        members[key + ".npy"] = _npy(evil, allow_pickle=True)
        _write_members(tmp_path / "evil.npz", members.items())
        _load_fails(tmp_path / "evil.npz", "object|unexpected arrays|must be 1-D uint8")
    assert not _Payload.marker.exists()


def test_extra_and_missing_arrays(saved):
    path, model = saved
    members = _members(path)
    _write_members(path, [*members.items(), ("extra.npy", _npy(np.zeros(2, np.float32)))])
    _load_fails(path, r"unexpected arrays \['extra'\]")
    del members["1.running_var.npy"], members["7.weight.npy"]
    _write_members(path, members.items())
    _load_fails(path, r"arrays missing for \['1.running_var', '7.weight'\]")


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_odd_archive_members(saved):
    path, _ = saved
    members = _members(path)
    _write_members(path, [*members.items(), ("readme.txt", b"hello")])
    _load_fails(path, "member 'readme.txt' is not a .npy array")
    _write_members(path, [*members.items(), ("0.bias.npy", members["0.bias.npy"])])
    _load_fails(path, "member '0.bias.npy' appears twice")
    members["0.bias.npy"] = members["0.bias.npy"] + b"\x00" * 4
    _write_members(path, members.items())
    _load_fails(path, "array '0.bias' is followed by 4 unexpected bytes")
