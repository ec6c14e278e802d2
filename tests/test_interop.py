"""fastconv.interop: from_torch / to_torch on real nets (outputs equal in eval mode, and in
training mode with gradients), round trips, flags, unsupported modules and options, and that
importing fastconv never imports torch."""
import numpy as np
import pytest

from fastconv.interop import from_torch, to_torch
from fastconv.layers import (AvgPool2d, BatchNorm2d, Conv2d, Dropout, Flatten, Layer, LeakyReLU, Linear,
                             MaxPool2d, ReLU, Sequential)

# relative to the largest output magnitude
TOLERANCE = {np.float32: 1e-5, np.float64: 1e-12}
DTYPES = (np.float32, np.float64)


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def _torch_dtype(torch, dtype):
    return torch.float32 if dtype == np.float32 else torch.float64


def _cs231n_cnn(nn):
    """conv-relu-pool x2, then affine-relu-dropout-affine (the course's ConvNet shape)."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 20, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, stride=2),
        nn.Flatten(), nn.Linear(20 * 4 * 4, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 10),
    )


def _vgg_bn(nn):
    """Two VGG blocks ([conv3x3-BN-ReLU] x2 - max-pool) and a global-average-pool head."""

    def block(in_channels, channels):
        return nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding="same"), nn.BatchNorm2d(channels), nn.ReLU(),
            nn.MaxPool2d(2),
        )

    return nn.Sequential(block(3, 8), block(8, 16), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


def _depthwise_separable(nn):
    """MobileNet-style: conv-BN-ReLU, then [depthwise 3x3 - BN - ReLU - pointwise 1x1 - BN - ReLU]
    x2 (one strided), a global-average-pool head."""

    def separable(channels, filters, stride):
        return nn.Sequential(
            nn.Conv2d(channels, channels, 3, stride=stride, padding=1, groups=channels, bias=False),
            nn.BatchNorm2d(channels), nn.ReLU(),
            nn.Conv2d(channels, filters, 1, bias=False), nn.BatchNorm2d(filters), nn.ReLU())

    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8),
                         nn.ReLU(), separable(8, 16, 1), separable(16, 24, 2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(24, 10))


def _every_kind(nn):
    """Every other module type from_torch takes, one after another on a 16x16 input."""
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=2, dilation=2, padding_mode="reflect"), nn.GroupNorm(3, 6),
        nn.LeakyReLU(0.1), nn.Conv2d(6, 6, 3, padding="same", groups=2, padding_mode="circular"),
        nn.ConvTranspose2d(6, 4, 3, stride=2, padding=1, output_padding=1, groups=2),
        nn.MaxPool2d(3, stride=2, padding=1, dilation=2, ceil_mode=True),
        nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
        nn.AdaptiveMaxPool2d((4, 3)), nn.LayerNorm((4, 4, 3)), nn.Flatten(), nn.Linear(48, 16),
        nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 5))


def _every_kind_1d(nn):
    return nn.Sequential(nn.Conv1d(3, 4, 5, stride=2, padding="valid", dilation=2),
                         nn.ConvTranspose1d(4, 4, 3, stride=2), nn.MaxPool1d(2, ceil_mode=True),
                         nn.AvgPool1d(3, padding=1, count_include_pad=False), nn.BatchNorm1d(4),
                         nn.Flatten())


def _every_kind_3d(nn):
    return nn.Sequential(nn.Conv3d(3, 4, 3, padding=1, padding_mode="replicate"),
                         nn.ConvTranspose3d(4, 4, 2, stride=2), nn.MaxPool3d(2, padding=1),
                         nn.AvgPool3d(2, divisor_override=3), nn.Flatten())


INPUTS = {_every_kind_1d: (4, 3, 40), _every_kind_3d: (2, 3, 5, 6, 4)}


def _randomise_batchnorm(torch, net):
    """Random affine parameters and running statistics, so BN is not the identity."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                for tensor in (module.weight, module.bias, module.running_mean):
                    tensor.copy_(torch.randn(tensor.shape, generator=generator))
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator) + 0.5)
    return net


def _build(torch, make, dtype):
    torch.manual_seed(0)
    return _randomise_batchnorm(torch, make(torch.nn)).to(_torch_dtype(torch, dtype))


