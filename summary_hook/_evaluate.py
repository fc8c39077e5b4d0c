"""Evaluate the summary ops of a due step: call each function once, move every value
to the host in one transfer per device, and build ``Summary`` protos.

Fetches are a summary op, ``None``, or lists, tuples and dicts of them; the result
has the same structure with a ``Summary`` in place of each op. A function shared by
several ops or hooks is called once per evaluation.
"""

from __future__ import annotations

import numbers
import operator
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tensorboard.compat.proto.summary_pb2 import Summary

from summary_hook._histogram import device_histogram, histogram_proto
from summary_hook._ops import Leaf, SummaryOp

__all__ = [
    "PlanCache",
    "SummaryEvaluationError",
    "evaluate",
    "evaluate_with",
    "plan_for",
    "summary_ops_in",
]

_HOST = torch.device("cpu")
_HOST_FLOATS = (torch.float32, torch.float64)


class SummaryEvaluationError(RuntimeError):
    """A summary function raised; ``tag`` names the summary and ``__cause__`` the error."""

    def __init__(self, tag: str, error: BaseException) -> None:
        super().__init__(f"summary {tag!r}: its function raised {type(error).__name__}: {error}")
        self.tag = tag


def summary_ops_in(fetches: Any) -> list[SummaryOp]:
    """The summary ops in a fetch structure, in order.

    Raises:
        TypeError: If the structure holds anything else, naming it.
    """
    ops: list[SummaryOp] = []
    _collect(fetches, ops)
    return ops


def _collect(fetches: Any, ops: list[SummaryOp]) -> None:
    if isinstance(fetches, SummaryOp):
        ops.append(fetches)
    elif isinstance(fetches, Mapping):
        for item in fetches.values():
            _collect(item, ops)
    elif isinstance(fetches, (list, tuple)):
        for item in fetches:
            _collect(item, ops)
    elif fetches is not None:
        raise TypeError(
            "fetches must be summary ops, or lists, tuples or dicts of them; "
            f"got {fetches!r} of type {type(fetches).__name__}"
        )


def _rebuild(fetches: Any, results: dict[int, Summary]) -> Any:
    if isinstance(fetches, SummaryOp):
        return results[id(fetches)]
    if isinstance(fetches, Mapping):
        return {key: _rebuild(item, results) for key, item in fetches.items()}
    if isinstance(fetches, list):
        return [_rebuild(item, results) for item in fetches]
    if isinstance(fetches, tuple):
        return tuple(_rebuild(item, results) for item in fetches)
    return None


@dataclass(frozen=True)
class _Plan:
    """How to evaluate one tuple of ops, worked out once and kept (see :func:`plan_for`).

    Leaves are deduplicated in order of first appearance. Their host values are kept in
    one list, ``numbers``: the scalars (in ``scalar_slots`` order), then the histograms
    (in ``histogram_slots`` order); ``op_numbers`` says where each op's values are.

    Each op has a template ``Summary`` with its tags. An op of scalars only is filled
    in place through ``template_values``, references to the template's values kept
    alive so that filling creates no Python objects, and then copied out; ``lock``
    keeps two threads from filling one template at once.
    """

    leaves: tuple[Leaf, ...]
    functions: tuple[Callable[..., Any], ...]
    takes_output: tuple[bool, ...]
    scalar_slots: tuple[int, ...]
    histogram_slots: tuple[int, ...]
    op_numbers: tuple[tuple[int, ...], ...]
    op_pick: tuple[Callable[[list[Any]], Sequence[Any]] | None, ...]
    templates: tuple[Summary, ...]
    template_values: tuple[tuple[Any, ...], ...]
    lock: threading.Lock
    generation: int  # the ``_generation`` it was made in


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
        self._plans: dict[tuple[SummaryOp, ...], _Plan] = {}

    def plan(self, ops: tuple[SummaryOp, ...]) -> _Plan:
        """The plan of ``ops``, made on first use."""
        plan = self._plans.get(ops)
        return self.replace(ops) if plan is None else plan

    def replace(self, ops: tuple[SummaryOp, ...]) -> _Plan:
        """A new plan of ``ops``, kept in place of any earlier one."""
        if len(self._plans) >= _PLAN_CACHE_SIZE:
            self._plans.clear()  # the ops of a session rarely change: start afresh
        plan = self._plans[ops] = _make_plan(ops)
        return plan


def plan_for(ops: tuple[SummaryOp, ...], plans: PlanCache | None = None) -> _Plan:
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


