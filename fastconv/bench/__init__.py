"""Benchmarks: the shape suite (`suite`), what is timed (`operations`), how (`runner`), and
`python -m fastconv.bench`. Importing this package never imports torch."""
from .suite import CONV_CASES, POOL_CASES

__all__ = ["CONV_CASES", "POOL_CASES"]
