"""Fine-tune a pretrained CNN on a few examples of new classes, and compare with training from scratch.

    python examples/fine_tune_digits.py                  # 2 examples per class, 10 draws; seconds
    python examples/fine_tune_digits.py --shots 5 --save pretrained.npz

1. Pretrain a small CNN (conv 3x3 - ReLU - max-pool 2 - linear head) on the digits 0-4 of
   scikit-learn's bundled 8x8 digits (no download).
2. Save it with fastconv.save_model.
3. For each of `--draws` random draws of `--shots` examples of each of 5-9: load the
   pretrained model with fastconv.load_model, replace its head by a fresh Linear layer for
   the five classes 5-9, freeze the convolutional body (model.freeze(up_to=-1)) and
   fine-tune the head on the drawn examples; train the same network from scratch on the
   same examples; score both on all the other images of 5-9.
4. Print both accuracies per draw and their means.

With 2 examples per class the fine-tuned model is ahead by about a point on average (9 of 10
seeds; docs/models.md gives the measurements). The margin is small: on these tiny images a
linear classifier on the raw 8x8 pixels already gets about 91% from 5 examples per class, so
features learnt on 0-4 have little to add. The example shows the workflow.
Needs scikit-learn: pip install "fastconv[examples]".
"""
import argparse
import os
import sys
import tempfile

import numpy as np

import fastconv
from fastconv.layers import Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential
from fastconv.optim import Adam
from fastconv.train import Trainer, accuracy

CLASSES = 5  # each task has five digits
CHANNELS = 16
FEATURES = CHANNELS * 4 * 4  # 8x8 -> max-pool 2 -> 4x4


def load_tasks(dtype=np.float32):
    """The two tasks on scikit-learn's digits: images (N, 1, 8, 8) standardised with the
    pretraining images' mean and std, labels 0-4 in both (digit d of 5-9 is label d - 5).

    Returns (x_pretrain, y_pretrain, x_target, y_target): all the images of 0-4, all of 5-9.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        sys.stderr.write(
            "fine_tune_digits.py needs scikit-learn for the digits data set, and it is not installed.\n"
            'Install the example extras with:  python -m pip install "fastconv[examples]"\n'
        )
        raise SystemExit(2)
    digits = load_digits()
    images = digits.images.reshape(-1, 1, 8, 8).astype(np.float64)
    labels = digits.target.astype(np.int64)
    pretrain = labels < CLASSES
    mean, std = images[pretrain].mean(), images[pretrain].std()
    images = ((images - mean) / std).astype(dtype)
    return images[pretrain], labels[pretrain], images[~pretrain], labels[~pretrain] - CLASSES


def draw_few(y, shots, rng):
    """(few, rest): indices of `shots` random examples of each class, and of all the others."""
    few = np.concatenate([rng.permutation(np.flatnonzero(y == label))[:shots] for label in range(CLASSES)])
    return few, np.setdiff1d(np.arange(len(y)), few)


def new_head(rng):
    """A fresh linear classifier for five classes on the body's features."""
    return Linear(FEATURES, CLASSES, rng=rng, weight_scale=0.01)


def build_model(rng):
    """conv 3x3 (1 -> 16, padding 1) - ReLU - max-pool 2 - Flatten - Linear(256 -> 5)."""
    return Sequential([Conv2d(1, CHANNELS, 3, padding=1, rng=rng), ReLU(), MaxPool2d(2), Flatten(), new_head(rng)])


def fit(model, x, y, *, epochs, lr, batch_size, seed, verbose):
    """Adam on model.params; a frozen layer's parameters get no gradients and stay as they are."""
    trainer = Trainer(model, Adam(model.params, lr=lr), batch_size=batch_size, rng=seed, verbose=verbose)
    trainer.fit(x, y, epochs=epochs)
    return model


def parse_arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=int, default=2, help="training examples per class of 5-9")
    parser.add_argument("--draws", type=int, default=10, help="random draws of those examples")
    parser.add_argument("--pretrain-epochs", type=int, default=8)
    parser.add_argument("--fine-tune-epochs", type=int, default=60, help="full-batch steps on the few examples")
    parser.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", metavar="NPZ", help="keep the pretrained model in this file")
    parser.add_argument("--threads", type=int, default=None,
                        help="fastconv threads (default: fastconv.get_num_threads())")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def main(argv=None):
    """Run the example; returns a dict of the accuracies it printed."""
    args = parse_arguments(argv)
    if args.threads is not None:
        fastconv.set_num_threads(args.threads)
    x_pretrain, y_pretrain, x_target, y_target = load_tasks()
    rng = np.random.default_rng(args.seed)
    options = dict(lr=args.lr, seed=args.seed, verbose=not args.quiet)
    print(f"pretraining on the {len(y_pretrain)} images of 0-4")
    pretrained = fit(build_model(rng), x_pretrain, y_pretrain, epochs=args.pretrain_epochs, batch_size=32,
                     **options)
    results = {"pretrain_accuracy": accuracy(pretrained, x_pretrain, y_pretrain),
               "fine_tuned": [], "scratch": [], "body_unchanged": True}
    print(f"pretrained: accuracy {results['pretrain_accuracy']:.4f} on its own training images")

    with tempfile.TemporaryDirectory() as folder:
        path = args.save or os.path.join(folder, "pretrained.npz")
        fastconv.save_model(pretrained, path)
        print(f"saved {path} ({os.path.getsize(path)} bytes)")
        print(f"{args.draws} draws of {args.shots} examples of each of 5-9; accuracy on the other images:")
        for draw in range(args.draws):
            few, rest = draw_few(y_target, args.shots, rng)
            model = fastconv.load_model(path)
            model.layers[-1] = new_head(rng)
            model.freeze(up_to=-1)
            head = f"{len(model.layers) - 1}."
            body = {key: value for key, value in model.state_dict().items() if not key.startswith(head)}
            fit(model, x_target[few], y_target[few], epochs=args.fine_tune_epochs, batch_size=len(few), **options)
            results["body_unchanged"] &= all(
                np.array_equal(model.state_dict()[key], value) for key, value in body.items())
            scratch = fit(build_model(rng), x_target[few], y_target[few], epochs=args.fine_tune_epochs,
                          batch_size=len(few), **options)
            results["fine_tuned"].append(accuracy(model, x_target[rest], y_target[rest]))
            results["scratch"].append(accuracy(scratch, x_target[rest], y_target[rest]))
            print(f"  draw {draw + 1}: fine-tuned {results['fine_tuned'][-1]:.4f}   "
                  f"from scratch {results['scratch'][-1]:.4f}   ({len(rest)} test images)")
    results["fine_tuned_mean"] = float(np.mean(results["fine_tuned"]))
    results["scratch_mean"] = float(np.mean(results["scratch"]))
    print(f"mean test accuracy: fine-tuned head on the frozen pretrained body {results['fine_tuned_mean']:.4f}, "
          f"the same network trained from scratch {results['scratch_mean']:.4f}")
    return results


if __name__ == "__main__":
    main()
