"""The primitives: every operation, declared once as a ``Primitive`` with its
rules (impl, vjp, jvp, Taylor, numpy ``vectorized``) and its own doc, and
Python's operators on nodes bound to them. Imports only the engine.

Modules, by family: ``basic`` (``+ - * /``, unary ``-``, stop_gradient),
``elementary`` (exp, log, sin, cos, tanh, sqrt, sigmoid), ``powers``
(``x ** y``), ``piecewise`` (relu, abs, maximum, minimum), ``rounding``
(floor, ceil, trunc, round, ``//``, ``%``), ``reductions`` (sum, dot, mean).
``arith`` and ``ops`` gather them into the namespaces the compilers and
backends read (``ops.PRIMITIVES`` names them all); ``operators`` installs
Python's operators on ``Expr``.
"""
