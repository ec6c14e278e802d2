"""save_model / load_model: a whole model in one .npz file, its architecture as JSON, its arrays plain.

The file is an ordinary NumPy .npz (a zip of .npy members, readable with ``np.load``): one
member per state_dict key ("0.weight", "4.running_var", ...) and ``__architecture__``, the
UTF-8 bytes of a JSON document::

    {"format": "fastconv-model", "version": 1,
     "model": {"type": "Sequential", "arguments": {"layers": [{"layer": {...}}, ...]}, ...}}

Each layer is {"type": <class name>, "arguments": {<constructor argument>: <value>}, "trainable",
"training"} and, when some argument could not be stored, "unstored": [<argument names>].
Values are JSON scalars and lists, or one-key objects for what JSON lacks: {"tuple": [...]},
{"dtype": "float32"}, {"dict": {...}}, {"layer": <layer>}.

Loading builds only the types in fastconv.layers.base.LAYER_TYPES, reads arrays with
allow_pickle=False, checks every member against the built model before copying anything,
and raises ValueError for anything it cannot account for. It never executes code from the file.
"""
import inspect
import json
import numbers
import os
import struct
import zipfile
import zlib

import numpy as np

from .layers.base import LAYER_TYPES, Layer

FORMAT = "fastconv-model"
FORMAT_VERSION = 1
ARCHITECTURE_KEY = "__architecture__"
# deeper nesting (of layers or of values) than any real model needs; bounds the recursion
MAX_DEPTH = 32

_SPEC_FIELDS = {"type", "arguments", "trainable", "training", "unstored"}
_VALUE_TAGS = {"tuple", "dtype", "dict", "layer"}
# random sources are not worth storing: the weights they drew are saved anyway
_RANDOM_SOURCES = (np.random.Generator, np.random.RandomState, np.random.BitGenerator, np.random.SeedSequence)
# what a damaged zip or .npy member can raise while being parsed
_DAMAGE = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, struct.error,
           zlib.error, NotImplementedError, RuntimeError, UnicodeDecodeError, OverflowError)


# --- saving ---------------------------------------------------------------------------------

