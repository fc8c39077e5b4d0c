"""The demo job: train a small regression model on synthetic data and save summaries.

``summary-hook demo`` runs it under Lightning with ``SummarySaver``;
``summary-hook demo --loop plain`` runs the same model in a plain PyTorch loop with
``MonitoredSession``. Both register the same summary ops.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import summary_hook as sh

__all__ = ["DemoConfig", "run_demo"]


@dataclass(frozen=True)
class DemoConfig:
    """What the demo trains and where it writes."""

    output_dir: str = os.path.join("runs", "demo")
    steps: int = 300
    save_steps: int | None = 10
    save_secs: float | None = None
    loop: str = "lightning"
    batch_size: int = 32
    seed: int = 0
    progress: bool = True


def make_data(config: DemoConfig) -> DataLoader[tuple[torch.Tensor, ...]]:
    """A noisy nonlinear regression problem, made on the fly (nothing is downloaded)."""
    generator = torch.Generator().manual_seed(config.seed)
    x = torch.randn(4096, 16, generator=generator)
    w = torch.randn(16, 1, generator=generator) / 4
    y = torch.sin(x @ w * 3) + 0.05 * torch.randn(4096, 1, generator=generator)
    return DataLoader(
        TensorDataset(x, y), batch_size=config.batch_size, shuffle=True, generator=generator
    )


def make_model(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1)
    )


def register_summaries(model: nn.Module, learning_rate: Callable[[], float]) -> None:
    """The demo's summary ops, in the default collection: evaluated on due steps only."""
    sh.scalar("train/loss", lambda out: out["loss"])
    sh.scalar("train/learning_rate", learning_rate)
    # Every weight and gradient (histograms, norms, the global gradient norm), and what
    # each ReLU puts out, with the fraction of it that is zero.
    sh.watch(model, activations=nn.ReLU)
    first = next(p for n, p in model.named_parameters() if n.endswith("weight"))
    sh.image("weights/layer0_map", lambda: weight_map(first), max_outputs=1, dataformats="HW")
    sh.text("train/report", lambda out: loss_report(out["loss"]))


def weight_map(weight: torch.Tensor) -> torch.Tensor:
    """A weight matrix as a grey image in [0, 1]: 0.5 is zero, black and white the extremes."""
    scale = weight.detach().abs().max().clamp(min=1e-12)
    return weight.detach() / (2 * scale) + 0.5


def loss_report(loss: torch.Tensor) -> list[list[str]]:
    """A small Markdown table for TensorBoard's text dashboard."""
    return [["quantity", "value"], ["loss", f"{float(loss):.4f}"]]


def _schedule(optimizer: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )


def _batches(loader: DataLoader[Any], steps: int) -> Iterator[Any]:
    done = 0
    while True:
        for batch in loader:
            if done == steps:
                return
            yield batch
            done += 1


def run_plain(config: DemoConfig) -> None:
    """Train with a plain loop driven by ``MonitoredSession``."""
    model = make_model(config.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    scheduler = _schedule(optimizer, config.steps)
    register_summaries(model, lambda: optimizer.param_groups[0]["lr"])
    scaffold = sh.Scaffold()
    hook = sh.SummarySaverHook(
        save_steps=config.save_steps,
        save_secs=config.save_secs,
        output_dir=config.output_dir,
        scaffold=scaffold,
    )

    def train_step(x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        scheduler.step()
        return {"loss": loss.detach()}

    batches: Any = _batches(make_data(config), config.steps)
    if config.progress:
        from tqdm import tqdm  # type: ignore[import-untyped]

        batches = tqdm(batches, total=config.steps, desc="plain loop", unit="step")
    with sh.MonitoredSession(hooks=[hook], scaffold=scaffold) as sess:
        for x, y in batches:
            sess.run(train_step, x, y)


def run_lightning(config: DemoConfig) -> None:
    """Train with a Lightning ``Trainer`` and ``SummarySaver``."""
    import lightning as L

    class Regressor(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = make_model(config.seed)
            register_summaries(self.model, lambda: self.trainer.optimizers[0].param_groups[0]["lr"])

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            return nn.functional.mse_loss(self.model(x), y)

        def configure_optimizers(self) -> Any:
            optimizer = torch.optim.Adam(self.parameters(), lr=3e-3)
            scheduler = _schedule(optimizer, config.steps)
            return {
                "optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
            }

    saver = sh.SummarySaver(
        save_steps=config.save_steps, save_secs=config.save_secs, output_dir=config.output_dir
    )
    trainer = L.Trainer(
        max_steps=config.steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=config.progress,
        callbacks=[saver],
        default_root_dir=config.output_dir,
    )
    trainer.fit(Regressor(), make_data(config))


def run_demo(config: DemoConfig) -> None:
    """Train as ``config`` says; events go to ``config.output_dir``.

    Raises:
        ValueError: If ``config.loop`` is neither ``"lightning"`` nor ``"plain"``.
    """
    runners = {"lightning": run_lightning, "plain": run_plain}
    if config.loop not in runners:
        raise ValueError(f"loop must be 'lightning' or 'plain', got {config.loop!r}")
    sh.clear_collection()
    runners[config.loop](config)
    sh.SummaryWriterCache.get(config.output_dir).flush()
