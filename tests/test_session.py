"""MonitoredSession and the hook protocol, with TensorFlow's semantics (reference section 4)."""

from __future__ import annotations

import pytest

import summary_hook as sh
from tests.conftest import Counter, summaries_by_step


class RecordingHook(sh.SessionRunHook):
    def __init__(self, name: str, log: list[str], request=None, stop_at: int | None = None):
        self.name, self.log, self.request, self.stop_at = name, log, request, stop_at
        self.values: list[sh.SessionRunValues] = []

    def begin(self):
        self.log.append(f"{self.name}.begin")

    def after_create_session(self, session, coord):
        self.log.append(f"{self.name}.after_create_session({session.global_step})")

    def before_run(self, run_context):
        self.log.append(f"{self.name}.before_run({run_context.session.global_step})")
        return self.request

    def after_run(self, run_context, run_values):
        self.values.append(run_values)
        self.log.append(f"{self.name}.after_run({run_context.session.global_step})")
        if self.stop_at is not None and run_context.session.global_step >= self.stop_at:
            run_context.request_stop()

    def end(self, session):
        self.log.append(f"{self.name}.end")


def test_lifecycle_calls_hooks_in_order():
    log: list[str] = []
    hooks = [RecordingHook("a", log), RecordingHook("b", log)]
    with sh.MonitoredSession(hooks=hooks) as sess:
        log.append("created")
        sess.run(lambda: log.append("step"))
    assert log == [
        "a.begin",
        "b.begin",
        "a.after_create_session(0)",
        "b.after_create_session(0)",
        "created",
        "a.before_run(0)",
        "b.before_run(0)",
        "step",
        "a.after_run(1)",
        "b.after_run(1)",
        "a.end",
        "b.end",
    ]


def test_hook_without_request_gets_results_none():
    hook = RecordingHook("a", [])
    with sh.MonitoredSession(hooks=[hook]) as sess:
        sess.run(lambda: None)
    assert hook.values == [sh.SessionRunValues(results=None, options=None, run_metadata=None)]


def test_results_come_back_in_the_structure_requested():
    a = sh.scalar("a", lambda: 1.0, collections=[])
    b = sh.scalar("b", lambda out: out, collections=[])
    hook = RecordingHook("h", [], request=sh.SessionRunArgs({"x": [a, (b,)], "y": None}))
    with sh.MonitoredSession(hooks=[hook]) as sess:
        sess.run(lambda: 7.0)
    results = hook.values[0].results
    assert set(results) == {"x", "y"} and results["y"] is None
    assert results["x"][0].value[0].simple_value == 1.0
    assert results["x"][1][0].value[0].simple_value == 7.0


def test_request_stop_lets_every_after_run_finish_then_stops():
    log: list[str] = []
    hooks = [RecordingHook("a", log, stop_at=2), RecordingHook("b", log)]
    with sh.MonitoredSession(hooks=hooks) as sess:
        while not sess.should_stop():
            sess.run(lambda: None)
        assert sess.global_step == 2
        with pytest.raises(RuntimeError, match="Run called even after should_stop requested."):
            sess.run(lambda: None)
    assert log[-4:] == ["a.after_run(2)", "b.after_run(2)", "a.end", "b.end"]


def test_stop_iteration_calls_end_and_is_suppressed():
    log: list[str] = []
    with sh.MonitoredSession(hooks=[RecordingHook("a", log)]) as sess:
        sess.run(lambda: None)
        raise StopIteration
    assert log[-1] == "a.end"


def test_other_exception_skips_end_but_flushes_summaries(tmp_path):
    log: list[str] = []
    hook = sh.SummarySaverHook(
        save_steps=1, output_dir=str(tmp_path), summary_op=sh.scalar("x", Counter())
    )
    with pytest.raises(ZeroDivisionError):
        with sh.MonitoredSession(hooks=[RecordingHook("a", log), hook]) as sess:
            sess.run(lambda: None)
            sess.run(lambda: None)
            sess.run(lambda: 1 / 0)
    assert "a.end" not in log
    # Flushed although end() never ran and the writer is still open.
    assert summaries_by_step(str(tmp_path)) == {1: {"x": 1.0}, 2: {"x": 2.0}}


