"""fastconv.losses: values against direct formulas, gradient checks, stability, dtypes, bad input."""
import math

import numpy as np
import pytest

from fastconv.gradcheck import numerical_gradient, rel_error
from fastconv.losses import l2_penalty, softmax_loss, svm_loss


def _batch(num_samples=6, num_classes=5, seed=0, dtype=np.float64, scale=1.0):
    rng = np.random.default_rng(seed)
    scores = (scale * rng.standard_normal((num_samples, num_classes))).astype(dtype)
    y = rng.integers(0, num_classes, size=num_samples)
    return scores, y


# --- softmax ---------------------------------------------------------------------------

def test_softmax_value_matches_direct_formula():
    scores, y = _batch()
    loss, _ = softmax_loss(scores, y)
    probs = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    expected = -np.mean(np.log(probs[np.arange(len(y)), y]))
    assert isinstance(loss, float)
    assert loss == pytest.approx(expected, rel=1e-12)


def test_softmax_hand_computed_two_classes():
    # scores (0, log 3): p = (1/4, 3/4); label 1 -> -log(3/4); label 0 -> -log(1/4)
    scores = np.array([[0.0, math.log(3)], [0.0, math.log(3)]])
    loss, dscores = softmax_loss(scores, np.array([1, 0]))
    assert loss == pytest.approx((-math.log(0.75) - math.log(0.25)) / 2)
    np.testing.assert_allclose(dscores, [[0.125, -0.125], [-0.375, 0.375]])


def test_softmax_gradient_check():
    scores, y = _batch(seed=1)
    _, dscores = softmax_loss(scores, y)
    numerical = numerical_gradient(lambda s: softmax_loss(s, y)[0], scores)
    assert rel_error(dscores, numerical) < 1e-7


def test_softmax_of_small_scores_is_near_log_num_classes():
    scores, y = _batch(num_samples=50, num_classes=10, scale=1e-4, seed=2)
    loss, _ = softmax_loss(scores, y)
    assert abs(loss - math.log(10)) < 1e-3


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_is_stable_for_huge_scores(dtype):
    scores = np.array([[1000.0, 0.0, -1000.0], [5e3, 5e3, 0.0]], dtype=dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss, dscores = softmax_loss(scores, np.array([0, 2]))
    # sample 0: p(class 0) = 1, loss 0; sample 1: class 2 is 5000 below two tied leaders
    assert loss == pytest.approx((0 + 5e3 + math.log(2)) / 2, rel=1e-6)
    assert np.all(np.isfinite(dscores)) and dscores.dtype == dtype


@pytest.mark.parametrize("loss_function", [softmax_loss, svm_loss])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_kept_and_inputs_untouched(loss_function, dtype):
    scores, y = _batch(dtype=dtype, seed=3)
    scores.flags.writeable = False
    before = scores.copy()
    loss, dscores = loss_function(scores, y)
    assert dscores.dtype == dtype and dscores.shape == scores.shape
    assert np.array_equal(scores, before)
    reference_loss, reference_grad = loss_function(scores.astype(np.float64), y)
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    assert loss == pytest.approx(reference_loss, rel=tolerance)
    np.testing.assert_allclose(dscores, reference_grad, rtol=tolerance, atol=tolerance)


# --- svm -------------------------------------------------------------------------------

def test_svm_hand_computed():
    scores = np.array([[3.0, 1.0, 2.5], [0.0, 0.0, 4.0]])
    y = np.array([0, 2])
    loss, dscores = svm_loss(scores, y)
    # sample 0: margins max(0, 1-3+1)=0, max(0, 2.5-3+1)=0.5; sample 1: 0-4+1 < 0 twice
    assert loss == pytest.approx(0.5 / 2)
    np.testing.assert_allclose(dscores, [[-0.5, 0, 0.5], [0, 0, 0]])
    loss, _ = svm_loss(scores, y, margin=5.0)
    # sample 0: (1-3+5)+(2.5-3+5) = 7.5; sample 1: (0-4+5)*2 = 2
    assert loss == pytest.approx(9.5 / 2)


def test_svm_gradient_check_away_from_kinks():
    scores, y = _batch(num_samples=8, num_classes=6, seed=4, scale=3.0)
    margins = scores - scores[np.arange(8), y][:, None] + 1.0
    margins[np.arange(8), y] = 10.0
    assert np.min(np.abs(margins)) > 1e-3  # no kink within reach of h
    _, dscores = svm_loss(scores, y)
    numerical = numerical_gradient(lambda s: svm_loss(s, y)[0], scores)
    assert rel_error(dscores, numerical) < 1e-7


def test_svm_of_near_zero_scores_is_near_num_classes_minus_one():
    scores, y = _batch(num_samples=40, num_classes=10, scale=1e-4, seed=5)
    loss, _ = svm_loss(scores, y)
    assert abs(loss - 9.0) < 1e-2


# --- validation ------------------------------------------------------------------------

@pytest.mark.parametrize("loss_function", [softmax_loss, svm_loss])
def test_bad_inputs(loss_function):
    scores, y = _batch()
    with pytest.raises(ValueError, match=r"scores must be 2-D.*\(6, 5, 1\)"):
        loss_function(scores[..., None], y)
    with pytest.raises(TypeError, match="scores must have dtype float32 or float64"):
        loss_function(scores.astype(np.int64), y)
    with pytest.raises(TypeError, match="integer class labels"):
        loss_function(scores, y.astype(np.float64))
    with pytest.raises(TypeError, match="y must be a numpy.ndarray"):
        loss_function(scores, list(y))
    with pytest.raises(ValueError, match=r"y must have shape \(N,\) = \(6,\).*\(5,\)"):
        loss_function(scores, y[:5])
    with pytest.raises(ValueError, match=r"\[0, 5\).*to 5"):
        loss_function(scores, np.array([0, 1, 2, 3, 4, 5]))
    with pytest.raises(ValueError, match="from -1"):
        loss_function(scores, np.array([-1, 1, 2, 3, 4, 0]))
    with pytest.raises(ValueError, match="at least one sample"):
        loss_function(scores[:0], y[:0])


def test_svm_bad_margin():
    scores, y = _batch()
    with pytest.raises(ValueError, match="margin"):
        svm_loss(scores, y, margin=-1.0)


# --- l2 penalty ------------------------------------------------------------------------

def test_l2_penalty_selects_weights_by_default():
    params = {
        "0.weight": np.array([[1.0, -2.0]]),
        "0.bias": np.array([5.0]),
        "2.weight": np.array([3.0], dtype=np.float32),
    }
    penalty, grads = l2_penalty(params, 0.1)
    assert penalty == pytest.approx(0.5 * 0.1 * (1 + 4 + 9))
    assert sorted(grads) == ["0.weight", "2.weight"]
    np.testing.assert_allclose(grads["0.weight"], [[0.1, -0.2]])
    assert grads["2.weight"].dtype == np.float32
    penalty, grads = l2_penalty(params, 0.1, keys=["0.bias"])
    assert penalty == pytest.approx(0.5 * 0.1 * 25) and list(grads) == ["0.bias"]


def test_l2_penalty_gradient_check():
    rng = np.random.default_rng(6)
    weight = rng.standard_normal((3, 4))
    _, grads = l2_penalty({"weight": weight}, 0.3)
    numerical = numerical_gradient(lambda w: l2_penalty({"weight": w}, 0.3)[0], weight)
    assert rel_error(grads["weight"], numerical) < 1e-7


def test_l2_penalty_bad_inputs():
    with pytest.raises(ValueError, match="strength"):
        l2_penalty({}, -1.0)
    with pytest.raises(TypeError, match="dict"):
        l2_penalty([np.zeros(2)], 1.0)
    with pytest.raises(KeyError, match="nope"):
        l2_penalty({"weight": np.zeros(2)}, 1.0, keys=["nope"])


# --- the compiled kernels against the NumPy formulas (fastconv.reference.losses) -----------

from fastconv.reference import losses as reference_losses  # noqa: E402

from _helpers import LAYOUTS, assert_close, with_layout  # noqa: E402

LOSS_PAIRS = [
    (softmax_loss, reference_losses.softmax_loss),
    (svm_loss, reference_losses.svm_loss),
    (lambda s, y, **kw: svm_loss(s, y, 0.0, **kw), lambda s, y: reference_losses.svm_loss(s, y, 0.0)),
]


@pytest.mark.parametrize("pair", range(len(LOSS_PAIRS)))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1), (1, 10), (7, 3), (50, 10), (3, 1000), (2**13, 9)])
def test_compiled_loss_matches_the_numpy_formula(pair, dtype, shape):
    compiled, numpy = LOSS_PAIRS[pair]
    rng = np.random.default_rng(0)
    scores = (rng.standard_normal(shape) * 3).astype(dtype)
    y = rng.integers(0, shape[1], shape[0])
    loss, dscores = compiled(scores, y)
    expected_loss, expected = numpy(scores, y)
    assert loss == pytest.approx(expected_loss, rel=1e-5 if dtype == np.float32 else 1e-12, abs=1e-6)
    assert_close(dscores, expected)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("label_dtype", [np.int64, np.int32, np.uint8])
