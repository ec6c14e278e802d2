"""Train a small CNN (conv-relu-pool-linear) on scikit-learn's bundled handwritten digits.

    python examples/train_digits.py                      # ~98% test accuracy in a few seconds
    python examples/train_digits.py --plot digits.png    # also save loss/accuracy curves

The 1797 digits are 8x8 grey images of 0-9 shipped inside scikit-learn (no download).
Needs the optional extras: pip install "fastconv[examples]" (scikit-learn, matplotlib).
Besides the accuracy, it prints the time per epoch of the compiled backend and, from a few
batches, the same estimate for backend="reference".
"""
import argparse
import sys
import time

import numpy as np

import fastconv
from fastconv.layers import Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential
from fastconv.optim import Adam
from fastconv.train import Trainer, accuracy, initial_loss

NUM_CLASSES = 10


def _missing(package, purpose):
    sys.stderr.write(
        f"train_digits.py needs {package} {purpose}, and it is not installed.\n"
        f'Install the example extras with:  python -m pip install "fastconv[examples]"\n'
        f"(or just:  python -m pip install {package})\n"
    )
    raise SystemExit(2)


def load_digits_split(seed, dtype=np.float32):
    """(x_train, y_train, x_val, y_val, x_test, y_test): images (N, 1, 8, 8) standardised
    with the training set's mean and std; 20% test, then 10% of the rest for validation,
    stratified by class."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        _missing("scikit-learn", "for the digits data set")
    digits = load_digits()
    images = digits.images.reshape(-1, 1, 8, 8).astype(np.float64)
    labels = digits.target.astype(np.int64)
    x_rest, x_test, y_rest, y_test = train_test_split(
        images, labels, test_size=0.2, stratify=labels, random_state=seed
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=0.1, stratify=y_rest, random_state=seed
    )
    mean, std = x_train.mean(), x_train.std()
    x_train, x_val, x_test = ((x - mean) / std for x in (x_train, x_val, x_test))
    return (x_train.astype(dtype), y_train, x_val.astype(dtype), y_val, x_test.astype(dtype), y_test)


def build_model(seed, backend="auto", channels=16):
    """conv 3x3 (1 -> channels, padding 1) - ReLU - max-pool 2x2 - Linear(channels*4*4 -> 10)."""
    rng = np.random.default_rng(seed)
    return Sequential([
        Conv2d(1, channels, 3, padding=1, rng=rng, backend=backend),
        ReLU(),
        MaxPool2d(2, backend=backend),
        Flatten(),
        Linear(channels * 4 * 4, NUM_CLASSES, rng=rng, weight_scale=0.01),
    ])


def seconds_per_batch(backend, x, y, batch_size, batches, seed):
    """Mean wall time of `batches` training steps (forward, loss, backward, Adam step) on a
    fresh model using `backend`; one untimed warm-up step first."""
    model = build_model(seed, backend=backend)
    trainer = Trainer(model, Adam(model.params, lr=1e-3), batch_size=batch_size, verbose=False, rng=seed)
    trainer.train_step(x[:batch_size], y[:batch_size])
    times = []
    for index in range(batches):
        start = (index * batch_size) % max(1, len(y) - batch_size)
        started = time.perf_counter()
        trainer.train_step(x[start:start + batch_size], y[start:start + batch_size])
        times.append(time.perf_counter() - started)
    return float(np.mean(times))


def plotting_module():
    """matplotlib.pyplot drawing to files (the Agg backend), or a clear exit if missing."""
    try:
        import matplotlib
    except ImportError:
        _missing("matplotlib", "to save the plot (--plot)")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_plot(plt, history, path):
    epochs = np.arange(1, len(history["epoch_loss"]) + 1)
    steps_per_epoch = len(history["batch_loss"]) / len(epochs)
    figure, (loss_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(10, 4))
    loss_axes.plot(np.arange(1, len(history["batch_loss"]) + 1) / steps_per_epoch,
                   history["batch_loss"], alpha=0.4, label="batch")
    loss_axes.plot(epochs, history["epoch_loss"], "o-", label="epoch mean")
    loss_axes.set(xlabel="epoch", ylabel="softmax loss", yscale="log", title="training loss")
    loss_axes.legend()
    accuracy_axes.plot(epochs, history["train_acc"], "o-", label="train")
    accuracy_axes.plot(epochs, history["val_acc"], "s-", label="validation")
    accuracy_axes.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    accuracy_axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def parse_arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate")
    parser.add_argument("--lr-decay", type=float, default=0.85, help="lr factor after each epoch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reference-batches", type=int, default=3,
                        help="batches timed with backend='reference' (0: skip)")
    parser.add_argument("--threads", type=int, default=None,
                        help="fastconv threads (default: fastconv.get_num_threads())")
    parser.add_argument("--plot", metavar="PNG", help="save loss/accuracy curves to this file")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv=None):
    """Run the example; returns a dict of the figures it printed."""
    args = parse_arguments(argv)
    if args.threads is not None:
        fastconv.set_num_threads(args.threads)
    plt = plotting_module() if args.plot else None  # fail before training, not after
    x_train, y_train, x_val, y_val, x_test, y_test = load_digits_split(args.seed)
    print(f"digits: {len(y_train)} train, {len(y_val)} validation, {len(y_test)} test images of 8x8; "
          f"fastconv threads: {fastconv.get_num_threads()}, backend: {fastconv.get_backend()}")

    model = build_model(args.seed)
    print(model)
    measured, expected = initial_loss(model, x_train, y_train)
    print(f"initial softmax loss {measured:.3f} (log(10) = {expected:.3f})")

    trainer = Trainer(model, Adam(model.params, lr=args.lr), batch_size=args.batch_size,
                      lr_decay=args.lr_decay, rng=args.seed, verbose=not args.quiet)
    started = time.perf_counter()
    history = trainer.fit(x_train, y_train, x_val, y_val, epochs=args.epochs)
    total_seconds = time.perf_counter() - started
    test_accuracy = accuracy(model, x_test, y_test)
    epoch_seconds = float(np.mean(history["epoch_seconds"]))
    results = {
        "test_accuracy": test_accuracy,
        "val_accuracy": history["val_acc"][-1],
        "epoch_seconds": epoch_seconds,
        "total_seconds": total_seconds,
        "history": history,
    }
    print(f"test accuracy {test_accuracy:.4f} after {args.epochs} epochs "
          f"(final validation accuracy {history['val_acc'][-1]:.4f})")
    print(f"compiled backend: {epoch_seconds:.3f} s per epoch of training steps, "
          f"{total_seconds:.2f} s in all with the accuracy evaluations")

    if args.reference_batches > 0:
        steps_per_epoch = -(-len(y_train) // args.batch_size)
        # the compiled steps are cheap: time more of them for a steadier mean
        batches = {"cython": max(20, args.reference_batches), "reference": args.reference_batches}
        timings = {
            backend: seconds_per_batch(backend, x_train, y_train, args.batch_size, count, args.seed)
            for backend, count in batches.items()
        }
        print(f"mean time per training step, batch of {args.batch_size} "
              f"(an epoch is {steps_per_epoch} steps):")
        for backend, seconds in timings.items():
            print(f"  {backend:9s} {1e3 * seconds:8.2f} ms per batch (mean of {batches[backend]}), "
                  f"~{seconds * steps_per_epoch:6.2f} s per epoch")
        print(f"  the compiled backend is {timings['reference'] / timings['cython']:.0f}x faster per step")
        results["batch_seconds"] = timings

    if args.plot:
        save_plot(plt, history, args.plot)
        print(f"saved {args.plot}")
    return results


if __name__ == "__main__":
    main()
