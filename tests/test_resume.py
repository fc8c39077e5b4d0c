"""A resumed run's SessionLog.START makes TensorBoard drop the dead run's stale points."""

from __future__ import annotations

from tensorboard.backend.event_processing import plugin_event_accumulator

import summary_hook as sh
from tests.conftest import accumulator, event_files


def train(logdir: str, first_step: int, last_step: int, offset: float) -> None:
    sh.clear_collection()
    sh.scalar("loss", lambda out: out)
    scaffold = sh.Scaffold()
    hook = sh.SummarySaverHook(save_steps=1, output_dir=logdir, scaffold=scaffold)
    session = sh.MonitoredSession(hooks=[hook], scaffold=scaffold, global_step=first_step)
    with session as sess:
        while sess.global_step < last_step:
            sess.run(lambda: offset + sess.global_step)
    sh.SummaryWriterCache.clear()  # the process ends: the next run opens a new file


def test_resume_purges_points_past_the_resume_step(tmp_path):
    logdir = str(tmp_path)
    train(logdir, 0, 30, offset=1000.0)  # dies at step 30; last checkpoint at step 20
    train(logdir, 20, 40, offset=0.0)  # resumes from the checkpoint
    assert len(event_files(logdir)) == 2

    points = [(e.step, e.value) for e in accumulator(logdir).Scalars("loss")]
    steps = [step for step, _ in points]
    assert steps == list(range(1, 41))  # no step twice
    assert all(value >= 1000 for step, value in points if step <= 20)  # the first run's
    assert all(value < 1000 for step, value in points if step > 20)  # none from the dead run


def test_resume_purge_also_holds_for_the_data_provider_accumulator(tmp_path):
    logdir = str(tmp_path)
    train(logdir, 0, 30, offset=1000.0)
    train(logdir, 20, 40, offset=0.0)
    acc = plugin_event_accumulator.EventAccumulator(logdir)
    acc.Reload()
    events = acc.Tensors("loss")
    assert [e.step for e in events] == list(range(1, 41))
    assert all(float(e.tensor_proto.float_val[0]) < 1000 for e in events if e.step > 20)
