"""Text summaries, written as TensorFlow v1's tf.summary.text: read back by TensorBoard's
readers and served by its text plugin."""

from __future__ import annotations

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util import tensor_util

import summary_hook as sh
from tests.conftest import all_events, save_every_step
from tests.readers import get, tensorboard


def run_hook(logdir: str, op: sh.SummaryOp, steps: int = 3) -> None:
    save_every_step(logdir, op, steps)


def texts(logdir: str, tag: str) -> list[tuple[int, np.ndarray]]:
    acc = EventAccumulator(logdir, size_guidance={"tensors": 0})
    acc.Reload()
    assert acc.SummaryMetadata(tag).plugin_data.plugin_name == "text"
    return [(e.step, tensor_util.make_ndarray(e.tensor_proto)) for e in acc.Tensors(tag)]


@pytest.mark.parametrize(
    ("value", "shape"),
    [
        ("**loss** went *down*", ()),
        (["a", "b", "c"], (3,)),
        (np.array([["step", "loss"], ["1", "0.5"]]), (2, 2)),
        ("ünïcødé ✓", ()),
    ],
)
def test_text_round_trips_through_tensorboards_reader(tmp_path, value, shape):
    run_hook(str(tmp_path), sh.text("notes", lambda: value, collections=[]))
    written = texts(str(tmp_path), "notes")
    assert [step for step, _ in written] == [1, 2, 3]
    for _, array in written:
        assert array.shape == shape
        expected = np.asarray(value, dtype=object).reshape(-1)
        assert [item.decode("utf-8") for item in array.reshape(-1)] == list(expected)


def test_text_tag_has_no_suffix_and_metadata_is_written_once_per_tag(tmp_path):
    op = sh.merge(
        [sh.text("notes", lambda: "x", collections=[]), sh.scalar("s", lambda: 1.0, collections=[])]
    )
    run_hook(str(tmp_path), op)
    values = [v for e in all_events(str(tmp_path)) for v in e.summary.value if v.tag == "notes"]
    assert len(values) == 3
    assert [v.HasField("metadata") for v in values] == [True, False, False]  # TensorFlow's rule
    assert values[0].metadata.plugin_data.plugin_name == "text"


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (None, TypeError, r"text 'notes': its function returned None"),
        ([1, 2], TypeError, r"text 'notes' must hold strings, got \[1, 2\]"),
        ({"loss": "x"}, TypeError, r"text 'notes' got a dict \(keys 'loss'\)"),
        (
            np.full((2, 2, 2), "x"),
            ValueError,
            r"text 'notes' must be a string or a 1-D or 2-D array",
        ),
    ],
)
def test_raises_when_text_is_not_strings_naming_the_tag(value, error, message):
    with pytest.raises(error, match=message):
        sh.evaluate(sh.text("notes", lambda: value, collections=[]))


def test_text_makes_no_transfer():
    from benchmarks.harness import CountTransfers

    with CountTransfers() as counter:
        sh.evaluate(sh.text("notes", lambda: "x", collections=[]))
    assert counter.transfers == 0


def test_tensorboard_server_serves_the_text(tmp_path):
    run_hook(str(tmp_path), sh.text("notes", lambda: "**bold** text", collections=[]))
    with tensorboard(str(tmp_path), load_fast="false") as port:
        import time

        deadline = time.monotonic() + 30
        while True:
            tags = get(port, "/data/plugin/text/tags")
            if tags.get(".") == ["notes"] or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert tags == {".": ["notes"]}
        served = get(port, "/data/plugin/text/text", run=".", tag="notes")
    assert [entry["step"] for entry in served] == [1, 2, 3]
    assert "<strong>bold</strong>" in served[0]["text"]  # rendered from Markdown


def test_text_metadata_is_written_again_in_a_new_file_of_the_same_writer(tmp_path):
    # A notebook cell that clears its log directory and runs the same hook again: the
    # writer of that directory starts a new file, whose texts need their metadata again.
    import shutil

    logdir = str(tmp_path / "run")
    op = sh.text("notes", lambda: "again", collections=[])
    for _ in range(2):
        shutil.rmtree(logdir, ignore_errors=True)
        hook = sh.SummarySaverHook(save_steps=1, output_dir=logdir, summary_op=op)
        with sh.MonitoredSession(hooks=[hook]) as session:
            session.run(lambda: None)
            session.run(lambda: None)
    assert [step for step, _ in texts(logdir, "notes")] == [1, 2]
    values = [v for e in all_events(logdir) for v in e.summary.value]
    assert [v.tag for v in values if v.HasField("metadata")] == ["notes"]
