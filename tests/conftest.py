"""Shared fixtures: a clean state per test and readers built on TensorBoard's own code."""

from __future__ import annotations

import glob
import os
import re
from collections import defaultdict

import pytest
from tensorboard.backend.event_processing import event_file_loader
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.compat.proto.event_pb2 import Event

import summary_hook as sh

# Scripts that tests run as subprocesses: not test modules, and not for doctest collection.
collect_ignore = ["ddp_script.py", "kill_child.py", "sigterm_child.py", "journeys", "distributed"]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def _clean_state():
    sh.clear_collection(None)
    yield
    sh.SummaryWriterCache.clear()
    sh.clear_collection(None)


@pytest.fixture
def hook_calls(monkeypatch):
    """Whether each call of an ``output_of`` tap's forward hook found the tap armed."""
    from summary_hook._ops.taps import Tap

    calls = []
    capture = Tap._capture

    def counting(self, module, args, output):
        calls.append(self.armed)
        return capture(self, module, args, output)

    monkeypatch.setattr(Tap, "_capture", counting)
    return calls


def doc_blocks(path: str) -> list[tuple[str, str]]:
    """The fenced code blocks of a Markdown file (relative to the repository), in order,
    as ``(language, code)``."""
    with open(os.path.join(ROOT, path), encoding="utf-8") as page:
        text = page.read()
    return re.findall(r"^```(\w+)\n(.*?)^```$", text, flags=re.S | re.M)


def readme_blocks() -> list[tuple[str, str]]:
    """The README's fenced code blocks, in order, as ``(language, code)``."""
    return doc_blocks("README.md")


def docs_pages() -> list[str]:
    """The documentation's pages, in the order of the site's navigation (``mkdocs.yml``)."""
    with open(os.path.join(ROOT, "mkdocs.yml"), encoding="utf-8") as config:
        return [f"docs/{page}" for page in re.findall(r":\s+(\S+\.md)\s*$", config.read(), re.M)]


def usage_blocks() -> list[tuple[str, str]]:
    """Every code block a user reads: the README's, then each documentation page's."""
    return [block for path in ["README.md", *docs_pages()] for block in doc_blocks(path)]


def event_files(logdir: str) -> list[str]:
    return sorted(glob.glob(os.path.join(logdir, "**", "*tfevents*"), recursive=True))


def read_events(path: str) -> list[Event]:
    """Every event of one file as written, read by TensorBoard's own loader."""
    return list(event_file_loader.LegacyEventFileLoader(path).Load())


def all_events(logdir: str) -> list[Event]:
    return [event for path in event_files(logdir) for event in read_events(path)]


def summaries_by_step(logdir: str) -> dict[int, dict[str, float]]:
    """``{step: {tag: simple_value}}`` of every summary event, TensorFlow's golden form."""
    table: dict[int, dict[str, float]] = defaultdict(dict)
    for event in all_events(logdir):
        for value in event.summary.value:
            if value.HasField("simple_value"):
                assert value.tag not in table[event.step], f"{value.tag} twice at {event.step}"
                table[event.step][value.tag] = value.simple_value
    return dict(table)


def save_every_step(logdir: str, op: sh.SummaryOp, steps: int) -> None:
    """Run ``steps`` empty steps with a hook saving ``op`` into ``logdir`` on each, then
    close the directory's writer."""
    hook = sh.SummarySaverHook(save_steps=1, output_dir=logdir, summary_op=op)
    with sh.MonitoredSession(hooks=[hook]) as session:
        for _ in range(steps):
            session.run(lambda: None)
    sh.SummaryWriterCache.clear()


def accumulator(logdir: str) -> EventAccumulator:
    acc = EventAccumulator(logdir, size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    return acc


class Counter:
    """A summary value that counts its evaluations, like TensorFlow's ``assign_add`` fixture."""

    def __init__(self, scale: float = 1.0) -> None:
        self.calls = 0
        self.scale = scale

    def __call__(self) -> float:
        self.calls += 1
        return self.calls * self.scale
