"""A Lightning user's script under one of the documented multi-process strategies, with
the default logger, on two CPU processes, in a fresh process.

Usage: python strategies.py ROOT STRATEGY
  STRATEGY: ddp | ddp_spawn | fsdp | model_parallel
Under ddp_spawn the module registers its lambdas in setup(), as the README says: the
processes that strategy starts do not run the module's __init__. Its sh.watch, made in
__init__ on every strategy, crosses to them with the saver (it can be pickled).
"""

import sys

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

import summary_hook as sh

ROOT, STRATEGY = sys.argv[1:3]


def register_summaries(module):
    sh.scalar("summary/loss", lambda out: out["loss"])
    sh.histogram("summary/weight", lambda: module.net[0].weight)
    sh.histogram("summary/grad", lambda: module.net[0].weight.grad)


class Model(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1)
        )
        sh.watch(self)
        if STRATEGY != "ddp_spawn":
            register_summaries(self)

    def setup(self, stage):
        if STRATEGY == "ddp_spawn":
            register_summaries(self)  # every spawned process runs setup()

    def configure_model(self):
        if STRATEGY == "model_parallel":
            from torch.distributed.fsdp import fully_shard

            fully_shard(self.net, mesh=self.device_mesh["data_parallel"])

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("lightning/loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def strategy():
    if STRATEGY == "fsdp":
        from lightning.pytorch.strategies import FSDPStrategy

        return FSDPStrategy(process_group_backend="gloo")
    if STRATEGY == "model_parallel":
        from lightning.pytorch.strategies import ModelParallelStrategy

        return ModelParallelStrategy(data_parallel_size=2, tensor_parallel_size=1)
    return STRATEGY


if __name__ == "__main__":
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(64, 8), torch.randn(64, 1))
    trainer = L.Trainer(
        default_root_dir=ROOT,
        accelerator="cpu",
        devices=2,
        strategy=strategy(),
        max_steps=8,
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        callbacks=[sh.SummarySaver(save_steps=2)],
    )
    trainer.fit(Model(), DataLoader(data, batch_size=8))
