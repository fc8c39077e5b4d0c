"""P13: histograms of every parameter and gradient of a model (``sh.watch``), on the CPU,
one thread: 300 parameters of 1K values and their gradients (600 tensors) beside a
``wandb.watch``-style loop (per tensor: ``min().item()``, ``max().item()``, 64-bin
``torch.histc``, ``.cpu()``); the ATen calls of a due step for 10, 100 and 600 tensors
(torch's profiler); a 24-layer ``TransformerEncoderLayer(256)`` stack beside a loop
of ``SummaryWriter.add_histogram``, per million values; and training a smaller stack with
``sh.watch`` beside ``wandb.watch(model, log="all")`` in offline mode, same model, same
due steps (with the ``bench`` extra)."""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

import torch

import summary_hook as sh
from benchmarks.harness import Result, median_times


def _small_model(parameters: int) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(0)
    model = torch.nn.ParameterList(
        [torch.nn.Parameter(torch.randn(1000, generator=generator)) for _ in range(parameters)]
    )
    for parameter in model:
        parameter.grad = torch.randn(1000, generator=generator)
    return model


def _wandb_style(tensors: list[torch.Tensor]) -> None:
    for tensor in tensors:
        low, high = tensor.min().item(), tensor.max().item()
        torch.histc(tensor, bins=64, min=low, max=high).cpu()


def _aten_calls(op: sh.SummaryOp) -> int:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        sh.evaluate(op)
    return sum(1 for event in prof.events() if event.name.startswith("aten::"))


def _transformer(layers: int) -> torch.nn.Module:
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(256, 8, batch_first=True)
    model = torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
    model(torch.randn(2, 16, 256)).sum().backward()
    return model


def _train(model: torch.nn.Module, steps: int, run: Any = None, after_step: Any = None) -> float:
    """Seconds for ``steps`` SGD steps of ``model`` on one batch, each step called through
    ``run`` (a ``MonitoredSession``'s) if given, and ``after_step`` called with its loss."""
    torch.manual_seed(1)
    x = torch.randn(4, 16, 256)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)

    def step() -> torch.Tensor:
        optimizer.zero_grad()
        loss = model(x).pow(2).mean()
        loss.backward()
        optimizer.step()
        return loss

    start = time.perf_counter()
    for _ in range(steps):
        loss = step() if run is None else run(step)
        if after_step is not None:
            after_step(loss)
    return time.perf_counter() - start


