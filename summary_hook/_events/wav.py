"""WAV encoding of 16-bit samples: what TensorBoard's audio dashboard plays, as
TensorFlow's ``EncodeAudioAsS16LEWav`` writes it (a RIFF header, then little-endian
PCM, channels interleaved)."""

from __future__ import annotations

import struct

import numpy as np

__all__ = ["encode_wav"]

_HEADER = struct.Struct("<4sI4s4sIHHIIHH4sI")


def encode_wav(samples: np.ndarray, sample_rate: float) -> bytes:
    """The WAV file of ``[frames, channels]`` int16 ``samples``; the rate is rounded to
    a whole number of frames a second (halves to even, as ``lrintf``), at least 1, as
    TensorFlow rounds it."""
    if samples.dtype != np.int16 or samples.ndim != 2:
        raise ValueError(
            f"encode_wav takes a [frames, channels] int16 array, got {samples.dtype} of "
            f"shape {samples.shape}"
        )
    rate = max(1, round(sample_rate))
    channels = samples.shape[1]
    data = np.ascontiguousarray(samples, dtype="<i2").tobytes()
    header = _HEADER.pack(
        b"RIFF",
        36 + len(data),
        b"WAVE",
        b"fmt ",
        16,  # the format chunk's size
        1,  # PCM
        channels,
        rate,
        rate * channels * 2,  # bytes a second
        channels * 2,  # bytes a frame
        16,  # bits a sample
        b"data",
        len(data),
    )
    return header + data
