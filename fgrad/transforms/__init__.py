"""The transforms, each a trace: the grad family and forward mode, the passes
over a tape, Jacobians, custom rules, Taylor mode, and vmap with its batches.
Imports the engine and the primitives.

The grad family is importable from here too (``from fgrad.transforms import
grad``), where the first version's module of that name had it.
"""

from fgrad.transforms.autodiff import grad, jvp, linearize, trace, value_and_grad, vjp

__all__ = ["grad", "value_and_grad", "vjp", "jvp", "linearize", "trace"]
