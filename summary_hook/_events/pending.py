"""What evaluation hands a writer when a summary needs more than writing as it is.

An op's evaluation gives a ``Summary``, or, for an op with images, audio or texts, a
:class:`DeferredSummary`: its images' PNG and its clips' WAV encoding is left to the
writer, which does it in its own thread, and its texts' plugin metadata is kept for a
tag's first value only, as TensorFlow's writer does. Every writer a hook holds
(``_events.writer.HookWriter``) takes either form through one method, so hooks pass
results on without looking at them; :func:`complete` gives the finished ``Summary`` of
either.

Thread contract: a :class:`DeferredSummary` may be resolved from the writer's thread
and the training thread at once (a checkpoint); ``_lock`` makes the encoding happen once.
"""

from __future__ import annotations

import threading

import numpy as np
from tensorboard.compat.proto.summary_pb2 import Summary

from summary_hook._events.png import encode_png
from summary_hook._events.wav import encode_wav

__all__ = ["DeferredSummary", "complete"]


class DeferredSummary:
    """The ``Summary`` of an op with images, audio or texts, its PNGs and WAVs not yet
    encoded.

    Args:
        summary: The summary, every value in place but the images' and clips' encoded
            bytes.
        images: Each image value with its ``[height, width, channels]`` uint8 pixels,
            and each audio value with its ``[frames, channels]`` int16 samples.
        has_metadata: Whether some value carries plugin metadata (a text).
    """

    __slots__ = ("_images", "_lock", "_summary", "has_metadata")

    def __init__(
        self,
        summary: Summary,
        images: list[tuple[Summary.Value, np.ndarray]],
        has_metadata: bool,
    ) -> None:
        self._summary = summary
        self._images = images
        self._lock = threading.Lock()
        self.has_metadata = has_metadata

    @property
    def has_images(self) -> bool:
        """Whether images or clips wait for their encoding."""
        return bool(self._images)

    def resolve(self) -> Summary:
        """Encode the images and clips (once) and return the complete ``Summary``."""
        with self._lock:
            for value, array in self._images:
                if value.HasField("audio"):
                    audio = value.audio
                    audio.encoded_audio_string = encode_wav(array, audio.sample_rate)
                else:
                    value.image.encoded_image_string = encode_png(array)
            self._images = []
        return self._summary


def complete(summary: Summary | DeferredSummary) -> Summary:
    """The finished ``Summary`` of an evaluation result of either form."""
    return summary.resolve() if isinstance(summary, DeferredSummary) else summary
