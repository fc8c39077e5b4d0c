"""End to end: the real `tensorboard` server serves exactly what the demo wrote."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.conftest import accumulator
from tests.readers import get, tensorboard


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
    with tensorboard(demo_logdir, load_fast="false") as port:
        deadline = time.monotonic() + 60
        while not get(port, "/data/plugin/scalars/tags").get(".", {}):
            assert time.monotonic() < deadline, "tensorboard shows no scalars"
            time.sleep(0.5)
        yield port


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
    served = get(port, "/data/plugin/histograms/histograms", run=".", tag="weights/0.weight")
    written = acc.Histograms("weights/0.weight")
    assert [step for _, step, _ in served] == [e.step for e in written]
    for (_, _, buckets), event in zip(served, written, strict=True):
        assert sum(count for _, _, count in buckets) == event.histogram_value.num