def _encode(value, where, depth):
    """A constructor argument as a JSON value (see the module docstring)."""
    if depth > MAX_DEPTH:
        raise ValueError(f"cannot save {where}: values nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, Layer):
        return {"layer": _layer_spec(value, where, depth + 1)}
    if isinstance(value, np.dtype) or any(value is kind for kind in (float, int, bool)) \
            or isinstance(value, type) and issubclass(value, np.generic):
        return {"dtype": np.dtype(value).name}
    if isinstance(value, tuple):
        return {"tuple": [_encode(item, f"{where}[{index}]", depth + 1) for index, item in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(item, f"{where}[{index}]", depth + 1) for index, item in enumerate(value)]
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return {"dict": {key: _encode(item, where, depth + 1) for key, item in value.items()}}
    raise ValueError(
        f"cannot save {where}: a {type(value).__name__} argument cannot be stored "
        "(arguments must be numbers, strings, bools, None, dtypes, tuples, lists, dicts or layers)"
    )


def _layer_spec(layer, where, depth=0):
    """The JSON description of `layer` (its type, constructor arguments and flags)."""
    name = type(layer).__name__
    if LAYER_TYPES.get(name) is not type(layer):
        raise ValueError(
            f"cannot save {where}: {type(layer).__module__}.{type(layer).__qualname__} is not a "
            f"fastconv.layers type, so load_model could not build it (it builds {', '.join(sorted(LAYER_TYPES))})"
        )
    arguments, unstored = {}, []
    for argument, value in layer._config().items():
        if isinstance(value, _RANDOM_SOURCES):
            arguments[argument] = None
            unstored.append(argument)
        else:
            arguments[argument] = _encode(value, f"{where} ({name}) argument {argument!r}", depth)
    spec = {"type": name, "arguments": arguments, "trainable": bool(layer.trainable),
            "training": bool(layer.training)}
    if unstored:
        spec["unstored"] = unstored
    return spec


def _write_archive(file, arrays):
    with zipfile.ZipFile(file, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for key, array in arrays.items():
            with archive.open(key + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)


def save_model(model, path):
    """Save `model` (any fastconv layer, usually a Sequential) to one .npz file.

    Parameters
    ----------
    model : Layer whose layers are all fastconv.layers types.
    path : str or os.PathLike, written exactly as given (no suffix is added), or a binary
        file object open for writing. A path is written to a temporary file in the same
        folder that then replaces `path`, so an interrupted save leaves an earlier file whole.

    The file holds the architecture (every layer's type and constructor arguments, its
    ``trainable`` and ``training`` flags) and the state_dict arrays. Random generators
    passed as ``rng`` are not stored (the file records their names under "unstored"): a
    loaded layer draws from NumPy's global generator, which only Dropout's masks notice.
    Load it with ``fastconv.load_model(path)``.
    """
    if not isinstance(model, Layer):
        raise TypeError(f"model must be a fastconv.layers.Layer (e.g. Sequential), got {type(model).__name__}")
    header = {"format": FORMAT, "version": FORMAT_VERSION, "model": _layer_spec(model, "the model")}
    arrays = model.state_dict()
    if ARCHITECTURE_KEY in arrays:
        raise ValueError(f"cannot save the model: it has a state entry named {ARCHITECTURE_KEY!r}")
    arrays[ARCHITECTURE_KEY] = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
    if not isinstance(path, (str, os.PathLike)):
        _write_archive(path, arrays)
        return
    path = os.fspath(path)
    temporary = f"{path}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    # O_EXCL: never clobber anything; mode 0o666 minus the umask, as open() would give
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as file:
            _write_archive(file, arrays)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


# --- loading --------------------------------------------------------------------------------

class _Reader:
    """The members of an opened .npz archive, every failure a ValueError naming the file."""

    def __init__(self, file, source):
        self.source = source
        try:
            self.archive = zipfile.ZipFile(file)
            infos = self.archive.infolist()
        except _DAMAGE as error:
            raise self.invalid(f"not a readable .npz (zip) archive ({error})") from error
        self.members = {}
        for info in infos:
            if not info.filename.endswith(".npy"):
                raise self.invalid(f"member {info.filename!r} is not a .npy array")
            key = info.filename[:-len(".npy")]
            if key in self.members:
                raise self.invalid(f"member {info.filename!r} appears twice")
            self.members[key] = info

    def invalid(self, message):
        return ValueError(f"load_model: {self.source} is not a valid fastconv model file: {message}")

    def header(self, key):
        """(shape, dtype) from a member's .npy header, without reading its data."""
        try:
            with self.archive.open(self.members[key]) as member:
                version = np.lib.format.read_magic(member)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(member)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(member)
                else:
                    raise ValueError(f".npy format version {version} is not supported")
        except _DAMAGE as error:
            raise self.invalid(f"array {key!r} is damaged ({error})") from error
        return shape, dtype

    def array(self, key):
        """A member's array (never unpickled); the zip's CRC check covers every byte of it."""
        try:
            with self.archive.open(self.members[key]) as member:
                array = np.lib.format.read_array(member, allow_pickle=False)
                trailing = member.read()  # reading to the end also makes zipfile check the CRC
        except _DAMAGE as error:
            raise self.invalid(f"array {key!r} is damaged or truncated ({error})") from error
        if trailing:
            raise self.invalid(f"array {key!r} is followed by {len(trailing)} unexpected bytes")
        return array


def _decode(value, where, depth):
    """A JSON value back into a constructor argument (the inverse of _encode)."""
    if depth > MAX_DEPTH:
        raise ValueError(f"{where}: values nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [_decode(item, f"{where}[{index}]", depth + 1) for index, item in enumerate(value)]
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in _VALUE_TAGS:
        raise ValueError(f"{where}: unrecognised value {_abbreviated(value)}")
    tag, content = next(iter(value.items()))
    if tag == "tuple" and isinstance(content, list):
        return tuple(_decode(item, f"{where}[{index}]", depth + 1) for index, item in enumerate(content))
    if tag == "dict" and isinstance(content, dict):
        return {key: _decode(item, where, depth + 1) for key, item in content.items()}
    if tag == "layer":
        return _build(content, where, depth + 1)
    if tag == "dtype" and isinstance(content, str):
        try:
            dtype = np.dtype(content)
        except TypeError:
            dtype = None
        if dtype is None or dtype.kind not in "biuf" or dtype.name != content:
            raise ValueError(f"{where}: {content!r} is not a numeric dtype name")
        return dtype
    raise ValueError(f"{where}: unrecognised value {_abbreviated(value)}")


def _abbreviated(value, limit=80):
    text = json.dumps(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _call_arguments(cls, arguments, where):
    """(args, kwargs) calling cls with the stored arguments, by its signature."""
    remaining = dict(arguments)
    args, kwargs = [], {}
    for name, parameter in inspect.signature(cls).parameters.items():
        if name not in remaining:
            continue
        value = remaining.pop(name)
        if parameter.kind is parameter.POSITIONAL_ONLY:
            args.append(value)
        elif parameter.kind is parameter.VAR_POSITIONAL and isinstance(value, (tuple, list)):
            args.extend(value)
        elif parameter.kind is parameter.VAR_KEYWORD and isinstance(value, dict):
            kwargs.update(value)
        elif parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
            kwargs[name] = value
        else:
            raise ValueError(f"{where}: argument {name!r} has the wrong kind of value")
    if remaining:
        raise ValueError(f"{where}: {cls.__name__} has no argument(s) {sorted(remaining)}")
    return args, kwargs


def _build(spec, where, depth=0):
    """The layer a JSON layer description describes (see the module docstring)."""
    if depth > MAX_DEPTH:
        raise ValueError(f"{where}: layers nested deeper than {MAX_DEPTH} levels")
    if not isinstance(spec, dict) or not isinstance(spec.get("type"), str) \
            or not isinstance(spec.get("arguments"), dict):
        raise ValueError(f"{where}: a layer must be an object with a 'type' string and an 'arguments' object")
    name = spec["type"]
    where = f"{where} ({name})"
    if not spec.keys() <= _SPEC_FIELDS:
        raise ValueError(f"{where}: unknown fields {sorted(spec.keys() - _SPEC_FIELDS)}")
    cls = LAYER_TYPES.get(name)
    if cls is None:
        raise ValueError(f"{where}: unknown layer type {name!r}; known types: {', '.join(sorted(LAYER_TYPES))}")
    arguments = {key: _decode(value, f"{where} argument {key!r}", depth)
                 for key, value in spec["arguments"].items()}
    args, kwargs = _call_arguments(cls, arguments, where)
    try:
        layer = cls(*args, **kwargs)
    except (TypeError, ValueError, OverflowError, MemoryError) as error:
        raise ValueError(f"{where}: the stored arguments are rejected: {error}") from error
    for flag in ("trainable", "training"):
        value = spec.get(flag, True)
        if not isinstance(value, bool):
            raise ValueError(f"{where}: {flag!r} must be true or false, got {_abbreviated(value)}")
        # set directly, not via train()/eval(): a container's flags must not override its
        # layers' (built first); a container's `trainable` is derived from them and agrees
        if getattr(layer, flag) != value:
            setattr(layer, flag, value)
    return layer


def load_model(path):
    """The model saved by ``fastconv.save_model`` at `path` (str, os.PathLike or binary file).

    Returns
    -------
    The model (e.g. a Sequential) with the saved architecture, parameters, buffers and
    ``trainable``/``training`` flags.

    Raises
    ------
    ValueError, naming the file and the problem, for anything but an intact file of this
    format: not a zip archive, truncated or damaged members, a format version this fastconv
    does not read, an unknown layer type or argument, arrays missing, extra or of the wrong
    shape or dtype, object (pickled) arrays. Nothing is returned half-built: the model is
    checked against every array before any is copied into it. NumPy's global random state,
    which building layers would draw from, is left as it was.
    """
    source = repr(os.fspath(path)) if isinstance(path, (str, os.PathLike)) else "the file object"
    if isinstance(path, (str, os.PathLike)):
        with open(path, "rb") as file:
            return _load(file, source)
    return _load(path, source)


def _load(file, source):
    reader = _Reader(file, source)
    if ARCHITECTURE_KEY not in reader.members:
        raise reader.invalid(f"it has no {ARCHITECTURE_KEY!r} member")
    shape, dtype = reader.header(ARCHITECTURE_KEY)
    if dtype != np.uint8 or len(shape) != 1:
        raise reader.invalid(f"{ARCHITECTURE_KEY!r} must be 1-D uint8 (JSON bytes), got {dtype} of shape {shape}")
    try:
        header = json.loads(reader.array(ARCHITECTURE_KEY).tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise reader.invalid(f"the architecture is not valid JSON ({error})") from error
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise reader.invalid(f"the architecture does not declare format {FORMAT!r}")
    version = header.get("version")
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise reader.invalid(
            f"format version {_abbreviated(version)}; this fastconv reads version {FORMAT_VERSION} "
            "(a newer fastconv may have written it)"
        )
    if header.keys() != {"format", "version", "model"}:
        raise reader.invalid(f"the architecture has fields {sorted(header)}, not format, version and model")

    random_state = np.random.get_state()
    try:
        model = _build(header["model"], "the model")
    except RecursionError as error:
        raise reader.invalid("the architecture is nested too deeply") from error
    except ValueError as error:
        raise reader.invalid(str(error)) from error
    finally:
        np.random.set_state(random_state)

    targets = model._state_arrays()
    stored = [key for key in reader.members if key != ARCHITECTURE_KEY]
    problems = []
    missing = [key for key in targets if key not in reader.members]
    unexpected = [key for key in stored if key not in targets]
    if missing:
        problems.append(f"arrays missing for {missing}")
    if unexpected:
        problems.append(f"unexpected arrays {unexpected}")
    for key in stored:
        if key in targets:
            shape, dtype = reader.header(key)
            if shape != targets[key].shape or dtype != targets[key].dtype:
                problems.append(
                    f"{key!r} is {dtype} of shape {shape} but the architecture needs "
                    f"{targets[key].dtype} of shape {targets[key].shape}"
                )
    if problems:
        raise reader.invalid("; ".join(problems))
    model.load_state_dict({key: reader.array(key) for key in stored})
    return model
