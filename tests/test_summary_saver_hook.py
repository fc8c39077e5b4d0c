"""TensorFlow's SummarySaverHookTest, ported, with real files read by TensorBoard's reader."""

from __future__ import annotations

import time
from unittest import mock

import pytest
from tensorboard.compat.proto.event_pb2 import SessionLog

import summary_hook as sh
from tests.conftest import (
    Counter,
    accumulator,
    all_events,
    event_files,
    read_events,
    summaries_by_step,
)
from tests.contract import MOCK_START_TIME, SCENARIOS, Scenario
from tests.readers import scalar_values


def make_ops(scenario: Scenario) -> tuple[list[sh.SummaryOp], Counter]:
    counter = Counter()
    ops = [sh.scalar("my_summary", counter)]
    if "my_summary2" in scenario.tags:
        ops.append(sh.scalar("my_summary2", lambda: counter.calls * 2.0))
    return ops, counter


def run_plain(scenario: Scenario, logdir: str) -> Counter:
    ops, counter = make_ops(scenario)
    hook = sh.SummarySaverHook(
        save_steps=scenario.save_steps,
        save_secs=scenario.save_secs,
        output_dir=logdir,
        summary_op=ops if len(ops) > 1 else ops[0],
    )
    with mock.patch.object(time, "time") as mock_time:
        mock_time.return_value = MOCK_START_TIME
        with sh.MonitoredSession(hooks=[hook]) as sess:
            for _ in range(scenario.runs):
                sess.run(lambda: None)
                mock_time.return_value += scenario.tick
    return counter


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_plain_loop_matches_golden_table(scenario, tmp_path):
    counter = run_plain(scenario, str(tmp_path))
    assert summaries_by_step(str(tmp_path)) == scenario.expected
    assert counter.calls == len(scenario.expected)  # evaluated on due steps only


def test_raise_when_scaffold_and_summary_op_both_missing():
    with pytest.raises(ValueError, match="Exactly one of scaffold or summary_op must be provided."):
        sh.SummarySaverHook(save_steps=1, output_dir="unused")


def test_raise_when_scaffold_and_summary_op_both_present():
    op = sh.scalar("a", lambda: 1.0)
    with pytest.raises(ValueError, match="Exactly one of scaffold or summary_op must be provided."):
        sh.SummarySaverHook(
            save_steps=1, output_dir="unused", scaffold=sh.Scaffold(), summary_op=op
        )


def test_raise_in_both_secs_and_steps():
    op = sh.scalar("a", lambda: 1.0)
    with pytest.raises(ValueError, match="Can not provide both every_secs and every_steps."):
        sh.SummarySaverHook(save_secs=10, save_steps=20, output_dir="unused", summary_op=op)


def test_raise_in_none_secs_and_steps():
    op = sh.scalar("a", lambda: 1.0)
    with pytest.raises(ValueError, match="Either every_secs or every_steps should be provided."):
        sh.SummarySaverHook(output_dir="unused", summary_op=op)


def test_scaffold_check_comes_before_timer_check():
    with pytest.raises(ValueError, match="Exactly one of scaffold"):
        sh.SummarySaverHook(output_dir="unused")


def test_raises_when_no_writer_is_configured():
    op = sh.scalar("a", lambda: 1.0)
    with pytest.raises(ValueError, match="needs output_dir or summary_writer"):
        sh.SummarySaverHook(save_steps=1, summary_op=op)


def test_a_fresh_run_writes_no_session_start(tmp_path):
    hook = sh.SummarySaverHook(
        save_steps=5, output_dir=str(tmp_path), summary_op=sh.scalar("x", lambda: 1.0)
    )
    with sh.MonitoredSession(hooks=[hook]) as sess:
        for _ in range(3):
            sess.run(lambda: None)
    (path,) = event_files(str(tmp_path))
    events = read_events(path)
    assert events[0].file_version == "brain.Event:2"
    assert [(e.step, e.summary.value[0].tag) for e in events[1:]] == [(1, "x")]


