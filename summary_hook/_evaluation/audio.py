"""Audio summaries on the device: TensorFlow v1's ``tf.summary.audio``.

On a due step only the first ``max_outputs`` clips are taken, as ``[N, frames,
channels]``, and turned into 16-bit samples on their device as TensorFlow's WAV encoder
turns floats into them (``round(x * 32768)``, halves away from zero, clamped to the
int16 range), so that only those bytes cross to the host, in the step's one transfer.
WAV encoding happens later, off the training thread when a hook writes them (see
``DeferredSummary``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from summary_hook._evaluation.values import array_value

__all__ = ["Sound", "audio_samples", "audio_tags"]


@dataclass(frozen=True)
class Sound:
    """The host clips of one audio summary: ``[frames, channels]`` int16 arrays."""

    arrays: list[np.ndarray]


def audio_tags(tag: str, max_outputs: int, count: int) -> list[str]:
    """TensorFlow v1's tags: ``tag/audio`` when ``max_outputs`` is 1, else
    ``tag/audio/0``, ``tag/audio/1``... for the ``count`` clips written."""
    if max_outputs == 1:
        return [f"{tag}/audio"][:count]
    return [f"{tag}/audio/{i}" for i in range(count)]


def audio_samples(tag: str, value: Any, max_outputs: int) -> torch.Tensor:
    """The first ``max_outputs`` clips of ``value`` as ``[N, frames, channels]`` int16
    samples on its device.

    ``value`` is TensorFlow v1's layout: ``[batch, frames, channels]``, or ``[batch,
    frames]`` for one channel, floats in [-1, 1]; values outside are clipped, and NaN is
    silence.

    Raises:
        TypeError: If ``value`` is not a tensor or array of floats.
        ValueError: If it is not 2-D or 3-D, or has no frames or channels. Each error
            names the tag.
    """
    value = array_value("audio", tag, value)
    clips: torch.Tensor = value.detach()
    if clips.dim() not in (2, 3):
        raise ValueError(
            f"audio {tag!r} must be [batch, frames, channels] or [batch, frames], got shape "
            f"{tuple(clips.shape)}"
        )
    if not clips.dtype.is_floating_point:
        raise TypeError(f"audio {tag!r} must hold floats in [-1, 1], got {clips.dtype}")
    if clips.dim() == 2:
        clips = clips[:, :, None]
    if clips.shape[1] == 0 or clips.shape[2] == 0:
        raise ValueError(f"audio {tag!r} has no frames or no channels: shape {tuple(value.shape)}")
    scaled = torch.nan_to_num(clips[:max_outputs].float(), nan=0.0) * 32768.0
    # Halves away from zero, as C's roundf (torch.round takes them to even); exact, as
    # |scaled| + 0.5 needs no more bits than float32 has below 2^23.
    rounded = scaled.abs().add_(0.5).floor_().copysign_(scaled)
    samples: torch.Tensor = rounded.clamp_(-32768, 32767).to(torch.int16).contiguous()
    return samples
