"""TensorFlow's v1 histogram (``HistogramProto``) computed with torch on the tensor's device.

Bucket limits are TensorFlow's defaults: ``-DBL_MAX``, ``-1e20 < -1e-12·1.1^k``, ``0``,
``1e-12·1.1^k < 1e20``, ``DBL_MAX``. A value ``x`` lands in bucket ``b``, the first whose
limit is greater than ``x`` (``std::upper_bound`` in ``histogram.cc``); ``+inf`` lands in
the last bucket and NaN in none. Runs of empty buckets are collapsed into one, keeping
the last limit of the run, as ``Histogram::EncodeToProto`` does.

Counting avoids a binary search per element. A float32 value's top 16 bits (sign,
exponent and 7 mantissa bits) name a *cell* of relative width 2^-7, narrower than the
10% spacing of the limits, so at most one limit falls inside a cell. One comparison
against that limit (rounded up to float32, which keeps the comparison exact) splits
the cell in two, a fixed table maps the 2^17 half-cells to buckets, and one pass
counts them (``bincount`` on the CPU; ``index_add_`` elsewhere, as ``bincount`` there
reads its input on the host). On the CPU, values are counted in chunks through scratch
tensors kept per thread. The dtypes that this float32 path does not take (float64,
int32, int64, and the unsigned uint16, uint32 and uint64) take the exact
``torch.bucketize`` path instead.
"""

from __future__ import annotations

import functools
import itertools
import math
import struct
import sys
import threading

import numpy as np
import torch
from tensorboard.compat.proto.summary_pb2 import HistogramProto

