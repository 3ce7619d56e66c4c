"""The compilers: jit (trace once, guard, cache), straight-line Python and
table programs, compiled pytree walks, and the numpy code of vmap's backend.
Imports the engine, the primitives and the transforms.
"""
