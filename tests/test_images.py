"""Image summaries, written as TensorFlow v1's tf.summary.image: pixels read back through
TensorBoard's reader and decoded with Pillow, TensorFlow's tags, one transfer, PNG encoding
off the training thread, and the images served by the real server."""

from __future__ import annotations

import io
import shutil
import subprocess
import threading
import time
import urllib.request
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.compat.proto.summary_pb2 import Summary

import summary_hook as sh
from benchmarks.harness import CountTransfers
from tests.conftest import save_every_step
from tests.readers import get, tensorboard


def run_hook(logdir: str, op: sh.SummaryOp, steps: int = 1) -> None:
    save_every_step(logdir, op, steps)


def read_images(logdir: str) -> dict[str, list[np.ndarray]]:
    acc = EventAccumulator(logdir, size_guidance={"images": 0})
    acc.Reload()
    return {
        tag: [np.array(Image.open(io.BytesIO(e.encoded_image_string))) for e in acc.Images(tag)]
        for tag in acc.Tags()["images"]
    }


def expected_uint8(images: np.ndarray) -> np.ndarray:
    """TensorFlow's convert_image_dtype for floats in [0, 1], with clipping."""
    if images.dtype == np.uint8:
        return images
    return np.clip(np.trunc(images.astype(np.float64) * 255.5), 0, 255).astype(np.uint8)


def as_nhwc(images: np.ndarray, dataformats: str) -> np.ndarray:
    if dataformats == "HW":
        return images[None, :, :, None]
    if dataformats == "CHW":
        return images.transpose(1, 2, 0)[None]
    if dataformats == "HWC":
        return images[None]
    if dataformats == "NCHW":
        return images.transpose(0, 2, 3, 1)
    return images


def squeeze_grey(array: np.ndarray) -> np.ndarray:
    return array[..., 0] if array.shape[-1] == 1 else array


LAYOUTS = [(f, c) for f in ("NCHW", "NHWC", "CHW", "HWC") for c in (1, 3, 4)] + [("HW", 1)]


@pytest.mark.parametrize(("dataformats", "channels"), LAYOUTS)
@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64, np.float16])
def test_pixels_round_trip_through_tensorboards_reader(tmp_path, dataformats, dtype, channels):
    rng = np.random.default_rng(0)
    shape = {"NCHW": (2, channels, 5, 7), "NHWC": (2, 5, 7, channels), "CHW": (channels, 5, 7),
             "HWC": (5, 7, channels), "HW": (5, 7)}[dataformats]  # fmt: skip
    if dtype == np.uint8:
        images = rng.integers(0, 256, shape, dtype=np.uint8)
    else:  # [0, 1], with values past both ends and the exact ends, which are clipped
        images = rng.uniform(-0.2, 1.2, shape).astype(dtype)
        images.reshape(-1)[:2] = (0.0, 1.0)
    run_hook(str(tmp_path), sh.image("im", lambda: torch.from_numpy(images), 3, dataformats, []))
    expected = expected_uint8(as_nhwc(images, dataformats))
    written = read_images(str(tmp_path))
    tags = [f"im/image/{i}" for i in range(len(expected))]
    assert sorted(written) == tags
    for tag, image in zip(tags, expected, strict=True):
        (decoded,) = written[tag]
        np.testing.assert_array_equal(decoded, squeeze_grey(image))


def test_tags_follow_tensorflow_v1(tmp_path):
    batch = torch.rand(5, 3, 4, 4)
    run_hook(str(tmp_path / "one"), sh.image("a", lambda: batch, max_outputs=1, collections=[]))
    run_hook(str(tmp_path / "three"), sh.image("b", lambda: batch, max_outputs=3, collections=[]))
    run_hook(str(tmp_path / "few"), sh.image("c", lambda: batch[:2], max_outputs=3, collections=[]))
    assert sorted(read_images(str(tmp_path / "one"))) == ["a/image"]
    assert sorted(read_images(str(tmp_path / "three"))) == ["b/image/0", "b/image/1", "b/image/2"]
    assert sorted(read_images(str(tmp_path / "few"))) == ["c/image/0", "c/image/1"]


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: sh.image("im", lambda: 0, max_outputs=0), ValueError, r"max_outputs must be positive, got 0"),
        (lambda: sh.image("im", lambda: 0, dataformats="XY"), ValueError, r"dataformats must be one of 'NCHW'.*got 'XY'"),
    ],
)  # fmt: skip
def test_raises_when_the_op_is_bad(make, error, message):
    with pytest.raises(error, match=message):
        make()


