"""Backend dispatch: explicit backend, FASTCONV_BACKEND, set_backend, a missing build, the auto fallback."""
import inspect
import re
import platform
import warnings

import numpy as np
import pytest

import fastconv
from fastconv import _backend, _compiled


@pytest.fixture(autouse=True)
def clean_dispatch(monkeypatch):
    """Every test starts from no set_backend() call, no FASTCONV_BACKEND and no warning given;
    monkeypatch puts the previous state back afterwards."""
    monkeypatch.delenv("FASTCONV_BACKEND", raising=False)
    monkeypatch.setattr(_backend, "_default", None)
    monkeypatch.setattr(_backend, "_warned", False)


@pytest.fixture
def no_build(monkeypatch):
    """Pretend the compiled kernels failed to import."""
    monkeypatch.setattr(_compiled, "IMPORT_ERROR", ImportError("simulated: no module named _conv"))


def small_conv_inputs(dtype=np.float64):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 5)).astype(dtype)
    w = rng.standard_normal((4, 3, 3, 2)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    return x, w, b


def backend_used(**kwargs):
    """Which backend a default conv2d_forward call ran on (the cache records it)."""
    x, w, b = small_conv_inputs()
    _, cache = fastconv.conv2d_forward(x, w, b, padding=1, **kwargs)
    return cache.backend


def public_ops():
    """Public functions that choose a backend: every forward op plus im2col/col2im."""
    ops = []
    for name in fastconv.__all__:
        function = getattr(fastconv, name)
        if name.endswith("_forward") or name in ("im2col", "col2im"):
            ops.append((name, function))
    return ops


# --- the build is there (the test suite runs against the compiled tree) ---------------------

def test_compiled_build_is_present():
    assert _backend.compiled_available()
    assert fastconv.available_backends() == ["cython", "reference"]


def test_winograd_build_for_this_cpu(monkeypatch):
    """On x86-64 the AVX2/FMA build of the Winograd kernels exists (setup.py builds it with
    gcc or clang) and is the one used where the CPU has both; FASTCONV_NO_AVX2 keeps the
    baseline build."""
    from fastconv._kernels import _winograd

    if platform.machine().lower() not in ("x86_64", "amd64"):
        assert _compiled.winograd_for_this_cpu() is _winograd
        return
    from fastconv._kernels import _winograd_avx2

    expected = _winograd_avx2 if _winograd.cpu_has_avx2_fma() else _winograd
    assert _compiled.winograd is expected
    assert _compiled.winograd_for_this_cpu() is expected
    monkeypatch.setenv("FASTCONV_NO_AVX2", "1")
    assert _compiled.winograd_for_this_cpu() is _winograd


def test_default_is_cython_when_built():
    assert fastconv.get_backend() == "cython"
    assert backend_used() == "cython"


@pytest.mark.parametrize("name, function", public_ops())
def test_every_public_op_takes_backend_auto(name, function):
    parameter = inspect.signature(function).parameters.get("backend")
    assert parameter is not None, f"{name} has no backend argument"
    assert parameter.default == "auto"
    assert parameter.kind is inspect.Parameter.KEYWORD_ONLY


def test_public_op_list_is_not_empty():
    names = [name for name, _ in public_ops()]
    assert {"conv2d_forward", "im2col", "col2im"} <= set(names)


# --- explicit backend -------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["cython", "reference"])
def test_explicit_backend_is_used(backend):
    assert backend_used(backend=backend) == backend


def test_explicit_backends_agree():
    x, w, b = small_conv_inputs()
    out_fast, _ = fastconv.conv2d_forward(x, w, b, stride=(2, 1), padding=(1, 0), backend="cython")
    out_slow, _ = fastconv.conv2d_forward(x, w, b, stride=(2, 1), padding=(1, 0), backend="reference")
    np.testing.assert_allclose(out_fast, out_slow, rtol=1e-12, atol=1e-12)


def test_explicit_backend_beats_environment_and_set_backend(monkeypatch):
    monkeypatch.setenv("FASTCONV_BACKEND", "reference")
    assert backend_used(backend="cython") == "cython"
    fastconv.set_backend("reference")
    assert backend_used(backend="cython") == "cython"
    fastconv.set_backend("cython")
    assert backend_used(backend="reference") == "reference"


def test_im2col_dispatches_on_backend(monkeypatch):
    calls = []
    compiled = _compiled.im2col

    class RecordingKernels:
        def im2col(self, *args):
            calls.append("cython")
            return compiled.im2col(*args)

    monkeypatch.setattr(_compiled, "im2col", RecordingKernels())
    x, _, _ = small_conv_inputs()
    slow = fastconv.im2col(x, (3, 2), backend="reference")
    assert calls == []
    fast = fastconv.im2col(x, (3, 2), backend="cython")
    assert calls == ["cython"]
    np.testing.assert_array_equal(fast, slow)


# --- unknown names ----------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["numpy", "Cython", "", "fast", None, 1])
def test_unknown_backend_argument_lists_valid_names(bad):
    x, w, b = small_conv_inputs()
    with pytest.raises(ValueError) as error:
        fastconv.conv2d_forward(x, w, b, backend=bad)
    message = str(error.value)
    assert "unknown backend" in message
    for valid in ("auto", "cython", "reference"):
        assert valid in message


@pytest.mark.parametrize("name, function", public_ops())
def test_unknown_backend_rejected_by_every_op(name, function):
    x, _, _ = small_conv_inputs()
    conv = re.fullmatch(r"conv(_transpose)?([123])d_forward", name)
    if name == "col2im":
        args = (np.zeros((3 * 2 * 2, 2 * 5 * 4)), x.shape, 2)
    elif conv:
        ndim = int(conv.group(2))
        args = (np.zeros((2, 3) + (5,) * ndim), np.zeros((3, 3) + (2,) * ndim))
    elif name in ("batch_norm_forward", "group_norm_forward"):  # x, weight, bias (and 1 group)
        args = (x, np.ones(x.shape[1]), np.zeros(x.shape[1])) + ((1,) if name.startswith("group") else ())
    elif name == "layer_norm_forward":
        args = (x, np.ones(x.shape[1:]), np.zeros(x.shape[1:]))
    elif name == "max_unpool2d_forward":
        args = (x, np.zeros(x.shape, np.int64), 2)
    elif name == "relu_forward":
        args = (x,)
    elif name == "dropout_forward":
        args = (x, 0.5, np.zeros(x.shape))
    elif name == "linear_forward":
        args = (x.reshape(x.shape[0], -1), np.zeros((2, x[0].size)))
    else:  # im2col, leaky_relu_forward (alpha 2) and the window ops (pooling): x and a number
        args = (x, 2)
    with pytest.raises(ValueError, match="valid names are: auto, cython, reference"):
        function(*args, backend="gpu")


@pytest.mark.parametrize("bad", ["gpu", "Reference", ""])
def test_set_backend_unknown_name_is_value_error_and_keeps_setting(bad):
    fastconv.set_backend("reference")
    with pytest.raises(ValueError, match="valid names are: auto, cython, reference"):
        fastconv.set_backend(bad)
    assert fastconv.get_backend() == "reference"


@pytest.mark.parametrize("bad", [1, b"cython", ["cython"]])
def test_set_backend_non_string_is_type_error(bad):
    with pytest.raises(TypeError, match="backend must be a str"):
        fastconv.set_backend(bad)
    assert _backend._default is None


# --- FASTCONV_BACKEND, read at call time ------------------------------------------------------

def test_environment_variable_read_at_call_time(monkeypatch):
    assert backend_used() == "cython"
    monkeypatch.setenv("FASTCONV_BACKEND", "reference")
    assert fastconv.get_backend() == "reference"
    assert backend_used() == "reference"
    monkeypatch.setenv("FASTCONV_BACKEND", "cython")
    assert backend_used() == "cython"
    monkeypatch.setenv("FASTCONV_BACKEND", "auto")
    assert backend_used() == "cython"
    monkeypatch.delenv("FASTCONV_BACKEND")
    assert backend_used() == "cython"


@pytest.mark.parametrize("text, expected", [
    (" reference ", "reference"), ("REFERENCE", "reference"), ("Cython", "cython"), ("", "cython"),
    ("  ", "cython"),
])
def test_environment_variable_spacing_and_case(monkeypatch, text, expected):
    monkeypatch.setenv("FASTCONV_BACKEND", text)
    assert backend_used() == expected


def test_environment_variable_unknown_name_names_the_variable(monkeypatch):
    monkeypatch.setenv("FASTCONV_BACKEND", "gpu")
    with pytest.raises(ValueError) as error:
        backend_used()
    assert "FASTCONV_BACKEND" in str(error.value)
    assert "'gpu'" in str(error.value)
    assert "auto, cython, reference" in str(error.value)
    with pytest.raises(ValueError, match="FASTCONV_BACKEND"):
        fastconv.get_backend()
    # an explicit backend does not consult the environment
    assert backend_used(backend="reference") == "reference"


# --- set_backend / get_backend ----------------------------------------------------------------

def test_set_backend_overrides_environment(monkeypatch):
    monkeypatch.setenv("FASTCONV_BACKEND", "reference")
    fastconv.set_backend("cython")
    assert fastconv.get_backend() == "cython"
    assert backend_used() == "cython"
    fastconv.set_backend("auto")  # "auto" is a setting too: the environment no longer counts
    assert backend_used() == "cython"


def test_set_backend_none_returns_to_environment(monkeypatch):
    monkeypatch.setenv("FASTCONV_BACKEND", "reference")
    fastconv.set_backend("cython")
    assert backend_used() == "cython"
    fastconv.set_backend(None)
    assert backend_used() == "reference"


def test_set_backend_reference_then_back():
    fastconv.set_backend("reference")
    assert fastconv.get_backend() == "reference"
    assert backend_used() == "reference"
    fastconv.set_backend("cython")
    assert backend_used() == "cython"


def test_fixture_restored_state_from_previous_test():
    # runs after tests that called set_backend and setenv: the autouse fixture undid them
    assert _backend._default is None
    assert fastconv.get_backend() == "cython"


def test_backward_follows_the_forward_backend_not_the_current_setting():
    x, w, b = small_conv_inputs()
    fastconv.set_backend("reference")
    out, cache = fastconv.conv2d_forward(x, w, b)
    fastconv.set_backend("cython")
    dout = np.random.default_rng(1).standard_normal(out.shape)
    grads = fastconv.conv2d_backward(dout, cache)
    assert cache.backend == "reference"
    _, fast_cache = fastconv.conv2d_forward(x, w, b, backend="cython")
    for got, expected in zip(grads, fastconv.conv2d_backward(dout, fast_cache)):
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


# --- a missing build --------------------------------------------------------------------------

def test_missing_build_available_backends(no_build):
    assert fastconv.available_backends() == ["reference"]


def test_missing_build_explicit_cython_says_how_to_build(no_build):
    x, w, b = small_conv_inputs()
    with pytest.raises(RuntimeError) as error:
        fastconv.conv2d_forward(x, w, b, backend="cython")
    message = str(error.value)
    assert "'cython' backend is not available" in message
    assert "build_ext --inplace" in message
    assert "pip install" in message
    assert "simulated: no module named _conv" in message  # the original import error
    with pytest.raises(RuntimeError, match="build_ext --inplace"):
        fastconv.im2col(x, 2, backend="cython")


def test_missing_build_set_backend_cython_fails_and_keeps_setting(no_build):
    with pytest.raises(RuntimeError, match="build_ext --inplace"):
        fastconv.set_backend("cython")
    assert _backend._default is None


def test_missing_build_environment_cython_fails_at_call(no_build, monkeypatch):
    monkeypatch.setenv("FASTCONV_BACKEND", "cython")
    with pytest.raises(RuntimeError, match="build_ext --inplace"):
        backend_used()


def test_missing_build_auto_falls_back_with_one_warning(no_build):
    x, w, b = small_conv_inputs()
    with pytest.warns(RuntimeWarning, match="falling back to the slow NumPy reference") as record:
        out, cache = fastconv.conv2d_forward(x, w, b, padding=1)
    assert len(record) == 1
    assert cache.backend == "reference"
    # the warning points at the caller's line, not at fastconv's internals
    assert record[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second warning would raise here
        out_again, cache_again = fastconv.conv2d_forward(x, w, b, padding=1)
        assert fastconv.get_backend() == "reference"
        fastconv.im2col(x, 2)
    assert cache_again.backend == "reference"
    np.testing.assert_array_equal(out, out_again)
    expected, _ = fastconv.reference.conv2d_forward(x, w, b, padding=1)
    np.testing.assert_array_equal(out, expected)


def test_missing_build_explicit_reference_gives_no_warning(no_build):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert backend_used(backend="reference") == "reference"
        fastconv.set_backend("reference")
        assert backend_used() == "reference"
