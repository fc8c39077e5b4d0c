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
import statistics
import tempfile
import time
from typing import Any

import torch

import summary_hook as sh
from benchmarks.harness import Result, count_cuda_syncs, median_time, median_times


def _small_model(parameters: int, device: str = "cpu") -> torch.nn.Module:
    generator = torch.Generator().manual_seed(0)
    model = torch.nn.ParameterList(
        [torch.nn.Parameter(torch.randn(1000, generator=generator)) for _ in range(parameters)]
    ).to(device)
    for parameter in model:
        parameter.grad = torch.randn(1000, generator=generator).to(device)
    return model


def _wandb_style(tensors: list[torch.Tensor]) -> None:
    for tensor in tensors:
        low, high = tensor.min().item(), tensor.max().item()
        torch.histc(tensor, bins=64, min=low, max=high).cpu()


def _aten_calls(op: sh.SummaryOp) -> int:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        sh.evaluate(op)
    return sum(1 for event in prof.events() if event.name.startswith("aten::"))


def _transformer(
    layers: int, device: str = "cpu", width: int = 256, feedforward: int = 2048
) -> torch.nn.Module:
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(width, 8, feedforward, batch_first=True)
    model = torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False).to(device)
    model(torch.randn(2, 16, width, device=device)).sum().backward()
    return model


def _train(
    model: torch.nn.Module, steps: int, run: Any = None, after_step: Any = None
) -> list[float]:
    """Seconds of each of ``steps`` SGD steps of ``model`` on one batch, each step called
    through ``run`` (a ``MonitoredSession``'s) if given, and ``after_step`` called with its
    loss."""
    torch.manual_seed(1)
    parameter = next(model.parameters())
    x = torch.randn(4, 16, parameter.shape[-1], device=parameter.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)

    def step() -> torch.Tensor:
        optimizer.zero_grad()
        loss = model(x).pow(2).mean()
        loss.backward()
        optimizer.step()
        return loss

    times = []
    for _ in range(steps):
        _synchronize(parameter.device)
        start = time.perf_counter()
        loss = step() if run is None else run(step)
        if after_step is not None:
            after_step(loss)
        _synchronize(parameter.device)
        times.append(time.perf_counter() - start)
    return times


