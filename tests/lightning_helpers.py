"""A tiny model and deterministic data for real Trainer runs on the CPU."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset


def make_loader(batches: int = 64, batch_size: int = 2, seed: int = 0) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batches * batch_size, 4, generator=generator)
    y = x.sum(dim=1, keepdim=True) + 0.1 * torch.randn(batches * batch_size, 1, generator=generator)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=False)


class TinyModel(L.LightningModule):
    def __init__(self, returns: str = "tensor", fail_at_step: int | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Linear(4, 1)
        self.returns = returns
        self.fail_at_step = fail_at_step

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        if self.fail_at_step is not None and self.global_step == self.fail_at_step:
            raise RuntimeError(f"boom at step {self.global_step}")
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        if self.returns == "dict":
            return {"loss": loss, "extra": torch.tensor(float(batch_idx))}
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def make_trainer(root: str, **kwargs: Any) -> L.Trainer:
    options: dict[str, Any] = {
        "default_root_dir": root,
        "accelerator": "cpu",
        "devices": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
    }
    options.update(kwargs)
    return L.Trainer(**options)
