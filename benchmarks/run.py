"""Benchmarks: summary_hook beside torch.utils.tensorboard, tensorboardX and a raw baseline.

Everything is measured in one process and one run, so ratios compare like with like on a
shared, noisy machine. Each measurement is repeated and the median is reported.

    python benchmarks/run.py                  # full run, table and benchmarks/results.json
    python benchmarks/run.py --quick          # a fast smoke run (what the test suite runs)
    python benchmarks/run.py --device cuda    # tensors on a GPU (P1, P2, P4 and P9)
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

import summary_hook as sh
from summary_hook._records import encode_record

HERE = os.path.dirname(os.path.abspath(__file__))


@dataclass
class Result:
    id: str
    measurement: str
    value: float
    unit: str
    target: str
    met: bool | None
    details: dict[str, Any] = field(default_factory=dict)
    comparison: str = ""  # the ratios that the target is about, for the printed table


def median_time(fn: Callable[[], object], repeats: int, number: int = 1) -> float:
    """Median over ``repeats`` of the mean seconds per call over ``number`` calls."""
    return median_times({"fn": fn}, repeats, number)["fn"]


def median_times(
    fns: dict[str, Callable[[], object]], repeats: int, number: int = 1
) -> dict[str, float]:
    """:func:`median_time` of several functions, their repeats taking turns, so that a
    noisy spell on a shared machine hits each alike and their ratios stay fair."""
    for fn in fns.values():
        fn()  # warm up
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            gc.collect()
            start = time.perf_counter()
            for _ in range(number):
                fn()
            times[name].append((time.perf_counter() - start) / number)
    return {name: statistics.median(values) for name, values in times.items()}


def scalars(n: int, device: str) -> list[torch.Tensor]:
    return [torch.tensor(float(i) / 7, device=device) for i in range(n)]


# --- P1: a due step with 100 scalars --------------------------------------------------


def p1_scalars(repeats: int, steps: int, device: str) -> Result:
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboardX import SummaryWriter as XWriter
    from torch.utils.tensorboard import SummaryWriter

    n = 100
    values = scalars(n, device)
    tags = [f"scalar/{i}" for i in range(n)]
    tmp = tempfile.mkdtemp()
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


# --- P2: a histogram of 1M float32 values ---------------------------------------------


def p2_histogram(repeats: int, size: int, device: str) -> Result:
    from torch.utils.tensorboard import SummaryWriter

    values = torch.randn(size, generator=torch.Generator().manual_seed(0)).to(device)
    op = sh.histogram("h", lambda: values, collections=[])
    tmp = tempfile.mkdtemp()
    writer = SummaryWriter(tmp)

    def ours() -> None:
        sh.evaluate(op)

    def torch_histogram() -> None:
        writer.add_histogram("h", values, 0, bins="tensorflow")

    times = median_times({"ours": ours, "torch": torch_histogram}, repeats)
    t_ours, t_torch = times["ours"], times["torch"]
    writer.close()

    from torch.utils.tensorboard.summary import histogram as torch_summary

    ours_histo = sh.evaluate(op).value[0].histo
    bins = list(sh._histogram.BUCKET_LIMITS[1:-1])
    theirs = torch_summary("h", values.cpu().double(), bins=bins).value[0].histo
    same = {
        (limit, n) for limit, n in zip(ours_histo.bucket_limit, ours_histo.bucket, strict=True) if n
    } == {(limit, n) for limit, n in zip(theirs.bucket_limit, theirs.bucket, strict=True) if n}
    speedup = t_torch / t_ours
    return Result(
        "P2",
        f"histogram of {size:,} float32 ({device})",
        t_ours * 1e3,
        "ms",
        "≥ 5x faster than add_histogram, same counts",
        speedup >= 5 and same,
        {
            "summary_hook_ms": t_ours * 1e3,
            "torch_add_histogram_ms": t_torch * 1e3,
            "speedup": speedup,
            "same_bucket_counts": same,
        },
        f"{speedup:.1f}x faster than add_histogram; same counts: {same}",
    )


# --- P3 and P4: a non-due step, and transfers on a due step ---------------------------


def p3_non_due(repeats: int, steps: int) -> Result:
    calls = []
    ops = sh.merge(
        [
            sh.scalar(f"s{i}", lambda: calls.append(1) or torch.tensor(1.0), collections=[])
            for i in range(10)
        ]
    )
    tmp = tempfile.mkdtemp()
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


class CountTransfers(torch.utils._python_dispatch.TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.transfers = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func is torch.ops.aten._local_scalar_dense.default or (
            func is torch.ops.aten._to_copy.default and str(kwargs.get("device")) == "cpu"
        ):
            self.transfers += 1
        return func(*args, **kwargs)


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


# --- P9: a due step on a real-sized model ---------------------------------------------


def p9_model_step(repeats: int, width: int, device: str) -> Result:
    """A due step with 100 scalars and 10 parameter histograms on a 10-layer MLP: what it
    adds to a training step, and on a GPU how many times it synchronises the host."""
    torch.manual_seed(0)
    layers = [torch.nn.Linear(width, width) for _ in range(10)]
    model = torch.nn.Sequential(*(m for layer in layers for m in (layer, torch.nn.ReLU())))
    model = model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    batch = torch.randn(64, width, device=device)

    def train_step() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=False)
        loss = model(batch).square().mean()
        loss.backward()
        optimizer.step()
        return loss.detach()

    train_step()  # gradients exist from here on
    stats: list[Callable[[torch.Tensor], torch.Tensor]] = [
        torch.linalg.vector_norm,
        torch.mean,
        torch.std,
        lambda t: t.abs().max(),
        lambda t: t.abs().mean(),
    ]
    ops = []
    for i, layer in enumerate(layers):
        w = layer.weight
        for j, stat in enumerate(stats):
            ops.append(sh.scalar(f"w{i}/s{j}", lambda w=w, stat=stat: stat(w), []))
            ops.append(sh.scalar(f"g{i}/s{j}", lambda w=w, stat=stat: stat(w.grad), []))
        ops.append(sh.histogram(f"w{i}/weights", lambda w=w: w, []))
    summary_op = sh.merge(ops)
    params = sum(p.numel() for p in model.parameters())

    writers: list[sh.FileWriter] = []

    def session(save_steps: int | None) -> sh.MonitoredSession:
        if save_steps is None:
            return sh.MonitoredSession()
        writer = sh.FileWriter(tempfile.mkdtemp())
        writers.append(writer)
        hook = sh.SummarySaverHook(
            save_steps=save_steps, summary_writer=writer, summary_op=summary_op
        )
        return sh.MonitoredSession(hooks=[hook])

    sessions = {"plain": session(None), "due": session(1), "rare": session(100)}
    samples: dict[str, list[float]] = {name: [] for name in sessions}
    for sess in sessions.values():
        sess.run(train_step)  # the first step is due for every hook
    for _ in range(repeats):
        for name, sess in sessions.items():  # interleaved, so drift hits each alike
            start = time.perf_counter()
            for _ in range(10):
                sess.run(train_step)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            samples[name].append((time.perf_counter() - start) / 10)
    for sess in sessions.values():
        sess.close()
    for writer in writers:
        writer.close()
    plain, due, rare = (statistics.median(samples[name]) for name in ("plain", "due", "rare"))
    syncs: int | None = None
    if device.startswith("cuda"):
        syncs = count_cuda_syncs(lambda: sh.evaluate(summary_op))
    return Result(
        "P9",
        f"due step, 100 scalars + 10 histograms, {params / 1e6:.1f}M-parameter MLP ({device})",
        (due - plain) * 1e3,
        "ms added",
        "report; on a GPU, one synchronisation",
        None if syncs is None else syncs == 1,
        {
            "train_step_ms": plain * 1e3,
            "due_step_added_ms": (due - plain) * 1e3,
            "save_steps_100_added_ms": (rare - plain) * 1e3,
            "parameters": params,
            "cuda_synchronisations_per_due_step": syncs,
        },
        f"a {plain * 1e3:.1f} ms training step; save_steps=100 adds "
        f"{(rare - plain) * 1e3:.2f} ms" + ("" if syncs is None else f"; {syncs} synchronisations"),
    )


def count_cuda_syncs(fn: Callable[[], object]) -> int:
    """How many times ``fn`` synchronises the host with the GPU, from torch's sync debug
    mode, which warns on each synchronising call."""
    torch.cuda.synchronize()
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fn()
    finally:
        torch.cuda.set_sync_debug_mode(previous)
    return sum("synchronizing" in str(w.message) for w in caught)


# --- P5: Lightning fit() ----------------------------------------------------------------


def p5_lightning(repeats: int, steps: int) -> Result:
    import logging

    import lightning as L
    from lightning.pytorch.loggers import TensorBoardLogger
    from torch.utils.data import DataLoader, TensorDataset

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    data = TensorDataset(torch.randn(steps * 4, 8), torch.randn(steps * 4, 1))

    class Model(L.LightningModule):
        def __init__(self, mode: str) -> None:
            super().__init__()
            self.net = torch.nn.Linear(8, 1)
            self.mode = mode
            if mode.startswith("hook"):
                for i in range(10):
                    sh.scalar(f"m/{i}", lambda out, i=i: out["loss"] * i)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.net(x), y)
            if self.mode == "self.log":
                for i in range(10):
                    self.log(f"m/{i}", loss * i)
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.01)

    class StepClock(L.Callback):
        """Times the steps alone: from batch ``warmup`` to the end of training, first
        in the callback list, so set-up and tear-down (opening and closing files,
        Lightning's own) are not spread over the steps."""

        warmup = min(10, steps // 2)

        def __init__(self) -> None:
            self.start = self.stop = 0.0

        def on_train_batch_start(self, trainer: Any, module: Any, batch: Any, index: int) -> None:
            if index == self.warmup:
                self.start = time.perf_counter()

        def on_train_end(self, trainer: Any, module: Any) -> None:
            self.stop = time.perf_counter()

    class EmptyCallback(L.Callback):
        """What Lightning charges for calling any callback's hooks on every step."""

        def on_train_batch_start(self, *args: Any) -> None:
            pass

        def on_train_batch_end(self, *args: Any) -> None:
            pass

    def fit(mode: str) -> float:
        sh.clear_collection()
        tmp = tempfile.mkdtemp()
        clock = StepClock()
        callbacks: list[L.Callback] = [clock]
        logger: Any = False
        if mode == "hook(save_steps=1)":
            callbacks.append(sh.SummarySaver(save_steps=1, output_dir=tmp))
        elif mode == "hook(save_steps=100)":
            callbacks.append(sh.SummarySaver(save_steps=100, output_dir=tmp))
        elif mode == "empty callback":
            callbacks.append(EmptyCallback())
        elif mode == "self.log":
            logger = TensorBoardLogger(tmp)
        trainer = L.Trainer(
            max_steps=steps,
            accelerator="cpu",
            logger=logger,
            log_every_n_steps=1,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=callbacks,
        )
        trainer.fit(Model(mode), DataLoader(data, batch_size=4))
        sh.SummaryWriterCache.clear()
        return (clock.stop - clock.start) / (steps - clock.warmup)

    modes = ["none", "empty callback", "hook(save_steps=1)", "self.log", "hook(save_steps=100)"]
    samples: dict[str, list[float]] = {m: [] for m in modes}
    fit("none")  # warm up
    for _ in range(repeats):
        for mode in modes:  # interleaved, so drift hits every mode alike
            samples[mode].append(fit(mode))
    per_step = {m: statistics.median(v) for m, v in samples.items()}
    noise = statistics.pstdev(samples["none"]) * 1e6
    added = {m: (per_step[m] - per_step["none"]) * 1e6 for m in modes}
    ratio = (
        added["hook(save_steps=1)"] / added["self.log"] if added["self.log"] > 0 else float("inf")
    )
    # Lightning calls every hook of every callback on every step; what any callback
    # costs is Lightning's, so the hook's own part is measured against that.
    beyond_callback = added["hook(save_steps=100)"] - added["empty callback"]
    quiet = abs(beyond_callback) <= max(2 * noise, 0.02 * per_step["none"] * 1e6)
    return Result(
        "P5",
        "Lightning: per-step cost added, hook ÷ self.log+TensorBoardLogger",
        ratio,
        "ratio",
        "≤ 1/3; save_steps=100 within noise of no logging",
        ratio <= 1 / 3 and quiet,
        {
            "per_step_us": {m: v * 1e6 for m, v in per_step.items()},
            "added_us": added,
            "save_steps_100_beyond_an_empty_callback_us": beyond_callback,
            "noise_us": noise,
            "steps": steps,
        },
        f"+{added['hook(save_steps=1)']:.0f} µs vs +{added['self.log']:.0f} µs a step; "
        f"save_steps=100 +{added['hook(save_steps=100)']:.1f} µs, an empty callback "
        f"+{added['empty callback']:.1f} µs, noise {noise:.1f} µs",
    )


# --- P6 and P7: the writer --------------------------------------------------------------


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def p6_many_events(count: int) -> Result:
    from tensorboard.compat.proto.summary_pb2 import Summary

    from summary_hook._records import iter_records

    tmp = tempfile.mkdtemp()
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
    steps = p6_due_steps(count)
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


def p6_due_steps(count: int) -> dict[str, Any]:
    """``count`` due steps through MonitoredSession and the hook: memory and completeness."""
    from summary_hook._records import iter_records

    tmp = tempfile.mkdtemp()
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


def writer_path(logdir: str) -> str:
    (name,) = [n for n in os.listdir(logdir) if "tfevents" in n]
    return os.path.join(logdir, name)


def p7_large_payload(repeats: int) -> Result:
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.summary.writer.record_writer import RecordWriter

    payload = os.urandom(1 << 20)
    t_frame = median_time(lambda: encode_record(payload), repeats, number=20)
    tmp = tempfile.mkdtemp()
    writer = sh.FileWriter(tmp)
    event = Event(step=1, file_version=payload.hex()[: 1 << 20])  # a ~1 MB event

    def through_writer() -> None:
        for _ in range(5):
            writer.add_event(event)
        writer.flush()

    t_writer = median_time(through_writer, repeats) / 5
    writer.close()
    small = payload[: 1 << 16]  # TensorBoard's pure-Python CRC is too slow for 1 MB repeats
    buffer = io.BytesIO()
    t_tb = median_time(lambda: RecordWriter(buffer).write(small), 3) / len(small) * len(payload)
    mb = len(payload) / 2**20
    return Result(
        "P7",
        "1 MB payload: framing and CRC throughput",
        mb / t_frame,
        "MB/s",
        "≥ 200 MB/s",
        mb / t_frame >= 200,
        {
            "framing_MBps": mb / t_frame,
            "through_FileWriter_to_disk_MBps": mb / t_writer,
            "tensorboard_python_writer_MBps": mb / t_tb,
        },
        f"{t_tb / t_frame:,.0f}x TensorBoard's Python writer",
    )


# --- P8: import time --------------------------------------------------------------------


def p8_import(repeats: int) -> Result:
    code = (
        "import time, sys; s = time.perf_counter(); import summary_hook; "
        "print(time.perf_counter() - s, 'lightning' in sys.modules)"
    )
    runs = [
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
        for _ in range(repeats)
    ]
    seconds = statistics.median(float(r[0]) for r in runs)
    lightning = any(r[1] == "True" for r in runs)
    torch_code = (
        "import time; s = time.perf_counter(); import torch; print(time.perf_counter() - s)"
    )
    torch_s = statistics.median(
        float(
            subprocess.run(
                [sys.executable, "-c", torch_code], capture_output=True, text=True, check=True
            ).stdout
        )
        for _ in range(repeats)
    )
    return Result(
        "P8",
        "import summary_hook (torch included)",
        seconds * 1e3,
        "ms",
        "does not import lightning; report the time",
        not lightning,
        {"imports_lightning": lightning, "import_torch_alone_ms": torch_s * 1e3},
        f"import torch alone: {torch_s * 1e3:.0f} ms; lightning imported: {lightning}",
    )


# --- driver -----------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
    }
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            info["cpu"] = next(
                line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def format_results(results: list[Result]) -> str:
    lines = [
        "| # | measurement | result | compared | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        met = {True: "yes", False: "**no**", None: "n/a"}[r.met]
        result = f"{r.value:.3g} {r.unit}"
        lines.append(
            f"| {r.id} | {r.measurement} | {result} | {r.comparison} | {r.target} | {met} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and few repeats")
    parser.add_argument("--device", default="cpu", help="device for P1, P2, P4 and P9 tensors")
    parser.add_argument(
        "--json", default=os.path.join(HERE, "results.json"), help="where to write the numbers"
    )
    args = parser.parse_args(argv)
    quick = args.quick
    repeats = 3 if quick else 7
    torch.manual_seed(0)
    results = [
        p1_scalars(repeats, steps=5 if quick else 100, device=args.device),
        p2_histogram(repeats, size=100_000 if quick else 1_000_000, device=args.device),
        p3_non_due(repeats, steps=2_000 if quick else 100_000),
        p4_transfers(args.device),
        p5_lightning(1 if quick else 5, steps=20 if quick else 1000),
        p6_many_events(5_000 if quick else 1_000_000),
        p7_large_payload(3 if quick else 7),
        p8_import(2 if quick else 5),
        p9_model_step(2 if quick else 5, width=128 if quick else 1024, device=args.device),
    ]
    table = format_results(results)
    print(table)
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "quick": quick,
        "device": args.device,
        "machine": machine(),
        "results": [asdict(r) for r in results],
    }
    with open(args.json, "w") as out:
        json.dump(report, out, indent=2)
    print(f"\nnumbers written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
