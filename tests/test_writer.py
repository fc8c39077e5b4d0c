"""The event writer: file format, the worker thread, errors, the cache and foreign writers."""

from __future__ import annotations

import errno
import gc
import itertools
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from tensorboard.compat.proto.event_pb2 import Event, SessionLog
from tensorboard.compat.proto.summary_pb2 import Summary

import summary_hook as sh
from summary_hook._events import disk as _disk
from tests.conftest import event_files, read_events, summaries_by_step


def scalar_summary(tag: str, value: float) -> Summary:
    return Summary(value=[Summary.Value(tag=tag, simple_value=value)])


def test_file_name_follows_tensorflow_pattern_and_is_unique(tmp_path):
    first = sh.FileWriter(str(tmp_path))
    second = sh.FileWriter(str(tmp_path), filename_suffix=".v2")
    host = re.escape(socket.gethostname())
    pattern = rf"events\.out\.tfevents\.\d{{10}}\.{host}\.{os.getpid()}\.\d+\.[0-9a-f]{{8}}"
    assert re.fullmatch(pattern, os.path.basename(first.path))
    assert re.fullmatch(pattern + r"\.v2", os.path.basename(second.path))
    assert first.path != second.path
    first.close()
    second.close()


def test_file_names_never_meet_torchs_in_the_same_second(tmp_path, monkeypatch):
    # torch's SummaryWriter names files <secs>.<host>.<pid>.<n>, n counting from 0 in each
    # process, as this package once did: in one second both picked the same name.
    from torch.utils.tensorboard import SummaryWriter

    monkeypatch.setattr(time, "time", lambda: 1_700_000_000.25)  # one second for all
    theirs_before = SummaryWriter(str(tmp_path))
    ours = [sh.FileWriter(str(tmp_path)) for _ in range(3)]
    theirs_after = SummaryWriter(str(tmp_path))
    theirs_before.add_scalar("theirs/before", 1.0, 1)
    theirs_after.add_scalar("theirs/after", 1.0, 1)
    for n, writer in enumerate(ours):
        writer.add_summary(scalar_summary(f"ours/{n}", 1.0), global_step=1)
    for writer in (*ours, theirs_before, theirs_after):
        writer.close()
    files = event_files(str(tmp_path))
    assert len(files) == 5 and all(".1700000000." in os.path.basename(f) for f in files)
    tags = sorted(v.tag for f in files for e in read_events(f) for v in e.summary.value)
    assert tags == ["ours/0", "ours/1", "ours/2", "theirs/after", "theirs/before"]


def test_one_processs_files_of_one_second_sort_in_the_order_they_were_made(monkeypatch):
    # TensorBoard reads a directory's files in name order, and a resumed run's START hides
    # only what it read before: a resumed run's file that sorted first (its count 10
    # before the crashed run's 9) left every stale point visible.
    from summary_hook._events import disk

    monkeypatch.setattr(time, "time", lambda: 1_700_000_000.25)  # one second for all
    monkeypatch.setattr(disk, "_file_counter", itertools.count(7))
    names = [disk.event_file_name("") for _ in range(5)]  # counts 7, 8, 9, 10, 11
    assert sorted(names) == names


def test_a_taken_name_is_never_opened_again(tmp_path, monkeypatch):
    taken = tmp_path / "taken"
    taken.write_bytes(b"someone else's")
    names = iter(["taken", "fresh"])
    monkeypatch.setattr(_disk, "event_file_name", lambda suffix: next(names))
    writer = sh.FileWriter(str(tmp_path))
    assert os.path.basename(writer.path) == "fresh"
    assert taken.read_bytes() == b"someone else's"
    writer.close()


def test_a_writer_nobody_reaches_is_closed_and_its_thread_ends(tmp_path):
    writer = sh.FileWriter(str(tmp_path))
    writer.add_summary(scalar_summary("x", 1.0), global_step=3)
    path, thread = writer.path, writer._events._thread
    del writer
    gc.collect()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert [e.step for e in read_events(path)] == [0, 3]


def test_first_record_is_file_version_and_is_on_disk_at_once(tmp_path):
    writer = sh.FileWriter(str(tmp_path))
    (event,) = read_events(writer.path)  # nothing flushed by us yet
    assert event.file_version == "brain.Event:2" and event.wall_time > 0
    writer.close()


def test_events_carry_step_and_wall_time(tmp_path):
    writer = sh.FileWriter(str(tmp_path))
    writer.add_summary(scalar_summary("x", 1.0), global_step=7)
    writer.add_summary(scalar_summary("y", 2.0).SerializeToString(), global_step=8)
    writer.add_session_log(SessionLog(status=SessionLog.START), global_step=9)
    writer.add_event(Event(step=10, wall_time=5.0))
    writer.close()
    events = read_events(writer.get_logdir() and event_files(str(tmp_path))[0])[1:]
    assert [e.step for e in events] == [7, 8, 9, 10]
    assert events[0].wall_time > 1e9 and events[3].wall_time == 5.0
    assert events[1].summary.value[0].simple_value == 2.0


