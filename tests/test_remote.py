"""Log directories at fsspec URLs: ``memory://`` for the unit tests, and a real S3 API on
loopback (moto's server, started here, with s3fs as the client) for the integration
tests. Everything is read back with TensorBoard's own readers, from the URL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter

import fsspec
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.compat.proto.summary_pb2 import Summary

import summary_hook as sh
from benchmarks.s3 import CountingProxy, S3Server, s3_environment
from summary_hook.readback import summarize
from tests.readers import scalar_values, tensorboard, wait_until_served

pytestmark = pytest.mark.slow  # subprocesses, servers or several processes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def value(step: int, size: int = 0) -> Summary:
    padding = Summary.Value(tag="padding", simple_value=0.0) if size else None
    values = [Summary.Value(tag="x", simple_value=float(step))]
    summary = Summary(value=values)
    if padding is not None:
        summary.value.add(tag="padding/" + "p" * size, simple_value=0.0)
    return summary


def scalars(url: str, tag: str = "x") -> list[tuple[int, float]]:
    accumulator = EventAccumulator(url, size_guidance={"scalars": 0})
    accumulator.Reload()
    return [(e.step, e.value) for e in accumulator.Scalars(tag)]


@pytest.fixture
def memory_dir(request):
    url = f"memory://summary_hook_tests/{request.node.name}"
    yield url
    filesystem = fsspec.filesystem("memory")
    if filesystem.exists(url):
        filesystem.rm(url, recursive=True)


def test_memory_url_writes_one_object_per_flush_read_back_by_tensorboard(memory_dir):
    writer = sh.FileWriter(memory_dir)
    for step in range(5):
        writer.add_summary(value(step), step)
        writer.flush()
    writer.flush()  # nothing new: no object
    writer.close()
    names = fsspec.filesystem("memory").ls(memory_dir, detail=False)
    assert len(names) == 6  # the version record, then one per flush
    assert names == sorted(names) and names[0].endswith(".00000000")
    assert scalars(memory_dir) == [(step, float(step)) for step in range(5)]


def test_hook_with_an_output_dir_url_shares_one_writer_per_url(memory_dir):
    loss = sh.scalar("loss", lambda out: out, collections=[])
    hooks = [
        sh.SummarySaverHook(save_steps=1, output_dir=memory_dir + suffix, summary_op=loss)
        for suffix in ("", "/")
    ]
    with sh.MonitoredSession(hooks=hooks) as session:
        for step in range(3):
            session.run(lambda s=step: float(s))
    assert hooks[0].summary_writer is hooks[1].summary_writer
    assert hooks[0].summary_writer.get_logdir() == memory_dir
    sh.SummaryWriterCache.clear()
    assert [step for step, _ in scalars(memory_dir, "loss")] == [1, 1, 2, 2, 3, 3]


def test_readback_and_show_read_urls(memory_dir):
    writer = sh.FileWriter(memory_dir + "/run1")
    writer.add_summary(value(7), 7)
    writer.close()
    (row,) = summarize(memory_dir)
    assert (row.run, row.tag, row.points, row.last_step) == ("run1", "x", 1, 7)


def test_raises_naming_the_package_a_url_needs():
    with pytest.raises(ImportError, match=r"writing to 'gs://bucket/run': .*gcsfs"):
        sh.FileWriter("gs://bucket/run")


def test_a_local_path_with_a_colon_is_still_local(tmp_path):
    assert not sh.FileWriter(str(tmp_path / "a:b")).get_logdir().startswith("a:")
    assert os.path.isdir(tmp_path / "a:b")


# --- a real S3 API on loopback ----------------------------------------------------------


@pytest.fixture
def s3():
    server = S3Server()
    with s3_environment(server.url):
        server.make_bucket("bkt")
        yield server
    server.stop()


def test_s3_run_through_the_hook_in_a_fresh_process_reads_back_from_the_url(s3):
    script = textwrap.dedent(
        """
        import summary_hook as sh

        sh.scalar("loss", lambda out: out)
        hook = sh.SummarySaverHook(
            save_steps=10, output_dir="s3://bkt/runs/exp", scaffold=sh.Scaffold()
        )
        with sh.MonitoredSession(hooks=[hook]) as session:
            for step in range(100):
                session.run(lambda s=step: 1.0 / (s + 1))
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120, env=os.environ)
    written = scalars("s3://bkt/runs/exp", "loss")
    assert [step for step, _ in written] == list(range(1, 100, 10))
    (row,) = summarize("s3://bkt/runs/exp")
    assert (row.tag, row.points) == ("loss", 10)
    shown = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "summary-hook"), "show", "s3://bkt/runs/exp"],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    assert "loss" in shown.stdout and "scalar" in shown.stdout


def test_s3_missing_bucket_fails_when_the_writer_opens_naming_the_url(s3):
    with pytest.raises(OSError, match=r"cannot write event files to 's3://no-such-bucket/run'"):
        sh.FileWriter("s3://no-such-bucket/run")
    hook = sh.SummarySaverHook(
        save_steps=1, output_dir="s3://no-such-bucket/run", summary_op=sh.scalar("x", lambda: 1.0)
    )
    with pytest.raises(OSError, match="no-such-bucket"):
        hook.begin()


