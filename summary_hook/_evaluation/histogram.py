"""TensorFlow's v1 histogram counted with torch on the tensor's device: its statistics
and bucket counts, which :mod:`summary_hook._evaluation.histogram_proto` turns into a
``HistogramProto`` on the host.

Bucket limits are TensorFlow's defaults: ``-DBL_MAX``, ``-1e20 < -1e-12·1.1^k``, ``0``,
``1e-12·1.1^k < 1e20``, ``DBL_MAX``. A value ``x`` lands in bucket ``b``, the first whose
limit is greater than ``x`` (``std::upper_bound`` in ``histogram.cc``); ``+inf`` lands in
the last bucket and NaN in none.

Counting avoids a binary search per element. A float32 value's top 16 bits (sign,
exponent and 7 mantissa bits) name a *cell* of relative width 2^-7, narrower than the
10% spacing of the limits, so at most one limit falls inside a cell. One comparison
against that limit (rounded up to float32, which keeps the comparison exact) splits
the cell in two, a fixed table maps the 2^17 half-cells to buckets, and one pass
counts them (``bincount`` for a large tensor on the CPU; ``index_add_`` elsewhere, as
``bincount`` there reads its input on the host). On the CPU, values are counted in
chunks through scratch tensors kept per thread. Float8 values are converted to float32
first, exactly, as torch's reductions do not take them. The dtypes that this float32
path does not take (float64, int32, int64, and the unsigned uint16, uint32 and uint64)
take the exact ``torch.bucketize`` path instead.

Many small tensors (a model's biases and norms) are counted together: the rows of one
grid, each value's bucket offset by its row's slots, so that the kernel calls of a due
step grow with its values, not with its tensors (:func:`count_histograms`).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import operator
import sys
import threading

import numpy as np
import torch

__all__ = [
    "BUCKET_LIMITS",
    "STATS",
    "Counts",
    "cell_tables_on",
    "combine_rows",
    "count_histograms",
    "device_histogram",
    "device_histograms",
    "traced_histogram",
]

DBL_MAX = sys.float_info.max


def _default_limits() -> list[float]:
    positive = []
    value = 1e-12
    while value < 1e20:
        positive.append(value)
        value *= 1.1
    return [-DBL_MAX, *(-v for v in reversed(positive)), 0.0, *positive, DBL_MAX]


#: TensorFlow's default bucket limits, ascending.
BUCKET_LIMITS: tuple[float, ...] = tuple(_default_limits())
_N = len(BUCKET_LIMITS)
_NAN_SLOT = _N  # an extra count slot that collects NaN and is dropped
_LIMITS = np.asarray(BUCKET_LIMITS, dtype=np.float64)
#: Device results per histogram: min, max, sum, sum of squares, then _N bucket counts.
STATS = 4
_EXACT_IN_FLOAT32 = {
    torch.float32,
    torch.float16,
    torch.bfloat16,
    torch.bool,
    torch.int8,
    torch.uint8,
    torch.int16,
}


#: The float8 dtypes, exact in float32, which they are counted as: torch's reductions do
#: not take them.
_FLOAT8 = frozenset(
    getattr(torch, name)
    for name in (
        "float8_e4m3fn",
        "float8_e4m3fnuz",
        "float8_e5m2",
        "float8_e5m2fnuz",
        "float8_e8m0fnu",
    )
    if hasattr(torch, name)
)


def _countable(values: torch.Tensor) -> torch.Tensor:
    """``values`` flat, in a dtype torch's reductions take: bools as uint8, float8 as
    float32, both exactly."""
    flat = values.detach().reshape(-1)
    if flat.dtype == torch.bool:
        return flat.to(torch.uint8)
    if flat.dtype in _FLOAT8:
        return flat.to(torch.float32)
    return flat


@functools.cache
def _cell_tables() -> tuple[np.ndarray, np.ndarray]:
    """Per-cell float32 thresholds and the bucket of each half-cell."""
    keys = np.arange(1 << 16, dtype=np.uint32) << np.uint32(16)
    negative = keys >> np.uint32(31) == 1
    special = (keys >> np.uint32(23)) & np.uint32(0xFF) == 0xFF  # inf and NaN
    with np.errstate(invalid="ignore"):
        low = keys.view(np.float32).astype(np.float64)
        high = (keys | np.uint32(0xFFFF)).view(np.float32).astype(np.float64)
        v_min = np.where(negative, high, low)
        v_max = np.where(negative, low, high)
        below = np.searchsorted(_LIMITS, np.where(special, 0.0, v_min), side="right")
        above = np.searchsorted(_LIMITS, np.where(special, 0.0, v_max), side="right")
    inside = above - below
    if inside.max() > 1:  # pragma: no cover - a property of the limits, checked by tests
        raise AssertionError("a float32 cell holds more than one bucket limit")
    threshold = np.full(1 << 16, -np.inf, dtype=np.float32)
    split = np.flatnonzero(inside == 1)
    limit = _LIMITS[below[split]]
    rounded = limit.astype(np.float32)
    low_by_rounding = rounded.astype(np.float64) < limit
    rounded[low_by_rounding] = np.nextafter(rounded[low_by_rounding], np.float32(np.inf))
    threshold[split] = rounded
    bucket = np.empty(1 << 17, dtype=np.int64)
    bucket[0::2] = below
    bucket[1::2] = below + inside
    # Cells of inf and NaN: only +-inf passes the threshold; NaN fails it and is dropped.
    threshold[special] = np.where(negative[special], -np.inf, np.inf)
    bucket[0::2][special] = _NAN_SLOT
    bucket[1::2][special] = np.where(negative[special], 0, _N - 1)
    return threshold, np.minimum(bucket, _N)


@functools.lru_cache(maxsize=16)
def _device_tables(
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The cell thresholds, the half-cells' buckets, the limits, and each batch row's
    offset into one count vector (``_N + 1`` slots a row), on ``device``."""
    threshold, bucket = _cell_tables()
    offsets = torch.arange(_BATCH_TENSORS, dtype=torch.int32) * (_N + 1)
    return (
        torch.from_numpy(threshold).to(device),
        torch.from_numpy(bucket.astype(np.int32)).to(device),
        torch.tensor(BUCKET_LIMITS, dtype=torch.float64, device=device),
        offsets.to(device),
    )