def test_only_the_first_value_of_a_tag_keeps_its_metadata(tmp_path):
    writer = sh.FileWriter(str(tmp_path))
    summary = scalar_summary("x", 1.0)
    summary.value[0].metadata.display_name = "X"
    for step in range(2):
        writer.add_summary(summary, step)
    writer.close()
    events = read_events(event_files(str(tmp_path))[0])[1:]
    assert events[0].summary.value[0].HasField("metadata")
    assert not events[1].summary.value[0].HasField("metadata")
    assert summary.value[0].metadata.display_name == "X"  # the caller's is not changed


def test_flush_returns_only_when_everything_before_it_is_on_disk(tmp_path):
    writer = sh.FileWriter(str(tmp_path), max_queue=3, flush_secs=3600)
    for step in range(100):
        writer.add_summary(scalar_summary("x", step), step)
    writer.flush()
    assert len(read_events(writer.path)) == 101
    writer.close()


def test_close_is_safe_twice_and_reopen_starts_a_new_file(tmp_path):
    writer = sh.FileWriter(str(tmp_path))
    first = writer.path
    writer.close()
    writer.close()
    writer.flush()  # no-op when closed
    with pytest.raises(RuntimeError, match="is closed; call reopen"):
        writer.add_summary(scalar_summary("x", 1.0), 1)
    writer.reopen()
    assert writer.path != first
    writer.add_summary(scalar_summary("x", 1.0), 1)
    writer.close()
    assert len(event_files(str(tmp_path))) == 2


@pytest.mark.parametrize(
    ("argument", "value"), [("max_queue", 0), ("flush_secs", -1), ("max_queue", "10")]
)
def test_raises_on_bad_writer_options(tmp_path, argument, value):
    with pytest.raises(ValueError, match=f"{argument} must be a positive"):
        sh.FileWriter(str(tmp_path), **{argument: value})


def test_raises_when_logdir_is_a_file(tmp_path):
    target = tmp_path / "file"
    target.write_text("")
    with pytest.raises(NotADirectoryError, match="exists and is not a directory"):
        sh.FileWriter(str(target))


