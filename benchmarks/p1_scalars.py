"""P1: a due step with 100 scalars, beside torch's and tensorboardX's add_scalar and a raw
baseline (the same events built with TensorBoard's protos, framed with the native CRC)."""

from __future__ import annotations

import os
import tempfile
import time

import torch

import summary_hook as sh
from benchmarks.harness import Result, median_times, scalars
from summary_hook._events.records import encode_record


def p1_scalars(repeats: int, steps: int, device: str, tmp: str) -> Result:
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboardX import SummaryWriter as XWriter
    from torch.utils.tensorboard import SummaryWriter

    n = 100
    values = scalars(n, device)
    tags = [f"scalar/{i}" for i in range(n)]
    ops = sh.merge(
        [sh.scalar(t, lambda v=v: v, collections=[]) for t, v in zip(tags, values, strict=True)]
    )
    hook = sh.SummarySaverHook(save_steps=1, output_dir=os.path.join(tmp, "ours"), summary_op=ops)
    session = sh.MonitoredSession(hooks=[hook])
    torch_writer = SummaryWriter(os.path.join(tmp, "torch"))
    tbx_writer = XWriter(os.path.join(tmp, "tbx"))
    raw_file = open(os.path.join(tmp, "raw.tfevents"), "wb")  # noqa: SIM115 - closed below

    # Each contender runs its steps and then flushes once, as a training loop would.
    # This package's flush also fsyncs (as TensorFlow's does) and the raw file's does
    # not, so the two fast contenders run 10x the steps, to measure the steps and not
    # the one flush; the slow writers' flushes are small beside their steps.
    fast_steps = 10 * steps

    def train_step() -> None:
        pass

    def ours() -> None:
        for _ in range(fast_steps):
            session.run(train_step)
        hook.summary_writer.flush()

    def with_torch() -> None:
        for step in range(steps):
            for tag, value in zip(tags, values, strict=True):
                torch_writer.add_scalar(tag, value, step)
        torch_writer.flush()

    def with_tbx() -> None:
        for step in range(steps):
            for tag, value in zip(tags, values, strict=True):
                tbx_writer.add_scalar(tag, value, step)
        tbx_writer.flush()

    def raw() -> None:
        # The same events with no framework: values already on the host, TensorBoard's
        # protos, native CRC framing, a buffered file.
        host = torch.stack(values).tolist()
        for step in range(fast_steps):
            event = Event(wall_time=time.time(), step=step)
            add = event.summary.value.add
            for tag, number in zip(tags, host, strict=True):
                add(tag=tag, simple_value=number)
            raw_file.write(encode_record(event.SerializeToString()))
        raw_file.flush()

    contenders = {"summary_hook": ours, "torch": with_torch, "tensorboardX": with_tbx, "raw": raw}
    step_counts = {"summary_hook": fast_steps, "torch": steps, "tensorboardX": steps}
    per_value = {
        name: seconds / (step_counts.get(name, fast_steps) * n)
        for name, seconds in median_times(contenders, repeats).items()
    }
    session.close()
    torch_writer.close()
    tbx_writer.close()
    raw_file.close()
    ours_us = per_value["summary_hook"] * 1e6
    vs_torch = per_value["torch"] / per_value["summary_hook"]
    vs_tbx = per_value["tensorboardX"] / per_value["summary_hook"]
    vs_raw = per_value["summary_hook"] / per_value["raw"]
    return Result(
        "P1",
        "due step, 100 scalars: time per value",
        ours_us,
        "µs",
        "≤ 1/20 of add_scalar; ≤ 2x raw",
        vs_torch >= 20 and vs_raw <= 2,
        {
            "per_value_us": {k: v * 1e6 for k, v in per_value.items()},
            "torch_over_ours": vs_torch,
            "tensorboardX_over_ours": vs_tbx,
            "ours_over_raw": vs_raw,
            "steps": {
                "summary_hook": fast_steps,
                "raw": fast_steps,
                "torch": steps,
                "tensorboardX": steps,
            },
            "device": device,
        },
        f"{vs_torch:.0f}x faster than add_scalar, {vs_tbx:.0f}x than tensorboardX; "
        f"{vs_raw:.2f}x raw",
    )


def measure(quick: bool, device: str) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        return p1_scalars(3 if quick else 7, steps=5 if quick else 100, device=device, tmp=tmp)