def _assert_close(actual, expected, dtype, scale=None):
    assert actual.dtype == dtype and actual.shape == expected.shape
    scale = np.abs(expected).max() if scale is None else scale
    assert np.abs(actual.astype(np.float64) - expected).max() <= TOLERANCE[dtype] * scale


def _torch_forward(torch, net, x):
    with torch.no_grad():
        return net(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("make", [_cs231n_cnn, _vgg_bn, _depthwise_separable, _every_kind,
                                  _every_kind_1d, _every_kind_3d],
                         ids=["cs231n-cnn", "vgg-bn-gap", "depthwise-separable", "every-kind",
                              "every-kind-1d", "every-kind-3d"])
def test_from_torch_matches_the_module_in_eval_mode(torch, make, dtype):
    net = _build(torch, make, dtype).eval()
    model = from_torch(net)
    assert isinstance(model, Sequential) and not model.training
    x = np.random.default_rng(2).standard_normal(INPUTS.get(make, (4, 3, 16, 16))).astype(dtype)
    _assert_close(model.forward(x), _torch_forward(torch, net, x), dtype)
    # and back: to_torch gives a module computing the same, with equal weights
    back = to_torch(model)
    _assert_close(_torch_forward(torch, back, x).astype(dtype), _torch_forward(torch, net, x), dtype)
    for ours, theirs in zip(back.state_dict().values(), net.state_dict().values()):
        if ours.is_floating_point():
            np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_the_converted_layers_and_weights(torch):
    net = _build(torch, _vgg_bn, np.float64)
    model = from_torch(net)
    assert [type(layer).__name__ for layer in model] == ["Sequential", "Sequential",
                                                         "AdaptiveAvgPool2d", "Flatten", "Linear"]
    block = model[1]
    assert [type(layer) for layer in block] == [Conv2d, BatchNorm2d, ReLU, Conv2d, BatchNorm2d, ReLU, MaxPool2d]
    assert block[3].padding == "same"
    assert model[2].output_size == (1, 1)
    np.testing.assert_array_equal(block[1].running_var, net[1][1].running_var.numpy())
    np.testing.assert_array_equal(block[0].params["weight"], net[1][0].weight.detach().numpy())
    assert block[0].params["weight"].dtype == np.float64
    assert list(model.state_dict())[:6] == ["0.0.weight", "0.0.bias", "0.1.weight", "0.1.bias",
                                             "0.1.running_mean", "0.1.running_var"]
    # copies: changing the torch module afterwards changes nothing here
    with torch.no_grad():
        net[0][0].weight.zero_()
    assert model[0][0].params["weight"].any()


def test_from_torch_matches_in_training_mode_with_gradients(torch):
    # batch statistics, running-statistic updates and every parameter gradient agree
    dtype = np.float64
    net = _build(torch, _vgg_bn, dtype).train()
    model = from_torch(net)
    assert model.training and model[0][1].training
    x = np.random.default_rng(3).standard_normal((6, 3, 16, 16))
    dout = np.random.default_rng(4).standard_normal((6, 10))
    out = model.forward(x)
    model.backward(dout)
    x_torch = torch.from_numpy(x).requires_grad_(True)
    expected = net(x_torch)
    expected.backward(torch.from_numpy(dout))
    _assert_close(out, expected.detach().numpy(), dtype)
    torch_grads = {name: parameter.grad.numpy() for name, parameter in net.named_parameters()}
    assert set(torch_grads) == set(model.grads)  # nn.Sequential's names are ours: "1.0.weight"
    # relative to the largest gradient: a conv bias followed by BatchNorm has a zero
    # gradient, so both sides hold rounding noise there
    scale = max(np.abs(grad).max() for grad in torch_grads.values())
    for name, grad in model.grads.items():
        _assert_close(grad, torch_grads[name], dtype, scale)
    _assert_close(model[1][4].running_var, net[1][4].running_var.numpy(), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_to_torch_round_trips(torch, dtype):
    net = _build(torch, _cs231n_cnn, dtype).eval()
    model = from_torch(net)
    back = to_torch(model)
    assert type(back) is torch.nn.Sequential and not back.training
    for (name, tensor), (back_name, back_tensor) in zip(net.state_dict().items(), back.state_dict().items()):
        assert name == back_name and tensor.dtype == back_tensor.dtype
        assert torch.equal(tensor, back_tensor), name
    x = np.random.default_rng(5).standard_normal((3, 3, 16, 16)).astype(dtype)
    np.testing.assert_array_equal(_torch_forward(torch, back, x), _torch_forward(torch, net, x))
    again = from_torch(back)
    for key, value in model.state_dict().items():
        assert again.state_dict()[key].tobytes() == value.tobytes()


def test_to_torch_of_a_fastconv_model(torch):
    model = Sequential([
        Conv2d(2, 4, (3, 2), stride=(2, 1), padding=(1, 0), dtype=np.float64, rng=0),
        BatchNorm2d(4, eps=1e-3, momentum=0.2, dtype=np.float64),
        LeakyReLU(0.2), AvgPool2d(2, stride=1, padding=1), MaxPool2d(3, stride=2, padding=1),
        Flatten(), Dropout(0.1), Linear(4 * 3 * 4, 3, bias=False, dtype=np.float64, rng=1),
    ])
    rng = np.random.default_rng(6)
    model[1].running_mean[...] = rng.standard_normal(4)
    model[1].running_var[...] = rng.random(4) + 0.5
    model.eval()
    net = to_torch(model)
    assert net[1].eps == 1e-3 and net[1].momentum == 0.2 and net[2].negative_slope == 0.2
    assert net[7].bias is None and net[6].p == 0.1
    x = rng.standard_normal((2, 2, 9, 7))
    _assert_close(model.forward(x), _torch_forward(torch, net, x), np.float64)


def test_modes_and_freezing_carry_over_both_ways(torch):
    nn = torch.nn
    net = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.Sequential(nn.Linear(4, 2)))
    net[1].eval()
    net[0].requires_grad_(False)
    model = from_torch(net)
    assert model.training and not model[1].training and model[2].training
    assert not model[0].trainable and model[2][0].trainable
    back = to_torch(model)
    assert back.training and not back[1].training and back[2].training
    assert not back[0].weight.requires_grad and back[2][0].weight.requires_grad
    net[2][0].bias.requires_grad_(False)
    with pytest.raises(ValueError, match=r"module '2.0' \(Linear\) has some parameters frozen and some not"):
        from_torch(net)


def test_one_module_and_named_children(torch):
    from collections import OrderedDict

    nn = torch.nn
    model = from_torch(nn.Conv2d(1, 2, 3))
    assert isinstance(model, Sequential) and [type(layer) for layer in model] == [Conv2d]
    net = nn.Sequential(OrderedDict(features=nn.Sequential(OrderedDict(conv=nn.Conv2d(1, 2, 3), act=nn.GELU()))))
    with pytest.raises(ValueError, match=r"from_torch: module 'features.act' \(GELU\) is not supported; "
                                         r"supported modules: nn.Sequential, nn.AdaptiveAvgPool2d, .*nn.Conv3d"):
        from_torch(net)


def test_unsupported_modules_are_named_with_their_position(torch):
    nn = torch.nn

    class MyConv(nn.Conv2d):
        pass

    class Net(nn.Module):
        def forward(self, x):
            return x

    for module, name in [(nn.Tanh(), "Tanh"), (MyConv(1, 1, 1), "MyConv"), (Net(), "Net"),
                         (nn.Dropout2d(), "Dropout2d")]:
        with pytest.raises(ValueError, match=rf"module '1' \({name}\) is not supported"):
            from_torch(nn.Sequential(nn.ReLU(), module))
    with pytest.raises(ValueError, match="it subclasses nn.Conv2d, and a subclass may compute something else"):
        from_torch(nn.Sequential(MyConv(1, 1, 1)))
    with pytest.raises(ValueError, match=r"the module \(Net\) is not supported"):
        from_torch(Net())
    with pytest.raises(ValueError, match=r"module '0' \(Sequential\) is empty"):
        from_torch(nn.Sequential(nn.Sequential()))


@pytest.mark.parametrize("make, pattern", [
    (lambda nn: nn.MaxPool2d(2, return_indices=True), "return_indices=True"),
    (lambda nn: nn.AdaptiveMaxPool2d(2, return_indices=True), "return_indices=True"),
    (lambda nn: nn.AdaptiveAvgPool2d((None, 3)), r"output_size=\(None, 3\)"),
    (lambda nn: nn.BatchNorm2d(2, affine=False), "affine=False"),
    (lambda nn: nn.BatchNorm2d(2, track_running_stats=False), "track_running_stats=False"),
    (lambda nn: nn.BatchNorm2d(2, momentum=None), "momentum=None"),
    (lambda nn: nn.BatchNorm1d(2, affine=False), "affine=False"),
    (lambda nn: nn.GroupNorm(2, 4, affine=False), "affine=False"),
    (lambda nn: nn.LayerNorm(4, elementwise_affine=False), "elementwise_affine=False"),
    (lambda nn: nn.Flatten(2), "start_dim=2"),
    (lambda nn: nn.LeakyReLU(-0.1), "no fastconv equivalent: alpha must be a number >= 0"),
    (lambda nn: nn.Dropout(1.0), "no fastconv equivalent: p .* must lie in"),
])
def test_unsupported_options_are_named(torch, make, pattern):
    with pytest.raises(ValueError, match=rf"from_torch: module '1' \(\w+\): .*{pattern}"):
        from_torch(torch.nn.Sequential(torch.nn.ReLU(), make(torch.nn)))


def test_supported_variants_of_the_options(torch):
    nn = torch.nn
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding="valid", bias=False), nn.AvgPool2d(2, count_include_pad=False),
                        nn.Conv2d(2, 2, (2, 4), padding="same"), nn.MaxPool2d(2, stride=1, padding=1))
    model = from_torch(net.double())
    assert model[0].padding == "valid" and "bias" not in model[0].params and model[2].padding == "same"
    x = np.random.default_rng(7).standard_normal((2, 1, 10, 12))
    _assert_close(model.forward(x), _torch_forward(torch, net, x), np.float64)


