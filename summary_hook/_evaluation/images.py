"""Image summaries on the device: TensorFlow v1's ``tf.summary.image``, from torch's layouts.

On a due step only the first ``max_outputs`` images are taken, laid out as
``[N, height, width, channels]`` and converted to ``uint8`` on their device, so that only
those bytes cross to the host, in the step's one transfer. PNG encoding happens later,
off the training thread when a hook writes them (see ``DeferredSummary``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from summary_hook._evaluation.values import array_value

__all__ = ["DATAFORMATS", "Pixels", "image_pixels", "image_tags"]

#: How each accepted layout becomes ``[N, H, W, C]``.
DATAFORMATS = {
    "NCHW": (0, 2, 3, 1),
    "NHWC": (0, 1, 2, 3),
    "CHW": (1, 2, 0),
    "HWC": (0, 1, 2),
    "HW": (),
}


@dataclass(frozen=True)
class Pixels:
    """The host images of one image summary: ``[H, W, C]`` ``uint8`` arrays."""

    arrays: list[np.ndarray]


def image_tags(tag: str, max_outputs: int, count: int) -> list[str]:
    """TensorFlow v1's tags: ``tag/image`` when ``max_outputs`` is 1, else
    ``tag/image/0``, ``tag/image/1``... for the ``count`` images written."""
    if max_outputs == 1:
        return [f"{tag}/image"][:count]
    return [f"{tag}/image/{i}" for i in range(count)]


def image_pixels(tag: str, value: Any, max_outputs: int, dataformats: str) -> torch.Tensor:
    """The first ``max_outputs`` images of ``value`` as ``[N, H, W, C]`` ``uint8`` on its
    device. ``uint8`` stays as it is; floats are taken as [0, 1], scaled and cast as
    TensorFlow's ``convert_image_dtype`` does (``x * 255.5``, truncated) and clipped.

    Raises:
        TypeError: If ``value`` is not a tensor or array of ``uint8`` or floats.
        ValueError: If its shape does not fit ``dataformats``, or it has not 1, 3 or 4
            channels. Each error names the tag.
    """
    value = array_value("image", tag, value)
    images: torch.Tensor = value.detach()
    if images.dim() != len(dataformats):
        raise ValueError(
            f"image {tag!r} with dataformats={dataformats!r} must have {len(dataformats)} "
            f"dimensions, got shape {tuple(images.shape)}"
        )
    if dataformats == "HW":
        images = images[None, :, :, None]
    elif len(dataformats) == 3:
        images = images.permute(DATAFORMATS[dataformats])[None]
    else:
        images = images[:max_outputs].permute(DATAFORMATS[dataformats])
    if images.shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"image {tag!r} must have 1, 3 or 4 channels, got {images.shape[-1]} "
            f"(shape {tuple(value.shape)}, dataformats={dataformats!r})"
        )
    if images.dtype == torch.uint8:
        return images.contiguous()
    if not images.dtype.is_floating_point:
        raise TypeError(f"image {tag!r} must be uint8 or floating point, got {images.dtype}")
    if images.dtype not in (torch.float32, torch.float64):
        images = images.float()
    scaled = torch.nan_to_num(images, nan=0.0) * 255.5
    converted: torch.Tensor = scaled.clamp_(0, 255).to(torch.uint8).contiguous()
    return converted
