"""The course's ``cs231n.classifiers.fc_net``: FullyConnectedNet (and the older TwoLayerNet)."""
import numpy as np

from ..layers import (affine_backward, affine_forward, batchnorm_backward, batchnorm_forward, dropout_backward,
                      dropout_forward, layernorm_backward, layernorm_forward, relu_backward, relu_forward, softmax_loss)
from ._common import input_batch, l2, model_dtype, non_negative, positive_int

__all__ = ["FullyConnectedNet", "TwoLayerNet"]

NORMALIZATIONS = (None, "batchnorm", "layernorm")


class FullyConnectedNet:
    """{affine - [batch/layer norm] - relu - [dropout]} x (L - 1) - affine - softmax.

    Parameters
    ----------
    hidden_dims : list of ints, the size of each hidden layer (L - 1 of them).
    input_dim : int, features per sample (3 * 32 * 32); X (N, d_1, ..., d_k) is flattened.
    num_classes : int (10).
    dropout_keep_ratio : the probability of keeping a hidden unit, in (0, 1]; 1 (the
        default) means no dropout. ``dropout`` is the same argument under its 2018-2019 name.
    normalization : None, "batchnorm" or "layernorm", after every hidden affine layer.
    reg : L2 strength on the weights: the loss adds 0.5 * reg * sum of |W_i|^2.
    weight_scale : standard deviation of the initial weights (1e-2), drawn from NumPy's
        global generator layer by layer (weight_scale * np.random.randn(in, out)).
    dtype : float32 (default) or float64, of the parameters and computations (X is cast).
    seed : if given, the dropout layers reseed NumPy's generator with it on every
        forward, so the masks repeat (for gradient checks).

    params : 'W1', 'b1', ..., 'WL', 'bL' (W_i of shape (in, out)) and, with normalization,
    'gamma1', 'beta1', ... for the L - 1 hidden layers (ones and zeros).
    bn_params : one dict per hidden layer for its norm (running statistics live there).
    dropout_param : the dict passed to every dropout layer.
    """

    def __init__(self, hidden_dims, input_dim=3 * 32 * 32, num_classes=10, dropout_keep_ratio=1,
                 normalization=None, reg=0.0, weight_scale=1e-2, dtype=np.float32, seed=None, *, dropout=None):
        if dropout is not None:
            if dropout_keep_ratio != 1:
                raise ValueError("give dropout_keep_ratio or its older name dropout, not both")
            dropout_keep_ratio = dropout
        if isinstance(hidden_dims, (int, np.integer)) or not hasattr(hidden_dims, "__iter__"):
            raise TypeError(f"hidden_dims must be a list of ints, got {hidden_dims!r}")
        hidden_dims = [positive_int(size, "each of hidden_dims") for size in hidden_dims]
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be None, 'batchnorm' or 'layernorm', got {normalization!r}")
        if isinstance(dropout_keep_ratio, bool) or not isinstance(dropout_keep_ratio, (int, float, np.floating)) \
                or not 0 < dropout_keep_ratio <= 1:
            raise ValueError(f"dropout_keep_ratio (the keep probability) must lie in (0, 1], got {dropout_keep_ratio!r}")
        self.normalization = normalization
        self.use_dropout = dropout_keep_ratio != 1
        self.reg = non_negative(reg, "reg")
        self.num_layers = 1 + len(hidden_dims)
        self.dtype = model_dtype(dtype)
        self.input_dim = positive_int(input_dim, "input_dim")
        weight_scale = non_negative(weight_scale, "weight_scale")
        sizes = [self.input_dim] + hidden_dims + [positive_int(num_classes, "num_classes")]
        self.params = {}
        for layer, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
            self.params[f"W{layer}"] = weight_scale * np.random.randn(fan_in, fan_out)
            self.params[f"b{layer}"] = np.zeros(fan_out)
            if normalization is not None and layer < self.num_layers:
                self.params[f"gamma{layer}"] = np.ones(fan_out)
                self.params[f"beta{layer}"] = np.zeros(fan_out)
        for name, value in self.params.items():
            self.params[name] = value.astype(self.dtype)
        self.dropout_param = {}
        if self.use_dropout:
            self.dropout_param = {"mode": "train", "p": dropout_keep_ratio}
            if seed is not None:
                self.dropout_param["seed"] = seed
        self.bn_params = []
        if normalization == "batchnorm":
            self.bn_params = [{"mode": "train"} for _ in range(self.num_layers - 1)]
        elif normalization == "layernorm":
            self.bn_params = [{} for _ in range(self.num_layers - 1)]

    def loss(self, X, y=None):
        """Scores (N, num_classes) for X when y is None (test mode); else (loss, grads) in train mode."""
        X = input_batch(X, self.dtype, (self.input_dim,))
        mode = "test" if y is None else "train"
        if self.use_dropout:
            self.dropout_param["mode"] = mode
        if self.normalization == "batchnorm":
            for bn_param in self.bn_params:
                bn_param["mode"] = mode
        caches = []
        hidden = X
        for layer in range(1, self.num_layers):
            hidden, affine_cache = affine_forward(hidden, self.params[f"W{layer}"], self.params[f"b{layer}"])
            norm_cache = None
            if self.normalization == "batchnorm":
                hidden, norm_cache = batchnorm_forward(hidden, self.params[f"gamma{layer}"], self.params[f"beta{layer}"],
                                                       self.bn_params[layer - 1])
            elif self.normalization == "layernorm":
                hidden, norm_cache = layernorm_forward(hidden, self.params[f"gamma{layer}"], self.params[f"beta{layer}"],
                                                       self.bn_params[layer - 1])
            hidden, relu_cache = relu_forward(hidden)
            dropout_cache = None
            if self.use_dropout:
                hidden, dropout_cache = dropout_forward(hidden, self.dropout_param)
            caches.append((affine_cache, norm_cache, relu_cache, dropout_cache))
        last = self.num_layers
        scores, scores_cache = affine_forward(hidden, self.params[f"W{last}"], self.params[f"b{last}"])
        if y is None:
            return scores
        loss, dscores = softmax_loss(scores, y)
        grads = {}
        dhidden, grads[f"W{last}"], grads[f"b{last}"] = affine_backward(dscores, scores_cache)
        for layer in range(self.num_layers - 1, 0, -1):
            affine_cache, norm_cache, relu_cache, dropout_cache = caches[layer - 1]
            if dropout_cache is not None:
                dhidden = dropout_backward(dhidden, dropout_cache)
            dhidden = relu_backward(dhidden, relu_cache)
            if self.normalization == "batchnorm":
                dhidden, grads[f"gamma{layer}"], grads[f"beta{layer}"] = batchnorm_backward(dhidden, norm_cache)
            elif self.normalization == "layernorm":
                dhidden, grads[f"gamma{layer}"], grads[f"beta{layer}"] = layernorm_backward(dhidden, norm_cache)
            dhidden, grads[f"W{layer}"], grads[f"b{layer}"] = affine_backward(dhidden, affine_cache)
        loss += l2(self.params, [f"W{layer}" for layer in range(1, self.num_layers + 1)], self.reg, grads)
        return loss, grads


class TwoLayerNet(FullyConnectedNet):
    """affine - relu - affine - softmax (the course's assignment-1/early assignment-2 net).

    TwoLayerNet(input_dim=3*32*32, hidden_dim=100, num_classes=10, weight_scale=1e-3, reg=0.0):
    params 'W1' (input_dim, hidden_dim), 'b1', 'W2' (hidden_dim, num_classes), 'b2', float64
    as in the course; loss(X, y=None) as FullyConnectedNet's.
    """

    def __init__(self, input_dim=3 * 32 * 32, hidden_dim=100, num_classes=10, weight_scale=1e-3, reg=0.0):
        super().__init__([hidden_dim], input_dim=input_dim, num_classes=num_classes, reg=reg,
                         weight_scale=weight_scale, dtype=np.float64)
