"""Values of a due step to the host: one transfer per device.

Every scalar of a device is stacked on it, and its histograms are counted on it
together (``count_histograms``: a few passes for many small tensors); the scalars and
the counts and statistics then cross to the host in one copy, and are turned into
floats and histograms there. Values that need other ranks (a ``DTensor``, or
``reduce=``) are combined first (``_evaluation.distributed``), and their reduced
vectors cross in the same copy. Each value is checked first (``_evaluation.values``),
each error naming its tag.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np
import torch

from summary_hook._evaluation import distributed as _distributed
from summary_hook._evaluation.audio import Sound, audio_samples
from summary_hook._evaluation.distributed import Reductions, is_dtensor
from summary_hook._evaluation.histogram import STATS, Counts, count_histograms
from summary_hook._evaluation.histogram_proto import EMPTY, NonFinite, histogram_values
from summary_hook._evaluation.images import Pixels, image_pixels
from summary_hook._evaluation.plans import Plan
from summary_hook._evaluation.values import (
    MISSING,
    NON_FINITE,
    histogram_input,
    norm_inputs,
    scalar_value,
    text_tensor,
)
from summary_hook._ops.taps import Counted, ZeroCount

__all__ = ["LocalFailure", "to_host"]

_HOST = torch.device("cpu")
_HOST_FLOATS = (torch.float32, torch.float64)
#: The tensor types that are never a ``DTensor``: a parameter's and a gradient's, checked
#: by their exact type first (sorting 600 tensors: 1.09 -> 0.6 to 0.9 ms).
_PLAIN_TENSORS = frozenset((torch.Tensor, torch.nn.Parameter))
_STRIDED = torch.strided


class _DeviceBatch:
    """What one device sends to the host, in one copy: stacked scalars, histogram
    statistics and counts, reduced vectors, audio samples, then images."""

    def __init__(self) -> None:
        self.scalars: torch.Tensor | None = None  # 1-D, any real dtype
        self.scalar_numbers: list[int] = []  # where each stacked scalar goes in ``numbers``
        # The histograms to count together (:meth:`count`), each's number, tag and tensor
        # in three lists; and the rows counted where their values were (``sh.watch``'s
        # activations). ``Counts.members`` index the tensors, then the rows.
        self.histogram_numbers: list[int] = []
        self.histogram_tags: list[str] = []
        self.histogram_tensors: list[torch.Tensor] = []
        self.rows: list[tuple[int, str, Counted]] = []
        self.counted: list[Counts] = []
        # Each reduced vector, with what stores its values from its host copy.
        self.reduced: list[tuple[torch.Tensor, Any]] = []
        self.sounds: list[tuple[int, torch.Tensor]] = []  # (number, [N, frames, C] int16)
        self.images: list[tuple[int, torch.Tensor]] = []  # (number, [N, H, W, C] uint8)
        self.host: list[np.ndarray] = []  # every part, on the host

    def add_tensor(self, number: int, tag: str, tensor: torch.Tensor) -> None:
        """Count the histogram of ``tensor`` into ``numbers[number]``."""
        self.histogram_numbers.append(number)
        self.histogram_tags.append(tag)
        self.histogram_tensors.append(tensor)

    def count(self) -> None:
        """Count the device's histograms, together."""
        tensors = self.histogram_tensors
        self.counted = count_histograms(tensors) if tensors else []
        if self.rows:
            stacked = torch.stack([counted.row for _, _, counted in self.rows])
            at = range(len(tensors), len(tensors) + len(self.rows))
            nums = [counted.num for _, _, counted in self.rows]
            self.counted.append(Counts(list(at), stacked[:, :STATS], stacked[:, STATS:], nums))

    def copy_to_host(self) -> None:
        """Copy everything to the host at once."""
        parts = []
        if self.scalars is not None:  # (floats on the host: ints and bools widen)
            scalars = self.scalars
            parts.append(scalars if scalars.dtype in _HOST_FLOATS else scalars.double())
        counts_at = len(parts)
        for counts in self.counted:
            parts += (counts.stats, counts.counts)
        made_here = range(counts_at, len(parts))  # the parts nothing else holds
        parts.extend(vector for vector, _ in self.reduced)
        parts.extend(samples for _, samples in self.sounds)
        parts.extend(pixels for _, pixels in self.images)
        self.host = _copy_parts_to_host(parts, made_here)

    def store_in(self, numbers: list[Any]) -> bool:
        """Store each value, made from its host copy, in ``numbers``: floats,
        histograms, reduced values, clips' samples and images' pixels. True when some
        value may be a :class:`NonFinite` (a histogram of NaN or infinities)."""
        host = iter(self.host)
        if self.scalars is not None:
            values = next(host).tolist()
            if self.scalar_numbers[0] == 0 and self.scalar_numbers[-1] == len(values) - 1:
                numbers[: len(values)] = values  # the common case: every scalar came from here
            else:
                for index, number in zip(self.scalar_numbers, values, strict=True):
                    numbers[index] = number
        non_finite = bool(self.reduced)  # (rare: scanned whatever they hold)
        at, all_tags = self.histogram_numbers, self.histogram_tags
        if self.rows:
            at = at + [number for number, _, _ in self.rows]
            all_tags = all_tags + [tag for _, tag, _ in self.rows]
        for counts in self.counted:
            stats, bucket_counts = next(host), next(host)
            non_finite = non_finite or not np.isfinite(stats[:, :2]).all()
            tags = [all_tags[member] for member in counts.members]
            values = histogram_values(stats, bucket_counts, counts.nums, tags)
            for member, value in zip(counts.members, values, strict=True):
                numbers[at[member]] = value
        for _, finish_to in self.reduced:
            finish_to(next(host), numbers)
        for index, _ in self.sounds:
            numbers[index] = Sound(list(next(host)))
        for index, _ in self.images:
            numbers[index] = Pixels(list(next(host)))
        self.host = []
        return non_finite


