"""Compiled Cython kernels. Inputs are trusted: validation happens in the Python fronts."""
