"""Time BatchNorm2d forward+backward on the VGG training step's feature maps: compiled vs NumPy.

The maps of issue 21's small VGG (batch 64): two 64-channel 32x32 and two 128-channel 16x16
BatchNorm2d layers per step. "numpy" is the layer as it was before the compiled kernels
(fastconv.layers.BatchNorm2d up to this change: NumPy in the input's dtype), "compiled" is
fastconv.batch_norm_forward/backward. The two run in alternating blocks in one process, so
a busy machine slows both alike; printed are the best block (per call, all four layers)
and the median block of each, and their ratio:

    python bench/norm_layers.py
    python bench/norm_layers.py --threads 1 --dtype float64
    python bench/norm_layers.py --kind layer      # LayerNorm over (C, H, W), compiled vs reference
    python bench/norm_layers.py --builds          # the baseline build of the kernels vs the AVX2 one
"""
import argparse
import statistics
import time

import numpy as np

import fastconv
from fastconv import _compiled, reference

VGG_MAPS = [(64, 64, 32, 32), (64, 64, 32, 32), (64, 128, 16, 16), (64, 128, 16, 16)]
_AXES = (0, 2, 3)


def numpy_batch_norm_step(x, weight, bias, dout, eps=1e-5):
    """The NumPy BatchNorm2d training forward and backward that the compiled kernels replace."""
    channels = x.shape[1]

    def per_channel(values):
        return values.reshape(1, channels, 1, 1)

    dtype = x.dtype.type
    mean = x.mean(axis=_AXES)
    centred = x - per_channel(mean)
    var = (centred * centred).mean(axis=_AXES)
    inv_std = 1 / np.sqrt(var + dtype(eps))
    normalised = centred * per_channel(inv_std)
    out = normalised * per_channel(weight) + per_channel(bias)
    dweight = (dout * normalised).sum(axis=_AXES)
    dbias = dout.sum(axis=_AXES)
    dnormalised = dout * per_channel(weight)
    mean_grad = dnormalised.mean(axis=_AXES, keepdims=True)
    projection = (dnormalised * normalised).mean(axis=_AXES, keepdims=True)
    dx = (dnormalised - mean_grad - normalised * projection) * per_channel(inv_std)
    return out, dx, dweight, dbias


def compiled_batch_norm_step(x, weight, bias, dout, running_mean, running_var):
    out, cache = fastconv.batch_norm_forward(x, weight, bias, running_mean, running_var, backend="cython")
    return (out,) + fastconv.batch_norm_backward(dout, cache)


def with_kernels(module, step):
    """step run with `module` as fastconv's normalisation kernels."""
    def run():
        chosen, _compiled.norm = _compiled.norm, module
        try:
            step()
        finally:
            _compiled.norm = chosen
    return run


def make_steps(kind, dtype, seed=0, builds=False):
    rng = np.random.default_rng(seed)
    layers = []
    for shape in VGG_MAPS:
        channels = shape[1]
        x = rng.standard_normal(shape, dtype=dtype)
        dout = rng.standard_normal(shape, dtype=dtype)
        if kind == "batch":
            weight = rng.standard_normal(channels, dtype=dtype)
            bias = rng.standard_normal(channels, dtype=dtype)
            layers.append((x, weight, bias, dout, np.zeros(channels, dtype), np.ones(channels, dtype)))
        else:
            weight = rng.standard_normal(shape[1:], dtype=dtype)
            bias = rng.standard_normal(shape[1:], dtype=dtype)
            layers.append((x, weight, bias, dout))

    if kind == "batch" and builds:
        from fastconv._kernels import _norm, _norm_avx2

        def compiled_step():
            for layer in layers:
                compiled_batch_norm_step(*layer)
        return {"baseline": with_kernels(_norm, compiled_step), "avx2": with_kernels(_norm_avx2, compiled_step)}
    if kind == "batch":
        def baseline():
            for x, weight, bias, dout, _, _ in layers:
                numpy_batch_norm_step(x, weight, bias, dout)

        def compiled():
            for layer in layers:
                compiled_batch_norm_step(*layer)
        return {"numpy": baseline, "compiled": compiled}

    def twin(api, **options):
        def step():
            for x, weight, bias, dout in layers:
                _, cache = api.layer_norm_forward(x, weight, bias, **options)
                api.layer_norm_backward(dout, cache)
        return step
    return {"reference": twin(reference), "compiled": twin(fastconv, backend="cython")}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--threads", type=int, default=None, help="fastconv threads (default: all)")
    parser.add_argument("--kind", default="batch", choices=["batch", "layer"])
    parser.add_argument("--calls", type=int, default=5, help="calls per block")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--builds", action="store_true", help="compare the kernels' baseline and AVX2 builds")
    args = parser.parse_args(argv)
    if args.threads:
        fastconv.set_num_threads(args.threads)
    steps = make_steps(args.kind, np.dtype(args.dtype), builds=args.builds)
    times = {name: [] for name in steps}
    for step in steps.values():
        step()  # warm-up
    for _ in range(args.rounds):
        for name, step in steps.items():
            started = time.perf_counter()
            for _ in range(args.calls):
                step()
            times[name].append((time.perf_counter() - started) / args.calls * 1e3)
    names = list(steps)
    print(f"{args.kind} norm fwd+bwd, 4 VGG maps (batch 64), {args.dtype}, "
          f"{fastconv.get_num_threads()} threads; ms per step, best / median block")
    for name in names:
        print(f"  {name:10s} {min(times[name]):8.2f} / {statistics.median(times[name]):8.2f}")
    first, second = names
    print(f"  ratio {second}/{first}: best {min(times[second]) / min(times[first]):.3f}, "
          f"median {statistics.median(times[second]) / statistics.median(times[first]):.3f}")


if __name__ == "__main__":
    main()
