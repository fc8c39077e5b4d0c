"""A Lightning run that crashes after its step-20 checkpoint, and its resumption, each a
fresh process as a user runs them.

Usage: python resume_run.py ROOT LOGGER PHASE [SAVE_STEPS]
  LOGGER: none (logger=False) | tensorboard (a TensorBoardLogger with a fixed version)
  PHASE: crash (fails at step 25) | resume (from ROOT/ckpt/step=20.ckpt, to step 40)
  SAVE_STEPS: the saver's save_steps (1)
Every summary and Lightning metric holds the phase's number: 1 for crash, 2 for resume.
"""

import os
import sys

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader, TensorDataset

import summary_hook as sh

ROOT, LOGGER, PHASE = sys.argv[1:4]
SAVE_STEPS = int(sys.argv[4]) if len(sys.argv) > 4 else 1
RUN = {"crash": 1.0, "resume": 2.0}[PHASE]


class Model(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(8, 1)
        sh.scalar("summary/run", lambda: RUN)

    def training_step(self, batch, batch_idx):
        if PHASE == "crash" and self.global_step == 25:
            raise RuntimeError("boom at step 25")
        x, y = batch
        self.log("lightning/run", RUN)
        return torch.nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


checkpoints = ModelCheckpoint(
    dirpath=os.path.join(ROOT, "ckpt"), every_n_train_steps=10, save_top_k=-1, filename="{step}"
)
trainer = L.Trainer(
    default_root_dir=ROOT,
    max_steps=40,
    log_every_n_steps=1,
    enable_progress_bar=False,
    enable_model_summary=False,
    logger=TensorBoardLogger(ROOT, version="run") if LOGGER == "tensorboard" else False,
    callbacks=[sh.SummarySaver(save_steps=SAVE_STEPS), checkpoints],
)
data = TensorDataset(torch.randn(400, 8), torch.randn(400, 1))
ckpt = os.path.join(ROOT, "ckpt", "step=20.ckpt") if PHASE == "resume" else None
trainer.fit(Model(), DataLoader(data, batch_size=8), ckpt_path=ckpt)