def test_eight_threads_through_one_writer_lose_and_corrupt_nothing(tmp_path):
    writer = sh.SummaryWriterCache.get(str(tmp_path))
    start = threading.Barrier(8)

    def produce(thread: int) -> None:
        start.wait()
        for i in range(5000):
            writer.add_summary(scalar_summary(f"t{thread}", i), i)

    threads = [threading.Thread(target=produce, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.flush()
    events = read_events(writer.path)[1:]
    assert len(events) == 40_000
    for thread in range(8):
        steps = [e.step for e in events if e.summary.value[0].tag == f"t{thread}"]
        assert steps == list(range(5000))  # per-producer order is kept


class FailingFile:
    """A file object that fails like a full disk: a fault we cannot make portably here."""

    def __init__(self, real):
        self.real = real

    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    def fileno(self):
        return self.real.fileno()

    def close(self):
        self.real.close()


def test_failing_file_surfaces_its_error_in_the_caller(tmp_path):
    writer = sh.FileWriter(str(tmp_path), max_queue=2)
    writer._events._file._file = FailingFile(writer._events._file._file)
    writer.add_summary(scalar_summary("x", 1.0), 1)
    with pytest.raises(sh.WriterError, match="No space left on device") as info:
        writer.flush()
    assert isinstance(info.value.__cause__, OSError)
    # A producer never blocks forever on the full queue of a failed writer.
    with pytest.raises(sh.WriterError):
        for step in range(100):
            writer.add_summary(scalar_summary("x", 1.0), step)
    writer.close()  # the failure has been reported: closing is quiet


def test_close_raises_a_failure_no_call_has_reported(tmp_path):
    writer = sh.FileWriter(str(tmp_path))
    writer._events._file._file = FailingFile(writer._events._file._file)
    writer.add_summary(scalar_summary("x", 1.0), 1)
    with pytest.raises(sh.WriterError, match="No space left on device"):
        writer.close()


def test_cache_shares_one_writer_per_normalised_directory(tmp_path):
    a = sh.SummaryWriterCache.get(str(tmp_path / "run"))
    b = sh.SummaryWriterCache.get(str(tmp_path) + "/./run/")
    assert a is b
    sh.SummaryWriterCache.clear()
    assert a.path is None  # closed
    assert sh.SummaryWriterCache.get(str(tmp_path / "run")) is not a


def test_cache_get_from_many_threads_creates_one_writer(tmp_path):
    writers = []
    start = threading.Barrier(8)

    def get():
        start.wait()
        writers.append(sh.SummaryWriterCache.get(str(tmp_path)))

    threads = [threading.Thread(target=get) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(w) for w in writers}) == 1
    assert len(event_files(str(tmp_path))) == 1


def file_writer(logdir):
    return sh.FileWriter(logdir)


def torch_writer(logdir):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(logdir)


def tensorboardx_writer(logdir):
    from tensorboardX import SummaryWriter

    return SummaryWriter(logdir)


def torch_writer_subclass(logdir):
    from torch.utils.tensorboard import SummaryWriter

    class ProjectWriter(SummaryWriter):  # a user's own writer, built on torch's
        pass

    return ProjectWriter(logdir)


def tensorboardx_writer_subclass(logdir):
    from tensorboardX import SummaryWriter

    class ProjectWriter(SummaryWriter):
        pass

    return ProjectWriter(logdir)


@pytest.mark.parametrize(
    "make_writer",
    [
        file_writer,
        torch_writer,
        tensorboardx_writer,
        torch_writer_subclass,
        tensorboardx_writer_subclass,
    ],
)
def test_hook_writes_through_any_supported_writer(tmp_path, make_writer):
    writer = make_writer(str(tmp_path))
    hook = sh.SummarySaverHook(
        save_steps=1, summary_writer=writer, summary_op=sh.scalar("x", lambda: 3.0)
    )
    with sh.MonitoredSession(hooks=[hook]) as sess:
        sess.run(lambda: None)
    writer.close()
    assert summaries_by_step(str(tmp_path)) == {1: {"x": 3.0}}


def test_raises_when_summary_writer_has_wrong_type():
    with pytest.raises(TypeError, match="summary_writer must be .* got 'runs' of type str"):
        sh.SummarySaverHook(
            save_steps=1, summary_writer="runs", summary_op=sh.scalar("x", lambda: 1.0)
        )


def test_normal_interpreter_exit_loses_nothing(tmp_path):
    script = textwrap.dedent(
        f"""
        import summary_hook as sh
        from tensorboard.compat.proto.summary_pb2 import Summary
        writer = sh.FileWriter({str(tmp_path)!r}, flush_secs=3600)
        for step in range(500):
            writer.add_summary(Summary(value=[Summary.Value(tag="x", simple_value=step)]), step)
        # no flush, no close: the exit handler must write everything
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    assert len(summaries_by_step(str(tmp_path))) == 500


def test_summaries_from_evaluate_are_written_exactly_as_they_read(tmp_path):
    writer = sh.FileWriter(str(tmp_path))
    op = sh.merge([sh.scalar("a", lambda: 1.5, []), sh.scalar("b", lambda: 2.5, [])])
    first = sh.evaluate(op)
    second = sh.evaluate(op)  # ``first`` now comes from an older evaluation
    second.value[1].simple_value = 7.0  # what a hook may do before writing
    for step, summary in ((1, second), (2, first), (3, scalar_summary("c", 3.0))):
        writer.add_evaluated_summary(summary, step)
    path = writer.path
    writer.close()
    events = read_events(path)[1:]
    assert [(e.step, e.summary) for e in events] == [
        (1, second),
        (2, first),
        (3, scalar_summary("c", 3.0)),
    ]
    assert [v.simple_value for v in second.value] == [1.5, 7.0]


def test_events_reach_the_disk_within_flush_secs_without_a_flush(tmp_path):
    writer = sh.FileWriter(str(tmp_path), max_queue=100, flush_secs=0.1)
    for step in range(4):  # far fewer than max_queue: only the deadline writes them
        writer.add_summary(scalar_summary("x", step), step)
    deadline = time.monotonic() + 30
    while len(read_events(writer.path)) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [e.step for e in read_events(writer.path)[1:]] == [0, 1, 2, 3]
    writer.close()


def test_cache_starts_a_new_file_when_the_directory_was_removed(tmp_path):
    # A notebook cell that clears its log directory and runs again.
    logdir = str(tmp_path / "run")
    first = sh.SummaryWriterCache.get(logdir)
    first.add_summary(scalar_summary("x", 1.0), global_step=1)
    first.flush()
    shutil.rmtree(logdir)
    again = sh.SummaryWriterCache.get(logdir)
    assert again is first and os.path.exists(again.path)
    again.add_summary(scalar_summary("x", 2.0), global_step=1)
    again.flush()
    assert summaries_by_step(logdir) == {1: {"x": 2.0}}


def test_a_with_block_closes_the_writer_and_its_file_reads_back(tmp_path):
    with sh.FileWriter(str(tmp_path)) as writer:
        writer.add_summary(scalar_summary("x", 1.0), global_step=3)
        path = writer.path
    assert writer.path is None  # closed
    assert [e.step for e in read_events(path)[1:]] == [3]