def test_any_layout_and_label_dtype(layout, label_dtype):
    rng = np.random.default_rng(1)
    scores = rng.standard_normal((6, 4))
    y = rng.integers(0, 4, 6)
    for compiled, numpy in LOSS_PAIRS:
        expected = compiled(scores, y)
        got = compiled(with_layout(scores, layout), with_layout(y.astype(label_dtype), layout))
        assert got[0] == expected[0] and np.array_equal(got[1], expected[1])


def test_a_nan_row_is_nan_in_both_kernels_and_the_others_are_not():
    scores = np.array([[1.0, np.nan, 0.0], [0.5, 1.0, -1.0]])
    y = np.array([0, 2])
    loss, dscores = softmax_loss(scores, y)
    expected_loss, expected = reference_losses.softmax_loss(scores, y)
    assert np.isnan(loss) and np.isnan(expected_loss)
    assert np.array_equal(dscores, expected, equal_nan=True) and np.isfinite(dscores[1]).all()
    loss, dscores = svm_loss(scores, y)
    expected_loss, expected = reference_losses.svm_loss(scores, y)
    assert np.isnan(loss) and np.isnan(expected_loss)
    assert np.array_equal(dscores, expected)


@pytest.mark.parametrize("loss_function", [softmax_loss, svm_loss])
def test_reference_backend_and_bad_backend(loss_function):
    scores = np.random.default_rng(2).standard_normal((4, 3))
    y = np.array([0, 1, 2, 0])
    compiled = loss_function(scores, y)
    numpy = loss_function(scores, y, backend="reference")
    assert compiled[0] == pytest.approx(numpy[0], rel=1e-12)
    assert_close(compiled[1], numpy[1])
    with pytest.raises(ValueError, match="unknown backend"):
        loss_function(scores, y, backend="fast")