def _copy_parts_to_host(parts: list[torch.Tensor], made_here: range) -> list[np.ndarray]:
    """Tensors of one device on the host, in one copy: their bytes, concatenated on the
    device, cross at once, and each is read back as its own dtype and shape (a view of
    the host bytes; numpy reads a part at an offset its size does not divide, as after
    an odd number of int32 count rows, as well). Parts are float32, float64, int32,
    int64, int16 (audio) or uint8 (images).

    On the CPU the parts at ``made_here`` (the histograms' counts, made by this
    evaluation and held by nothing else) are read where they are: they are in host
    memory already, and copying their megabytes is most of a due step of many small
    tensors. The others, which may be the user's own tensors, are copied as anywhere.
    """
    on_host = parts[0].device.type == "cpu"
    crossing = [p for i, p in enumerate(parts) if not (on_host and i in made_here)]
    if len(crossing) == 1:
        copied = [crossing[0].to(_HOST, copy=True).numpy()]
    elif crossing:
        copied = _unpack(
            torch.cat([p.reshape(-1).view(torch.uint8) for p in crossing])
            .to(_HOST, copy=True)
            .numpy(),
            crossing,
        )
    else:
        copied = []
    if not on_host:
        return copied
    arrays = iter(copied)
    return [p.numpy() if i in made_here else next(arrays) for i, p in enumerate(parts)]


def _unpack(data: np.ndarray, parts: list[torch.Tensor]) -> list[np.ndarray]:
    """Each of ``parts`` read back from the host bytes ``data`` of their concatenation."""
    arrays = []
    offset = 0
    for part in parts:
        size = part.numel() * part.element_size()
        dtype = torch.empty(0, dtype=part.dtype).numpy().dtype
        arrays.append(data[offset : offset + size].view(dtype).reshape(tuple(part.shape)))
        offset += size
    return arrays


class LocalFailure(Exception):
    """A value of ``leaf_index`` could not be prepared on this rank; ``__cause__`` says why.

    Raised only when other ranks wait in the due step's collectives, so that the
    evaluation can tell them before raising the cause."""

    def __init__(self, leaf_index: int) -> None:
        super().__init__(leaf_index)
        self.leaf_index = leaf_index


def to_host(plan: Plan, raw: list[Any]) -> list[Any]:
    """The values of a due step on the host, in the plan's ``numbers`` order, in five
    stages: each value is checked and sorted, by device or to the ranks it needs; each
    device's histograms are counted together; values that need other ranks are combined
    in the due step's collectives; each device's values cross to the host in one copy;
    and there they become floats, histograms (``HistogramValue``), texts, samples and
    pixels."""
    scalars = raw if plan.scalars_only else [raw[slot] for slot in plan.slots["scalar"]]
    stacked = _stack_one_device(scalars) if scalars and not plan.reduced else None
    if stacked is not None and plan.scalars_only:
        return _copy_to_host(stacked).tolist()  # the common case: scalars of one device
    step = _Step(plan, raw)
    step.sort(scalars, stacked)
    step.count()
    step.combine_across_ranks()
    for batch in step.batches.values():
        batch.copy_to_host()
    return step.host_values()