def _beside_wandb(layers: int, steps: int, every: int) -> dict[str, Any]:
    """What a due step of ``sh.watch`` and of ``wandb.watch(log="all")`` adds to training
    (offline, every ``every`` steps), from whole runs less an unwatched one: for wandb, one
    that logs the loss each step as the watched one does, through the same run."""
    try:
        import wandb
    except ImportError:
        return {"skipped": "wandb is not installed: pip install '.[bench]'"}
    due = -(-steps // every)
    plain = _train(_transformer(layers), steps)
    model = _transformer(layers)
    op = sh.watch(model, collections=[])
    with tempfile.TemporaryDirectory() as tmp:
        hook = sh.SummarySaverHook(save_steps=every, output_dir=tmp, summary_op=op)
        with sh.MonitoredSession(hooks=[hook]) as session:
            ours = _train(model, steps, run=session.run)
        os.environ.setdefault("WANDB_SILENT", "true")
        run = wandb.init(mode="offline", dir=tmp, project="p13")
        try:

            def log(loss: torch.Tensor) -> None:
                wandb.log({"loss": loss.item()})

            logged = _train(_transformer(layers), steps, after_step=log)  # wandb's own base
            model = _transformer(layers)
            wandb.watch(model, log="all", log_freq=every)
            theirs = _train(model, steps, after_step=log)
        finally:
            run.finish()
    ours_ms, theirs_ms = (ours - plain) * 1e3 / due, (theirs - logged) * 1e3 / due
    return {
        "layers": layers,
        "steps": steps,
        "due_steps": due,
        "ms_per_due_step": {"ours": ours_ms, "wandb_watch": theirs_ms},
        "wandb_over_ours": theirs_ms / ours_ms if ours_ms > 0 else float("nan"),
    }


def measure(quick: bool, device: str) -> Result:
    from torch.utils.tensorboard import SummaryWriter

    repeats = 3 if quick else 9
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        small = _small_model(30 if quick else 300)
        op = sh.watch(small, norms=False, collections=[])
        tensors = [t for p in small for t in (p, p.grad)]
        times = median_times(
            {"ours": lambda: sh.evaluate(op), "wandb_style": lambda: _wandb_style(tensors)},
            repeats,
        )
        calls = {
            n: _aten_calls(sh.watch(_small_model(n // 2), norms=False, collections=[]))
            for n in (10, 100, 600)
        }
        big = _transformer(2 if quick else 24)
        big_op = sh.watch(big, norms=False, collections=[])
        big_tensors = [t for p in big.parameters() for t in (p, p.grad)]
        values = sum(t.numel() for t in big_tensors)
        with tempfile.TemporaryDirectory() as tmp:
            writer = SummaryWriter(tmp, max_queue=10_000)

            def add_histograms() -> None:
                for i, tensor in enumerate(big_tensors):
                    writer.add_histogram(f"h{i}", tensor, 0, bins="tensorflow")

            big_times = median_times(
                {"ours": lambda: sh.evaluate(big_op), "add_histogram": add_histograms},
                max(2, repeats // 3),
                settle={"add_histogram": writer.flush},
            )
            writer.close()
        anchor = _beside_wandb(2 if quick else 6, 10 if quick else 60, 5 if quick else 10)
    finally:
        torch.set_num_threads(threads)
    per_tensor_calls = (calls[600] - calls[100]) / 500
    transformer_speedup = big_times["add_histogram"] / big_times["ours"]
    details: dict[str, Any] = {
        "tensors": len(tensors),
        "ms": {name: t * 1e3 for name, t in times.items()},
        "wandb_style_over_ours": times["wandb_style"] / times["ours"],
        "aten_calls_by_tensors": {str(n): c for n, c in calls.items()},
        "aten_calls_per_tensor_more": per_tensor_calls,
        "transformer": {
            "tensors": len(big_tensors),
            "values": values,
            "ms": {name: t * 1e3 for name, t in big_times.items()},
            "ms_per_million_values": big_times["ours"] * 1e3 / (values / 1e6),
            "add_histogram_over_ours": transformer_speedup,
        },
        "beside_wandb_watch": anchor,
    }
    met = (
        per_tensor_calls <= 4 and times["ours"] <= times["wandb_style"] and transformer_speedup >= 8
    )
    return Result(
        "P13",
        f"histograms of {len(tensors)} parameters and gradients of 1K values (CPU, one thread)",
        times["ours"] * 1e3,
        "ms",
        "no slower than a wandb.watch-style loop; ≤ 4 ATen calls more per tensor; "
        "≥ 8x an add_histogram loop on a 24-layer transformer",
        met,
        details,
        f"{times['wandb_style'] * 1e3:.1f} ms for the wandb.watch-style loop "
        f"({details['wandb_style_over_ours']:.2f}x); ATen calls for 10, 100, 600 tensors: "
        f"{calls[10]}, {calls[100]}, {calls[600]} ({per_tensor_calls:.1f} per tensor more); "
        f"transformer ({len(big_tensors)} tensors, {values / 1e6:.1f}M values): "
        f"{big_times['ours'] * 1e3:.0f} ms, {transformer_speedup:.1f}x add_histogram; "
        + _anchor_text(anchor),
    )


def _anchor_text(anchor: dict[str, Any]) -> str:
    if "skipped" in anchor:
        return f"wandb.watch: {anchor['skipped']}"
    ms = anchor["ms_per_due_step"]
    return (
        f"training a {anchor['layers']}-layer stack, a due step adds {ms['ours']:.1f} ms with "
        f"sh.watch, {ms['wandb_watch']:.1f} ms with wandb.watch(log='all') offline"
    )
