"""Evaluate the summary ops of a due step: call each function once, move every value
to the host in one transfer per device, and build ``Summary`` protos.

Fetches are a summary op, ``None``, or lists, tuples and dicts of them; the result
has the same structure with a ``Summary`` in place of each op. A function shared by
several ops or hooks is called once per evaluation.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tensorboard.compat.proto.summary_pb2 import Summary

from summary_hook._histogram import device_histogram, histogram_proto
from summary_hook._ops import Leaf, SummaryOp

__all__ = ["SummaryEvaluationError", "evaluate", "summary_ops_in"]

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
    elif isinstance(fetches, (list, tuple)):
        for item in fetches:
            _collect(item, ops)
    elif isinstance(fetches, (dict, Mapping)):  # dict first: it is fast
        for item in fetches.values():
            _collect(item, ops)
    elif fetches is not None:
        raise TypeError(
            "fetches must be summary ops, or lists, tuples or dicts of them; "
            f"got {fetches!r} of type {type(fetches).__name__}"
        )


def _rebuild(fetches: Any, results: dict[int, Summary]) -> Any:
    if isinstance(fetches, SummaryOp):
        return results[id(fetches)]
    if isinstance(fetches, list):
        return [_rebuild(item, results) for item in fetches]
    if isinstance(fetches, tuple):
        return tuple(_rebuild(item, results) for item in fetches)
    if isinstance(fetches, (dict, Mapping)):
        return {key: _rebuild(item, results) for key, item in fetches.items()}
    return None


@dataclass(frozen=True)
class _Plan:
    """How to evaluate one tuple of ops, worked out once and cached.

    Leaves are deduplicated in order of first appearance. Their host values are kept in
    one list, ``numbers``: the scalars (in ``scalar_slots`` order), then the histograms
    (in ``histogram_slots`` order); ``op_numbers`` says where each op's values are.
    """

    leaves: tuple[Leaf, ...]
    calls: tuple[tuple[Callable[..., Any], bool], ...]
    scalar_slots: tuple[int, ...]
    histogram_slots: tuple[int, ...]
    op_numbers: tuple[tuple[int, ...], ...]
    op_only_scalars: tuple[bool, ...]
    templates: tuple[Summary, ...]


@functools.lru_cache(maxsize=256)
def _plan(ops: tuple[SummaryOp, ...]) -> _Plan:
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
    return _Plan(
        leaves=tuple(leaves),
        calls=tuple((leaf.fn, leaf.takes_output) for leaf in leaves),
        scalar_slots=tuple(scalar_slots),
        histogram_slots=tuple(histogram_slots),
        op_numbers=tuple(tuple(number_of[slot_of[id(leaf)]] for leaf in op.leaves) for op in ops),
        op_only_scalars=tuple(all(leaf.kind == "scalar" for leaf in op.leaves) for op in ops),
        templates=tuple(Summary(value=[Summary.Value(tag=tag) for tag in op.tags]) for op in ops),
    )


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
    ops = tuple(summary_ops_in(fetches))
    if not ops:
        return _rebuild(fetches, {})
    plan = _plan(ops)
    raw: list[Any] = []
    append = raw.append
    with torch.no_grad():
        try:
            for fn, takes_output in plan.calls:
                append(fn(output) if takes_output else fn())
        except Exception as error:
            raise SummaryEvaluationError(plan.leaves[len(raw)].tag, error) from error
        numbers = _to_host(plan, raw)
    results: dict[int, Summary] = {}
    for op, indices, only_scalars, template in zip(
        ops, plan.op_numbers, plan.op_only_scalars, plan.templates, strict=True
    ):
        summary = Summary()
        summary.CopyFrom(template)
        if only_scalars:
            for value, index in zip(summary.value, indices, strict=True):
                value.simple_value = numbers[index]
        else:
            for value, index in zip(summary.value, indices, strict=True):
                number = numbers[index]
                if type(number) is float:
                    value.simple_value = number
                else:
                    value.histo.CopyFrom(number)
        results[id(op)] = summary
    return _rebuild(fetches, results)


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
        # The one device-to-host copy of this step (a copy on the CPU too, so it is one
        # visible, countable transfer everywhere). Dtype conversions happen after it.
        host = flat.to(_HOST, copy=True)
        if host.dtype not in _HOST_FLOATS:
            host = host.to(torch.float64)
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
    scalar_count = len(plan.scalar_slots)
    numbers: list[Any] = [None] * (scalar_count + len(plan.histogram_slots))
    batches: dict[torch.device, _DeviceBatch] = {}
    if scalar_count:
        for device, stacked, indices in _stack_scalars(plan, raw, numbers):
            batch = batches.setdefault(device, _DeviceBatch())
            batch.scalars, batch.scalar_numbers = stacked, indices
    for index, slot in enumerate(plan.histogram_slots, start=scalar_count):
        tensor = _histogram_value(plan.leaves[slot].tag, raw[slot])
        if tensor.numel() == 0:
            numbers[index] = histogram_proto(np.empty(0), 0)
        else:
            batch = batches.setdefault(tensor.device, _DeviceBatch())
            batch.histograms.append((index, tensor.numel(), device_histogram(tensor)))
    for batch in batches.values():
        batch.unpack_to(numbers)
    return numbers


def _stack_scalars(
    plan: _Plan, raw: list[Any], numbers: list[Any]
) -> list[tuple[torch.device, torch.Tensor, list[int]]]:
    """Stack the scalar tensors per device into 1-D tensors, without reading any value.

    Python and numpy numbers go straight into ``numbers``. Dtypes are left as they are;
    conversion to float happens on the host, after the one copy.
    """
    values = [raw[slot] for slot in plan.scalar_slots]
    try:
        stacked = torch.stack(values)  # the common case: tensors of one device and shape
    except (TypeError, RuntimeError):
        stacked = None
    if (
        stacked is not None
        and stacked.numel() == len(values)
        and not stacked.dtype.is_complex
        and not stacked.is_meta
    ):
        if stacked.dim() != 1:
            stacked = stacked.reshape(-1)
        return [(stacked.device, stacked, list(range(len(values))))]
    groups: dict[torch.device, tuple[list[torch.Tensor], list[int]]] = {}
    for index, (slot, value) in enumerate(zip(plan.scalar_slots, values, strict=True)):
        checked = _scalar_value(plan.leaves[slot].tag, value)  # raises the precise error
        if isinstance(checked, float):
            numbers[index] = checked
        else:
            group = groups.setdefault(checked.device, ([], []))
            group[0].append(checked.reshape(1))
            group[1].append(index)
    return [(device, torch.cat(parts), indices) for device, (parts, indices) in groups.items()]


def _number(tag: str, value: Any) -> float:
    number = _scalar_value(tag, value)
    assert isinstance(number, float)
    return number


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
    raise TypeError(
        f"scalar {tag!r} must be a real number or a one-element tensor, got {value!r} "
        f"of type {type(value).__name__}"
    )


def _histogram_value(tag: str, value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        _check_real_tensor(tag, "histogram", value)
        return value
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
