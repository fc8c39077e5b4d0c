"""A real 2-process DDP run (gloo, CPU), started by tests/test_ddp.py.

Lightning's DDP launcher starts the second rank by running this script again.
Usage: python tests/ddp_script.py OUTPUT_DIR {steps|secs|raise0|raise1}
"""

from __future__ import annotations

import os
import sys
import time
from datetime import timedelta

import torch
import torch.distributed as dist
from lightning.pytorch.strategies import DDPStrategy

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import summary_hook as sh
from tests.lightning_helpers import TinyModel, make_loader, make_trainer


class RankModel(TinyModel):
    def training_step(self, batch, batch_idx):
        if mode == "secs" and self.global_rank == 1:
            time.sleep(0.03)  # the ranks' clocks disagree; rank zero's must decide
        if mode.startswith("raise") and self.global_step == 5 and self.global_rank == int(mode[-1]):
            raise RuntimeError(f"rank {self.global_rank} fails at step 5")
        return super().training_step(batch, batch_idx)


def mean_across_ranks(out):
    loss = out["loss"].detach().clone()
    dist.all_reduce(loss)  # a collective inside a summary function
    return loss / dist.get_world_size()


if __name__ == "__main__":
    output_dir, mode = sys.argv[1], sys.argv[2]
    model = RankModel()
    sh.scalar("loss/mean", mean_across_ranks)
    sh.scalar("rank", lambda: float(dist.get_rank()))
    sh.histogram("weights", lambda: model.net.weight)
    if mode == "secs":
        saver = sh.SummarySaver(save_secs=0.02, output_dir=output_dir)
    else:
        saver = sh.SummarySaver(save_steps=2 if mode == "steps" else 1, output_dir=output_dir)
    # A short collective timeout, so a rank left waiting for a dead peer fails, not hangs.
    strategy = DDPStrategy(timeout=timedelta(seconds=20))
    trainer = make_trainer(output_dir, strategy=strategy, devices=2, max_steps=8, callbacks=[saver])
    loader = make_loader(batches=64, seed=0)
    trainer.fit(model, loader)
    torch.save(
        {"global_step": trainer.global_step},
        os.path.join(output_dir, f"done{trainer.global_rank}.pt"),
    )
