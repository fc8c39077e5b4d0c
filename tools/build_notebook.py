"""Write notebooks/quickstart.ipynb from the cells below and execute it in place.

Run after changing a cell: ``CI=true .venv/bin/python tools/build_notebook.py``
(CI=true skips the cell that starts a TensorBoard server), then
``.venv/bin/ruff format notebooks/quickstart.ipynb``, as CI checks the notebook's format.
"""

from __future__ import annotations

import os
import sys

import nbformat
from nbclient import NotebookClient

HERE = os.path.dirname(os.path.abspath(__file__))
NOTEBOOK = os.path.join(os.path.dirname(HERE), "notebooks", "quickstart.ipynb")

CELLS = [
    (
        "markdown",
        """# summary_hook quickstart

TensorFlow's `SummarySaverHook` for PyTorch: summaries are closures, evaluated only on
due steps, moved to the host in one transfer and written as TensorFlow writes them.
This notebook drives the hook by hand, with `MonitoredSession`, and with a Lightning
`Trainer`; re-runs a cell without doubling anything; and reads the results back.""",
    ),
    (
        "code",
        """import shutil

import torch

import summary_hook as sh

LOGDIR = "runs/notebook"
shutil.rmtree(LOGDIR, ignore_errors=True)  # start clean when the notebook is re-run
sh.clear_collection()""",
    ),
    (
        "markdown",
        """## 1. A plain loop, driving the hook by hand

`before_run` decides whether the step is due; `sh.evaluate` runs the summary functions
(only when asked) and `after_run` writes them. The step function here is a stand-in.""",
    ),
    (
        "code",
        """hook = sh.SummarySaverHook(save_steps=10, output_dir=f"{LOGDIR}/by_hand",
                           summary_op=sh.scalar("loss", lambda out: out, collections=[]))
session = sh.StepSession()
hook.begin()
for step in range(50):
    context = sh.SessionRunContext(sh.SessionRunArgs(None), session)
    args = hook.before_run(context)
    loss = torch.tensor(1.0 / (step + 1))  # your training step
    session.advance()
    hook.after_run(context, sh.SessionRunValues(sh.evaluate(args.fetches, loss) if args else None))
hook.end(session)""",
    ),
    (
        "code",
        """from summary_hook.readback import read_scalars

read_scalars(f"{LOGDIR}/by_hand")  # the due steps: the first, then every 10th""",
    ),
    (
        "markdown",
        """## 2. The same with `MonitoredSession`

The session calls every hook around each step; the step function's return value reaches
one-argument summary functions.""",
    ),
    (
        "code",
        """model = torch.nn.Linear(8, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
target = torch.randn(8, 1)


def train_step(x):
    optimizer.zero_grad()
    loss = torch.nn.functional.mse_loss(model(x), x @ target)
    loss.backward()
    optimizer.step()
    return loss.detach()


ops = sh.merge([
    sh.scalar("train/loss", lambda out: out, collections=[]),
    sh.histogram("weights/linear", lambda: model.weight, collections=[]),
    sh.histogram("grads/linear", lambda: model.weight.grad, collections=[]),
])
hook = sh.SummarySaverHook(save_steps=5, output_dir=f"{LOGDIR}/session", summary_op=ops)
with sh.MonitoredSession(hooks=[hook]) as sess:
    for _ in range(100):
        sess.run(train_step, torch.randn(32, 8))
print("final loss:", float(train_step(torch.randn(32, 8))))""",
    ),
    (
        "markdown",
        """## 3. Lightning: `Trainer(callbacks=[SummarySaver(...)])`

Summary ops registered in the model's `__init__` go to the default collection, which
`SummarySaver` saves when training starts.""",
    ),
    (
        "code",
        """import logging
import warnings

import lightning as L
from torch.utils.data import DataLoader, TensorDataset

logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # a quieter notebook
warnings.filterwarnings("ignore", message=".*LeafSpec")  # Lightning 2.6 on newer torch


class Regressor(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(8, 1)
        sh.scalar("train/loss", lambda out: out["loss"])
        sh.histogram("weights/net", lambda: self.net.weight)
        sh.histogram("grads/net", lambda: self.net.weight.grad)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


x = torch.randn(1024, 8)
loader = DataLoader(TensorDataset(x, x @ target), batch_size=16)
trainer = L.Trainer(max_steps=120, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False,
                    callbacks=[sh.SummarySaver(save_steps=10, output_dir=f"{LOGDIR}/lightning")])
trainer.fit(Regressor(), loader)""",
    ),
    (
        "markdown",
        """## 4. Re-running a cell does not double the summaries

Registering a tag again replaces the earlier op in its collection. Run this cell as often
as you like: the collection keeps one op per tag.""",
    ),
    (
        "code",
        """sh.scalar("train/loss", lambda out: out["loss"])
sh.scalar("train/loss", lambda out: out["loss"])  # the same cell, run again
print([op.tags for op in sh.get_collection()])""",
    ),
    (
        "markdown",
        """## 5. Read the results back and plot them

`read_scalars` and `read_histograms` use TensorBoard's own `EventAccumulator` and return
pandas DataFrames; each subdirectory is a run.""",
    ),
    (
        "code",
        """from summary_hook.readback import format_table, read_histograms, summarize

print(format_table(summarize(LOGDIR)))
scalars = read_scalars(LOGDIR)
scalars.head()""",
    ),
    (
        "code",
        """import matplotlib.pyplot as plt

fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
for run, frame in scalars[scalars.tag == "train/loss"].groupby("run"):
    left.plot(frame.step, frame.value, marker=".", label=run)
left.set(title="train/loss", xlabel="step", yscale="log")
left.legend()
weights = read_histograms(LOGDIR).query("run == 'lightning' and tag == 'weights/net'")
mean = weights["sum"] / weights["num"]
right.fill_between(weights.step, weights["min"], weights["max"], alpha=0.3, label="min-max")
right.plot(weights.step, mean, label="mean")
right.set(title="lightning: weights/net", xlabel="step")
right.legend()
plt.show()""",
    ),
    (
        "markdown",
        """## 6. Images and text

`sh.image` takes torch's layouts (a batch `NCHW` by default) and writes TensorFlow's
image summaries; `sh.text` writes Markdown for TensorBoard's text dashboard. Here the
images are read back and one is shown inline.""",
    ),
    (
        "code",
        """from IPython.display import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

grid = torch.linspace(0, 1, 32)
gradient = torch.stack([grid.expand(32, 32), grid[:, None].expand(32, 32), 1 - grid.expand(32, 32)])
pictures = sh.image("samples/gradient", lambda: gradient, max_outputs=1, dataformats="CHW",
                    collections=[])
notes = sh.text("notes", lambda: [["run", "note"], ["media", "one image, one table"]],
                collections=[])
hook = sh.SummarySaverHook(save_steps=1, output_dir=f"{LOGDIR}/media",
                           summary_op=sh.merge([pictures, notes]))
with sh.MonitoredSession(hooks=[hook]) as session:
    session.run(lambda: None)

media = EventAccumulator(f"{LOGDIR}/media", size_guidance={"images": 0})
media.Reload()
Image(media.Images("samples/gradient/image")[-1].encoded_image_string)""",
    ),
    (
        "markdown",
        """## 7. A whole model at once

`sh.watch(model)` registers histograms of every weight and gradient, their norms and the
global gradient norm; `sh.output_of(module)` gives a module's output on due steps, for
any op. Both are read on due steps only.""",
    ),
    (
        "code",
        """torch.manual_seed(0)
mlp = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
sgd = torch.optim.SGD(mlp.parameters(), lr=0.05)
watched = sh.watch(mlp, collections=[])
hidden = sh.histogram("activations/relu", sh.output_of(mlp[1]), collections=[])


def mlp_step(x):
    sgd.zero_grad()
    loss = mlp(x).pow(2).mean()
    loss.backward()
    sgd.step()
    return loss


hook = sh.SummarySaverHook(save_steps=5, output_dir=f"{LOGDIR}/watched",
                           summary_op=[watched, hidden])
with sh.MonitoredSession(hooks=[hook]) as session:
    for _ in range(20):
        session.run(mlp_step, torch.randn(16, 8))
print(format_table(summarize(f"{LOGDIR}/watched")))""",
    ),
    (
        "markdown",
        """## 8. TensorBoard in the notebook

With a live kernel, these cells start TensorBoard on `runs/notebook` and show it inline
(skipped when the notebook runs in CI).""",
    ),
    ("code", """%load_ext tensorboard"""),
    (
        "code",
        """import os

if not os.environ.get("CI"):
    %tensorboard --logdir runs/notebook""",
    ),
]


def build() -> nbformat.NotebookNode:
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    for kind, source in CELLS:
        make = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        notebook.cells.append(make(source))
    return notebook


def execute(notebook: nbformat.NotebookNode, cwd: str) -> None:
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": cwd}}
    ).execute()


if __name__ == "__main__":
    nb = build()
    execute(nb, os.path.dirname(NOTEBOOK))
    nbformat.write(nb, NOTEBOOK)
    print(f"wrote {NOTEBOOK}", file=sys.stderr)
