"""Evaluation plans: what evaluating a tuple of ops works out once, and where it is kept.

A plan deduplicates the ops' leaves, says where each value goes, and holds a template
``Summary`` per op. It holds the ops' functions, and through them the user's model, so it
lives on the op (one op) or in the session that evaluates (several ops): never in a
global table, which would keep the model alive.
"""

from __future__ import annotations

import operator
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

from tensorboard.compat.proto.summary_pb2 import Summary

from summary_hook._ops.summary_ops import KINDS, Kind, Leaf, Part, SummaryOp

__all__ = ["Plan", "PlanCache", "forget_plans_in_child", "plan_for"]


@dataclass(frozen=True)
class Plan:
    """How to evaluate one tuple of ops, worked out once and kept (see :func:`plan_for`).

    Leaves are deduplicated in order of first appearance. Their host values are kept in
    one list, ``numbers``, kind by kind in :data:`KINDS` order (the scalars first), each
    kind's in the order of its leaves' slots, ``slots[kind]``; ``op_numbers`` says where
    each op's values are.

    Each op has a template ``Summary`` with its tags. An op of scalars only is filled
    in place through ``template_values``, references to the template's values kept
    alive so that filling creates no Python objects, and then copied out; ``lock``
    keeps two threads from filling one template at once.
    """

    leaves: tuple[Leaf, ...]
    functions: tuple[Callable[..., Any], ...]  # one a leaf, or one for a run of parts
    takes_output: tuple[bool, ...]  # for each function
    widths: tuple[int, ...] | None  # how many values each function gives; None: one each
    output_free: bool  # no function takes the step's output
    reduced: bool  # some leaf combines the ranks' values (``reduce=``)
    slots: dict[Kind, tuple[int, ...]]  # by kind: which leaves are of that kind
    scalars_only: bool  # every leaf is a scalar: the common case
    op_numbers: tuple[tuple[int, ...], ...]
    op_pick: tuple[Callable[[list[Any]], Sequence[Any]] | None, ...]
    templates: tuple[Summary, ...]
    template_values: tuple[tuple[Any, ...], ...]
    lock: threading.Lock
    generation: int  # the ``_generation`` it was made in

    def numbered(self, kind: Kind) -> Iterator[tuple[int, int]]:
        """``(number, slot)`` of each leaf of ``kind``: where its value goes in ``numbers``,
        and which leaf it is."""
        start = 0
        for earlier in KINDS:
            if earlier == kind:
                break
            start += len(self.slots[earlier])
        return enumerate(self.slots[kind], start=start)


def _picker(indices: tuple[int, ...]) -> Callable[[list[Any]], Sequence[Any]]:
    """A fast way to take ``numbers[i] for i in indices``."""
    if indices == tuple(range(indices[0], indices[0] + len(indices))):
        return operator.itemgetter(slice(indices[0], indices[0] + len(indices)))
    return operator.itemgetter(*indices)  # two or more indices: returns a tuple


#: Counts the forks this process came from. A plan made before a fork may carry a lock
#: that another thread of the parent held at that moment, so the child makes it afresh.
_generation = 0


#: How many plans for tuples of several ops a :class:`PlanCache` keeps.
_PLAN_CACHE_SIZE = 16


class PlanCache:
    """Plans for the tuples of several ops that one session evaluates.

    A session (``MonitoredSession``, the Lightning callback) owns one, so the plans,
    and the functions they hold, go when the session goes.
    """

    def __init__(self) -> None:
        self._plans: dict[tuple[SummaryOp, ...], Plan] = {}

    def plan(self, ops: tuple[SummaryOp, ...]) -> Plan:
        """The plan of ``ops``, made on first use."""
        plan = self._plans.get(ops)
        return self.replace(ops) if plan is None else plan

    def replace(self, ops: tuple[SummaryOp, ...]) -> Plan:
        """A new plan of ``ops``, kept in place of any earlier one."""
        if len(self._plans) >= _PLAN_CACHE_SIZE:
            self._plans.clear()  # the ops of a session rarely change: start afresh
        plan = self._plans[ops] = _make_plan(ops)
        return plan


