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
the cell in two, one ``bincount`` counts the 2^17 half-cells, and a fixed table maps
half-cells to buckets. Dtypes that float32 cannot hold exactly (float64, int32, int64)
take the exact ``torch.bucketize`` path instead.
"""

from __future__ import annotations

import functools
import sys

import numpy as np
import torch
from tensorboard.compat.proto.summary_pb2 import HistogramProto

__all__ = ["BUCKET_LIMITS", "STATS", "device_histogram", "histogram_proto"]

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
        torch.from_numpy(bucket).to(device),
        torch.tensor(BUCKET_LIMITS, dtype=torch.float64, device=device),
    )


def _bucket_counts(values: torch.Tensor) -> torch.Tensor:
    """Counts per bucket (length ``len(BUCKET_LIMITS)``, float64) of a 1-D tensor."""
    threshold, bucket, limits = _device_tables(values.device)
    if values.dtype in _EXACT_IN_FLOAT32:
        x = values.to(torch.float32)
        key = (x.view(torch.int32) >> 16).bitwise_and_(0xFFFF)
        above = x >= threshold.index_select(0, key)
        half_cells = torch.bincount(key.add_(key).add_(above), minlength=1 << 17)
        counts = torch.zeros(_N + 1, dtype=torch.int64, device=values.device)
        counts.index_add_(0, bucket, half_cells)
    else:
        x64 = values.to(torch.float64)
        index = torch.bucketize(x64, limits, right=True).clamp_(max=_N - 1)
        index = torch.where(torch.isnan(x64), _NAN_SLOT, index)
        counts = torch.bincount(index, minlength=_N + 1)
    return counts[:_N].to(torch.float64)


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
    wide = flat.to(torch.float64)  # sums accumulate in float64, as histogram.cc's do
    stats = torch.stack(
        (low.to(torch.float64), high.to(torch.float64), wide.sum(), torch.dot(wide, wide))
    )
    return torch.cat((stats, _bucket_counts(flat)))


def histogram_proto(host: np.ndarray, num: int) -> HistogramProto:
    """Build the ``HistogramProto`` from :func:`device_histogram`'s result on the host.

    Args:
        host: The float64 array that :func:`device_histogram` returned, or an empty
            array for an empty tensor.
        num: The number of elements.
    """
    if num == 0:
        return HistogramProto(bucket_limit=[DBL_MAX], bucket=[0.0])
    counts = host[STATS:]
    filled = counts > 0
    keep = filled | np.append(filled[1:], True)  # each run of empties keeps its last limit
    return HistogramProto(
        min=float(host[0]),
        max=float(host[1]),
        num=float(num),
        sum=float(host[2]),
        sum_squares=float(host[3]),
        bucket_limit=_LIMITS[keep].tolist(),
        bucket=counts[keep].tolist(),
    )
