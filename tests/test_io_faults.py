"""I/O faults: a clear exception in the training thread, never a hang, never silence."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess

import pytest
import torch

import summary_hook as sh
from tests.test_writer import FailingFile


@contextlib.contextmanager
def tmpfs(path, options):
    """A real small or read-only filesystem; needs root (as on CI), else None."""
    os.makedirs(path, exist_ok=True)
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True
    ).returncode == 0  # fmt: skip
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], check=True)


def big_histogram_hook(logdir, **writer):
    op = sh.histogram("h", lambda: torch.randn(100_000), collections=[])
    writer = sh.FileWriter(logdir, **writer)
    return sh.SummarySaverHook(save_steps=1, summary_writer=writer, summary_op=op)


def test_disk_full_raises_in_the_training_thread(tmp_path):
    disk = tmp_path / "disk"
    with tmpfs(disk, "size=256k") as mounted:
        hook = big_histogram_hook(str(disk), max_queue=2)
        if not mounted:  # no root: the same fault from a file object that fails like ENOSPC
            hook.summary_writer._events._file._file = FailingFile(
                hook.summary_writer._events._file._file
            )
        with pytest.raises(sh.WriterError, match="No space left on device") as info:
            with sh.MonitoredSession(hooks=[hook]) as sess:
                for _ in range(2000):  # ~6 KB per event: the disk fills within 50 steps
                    sess.run(lambda: None)
        assert info.value.__cause__.errno == errno.ENOSPC
        hook.summary_writer.close()  # already reported: closes quietly


def test_read_only_directory_fails_at_begin(tmp_path):
    target = tmp_path / "ro"
    with tmpfs(target, "ro,size=64k") as mounted:
        if not mounted:
            if os.geteuid() == 0:
                pytest.skip("root ignores permission bits, and this machine lets no one mount")
            target.chmod(0o500)  # a real fault for anyone but root
        hook = sh.SummarySaverHook(
            save_steps=1,
            output_dir=str(target / "run"),
            summary_op=sh.scalar("x", lambda: 1.0, collections=[]),
        )
        with pytest.raises(OSError, match="Read-only file system|Permission denied"):
            sh.MonitoredSession(hooks=[hook])  # begin() opens the writer


def test_output_dir_that_is_a_file_fails_at_begin(tmp_path):
    target = tmp_path / "events"
    target.write_text("not a directory")
    hook = sh.SummarySaverHook(
        save_steps=1, output_dir=str(target), summary_op=sh.scalar("x", lambda: 1.0, collections=[])
    )
    message = f"logdir '{target}' exists and is not a directory"
    with pytest.raises(NotADirectoryError, match=message):
        sh.MonitoredSession(hooks=[hook])


def test_directory_removed_during_a_run_is_reported_at_end(tmp_path):
    logdir = tmp_path / "run"
    hook = sh.SummarySaverHook(
        save_steps=1, output_dir=str(logdir), summary_op=sh.scalar("x", lambda: 1.0, collections=[])
    )
    with pytest.raises(sh.WriterError, match="was deleted while being written"):
        with sh.MonitoredSession(hooks=[hook]) as sess:
            sess.run(lambda: None)
            shutil.rmtree(logdir)
            sess.run(lambda: None)
        # end() flushes: the loss is reported there, not silently dropped


def test_worker_failure_releases_a_producer_blocked_on_a_full_queue(tmp_path):
    writer = sh.FileWriter(str(tmp_path), max_queue=1, flush_secs=3600)
    writer._events._file._file = FailingFile(writer._events._file._file)
    hook = sh.SummarySaverHook(
        save_steps=1, summary_writer=writer, summary_op=sh.scalar("x", lambda: 1.0, collections=[])
    )
    with pytest.raises(sh.WriterError):
        with sh.MonitoredSession(hooks=[hook]) as sess:
            for _ in range(10_000):
                sess.run(lambda: None)
    writer.close()