def test_a_resumed_run_writes_two_session_starts_before_its_first_summaries(tmp_path):
    hook = sh.SummarySaverHook(
        save_steps=5, output_dir=str(tmp_path), summary_op=sh.scalar("x", lambda: 1.0)
    )
    with sh.MonitoredSession(hooks=[hook], global_step=20) as sess:
        for _ in range(3):
            sess.run(lambda: None)
    (path,) = event_files(str(tmp_path))
    events = read_events(path)
    assert [e.session_log.status for e in events[1:3]] == [SessionLog.START] * 2
    assert [e.step for e in events[1:]] == [21, 21, 21]
    assert events[3].summary.value[0].tag == "x"


def test_each_op_in_list_gives_one_event_and_merge_gives_one(tmp_path):
    a = sh.scalar("a", lambda: 1.0)
    b = sh.scalar("b", lambda: 2.0)
    listed = sh.SummarySaverHook(save_steps=1, output_dir=str(tmp_path / "list"), summary_op=[a, b])
    merged = sh.SummarySaverHook(
        save_steps=1, output_dir=str(tmp_path / "merged"), summary_op=sh.merge([a, b])
    )
    with sh.MonitoredSession(hooks=[listed, merged]) as sess:
        sess.run(lambda: None)
    list_events = [e for e in all_events(str(tmp_path / "list")) if e.HasField("summary")]
    merged_events = [e for e in all_events(str(tmp_path / "merged")) if e.HasField("summary")]
    assert [[v.tag for v in e.summary.value] for e in list_events] == [["a"], ["b"]]
    assert [[v.tag for v in e.summary.value] for e in merged_events] == [["a", "b"]]


def test_scaffold_defaults_to_merge_all_at_finalize(tmp_path):
    scaffold = sh.Scaffold()
    hook = sh.SummarySaverHook(save_steps=2, output_dir=str(tmp_path), scaffold=scaffold)
    counter = Counter()
    sh.scalar("late", counter)  # registered before the session finalizes the scaffold
    with sh.MonitoredSession(hooks=[hook], scaffold=scaffold) as sess:
        for _ in range(4):
            sess.run(lambda: None)
    assert summaries_by_step(str(tmp_path)) == {1: {"late": 1.0}, 3: {"late": 2.0}}


def test_scaffold_without_ops_says_so_once_and_writes_no_summaries(tmp_path):
    scaffold = sh.Scaffold()
    hook = sh.SummarySaverHook(save_steps=1, output_dir=str(tmp_path), scaffold=scaffold)
    with sh.MonitoredSession(hooks=[hook], scaffold=scaffold, global_step=4) as sess:
        with pytest.warns(UserWarning, match="has no summary op to save") as warned:
            sess.run(lambda: None)
            sess.run(lambda: None)
    assert len(warned) == 1
    events = all_events(str(tmp_path))
    assert [(e.step, e.session_log.status) for e in events[1:]] == [(5, SessionLog.START)] * 2


def test_two_hooks_on_one_directory_share_one_file(tmp_path):
    fast = sh.SummarySaverHook(
        save_steps=2,
        output_dir=str(tmp_path),
        summary_op=sh.scalar("fast", Counter(), collections=[]),
    )
    slow = sh.SummarySaverHook(
        save_steps=5,
        output_dir=str(tmp_path) + "/",
        summary_op=sh.scalar("slow", Counter(), collections=[]),
    )
    with sh.MonitoredSession(hooks=[fast, slow]) as sess:
        for _ in range(10):
            sess.run(lambda: None)
    assert len(event_files(str(tmp_path))) == 1
    table = summaries_by_step(str(tmp_path))
    assert table == {
        1: {"fast": 1.0, "slow": 1.0},
        3: {"fast": 2.0},
        5: {"fast": 3.0},
        6: {"slow": 2.0},
        7: {"fast": 4.0},
        9: {"fast": 5.0},
    }


