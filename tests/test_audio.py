"""Audio summaries, as TensorFlow v1's ``tf.summary.audio`` writes them: 16-bit WAV,
TensorFlow's tags, encoded off the training thread, served by the real server."""

from __future__ import annotations

import io
import math
import threading
import time
import urllib.request
import wave

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import summary_hook as sh
from benchmarks.harness import CountTransfers
from tests.conftest import save_every_step
from tests.readers import get, tensorboard


def tensorflow_samples(clip: np.ndarray) -> np.ndarray:
    """TensorFlow's ``FloatToInt16Sample``: ``roundf(x * 32768)`` (halves away from zero),
    clamped to int16."""
    scaled = clip.astype(np.float32) * np.float32(32768)
    rounded = np.sign(scaled) * np.floor(np.abs(scaled) + np.float32(0.5))
    return np.clip(rounded, -32768, 32767).astype(np.int16)


def read_wav(data: bytes) -> tuple[int, int, np.ndarray]:
    """Rate, channels and ``[frames, channels]`` samples, as Python's ``wave`` reads them."""
    with wave.open(io.BytesIO(data)) as clip:
        assert clip.getsampwidth() == 2
        frames = np.frombuffer(clip.readframes(clip.getnframes()), dtype="<i2")
        return clip.getframerate(), clip.getnchannels(), frames.reshape(-1, clip.getnchannels())


def clips() -> torch.Tensor:
    t = torch.arange(800) / 8000
    tones = torch.stack([torch.sin(2 * math.pi * f * t) for f in (440, 660, 880, 990)]) * 0.7
    return torch.stack([tones, -tones], dim=-1)  # [4, 800, 2]


def test_clips_are_written_as_tensorflow_writes_them(tmp_path):
    values = clips()
    save_every_step(str(tmp_path), sh.audio("tone", lambda: values, 8000, collections=[]), 2)
    acc = EventAccumulator(str(tmp_path), size_guidance={"audio": 0})
    acc.Reload()
    assert acc.Tags()["audio"] == ["tone/audio/0", "tone/audio/1", "tone/audio/2"]
    for i, tag in enumerate(acc.Tags()["audio"]):
        events = acc.Audio(tag)
        assert [e.step for e in events] == [1, 2]
        event = events[0]
        assert (event.content_type, event.sample_rate, event.length_frames) == (
            "audio/wav",
            8000.0,
            800,
        )
        rate, channels, samples = read_wav(event.encoded_audio_string)
        assert (rate, channels) == (8000, 2)
        np.testing.assert_array_equal(samples, tensorflow_samples(values[i].numpy()))


def test_samples_round_halves_away_from_zero_and_clip_as_tensorflow_does():
    edge = [0.0, 1 / 65536, -1 / 65536, 3 / 65536, -3 / 65536, 1.0, -1.0, 1.5, -2.0, 0.25]
    values = torch.tensor([[*edge, float("nan")]])  # [1 clip, frames], one channel
    summary = sh.evaluate(sh.audio("a", lambda: values, 100, max_outputs=1, collections=[]))
    (value,) = summary.value
    assert value.tag == "a/audio"  # max_outputs=1: no index
    rate, channels, samples = read_wav(value.audio.encoded_audio_string)
    assert (rate, channels, value.audio.num_channels) == (100, 1, 1)
    expected = [0, 1, -1, 2, -2, 32767, -32768, 32767, -32768, 8192, 0]  # NaN: silence
    assert samples[:, 0].tolist() == expected
    assert tensorflow_samples(np.array(edge)).tolist() == expected[:-1]


