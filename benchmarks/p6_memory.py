"""P6: memory over a million events through one writer and a million due steps, measured in
a process of its own, so that nothing else the benchmark did counts."""

from __future__ import annotations

import dataclasses
import gc
import json
import subprocess
import sys
import tempfile
import time
from typing import Any

import torch

import summary_hook as sh
from benchmarks.harness import Result, rss_mb, writer_path


def p6_many_events(count: int, root: str) -> Result:
    from tensorboard.compat.proto.summary_pb2 import Summary

    from summary_hook._events.records import iter_records

    tmp = tempfile.mkdtemp(dir=root)
    writer = sh.FileWriter(tmp)
    summary = Summary(value=[Summary.Value(tag="x", simple_value=1.0)])
    for step in range(1000):  # warm up allocators before the baseline
        writer.add_summary(summary, step)
    writer.flush()
    gc.collect()
    before = rss_mb()
    start = time.perf_counter()
    peak = before
    for step in range(count):
        writer.add_summary(summary, step)
        if step % 50_000 == 0:
            peak = max(peak, rss_mb())
    writer.close()
    elapsed = time.perf_counter() - start
    peak = max(peak, rss_mb())
    with open(writer_path(tmp), "rb") as file:
        records = sum(1 for _ in iter_records(file))
    steps = p6_due_steps(count, root)
    complete = records == count + 1001 and steps["records_read_back"] == steps["expected"]
    growth = max(peak - before, steps["rss_growth_MB"])
    return Result(
        "P6",
        f"{count:,} events through one writer, and {count:,} due steps: memory growth",
        growth,
        "MB",
        "< 20 MB; the file reads back complete",
        growth < 20 and complete,
        {
            "events_per_second": count / elapsed,
            "records_read_back": records,
            "expected": count + 1001,
            "writer_rss_growth_MB": peak - before,
            "through_the_hook": steps,
        },
        f"{records:,} of {count + 1001:,} records read back; {count / elapsed:,.0f} events/s",
    )


def p6_due_steps(count: int, root: str) -> dict[str, Any]:
    """``count`` due steps through MonitoredSession and the hook: memory and completeness."""
    from summary_hook._events.records import iter_records

    tmp = tempfile.mkdtemp(dir=root)
    loss = torch.tensor(0.5)
    hook = sh.SummarySaverHook(
        save_steps=1, output_dir=tmp, summary_op=sh.scalar("loss", lambda: loss, collections=[])
    )
    with sh.MonitoredSession(hooks=[hook]) as sess:
        for _ in range(1000):
            sess.run(lambda: None)
        gc.collect()
        before = peak = rss_mb()
        start = time.perf_counter()
        for step in range(count):
            sess.run(lambda: None)
            if step % 50_000 == 0:
                peak = max(peak, rss_mb())
        elapsed = time.perf_counter() - start
    peak = max(peak, rss_mb())
    with open(writer_path(tmp), "rb") as file:
        records = sum(1 for _ in iter_records(file))
    sh.SummaryWriterCache.clear()
    return {
        "due_steps": count,
        "rss_growth_MB": peak - before,
        "due_steps_per_second": count / elapsed,
        "records_read_back": records,
        "expected": count + 1001,  # the file version, then one record per step
    }


def measure(quick: bool, device: str) -> Result:
    """Run :func:`p6_many_events` in a fresh process and read its result back."""
    count = "5000" if quick else "1000000"
    command = [sys.executable, "-m", "benchmarks.p6_memory", count]
    out = subprocess.run(command, capture_output=True, text=True, check=True, cwd=_ROOT).stdout
    return Result(**json.loads(out))


_ROOT = __file__.rsplit("/benchmarks/", 1)[0]

if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as root:
        result = p6_many_events(int(sys.argv[1]), root)
    print(json.dumps(dataclasses.asdict(result)))
