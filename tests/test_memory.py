"""Nothing this package keeps holds a user's model once the user has dropped it.

Plans, templates and writers live on the op or the session they serve; a notebook that
re-runs its cells, or a script that fits again, leaves the earlier models to the
collector. (tests/test_journeys.py runs the notebook itself twice in one kernel.)
"""

from __future__ import annotations

import gc
import weakref

import torch

import summary_hook as sh
from tests.lightning_helpers import TinyModel, make_loader, make_trainer


def notebook_cell(logdir: str) -> weakref.ref[torch.nn.Module]:
    """One run of a cell that builds a model, registers its summaries and trains it."""
    model = torch.nn.Linear(4, 1)
    sh.scalar("loss", lambda out: out)
    sh.histogram("weights", lambda: model.weight)
    scaffold = sh.Scaffold()
    hook = sh.SummarySaverHook(save_steps=2, output_dir=logdir, scaffold=scaffold)
    with sh.MonitoredSession(hooks=[hook], scaffold=scaffold) as sess:
        for _ in range(5):
            sess.run(lambda: model(torch.ones(4)).sum())
    return weakref.ref(model)


def test_a_cell_run_again_lets_the_earlier_models_go(tmp_path):
    runs = [notebook_cell(str(tmp_path)) for _ in range(3)]  # each run replaces the ops
    gc.collect()
    assert [run() is None for run in runs] == [True, True, False]  # the last is registered
    sh.clear_collection()
    gc.collect()
    assert runs[-1]() is None


class Summarized(TinyModel):
    def __init__(self) -> None:
        super().__init__()
        sh.histogram("weights", lambda: self.net.weight)  # reaches the trainer and saver


def test_repeated_fits_let_the_earlier_modules_and_trainers_go(tmp_path):
    refs = []
    for _ in range(3):
        module = Summarized()
        trainer = make_trainer(
            str(tmp_path), max_steps=3, callbacks=[sh.SummarySaver(save_steps=1)]
        )
        trainer.fit(module, make_loader())
        refs.append((weakref.ref(module), weakref.ref(trainer)))
        del module, trainer
    sh.clear_collection()
    gc.collect()
    assert [(m() is None, t() is None) for m, t in refs] == [(True, True)] * 3
