"""DDP on two CPU processes with Lightning's default logger and SummarySaver.

Usage: python ddp_run.py ROOT
Lightning starts the second process by running this script again.
"""

import sys

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

import summary_hook as sh


class Model(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(8, 1)
        sh.scalar("summary/loss", lambda out: out["loss"])
        sh.histogram("summary/weight", lambda: self.net.weight)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("lightning/loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


if __name__ == "__main__":
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(64, 8), torch.randn(64, 1))
    trainer = L.Trainer(
        default_root_dir=sys.argv[1],
        accelerator="cpu",
        strategy="ddp",
        devices=2,
        max_steps=8,
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        callbacks=[sh.SummarySaver(save_steps=2)],
    )
    trainer.fit(Model(), DataLoader(data, batch_size=4))