class _Step:
    """The values of one due step on their way to the host (see :func:`to_host`).

    Each tensor's histogram is counted once, by identity, on its device or across ranks
    (a DTensor, or ``reduce=``). A norm needs its tensor's sum of squares, which the
    histogram holds, made whole across ranks for a DTensor: so a norm's tensor is counted
    as a histogram too, the same histogram when a histogram op has that very tensor, else
    one in a slot past the plan's values that is dropped at the end.
    """

    def __init__(self, plan: Plan, raw: list[Any]) -> None:
        self.plan = plan
        self.raw = raw
        self.numbers: list[Any] = [None] * len(raw)
        self.batches: dict[torch.device, _DeviceBatch] = {}
        self.reductions = Reductions()
        # Other ranks wait for this one in the due step's collectives: tell them of a failure.
        self.tell_others = plan.reduced and _distributed.active()
        # Where each tensor was counted, by identity: the tensors are alive (the
        # functions' results hold them) until the evaluation ends.
        self.counted: dict[int, int] = {}
        self.norms: list[tuple[int, list[int]]] = []  # (number, its histograms' numbers)
        self.dtensors = "torch.distributed.tensor" in sys.modules  # (else none can exist)

    def _batch(self, device: torch.device) -> _DeviceBatch:
        batch = self.batches.get(device)
        if batch is None:
            batch = self.batches[device] = _DeviceBatch()
        return batch

    def sort(self, scalars: list[Any], stacked: torch.Tensor | None) -> None:
        """Check each value, and put it in its device's batch, or in the reductions when
        it needs other ranks; texts are finished here, as they need no transfer."""
        plan, raw, numbers = self.plan, self.raw, self.numbers
        if stacked is not None:
            batch = self._batch(stacked.device)
            batch.scalars, batch.scalar_numbers = stacked, list(range(len(scalars)))
        elif scalars:
            grouped = _group_scalars(plan, scalars, numbers, self.reductions, self.tell_others)
            for device, part, indices in grouped:
                batch = self._batch(device)
                batch.scalars, batch.scalar_numbers = part, indices
        slot = -1  # the value being prepared, for the others' error
        try:
            for index, slot in plan.numbered("histogram"):
                leaf, value = plan.leaves[slot], raw[slot]
                if value is None and leaf.optional:
                    if not (
                        leaf.reduce and self.reductions.add_absent(index, leaf.tag, leaf.group)
                    ):
                        numbers[index] = MISSING
                elif leaf.reduce is not None or not self.add_local_tensor(index, leaf.tag, value):
                    tensor = histogram_input(leaf.tag, value)
                    self.add_histogram(index, leaf.tag, tensor, leaf.reduce, leaf.group)
            for index, slot in plan.numbered("norm"):
                leaf = plan.leaves[slot]
                values = norm_inputs(leaf.tag, raw[slot], leaf.optional)
                if values is None:
                    numbers[index] = MISSING
                    continue
                self.norms.append((index, [self.histogram_of(leaf.tag, v) for v in values]))
            for index, slot in plan.numbered("text"):
                numbers[index] = text_tensor(plan.leaves[slot].tag, raw[slot])  # no transfer
            for index, slot in plan.numbered("image"):
                leaf = plan.leaves[slot]
                pixels = image_pixels(leaf.tag, raw[slot], leaf.max_outputs, leaf.dataformats)
                self._batch(pixels.device).images.append((index, pixels))
            for index, slot in plan.numbered("audio"):
                leaf = plan.leaves[slot]
                samples = audio_samples(leaf.tag, raw[slot], leaf.max_outputs)
                self._batch(samples.device).sounds.append((index, samples))
            self.reductions.count_histograms()  # the values that need other ranks, together
        except Exception as error:
            if self.tell_others:
                raise LocalFailure(slot) from error
            raise

    def add_histogram(
        self, index: int, tag: str, tensor: torch.Tensor | Counted, reduce: str | None, group: Any
    ) -> None:
        """Count ``tensor`` into ``numbers[index]`` (or use its row, already counted)."""
        if reduce is None:
            self.counted.setdefault(id(tensor), index)
        if (is_dtensor(tensor) or reduce) and self.reductions.add_histogram(
            index, tag, tensor, reduce, group
        ):
            return
        if isinstance(tensor, Counted):
            self._batch(tensor.row.device).rows.append((index, tag, tensor))
        elif tensor.numel() == 0:
            self.numbers[index] = EMPTY
        else:
            self._batch(tensor.device).add_tensor(index, tag, tensor)

    def add_local_tensor(self, index: int, tag: str, value: Any) -> bool:
        """:meth:`add_histogram` in half the time for the common case, a non-empty plain
        tensor checked as ``histogram_input`` checks it; False, having done nothing, for
        any other value (a DTensor, the errors, the empty histogram)."""
        if type(value) not in _PLAIN_TENSORS and (
            not isinstance(value, torch.Tensor) or (self.dtensors and is_dtensor(value))
        ):
            return False
        if value.layout is not _STRIDED or value.is_complex() or value.is_meta:
            return False
        if not value.numel():
            return False
        self.counted.setdefault(id(value), index)
        device = value.device
        (self.batches.get(device) or self._batch(device)).add_tensor(index, tag, value)
        return True

    def histogram_of(self, tag: str, value: Any) -> int:
        """Where the histogram of a norm's ``value`` is, checking and counting it first
        if no op has (a tensor an op counted was checked then)."""
        index = self.counted.get(id(value))
        if index is None:
            index = len(self.numbers)
            self.numbers.append(None)
            self.add_histogram(index, tag, histogram_input(tag, value), None, None)
        return index

    def count(self) -> None:
        """Count each device's histograms, together."""
        for batch in self.batches.values():
            batch.count()

    def combine_across_ranks(self) -> None:
        """The due step's collectives, whose results join their device's batch. Every
        rank of a plan with reduce= takes part in the status, in a group or not, so that
        the ranks of a group never wait for one outside it."""
        if self.reductions or self.tell_others:
            self.reductions.run()
            for vector, finish_to in self.reductions.results():
                self._batch(vector.device).reduced.append((vector, finish_to))

    def host_values(self) -> list[Any]:
        """The values made from their host copies, and the norms from the histograms."""
        numbers = self.numbers
        non_finite = [batch.store_in(numbers) for batch in self.batches.values()]
        for index, counted in self.norms:  # a norm: its histograms' sum of squares, made whole
            numbers[index] = math.sqrt(sum(numbers[i].sum_squares for i in counted))
        del numbers[len(self.raw) :]  # the histograms counted for norms alone
        if any(non_finite):
            self.leave_out_non_finite()
        return numbers

    def leave_out_non_finite(self) -> None:
        """Raise TensorFlow's error for the first histogram of NaN or infinities, unless
        its leaf leaves such histograms out (``sh.watch``'s); their norms, NaN or inf, are
        written."""
        plan, numbers = self.plan, self.numbers
        for index, slot in plan.numbered("histogram"):
            number = numbers[index]
            if type(number) is NonFinite:
                if not plan.leaves[slot].skips_non_finite:
                    raise ValueError(number.error)
                numbers[index] = NON_FINITE


