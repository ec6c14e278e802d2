"""The course's ``cs231n.classifiers.cnn``: ThreeLayerConvNet on fastconv's compiled layers."""
import numpy as np

from .. import conv_relu_pool_backward, conv_relu_pool_forward
from ..layer_utils import affine_relu_backward, affine_relu_forward
from ..layers import affine_backward, affine_forward, softmax_loss
from ._common import input_batch, l2, model_dtype, non_negative, positive_int

__all__ = ["ThreeLayerConvNet"]


class ThreeLayerConvNet:
    """conv - relu - 2x2 max pool - affine - relu - affine - softmax, on (N, C, H, W) images.

    Parameters
    ----------
    input_dim : (C, H, W) of the images (3, 32, 32).
    num_filters : filters of the conv layer (32).
    filter_size : height and width of each filter (7); stride 1 and padding
        (filter_size - 1) // 2, which keeps H and W for odd sizes.
    hidden_dim : units of the hidden affine layer (100).
    num_classes : scores produced (10).
    weight_scale : standard deviation of the initial weights (1e-3), drawn from NumPy's
        global generator (np.random.randn, W1, W2, W3 in turn, so np.random.seed repeats
        them); biases start at zero.
    reg : L2 strength: the loss adds 0.5 * reg * (|W1|^2 + |W2|^2 + |W3|^2).
    dtype : float32 (default) or float64; parameters and computations use it (X is cast).

    params : 'W1' (F, C, filter_size, filter_size), 'b1' (F,), 'W2' (F * H'/2 * W'/2,
    hidden_dim), 'b2', 'W3' (hidden_dim, num_classes), 'b3'.
    """

    def __init__(self, input_dim=(3, 32, 32), num_filters=32, filter_size=7, hidden_dim=100, num_classes=10,
                 weight_scale=1e-3, reg=0.0, dtype=np.float32):
        if not isinstance(input_dim, (tuple, list)) or len(input_dim) != 3:
            raise ValueError(f"input_dim must be a (C, H, W) triple, got {input_dim!r}")
        channels, height, width = (positive_int(size, "input_dim") for size in input_dim)
        num_filters = positive_int(num_filters, "num_filters")
        filter_size = positive_int(filter_size, "filter_size")
        hidden_dim = positive_int(hidden_dim, "hidden_dim")
        num_classes = positive_int(num_classes, "num_classes")
        weight_scale = non_negative(weight_scale, "weight_scale")
        self.reg = non_negative(reg, "reg")
        self.dtype = model_dtype(dtype)
        self.input_dim = (channels, height, width)
        self.filter_size = filter_size
        pad = (filter_size - 1) // 2
        conv_height, conv_width = height + 2 * pad - filter_size + 1, width + 2 * pad - filter_size + 1
        if conv_height < 2 or conv_width < 2:
            raise ValueError(f"images of {height}x{width} are too small for {filter_size}x{filter_size} filters "
                             "and a 2x2 pool")
        pooled = num_filters * (conv_height // 2) * (conv_width // 2)
        self.params = {
            "W1": weight_scale * np.random.randn(num_filters, channels, filter_size, filter_size),
            "b1": np.zeros(num_filters),
            "W2": weight_scale * np.random.randn(pooled, hidden_dim),
            "b2": np.zeros(hidden_dim),
            "W3": weight_scale * np.random.randn(hidden_dim, num_classes),
            "b3": np.zeros(num_classes),
        }
        for name, value in self.params.items():
            self.params[name] = value.astype(self.dtype)

    def loss(self, X, y=None):
        """Scores (N, num_classes) for X (N, C, H, W) when y is None; else (loss, grads).

        y : (N,) integer labels. loss is the mean softmax cross-entropy plus the L2 penalty;
        grads maps each params name to its gradient (the model's dtype).
        """
        X = input_batch(X, self.dtype, self.input_dim)
        params = self.params
        conv_param = {"stride": 1, "pad": (self.filter_size - 1) // 2}
        pool_param = {"pool_height": 2, "pool_width": 2, "stride": 2}
        pooled, pool_cache = conv_relu_pool_forward(X, params["W1"], params["b1"], conv_param, pool_param)
        hidden, hidden_cache = affine_relu_forward(pooled, params["W2"], params["b2"])
        scores, scores_cache = affine_forward(hidden, params["W3"], params["b3"])
        if y is None:
            return scores
        loss, dscores = softmax_loss(scores, y)
        grads = {}
        dhidden, grads["W3"], grads["b3"] = affine_backward(dscores, scores_cache)
        dpooled, grads["W2"], grads["b2"] = affine_relu_backward(dhidden, hidden_cache)
        _, grads["W1"], grads["b1"] = conv_relu_pool_backward(dpooled, pool_cache)
        loss += l2(params, ("W1", "W2", "W3"), self.reg, grads)
        return loss, grads
