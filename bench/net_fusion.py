"""Time one network of the bench with Sequential's fusion on or off; alternate the two, each
run a process of its own, to compare them on a shared machine.

    PYTHONPATH=. python bench/net_fusion.py CASE FUSE [CALLS]

CASE is a `python -m fastconv.bench --only nets --list` name (cs231n-3layer, vgg-bn,
resnet18-net-b1, ...), FUSE is 1 or 0 (every Sequential built with fuse=True or fuse=False),
CALLS the timed calls (30). Prints the median ms of one call of
fastconv.bench.nets.fastconv_call (a training step, or predict_scores for an inference case)
after 8 untimed calls, float32, fastconv's default threads. For example

    for r in 1 2 3; do for f in 1 0; do
        env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=. python bench/net_fusion.py cs231n-3layer $f
    done; done

docs/training.md ("Fusion in Sequential") records what this measured.
"""
import sys

import numpy as np
from _timing import median_ms

from fastconv.bench import nets
from fastconv.layers import Sequential


def main(argv):
    case, fuse = nets.find(argv[0]), argv[1] == "1"
    calls = int(argv[2]) if len(argv) > 2 else 30
    build = Sequential.__init__

    def with_fuse(self, layers, **options):
        build(self, layers, **{**options, "fuse": fuse})

    Sequential.__init__ = with_fuse
    call = nets.fastconv_call(case, np.float32)
    print(f"{case.name} fuse={int(fuse)} {median_ms(call, calls, warmup=8):.2f} ms")


if __name__ == "__main__":
    main(sys.argv[1:])
