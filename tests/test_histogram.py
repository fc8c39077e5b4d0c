"""Histograms: TensorFlow's buckets, checked against torch.utils.tensorboard's bins="tensorflow"."""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from tensorboard.compat.proto.summary_pb2 import HistogramProto
from torch.utils.tensorboard.summary import histogram as torch_histogram

import summary_hook as sh
from summary_hook._evaluation.histogram import (
    BUCKET_LIMITS,
    STATS,
    _cell_tables,
    _count_without_sync,
)

DBL_MAX = sys.float_info.max
TORCH_BINS = list(BUCKET_LIMITS[1:-1])  # torch's default_bins: no +-DBL_MAX


def ours(values):
    return sh.evaluate(sh.histogram("h", lambda: values, collections=[])).value[0].histo


def nonempty(histo):
    pairs = zip(histo.bucket_limit, histo.bucket, strict=True)
    return {limit: count for limit, count in pairs if count}


@pytest.mark.parametrize(
    "values",
    [
        torch.randn(100_000, generator=torch.Generator().manual_seed(0)),
        torch.randn(50, 40, generator=torch.Generator().manual_seed(1)) * 1e6,
        torch.rand(10_000, generator=torch.Generator().manual_seed(2)) * 1e-9,
        torch.tensor([0.0, -0.0, 1e-12, -1e-12, 1.0, -1.0, 3.5e19, -3.5e19]),
        torch.randn(1000, dtype=torch.float64, generator=torch.Generator().manual_seed(3)),
        torch.randn(1000, generator=torch.Generator().manual_seed(4)).to(torch.bfloat16),
        torch.randn(1000, generator=torch.Generator().manual_seed(5)).to(torch.float16),
        torch.randint(-1000, 1000, (1000,), generator=torch.Generator().manual_seed(6)),
        torch.randint(0, 2, (100,), generator=torch.Generator().manual_seed(7)).bool(),
        torch.randn(600_001, generator=torch.Generator().manual_seed(8)) * 100,  # 3 chunks
        torch.randn(1000, generator=torch.Generator().manual_seed(9)).to(torch.float8_e4m3fn),
        (torch.randn(1000, generator=torch.Generator().manual_seed(10)) * 1e4).to(
            torch.float8_e5m2
        ),
    ],
    ids=[
        "randn",
        "wide",
        "tiny",
        "edges",
        "float64",
        "bfloat16",
        "float16",
        "int64",
        "bool",
        "chunks",
        "float8_e4m3fn",
        "float8_e5m2",
    ],
)
def test_histogram_matches_torch_tensorflow_bins(values):
    histo = ours(values)
    reference = torch_histogram("h", values.double(), bins=TORCH_BINS).value[0].histo
    assert nonempty(histo) == nonempty(reference)
    assert histo.num == reference.num
    assert histo.min == pytest.approx(reference.min, rel=1e-12)
    assert histo.max == pytest.approx(reference.max, rel=1e-12)
    assert histo.sum == pytest.approx(reference.sum, rel=1e-9, abs=1e-9)
    assert histo.sum_squares == pytest.approx(reference.sum_squares, rel=1e-9)


def test_histogram_collapses_runs_of_empty_buckets_like_tensorflow():
    histo = ours(torch.tensor([1.0, 1.0, 100.0]))
    limits, counts = list(histo.bucket_limit), list(histo.bucket)
    assert counts == [0.0, 2.0, 0.0, 1.0, 0.0]
    assert limits[-1] == DBL_MAX
    assert limits[1] > 1.0 >= limits[0]
    assert limits[3] > 100.0 >= limits[2]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_histogram_of_nan_or_infinity_raises_as_tensorflow_does(bad, dtype):
    values = torch.tensor([1.0, bad, 2.0], dtype=dtype)
    message = r"histogram 'h' holds NaN or infinite values .*'Nan in summary histogram for: h'"
    with pytest.raises(ValueError, match=message):
        ours(values)


def test_histogram_of_an_empty_tensor_is_an_empty_histogram():
    histo = ours(torch.empty(0))
    assert (histo.num, histo.min, histo.max, histo.sum, histo.sum_squares) == (0, 0, 0, 0, 0)
    assert list(histo.bucket) == [0.0] and list(histo.bucket_limit) == [DBL_MAX]


def test_histogram_accepts_arrays_and_lists():
    assert ours(np.arange(5.0)).num == 5.0
    assert ours([1, 2, 3]).sum == 6.0


def test_histogram_detaches_tensors_that_require_grad():
    assert ours(torch.ones(3, requires_grad=True) * 2).sum == 6.0


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (torch.ones(2, dtype=torch.complex64), TypeError, r"histogram 'h' must be real"),
        (["a", "b"], TypeError, r"histogram 'h' must hold real numbers"),
        (None, TypeError, r"histogram 'h': its function returned None; "),
        (
            torch.empty(3, device="meta"),
            ValueError,
            r"histogram 'h' is a tensor on the meta device",
        ),
    ],
)
def test_histogram_rejects_bad_values_naming_the_tag(value, error, message):
    with pytest.raises(error, match=message):
        ours(value)


