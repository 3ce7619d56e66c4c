"""The engine: nodes, primitives, ``bind``, traces and levels, guards, pytrees.

Everything else is built on this layer, and it imports nothing of fgrad's
other layers (``tests/test_imports.py`` checks). Batches (vmap's numpy
backend) reach it only as a protocol: a value may be a numpy array, a
primitive may carry a ``vectorized`` implementation, an operation that needs
one example at a time raises ``errors.Unbatchable``, and a trace's ``settle``
hook hands the reverse pass's cotangents to the backend.
"""
