"""Plain loops whose hooks share their directories with torch's and tensorboardX's
writers, made before and after each hook's own writer within one second.

Usage: python foreign_writers.py ROOT
Writes ROOT/a (torch and tensorboardX before the hook's writer, torch after) and ROOT/b
(torch before, tensorboardX and torch after). The second is forced: the writers are made
just after a second begins, and the script fails if any file name shows another second.
(One tensorboardX writer a directory: two in one second share a name of their own.)
"""

import glob
import os
import sys
import time

import tensorboardX
import torch
from torch.utils.tensorboard import SummaryWriter

import summary_hook as sh

ROOT = sys.argv[1]
model = torch.nn.Linear(4, 1)


def hook(logdir):
    ops = sh.merge(
        [
            sh.scalar("summary/loss", lambda out: out, collections=[]),
            sh.histogram("summary/weight", lambda: model.weight, collections=[]),
        ]
    )
    return sh.SummarySaverHook(save_steps=2, output_dir=logdir, summary_op=ops)


a, b = os.path.join(ROOT, "a"), os.path.join(ROOT, "b")
hooks = [hook(a), hook(b)]
time.sleep(1.02 - time.time() % 1)  # just after a second begins
start = int(time.time())
others = {
    ("a", "torch/before"): SummaryWriter(a),
    ("a", "tbx/before"): tensorboardX.SummaryWriter(a),
    ("b", "torch/before"): SummaryWriter(b),
}
session = sh.MonitoredSession(hooks=hooks)  # each hook's writer opens its file here
others[("a", "torch/after")] = SummaryWriter(a)
others[("b", "tbx/after")] = tensorboardX.SummaryWriter(b)
others[("b", "torch/after")] = SummaryWriter(b)
seconds = {os.path.basename(p).split(".")[3] for p in glob.glob(os.path.join(ROOT, "*", "*"))}
if seconds != {f"{start:010d}"}:
    sys.exit(f"the writers were made in seconds {sorted(seconds)}, not in one")
with session as sess:
    for step in range(10):
        loss = sess.run(lambda n: torch.tensor(1.0 / n), step + 1)
        for (_, tag), writer in others.items():
            writer.add_scalar(tag, float(loss), sess.global_step)
for writer in others.values():
    writer.close()
