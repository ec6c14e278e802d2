"""Drop-in replacements for other APIs' names, built on fastconv's ops.

``fastconv.compat.cs231n``: the conv and pooling functions a CS231n assignment-2 notebook imports.
"""