def test_step_that_raises_skips_every_after_run():
    log: list[str] = []
    with pytest.raises(KeyError), sh.MonitoredSession(hooks=[RecordingHook("a", log)]) as sess:
        sess.run(lambda: {}["missing"])
    assert log[-1] == "a.before_run(0)"


def test_raises_when_before_run_returns_something_else():
    class Bad(sh.SessionRunHook):
        def before_run(self, run_context):
            return {"summary": 1}

    with (
        pytest.raises(
            TypeError,
            match=r"Bad.before_run must return SessionRunArgs or None, got \{'summary': 1\}",
        ),
        sh.MonitoredSession(hooks=[Bad()]) as sess,
    ):
        sess.run(lambda: None)


def test_raises_when_hook_asks_for_feed_dict():
    hook = RecordingHook("a", [], request=sh.SessionRunArgs(None, feed_dict={"x": 1}))
    with pytest.raises(ValueError, match=r"feed_dict=\{'x': 1\}"):
        with sh.MonitoredSession(hooks=[hook]) as sess:
            sess.run(lambda: None)


def test_raises_when_hook_is_not_a_session_run_hook():
    with pytest.raises(TypeError, match="hooks must be SessionRunHook instances, got 'nope'"):
        sh.MonitoredSession(hooks=["nope"])


def test_global_step_starts_at_given_value_and_counts_runs():
    with sh.MonitoredSession(global_step=41) as sess:
        sess.run(lambda: None)
        assert sess.global_step == 42


def test_global_step_callable_is_read_not_counted():
    optimizer_steps = {"n": 0}

    def micro_batch(i):
        if i % 4 == 3:
            optimizer_steps["n"] += 1

    with sh.MonitoredSession(global_step=lambda: optimizer_steps["n"]) as sess:
        for i in range(8):
            sess.run(micro_batch, i)
        assert sess.global_step == 2


@pytest.mark.parametrize("bad", ["0", 1.5, None])
def test_raises_when_global_step_has_wrong_type(bad):
    with pytest.raises(TypeError, match="global_step must be an int or a callable"):
        sh.MonitoredSession(global_step=bad)


def test_hand_driven_hook_without_session(tmp_path):
    hook = sh.SummarySaverHook(
        save_steps=2, output_dir=str(tmp_path), summary_op=sh.scalar("loss", lambda out: out)
    )
    session = sh.StepSession(0)
    hook.begin()
    for loss in (3.0, 2.0, 1.0):
        context = sh.SessionRunContext(sh.SessionRunArgs(None), session)
        args = hook.before_run(context)
        session.advance()
        results = sh.evaluate(args.fetches, loss) if args else None
        hook.after_run(context, sh.SessionRunValues(results))
    hook.end(session)
    assert summaries_by_step(str(tmp_path)) == {1: {"loss": 3.0}, 3: {"loss": 1.0}}


def test_each_run_gets_its_own_context_when_a_hook_keeps_one():
    class Keeper(sh.SessionRunHook):
        def __init__(self):
            self.contexts = []

        def before_run(self, run_context):
            self.contexts.append(run_context)
            assert not run_context.stop_requested

        def after_run(self, run_context, run_values):
            if len(self.contexts) == 1:
                run_context.request_stop()

    keeper = Keeper()
    with sh.MonitoredSession(hooks=[keeper]) as sess:
        sess.run(lambda: None)
        sess._should_stop = False  # keep going to see a second context
        sess.run(lambda: None)
    first, second = keeper.contexts
    assert first is not second
    assert first.stop_requested and not second.stop_requested


def test_stop_requested_does_not_leak_into_the_next_run():
    class StopOnce(sh.SessionRunHook):
        def __init__(self):
            self.seen = []

        def before_run(self, run_context):
            self.seen.append(run_context.stop_requested)

        def after_run(self, run_context, run_values):
            if len(self.seen) == 1:
                run_context.request_stop()

    hook = StopOnce()
    with sh.MonitoredSession(hooks=[hook]) as sess:
        sess.run(lambda: None)
        assert sess.should_stop()
        sess._should_stop = False
        sess.run(lambda: None)
    assert hook.seen == [False, False]
