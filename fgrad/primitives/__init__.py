"""The primitives: every operation, declared once as a ``Primitive`` with its
rules (impl, vjp, jvp, Taylor, numpy ``vectorized``), and Python's operators
on nodes bound to them. Imports only the engine.
"""
