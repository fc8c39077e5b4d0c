"""A Lightning run that tests/test_interrupts.py stops with SIGTERM.

Prints "step N" after SummarySaver has written step N. Usage: python tests/sigterm_child.py LOGDIR
"""

from __future__ import annotations

import os
import sys

import lightning as L

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import summary_hook as sh
from tests.lightning_helpers import TinyModel, make_loader, make_trainer


class Report(L.Callback):
    def on_train_batch_end(self, trainer, *args):
        print(f"step {trainer.global_step}", flush=True)


if __name__ == "__main__":
    logdir = sys.argv[1]
    saver = sh.SummarySaver(
        save_steps=1,
        output_dir=logdir,
        summary_op=sh.scalar("loss", lambda out: out["loss"], collections=[]),
    )
    trainer = make_trainer(logdir, max_steps=100_000, callbacks=[saver, Report()])
    trainer.fit(TinyModel(), make_loader(batches=100_000))
