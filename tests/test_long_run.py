"""Long runs: memory stays flat and the single file reads back complete (no rollover).

The million-step figure comes from the benchmark suite (P6); this is its scaled-down twin.
"""

from __future__ import annotations

import gc

import torch

import summary_hook as sh
from benchmarks.harness import rss_mb
from summary_hook._events.records import iter_records
from tests.conftest import event_files

STEPS = 30_000


def test_many_due_steps_keep_memory_flat_and_the_file_complete(tmp_path):
    loss = torch.tensor(0.5)
    hook = sh.SummarySaverHook(
        save_steps=1,
        output_dir=str(tmp_path),
        summary_op=sh.scalar("loss", lambda: loss, collections=[]),
    )
    with sh.MonitoredSession(hooks=[hook]) as sess:
        for _ in range(2_000):  # warm up allocators and caches
            sess.run(lambda: None)
        gc.collect()
        before = rss_mb()
        for _ in range(STEPS):
            sess.run(lambda: None)
        gc.collect()
        growth = rss_mb() - before
    assert growth < 10, f"resident memory grew {growth:.1f} MB over {STEPS} due steps"
    (path,) = event_files(str(tmp_path))  # one file: writers never roll over
    with open(path, "rb") as file:
        assert sum(1 for _ in iter_records(file)) == 1 + STEPS + 2_000  # version, steps
