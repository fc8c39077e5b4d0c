"""P2: a histogram of 1M float32 values with TensorFlow's buckets, beside torch's
add_histogram(bins="tensorflow"), with the same bucket counts."""

from __future__ import annotations

import tempfile

import torch

import summary_hook as sh
from benchmarks.harness import Result, median_times
from summary_hook._evaluation.histogram import BUCKET_LIMITS


def p2_histogram(repeats: int, size: int, device: str, tmp: str) -> Result:
    from torch.utils.tensorboard import SummaryWriter

    values = torch.randn(size, generator=torch.Generator().manual_seed(0)).to(device)
    op = sh.histogram("h", lambda: values, collections=[])
    writer = SummaryWriter(tmp)

    def ours() -> None:
        sh.evaluate(op)

    def torch_histogram() -> None:
        writer.add_histogram("h", values, 0, bins="tensorflow")

    # numpy, which add_histogram sorts with, uses one thread; torch uses every core. The
    # target is judged with one thread for both; the default is reported beside it.
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = median_times({"ours": ours, "torch": torch_histogram}, repeats)
    finally:
        torch.set_num_threads(threads)
    every = median_times({"ours": ours, "torch": torch_histogram}, repeats)
    t_ours, t_torch = one["ours"], one["torch"]
    writer.close()

    from torch.utils.tensorboard.summary import histogram as torch_summary

    ours_histo = sh.evaluate(op).value[0].histo
    bins = list(BUCKET_LIMITS[1:-1])
    theirs = torch_summary("h", values.cpu().double(), bins=bins).value[0].histo
    same = {
        (limit, n) for limit, n in zip(ours_histo.bucket_limit, ours_histo.bucket, strict=True) if n
    } == {(limit, n) for limit, n in zip(theirs.bucket_limit, theirs.bucket, strict=True) if n}
    speedup = t_torch / t_ours
    every_speedup = every["torch"] / every["ours"]
    return Result(
        "P2",
        f"histogram of {size:,} float32 ({device}), one thread",
        t_ours * 1e3,
        "ms",
        "≥ 5x faster than add_histogram (one thread for both), same counts",
        speedup >= 5 and same,
        {
            "summary_hook_ms": t_ours * 1e3,
            "torch_add_histogram_ms": t_torch * 1e3,
            "speedup": speedup,
            f"summary_hook_ms_{threads}_threads": every["ours"] * 1e3,
            f"torch_add_histogram_ms_{threads}_threads": every["torch"] * 1e3,
            f"speedup_{threads}_threads": every_speedup,
            "same_bucket_counts": same,
        },
        f"{speedup:.1f}x faster than add_histogram ({t_torch * 1e3:.1f} ms) on one thread, "
        f"{every_speedup:.1f}x on {threads}; same counts: {same}",
    )


def measure(quick: bool, device: str) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        size = 100_000 if quick else 1_000_000
        return p2_histogram(3 if quick else 7, size=size, device=device, tmp=tmp)
