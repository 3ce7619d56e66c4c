"""A chunked map and the map of its reverse rule, run as one.

``value_and_grad`` of a chunked vmap (``fgrad.transforms.chunks``) makes two
maps over the same inputs: the forward one, for the value, and the reverse
rule's, which computes each chunk's forward values again and returns them
beside the cotangents. Where the cotangents fed to the second do not depend
on the first's outputs (a mean loss: its cotangent is ``1 / n`` whatever the
values), the compiled program runs the second alone, moved ahead of the
first with what it needs, and reads the forward outputs off it
(``chunk_primal``): one forward pass per chunk, not two.
"""

from __future__ import annotations

from typing import Any

from fgrad.transforms.chunks import Body, map_p, primal_of

__all__ = ["fuse_chunked_maps"]

Instruction = tuple[Any, ...]


def _vars(ins: Instruction) -> list[str]:
    refs = ins[3] if ins[0] == "op" else ins[2:4]
    return [r[1] for r in refs if r[0] == "var"]


def _partner(program: list[Instruction], i: int) -> int | None:
    """The index of the reverse rule's map of the map at ``i``, if the two
    can run as one: same inputs, and nothing it reads depends on ``i``."""
    _, name, _, args = program[i]
    body: Body = args[0][1]
    s, m = body.n_shared, len(body.data)
    depends = {name}
    for j in range(i + 1, len(program)):
        ins = program[j]
        used = _vars(ins)
        if ins[0] == "op" and ins[2] is map_p:
            other = ins[3][0][1]
            if type(other) is Body and other.primal is body and not depends.intersection(used):
                t = body.n_totals or 0
                o = ins[3]
                if (
                    o[1:3] == args[1:3]
                    and o[3 : 3 + s] == args[3 : 3 + s]
                    and o[3 + s + t : 3 + s + t + m] == args[3 + s :]
                ):
                    return j
        if ins[0] == "op" and depends.intersection(used):
            depends.add(ins[1])
    return None


def fuse_chunked_maps(program: list[Instruction]) -> list[Instruction]:
    """``program`` with each fusable pair of maps run as one (see the module doc)."""
    if sum(1 for ins in program if ins[0] == "op" and ins[2] is map_p) < 2:
        return program
    i = 0
    while i < len(program):
        ins = program[i]
        j = (
            _partner(program, i)
            if ins[0] == "op" and ins[2] is map_p and type(ins[3][0][1]) is Body
            else None
        )
        if j is None:
            i += 1
            continue
        # What the reverse map needs from between the two moves ahead with it.
        needed = set(_vars(program[j]))
        moved = [False] * len(program)
        moved[j] = True
        for k in range(j - 1, i, -1):
            if program[k][0] == "op" and program[k][1] in needed:
                moved[k] = True
                needed.update(_vars(program[k]))
        body = ins[3][0][1]
        vjp = program[j][3][0][1]
        n = ins[3][1][1]
        k_cts = sum(1 for d in vjp.data[: len(body.data)] if not d)
        assert body.n_out is not None
        read = (
            "op",
            ins[1],
            primal_of,
            (
                ("var", program[j][1]),
                ("const", n),
                ("const", k_cts),
                ("const", body.n_out),
                ("const", body.n_shared),
            ),
        )
        between = range(i + 1, j + 1)
        program = (
            program[:i]
            + [program[k] for k in between if moved[k]]
            + [read]
            + [program[k] for k in between if not moved[k]]
            + program[j + 1 :]
        )
        i += 1
    return program
