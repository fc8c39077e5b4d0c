"""P3: what MonitoredSession adds to a step that is not due: no function called, no transfer."""

from __future__ import annotations

import tempfile

import torch

import summary_hook as sh
from benchmarks.harness import CountTransfers, Result, median_time


def p3_non_due(repeats: int, steps: int, tmp: str) -> Result:
    calls = []
    ops = sh.merge(
        [
            sh.scalar(f"s{i}", lambda: calls.append(1) or torch.tensor(1.0), collections=[])
            for i in range(10)
        ]
    )
    hook = sh.SummarySaverHook(save_steps=10**12, output_dir=tmp, summary_op=ops)

    def step() -> None:
        pass

    sess = sh.MonitoredSession(hooks=[hook])
    sess.run(step)  # the first, due step
    calls.clear()

    def hooked() -> None:
        for _ in range(steps):
            sess.run(step)

    def direct() -> None:
        for _ in range(steps):
            step()

    with CountTransfers() as counter:
        t_hooked = median_time(hooked, repeats) / steps
    t_direct = median_time(direct, repeats) / steps
    sess.close()
    added_us = (t_hooked - t_direct) * 1e6
    return Result(
        "P3",
        "non-due step: time MonitoredSession adds",
        added_us,
        "µs",
        "≤ 2 µs; no function calls; no transfers",
        added_us <= 2 and not calls and counter.transfers == 0,
        {
            "summary_calls": len(calls),
            "host_transfers": counter.transfers,
            "direct_call_us": t_direct * 1e6,
        },
        f"{len(calls)} function calls, {counter.transfers} transfers",
    )


def measure(quick: bool, device: str) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        return p3_non_due(3 if quick else 7, steps=2_000 if quick else 100_000, tmp=tmp)
