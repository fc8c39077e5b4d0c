"""Summaries across processes: ``DTensor`` values, ``reduce=``, and a due step's collectives.

Every value that needs other ranks (a ``DTensor``, or a value with ``reduce=``) adds its
contribution to two float64 vectors of its process group: one summed, one maxed (a
minimum travels negated in the maxed one). A histogram adds its element count, sum, sum
of squares and bucket counts to the first and its maximum and negated minimum to the
second: O(buckets) bytes, never the tensor; the local values of a device are counted
together (``device_histograms``). Whatever the number of ops, a due step then
makes:

1. one ``all_reduce`` (MAX) over the world of a status, so that when a rank failed to
   compute its contributions the others raise instead of waiting for it;
2. per process group, one ``all_reduce`` (SUM) and one (MAX).

DTensors travel in the world's vectors, whatever their mesh: a rank outside the mesh
adds nothing, so rank zero writes the whole value even when it holds none of it.
Placements:

- ``Shard``: every shard counts, once.
- ``Replicate``: only the rank at coordinate 0 of that mesh dimension counts.
- ``Partial``: a scalar's partial values are summed (``avg``: then divided), maxed or
  minned with the rest. A histogram of a partial DTensor is first redistributed to
  ``Replicate``: one collective of the tensor's size (FSDP2's gradients are sharded,
  not partial, so they never pay it).

Thread contract: a :class:`Reductions` belongs to one evaluation, in one thread.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeGuard

import numpy as np
import torch
import torch.distributed as dist

from summary_hook._evaluation.errors import SummaryEvaluationError
from summary_hook._ops.taps import Counted, ZeroCount

if TYPE_CHECKING:
    from torch.distributed.tensor import DTensor
from summary_hook._evaluation.histogram import BUCKET_LIMITS, device_histograms
from summary_hook._evaluation.histogram_proto import EMPTY, histogram_value
from summary_hook._evaluation.values import MISSING

__all__ = [
    "Reductions",
    "RemoteFailure",
    "active",
    "collective_device",
    "global_rank",
    "is_dtensor",
    "report_failure",
]


def active() -> bool:
    """Whether there are ranks to agree with: an initialized process group of two or more."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def global_rank() -> int:
    """This process's global rank; 0 without an initialized process group."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_dtensor(value: object) -> TypeGuard[DTensor]:
    """Whether ``value`` is a ``DTensor``; free when torch's DTensor module is not loaded
    (then no DTensor can exist)."""
    module = sys.modules.get("torch.distributed.tensor")
    return module is not None and isinstance(value, module.DTensor)


def collective_device(group: Any = None) -> torch.device:
    """Where a collective of ``group`` takes its tensors: the host for gloo and MPI, else
    the current accelerator (NCCL and its kind take device tensors only)."""
    if dist.get_backend(group) in ("gloo", "mpi"):
        return torch.device("cpu")
    accelerator = torch.accelerator.current_accelerator()
    if accelerator is None:
        return torch.device("cpu")
    return torch.device(accelerator.type, torch.accelerator.current_device_index())


class RemoteFailure(RuntimeError):
    """Another rank failed this due step at its value ``leaf_index`` (of the plan's)."""

    def __init__(self, leaf_index: int, rank: int) -> None:
        super().__init__(
            "see that rank's error; this rank stopped before the due step's collectives, "
            "so as not to wait for it"
        )
        self.leaf_index = leaf_index
        self.rank = rank


def report_failure(leaf_index: int) -> None:
    """Tell the other ranks, through the due step's status, that this rank failed at
    ``leaf_index``; they raise instead of waiting for its contributions."""
    _exchange_status(leaf_index * dist.get_world_size() + dist.get_rank() + 1)


def _exchange_status(code: int) -> int:
    # A fill on the device: a tensor made from a host value would synchronise once more.
    status = torch.full((1,), code, dtype=torch.int64, device=collective_device())
    dist.all_reduce(status, op=dist.ReduceOp.MAX)
    return int(status.item())


#: Turns a value's summed and maxed slices, on the host, into what is written.
Finish = Callable[[np.ndarray, np.ndarray], Any]


class _Batch:
    """The contributions that reduce over one process group (None: the world)."""

    def __init__(self, group: Any) -> None:
        self.group = group
        self.sums: list[torch.Tensor] = []
        self.maxes: list[torch.Tensor] = []
        self.sum_length = 0
        self.max_length = 0
        # (where the value goes in ``numbers``, its tag, its slices, how to finish it)
        self.entries: list[tuple[int, str, slice, slice, Finish]] = []

    def add(
        self,
        index: int,
        tag: str,
        sums: torch.Tensor | None,
        maxes: torch.Tensor | None,
        finish: Finish,
    ) -> None:
        sum_slice = slice(self.sum_length, self.sum_length)
        max_slice = slice(self.max_length, self.max_length)
        if sums is not None:
            self.sums.append(sums)
            self.sum_length += sums.numel()
            sum_slice = slice(sum_slice.start, self.sum_length)
        if maxes is not None:
            self.maxes.append(maxes)
            self.max_length += maxes.numel()
            max_slice = slice(max_slice.start, self.max_length)
        self.entries.append((index, tag, sum_slice, max_slice, finish))

    def reduce(self) -> torch.Tensor:
        """Run the batch's collectives; the summed vector, then the maxed one."""
        device = collective_device(self.group)
        parts = []
        for values, op in ((self.sums, dist.ReduceOp.SUM), (self.maxes, dist.ReduceOp.MAX)):
            if not values:
                continue
            vector = _concatenated_on(device, values)
            try:
                dist.all_reduce(vector, op=op, group=self.group)
            except Exception as error:
                tags = ", ".join(repr(tag) for _, tag, _, _, _ in self.entries)
                what = f"the all_reduce that combines it across ranks (with {tags})"
                raise SummaryEvaluationError(self.entries[0][1], error, what) from error
            parts.append(vector)
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def finish_to(self, host: np.ndarray, numbers: list[Any]) -> None:
        """Store each finished value in ``numbers`` from the batch's reduced ``host`` copy."""
        summed, maxed = host[: self.sum_length], host[self.sum_length :]
        for index, _, sum_slice, max_slice, finish in self.entries:
            numbers[index] = finish(summed[sum_slice], maxed[max_slice])


def _concatenated_on(device: torch.device, values: list[torch.Tensor]) -> torch.Tensor:
    """``values`` as one float64 vector on ``device``: concatenated where they are when
    they share a device, so that host values cross to an accelerator in one copy."""
    flat = [value.reshape(-1).to(torch.float64) for value in values]
    if len({value.device for value in flat}) == 1:
        return torch.cat(flat).to(device)
    return torch.cat([value.to(device) for value in flat])


def _float(sign: float = 1.0, divisor: float = 1.0, maxed: bool = False) -> Finish:
    if maxed:
        return lambda summed, maxes: sign * float(maxes[0])
    return lambda summed, maxes: float(summed[0]) / divisor


def _finish_histogram(tag: str, optional: bool, summed: np.ndarray, maxed: np.ndarray) -> Any:
    num = int(summed[0])
    if num == 0:
        return MISSING if optional else EMPTY  # (an optional value no rank had: left out)
    stats = np.concatenate(((-maxed[1], maxed[0]), summed[1:]))
    return histogram_value(stats, num, tag)


def _zero_fraction(summed: np.ndarray, maxed: np.ndarray) -> Any:
    zeros, num = summed
    return float(zeros / num) if num else MISSING


class Reductions:
    """The contributions of one due step, batched by process group (see the module).

    Values are added with :meth:`add_scalar` and :meth:`add_histogram`;
    :meth:`count_histograms` counts the histograms' local values, a device's together
    (local work only); :meth:`run` makes the collectives; :meth:`results` gives what
    crosses to the host.
    """

    def __init__(self) -> None:
        self._batches: dict[Any, _Batch] = {}  # by process group
        self._reduced: list[tuple[_Batch, torch.Tensor]] = []
        # Histograms to count: (index, tag, this rank's values or None, the device, group,
        # whether it is left out when no rank has values)
        self._uncounted: list[tuple[int, str, torch.Tensor | None, torch.device, Any, bool]] = []

    def __bool__(self) -> bool:
        return bool(self._batches) or bool(self._uncounted)

    def _batch(self, group: Any) -> _Batch:
        batch = self._batches.get(group)
        if batch is None:
            batch = self._batches[group] = _Batch(group)
        return batch

    def add_scalar(
        self, index: int, tag: str, value: float | torch.Tensor, reduce: str | None, group: Any
    ) -> bool:
        """Add a scalar that needs other ranks: False when it needs none after all (no
        process group, or this rank outside ``group``), and is written as it is.

        Raises:
            ValueError: If a DTensor has ``reduce``.
        """
        if is_dtensor(value):
            if reduce is not None:
                raise ValueError(_DTENSOR_REDUCE.format(kind="scalar", tag=tag, reduce=reduce))
            self._add_dtensor_scalar(index, tag, value)
            return True
        if not _in_group(group):
            return False
        number = value if isinstance(value, torch.Tensor) else torch.tensor(float(value))
        contribution = number.detach().reshape(1).to(torch.float64)
        batch = self._batch(group)
        if reduce in ("sum", "mean"):
            size = dist.get_world_size(group) if reduce == "mean" else 1
            batch.add(index, tag, contribution, None, _float(divisor=size))
        else:
            sign = -1.0 if reduce == "min" else 1.0
            batch.add(index, tag, None, sign * contribution, _float(sign=sign, maxed=True))
        return True

    def _add_dtensor_scalar(self, index: int, tag: str, value: DTensor) -> None:
        mesh, placements = value.device_mesh, value.placements
        coordinate = mesh.get_coordinate()  # None: this rank is outside the mesh
        local = _local_values_of_scalar(tag, value)
        has_value = local.numel() == 1
        reductions = {d: _partial_reduction(p) for d, p in enumerate(placements) if p.is_partial()}
        partial = set(reductions.values())
        batch = self._batch(None)
        if partial <= {"sum", "avg"}:
            owner = has_value and _counts_once(coordinate, placements)
            divisor = 1
            for d, reduction in reductions.items():
                divisor *= mesh.size(d) if reduction == "avg" else 1
            contribution = (
                local if owner else torch.zeros(1, dtype=torch.float64, device=local.device)
            )
            batch.add(index, tag, contribution, None, _float(divisor=divisor))
        elif partial in ({"max"}, {"min"}):
            sign = -1.0 if partial == {"min"} else 1.0
            contribution = (
                sign * local
                if has_value
                else torch.full((1,), -math.inf, dtype=torch.float64, device=local.device)
            )
            batch.add(index, tag, None, contribution, _float(sign=sign, maxed=True))
        else:
            raise ValueError(
                f"scalar {tag!r} is a DTensor with partial placements {placements}, which "
                "mix reductions; call .full_tensor() on it in the summary function"
            )

    def add_histogram(
        self, index: int, tag: str, value: torch.Tensor | Counted, reduce: str | None, group: Any
    ) -> bool:
        """Add a histogram that needs other ranks; False as for :meth:`add_scalar`.

        Raises:
            ValueError: If a DTensor has ``reduce``.
        """
        if isinstance(value, Counted):  # counted where the values were: its row crosses
            if not _in_group(group):
                return False
            count = torch.full((1,), float(value.num), dtype=torch.float64, device=value.row.device)
            sums = torch.cat((count, value.row[2:]))
            maxes = torch.stack((value.row[1], -value.row[0]))
            self._batch(group).add(
                index, tag, sums, maxes, functools.partial(_finish_histogram, tag, False)
            )
            return True
        if is_dtensor(value):
            if reduce is not None:
                raise ValueError(_DTENSOR_REDUCE.format(kind="histogram", tag=tag, reduce=reduce))
            # A partial dimension is replicated once made whole (see _local_values).
            owner = _counts_once(value.device_mesh.get_coordinate(), value.placements, True)
            local, group = _local_values(tag, value), None
        elif _in_group(group):
            owner, local = True, value
        else:
            return False
        counted = local if owner and local.numel() else None
        self._uncounted.append((index, tag, counted, local.device, group, False))
        return True

    def add_zero_count(self, index: int, tag: str, value: ZeroCount, group: Any) -> bool:
        """Add a fraction of zeros that combines across ranks: its zeros and its values,
        each summed, so that the fraction written is of every rank's values together.
        False as for :meth:`add_scalar`."""
        if not _in_group(group):
            return False
        zeros = value.zeros.reshape(1).to(torch.float64)
        num = torch.full((1,), float(value.num), dtype=torch.float64, device=zeros.device)
        self._batch(group).add(index, tag, torch.cat((zeros, num)), None, _zero_fraction)
        return True

    def add_absent(self, index: int, tag: str, group: Any, fraction: bool = False) -> bool:
        """Add nothing in the place of an optional value that this rank does not have (a
        module that did not run here), an empty histogram or, with ``fraction``, a
        fraction of no values, so that every rank's vectors keep one layout. The value
        is left out where no rank had it. False as for :meth:`add_scalar`."""
        if not _in_group(group):
            return False
        device = collective_device(group)
        if fraction:
            nothing = torch.zeros(2, dtype=torch.float64, device=device)
            self._batch(group).add(index, tag, nothing, None, _zero_fraction)
        else:
            self._uncounted.append((index, tag, None, device, group, True))
        return True

    def count_histograms(self) -> None:
        """Count the histograms added, the local values of a device together
        (``device_histograms``), and add each one's contribution to its group's vectors,
        in the order they were added."""
        by_device: dict[torch.device, list[torch.Tensor]] = {}
        for _, _, local, _, _, _ in self._uncounted:
            if local is not None:
                by_device.setdefault(local.device, []).append(local)
        rows = {device: iter(device_histograms(tensors)) for device, tensors in by_device.items()}
        for index, tag, local, device, group, optional in self._uncounted:
            if local is not None:
                result = next(rows[device])  # [min, max, sum, sum_squares, counts...]
                # (A fill on the device: a tensor made from a host value would synchronise.)
                count = torch.full((1,), float(local.numel()), dtype=torch.float64, device=device)
                sums, maxes = torch.cat((count, result[2:])), torch.stack((result[1], -result[0]))
            else:
                sums = torch.zeros(3 + len(BUCKET_LIMITS), dtype=torch.float64, device=device)
                maxes = torch.full((2,), -math.inf, dtype=torch.float64, device=device)
            finish = functools.partial(_finish_histogram, tag, optional)
            self._batch(group).add(index, tag, sums, maxes, finish)
        self._uncounted = []

    def run(self) -> None:
        """The due step's collectives: the status, then each batch's vectors.

        Raises:
            RemoteFailure: If another rank failed this due step.
            RuntimeError: If a collective fails, naming the summaries it carried.
        """
        if self._uncounted:
            self.count_histograms()  # (to_host counts first, so that a failure is told)
        code = _exchange_status(0)
        if code:
            raise _remote_failure(code)
        self._reduced = [(batch, batch.reduce()) for batch in self._batches.values()]

    def results(self) -> list[tuple[torch.Tensor, Callable[[np.ndarray, list[Any]], None]]]:
        """After :meth:`run`: each reduced vector, and what stores its host copy."""
        return [(vector, batch.finish_to) for batch, vector in self._reduced]


_DTENSOR_REDUCE = (
    "{kind} {tag!r} is a DTensor, whose value is already global across its mesh; "
    "reduce={reduce!r} applies to per-rank values: leave it out"
)


def _remote_failure(code: int) -> RemoteFailure:
    leaf_index, rank = divmod(code - 1, dist.get_world_size())
    return RemoteFailure(leaf_index, rank)


def _local_values(tag: str, value: DTensor) -> torch.Tensor:
    """This rank's values of a DTensor: its shard, its partial values made whole first.

    Raises:
        SummaryEvaluationError: If the DTensor's own operations raise, naming the tag.
    """
    placements = value.placements
    try:
        if any(p.is_partial() for p in placements):
            from torch.distributed.tensor import Replicate

            replicated = [Replicate() if p.is_partial() else p for p in placements]
            value = value.redistribute(value.device_mesh, replicated)
        local: torch.Tensor = value.to_local()
        return local
    except Exception as error:
        raise SummaryEvaluationError(tag, error, "its DTensor") from error


def _local_values_of_scalar(tag: str, value: DTensor) -> torch.Tensor:
    try:
        local: torch.Tensor = value.to_local()
        return local.detach().reshape(-1).to(torch.float64)
    except Exception as error:
        raise SummaryEvaluationError(tag, error, "its DTensor") from error


def _partial_reduction(placement: Any) -> str:
    """How a ``Partial`` placement's values combine: ``"sum"``, ``"avg"``, ``"max"``..."""
    return str(placement.reduce_op)


def _in_group(group: Any) -> bool:
    """Whether a process group exists and this rank is in ``group`` (None: the world)."""
    if not (dist.is_available() and dist.is_initialized()):
        return False
    return group is None or dist.get_rank(group) >= 0


def _counts_once(coordinate: Any, placements: Any, partial_replicates: bool = False) -> bool:
    """Whether this rank's part of a DTensor counts: it is in the mesh (``coordinate`` is
    not None), and at coordinate 0 of every dimension that replicates the tensor (with
    ``partial_replicates``, the partial ones too)."""
    if coordinate is None:
        return False
    return all(
        coordinate[d] == 0
        for d, p in enumerate(placements)
        if p.is_replicate() or (partial_replicates and p.is_partial())
    )
