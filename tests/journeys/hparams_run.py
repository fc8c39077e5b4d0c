"""A user's script with hyperparameters for TensorBoard's HParams dashboard, in a fresh
process: the README's plain-loop example, or a Lightning module that saves its own
hyperparameters, fitted with the default TensorBoardLogger and a SummarySaver with more.

Usage: python hparams_run.py ROOT plain|lightning|lightning-fails
Writes the run under ROOT; ``lightning-fails`` raises in the fourth training step, with
``TensorBoardLogger(default_hp_metric=False)``, whose placeholder session end would
otherwise be the one TensorBoard keeps.
"""

import sys

import summary_hook as sh


def plain(root):
    import torch

    model = torch.nn.Linear(8, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    sh.scalar("loss", lambda out: out)
    hook = sh.SummarySaverHook(
        save_steps=5,
        output_dir=f"{root}/run",
        scaffold=sh.Scaffold(),
        hparams={"lr": 0.05, "optimizer": "sgd", "bias": True},
        hparam_metrics=["loss"],
    )

    def train_step(x, y):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        return loss

    with sh.MonitoredSession(hooks=[hook]) as sess:
        for _ in range(20):
            sess.run(train_step, torch.randn(16, 8), torch.randn(16, 1))


def lightning(root, fails):
    import lightning as L
    import torch
    from lightning.pytorch.loggers import TensorBoardLogger
    from torch.utils.data import DataLoader, TensorDataset

    class Model(L.LightningModule):
        def __init__(self, lr=0.01, width=8):
            super().__init__()
            self.save_hyperparameters()
            self.net = torch.nn.Linear(width, 1)
            sh.scalar("train/loss", lambda out: out["loss"])

        def training_step(self, batch, batch_idx):
            if fails and batch_idx == 3:
                raise RuntimeError("a failing step")
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.net(x), y)
            self.log("lightning/loss", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    data = TensorDataset(torch.randn(64, 8), torch.randn(64, 1))
    trainer = L.Trainer(
        default_root_dir=root,
        max_steps=8,
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=TensorBoardLogger(root, default_hp_metric=False) if fails else None,
        callbacks=[sh.SummarySaver(save_steps=2, hparams={"batch_size": 8, "seed": "s0"})],
    )
    try:
        trainer.fit(Model(), DataLoader(data, batch_size=8))
    except RuntimeError:
        if not fails:
            raise


if __name__ == "__main__":
    root, mode = sys.argv[1], sys.argv[2]
    if mode == "plain":
        plain(root)
    else:
        lightning(root, fails=mode == "lightning-fails")
