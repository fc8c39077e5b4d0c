"""Evaluate the summary ops of a due step: call each function once, move every value
to the host in one transfer per device, and build ``Summary`` protos.

Fetches are a summary op, ``None``, or lists, tuples and dicts of them; the result
has the same structure with a ``Summary`` in place of each op. A function shared by
several ops or hooks is called once per evaluation.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from tensorboard.compat.proto.summary_pb2 import Summary

from summary_hook._histogram import device_histogram, histogram_proto
from summary_hook._ops import Leaf, SummaryOp

__all__ = ["SummaryEvaluationError", "evaluate", "summary_ops_in"]

_HOST = torch.device("cpu")


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
    elif isinstance(fetches, Mapping):
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
    if isinstance(fetches, Mapping):
        return {key: _rebuild(item, results) for key, item in fetches.items()}
    return None


def evaluate(fetches: Any, output: Any = None) -> Any:
    """Evaluate every summary op in ``fetches``; one-argument functions get ``output``.

    Returns:
        ``fetches`` with each op replaced by its ``Summary``.

    Raises:
        SummaryEvaluationError: If a summary function raises.
        TypeError: If a value has the wrong type (complex, None, text), naming the tag.
        ValueError: If a scalar has more than one element, or a tensor is on the meta
            device, naming the tag.
    """
    ops = summary_ops_in(fetches)
    leaves: dict[int, Leaf] = {}
    for op in ops:
        for leaf in op.leaves:
            leaves.setdefault(id(leaf), leaf)
    with torch.no_grad():
        values = _evaluate_leaves(list(leaves.values()), output)
    results = {id(op): Summary(value=[values[id(leaf)] for leaf in op.leaves]) for op in ops}
    return _rebuild(fetches, results)


def _call(leaf: Leaf, output: Any) -> Any:
    try:
        return leaf.fn(output) if leaf.takes_output else leaf.fn()
    except Exception as error:
        raise SummaryEvaluationError(leaf.tag, error) from error


class _DeviceBatch:
    """The tensors bound for the host from one device, concatenated and copied once."""

    def __init__(self) -> None:
        self.scalars: list[torch.Tensor] = []
        self.histograms: list[torch.Tensor] = []

    def to_host(self) -> np.ndarray:
        parts = []
        if self.scalars:
            if all(t.dim() == 0 for t in self.scalars):
                stacked = torch.stack(self.scalars)
            else:
                stacked = torch.cat([t.reshape(1) for t in self.scalars])
            parts.append(stacked.to(torch.float64))
        parts.extend(self.histograms)
        flat = parts[0] if len(parts) == 1 else torch.cat(parts)
        # The one device-to-host copy of this step (a copy on the CPU too, so it is one
        # visible, countable transfer everywhere).
        return flat.to(_HOST, copy=True).numpy()


def _evaluate_leaves(leaves: list[Leaf], output: Any) -> dict[int, Summary.Value]:
    batches: dict[torch.device, _DeviceBatch] = {}
    # Where each leaf's value will be: a host float, or (device, kind, index, numel).
    places: list[tuple[Leaf, Any]] = []
    for leaf in leaves:
        value = _call(leaf, output)
        if leaf.kind == "scalar":
            number = _scalar_value(leaf.tag, value)
            if isinstance(number, float):
                places.append((leaf, number))
                continue
            batch = batches.setdefault(number.device, _DeviceBatch())
            places.append((leaf, (number.device, "scalar", len(batch.scalars), 1)))
            batch.scalars.append(number)
        else:
            tensor = _histogram_value(leaf.tag, value)
            if tensor.numel() == 0:
                places.append((leaf, (None, "histogram", 0, 0)))
                continue
            batch = batches.setdefault(tensor.device, _DeviceBatch())
            places.append(
                (leaf, (tensor.device, "histogram", len(batch.histograms), tensor.numel()))
            )
            batch.histograms.append(device_histogram(tensor))
    hosts = {device: batch.to_host() for device, batch in batches.items()}
    offsets = {
        device: np.cumsum([len(batch.scalars), *(h.numel() for h in batch.histograms)])
        for device, batch in batches.items()
    }
    values: dict[int, Summary.Value] = {}
    for leaf, place in places:
        if isinstance(place, float):
            values[id(leaf)] = Summary.Value(tag=leaf.tag, simple_value=place)
            continue
        device, kind, index, numel = place
        if kind == "scalar":
            values[id(leaf)] = Summary.Value(tag=leaf.tag, simple_value=hosts[device][index].item())
        elif numel == 0:
            values[id(leaf)] = Summary.Value(tag=leaf.tag, histo=histogram_proto(np.empty(0), 0))
        else:
            start, stop = offsets[device][index], offsets[device][index + 1]
            proto = histogram_proto(hosts[device][start:stop], numel)
            values[id(leaf)] = Summary.Value(tag=leaf.tag, histo=proto)
    return values


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
