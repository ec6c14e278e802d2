"""fastconv.gradcheck: centred differences against known derivatives, rel_error, bad input."""
import numpy as np
import pytest

from fastconv.gradcheck import numerical_gradient, numerical_gradient_array, rel_error


def test_scalar_function_gradient_matches_analytic():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4))
    # f = sum(sin(x) * x^2): df/dx = cos(x) x^2 + 2 x sin(x)
    grad = numerical_gradient(lambda v: np.sum(np.sin(v) * v**2), x)
    expected = np.cos(x) * x**2 + 2 * x * np.sin(x)
    assert grad.shape == x.shape and grad.dtype == np.float64
    assert rel_error(grad, expected) < 1e-8


def test_closure_over_x_sees_the_perturbation_and_x_is_restored_exactly():
    rng = np.random.default_rng(1)
    x = rng.standard_normal(5)
    before = x.copy()
    grad = numerical_gradient(lambda _: float(np.sum(np.exp(x))), x)  # closes over x
    assert rel_error(grad, np.exp(before)) < 1e-8
    assert np.array_equal(x, before)  # bit-for-bit


def test_array_function_gradient_is_the_vector_jacobian_product():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3))
    a = rng.standard_normal((4, 2))
    dout = rng.standard_normal((4, 3))
    # f(x) = tanh(a @ x): d sum(f * dout) / dx = a.T @ (dout * (1 - tanh^2))
    grad = numerical_gradient_array(lambda v: np.tanh(a @ v), x, dout)
    expected = a.T @ (dout * (1 - np.tanh(a @ x) ** 2))
    assert rel_error(grad, expected) < 1e-8


def test_array_version_copies_a_reused_output_buffer():
    x = np.array([1.0, 2.0, 3.0])
    buffer = np.empty(3)

    def f(v):  # hands back the same array every call
        np.multiply(v, v, out=buffer)
        return buffer

    grad = numerical_gradient_array(f, x, np.ones(3))
    assert rel_error(grad, 2 * x) < 1e-8


def test_numerical_gradient_detects_a_wrong_analytic_gradient():
    x = np.linspace(-1, 1, 6)  # 0 excluded: there the h^2 truncation error dominates
    grad = numerical_gradient(lambda v: np.sum(v**3), x)
    assert rel_error(grad, 3 * x**2) < 1e-8
    assert rel_error(grad, 3 * x**2 + 1e-3) > 1e-4


def test_rel_error_values():
    assert rel_error(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0.0
    assert rel_error(np.array([1.0]), np.array([3.0])) == pytest.approx(0.5)
    # both near zero: the floor 1e-8 keeps it finite
    assert rel_error(np.array([0.0]), np.array([1e-12])) == pytest.approx(1e-4)
    assert rel_error(np.zeros((0, 3)), np.zeros((0, 3))) == 0.0
    assert rel_error(1.0, 1.0) == 0.0


def test_rel_error_shape_mismatch():
    with pytest.raises(ValueError, match=r"\(2,\) and \(3,\)"):
        rel_error(np.zeros(2), np.zeros(3))


def test_bad_inputs():
    with pytest.raises(TypeError, match="floating-point"):
        numerical_gradient(lambda v: 0.0, np.arange(3))
    with pytest.raises(TypeError, match="floating-point"):
        numerical_gradient(lambda v: 0.0, [1.0, 2.0])
    readonly = np.zeros(3)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        numerical_gradient(lambda v: 0.0, readonly)
    with pytest.raises(ValueError, match="h must be a positive"):
        numerical_gradient(lambda v: 0.0, np.zeros(3), h=0)
    with pytest.raises(ValueError, match="scalar"):
        numerical_gradient(lambda v: v, np.zeros(3))
    with pytest.raises(ValueError, match=r"f\(x\) has shape \(3,\) but dout has shape \(2,\)"):
        numerical_gradient_array(lambda v: v, np.zeros(3), np.zeros(2))
