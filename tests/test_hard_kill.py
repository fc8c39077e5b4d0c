"""SIGKILL at random moments: files stay readable and every flushed event survives."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from summary_hook._events.records import RecordError, iter_records
from tests.conftest import event_files, read_events

pytestmark = pytest.mark.slow  # subprocesses, servers or several processes

CHILD = os.path.join(os.path.dirname(__file__), "kill_child.py")
KILLS = 20


def kill_once(logdir: str, delay: float) -> int:
    """Start the loop, kill it ``delay`` seconds after it is ready; the last flushed step."""
    child = subprocess.Popen([sys.executable, CHILD, logdir], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    time.sleep(delay)
    child.send_signal(signal.SIGKILL)
    output, _ = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL
    flushed = [int(line.split()[1]) for line in output.splitlines() if line.startswith("flushed")]
    return flushed[-1] if flushed else 0


def check_survivors(logdir: str, flushed: int) -> None:
    (path,) = event_files(logdir)
    # Our strict reader: whole records, then at most a truncated tail; never a bad CRC.
    with open(path, "rb") as file:
        records = iter_records(file)
        try:
            for _ in records:
                pass
        except RecordError as error:
            assert "truncated" in str(error), error
    # TensorBoard's reader reads the file without error and stops cleanly at the tail.
    events = read_events(path)
    steps = [e.step for e in events if e.HasField("summary")]
    assert steps == list(range(1, len(steps) + 1))  # in order, none missing in between
    assert len(steps) >= flushed  # everything flushed before the kill is there
    for event in events:
        for value in event.summary.value:
            if value.tag == "loss":
                assert value.simple_value == event.step


def test_sigkill_at_random_moments_loses_only_the_unflushed_tail(tmp_path):
    rng = random.Random(1234)
    delays = [rng.uniform(0.0, 0.6) for _ in range(KILLS)]
    logdirs = [str(tmp_path / f"kill{i}") for i in range(KILLS)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        flushed = list(pool.map(kill_once, logdirs, delays))
    for logdir, last in zip(logdirs, flushed, strict=True):
        check_survivors(logdir, last)
    assert sum(flushed) > 0, "no kill landed after a flush; the test proved nothing"
