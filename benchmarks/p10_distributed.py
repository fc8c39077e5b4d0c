"""P10: summaries across two ranks (gloo on this machine's CPU, or NCCL with two GPUs):
what a due step of 10 sharded histograms and 100 reduced scalars sends, beside what a
user would write without this package (``full_tensor()`` for each histogram, one
``all_reduce`` per scalar); and what a non-due step costs under DDP with ``save_steps``
and with ``save_secs``, beside asking rank zero on every step.

Run by ``measure`` as two fresh processes of this module (``python -m
benchmarks.p10_distributed RESULT_FILE QUICK``); rank zero writes the numbers.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from typing import Any

from benchmarks.harness import Result

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _due_step(quick: bool) -> dict[str, Any]:
    import torch
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    import summary_hook as sh
    from benchmarks.harness import CountCollectives, median_times
    from summary_hook._evaluation.histogram import device_histogram

    width = 256 if quick else 1024
    layers = torch.nn.Sequential(*(torch.nn.Linear(width, width) for _ in range(10)))
    fully_shard(layers)
    rank = dist.get_rank()
    values = [torch.tensor(float(rank + i)) for i in range(100)]
    ops = [sh.histogram(f"w/{i}", lambda i=i: layers[i].weight, collections=[]) for i in range(10)]
    ops += [
        sh.scalar(f"s/{i}", lambda i=i: values[i], reduce="mean", collections=[])
        for i in range(100)
    ]
    merged = sh.merge(ops)

    def ours() -> None:
        sh.evaluate(merged)

    def by_hand() -> None:
        for layer in layers:
            whole = layer.weight.full_tensor()
            if rank == 0:
                device_histogram(whole).tolist()
        means = []
        for value in values:
            reduced = value.clone()
            dist.all_reduce(reduced)
            means.append(float(reduced) / dist.get_world_size())

    counts = {}
    for name, fn in (("summary_hook", ours), ("by_hand", by_hand)):
        counter = CountCollectives()
        with counter.step(due=True):
            fn()
        (step,) = counter.steps["due"]
        counts[name] = {"collectives": len(step["collectives"]), "bytes": step["bytes"]}
    times = median_times({"summary_hook": ours, "by_hand": by_hand}, 3 if quick else 7)
    parameters = sum(layer.weight.numel() for layer in layers)
    return {"parameters": parameters, "counts": counts, "seconds": times}


def _non_due_steps(quick: bool) -> dict[str, Any]:
    """Microseconds per non-due step of a loop with the hook, beside the bare loop and a
    loop that asks rank zero on every step; the first (due) step is not timed."""
    import statistics

    import torch.distributed as dist

    import summary_hook as sh
    from benchmarks.harness import CountCollectives

    steps = 200 if quick else 2000
    sh.scalar("loss", lambda out: out, reduce="mean", collections=["p10"])
    scaffold = sh.Scaffold(summary_op=sh.merge_all("p10"))
    logdir = tempfile.TemporaryDirectory()
    writer = sh.FileWriter(logdir.name)

    def step() -> float:
        return 1.0

    def ask_rank_zero() -> None:
        dist.broadcast_object_list([False], src=0)

    def timed(name: str, counter: CountCollectives) -> float:
        if name in ("bare", "broadcast_every_step"):
            run: Any = step if name == "bare" else ask_rank_zero
            session = None
        else:
            period = {"save_steps": 10**9} if name == "save_steps" else {"save_secs": 3600}
            hook = sh.SummarySaverHook(summary_writer=writer, scaffold=scaffold, **period)
            session = sh.MonitoredSession(hooks=[hook])
            session.run(step)  # the first step is due: not timed
            run = lambda: session.run(step)  # noqa: E731
        dist.barrier()
        with counter.step(due=False):
            start = time.perf_counter()
            for _ in range(steps):
                run()
            seconds = time.perf_counter() - start
        if session is not None:
            session.close()
        return seconds / steps * 1e6

    names = ("bare", "save_steps", "save_secs", "broadcast_every_step")
    samples: dict[str, list[float]] = {name: [] for name in names}
    counters = {name: CountCollectives() for name in names}
    repeats = 3 if quick else 7
    for _ in range(repeats):
        for name in names:
            samples[name].append(timed(name, counters[name]))
    writer.close()
    logdir.cleanup()
    per_step = {name: statistics.median(values) for name, values in samples.items()}
    collectives = {
        name: sum(len(s["collectives"]) for s in counter.steps["non_due"]) / (repeats * steps)
        for name, counter in counters.items()
    }
    return {
        "steps": steps,
        "us_per_step": per_step,
        "added_us_per_step": {name: per_step[name] - per_step["bare"] for name in names[1:]},
        "collectives_per_non_due_step": collectives,
    }


def _worker(result_file: str, quick: bool) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", timeout=timedelta(seconds=120))
    report = {"due_step": _due_step(quick), "non_due_steps": _non_due_steps(quick)}
    if dist.get_rank() == 0:
        with open(result_file, "w") as f:
            json.dump(report, f)
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def measure(quick: bool, device: str) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        result_file = os.path.join(tmp, "p10.json")
        env = {
            **os.environ,
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(_free_port()),
            "WORLD_SIZE": "2",
            "PYTHONWARNINGS": "ignore",
            "OMP_NUM_THREADS": "1",
        }
        command = [sys.executable, "-m", "benchmarks.p10_distributed", result_file, str(quick)]
        ranks = [subprocess.Popen(command, env={**env, "RANK": str(r)}, cwd=ROOT) for r in range(2)]
        for process in ranks:
            if process.wait(timeout=600) != 0:
                raise RuntimeError("a P10 rank failed; its output is above")
        with open(result_file) as f:
            report = json.load(f)
    due, non_due = report["due_step"], report["non_due_steps"]
    ours, theirs = due["counts"]["summary_hook"], due["counts"]["by_hand"]
    added = non_due["added_us_per_step"]
    met = (
        ours["collectives"] == 3
        and ours["bytes"] < theirs["bytes"]
        and non_due["collectives_per_non_due_step"]["save_steps"] == 0
        and non_due["collectives_per_non_due_step"]["save_secs"] == 0
    )
    speedup = due["seconds"]["by_hand"] / due["seconds"]["summary_hook"]
    return Result(
        "P10",
        "2 ranks (gloo, CPU): a due step of 10 sharded histograms and 100 reduced scalars",
        ours["collectives"],
        "collectives",
        "a constant number of collectives per due step, O(buckets) bytes; none on "
        "non-due steps, with save_steps or save_secs",
        met,
        report,
        f"{ours['collectives']} collectives and {ours['bytes']:,} bytes, against "
        f"{theirs['collectives']} and {theirs['bytes']:,} by hand "
        f"({due['parameters']:,} parameters), {speedup:.1f}x faster; a non-due step adds "
        f"{added['save_steps']:.1f} µs (save_steps), {added['save_secs']:.1f} µs "
        f"(save_secs), against {added['broadcast_every_step']:.0f} µs for a broadcast per step",
    )


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    _worker(sys.argv[1], sys.argv[2] == "True")
