"""numpy code for a jit trace that holds batches (vmap's numpy backend).

A batched register holds one value per example in a 1-D array, so each
statement is one numpy operation over the whole batch. Per-example scalar
code is full of dots over the same inputs (the neurons of a layer), which
one at a time would cost a numpy call per weight; they are grouped here:

- dots whose batched half is the same registers (one layer's neurons, or
  the cotangents flowing back into one layer's inputs) become one matrix
  product: ``Z = W @ X`` and each dot a row of ``Z``;
- ``vdot(a, b)`` (a shared weight's gradient, summed over the batch)
  become one product ``A @ B.T`` read back as floats;
- ``batch_sum(g)`` (a shared bias's gradient) become one row-sum;
- elementwise statements over the rows of one matrix (the relus of a layer,
  the masks of their reverse pass) become one statement over the matrix;
- likewise, isomorphic scalar statements (each weight's penalty, gradient
  and update) become one statement over a vector of them, read back as
  floats (``.tolist()``) only where a single one is needed.

Elementwise statements wait until something else needs them, and are then
emitted level by level (each level's statements only use earlier ones), so
that rows of one matrix meet in one statement. A group is emitted where its
first result is needed, which is after every member's inputs exist.

The sums run in numpy's order, not left to right: results agree with the
scalar program to rounding (tested to 1e-12).

The pieces, one module each:

- ``schedule``: when each statement is written (now, in a group, or
  deferred to its level);
- ``matrices``: the dots of a layer, and the sums over the batch, as matrix
  products;
- ``rows``: elementwise statements over the rows of a matrix or the entries
  of a vector, as one statement;
- ``formulas``: the numpy text of one statement;
- ``registers``: where each value lives (a register, a matrix's row, a
  vector's entry) and the text that reads it;
- ``writer``: the source lines, temporaries, constants and functions' names;
- ``fusion``: a chunked vmap's forward map and its reverse rule's map, run
  as one where they can be (``fgrad.transforms.chunks``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from fgrad.compilers.numpycode.exactness import InexactGuard, inexact_guard
from fgrad.compilers.numpycode.registers import INPUTS, Ref, return_tuple
from fgrad.compilers.numpycode.schedule import Scheduler
from fgrad.engine.core import Primitive
from fgrad.engine.trace import protected
from fgrad.transforms.batching import numpy_module

__all__ = ["compile_batched"]

_reads_inputs = re.compile(rf"\b{INPUTS}\b")


def compile_batched(
    program: list[tuple[Any, ...]],
    returns: list[Ref],
    n_inputs: int,
    batched: set[str],
    header: str,
    mask: Primitive,
    guard_error: type[Exception],
    fname: str,
    float_inputs: bool,
) -> tuple[Callable[[Sequence[Any]], tuple[Any, ...]], str]:
    """The numpy function of ``program`` (``run(leaves)``) and its source;
    with ``float_inputs`` (no batch among the inputs), the inputs are read as
    one vector where groups need them and singly (``leaves[k]``) elsewhere."""
    np = numpy_module()
    schedule = Scheduler(np, batched, guard_error, mask, n_inputs, float_inputs)
    code = schedule.code
    if n_inputs and not float_inputs:
        code.put(f"{', '.join(f'x{k}' for k in range(n_inputs))}, = leaves")
    for ins in program:
        schedule.emit(ins)
    schedule.flush_all()
    code.put(f"return {return_tuple(schedule.regs, returns)}")
    if inexact_guard(program, schedule.regs.inexact) is not None:
        raise InexactGuard  # (jit traces the program again with vmap's loop)
    if float_inputs and any(_reads_inputs.search(line) for line in code.lines):
        code.lines.insert(0, f"    {INPUTS} = FROMITER(leaves, FLOAT, {n_inputs})")
    code.lines.insert(0, header)
    source = "\n".join(code.lines) + "\n"
    code.namespace["K"] = tuple(code.consts)
    exec(compile(source, f"<fgrad.jit {fname}>", "exec"), code.namespace)  # noqa: S102
    return _ignoring_fp_errors(code.namespace["compiled"], np), source


def _ignoring_fp_errors(
    compiled: Callable[[Sequence[Any]], tuple[Any, ...]], np: Any
) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    """``compiled`` run with numpy's floating-point errors ignored (IEEE
    results, as the scalar ops give), numpy's settings restored after it
    even if an interrupt lands at any bytecode (``fgrad.engine.trace.protected``)."""

    def run(leaves: Sequence[Any]) -> tuple[Any, ...]:
        saved = np.geterr()
        return protected(
            lambda: np.seterr(all="ignore"), lambda: compiled(leaves), lambda: np.seterr(**saved)
        )

    return run
