"""StepCounterHook, ported from TensorFlow's StepCounterHookTest (basic_session_run_hooks_test)."""

from __future__ import annotations

import logging

import pytest

import summary_hook as sh


class RecordingWriter:
    """Like TensorFlow's FakeSummaryWriter: what was written, by step."""

    def __init__(self) -> None:
        self.summaries: dict[int, list] = {}

    def add_summary(self, summary, global_step=None):
        self.summaries.setdefault(global_step, []).append(summary)

    def add_session_log(self, session_log, global_step=None):
        pass

    def flush(self):
        pass


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr("time.time", clock)
    return clock


def run(hook: sh.StepCounterHook, increments: int, runs: int, clock: Clock, tick: float = 0.0):
    """``runs`` runs, each ``tick`` seconds after the last, that add ``increments`` to the
    global step (TensorFlow's tests increment a variable in the train op)."""
    step = [0]

    def train() -> None:
        step[0] += increments

    with sh.MonitoredSession(hooks=[hook], global_step=lambda: step[0]) as session:
        for _ in range(runs):
            clock.now += tick
            session.run(train)


def written(writer: RecordingWriter) -> list[int]:
    for summaries in writer.summaries.values():
        (summary,) = summaries
        (value,) = summary.value
        assert value.tag == "global_step/sec" and value.simple_value > 0
    return sorted(writer.summaries)


def test_step_counter_every_n_steps(clock, caplog):
    writer = RecordingWriter()
    hook = sh.StepCounterHook(every_n_steps=10, summary_writer=writer)
    with caplog.at_level(logging.WARNING, logger="summary_hook"):
        run(hook, 1, 30, clock, tick=0.01)
    assert written(writer) == [11, 21]  # the first trigger, at step 1, only arms the timer
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_step_counter_every_n_secs(clock):
    writer = RecordingWriter()
    hook = sh.StepCounterHook(every_n_steps=None, every_n_secs=0.1, summary_writer=writer)
    step = [0]
    with sh.MonitoredSession(hooks=[hook], global_step=lambda: step[0]) as session:

        def train() -> None:
            step[0] += 1

        session.run(train)
        clock.now += 0.2
        session.run(train)
        clock.now += 0.2
        session.run(train)
    assert written(writer) == [2, 3]
    assert writer.summaries[2][0].value[0].simple_value == pytest.approx(1 / 0.2)


def run_by_hand(hook: sh.StepCounterHook, runs: int) -> None:
    """``runs`` runs of a global step stuck at 0, every hook call made as TensorFlow's
    session makes it (``MonitoredSession`` calls no ``after_run`` for a run that leaves a
    callable step where it was)."""
    session = sh.StepSession(lambda: 0)
    hook.begin()
    for _ in range(runs):
        context = sh.SessionRunContext(sh.SessionRunArgs(None), session)
        hook.before_run(context)
        hook.after_run(context, sh.SessionRunValues(None))


def test_log_warning_if_global_step_not_increased(caplog):
    hook = sh.StepCounterHook(every_n_steps=1)
    with caplog.at_level(logging.WARNING, logger="summary_hook"):
        run_by_hand(hook, 31)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 5  # log_first_n
    assert all("global step has not been increased" in w for w in warnings)


@pytest.mark.parametrize(
    ("every_n_steps", "steps_per_run", "expected"),
    [(10, 5, [15, 25]), (5, 5, [10, 15, 20, 25]), (5, 10, [20, 30, 40, 50])],
)
def test_steps_per_run(clock, every_n_steps, steps_per_run, expected):
    writer = RecordingWriter()
    hook = sh.StepCounterHook(every_n_steps=every_n_steps, summary_writer=writer)
    hook._set_steps_per_run(steps_per_run)
    run(hook, steps_per_run, 5, clock, tick=0.01)
    assert written(writer) == expected


def test_raises_unless_exactly_one_period():
    with pytest.raises(ValueError, match="exactly one of every_n_steps and every_n_secs"):
        sh.StepCounterHook(every_n_secs=1)  # every_n_steps keeps its default of 100
    with pytest.raises(ValueError, match="exactly one of every_n_steps and every_n_secs"):
        sh.StepCounterHook(every_n_steps=None)


def test_writes_through_the_shared_writer_of_its_directory(tmp_path):
    from tests.conftest import accumulator

    saver = sh.SummarySaverHook(
        save_steps=1, output_dir=str(tmp_path), summary_op=sh.scalar("x", lambda: 1.0)
    )
    counter = sh.StepCounterHook(every_n_steps=2, output_dir=str(tmp_path))
    with sh.MonitoredSession(hooks=[saver, counter]) as session:
        for _ in range(5):
            session.run(lambda: None)
    assert counter._summary_writer is saver.summary_writer
    sh.SummaryWriterCache.clear()
    steps = [e.step for e in accumulator(str(tmp_path)).Scalars("global_step/sec")]
    assert steps == [3, 5]
