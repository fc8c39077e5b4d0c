"""What TensorBoard's readers and its server show of a run, beside every point on disk.

A point is ``(tag, step)``, counted with multiplicity. ``on_disk`` reads every record of
every event file of the directory, whoever wrote it; the two accumulators are the ones
TensorBoard uses: ``EventAccumulator`` (``readback``, ``summary-hook show``, tbparse) and
the plugin accumulator behind the UI's Python loader. Neither keeps anything less than all
points here (size guidance 0), so a difference from the disk is a purge.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from tensorboard.backend.event_processing import event_file_loader, plugin_event_accumulator
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

Points = Counter[tuple[str, int]]

_EVERYTHING = {"scalars": 0, "histograms": 0, "tensors": 0, "images": 0, "audio": 0}


def event_files(run_dir: str) -> list[str]:
    """The event files of one run directory, in the order TensorBoard reads them."""
    return sorted(glob.glob(os.path.join(run_dir, "*tfevents*")))


def on_disk(run_dir: str, files: Iterable[str] | None = None) -> Points:
    """Every summary value of every event file (or of ``files``), as written."""
    points: Points = Counter()
    for path in event_files(run_dir) if files is None else files:
        for event in event_file_loader.LegacyEventFileLoader(path).Load():
            for value in event.summary.value:
                points[(value.tag, event.step)] += 1
    return points


def in_event_accumulator(run_dir: str) -> Points:
    acc = EventAccumulator(run_dir, size_guidance=_EVERYTHING)
    acc.Reload()
    tags = acc.Tags()
    points: Points = Counter()
    for kind, read in (("scalars", acc.Scalars), ("histograms", acc.Histograms)):
        for tag in tags[kind]:
            points.update((tag, e.step) for e in read(tag))
    for tag in tags["tensors"]:
        points.update((tag, e.step) for e in acc.Tensors(tag))
    return points


def in_ui_accumulator(run_dir: str) -> Points:
    acc = plugin_event_accumulator.EventAccumulator(run_dir, size_guidance=_EVERYTHING)
    acc.Reload()
    points: Points = Counter()
    for tag in acc.Tags()["tensors"]:
        points.update((tag, e.step) for e in acc.Tensors(tag))
    return points


def steps(points: Points, tag: str) -> list[int]:
    """The steps of ``tag``, sorted, each as often as it appears."""
    return sorted(step for (t, step), n in points.items() if t == tag for _ in range(n))


def assert_readers_show(run_dir: str, expected: Points) -> None:
    """Both of TensorBoard's accumulators show exactly ``expected`` for ``run_dir``."""
    for name, read in (("EventAccumulator", in_event_accumulator), ("UI", in_ui_accumulator)):
        shown = read(run_dir)
        missing, extra = expected - shown, shown - expected
        assert not missing and not extra, (
            f"{name} of {run_dir}: hides {sorted(missing)}, shows stale {sorted(extra)}"
        )


def scalar_values(run_dir: str, tag: str) -> dict[str, list[tuple[int, float]]]:
    """``(step, value)`` of a scalar ``tag``, as each accumulator shows it, by step."""
    legacy = EventAccumulator(run_dir, size_guidance=_EVERYTHING)
    legacy.Reload()
    ui = plugin_event_accumulator.EventAccumulator(run_dir, size_guidance=_EVERYTHING)
    ui.Reload()
    return {
        "EventAccumulator": sorted((e.step, e.value) for e in legacy.Scalars(tag)),
        "UI": sorted((e.step, float(e.tensor_proto.float_val[0])) for e in ui.Tensors(tag)),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


#: What a process that torch's gloo backend aborts at exit prints last: now and then,
#: under load, after ``destroy_process_group()`` and after everything else (pytorch
#: issue 190489). A script's results are complete by then.
TORCH_EXIT_ABORT = "terminate called without an active exception"


def ended_well(returncode: int, output: str) -> bool:
    """Whether a rank's process ended well: exit status 0, or torch's abort at exit
    (:data:`TORCH_EXIT_ABORT`, SIGABRT) after it had done its work: its own, a torchrun
    rank's, or a process that ``torch.multiprocessing.spawn`` started (``ddp_spawn``),
    which its parent reports. The caller checks the work's files."""
    aborted_at_exit = (
        returncode == -6 or "exitcode  : -6" in output or "terminated with signal SIGABRT" in output
    )
    return returncode == 0 or (aborted_at_exit and TORCH_EXIT_ABORT in output)


def get(port: int, path: str, **query: str) -> Any:
    """A JSON answer of the TensorBoard server on ``port``."""
    url = f"http://127.0.0.1:{port}{path}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@contextlib.contextmanager
def tensorboard(logdir: str, load_fast: str) -> Iterator[int]:
    """The real ``tensorboard`` server on ``logdir``, reloading every second; yields its port.

    ``load_fast="false"`` is the Python loader (it purges on ``SessionLog.START``),
    ``"true"`` the Rust data server (it never purges).
    """
    port = free_port()
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", logdir]
    command += ["--host", "127.0.0.1", "--port", str(port), "--reload_interval", "1"]
    command += ["--load_fast", load_fast]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                get(port, "/data/runs")
                break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                assert process.stderr is not None
                raise RuntimeError(f"tensorboard did not come up: {process.stderr.read()!r}")
            time.sleep(0.3)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        assert process.stderr is not None
        process.stderr.close()


def served(port: int, run: str) -> Points:
    """The scalar and histogram points the server shows for ``run``."""
    points: Points = Counter()
    for plugin in ("scalars", "histograms"):
        for tag in get(port, f"/data/plugin/{plugin}/tags").get(run, {}):
            data = get(port, f"/data/plugin/{plugin}/{plugin}", run=run, tag=tag)
            points.update((tag, step) for _, step, _ in data)
    return points


def wait_until_served(port: int, run: str, expected: Points, timeout: float = 30) -> None:
    """Poll the server until it shows exactly ``expected`` for ``run``."""
    deadline = time.monotonic() + timeout
    shown: Points = Counter()
    while time.monotonic() < deadline:
        shown = served(port, run)
        if shown == expected:
            return
        time.sleep(0.5)
    missing, extra = expected - shown, shown - expected
    raise AssertionError(f"the server hides {sorted(missing)}, shows stale {sorted(extra)}")