def test_end_flushes_but_does_not_close_the_shared_writer(tmp_path):
    hook = sh.SummarySaverHook(
        save_steps=1, output_dir=str(tmp_path), summary_op=sh.scalar("x", lambda: 1.0)
    )
    with sh.MonitoredSession(hooks=[hook]) as sess:
        sess.run(lambda: None)
    writer = sh.SummaryWriterCache.get(str(tmp_path))
    assert writer is hook.summary_writer
    writer.add_summary(b"", 5)  # still open
    writer.flush()


def test_stuck_global_step_never_triggers_again_with_save_steps(tmp_path):
    # TensorFlow's edge case, with the hook driven by hand as TensorFlow's session drives
    # it: the predicted step stays at s + 2 < last + save_steps.
    counter = Counter()
    hook = sh.SummarySaverHook(
        save_steps=5, output_dir=str(tmp_path), summary_op=sh.scalar("x", counter)
    )
    session = sh.StepSession(lambda: 7)
    hook.begin()
    for _ in range(20):
        context = sh.SessionRunContext(sh.SessionRunArgs(None), session)
        args = hook.before_run(context)
        hook.after_run(context, sh.SessionRunValues(sh.evaluate(args.fetches) if args else None))
    hook.end(session)
    assert counter.calls == 1
    assert summaries_by_step(str(tmp_path)) == {7: {"x": 1.0}}


def test_a_callable_step_that_never_moves_evaluates_and_writes_nothing(tmp_path):
    # Under MonitoredSession every such run is a micro-batch of a step that never ends.
    counter = Counter()
    hook = sh.SummarySaverHook(
        save_steps=5, output_dir=str(tmp_path), summary_op=sh.scalar("x", counter)
    )
    with sh.MonitoredSession(hooks=[hook], global_step=lambda: 7) as sess:
        for _ in range(999):
            sess.run(lambda: None)
        with pytest.warns(
            UserWarning, match=r"global_step has not moved in 1000 runs \(it reads 7\)"
        ):
            sess.run(lambda: None)
    assert counter.calls == 0
    assert summaries_by_step(str(tmp_path)) == {}


def test_step_increments_of_two_trigger_late_like_tensorflow(tmp_path):
    # The hook predicts stale + 1 for the next step, so save_steps=4 with +2 per run
    # triggers at real steps 2, 8, 14 (not 2, 6, 10).
    steps = iter(range(0, 100, 2))
    state = {"step": 0}

    def train():
        state["step"] = next(steps) + 2

    hook = sh.SummarySaverHook(
        save_steps=4, output_dir=str(tmp_path), summary_op=sh.scalar("x", Counter())
    )
    with sh.MonitoredSession(hooks=[hook], global_step=lambda: state["step"]) as sess:
        for _ in range(8):
            sess.run(train)
    assert sorted(summaries_by_step(str(tmp_path))) == [2, 8, 14]


def test_hooked_run_returns_the_step_result_and_counts_steps(tmp_path):
    hook = sh.SummarySaverHook(
        save_steps=1, output_dir=str(tmp_path), summary_op=sh.scalar("loss", lambda out: out * 2)
    )
    with sh.MonitoredSession(hooks=[hook], global_step=100) as sess:
        assert sess.run(lambda a, b=0: a + b, 1.5, b=1.0) == 2.5
        assert sess.global_step == 101
    assert summaries_by_step(str(tmp_path)) == {101: {"loss": 5.0}}


def test_scaffold_not_finalized_by_the_session_is_resolved_at_the_first_run(tmp_path):
    sh.scalar("x", Counter())
    hook = sh.SummarySaverHook(save_steps=1, output_dir=str(tmp_path), scaffold=sh.Scaffold())
    with sh.MonitoredSession(hooks=[hook]) as sess:  # the session has a scaffold of its own
        sess.run(lambda: None)
    assert summaries_by_step(str(tmp_path)) == {1: {"x": 1.0}}