def plan_for(ops: tuple[SummaryOp, ...], plans: PlanCache | None = None) -> Plan:
    """The plan of ``ops``: kept on a single op, in ``plans`` for several, else made now.

    A plan holds the ops' functions, and through them the user's model; the model may
    in turn reach the op (a Lightning module, its trainer, a callback, its summary op).
    So plans live on the op or in the session they serve, never in a global table: a
    table, even a weakly keyed one, would keep that whole cycle alive.
    """
    if len(ops) == 1:
        cache = ops[0]._cache
        plan = cache.get("plan")
        if plan is None or plan.generation != _generation:
            plan = cache["plan"] = _make_plan(ops)
        return plan
    if plans is None:
        return _make_plan(ops)
    plan = plans.plan(ops)
    if plan.generation != _generation:
        plan = plans.replace(ops)
    return plan


def _make_plan(ops: tuple[SummaryOp, ...]) -> Plan:
    slot_of: dict[int, int] = {}
    leaves: list[Leaf] = []
    for op in ops:
        for leaf in op.leaves:
            if id(leaf) not in slot_of:
                slot_of[id(leaf)] = len(leaves)
                leaves.append(leaf)
    slots = {kind: tuple(i for i, leaf in enumerate(leaves) if leaf.kind == kind) for kind in KINDS}
    order = [slot for kind in KINDS for slot in slots[kind]]
    number_of = {slot: n for n, slot in enumerate(order)}
    op_numbers = tuple(tuple(number_of[slot_of[id(leaf)]] for leaf in op.leaves) for op in ops)
    templates = tuple(Summary(value=[Summary.Value(tag=tag) for tag in op.tags]) for op in ops)
    functions, takes_output, widths = _calls(leaves)
    return Plan(
        leaves=tuple(leaves),
        functions=functions,
        takes_output=takes_output,
        widths=None if len(functions) == len(leaves) else widths,
        output_free=not any(leaf.takes_output for leaf in leaves),
        reduced=any(leaf.reduce is not None for leaf in leaves),
        slots=slots,
        scalars_only=len(slots["scalar"]) == len(leaves),
        op_numbers=op_numbers,
        op_pick=tuple(
            _picker(numbers) if all(leaf.kind == "scalar" for leaf in op.leaves) else None
            for op, numbers in zip(ops, op_numbers, strict=True)
        ),
        templates=templates,
        template_values=tuple(tuple(template.value) for template in templates),
        lock=threading.Lock(),
        generation=_generation,
    )


def _calls(
    leaves: list[Leaf],
) -> tuple[tuple[Callable[..., Any], ...], tuple[bool, ...], tuple[int, ...]]:
    """The functions that give the leaves' values in order, whether each takes the
    output, and how many values each gives: a run of every :class:`Part` of one source,
    in order, is one call of the source; any other leaf, its own function."""
    functions: list[Callable[..., Any]] = []
    takes_output: list[bool] = []
    widths: list[int] = []
    start = 0
    while start < len(leaves):
        leaf = leaves[start]
        if _whole_run(leaf.fn, leaves[start:]):
            functions.append(leaf.fn.source)
            takes_output.append(False)
            widths.append(leaf.fn.count)
        else:
            functions.append(leaf.fn)
            takes_output.append(leaf.takes_output)
            widths.append(1)
        start += widths[-1]
    return tuple(functions), tuple(takes_output), tuple(widths)


def _whole_run(fn: Any, rest: list[Leaf]) -> TypeGuard[Part]:
    """Whether ``fn`` is the first :class:`Part` of a source whose every part follows, in
    order, from the start of ``rest``."""
    if not isinstance(fn, Part) or fn.index != 0 or len(rest) < fn.count:
        return False
    return all(
        isinstance(leaf.fn, Part) and leaf.fn.source is fn.source and leaf.fn.index == i
        for i, leaf in enumerate(rest[: fn.count])
    )


def forget_plans_in_child() -> None:
    """After a fork: plans made before it are made afresh (see ``_fork``)."""
    global _generation
    _generation += 1
