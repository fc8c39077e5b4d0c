"""Threads, sessions, forked DataLoader workers and processes sharing one log directory."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import torch
from torch.utils.data import DataLoader, TensorDataset

import summary_hook as sh
from tests.conftest import Counter, all_events, event_files, read_events, summaries_by_step


def test_two_sessions_in_two_threads_share_one_file(tmp_path):
    start = threading.Barrier(2)

    def train(tag: str, save_steps: int) -> None:
        hook = sh.SummarySaverHook(
            save_steps=save_steps,
            output_dir=str(tmp_path),
            summary_op=sh.scalar(tag, Counter(), collections=[]),
        )
        start.wait()
        with sh.MonitoredSession(hooks=[hook]) as sess:
            for _ in range(500):
                sess.run(lambda: None)

    threads = [threading.Thread(target=train, args=(tag, n)) for tag, n in (("a", 1), ("b", 7))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(event_files(str(tmp_path))) == 1
    table = summaries_by_step(str(tmp_path))
    assert [s for s in sorted(table) if "a" in table[s]] == list(range(1, 501))
    assert [s for s in sorted(table) if "b" in table[s]] == list(range(1, 501, 7))


def test_forked_dataloader_workers_never_touch_the_parents_file(tmp_path):
    data = TensorDataset(torch.arange(64.0).unsqueeze(1))
    loader = DataLoader(data, batch_size=4, num_workers=2, multiprocessing_context="fork")
    hook = sh.SummarySaverHook(
        save_steps=1,
        output_dir=str(tmp_path),
        summary_op=sh.scalar("batch_sum", lambda out: out, collections=[]),
    )
    with sh.MonitoredSession(hooks=[hook]) as sess:
        for _epoch in range(3):  # workers are forked anew each epoch, with the writer open
            for (batch,) in loader:
                sess.run(lambda b=batch: b.sum())
    events = read_events(event_files(str(tmp_path))[0])
    assert events[0].file_version == "brain.Event:2"
    steps = [e.step for e in events if e.HasField("summary")]
    assert steps == list(range(1, 49))  # 3 epochs x 16 batches, each once, in order


def test_forked_child_cannot_write_and_its_exit_writes_nothing(tmp_path):
    script = textwrap.dedent(
        f"""
        import os, sys
        import summary_hook as sh
        from tensorboard.compat.proto.summary_pb2 import Summary
        writer = sh.FileWriter({str(tmp_path)!r}, flush_secs=3600)
        for step in range(100):
            writer.add_summary(Summary(value=[Summary.Value(tag="x", simple_value=step)]), step)
        pid = os.fork()
        if pid == 0:
            try:
                writer.add_summary(Summary(), 1)
            except RuntimeError as error:
                assert "forked child" in str(error), error
            else:
                os._exit(3)
            sys.exit(0)  # runs the child's exit handlers: they must leave the file alone
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
        writer.close()
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    events = [e for e in all_events(str(tmp_path)) if e.HasField("summary")]
    assert [e.step for e in events] == list(range(100))  # exactly once each


def test_two_processes_on_one_directory_get_distinct_files(tmp_path):
    script = textwrap.dedent(
        f"""
        import summary_hook as sh
        hook = sh.SummarySaverHook(save_steps=1, output_dir={str(tmp_path)!r},
                                   summary_op=sh.scalar("x", lambda: 1.0, collections=[]))
        with sh.MonitoredSession(hooks=[hook]) as sess:
            for _ in range(50):
                sess.run(lambda: None)
        """
    )
    processes = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(2)]
    assert [p.wait(timeout=120) for p in processes] == [0, 0]
    files = event_files(str(tmp_path))
    assert len(files) == 2
    for path in files:
        assert len([e for e in read_events(path) if e.HasField("summary")]) == 50
    pids = {os.path.basename(path).split(".")[-3] for path in files}
    assert len(pids) == 2


def test_forked_child_evaluates_ops_whose_plan_another_thread_held(tmp_path):
    # A thread filling an op's template holds its plan's lock; a fork at that moment must
    # not leave the child with a lock nobody will release.
    script = textwrap.dedent(
        """
        import os
        import summary_hook as sh
        from summary_hook._evaluation.plans import plan_for
        op = sh.merge([sh.scalar("a", lambda: 1.0, []), sh.scalar("b", lambda: 2.0, [])])
        sh.evaluate(op)
        with plan_for((op,)).lock:  # as another thread would, mid-evaluation
            pid = os.fork()
            if pid == 0:
                values = [v.simple_value for v in sh.evaluate(op).value]
                os._exit(0 if values == [1.0, 2.0] else 3)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


def test_forked_child_registers_ops_and_gets_writers_while_a_thread_held_their_locks(tmp_path):
    script = textwrap.dedent(
        f"""
        import os, threading
        import summary_hook as sh
        from summary_hook._ops import summary_ops as _ops
        held, release = threading.Event(), threading.Event()

        def hold():
            with _ops._lock, sh.SummaryWriterCache._lock:
                held.set()
                release.wait()

        holder = threading.Thread(target=hold)
        holder.start()
        held.wait()
        pid = os.fork()
        if pid == 0:
            sh.scalar("x", lambda: 1.0)
            writer = sh.SummaryWriterCache.get({str(tmp_path)!r})
            os._exit(0 if sh.merge_all().tags == ("x",) and writer else 3)
        release.set()
        holder.join()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