class _CpuScratch(threading.local):
    """Scratch tensors for counting :data:`_CPU_CHUNK` float32 values, one set per thread.

    Whole-tensor temporaries would be about 21 bytes a value of fresh memory on every
    call; page-faulting that in cost more than the counting, and varied from process
    to process with the C allocator's state. These are faulted in once and reused.
    """

    def __init__(self) -> None:
        self.values = torch.empty(_CPU_CHUNK, dtype=torch.float32)
        self.wide = torch.empty(_CPU_CHUNK, dtype=torch.float64)
        # The count rows of the first batches of a call of count_histograms, made as used.
        self.counts: list[torch.Tensor] = []


#: How many values the CPU counts at a time.
_CPU_CHUNK = 1 << 18
_cpu_scratch = _CpuScratch()


#: How many batches' count rows a thread keeps (1.6 MB each) for the next call.
_POOLED_BATCHES = 4


class _Scratch:
    """Where :func:`_count_grid` writes its intermediates for ``n`` values: slices of the
    thread's :class:`_CpuScratch` on the CPU (``n`` at most :data:`_CPU_CHUNK`), fresh
    tensors elsewhere, where the device's caching allocator reuses memory by itself.

    On the CPU the count rows of a call's ``batch``-th batch, for the first
    :data:`_POOLED_BATCHES`, are the thread's too: fresh, they were page-faulted in at
    every due step (0.7 ms a batch of 256 tensors). So they stay valid until the thread
    counts again, which the evaluation that reads them does only after reading them.
    """

    def __init__(self, n: int, device: torch.device, batch: int | None = None) -> None:
        self.device = device
        self.batch = batch
        if device.type == "cpu":
            self.values, self.wide = _cpu_scratch.values[:n], _cpu_scratch.wide[:n]
        else:
            self.values = torch.empty(n, dtype=torch.float32, device=device)
            self.wide = torch.empty(n, dtype=torch.float64, device=device)
        # The bucket keys and indices live in the int32 words of ``wide``, which nothing
        # reads once the sums are taken: 12 bytes of scratch a value, not 24.
        words = self.wide.view(torch.int32)
        self.key, self.index = words[:n], words[n:]

    def count_rows(self, rows: int) -> torch.Tensor:
        """Zeroed int32 count rows for ``rows`` tensors, flat."""
        size = rows * (_N + 1)
        batch = self.batch
        if self.device.type != "cpu" or batch is None or batch >= _POOLED_BATCHES:
            return torch.zeros(size, dtype=torch.int32, device=self.device)
        pool = _cpu_scratch.counts
        while len(pool) <= batch:
            pool.append(torch.empty(_BATCH_TENSORS * (_N + 1), dtype=torch.int32))
        return pool[batch][:size].zero_()