def _group_scalars(
    plan: Plan,
    scalars: list[Any],
    numbers: list[Any],
    reductions: Reductions,
    tell_others: bool,
) -> list[tuple[torch.device, torch.Tensor, list[int]]]:
    """The scalars that do not stack as one: check each, then concatenate per device.

    Python and numpy numbers go straight into ``numbers``, and values that need other
    ranks into ``reductions``. Dtypes are left as they are; conversion to float happens
    on the host, after the one copy. An error is wrapped in :class:`LocalFailure` when
    ``tell_others``.
    """
    groups: dict[torch.device, tuple[list[torch.Tensor], list[int]]] = {}
    for index, (slot, value) in enumerate(zip(plan.slots["scalar"], scalars, strict=True)):
        leaf = plan.leaves[slot]
        try:
            if value is None and leaf.optional:  # (sh.watch's zero fractions)
                if not (
                    leaf.reduce
                    and reductions.add_absent(index, leaf.tag, leaf.group, fraction=True)
                ):
                    numbers[index] = MISSING
                continue
            if isinstance(value, ZeroCount):  # a fraction of zeros (sh.watch's activations)
                if leaf.reduce and reductions.add_zero_count(index, leaf.tag, value, leaf.group):
                    continue
                value = value.zeros / value.num
            checked = scalar_value(leaf.tag, value)  # raises the precise error
            if (is_dtensor(checked) or leaf.reduce) and reductions.add_scalar(
                index, leaf.tag, checked, leaf.reduce, leaf.group
            ):
                continue
        except Exception as error:
            if tell_others:
                raise LocalFailure(slot) from error
            raise
        if isinstance(checked, float):
            numbers[index] = checked
        else:
            group = groups.setdefault(checked.device, ([], []))
            group[0].append(checked.reshape(1))
            group[1].append(index)
    return [(device, torch.cat(parts), indices) for device, (parts, indices) in groups.items()]


def _stack_one_device(values: list[Any]) -> torch.Tensor | None:
    """``values`` as one 1-D tensor when all are one-element real tensors on one device
    and of one shape (the common case), else None; no value is read. DTensors are never
    stacked, which could redistribute them, a collective of its own: the first value
    tells, since stacking DTensors with plain tensors raises."""
    if is_dtensor(values[0]):
        return None
    try:
        stacked = torch.stack(values)
    except (TypeError, RuntimeError):
        return None
    if stacked.layout != torch.strided or stacked.numel() != len(values):
        return None
    if stacked.dtype.is_complex or stacked.is_meta:
        return None
    return stacked if stacked.dim() == 1 else stacked.reshape(-1)


def _copy_to_host(flat: torch.Tensor) -> torch.Tensor:
    """The one device-to-host copy of a due step, as a float tensor.

    It is a copy on the CPU too, so it is one visible, countable transfer everywhere.
    Dtype conversions happen after it, on the host.
    """
    host = flat.to(_HOST, copy=True)
    return host if host.dtype in _HOST_FLOATS else host.to(torch.float64)
