"""The benchmark's convolution-kind families (dilated, transposed, conv1d): their timed calls
do the real work, on the suite's geometries with one image and four channels."""
import dataclasses

import numpy as np
import pytest

from fastconv.bench import operations, suite


def _small(case):
    """The case at batch 1 and 4 channels in and out, its window unchanged."""
    return dataclasses.replace(case, x_shape=(1, 4) + case.x_shape[2:],
                               w_shape=(4, 4) + case.w_shape[2:])


def _gradients(result):
    return [g for g in result if g is not None]


def test_kind_families_select_their_cases():
    assert {case.family for case in suite.KIND_CASES} == set(suite.KIND_FAMILIES)
    for family in suite.KIND_FAMILIES:
        assert [c.name for c in suite.select(family, quick=True)] == [
            c.name for c in suite.KIND_CASES if c.family == family]
    # each dilated layer has an undilated peer of the same FLOPs and output shape
    dilated = {c.name: c for c in suite.KIND_CASES if c.family == "dilated"}
    for name, case in dilated.items():
        if case.dilation != 1:
            peer = dilated[name.replace("-d2", "-d1")]
            assert peer.dilation == 1 and peer.out_shape == case.out_shape
            assert peer.forward_gflop() == pytest.approx(case.forward_gflop())


def test_kind_shapes_and_flops():
    by_name = {c.name: c for c in suite.KIND_CASES}
    dcgan = by_name["dcgan-up8"]
    assert dcgan.op == "conv_transpose2d" and dcgan.out_shape == (64, 256, 8, 8)
    # a transposed convolution's multiply-adds: every input element times F/groups * taps
    assert dcgan.forward_gflop() == pytest.approx(2 * 64 * 512 * 4 * 4 * 256 * 4 * 4 / 1e9)
    audio = by_name["audio-k9"]
    assert audio.op == "conv1d" and audio.out_shape == (16, 64, 16000)
    assert audio.forward_gflop() == pytest.approx(2 * 16 * 64 * 16000 * 64 * 9 / 1e9)
    assert by_name["audio-k5s2"].out_shape == (16, 128, 4000)
    assert by_name["unet-up112"].out_shape == (4, 128, 112, 112)


@pytest.mark.parametrize("name", [case.name for case in suite.KIND_CASES])
def test_timed_kind_calls_compute_what_the_reference_and_torch_compute(name):
    case = _small(next(c for c in suite.KIND_CASES if c.name == name))
    try:
        import torch
    except ImportError:
        torch = None
    inputs = operations.make_inputs(case, np.float64)
    assert inputs["dout"].shape == case.out_shape
    forward = operations.implementations(case, "forward", inputs, torch)
    out = forward["fastconv"]()[0]
    assert out.shape == case.out_shape
    np.testing.assert_allclose(out, forward["reference"]()[0], rtol=1e-10, atol=1e-10)
    backward = operations.implementations(case, "forward+backward", inputs, torch)
    fast, slow = _gradients(backward["fastconv"]()), _gradients(backward["reference"]())
    assert len(fast) == len(slow) == 3
    for fast_gradient, slow_gradient in zip(fast, slow):
        np.testing.assert_allclose(fast_gradient, slow_gradient, rtol=1e-10, atol=1e-10)
    if torch is not None:
        np.testing.assert_allclose(forward["torch"]().detach().numpy(), out, rtol=1e-10, atol=1e-10)
        for gradient, expected in zip(backward["torch"](), fast):
            np.testing.assert_allclose(gradient.numpy(), expected, rtol=1e-10, atol=1e-10)


def test_kind_rows_name_the_window():
    """A measured kind case makes a table row (timed in this process on the small shapes,
    without torch) that names its window."""
    from fastconv.bench import runner

    case = _small(next(c for c in suite.KIND_CASES if c.name == "dcgan-up8"))
    settings = runner.TINY
    inputs = operations.make_inputs(case, np.float32)
    row = runner.measure_case(case, "forward", inputs, settings)
    assert row["operation"] == "transposed fwd" and row["w_shape"] == [4, 4, 4, 4]
    assert (row["stride"], row["padding"], row["dilation"], row["output_padding"]) == (2, 1, 1, 0)
    assert row["fastconv_ms"] > 0 and row["gflop"] == pytest.approx(case.forward_gflop())
