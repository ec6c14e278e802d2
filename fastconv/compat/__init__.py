"""Drop-in replacements for other APIs' names, built on fastconv's ops.

``fastconv.compat.cs231n``: the CS231n assignment-2 ``cs231n`` package (layers, fast_layers, layer_utils,
optim, gradient_check, solver, classifiers, data_utils) on fastconv's kernels.
"""
