"""P9: a due step with 100 scalars and 10 weight histograms on a 10-layer MLP: what it adds
to a training step and, on a GPU, how many times it synchronises the host."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable

import torch

import summary_hook as sh
from benchmarks.harness import Result, count_cuda_syncs


def p9_model_step(repeats: int, width: int, device: str, tmp: str) -> Result:
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
        writer = sh.FileWriter(os.path.join(tmp, str(len(writers))))
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


def measure(quick: bool, device: str) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        width = 128 if quick else 1024
        return p9_model_step(2 if quick else 5, width=width, device=device, tmp=tmp)
