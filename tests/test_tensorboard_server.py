"""End to end: the real `tensorboard` server serves exactly what the demo wrote."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

from tests.conftest import accumulator


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(port: int, path: str, **query: str):
    url = f"http://127.0.0.1:{port}{path}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture
def demo_logdir(tmp_path):
    out = str(tmp_path / "demo")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "summary_hook",
            "demo",
            "--loop",
            "plain",
            "--steps",
            "30",
            "--save-steps",
            "7",
            "--output-dir",
            out,
            "--no-progress",
            "--no-plot",
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return out


@pytest.fixture
def server(demo_logdir):
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tensorboard.main",
            "--logdir",
            demo_logdir,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--load_fast",
            "false",
            "--reload_interval",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                tags = get(port, "/data/plugin/scalars/tags")
                if tags.get(".", {}):
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"tensorboard did not come up: {process.stderr.read()[-2000:]!r}"
                )
            time.sleep(0.5)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stderr.close()


def test_tensorboard_serves_what_was_written(server, demo_logdir):
    port = server
    acc = accumulator(demo_logdir)
    assert "." in get(port, "/data/runs")

    scalar_tags = get(port, "/data/plugin/scalars/tags")["."]
    assert set(scalar_tags) == set(acc.Tags()["scalars"])
    for tag in scalar_tags:
        served = get(port, "/data/plugin/scalars/scalars", run=".", tag=tag)
        written = acc.Scalars(tag)
        assert [(step, value) for _, step, value in served] == [(e.step, e.value) for e in written]
        assert [step for _, step, _ in served] == [1, 8, 15, 22, 29]

    histogram_tags = get(port, "/data/plugin/histograms/tags")["."]
    assert set(histogram_tags) == set(acc.Tags()["histograms"])
    served = get(port, "/data/plugin/histograms/histograms", run=".", tag="weights/layer0")
    written = acc.Histograms("weights/layer0")
    assert [step for _, step, _ in served] == [e.step for e in written]
    for (_, _, buckets), event in zip(served, written, strict=True):
        assert sum(count for _, _, count in buckets) == event.histogram_value.num
