"""A Lightning run that TensorBoard watches while it trains: it pauses after step 6
until told to go on, so that a test can look at the server mid-run.

Usage: python live_run.py ROOT
Writes ROOT/paused at step 6 and waits (60 s at most) for ROOT/go on. The logger
flushes every second, so what is written so far reaches the disk while it waits.
"""

import os
import sys
import time

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader, TensorDataset

import summary_hook as sh

ROOT = sys.argv[1]


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


class PauseAtStep6(L.Callback):
    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == 6:
            open(os.path.join(ROOT, "paused"), "w").close()
            deadline = time.monotonic() + 60
            while not os.path.exists(os.path.join(ROOT, "go")) and time.monotonic() < deadline:
                time.sleep(0.1)


trainer = L.Trainer(
    default_root_dir=ROOT,
    max_steps=12,
    log_every_n_steps=1,
    enable_progress_bar=False,
    enable_model_summary=False,
    enable_checkpointing=False,
    logger=TensorBoardLogger(ROOT, flush_secs=1),
    callbacks=[sh.SummarySaver(save_steps=2), PauseAtStep6()],
)
data = TensorDataset(torch.randn(96, 8), torch.randn(96, 1))
trainer.fit(Model(), DataLoader(data, batch_size=8))