def test_s3_denied_access_fails_when_the_writer_opens_naming_the_url(s3, monkeypatch):
    import moto.settings

    # The server checks credentials from now on; the test's keys are unknown to it.
    monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
    with pytest.raises(OSError, match=r"cannot write event files to 's3://bkt/denied'") as raised:
        sh.FileWriter("s3://bkt/denied")
    assert isinstance(raised.value.__cause__, PermissionError)


def test_s3_store_down_then_back_loses_nothing(s3):
    writer = sh.FileWriter("s3://bkt/outage", flush_secs=1)
    writer.add_summary(value(0), 0)
    writer.flush()
    s3.stop()
    writer.add_summary(value(1), 1)
    with pytest.raises(sh.WriterError, match=r"s3://bkt/outage/events\.out\.tfevents"):
        writer.flush()  # the store is gone: flush cannot say the data is durable
    for step in range(2, 5):  # the outage was reported: events are still accepted
        writer.add_summary(value(step), step)
    with pytest.raises(sh.WriterError):
        writer.flush()
    s3.start()
    deadline = time.monotonic() + 30
    while True:  # the writer retries on its own; flush succeeds once the store is back
        try:
            writer.flush()
            break
        except sh.WriterError:
            assert time.monotonic() < deadline, "the writer never recovered"
            time.sleep(0.5)
    writer.close()
    assert scalars("s3://bkt/outage") == [(step, float(step)) for step in range(5)]


def test_s3_hard_kill_keeps_what_was_flushed(s3, tmp_path):
    script = textwrap.dedent(
        """
        import sys, time
        import summary_hook as sh
        from tensorboard.compat.proto.summary_pb2 import Summary

        writer = sh.FileWriter("s3://bkt/killed")
        for step in range(50):
            writer.add_summary(Summary(value=[Summary.Value(tag="x", simple_value=step)]), step)
            if step % 10 == 9:
                writer.flush()
        print("flushed", flush=True)
        time.sleep(60)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=os.environ
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "flushed"
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stdout.close()
    assert [step for step, _ in scalars("s3://bkt/killed")] == list(range(50))


def test_s3_bytes_uploaded_are_linear_in_the_bytes_stored(s3):
    proxy = CountingProxy(s3.port)
    with s3_environment(proxy.url):
        writer = sh.FileWriter("s3://bkt/linear")
        for step in range(100):
            writer.add_summary(value(step, size=2000), step)  # about 2 KB a flush
            writer.flush()
        writer.close()
        stored = sum(fsspec.filesystem("s3").du("bkt/linear", total=False).values())
    assert stored > 200_000
    # Each byte once, plus one request's headers per flush (about 1 KB here).
    assert proxy.sent < stored + 101 * 2_000
    proxy.close()


def test_s3_resumed_run_hides_the_stale_points_in_both_readers(s3):
    url = "s3://bkt/resumed"
    loss = sh.scalar("loss", lambda out: out, collections=[])

    def run(first_step: int, steps: int) -> None:
        hook = sh.SummarySaverHook(save_steps=1, output_dir=url, summary_op=loss)
        with sh.MonitoredSession(hooks=[hook], global_step=first_step) as session:
            for _ in range(steps):
                session.run(lambda: float(session.global_step))
        sh.SummaryWriterCache.clear()

    run(0, 8)  # steps 1..8, then a crash; the checkpoint was at step 4
    run(4, 6)  # steps 5..10
    shown = scalar_values(url, "loss")
    expected = [(step, float(step - 1)) for step in range(1, 11)]
    assert shown == {"EventAccumulator": expected, "UI": expected}


def test_s3_tensorboard_server_shows_a_run_while_it_is_written(s3):
    # TensorBoard's Python loader reads S3 itself (S3_ENDPOINT); the run is polled live.
    writer = sh.FileWriter("s3://bkt/live/run", flush_secs=1)
    with tensorboard("s3://bkt/live", load_fast="false") as port:
        for step in range(3):
            writer.add_summary(value(step), step)
        writer.flush()
        wait_until_served(port, "run", Counter({("x", 0): 1, ("x", 1): 1, ("x", 2): 1}))
        for step in range(3, 6):
            writer.add_summary(value(step), step)
        writer.flush()
        wait_until_served(port, "run", Counter({("x", step): 1 for step in range(6)}))
    writer.close()


def test_s3_writes_block_at_the_memory_bound_until_the_store_is_back(s3, monkeypatch):
    import threading

    from summary_hook._events import event_file

    monkeypatch.setattr(event_file, "_MAX_PENDING_BYTES", 20_000)
    writer = sh.FileWriter("s3://bkt/bounded", flush_secs=1, max_queue=5)
    writer.add_summary(value(0), 0)
    writer.flush()
    s3.stop()
    told, done = [], threading.Event()

    def produce() -> None:
        for step in range(1, 60):  # about 2 KB each: far past the bound
            try:
                writer.add_summary(value(step, size=2000), step)
            except sh.WriterError as error:  # the outage, told once; the event is not taken
                told.append(error)
                writer.add_summary(value(step, size=2000), step)
        done.set()

    producer = threading.Thread(target=produce)
    producer.start()
    deadline = time.monotonic() + 60  # the client's own retries come first
    while not told and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(told) == 1 and "s3://bkt/bounded" in str(told[0])
    assert not done.wait(3)  # blocked: the writer holds no more than the bound
    s3.start()
    assert done.wait(60)
    producer.join()
    writer.close()
    assert [step for step, _ in scalars("s3://bkt/bounded")] == list(range(60))
