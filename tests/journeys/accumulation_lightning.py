"""The README's gradient-accumulation example as a Lightning user writes it: the same
seed, model, data and numbers, with ``accumulate_grad_batches=4``, in a fresh process.

Usage: python accumulation_lightning.py OUTPUT_DIR
"""

import sys

import lightning as L
import torch

import summary_hook as sh


class Model(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(8, 1)
        sh.scalar("train/loss", lambda out: out["loss"])  # Lightning divides it by 4 too
        sh.histogram("gradients/weight", lambda: self.net.weight.grad)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


if __name__ == "__main__":
    torch.manual_seed(0)
    model = Model()
    data = torch.utils.data.TensorDataset(torch.randn(160, 8), torch.randn(160, 1))
    trainer = L.Trainer(
        max_epochs=1,
        accumulate_grad_batches=4,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[sh.SummarySaver(save_steps=2, output_dir=sys.argv[1])],
    )
    trainer.fit(model, torch.utils.data.DataLoader(data, batch_size=4))
