"""Reference softmax and SVM losses: the NumPy formulas the compiled kernels (_kernels/_elementwise.pyx) follow."""
import numpy as np

from .._validate import check_margin, scores_and_labels


def softmax_loss(scores, y):
    """(mean cross-entropy of softmax(scores) against y, dscores); see fastconv.losses.softmax_loss."""
    num_samples, _ = scores_and_labels(scores, y)
    rows = np.arange(num_samples)
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    log_probs = shifted - log_norm
    loss = -log_probs[rows, y].mean()
    dscores = np.exp(log_probs)
    dscores[rows, y] -= 1
    dscores /= num_samples
    return float(loss), dscores


def svm_loss(scores, y, margin=1.0):
    """(mean multiclass hinge loss, dscores); see fastconv.losses.svm_loss."""
    num_samples, _ = scores_and_labels(scores, y)
    margin = check_margin(margin)
    rows = np.arange(num_samples)
    correct = scores[rows, y][:, None]
    margins = np.maximum(scores - correct + scores.dtype.type(margin), 0)
    margins[rows, y] = 0
    loss = margins.sum() / num_samples
    violated = (margins > 0).astype(scores.dtype)
    violated[rows, y] = -violated.sum(axis=1)
    violated /= num_samples
    return float(loss), violated