def _count_grid(
    grid: torch.Tensor, scratch: _Scratch, sizes: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per row of a ``[rows, length]`` float32 grid (at most ``_BATCH_TENSORS`` rows): the
    bucket counts (``[rows, _N + 1]``, the last slot for NaN), the buckets of its values
    as written into ``scratch.index`` (offset by the row's slots), the sum and the sum of
    squares, both float64. With ``sizes``, only the first ``sizes[row]`` values of a row
    are summed; the counts are of every value.

    Every intermediate is written into ``scratch`` and no operation mixes dtypes: adding a
    bool tensor to an int32 one, as this once did, casts element by element and cost more
    than the other passes together (3.0 -> 2.2 ms per 1M values on one thread).
    """
    rows, length = grid.shape
    threshold, bucket, _, offsets = _device_tables(grid.device)
    flat = grid.view(-1)
    wide = scratch.wide.view(rows, length)
    wide.copy_(grid)  # sums accumulate in float64, as histogram.cc's do
    if sizes is not None:
        columns = torch.arange(length, device=grid.device)
        wide.masked_fill_(columns[None, :] >= sizes[:, None], 0.0)
    total = wide.sum(1)
    # (In place for rows, as wide is not read again: 2x a batched dot of short rows.)
    squares = torch.dot(wide[0], wide[0]).view(1) if rows == 1 else wide.mul_(wide).sum(1)
    key, index = scratch.key, scratch.index
    torch.bitwise_right_shift(flat.view(torch.int32), 16, out=key).bitwise_and_(0xFFFF)
    # Each cell's limit goes where the indices will be, and ge replaces it in place.
    limit = torch.index_select(threshold, 0, key, out=index.view(torch.float32))
    torch.ge(flat, limit, out=index)  # 1 where the value is at or above its cell's limit
    torch.add(index, key, alpha=2, out=key)  # its half-cell: 2 * cell + that
    torch.index_select(bucket, 0, key, out=index)
    if rows == 1:
        return _count(index).view(1, _N + 1), index, total, squares
    index.view(rows, length).add_(offsets[:rows, None])
    counts = _count_into(index, scratch.count_rows(rows))
    return counts.view(rows, _N + 1), index, total, squares


def _count(index: torch.Tensor) -> torch.Tensor:
    """How many times each of ``0 .. _N`` occurs in ``index``, as int64, on its device."""
    if index.device.type == "cpu":
        return torch.bincount(index, minlength=_N + 1)
    return _count_without_sync(index)


def _count_without_sync(index: torch.Tensor) -> torch.Tensor:
    """:func:`_count` without ``bincount``, which on accelerators reads the input's minimum
    and maximum on the host to size its output: a synchronisation per histogram."""
    return _count_into(index, torch.zeros(_N + 1, dtype=torch.int64, device=index.device))


def _count_into(index: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Add how many times each slot of the zeroed ``counts`` occurs in ``index`` to it
    (int32 for a batch's rows, whose values are too few to overflow it: half the bytes
    to fill, cross and read). Integer sums do not depend on the order of the additions,
    so the result is exact either way; in deterministic mode the sorting form is used,
    which torch accepts there."""
    ones = torch.ones(1, dtype=counts.dtype, device=index.device).expand(index.numel())
    if torch.are_deterministic_algorithms_enabled():
        return counts.index_put_((index.long(),), ones, accumulate=True)
    return counts.index_add_(0, index, ones)


def _float32_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bucket counts, sum and sum of squares of a 1-D float32 tensor: on the CPU in
    chunks of :data:`_CPU_CHUNK` values, elsewhere at once."""
    if x.device.type != "cpu":
        counts, _, total, squares = _count_grid(x.view(1, -1), _Scratch(x.numel(), x.device))
        return counts[0], total[0], squares[0]
    parts = []
    for chunk in torch.split(x, _CPU_CHUNK):
        counts, _, total, squares = _count_grid(
            chunk.view(1, -1), _Scratch(chunk.numel(), x.device)
        )
        parts.append((counts[0], total[0], squares[0]))
    if len(parts) == 1:
        return parts[0]
    counts, sums, squares = (torch.stack(column).sum(0) for column in zip(*parts, strict=True))
    return counts, sums, squares


def device_histogram(values: torch.Tensor) -> torch.Tensor:
    """Statistics and bucket counts of ``values``, computed on its device.

    Args:
        values: A non-empty real tensor of any shape.

    Returns:
        A float64 tensor on the same device: ``[min, max, sum, sum_squares, counts...]``.
    """
    stats, counts = _histogram(values)
    return torch.cat((stats, counts[:_N].to(torch.float64)))


def traced_histogram(
    values: torch.Tensor, tables: tuple[torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    """:func:`device_histogram` of ``values`` in functional ops only, for a compiled
    graph (``torch.compile`` traces it into the graph that makes ``values``): no scratch
    tensors and no host reads (counted into a fresh zeroed vector, as on accelerators),
    the float32 path's ``threshold`` and ``bucket`` tables (:func:`cell_tables_on`)
    given. Counts are the same; sums may differ in the last bits.
    """
    flat = _countable(values)
    low, high = torch.aminmax(flat)
    wide = flat.to(torch.float64)
    if flat.dtype in _EXACT_IN_FLOAT32:
        threshold, bucket = tables
        x = flat.to(torch.float32)
        key = torch.bitwise_and(torch.bitwise_right_shift(x.view(torch.int32), 16), 0xFFFF)
        index = bucket[key * 2 + (x >= threshold[key]).to(torch.int32)]
    else:
        limits = torch.tensor(BUCKET_LIMITS, dtype=torch.float64, device=flat.device)
        index = torch.bucketize(wide, limits, right=True).clamp(max=_N - 1)
        index = torch.where(torch.isnan(wide), _NAN_SLOT, index)
    counts = _count_into(index, torch.zeros(_N + 1, dtype=torch.int64, device=flat.device))
    low, high = low.to(torch.float64), high.to(torch.float64)
    stats = torch.stack((low, high, wide.sum(), (wide * wide).sum()))
    return torch.cat((stats, counts[:_N].to(torch.float64)))


def cell_tables_on(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The float32 path's cell thresholds and half-cell buckets on ``device``, for
    :func:`traced_histogram`: made outside the graph, as they are made with numpy."""
    threshold, bucket, _, _ = _device_tables(device)
    return threshold, bucket


def _histogram(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The statistics (``[STATS]`` float64) and bucket counts (``[_N + 1]`` int64, the last
    for NaN) of a non-empty tensor, on its device."""
    flat = _countable(values)
    low, high = torch.aminmax(flat)
    if flat.dtype in _EXACT_IN_FLOAT32:
        counts, total, squares = _float32_stats(flat.to(torch.float32))
    else:
        limits = _device_tables(flat.device)[2]
        wide = flat.to(torch.float64)
        total, squares = wide.sum(), torch.dot(wide, wide)
        index = torch.bucketize(wide, limits, right=True).clamp_(max=_N - 1)
        counts = _count(torch.where(torch.isnan(wide), _NAN_SLOT, index))
    return torch.stack((low.to(torch.float64), high.to(torch.float64), total, squares)), counts


#: A tensor of at most this many values is counted together with others of its device
#: (:func:`device_histograms`); a larger one alone, its kernels' fixed cost being small
#: beside its values.
BATCH_VALUES = _CPU_CHUNK // 4
#: The most tensors counted together: their count rows (``_N + 1`` int64 each) are one
#: scratch of at most 3.2 MB.
_BATCH_TENSORS = 256


@dataclasses.dataclass(frozen=True)
class Counts:
    """The histograms of some tensors of one device, as :func:`count_histograms` gives
    them: ``stats`` (``[k, STATS]`` float64: min, max, sum, sum of squares) and ``counts``
    (``[k, _N + 1]`` int64, the last column NaN's) of the tensors at ``members``, which
    hold ``nums`` values each."""

    members: list[int]
    stats: torch.Tensor
    counts: torch.Tensor
    nums: list[int]


def count_histograms(tensors: list[torch.Tensor]) -> list[Counts]:
    """The histograms of many non-empty tensors of one device, in a number of kernel calls
    that grows with the values, not with the tensors.

    Tensors of at most :data:`BATCH_VALUES` values, of the dtypes the float32 path takes,
    are counted in batches (:func:`_batches`), each one pass over a grid of one row per
    tensor; the others are counted alone, and come first. Bucket counts are identical to
    :func:`device_histogram`'s; sums may differ in the last bits, being added in another
    order. On the CPU the counts of the first batches are the thread's buffers (see
    :class:`_Scratch`): read them before the thread counts again.
    """
    alone, batches = _batches(tensors)
    parts = []
    if alone:
        single = [_histogram(tensors[index]) for index in alone]
        stats, counts = (torch.stack(column) for column in zip(*single, strict=True))
        parts.append(Counts(alone, stats, counts, [tensors[i].numel() for i in alone]))
    for number, (members, nums) in enumerate(batches):
        parts.append(_batched(members, [tensors[index] for index in members], nums, number))
    return parts


def device_histograms(tensors: list[torch.Tensor]) -> torch.Tensor:
    """:func:`device_histogram` of many non-empty tensors of one device, as one
    ``[len(tensors), STATS + _N]`` float64 tensor, counted as :func:`count_histograms`
    counts them."""
    parts = count_histograms(tensors)
    rows = torch.cat([torch.cat((p.stats, p.counts[:, :_N].to(torch.float64)), 1) for p in parts])
    order = [index for part in parts for index in part.members]
    if order == list(range(len(tensors))):
        return rows
    return torch.empty_like(rows).index_copy_(0, _on_device(order, rows.device), rows)


def _batches(tensors: list[torch.Tensor]) -> tuple[list[int], list[tuple[list[int], list[int]]]]:
    """Which tensors are counted alone, and how the others are batched: each batch's
    members and their numbers of values.

    A batch is a grid of one row per tensor, as long as its largest, the shorter rows
    padded: so tensors are taken from the smallest up, and a batch closes before its
    padding would pass its values, or its grid :data:`_CPU_CHUNK` values, or its rows
    ``_BATCH_TENSORS``. Tensors of one size, the common case in a model of repeated
    layers, share a batch without padding, and are batched a size at a time: once one
    of a size has joined a batch, the others of that size can only lower its padding.
    """
    alone: list[int] = []
    small: list[tuple[int, int]] = []  # (values, index)
    for index, tensor in enumerate(tensors):
        n = tensor.numel()
        if n > BATCH_VALUES or tensor.dtype not in _EXACT_IN_FLOAT32:
            alone.append(index)
        else:
            small.append((n, index))
    small.sort()
    batches: list[tuple[list[int], list[int]]] = []
    values = 0  # in the last batch
    for n, group in itertools.groupby(small, key=operator.itemgetter(0)):
        members = [index for _, index in group]
        most = min(_BATCH_TENSORS, _CPU_CHUNK // n)  # rows of this size in a batch
        start = 0
        if batches:  # the first of this size joins the last batch if its padding allows
            last, nums = batches[-1]
            rows = len(last)
            if rows < most and (rows + 1) * n <= 2 * (values + n):
                joining = members[: most - rows]
                start = len(joining)
                last += joining
                nums += [n] * start
                values += n * start
        for at in range(start, len(members), most):
            batch = members[at : at + most]
            batches.append((batch, [n] * len(batch)))
            values = n * len(batch)
    return alone, batches


def _on_device(numbers: list[int], device: torch.device) -> torch.Tensor:
    """``numbers`` as an int64 tensor on ``device``, copied without waiting for it: a
    plain copy from the host would synchronise with the device's queue."""
    host = torch.tensor(numbers, dtype=torch.int64)
    if device.type == "cpu":
        return host
    return host.pin_memory().to(device, non_blocking=True)


def _batched(
    members: list[int], tensors: list[torch.Tensor], nums: list[int], number: int
) -> Counts:
    """The :class:`Counts` of small float32-path tensors, smallest first, of ``nums``
    values each, counted as one: the ``number``-th batch of a call of
    :func:`count_histograms`.

    The tensors are the rows of one float32 grid, each shorter one padded with copies of
    its first value, which leave its minimum and maximum as they are, and are left out
    of its sums; their count is taken off that value's bucket.
    """
    device = tensors[0].device
    rows, length = len(tensors), tensors[-1].numel()
    scratch = _Scratch(rows * length, device, number)
    grid = scratch.values.view(rows, length)
    shape, float32 = tensors[0].shape, torch.float32
    if all(t.shape == shape and t.dtype is float32 for t in tensors):  # (repeated layers)
        torch.stack(tensors, out=grid.view(rows, *shape))  # (3x flattening each to cat)
    else:
        pieces = []
        for tensor, num in zip(tensors, nums, strict=True):
            flat = tensor.reshape(-1)  # (evaluation runs under no_grad)
            pieces.append(flat)
            if num < length:
                pieces.append(flat[:1].expand(length - num))
        if all(t.dtype is float32 for t in tensors):
            torch.cat(pieces, out=scratch.values)
        else:  # float16, bfloat16, small integers and bools: exact in float32
            scratch.values.copy_(
                torch.cat([p.to(torch.uint8) if p.dtype == torch.bool else p for p in pieces])
            )
    # (10x aminmax along rows; both give NaN for a row that holds one, as TensorFlow's
    # statistics would, and the buckets drop it)
    low, high = grid.amin(1).to(torch.float64), grid.amax(1).to(torch.float64)
    if nums[0] != length:  # (smallest first: else every row is full)
        sizes = _on_device(nums, device)
        counts, index, total, squares = _count_grid(grid, scratch, sizes)
        firsts = index.view(rows, length)[:, 0].long()
        counts.view(-1).index_add_(0, firsts, (sizes - length).to(counts.dtype))
    else:
        counts, index, total, squares = _count_grid(grid, scratch)
    return Counts(members, torch.stack((low, high, total, squares), 1), counts, nums)


def combine_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The :func:`device_histogram` row of two sets of values from each one's row."""
    return torch.cat((torch.minimum(a[:1], b[:1]), torch.maximum(a[1:2], b[1:2]), a[2:] + b[2:]))
