"""What is timed: inputs for a suite case and, per implementation, one call of one pass over them.

Every implementation of a case works on the same NumPy arrays (PyTorch through
``torch.from_numpy``, which shares their memory), and every call computes its result
from scratch: a forward+backward call runs its own forward.
"""
import numpy as np

from .suite import POOL_OPTION_FAMILIES

PASSES = ("forward", "forward+backward")
SHORT_PASS = {"forward": "fwd", "forward+backward": "fwd+bwd"}
IMPLEMENTATIONS = ("reference", "fastconv", "torch")


def operation_name(case, pass_name):
    """Table label of one operation, e.g. "conv fwd+bwd"."""
    return f"{case.family} {SHORT_PASS[pass_name]}"


def gflop(case, pass_name):
    """GFLOP of one call: the forward's multiply-adds, three times that with the backward
    (dx and dw each cost one forward). None for pooling."""
    forward = case.forward_gflop()
    if forward is None:
        return None
    return forward if pass_name == "forward" else 3 * forward


def make_inputs(case, dtype, seed=0):
    """Random arrays for `case` in `dtype`: x, dout (the forward output's shape) and, for
    a convolution, w and b."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if case.family in POOL_OPTION_FAMILIES:
        return _pool_option_inputs(case, rng, dtype)
    inputs = {"x": rng.standard_normal(case.x_shape, dtype=dtype)}
    if case.kind == "conv":
        inputs["w"] = rng.standard_normal(case.w_shape, dtype=dtype)
        inputs["b"] = rng.standard_normal(case.w_shape[0], dtype=dtype)
    elif case.kind == "conv-kind":
        inputs["w"] = rng.standard_normal(case.w_shape, dtype=dtype)
        inputs["b"] = rng.standard_normal(case.out_shape[1], dtype=dtype)
    inputs["dout"] = rng.standard_normal(case.out_shape, dtype=dtype)
    return inputs


def numpy_call(api, case, pass_name, inputs, **options):
    """A no-argument callable running one pass of `case` through `api`.

    api : the ``fastconv`` module (options: backend="cython") or ``fastconv.reference``.
    """
    if case.family in POOL_OPTION_FAMILIES:
        return _pool_option_numpy_call(api, case, pass_name, inputs, **options)
    x, dout = inputs["x"], inputs["dout"]
    if case.kind == "conv":
        w, b = inputs["w"], inputs["b"]

        def forward():
            return api.conv2d_forward(x, w, b, case.stride, case.padding, groups=case.groups,
                                      **options)

        backward = api.conv2d_backward
    elif case.kind == "conv-kind":
        w, b = inputs["w"], inputs["b"]
        kind_forward = getattr(api, f"{case.op}_forward")
        keywords = {**case.keywords, **options}

        def forward():
            return kind_forward(x, w, b, case.stride, case.padding, **keywords)

        backward = getattr(api, f"{case.op}_backward")
    else:
        def forward():
            return api.max_pool2d_forward(x, case.kernel_size, case.stride, **options)

        backward = api.max_pool2d_backward
    if pass_name == "forward":
        return forward

    def forward_backward():
        _, cache = forward()
        return backward(dout, cache)

    return forward_backward


def torch_call(torch, case, pass_name, inputs):
    """A no-argument callable running one pass of `case` through PyTorch on the same arrays.

    The inputs require gradients in both passes, as in training: the forward then keeps
    what the backward needs, as fastconv's forward does with its cache. Before a forward is
    timed, one forward+backward of the layer runs: PyTorch's CPU conv forward runs up to 3.5x
    faster once a conv backward has run in its process (7.3 -> 2.1 ms on cnn-cifar), so this
    is the harder baseline.
    """
    if case.family in POOL_OPTION_FAMILIES:
        return _pool_option_torch_call(torch, case, pass_name, inputs)
    functional = torch.nn.functional
    x = torch.from_numpy(inputs["x"]).requires_grad_(True)
    dout = torch.from_numpy(inputs["dout"])
    if case.kind == "conv":
        w = torch.from_numpy(inputs["w"]).requires_grad_(True)
        b = torch.from_numpy(inputs["b"]).requires_grad_(True)
        leaves = (x, w, b)

        def forward():
            return functional.conv2d(x, w, b, case.stride, case.padding, groups=case.groups)
    elif case.kind == "conv-kind":
        w = torch.from_numpy(inputs["w"]).requires_grad_(True)
        b = torch.from_numpy(inputs["b"]).requires_grad_(True)
        leaves = (x, w, b)
        kind_forward = getattr(functional, case.op)
        keywords = case.keywords

        def forward():
            return kind_forward(x, w, b, stride=case.stride, padding=case.padding, **keywords)
    else:
        leaves = (x,)

        def forward():
            return functional.max_pool2d(x, case.kernel_size, case.stride)

    def forward_backward():
        for leaf in leaves:
            leaf.grad = None  # no accumulation into a previous call's gradients
        forward().backward(dout)
        return tuple(leaf.grad for leaf in leaves)

    if pass_name == "forward":
        forward_backward()
        return forward
    return forward_backward


def implementations(case, pass_name, inputs, torch=None):
    """{name: callable} for the implementations available here, in IMPLEMENTATIONS order."""
    import fastconv
    from fastconv import reference

    calls = {
        "reference": numpy_call(reference, case, pass_name, inputs),
        "fastconv": numpy_call(fastconv, case, pass_name, inputs, backend="cython"),
    }
    if torch is not None:
        calls["torch"] = torch_call(torch, case, pass_name, inputs)
    return calls


# ---- pooling options (issue 23) ---------------------------------------------------------------

def _pool_option_inputs(case, rng, dtype):
    """x, dout and, for unpooling, x replaced by the maxima of a random input of the unpooled
    size and their int64 indices (as a SegNet encoder hands them to its decoder)."""
    inputs = {"x": rng.standard_normal(case.x_shape, dtype=dtype)}
    if case.op == "unpool":
        import fastconv

        source = rng.standard_normal(case.out_shape, dtype=dtype)
        inputs["x"], inputs["indices"], _ = fastconv.max_pool2d_forward(
            source, case.kernel_size, case.stride, case.padding, return_indices=True)
        assert inputs["x"].shape == case.x_shape
    inputs["dout"] = rng.standard_normal(case.out_shape, dtype=dtype)
    return inputs


def _pool_option_numpy_call(api, case, pass_name, inputs, **options):
    x, dout = inputs["x"], inputs["dout"]
    keywords = case.keywords
    if case.op in ("max", "avg"):
        name = f"{case.op}_pool{case.ndim}d"

        def forward():
            return getattr(api, f"{name}_forward")(x, case.kernel_size, case.stride, case.padding,
                                                    **keywords, **options)
    elif case.op.startswith("adaptive"):
        name = f"{case.op}_pool2d"

        def forward():
            return getattr(api, f"{name}_forward")(x, keywords["output_size"], **options)
    else:
        name, indices = "max_unpool2d", inputs["indices"]

        def forward():
            return api.max_unpool2d_forward(x, indices, case.kernel_size, case.stride, case.padding,
                                            **options)
    if pass_name == "forward":
        return forward
    backward = getattr(api, f"{name}_backward")

    def forward_backward():
        _, cache = forward()
        return backward(dout, cache)

    return forward_backward


def _pool_option_torch_call(torch, case, pass_name, inputs):
    functional = torch.nn.functional
    x = torch.from_numpy(inputs["x"]).requires_grad_(True)
    dout = torch.from_numpy(inputs["dout"])
    keywords = case.keywords
    if case.op in ("max", "avg"):
        pool = getattr(functional, f"{case.op}_pool{case.ndim}d")
        stride = case.kernel_size if case.stride is None else case.stride

        def forward():
            return pool(x, case.kernel_size, stride, case.padding, **keywords)
    elif case.op.startswith("adaptive"):
        pool = getattr(functional, f"{case.op}_pool2d")

        def forward():
            return pool(x, keywords["output_size"])
    else:
        indices = torch.from_numpy(inputs["indices"])

        def forward():
            return functional.max_unpool2d(x, indices, case.kernel_size, case.stride, case.padding)
    if pass_name == "forward":
        return forward

    def forward_backward():
        x.grad = None  # no accumulation into a previous call's gradients
        forward().backward(dout)
        return (x.grad,)

    return forward_backward
