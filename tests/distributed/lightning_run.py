"""A real two-process Lightning run on the CPU, started by tests/test_distributed.py;
Lightning's launcher starts the second rank by running this script again.

Usage: python tests/distributed/lightning_run.py OUTPUT_DIR MODE

MODE:
  model_parallel  ModelParallelStrategy with an FSDP2 (fully_shard) model: histograms of
                  the sharded weights and gradients; a callback saves the gathered
                  tensors of each due step for the test to compare
  ddp_secs        DDP with save_secs: a callback counts the collectives of every step
  ddp_control     the same run without SummarySaver: the training's own collectives

Each rank writes OUTPUT_DIR/rank<r>.json: the collectives of each step and its step.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import timedelta
from typing import Any

import lightning as L
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import summary_hook as sh
from benchmarks.harness import CountCollectives
from tests.lightning_helpers import TinyModel, make_loader, make_trainer


class ShardedModel(TinyModel):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 1)
        )

    def configure_model(self) -> None:
        from torch.distributed.fsdp import fully_shard

        fully_shard(self.net, mesh=self.device_mesh["data_parallel"])


class CountPerStep(L.Callback):
    """Counts the collectives from the start of each batch to its end, after the saver's."""

    def __init__(self) -> None:
        self.counter = CountCollectives()
        self.steps: list[dict[str, Any]] = []

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        self.calls = len(self.counter.calls)
        self.counter.__enter__()

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.counter.__exit__(None, None, None)
        self.steps.append(
            {"step": trainer.global_step, "collectives": self.counter.calls[self.calls :]}
        )


class GatherAtDueSteps(L.Callback):
    """Keeps the whole weight and gradient of the first layer at every step (every rank
    gathers; rank zero saves)."""

    def __init__(self) -> None:
        self.gathered: dict[int, dict[str, torch.Tensor]] = {}

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, *args: Any) -> None:
        weight = pl_module.net[0].weight
        self.gathered[trainer.global_step] = {
            "weight": weight.full_tensor().detach().clone(),
            "grad": weight.grad.full_tensor().detach().clone(),
        }


if __name__ == "__main__":
    output_dir, mode = sys.argv[1], sys.argv[2]
    os.makedirs(output_dir, exist_ok=True)
    counter = CountPerStep()
    callbacks: list[L.Callback] = []
    if mode == "model_parallel":
        from lightning.pytorch.strategies import ModelParallelStrategy

        model: TinyModel = ShardedModel()
        sh.histogram("weight", lambda: model.net[0].weight)
        sh.histogram("grad", lambda: model.net[0].weight.grad)
        sh.scalar("weight_sum", lambda: model.net[0].weight.sum())
        gather = GatherAtDueSteps()
        saver = sh.SummarySaver(save_steps=2, output_dir=output_dir)
        callbacks = [saver, gather, counter]
        strategy: Any = ModelParallelStrategy(
            data_parallel_size=2, tensor_parallel_size=1, timeout=timedelta(seconds=60)
        )
    else:
        from lightning.pytorch.strategies import DDPStrategy

        model = TinyModel()
        sh.scalar("loss", lambda out: out["loss"] if isinstance(out, dict) else out, reduce="mean")
        sh.histogram("weights", lambda: model.net.weight)
        saver = sh.SummarySaver(save_secs=3600, output_dir=output_dir)
        callbacks = [saver, counter] if mode == "ddp_secs" else [counter]
        strategy = DDPStrategy(timeout=timedelta(seconds=60))
    trainer = make_trainer(
        output_dir, strategy=strategy, devices=2, max_steps=12, callbacks=callbacks
    )
    trainer.fit(model, make_loader(batches=64, seed=0))
    if mode == "model_parallel" and trainer.is_global_zero:
        torch.save(gather.gathered, os.path.join(output_dir, "gathered.pt"))
    with open(os.path.join(output_dir, f"rank{trainer.global_rank}.json"), "w") as f:
        json.dump({"steps": counter.steps}, f)