def test_every_float32_cell_holds_at_most_one_bucket_limit():
    threshold, bucket = _cell_tables()  # builds and checks the tables
    assert threshold.shape == (1 << 16,) and bucket.shape == (1 << 17,)


def test_limits_are_tensorflow_defaults():
    assert BUCKET_LIMITS[0] == -DBL_MAX and BUCKET_LIMITS[-1] == DBL_MAX
    assert BUCKET_LIMITS[len(BUCKET_LIMITS) // 2] == 0.0
    assert BUCKET_LIMITS[len(BUCKET_LIMITS) // 2 + 1] == 1e-12
    assert len(BUCKET_LIMITS) == 1551


def test_threads_counting_at_once_each_get_their_own_histogram():
    tensors = [torch.randn(300_000, generator=torch.Generator().manual_seed(s)) for s in range(4)]
    expected = [nonempty(ours(t)) for t in tensors]
    start = threading.Barrier(4)
    wrong = []

    def count(index: int) -> None:
        start.wait()
        for _ in range(10):
            if nonempty(ours(tensors[index])) != expected[index]:
                wrong.append(index)

    threads = [threading.Thread(target=count, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []


@contextlib.contextmanager
def deterministic_algorithms(on: bool) -> Iterator[None]:
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(on)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


@pytest.mark.parametrize("deterministic", [False, True])
def test_accelerator_counting_matches_bincount(deterministic):
    # Accelerators count without bincount, which would read the input on the host; the
    # same code runs here on CPU tensors (the synchronisation itself needs a GPU to see).
    size = len(BUCKET_LIMITS) + 1
    index = torch.randint(0, size, (50_000,), dtype=torch.int32, generator=torch.Generator())
    with deterministic_algorithms(deterministic):
        counts = _count_without_sync(index)
    assert torch.equal(counts, torch.bincount(index, minlength=size))


def many_tensors() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(11)
    tensors = []
    for i, n in enumerate([1, 2, 7, 100, 1000, 4096, 30_000, 70_000, 65_536, 3, 300_000]):
        scale = 10.0 ** ((i % 7) - 3)
        tensors.append(torch.randn(n, generator=generator) * scale)
    tensors += [
        torch.randn(33, 7, generator=generator).to(torch.bfloat16),
        torch.randn(500, generator=generator).to(torch.float16),
        torch.randint(-100, 100, (300,), dtype=torch.int8, generator=generator),
        torch.randint(0, 255, (300,), dtype=torch.uint8, generator=generator),
        torch.randint(0, 2, (64,), generator=generator).bool(),
        torch.randn(200, dtype=torch.float64, generator=generator),  # counted alone
        torch.randint(-(10**6), 10**6, (200,), generator=generator),  # int64: alone
        torch.randn(100, generator=generator).to(torch.float8_e4m3fn),  # float8: alone
        torch.tensor([0.0, -0.0, 1e-12, -1e-12, 3.5e19, float("inf"), float("-inf")]),
    ]
    tensors += [torch.randn(1000, generator=generator), torch.randn(10, 100, generator=generator)]
    return tensors


def same_shape_tensors() -> list[torch.Tensor]:
    """A model's repeated layers: one shape, stacked into the grid as they are."""
    generator = torch.Generator().manual_seed(12)
    return [torch.randn(20, 50, generator=generator) * 10.0 ** (i - 2) for i in range(5)]


@pytest.mark.parametrize("made", [many_tensors, same_shape_tensors])
def test_histograms_of_many_tensors_count_exactly_as_one_at_a_time(made):
    from summary_hook._evaluation.histogram import device_histogram, device_histograms

    tensors = made()
    together = device_histograms(tensors)
    assert together.shape == (len(tensors), STATS + len(BUCKET_LIMITS))
    for row, tensor in zip(together, tensors, strict=True):
        alone = device_histogram(tensor)
        assert torch.equal(row[STATS:], alone[STATS:])  # the bucket counts, exactly
        assert torch.equal(row[:2], alone[:2])  # min and max
        assert torch.allclose(row[2:STATS], alone[2:STATS], rtol=1e-12, equal_nan=True)


def aten_calls(fn) -> int:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return sum(1 for e in prof.events() if e.name.startswith("aten::"))


def test_histograms_of_many_tensors_batch_their_kernels():
    # Each tensor more costs a few calls (its view), not a chain of kernels of its own.
    from summary_hook._evaluation.histogram import device_histograms

    def calls(count: int) -> int:
        tensors = [torch.randn(1000) for _ in range(count)]
        with torch.no_grad():
            return aten_calls(lambda: device_histograms(tensors))

    per_tensor = (calls(600) - calls(100)) / 500
    assert per_tensor <= 4, per_tensor


def batches_one_at_a_time(sizes: list[int]) -> list[list[int]]:
    """How ``_batches`` batches tensors of these sizes, its rule taken one tensor at a
    time: from the smallest up, a tensor joins the last batch unless that would pass
    its rows, its grid's values, or its padding past its values."""
    from summary_hook._evaluation.histogram import _BATCH_TENSORS, _CPU_CHUNK

    batches: list[list[int]] = []
    values = 0
    for n, index in sorted((n, i) for i, n in enumerate(sizes)):
        rows = len(batches[-1]) + 1 if batches else 0
        if not batches or rows > _BATCH_TENSORS or rows * n > min(2 * (values + n), _CPU_CHUNK):
            batches.append([index])
            values = n
        else:
            batches[-1].append(index)
            values += n
    return batches


@pytest.mark.parametrize("seed", range(6))
def test_batches_are_made_a_size_at_a_time_as_one_at_a_time(seed):
    from summary_hook._evaluation.histogram import _batches

    generator = np.random.default_rng(seed)
    # Repeated layers (few sizes, many of each) and one-offs, up to BATCH_VALUES.
    sizes = [
        *generator.choice([1, 64, 512, 1000, 4096, 65536], 700),
        *generator.integers(1, 65536, 40),
    ]
    tensors = [torch.empty(int(n)) for n in sizes]
    alone, batches = _batches(tensors)
    assert alone == []
    assert [members for members, _ in batches] == batches_one_at_a_time(sizes)
    assert all(nums == [sizes[i] for i in members] for members, nums in batches)


def test_histograms_of_many_tensors_mark_nan_as_the_single_path_does():
    from summary_hook._evaluation.histogram import device_histograms

    rows = device_histograms([torch.tensor([1.0, float("nan")]), torch.tensor([2.0])])
    assert torch.isnan(rows[0, 0]) and torch.isnan(rows[0, 1])
    assert rows[1, 0] == 2.0 and rows[1, 1] == 2.0


@pytest.mark.parametrize("deterministic", [False, True])
def test_the_compilable_histogram_counts_exactly_as_the_device_path(deterministic):
    # What a compiled model's activation taps trace into its graph (functional ops only).
    from summary_hook._evaluation.histogram import cell_tables_on, device_histogram
    from summary_hook._evaluation.histogram import traced_histogram as traced

    tables = cell_tables_on(torch.device("cpu"))
    tensors = [*many_tensors(), *same_shape_tensors(), torch.tensor([1.0, float("nan"), -2.0])]
    compiled = torch.compile(traced, backend="eager", fullgraph=True)  # no graph break
    compiled_dtypes = set()  # (compiled for each dtype's first: each shape is a recompile)
    for tensor in tensors:
        expected = device_histogram(tensor)
        with deterministic_algorithms(deterministic):
            if tensor.dtype not in compiled_dtypes:
                compiled_dtypes.add(tensor.dtype)
                torch.compiler.reset()
                ours = compiled(tensor, tables)
            else:
                ours = traced(tensor, tables)
        assert torch.equal(ours[STATS:], expected[STATS:]), tensor.dtype  # the counts, exactly
        assert torch.allclose(ours[:STATS], expected[:STATS], rtol=1e-12, equal_nan=True)


def encode_to_proto(values: np.ndarray, stats: np.ndarray) -> HistogramProto:
    """TensorFlow's ``Histogram::EncodeToProto`` loop, written out, over buckets counted
    with numpy (``std::upper_bound``: the first limit greater than the value)."""
    limits = np.asarray(BUCKET_LIMITS)
    buckets = np.minimum(np.searchsorted(limits, values, side="right"), len(limits) - 1)
    counts = np.bincount(buckets, minlength=len(limits)).astype(float)
    proto = HistogramProto(
        min=stats[0], max=stats[1], num=values.size, sum=stats[2], sum_squares=stats[3]
    )
    i = 0
    while i < len(counts):
        end, count = limits[i], counts[i]
        i += 1
        if count <= 0:  # a run of empty buckets, collapsed into its last
            while i < len(counts) and counts[i] <= 0:
                end, count = limits[i], counts[i]
                i += 1
        proto.bucket_limit.append(end)
        proto.bucket.append(count)
    return proto


def test_host_protos_are_tensorflows_encoding_of_the_device_counts():
    from summary_hook._evaluation.histogram import device_histograms
    from summary_hook._evaluation.histogram_proto import histogram_values

    generator = torch.Generator().manual_seed(13)
    tensors = [t for t in many_tensors() if torch.isfinite(t.double()).all()]
    tensors += [torch.randn(n, generator=generator) * 10.0 ** (n % 40 - 20) for n in range(1, 60)]
    tensors += [
        torch.tensor(BUCKET_LIMITS[1:-1:7], dtype=torch.float64),  # exactly on the limits
        torch.tensor([1e30, -1e30, 3.0e38]),  # past 1e20: the DBL_MAX bucket
        torch.zeros(5),
        torch.full((3,), 7.0),
    ]
    rows = device_histograms(tensors).numpy()
    values = histogram_values(
        rows[:, :STATS], rows[:, STATS:], [t.numel() for t in tensors], ["h"] * len(tensors)
    )
    for tensor, row, value in zip(tensors, rows, values, strict=True):
        expected = encode_to_proto(tensor.double().numpy().reshape(-1), row[:STATS])
        assert value.proto() == expected