def test_a_run_that_does_not_move_a_callable_step_is_a_micro_batch(tmp_path):
    # global_step=lambda: optimizer_steps under accumulation over two batches: every
    # other run leaves the step where it was; the run that moves it completes the step.
    state = {"runs": 0, "optimizer_steps": 0}

    def train():
        state["runs"] += 1
        state["optimizer_steps"] += state["runs"] % 2 == 0
        return state["runs"]

    hook = sh.SummarySaverHook(
        save_steps=1, output_dir=str(tmp_path), summary_op=sh.scalar("run", lambda out: out)
    )
    with sh.MonitoredSession(hooks=[hook], global_step=lambda: state["optimizer_steps"]) as sess:
        for _ in range(8):
            sess.run(train)
    assert summaries_by_step(str(tmp_path)) == {
        1: {"run": 2.0},
        2: {"run": 4.0},
        3: {"run": 6.0},
        4: {"run": 8.0},
    }


def session_of_two_hooks(logdir: str, first_step: int, last_step: int, tag: str) -> None:
    hooks = [
        sh.SummarySaverHook(
            save_steps=every, output_dir=logdir, summary_op=sh.scalar(f"{tag}/{name}", Counter())
        )
        for name, every in (("fast", 1), ("slow", 3))
    ]
    with sh.MonitoredSession(hooks=hooks, global_step=first_step) as sess:
        while sess.global_step < last_step:
            sess.run(lambda: None)


def test_two_hooks_on_one_directory_mark_one_restart_and_lose_nothing(tmp_path):
    logdir = str(tmp_path)
    session_of_two_hooks(logdir, 0, 12, "crashed")  # a run that "dies" at step 12
    sh.SummaryWriterCache.clear()  # the next process opens a new file
    session_of_two_hooks(logdir, 6, 12, "resumed")  # from a checkpoint at step 6
    (_, resumed) = event_files(logdir)
    starts = [e.step for e in read_events(resumed) if e.HasField("session_log")]
    assert starts == [7, 7]  # one restart, marked twice for TensorBoard's two readers
    acc = accumulator(logdir)
    assert [e.step for e in acc.Scalars("crashed/fast")] == [1, 2, 3, 4, 5, 6]
    assert [e.step for e in acc.Scalars("resumed/fast")] == [7, 8, 9, 10, 11, 12]
    assert [e.step for e in acc.Scalars("resumed/slow")] == [7, 10]  # the second hook's


def test_a_rewind_in_the_same_process_is_marked_but_a_hook_joining_later_is_not(tmp_path):
    logdir = str(tmp_path)
    session_of_two_hooks(logdir, 0, 12, "first")
    session_of_two_hooks(logdir, 12, 14, "joining")  # goes on from 12: nothing is stale
    session_of_two_hooks(logdir, 6, 9, "rewound")  # back to a checkpoint at step 6
    (path,) = event_files(logdir)
    starts = [e.step for e in read_events(path) if e.HasField("session_log")]
    assert starts == [7, 7]
    acc = accumulator(logdir)
    assert [e.step for e in acc.Scalars("first/fast")] == [1, 2, 3, 4, 5, 6]
    assert [e.step for e in acc.Scalars("joining/fast")] == []  # at 13, 14: past the rewind
    assert [e.step for e in acc.Scalars("rewound/fast")] == [7, 8, 9]


def test_a_session_run_again_into_its_directory_hides_the_earlier_runs_points(tmp_path):
    # A notebook cell run twice in one kernel: the second run's points replace the first's.
    logdir = str(tmp_path)
    for value in (1.0, 2.0):
        hook = sh.SummarySaverHook(
            save_steps=5, output_dir=logdir, summary_op=sh.scalar("x", lambda v=value: v)
        )
        with sh.MonitoredSession(hooks=[hook]) as sess:
            for _ in range(6):
                sess.run(lambda: None)
    sh.SummaryWriterCache.get(logdir).flush()
    for reader, shown in scalar_values(logdir, "x").items():
        assert shown == [(1, 2.0), (6, 2.0)], reader