__all__ = [
    "BUCKET_LIMITS",
    "STATS",
    "combine_rows",
    "device_histogram",
    "device_histograms",
    "histogram_proto",
    "histogram_protos",
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
def _device_tables(device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    threshold, bucket = _cell_tables()
    return (
        torch.from_numpy(threshold).to(device),
        torch.from_numpy(bucket.astype(np.int32)).to(device),
        torch.tensor(BUCKET_LIMITS, dtype=torch.float64, device=device),
    )


class _CpuScratch(threading.local):
    """Scratch tensors for counting :data:`_CPU_CHUNK` float32 values, one set per thread.

    Whole-tensor temporaries would be about 17 bytes a value of fresh memory on every
    call; page-faulting that in cost more than the counting, and varied from process
    to process with the C allocator's state. These are faulted in once and reused.
    """

    def __init__(self) -> None:
        self.key = torch.empty(_CPU_CHUNK, dtype=torch.int32)
        self.limit = torch.empty(_CPU_CHUNK, dtype=torch.float32)
        self.index = torch.empty(_CPU_CHUNK, dtype=torch.int32)
        self.wide = torch.empty(_CPU_CHUNK, dtype=torch.float64)


#: How many values the CPU counts at a time.
_CPU_CHUNK = 1 << 18
_cpu_scratch = _CpuScratch()


def _count_float32(
    x: torch.Tensor,
    tables: tuple[torch.Tensor, torch.Tensor],
    scratch: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bucket counts (``_N + 1`` slots, the last for NaN), sum and sum of squares of a
    1-D float32 tensor, written through ``scratch`` (int32, float32, int32 and float64,
    each at least as long as ``x``).

    Every intermediate is int32 or float32 and no operation mixes dtypes: adding a bool
    tensor to an int32 one, as this once did, casts element by element and cost more than
    the other passes together (3.0 -> 2.2 ms per 1M values on one thread).
    """
    threshold, bucket = tables
    n = x.numel()
    key, limit, index, wide = (t[:n] for t in scratch)
    wide.copy_(x)  # sums accumulate in float64, as histogram.cc's do
    total, squares = wide.sum(), torch.dot(wide, wide)
    torch.bitwise_right_shift(x.view(torch.int32), 16, out=key).bitwise_and_(0xFFFF)
    torch.index_select(threshold, 0, key, out=limit)
    torch.ge(x, limit, out=index)  # 1 where the value is at or above its cell's limit
    torch.add(index, key, alpha=2, out=key)  # its half-cell: 2 * cell + that
    torch.index_select(bucket, 0, key, out=index)
    return _count(index), total, squares


def _count(index: torch.Tensor) -> torch.Tensor:
    """How many times each of ``0 .. _N`` occurs in ``index``, on its device."""
    if index.device.type == "cpu":
        return torch.bincount(index, minlength=_N + 1)
    return _count_without_sync(index)


def _count_without_sync(index: torch.Tensor) -> torch.Tensor:
    """:func:`_count` for accelerators, where ``bincount`` reads the input's minimum and
    maximum on the host to size its output: a synchronisation per histogram. Integer
    sums do not depend on the order of the additions, so the result is exact either way;
    in deterministic mode the sorting form is used, which torch accepts there."""
    index = index.long()
    counts = torch.zeros(_N + 1, dtype=torch.int64, device=index.device)
    ones = torch.ones(index.numel(), dtype=torch.int64, device=index.device)
    if torch.are_deterministic_algorithms_enabled():
        return counts.index_put_((index,), ones, accumulate=True)
    return counts.index_add_(0, index, ones)


def _float32_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bucket counts, sum and sum of squares of a 1-D float32 tensor."""
    threshold, bucket, _ = _device_tables(x.device)
    if x.device.type != "cpu":  # the device's caching allocator reuses memory by itself
        n, device = x.numel(), x.device
        scratch = (
            torch.empty(n, dtype=torch.int32, device=device),
            torch.empty(n, dtype=torch.float32, device=device),
            torch.empty(n, dtype=torch.int32, device=device),
            torch.empty(n, dtype=torch.float64, device=device),
        )
        return _count_float32(x, (threshold, bucket), scratch)
    s = _cpu_scratch
    parts = [
        _count_float32(chunk, (threshold, bucket), (s.key, s.limit, s.index, s.wide))
        for chunk in torch.split(x, _CPU_CHUNK)
    ]
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
    flat = values.detach().reshape(-1)
    if flat.dtype == torch.bool:
        flat = flat.to(torch.uint8)
    low, high = torch.aminmax(flat)
    if flat.dtype in _EXACT_IN_FLOAT32:
        counts, total, squares = _float32_stats(flat.to(torch.float32))
    else:
        limits = _device_tables(flat.device)[2]
        wide = flat.to(torch.float64)
        total, squares = wide.sum(), torch.dot(wide, wide)
        index = torch.bucketize(wide, limits, right=True).clamp_(max=_N - 1)
        counts = _count(torch.where(torch.isnan(wide), _NAN_SLOT, index))
    stats = torch.stack((low.to(torch.float64), high.to(torch.float64), total, squares))
    return torch.cat((stats, counts[:_N].to(torch.float64)))


#: A tensor of at most this many values is counted together with others of its device
#: (:func:`device_histograms`); a larger one alone, its kernels' fixed cost being small
#: beside its values.
BATCH_VALUES = _CPU_CHUNK // 4
#: The most tensors counted together: their count rows (``_N + 1`` int64 each) are one
#: scratch of at most 3.2 MB.
_BATCH_TENSORS = 256


def device_histograms(tensors: list[torch.Tensor]) -> torch.Tensor:
    """:func:`device_histogram` of many non-empty tensors of one device, as one
    ``[len(tensors), STATS + _N]`` float64 tensor, in a number of kernel calls that grows
    with the values, not with the tensors.

    Tensors of at most :data:`BATCH_VALUES` values, of the dtypes the float32 path takes,
    are concatenated, up to :data:`_CPU_CHUNK` values and ``_BATCH_TENSORS`` tensors a
    batch, and counted in one pass, each value's bucket offset by its tensor's row; the
    others are counted alone. Bucket counts are identical to :func:`device_histogram`'s;
    sums may differ in the last bits, being added in another order.
    """
    alone, batches = _batches(tensors)
    if not batches:
        return torch.stack([device_histogram(tensor) for tensor in tensors])
    device = tensors[0].device
    result = torch.empty((len(tensors), STATS + _N), dtype=torch.float64, device=device)
    for index in alone:
        result[index] = device_histogram(tensors[index])
    for batch in batches:
        members = [tensors[index] for index in batch]
        if batch[-1] - batch[0] == len(batch) - 1:  # consecutive: the common case
            _batched(members, result[batch[0] : batch[-1] + 1])
        else:
            rows = torch.empty((len(batch), STATS + _N), dtype=torch.float64, device=device)
            result.index_copy_(0, _on_device(batch, device), _batched(members, rows))
    return result


def _batches(tensors: list[torch.Tensor]) -> tuple[list[int], list[list[int]]]:
    """Which tensors are counted alone, and how the others are batched."""
    alone: list[int] = []
    batches: list[list[int]] = []
    values = _CPU_CHUNK  # the values of the last batch: none open yet
    for index, tensor in enumerate(tensors):
        n = tensor.numel()
        if n > BATCH_VALUES or tensor.dtype not in _EXACT_IN_FLOAT32:
            alone.append(index)
        elif values + n > _CPU_CHUNK or len(batches[-1]) == _BATCH_TENSORS:
            batches.append([index])
            values = n
        else:
            batches[-1].append(index)
            values += n
    return alone, batches


def _on_device(numbers: list[int], device: torch.device) -> torch.Tensor:
    """``numbers`` as an int64 tensor on ``device``, copied without waiting for it: a
    plain copy from the host would synchronise with the device's queue."""
    host = torch.tensor(numbers, dtype=torch.int64)
    if device.type == "cpu":
        return host
    return host.pin_memory().to(device, non_blocking=True)


def _batched(tensors: list[torch.Tensor], out: torch.Tensor) -> torch.Tensor:
    """The rows of :func:`device_histograms` for small float32-path tensors, counted as
    one, written into ``out`` (``[len(tensors), STATS + _N]`` float64) and returned.

    Each value's row (its tensor) is a running sum of marks at the tensors' starts; the
    sums and extremes are taken per row, and each value's bucket is offset by its row's
    ``_N + 1`` slots so that one count gives every row's.
    """
    device = tensors[0].device
    threshold, bucket, _ = _device_tables(device)
    flats = [t.reshape(-1) for t in tensors]  # (evaluation runs under no_grad)
    x = torch.cat([f.to(torch.uint8) if f.dtype == torch.bool else f for f in flats])
    x = x.to(torch.float32)
    sizes = [f.numel() for f in flats]
    rows = len(tensors)
    starts = list(itertools.accumulate(sizes[:-1]))
    row = torch.zeros(x.numel(), dtype=torch.int32, device=device)
    if starts:
        row.index_fill_(0, _on_device(starts, device), 1)
    row = row.cumsum(0, dtype=torch.int32)
    lengths = _on_device(sizes, device)
    wide = x.to(torch.float64)
    total = torch.segment_reduce(wide, "sum", lengths=lengths)
    squares = torch.segment_reduce(wide.mul_(wide), "sum", lengths=lengths)
    wide_row = row.long()
    low = torch.full((rows,), math.inf, device=device).scatter_reduce_(0, wide_row, x, "amin")
    high = torch.full((rows,), -math.inf, device=device).scatter_reduce_(0, wide_row, x, "amax")
    key = torch.bitwise_right_shift(x.view(torch.int32), 16).bitwise_and_(0xFFFF)
    half = torch.ge(x, threshold.index_select(0, key)).to(torch.int32).add_(key, alpha=2)
    index = bucket.index_select(0, half).add_(row, alpha=_N + 1)
    if device.type == "cpu":
        counts = torch.bincount(index, minlength=rows * (_N + 1))
    else:  # as _count_without_sync: bincount would read its input on the host
        counts = torch.zeros(rows * (_N + 1), dtype=torch.int64, device=device)
        counts.index_add_(0, index, torch.ones_like(index, dtype=torch.int64))
    counts = counts.view(rows, _N + 1)
    out[:, STATS:].copy_(counts[:, :_N])  # (each copy over the count rows costs: one)
    nan = counts[:, _NAN_SLOT] > 0  # NaN is dropped by the buckets; min and max say so
    out[:, 0] = torch.where(nan, math.nan, low.to(torch.float64))
    out[:, 1] = torch.where(nan, math.nan, high.to(torch.float64))
    out[:, 2] = total
    out[:, 3] = squares
    return out


def combine_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The :func:`device_histogram` row of two sets of values from each one's row."""
    return torch.cat((torch.minimum(a[:1], b[:1]), torch.maximum(a[1:2], b[1:2]), a[2:] + b[2:]))


def histogram_proto(host: np.ndarray, num: int, tag: str = "") -> HistogramProto:
    """Build the ``HistogramProto`` from :func:`device_histogram`'s result on the host.

    Args:
        host: The float64 array that :func:`device_histogram` returned, or an empty
            array for an empty tensor.
        num: The number of elements.
        tag: The summary's tag, for the error.

    Raises:
        ValueError: If the values held NaN or an infinity, as TensorFlow's histogram
            summary raises ``InvalidArgument`` ("Nan in summary histogram for: tag"):
            its buckets could not count them, and its statistics would be NaN.
    """
    if num == 0:
        return HistogramProto(bucket_limit=[DBL_MAX], bucket=[0.0])
    return histogram_protos(host.reshape(1, -1), [num], [tag])[0]


#: A ``HistogramProto``'s five statistics as protobuf writes them: each a field tag
#: (fields 1 to 5, 64-bit) and a little-endian double.
_STATISTICS = struct.Struct("<BdBdBdBdBd")


def histogram_protos(rows: np.ndarray, nums: list[int], tags: list[str]) -> list[HistogramProto]:
    """:func:`histogram_proto` of each row of :func:`device_histograms`'s result.

    Runs of empty buckets are collapsed into one, keeping the last limit of the run, as
    ``Histogram::EncodeToProto`` does, for every row at once. Each proto is parsed from
    bytes laid out as protobuf lays them out (the statistics, then the limits and counts
    as packed doubles, fields 6 and 7): 2.5x faster than filling its lists from Python.

    Raises:
        ValueError: As :func:`histogram_proto`, naming the first such tag.
    """
    extremes = rows[:, :2]
    if not np.isfinite(extremes).all():
        bad = int(np.flatnonzero(~np.isfinite(extremes).all(axis=1))[0])
        tag = tags[bad]
        raise ValueError(
            f"histogram {tag!r} holds NaN or infinite values (min {rows[bad, 0]}, max "
            f"{rows[bad, 1]}); TensorFlow raises too: 'Nan in summary histogram for: {tag}'"
        )
    counts = rows[:, STATS:]
    filled = counts > 0
    keep = filled.copy()
    keep[:, :-1] |= filled[:, 1:]
    keep[:, -1] = True
    protos = []
    for row, kept, num in zip(rows, keep, nums, strict=True):
        where = np.flatnonzero(kept)
        limits = _LIMITS[where].tobytes()
        numbers = row[STATS:][where].tobytes()
        data = b"".join(
            (
                _STATISTICS.pack(0x09, row[0], 0x11, row[1], 0x19, num, 0x21, row[2], 0x29, row[3]),
                b"\x32",
                _varint(len(limits)),
                limits,
                b"\x3a",
                _varint(len(numbers)),
                numbers,
            )
        )
        protos.append(HistogramProto.FromString(data))
    return protos


def _varint(value: int) -> bytes:
    """``value`` as a protobuf varint: 7 bits a byte, the lowest first."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
