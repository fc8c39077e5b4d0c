"""P4: host transfers on a due step: exactly one, for any number of scalars."""

from __future__ import annotations

import summary_hook as sh
from benchmarks.harness import CountTransfers, Result, scalars


def p4_transfers(device: str) -> Result:
    counts = {}
    for n in (1, 10, 100, 1000):
        values = scalars(n, device)
        ops = sh.merge(
            [sh.scalar(f"s{i}", lambda v=v: v, collections=[]) for i, v in enumerate(values)]
            + [
                sh.histogram(f"h{i}", lambda v=values[0]: v.expand(1000), collections=[])
                for i in range(3)
            ]
        )
        with CountTransfers() as counter:
            sh.evaluate(ops)
        counts[n] = counter.transfers
    return Result(
        "P4",
        f"host transfers on a due step ({device}, + 3 histograms)",
        max(counts.values()),
        "transfers",
        "exactly 1 for any number of scalars",
        set(counts.values()) == {1},
        {"transfers_by_scalar_count": counts},
        ", ".join(f"{n} scalars: {c}" for n, c in counts.items()),
    )


def measure(quick: bool, device: str) -> Result:
    return p4_transfers(device)
