"""P13: histograms of every parameter and gradient of a model (``sh.watch``), on the CPU,
one thread: 300 parameters of 1K values and their gradients (600 tensors) beside a
``wandb.watch``-style loop (per tensor: ``min().item()``, ``max().item()``, 64-bin
``torch.histc``, ``.cpu()``); the ATen calls of a due step for 10, 100 and 600 tensors
(torch's profiler); and a 24-layer ``TransformerEncoderLayer(256)`` stack beside a loop
of ``SummaryWriter.add_histogram``, per million values."""

from __future__ import annotations

import tempfile
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
        f"{big_times['ours'] * 1e3:.0f} ms, {transformer_speedup:.1f}x add_histogram",
    )