@pytest.mark.parametrize(
    ("value", "dataformats", "error", "message"),
    [
        (None, "NCHW", TypeError, r"image 'im': its function returned None"),
        (torch.zeros(3, 4, 4), "NCHW", ValueError, r"image 'im' with dataformats='NCHW' must have 4 dimensions, got shape \(3, 4, 4\)"),
        (torch.zeros(1, 2, 4, 4), "NCHW", ValueError, r"image 'im' must have 1, 3 or 4 channels, got 2"),
        (torch.zeros(1, 3, 4, 4, dtype=torch.int32), "NCHW", TypeError, r"image 'im' must be uint8 or floating point, got torch.int32"),
        (torch.empty(1, 3, 4, 4, device="meta"), "NCHW", ValueError, r"image 'im' is a tensor on the meta device, which holds no values"),
        (torch.zeros(1, 3, 4, 4, dtype=torch.complex64), "NCHW", TypeError, r"image 'im' must be real, got a torch.complex64 tensor"),
        ({"loss": torch.zeros(1, 3, 4, 4)}, "NCHW", TypeError, r"image 'im' got a dict \(keys 'loss'\); .*a one-argument function gets the batch's outputs"),
        ([["a"]], "HW", TypeError, r"image 'im' must hold real numbers, got \[\['a'\]\]"),
    ],
)  # fmt: skip
def test_raises_when_the_images_are_bad_naming_the_tag(value, dataformats, error, message):
    with pytest.raises(error, match=message):
        sh.evaluate(sh.image("im", lambda: value, dataformats=dataformats, collections=[]))


def test_images_cross_in_the_steps_one_transfer():
    ops = [
        sh.image("im", lambda: torch.rand(4, 3, 8, 8), collections=[]),
        sh.scalar("s", lambda: torch.tensor(1.5), collections=[]),
        sh.histogram("h", lambda: torch.randn(100), collections=[]),
    ]
    with CountTransfers() as counter:
        summary = sh.evaluate(sh.merge(ops))
    assert counter.transfers == 1
    assert [v.tag for v in summary.value] == ["im/image/0", "im/image/1", "im/image/2", "s", "h"]


def test_png_encoding_runs_in_the_writers_thread(tmp_path, monkeypatch):
    from summary_hook._events import pending

    threads = []
    encode = pending.encode_png

    def recording(pixels: np.ndarray) -> bytes:
        threads.append(threading.current_thread().name)
        return encode(pixels)

    monkeypatch.setattr(pending, "encode_png", recording)
    run_hook(str(tmp_path), sh.image("im", lambda: torch.rand(8, 3, 16, 16), collections=[]), 3)
    assert len(threads) == 9
    assert all(name.startswith("summary_hook-writer") for name in threads), threads
    assert len(read_images(str(tmp_path))["im/image/0"]) == 3


class RecordingWriter:
    """A writer of a user's own, with TensorFlow's three methods."""

    def __init__(self) -> None:
        self.summaries: list[tuple[int, Any]] = []

    def add_summary(self, summary: Any, global_step: int | None = None) -> None:
        self.summaries.append((global_step, summary))

    def add_session_log(self, session_log: Any, global_step: int | None = None) -> None:
        pass

    def flush(self) -> None:
        pass


def image_and_text_op() -> sh.SummaryOp:
    return sh.merge(
        [
            sh.image("im", lambda: torch.rand(2, 3, 8, 8), collections=[]),
            sh.text("note", lambda: "hi", collections=[]),
        ]
    )


def test_a_writer_of_ones_own_gets_complete_summaries_from_the_hook():
    writer = RecordingWriter()
    hook = sh.SummarySaverHook(save_steps=1, summary_writer=writer, summary_op=image_and_text_op())
    with sh.MonitoredSession(hooks=[hook]) as session:
        session.run(lambda: None)
    ((step, summary),) = writer.summaries
    assert step == 1 and isinstance(summary, Summary)
    images = [Image.open(io.BytesIO(v.image.encoded_image_string)) for v in summary.value[:2]]
    assert [image.size for image in images] == [(8, 8), (8, 8)]
    assert summary.value[2].metadata.plugin_data.plugin_name == "text"


