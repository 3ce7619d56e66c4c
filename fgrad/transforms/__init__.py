"""The transforms, each a trace: the grad family and forward mode, the passes
over a tape, Jacobians, custom rules, Taylor mode, and vmap with its batches.
Imports the engine and the primitives.
"""
