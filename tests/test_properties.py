"""Property: for any tags, values, interval and step sequence, the file reads back exactly
what was due, with TensorFlow's schedule computed by an independent oracle."""

from __future__ import annotations

import math
import struct
import tempfile
import time
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import summary_hook as sh
from tests.conftest import summaries_by_step

TAGS = st.lists(
    st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_./-]{0,20}", fullmatch=True),
    min_size=1,
    max_size=4,
    unique=True,
)
VALUES = st.lists(
    st.one_of(st.floats(width=32), st.integers(-(2**20), 2**20), st.booleans()),
    min_size=1,
    max_size=5,
)


def float32(value: float) -> bytes:
    """A value as it is stored: float32 bits (NaN payloads folded into one NaN)."""
    number = float(value)
    return b"nan" if math.isnan(number) else struct.pack("<f", number)


def due_by_steps(first_step: int, runs: int, every: int) -> list[int]:
    return [first_step + 1 + k * every for k in range(runs) if k * every < runs]


def due_by_seconds(first_step: int, ticks: list[float], every: float) -> list[int]:
    due, last, now = [], None, 0.0
    for run, tick in enumerate(ticks, start=1):
        if last is None or now >= last + every:
            due.append(first_step + run)
            last = now
        now += tick
    return due


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    tags=TAGS,
    values=VALUES,
    first_step=st.integers(0, 10_000),
    schedule=st.one_of(
        st.tuples(st.just("steps"), st.integers(1, 12), st.integers(1, 40)),
        st.tuples(
            st.just("secs"),
            st.sampled_from([0.25, 0.5, 1.0, 3.0]),
            st.lists(st.sampled_from([0.0, 0.125, 0.25, 0.5, 1.0]), min_size=1, max_size=40),
        ),
    ),
)
def test_file_holds_exactly_what_was_due(tags, values, first_step, schedule):
    logdir = tempfile.mkdtemp()
    sh.clear_collection()
    session: list[sh.MonitoredSession] = []

    def value_at(step: int):
        return values[step % len(values)]

    ops = [sh.scalar(tag, lambda i=i: value_at(session[0].global_step + i), collections=[])
           for i, tag in enumerate(tags)]  # fmt: skip
    kind, every, runs = schedule
    if kind == "steps":
        hook = sh.SummarySaverHook(save_steps=every, output_dir=logdir, summary_op=sh.merge(ops))
        ticks = [0.0] * runs
        expected_steps = due_by_steps(first_step, runs, every)
    else:
        hook = sh.SummarySaverHook(save_secs=every, output_dir=logdir, summary_op=sh.merge(ops))
        ticks = runs
        expected_steps = due_by_seconds(first_step, ticks, every)
    with mock.patch.object(time, "time") as clock:
        clock.return_value = 1_700_000_000.0
        with sh.MonitoredSession(hooks=[hook], global_step=first_step) as sess:
            session.append(sess)
            for tick in ticks:
                sess.run(lambda: None)
                clock.return_value += tick
    sh.SummaryWriterCache.clear()
    table = summaries_by_step(logdir)
    assert sorted(table) == expected_steps
    for step in expected_steps:
        written = {tag: float32(v) for tag, v in table[step].items()}
        assert written == {tag: float32(value_at(step + i)) for i, tag in enumerate(tags)}