def test_a_hook_of_ones_own_writes_what_its_results_hold_through_any_writer(tmp_path):
    # What a hook's results hold for an op with images is what every writer takes.
    class Hook(sh.SessionRunHook):
        def __init__(self, writer: Any) -> None:
            self.writer = writer

        def before_run(self, run_context):
            return sh.SessionRunArgs(image_and_text_op())

        def after_run(self, run_context, run_values):
            self.writer.add_summary(run_values.results, run_context.session.global_step)

    file_writer = sh.FileWriter(str(tmp_path))
    with sh.MonitoredSession(hooks=[Hook(file_writer)]) as session:
        session.run(lambda: None)
    file_writer.close()
    assert [len(a) for a in read_images(str(tmp_path)).values()] == [1, 1]


def served_image_tags(port: int, timeout: float = 30) -> dict[str, Any]:
    """The image tags of run ``.``, once the server has loaded them."""
    deadline = time.monotonic() + timeout
    while True:
        tags = get(port, "/data/plugin/images/tags")
        if tags.get(".") or time.monotonic() > deadline:
            return dict(tags.get(".", {}))
        time.sleep(0.5)


def test_tensorboard_server_serves_the_images(tmp_path):
    run_hook(str(tmp_path), sh.image("im", lambda: torch.rand(2, 3, 6, 9), collections=[]), 2)
    with tensorboard(str(tmp_path), load_fast="false") as port:
        tags = {".": served_image_tags(port)}
        assert sorted(tags["."]) == ["im/image/0", "im/image/1"]
        assert tags["."]["im/image/0"]["samples"] == 1
        served = get(port, "/data/plugin/images/images", run=".", tag="im/image/0", sample="0")
        first = served[0]
        png = urllib.request.urlopen(
            f"http://127.0.0.1:{port}/data/plugin/images/individualImage?{first['query']}"
        )
        with png:
            pixels = np.array(Image.open(io.BytesIO(png.read())))
    assert [entry["step"] for entry in served] == [1, 2]
    assert pixels.shape == (6, 9, 3)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="needs a Chromium to take the screenshot (Debian: apt-get install chromium)",
)
def test_the_images_dashboard_shows_the_image_in_a_browser(tmp_path):
    """What a user sees: TensorBoard's images dashboard in a headless Chromium shows the
    written image, as a solid block of its exact colour."""
    magenta = torch.zeros(3, 32, 32)
    magenta[0] = magenta[2] = 1.0
    logdir, shot = tmp_path / "logs", tmp_path / "dashboard.png"
    run_hook(str(logdir), sh.image("swatch", lambda: magenta, dataformats="CHW", collections=[]))
    with tensorboard(str(logdir), load_fast="false") as port:
        assert list(served_image_tags(port)) == ["swatch/image/0"]
        assert CHROMIUM is not None
        subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,1000",
             "--virtual-time-budget=15000", f"--screenshot={shot}",
             f"http://127.0.0.1:{port}/#images"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
    pixels = np.array(Image.open(shot).convert("RGB")).astype(int)
    rows, cols = np.nonzero((pixels == (255, 0, 255)).all(axis=-1))
    assert rows.size, "the screenshot shows no magenta: the image was not drawn"
    height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    assert min(height, width) >= 32  # shown at least at its own size...
    assert rows.size == height * width  # ...as one solid block


def test_readback_and_show_list_image_and_text_tags(tmp_path):
    from summary_hook.readback import format_table, summarize

    ops = [
        sh.image("im", lambda: torch.rand(2, 3, 4, 4), max_outputs=1, collections=[]),
        sh.text("notes", lambda: "hi", collections=[]),
    ]
    run_hook(str(tmp_path), sh.merge(ops), 2)
    rows = {(row.tag, row.kind, row.points) for row in summarize(str(tmp_path))}
    assert rows == {("im/image", "image", 2), ("notes", "text", 2)}
    table = format_table(summarize(str(tmp_path)))
    assert "im/image  image" in table and "notes     text" in table