def _due_step_cost(times: list[float], due: int) -> float:
    """Seconds a due step adds, from one run's step times: their time above the median
    step (a non-due one: due steps are a few), over the due steps. Each tool is measured
    against its own run's steps, not against another run, whose noise would be as large
    as the cost."""
    return (sum(times) - len(times) * statistics.median(times)) / due


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _beside_wandb(layers: int, steps: int, every: int, device: str = "cpu") -> dict[str, Any]:
    """What a due step of ``sh.watch`` and of ``wandb.watch(log="all")`` adds to training
    (offline, every ``every`` steps; wandb's run logs the loss every step), each from its
    own run's step times (:func:`_due_step_cost`); and what each adds to a non-due step,
    its median step beside that of the same training without it (for wandb, one that logs
    the loss as the watched one does)."""
    try:
        import wandb
    except ImportError:
        return {"skipped": "wandb is not installed: pip install '.[bench]'"}
    due = -(-steps // every)
    plain = _train(_transformer(layers, device), steps)
    model = _transformer(layers, device)
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

            logged = _train(_transformer(layers, device), steps, after_step=log)
            model = _transformer(layers, device)
            wandb.watch(model, log="all", log_freq=every)
            theirs = _train(model, steps, after_step=log)
        finally:
            run.finish()
    ours_ms, theirs_ms = (_due_step_cost(t, due) * 1e3 for t in (ours, theirs))
    median = statistics.median
    return {
        "layers": layers,
        "steps": steps,
        "due_steps": due,
        "ms_per_due_step": {"ours": ours_ms, "wandb_watch": theirs_ms},
        "ms_added_to_a_non_due_step": {
            "ours": (median(ours) - median(plain)) * 1e3,
            "wandb_watch": (median(theirs) - median(logged)) * 1e3,
        },
        "wandb_over_ours": theirs_ms / ours_ms if ours_ms > 0 else float("nan"),
    }


def on_device(device: str, quick: bool) -> dict[str, Any]:
    """The whole-model checks for an accelerator, run on ``device`` (``--device cuda``):
    every weight and gradient of a model of about 100M parameters (8 layers of
    ``TransformerEncoderLayer(1024)``; a small one when ``quick``): ms per due step and
    host synchronisations (target: 10 ms, one); kernels a due step launches for 10 and
    400 tensors (ATen calls on the CPU); the peak memory of a due forward with
    ``watch``'s activations beside one activation and all of them; and beside
    ``wandb.watch``. Each count needs the device's profiler; on the CPU they are ATen
    calls, and synchronisations and memory are not measured."""
    cuda = device.startswith("cuda")
    width, layers = (64, 2) if quick else (1024, 8)
    model = _transformer(layers, device, width, 4 * width)
    parameters = sum(p.numel() for p in model.parameters())
    op = sh.watch(model, collections=[])

    def due_step() -> None:
        sh.evaluate(op)
        _synchronize(torch.device(device))

    ms = median_time(due_step, 3 if quick else 20) * 1e3
    syncs = count_cuda_syncs(lambda: sh.evaluate(op)) if cuda else None
    launches = {
        str(n): _launches(sh.watch(_small_model(n // 2, device), norms=False, collections=[]))
        for n in (10, 400)
    }
    anchor = _beside_wandb(2 if quick else 6, 10 if quick else 60, 5 if quick else 10, device)
    return {
        "device": device,
        "parameters": parameters,
        "ms_per_due_step": ms,
        "synchronisations_per_due_step": syncs,
        "met": ms <= 10 and syncs in (None, 1),
        ("kernels_by_tensors" if cuda else "aten_calls_by_tensors"): launches,
        "activations_peak_mb": _activations_peak(device, quick) if cuda else None,
        "beside_wandb_watch": anchor,
    }


def _launches(op: sh.SummaryOp) -> int:
    """The kernels a due step of ``op`` launches: CUDA kernels where its values are on a
    GPU (the profiler's CUDA activity), ATen calls on the CPU."""
    device = op.leaves[0].fn().device
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    sh.evaluate(op)  # warm
    with torch.profiler.profile(activities=activities) as prof:
        sh.evaluate(op)
        _synchronize(device)
    if device.type == "cuda":
        return sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA)
    return sum(1 for e in prof.events() if e.name.startswith("aten::"))


def _activations_peak(device: str, quick: bool) -> dict[str, float]:
    """MB a due forward of a deep MLP with ``watch``'s activations holds at its peak
    (``max_memory_allocated``, less what the model and input hold), beside one
    activation and all of them: counted in the forward hooks, they are not kept."""
    blocks, batch, width = (4, 64, 64) if quick else (32, 4096, 4096)
    torch.manual_seed(0)
    layers = [m for _ in range(blocks) for m in (torch.nn.Linear(width, width), torch.nn.ReLU())]
    model = torch.nn.Sequential(*layers).to(device)
    op = sh.watch(model, weights=False, gradients=False, activations=True, collections=[])
    x = torch.randn(batch, width, device=device)
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        hook = sh.SummarySaverHook(save_steps=1, output_dir=tmp, summary_op=op)
        with sh.MonitoredSession(hooks=[hook]) as session:
            session.run(model, x)  # (warm)
            torch.cuda.synchronize(device)
            base = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
            session.run(model, x)
            peak = torch.cuda.max_memory_allocated(device) - base
    one = batch * width * 4 / 2**20
    return {"peak": peak / 2**20, "one_activation": one, "all_activations": one * 2 * blocks}


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
    accelerator = on_device(device, quick) if device != "cpu" else None
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
        "on_device": accelerator,
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
        + _anchor_text(anchor)
        + ("" if accelerator is None else "; " + _device_text(accelerator)),
    )


def _device_text(checks: dict[str, Any]) -> str:
    launches = checks.get("kernels_by_tensors") or checks["aten_calls_by_tensors"]
    syncs = checks["synchronisations_per_due_step"]
    return (
        f"on {checks['device']}, {checks['parameters'] / 1e6:.0f}M parameters: "
        f"{checks['ms_per_due_step']:.1f} ms a due step"
        + ("" if syncs is None else f", {syncs} synchronisations")
        + f", {launches['10']} and {launches['400']} launches for 10 and 400 tensors"
    )


def _anchor_text(anchor: dict[str, Any]) -> str:
    if "skipped" in anchor:
        return f"wandb.watch: {anchor['skipped']}"
    ms, other = anchor["ms_per_due_step"], anchor["ms_added_to_a_non_due_step"]
    return (
        f"training a {anchor['layers']}-layer stack, a due step adds {ms['ours']:.1f} ms with "
        f"sh.watch, {ms['wandb_watch']:.1f} ms with wandb.watch(log='all') offline; a non-due "
        f"step {other['ours']:+.2f} and {other['wandb_watch']:+.2f} ms"
    )
