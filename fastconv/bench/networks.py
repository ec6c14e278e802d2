"""Every convolution layer of real networks, for the benchmark: ResNet-18, VGG-16, AlexNet and
MobileNetV2 at 224x224 (torchvision's layouts), and DCGAN's discriminator at 64x64 (4x4
stride-2 layers, the adjoints of its generator's transposed ones), each at batch 1 and at a
training batch.

Layers of the same shape are listed once, with `count` the number of times the network has
them. Families are named "<network>-b<batch>" (e.g. resnet18-b16); `--only resnet18` selects
both batches of a network and `--only networks` every family here.
"""
from .suite import ConvCase

# the training batch of each network (MobileNetV2's: the depthwise target of the conv-kinds work)
TRAINING_BATCH = {"resnet18": 16, "vgg16": 16, "alexnet": 16, "mobilenetv2": 8, "dcgan_d": 64}


def _resnet18():
    """(name, channels, size, filters, kernel, stride, padding, groups)."""
    layers = [("conv1", 3, 224, 64, 7, 2, 3, 1)]
    channels, size = 64, 56
    for stage, filters in enumerate((64, 128, 256, 512), start=1):
        stride = 1 if stage == 1 else 2
        for block in range(2):
            first = block == 0
            layers.append((f"l{stage}.{block}.conv1", channels, size, filters, 3,
                           stride if first else 1, 1, 1))
            out_size = size // (stride if first else 1)
            layers.append((f"l{stage}.{block}.conv2", filters, out_size, filters, 3, 1, 1, 1))
            if first and stride != 1:
                layers.append((f"l{stage}.{block}.down", channels, size, filters, 1, stride, 0, 1))
            channels, size = filters, out_size
    return layers


def _vgg16():
    layers, channels, size = [], 3, 224
    for stage, (filters, convs) in enumerate(((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)),
                                             start=1):
        for index in range(convs):
            layers.append((f"conv{stage}_{index + 1}", channels, size, filters, 3, 1, 1, 1))
            channels = filters
        size //= 2
    return layers


def _alexnet():
    return [("conv1", 3, 224, 64, 11, 4, 2, 1), ("conv2", 64, 27, 192, 5, 1, 2, 1),
            ("conv3", 192, 13, 384, 3, 1, 1, 1), ("conv4", 384, 13, 256, 3, 1, 1, 1),
            ("conv5", 256, 13, 256, 3, 1, 1, 1)]


def _mobilenetv2():
    layers = [("conv0", 3, 224, 32, 3, 2, 1, 1)]
    channels, size = 32, 112
    settings = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1))
    for block, (expansion, filters, repeats, first_stride) in enumerate(settings, start=1):
        for index in range(repeats):
            stride = first_stride if index == 0 else 1
            hidden = channels * expansion
            name = f"b{block}.{index}"
            if expansion != 1:
                layers.append((f"{name}.expand", channels, size, hidden, 1, 1, 0, 1))
            layers.append((f"{name}.dw", hidden, size, hidden, 3, stride, 1, hidden))
            size = -(-size // stride)
            layers.append((f"{name}.project", hidden, size, filters, 1, 1, 0, 1))
            channels = filters
    layers.append(("conv_last", channels, size, 1280, 1, 1, 0, 1))
    return layers


def _dcgan_discriminator():
    """Radford et al.'s DCGAN discriminator on 64x64 images: four 4x4 stride-2 convolutions
    with padding 1 (64, 128, 256, 512 filters), then a 4x4 one to a single output."""
    return [("conv1", 3, 64, 64, 4, 2, 1, 1), ("conv2", 64, 32, 128, 4, 2, 1, 1),
            ("conv3", 128, 16, 256, 4, 2, 1, 1), ("conv4", 256, 8, 512, 4, 2, 1, 1),
            ("conv5", 512, 4, 1, 4, 1, 0, 1)]


NETWORKS = {"resnet18": _resnet18, "vgg16": _vgg16, "alexnet": _alexnet,
            "mobilenetv2": _mobilenetv2, "dcgan_d": _dcgan_discriminator}


def _cases(network, batch):
    """The network's conv layers at this batch, one case per distinct shape, in network order."""
    family = f"{network}-b{batch}"
    cases, seen = [], {}
    for name, channels, size, filters, kernel, stride, padding, groups in NETWORKS[network]():
        key = (channels, size, filters, kernel, stride, padding, groups)
        if key in seen:
            seen[key][1] += 1
            continue
        seen[key] = [len(cases), 1]
        cases.append([name, channels, size, filters, kernel, stride, padding, groups])
    result = []
    for key, (index, count) in seen.items():
        name, channels, size, filters, kernel, stride, padding, groups = cases[index]
        result.append((index, ConvCase(
            f"{family}:{name}", (batch, channels, size, size),
            (filters, channels // groups, kernel, kernel), stride, padding, groups=groups,
            family=family, count=count)))
    return [case for _, case in sorted(result, key=lambda pair: pair[0])]


def families():
    """Every network family name, batch 1 first."""
    return [f"{network}-b{batch}" for network in NETWORKS
            for batch in (1, TRAINING_BATCH[network])]


def all_cases():
    return [case for network in NETWORKS for batch in (1, TRAINING_BATCH[network])
            for case in _cases(network, batch)]