@pytest.mark.parametrize(("rate", "written"), [(44100.5, 44100), (22050.5, 22050), (0.4, 1)])
def test_the_rate_in_the_wav_is_rounded_as_tensorflow_rounds_it(rate, written):
    summary = sh.evaluate(sh.audio("a", lambda: torch.zeros(1, 4), rate, collections=[]))
    assert summary.value[0].audio.sample_rate == pytest.approx(rate)
    assert read_wav(summary.value[0].audio.encoded_audio_string)[0] == written


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"sample_rate": 0}, ValueError, r"audio 'a': sample_rate must be positive.*0"),
        ({"sample_rate": float("nan")}, ValueError, r"audio 'a': sample_rate must be positive"),
        ({"sample_rate": "44k"}, TypeError, r"audio 'a': sample_rate must be a number.*'44k'"),
        ({"sample_rate": 8000, "max_outputs": 0}, ValueError, r"max_outputs must be positive"),
        ({"sample_rate": 8000, "max_outputs": 1.0}, TypeError, r"max_outputs must be an int"),
    ],
)
def test_bad_arguments_name_the_tag_and_show_the_value(kwargs, error, message):
    with pytest.raises(error, match=message):
        sh.audio("a", lambda: torch.zeros(1, 4), collections=[], **kwargs)


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (torch.zeros(8), ValueError, r"audio 'a' must be \[batch, frames, channels\].*\(8,\)"),
        (torch.zeros(1, 2, 3, 4), ValueError, r"audio 'a' must be.*\(1, 2, 3, 4\)"),
        (torch.zeros(1, 8, dtype=torch.int16), TypeError, r"audio 'a' must hold floats.*int16"),
        (torch.zeros(1, 0), ValueError, r"audio 'a' has no frames"),
        (None, TypeError, r"audio 'a': its function returned None"),
        (torch.empty(1, 8, device="meta"), ValueError, r"audio 'a' is a tensor on the meta device"),
        ({"loss": torch.zeros(1, 8)}, TypeError, r"audio 'a' got a dict \(keys 'loss'\)"),
    ],
)
def test_bad_clips_raise_naming_the_tag(value, error, message):
    with pytest.raises(error, match=message):
        sh.evaluate(sh.audio("a", lambda: value, 8000, collections=[]))


def test_clips_cross_in_the_steps_one_transfer():
    ops = [
        sh.audio("a", lambda: torch.rand(4, 100, 2) - 0.5, 8000, collections=[]),
        sh.image("im", lambda: torch.rand(2, 3, 8, 8), collections=[]),
        sh.scalar("s", lambda: torch.tensor(1.5), collections=[]),
        sh.histogram("h", lambda: torch.randn(100), collections=[]),
    ]
    with CountTransfers() as counter:
        summary = sh.evaluate(sh.merge(ops))
    assert counter.transfers == 1
    tags = ["a/audio/0", "a/audio/1", "a/audio/2", "im/image/0", "im/image/1", "s", "h"]
    assert [v.tag for v in summary.value] == tags


def test_wav_encoding_runs_in_the_writers_thread(tmp_path, monkeypatch):
    from summary_hook._events import pending

    threads = []
    encode = pending.encode_wav

    def recording(samples: np.ndarray, rate: float) -> bytes:
        threads.append(threading.current_thread().name)
        return encode(samples, rate)

    monkeypatch.setattr(pending, "encode_wav", recording)
    save_every_step(str(tmp_path), sh.audio("a", lambda: clips(), 8000, collections=[]), 2)
    assert len(threads) == 6
    assert all(name.startswith("summary_hook-writer") for name in threads), threads


@pytest.mark.slow
def test_tensorboard_server_serves_the_clips(tmp_path):
    values = clips()
    save_every_step(str(tmp_path), sh.audio("tone", lambda: values, 8000, collections=[]), 1)
    with tensorboard(str(tmp_path), load_fast="false") as port:
        deadline = time.monotonic() + 60
        while not get(port, "/data/plugin/audio/tags").get(".", {}):
            assert time.monotonic() < deadline, "tensorboard shows no audio"
            time.sleep(0.5)
        tags = get(port, "/data/plugin/audio/tags")["."]
        assert {tag: info["samples"] for tag, info in tags.items()} == {
            "tone/audio/0": 1,
            "tone/audio/1": 1,
            "tone/audio/2": 1,
        }
        (served,) = get(port, "/data/plugin/audio/audio", run=".", tag="tone/audio/1", sample="0")
        assert served["step"] == 1 and served["contentType"] == "audio/wav"
        url = f"http://127.0.0.1:{port}/data/plugin/audio/individualAudio?{served['query']}"
        with urllib.request.urlopen(url) as response:
            data = response.read()
    rate, channels, samples = read_wav(data)
    assert (rate, channels) == (8000, 2)
    np.testing.assert_array_equal(samples, tensorflow_samples(values[1].numpy()))


def test_readback_lists_the_clips(tmp_path):
    from summary_hook import readback

    save_every_step(str(tmp_path), sh.audio("a", lambda: clips(), 8000, collections=[]), 3)
    rows = [r for r in readback.summarize(str(tmp_path)) if r.kind == "audio"]
    assert [(r.tag, r.points, r.first_step, r.last_step) for r in rows] == [
        (f"a/audio/{i}", 3, 1, 3) for i in range(3)
    ]