def _make_plan(ops: tuple[SummaryOp, ...]) -> _Plan:
    slot_of: dict[int, int] = {}
    leaves: list[Leaf] = []
    for op in ops:
        for leaf in op.leaves:
            if id(leaf) not in slot_of:
                slot_of[id(leaf)] = len(leaves)
                leaves.append(leaf)
    scalar_slots = [i for i, leaf in enumerate(leaves) if leaf.kind == "scalar"]
    histogram_slots = [i for i, leaf in enumerate(leaves) if leaf.kind == "histogram"]
    number_of = {slot: n for n, slot in enumerate(scalar_slots + histogram_slots)}
    op_numbers = tuple(tuple(number_of[slot_of[id(leaf)]] for leaf in op.leaves) for op in ops)
    templates = tuple(Summary(value=[Summary.Value(tag=tag) for tag in op.tags]) for op in ops)
    return _Plan(
        leaves=tuple(leaves),
        functions=tuple(leaf.fn for leaf in leaves),
        takes_output=tuple(leaf.takes_output for leaf in leaves),
        scalar_slots=tuple(scalar_slots),
        histogram_slots=tuple(histogram_slots),
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


def forget_plans_in_child() -> None:
    """After a fork: plans made before it are made afresh (see ``_fork``)."""
    global _generation
    _generation += 1


def evaluate(fetches: Any, output: Any = None) -> Any:
    """Evaluate every summary op in ``fetches``; one-argument functions get ``output``.

    Returns:
        ``fetches`` with each op replaced by its ``Summary``.

    Raises:
        SummaryEvaluationError: If a summary function raises.
        TypeError: If a value has the wrong type (complex, None, text), naming the tag.
        ValueError: If a scalar has more than one element, or a tensor is on the meta
            device, naming the tag.

    Example:
        >>> import summary_hook as sh
        >>> op = sh.scalar("loss", lambda out: out, collections=[])
        >>> evaluate({"summary": [op]}, 0.5)["summary"][0].value[0].simple_value
        0.5
    """
    return evaluate_with(fetches, output, None)


def evaluate_with(fetches: Any, output: Any, plans: PlanCache | None) -> Any:
    """:func:`evaluate`, keeping the plans of several ops in a session's ``plans``."""
    ops = tuple(summary_ops_in(fetches))
    if not ops:
        return _rebuild(fetches, {})
    plan = plan_for(ops, plans)
    with torch.no_grad():
        numbers = _to_host(plan, _call_functions(plan, output))
    results: dict[int, Summary] = {}
    for op, indices, pick, template, values in zip(
        ops, plan.op_numbers, plan.op_pick, plan.templates, plan.template_values, strict=True
    ):
        summary = Summary()
        if pick is not None:  # scalars only: fill the template in place, then copy it
            with plan.lock:
                for value, number in zip(values, pick(numbers), strict=True):
                    value.simple_value = number
                summary.CopyFrom(template)
        else:
            summary.CopyFrom(template)
            for value, index in zip(summary.value, indices, strict=True):
                number = numbers[index]
                if type(number) is float:
                    value.simple_value = number
                else:
                    value.histo.CopyFrom(number)
        results[id(op)] = summary
    return _rebuild(fetches, results)


def _call_functions(plan: _Plan, output: Any) -> list[Any]:
    """Call each function once, in order; those that take an argument get ``output``."""
    raw: list[Any] = []
    for fn, takes_output, leaf in zip(plan.functions, plan.takes_output, plan.leaves, strict=True):
        try:
            raw.append(fn(output) if takes_output else fn())
        except Exception as error:
            raise SummaryEvaluationError(leaf.tag, error) from error
    return raw


class _DeviceBatch:
    """What one device sends to the host: stacked scalars, then histogram results."""

    def __init__(self) -> None:
        self.scalars: torch.Tensor | None = None  # 1-D, any real dtype
        self.scalar_numbers: list[int] = []  # where each stacked scalar goes in ``numbers``
        self.histograms: list[tuple[int, int, torch.Tensor]] = []  # (number, numel, result)

    def unpack_to(self, numbers: list[Any]) -> None:
        """Copy everything to the host at once and store each value in ``numbers``."""
        parts = [] if self.scalars is None else [self.scalars]
        parts.extend(result for _, _, result in self.histograms)
        flat = parts[0] if len(parts) == 1 else torch.cat(parts)
        host = _copy_to_host(flat)
        count = len(self.scalar_numbers)
        if count:
            values = (host if not self.histograms else host[:count]).tolist()
            if self.scalar_numbers[0] == 0 and self.scalar_numbers[-1] == count - 1:
                numbers[:count] = values  # the common case: every scalar came from here
            else:
                for index, number in zip(self.scalar_numbers, values, strict=True):
                    numbers[index] = number
        if self.histograms:
            array = host.numpy()
            offset = count
            for index, numel, result in self.histograms:
                size = result.numel()
                numbers[index] = histogram_proto(array[offset : offset + size], numel)
                offset += size


def _to_host(plan: _Plan, raw: list[Any]) -> list[Any]:
    """The values of a due step on the host, in the plan's ``numbers`` order."""
    scalars = raw if not plan.histogram_slots else [raw[slot] for slot in plan.scalar_slots]
    stacked = _stack_one_device(scalars) if scalars else None
    if stacked is not None and not plan.histogram_slots:
        return _copy_to_host(stacked).tolist()  # the common case: scalars of one device
    numbers: list[Any] = [None] * len(raw)
    batches: dict[torch.device, _DeviceBatch] = {}
    if stacked is not None:
        batch = batches[stacked.device] = _DeviceBatch()
        batch.scalars, batch.scalar_numbers = stacked, list(range(len(scalars)))
    elif scalars:
        for device, part, indices in _group_scalars(plan, scalars, numbers):
            batch = batches.setdefault(device, _DeviceBatch())
            batch.scalars, batch.scalar_numbers = part, indices
    for index, slot in enumerate(plan.histogram_slots, start=len(scalars)):
        tensor = _histogram_value(plan.leaves[slot].tag, raw[slot])
        if tensor.numel() == 0:
            numbers[index] = histogram_proto(np.empty(0), 0)
        else:
            batch = batches.setdefault(tensor.device, _DeviceBatch())
            batch.histograms.append((index, tensor.numel(), device_histogram(tensor)))
    for batch in batches.values():
        batch.unpack_to(numbers)
    return numbers


def _group_scalars(
    plan: _Plan, scalars: list[Any], numbers: list[Any]
) -> list[tuple[torch.device, torch.Tensor, list[int]]]:
    """The scalars that do not stack as one: check each, then concatenate per device.

    Python and numpy numbers go straight into ``numbers``. Dtypes are left as they are;
    conversion to float happens on the host, after the one copy.
    """
    groups: dict[torch.device, tuple[list[torch.Tensor], list[int]]] = {}
    for index, (slot, value) in enumerate(zip(plan.scalar_slots, scalars, strict=True)):
        checked = _scalar_value(plan.leaves[slot].tag, value)  # raises the precise error
        if isinstance(checked, float):
            numbers[index] = checked
        else:
            group = groups.setdefault(checked.device, ([], []))
            group[0].append(checked.reshape(1))
            group[1].append(index)
    return [(device, torch.cat(parts), indices) for device, (parts, indices) in groups.items()]


def _stack_one_device(values: list[Any]) -> torch.Tensor | None:
    """``values`` as one 1-D tensor when all are one-element real tensors on one device
    and of one shape (the common case), else None; no value is read."""
    try:
        stacked = torch.stack(values)
    except (TypeError, RuntimeError):
        return None
    if stacked.numel() != len(values) or stacked.dtype.is_complex or stacked.is_meta:
        return None
    return stacked if stacked.dim() == 1 else stacked.reshape(-1)


def _copy_to_host(flat: torch.Tensor) -> torch.Tensor:
    """The one device-to-host copy of a due step, as a float tensor.

    It is a copy on the CPU too, so it is one visible, countable transfer everywhere.
    Dtype conversions happen after it, on the host.
    """
    host = flat.to(_HOST, copy=True)
    return host if host.dtype in _HOST_FLOATS else host.to(torch.float64)


_NONE_HINT = (
    "; a parameter's .grad is None until a backward pass reaches it (a frozen layer, "
    "a parameter outside the loss, or a step before the first backward)"
)


def _scalar_value(tag: str, value: Any) -> float | torch.Tensor:
    """A Python float, or a one-element real tensor left on its device."""
    if isinstance(value, torch.Tensor):
        _check_real_tensor(tag, "scalar", value)
        if value.numel() != 1:
            raise ValueError(
                f"scalar {tag!r} must have exactly one element, got a tensor of shape "
                f"{tuple(value.shape)}"
            )
        return value.detach()
    if isinstance(value, (np.ndarray, np.generic)):
        if value.dtype.kind not in "biuf":
            raise TypeError(f"scalar {tag!r} must be real, got a numpy {value.dtype} value")
        if value.size != 1:
            raise ValueError(
                f"scalar {tag!r} must have exactly one element, got an array of shape {value.shape}"
            )
        return float(value.reshape(()))
    if isinstance(value, numbers.Real):
        return float(value)
    if value is None:
        raise TypeError(f"scalar {tag!r}: its function returned None{_NONE_HINT}")
    raise TypeError(
        f"scalar {tag!r} must be a real number or a one-element tensor, got {value!r} "
        f"of type {type(value).__name__}"
    )


def _histogram_value(tag: str, value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        _check_real_tensor(tag, "histogram", value)
        return value
    if value is None:
        raise TypeError(f"histogram {tag!r}: its function returned None{_NONE_HINT}")
    try:
        array = np.asarray(value)
    except Exception as error:
        raise TypeError(f"histogram {tag!r}: cannot read {value!r} as an array") from error
    if array.dtype.kind not in "biuf":
        raise TypeError(
            f"histogram {tag!r} must hold real numbers, got {value!r} (dtype {array.dtype})"
        )
    return torch.from_numpy(np.ascontiguousarray(array))


def _check_real_tensor(tag: str, kind: str, value: torch.Tensor) -> None:
    if value.is_complex():
        raise TypeError(f"{kind} {tag!r} must be real, got a {value.dtype} tensor")
    if value.device.type == "meta":
        raise ValueError(f"{kind} {tag!r} is a tensor on the meta device, which holds no values")