def test_bad_arguments(torch):
    nn = torch.nn
    with pytest.raises(TypeError, match="from_torch: module must be a torch.nn.Module, got list"):
        from_torch([nn.ReLU()])
    with pytest.raises(ValueError, match="mixes tensor dtypes"):
        from_torch(nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2).double()))
    with pytest.raises(ValueError, match="float32 or float64, the module is torch.float16"):
        from_torch(nn.Sequential(nn.Linear(2, 2).half()))
    assert from_torch(nn.Sequential(nn.ReLU(), nn.Flatten())) is not None  # no tensors: fine

    class Custom(Layer):
        def forward(self, x):
            return x

    with pytest.raises(ValueError, match=r"to_torch: layer '1.0' \(Custom\) is not supported; supported layers: "
                                         r"Sequential, AdaptiveAvgPool2d, .*Conv3d"):
        to_torch(Sequential([ReLU(), Sequential([Custom()])]))
    with pytest.raises(TypeError, match="to_torch: model must be a fastconv.layers.Layer, got Sequential"):
        to_torch(nn.Sequential(nn.ReLU()))
    assert isinstance(to_torch(ReLU()), nn.Sequential)
    # fastconv options PyTorch's modules lack are named
    from fastconv import layers

    with pytest.raises(ValueError, match=r"to_torch: layer '0' \(Conv2d\): per-side padding \(1, 0, 1, 1\)"):
        to_torch(Sequential([layers.Conv2d(2, 2, 3, padding=(1, 0, 1, 1))]))
    with pytest.raises(ValueError, match=r"divisor_override \(PyTorch's AvgPool1d has none\)"):
        to_torch(Sequential([layers.AvgPool1d(2, divisor_override=3)]))


def test_importing_fastconv_never_imports_torch(run_python):
    result = run_python("""
        import sys
        import fastconv, fastconv.interop, fastconv.serialize, fastconv.layers, fastconv.train
        assert callable(fastconv.interop.from_torch) and callable(fastconv.load_model)
        print("torch" in sys.modules)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_a_clear_error_without_torch(run_python):
    result = run_python("""
        import sys
        sys.modules["torch"] = None  # makes `import torch` fail
        import fastconv
        try:
            fastconv.interop.to_torch(fastconv.layers.Sequential([fastconv.layers.ReLU()]))
        except ImportError as error:
            print(error)
    """)
    assert result.returncode == 0, result.stderr
    assert "fastconv.interop needs PyTorch, which is not installed" in result.stdout
