"""A Lightning user's script: a model that logs its own metric and registers summaries,
fitted with SummarySaver under one logger setup, in a fresh process.

Usage: python lightning_run.py ROOT LOGGERS [FITS [ddp | ddp_spawn | live]]
  LOGGERS: default | tensorboard | csv | none | tensorboard+csv
  FITS: how many Trainers fit one after another in this process (default 1)
  ddp: on two CPU processes (Lightning starts the second by running this script again)
  ddp_spawn: on two CPU processes that Lightning spawns and pickles the Trainer for
  live: the TensorBoardLogger flushes every second, and the run pauses after step 6,
    writing ROOT/paused, until ROOT/go exists (60 s at most), so that a test can look
    at a TensorBoard server mid-run
Prints one line per fit: the saver's output_dir (on rank zero; None on the other).
"""

import os
import sys
import time

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
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


class PauseAtStep6(L.Callback):
    def __init__(self, root):
        self.root = root

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == 6:
            open(os.path.join(self.root, "paused"), "w").close()
            deadline = time.monotonic() + 60
            while not os.path.exists(os.path.join(self.root, "go")):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.1)


def loggers(root, kind, flush_secs=120):
    if kind == "default":
        return {}
    choice = {
        "tensorboard": [TensorBoardLogger(root, flush_secs=flush_secs)],
        "csv": [CSVLogger(root)],
        "none": False,
        "tensorboard+csv": [CSVLogger(root, name="csv_logs"), TensorBoardLogger(root)],
    }[kind]
    return {"logger": choice}


def main(root, kind, fits, mode):
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(64, 8), torch.randn(64, 1))
    spawned = mode in ("ddp", "ddp_spawn")
    processes = {"accelerator": "cpu", "strategy": mode, "devices": 2} if spawned else {}
    for _ in range(fits):
        saver = sh.SummarySaver(save_steps=2)
        pause = [PauseAtStep6(root)] if mode == "live" else []
        trainer = L.Trainer(
            default_root_dir=root,
            max_steps=8,
            log_every_n_steps=1,
            enable_progress_bar=False,
            enable_model_summary=False,
            enable_checkpointing=False,
            callbacks=[saver, *pause],
            **loggers(root, kind, flush_secs=1 if mode == "live" else 120),
            **processes,
        )
        trainer.fit(Model(), DataLoader(data, batch_size=8))
        print(saver.output_dir)


if __name__ == "__main__":  # (ddp_spawn's processes import this file, and must not fit)
    fits = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    main(sys.argv[1], sys.argv[2], fits, mode=sys.argv[4] if len(sys.argv) > 4 else None)
