"""PNG encoding of ``uint8`` images, with the standard library's zlib: what TensorBoard's
image dashboard reads, without an imaging library."""

from __future__ import annotations

import struct
import zlib

import numpy as np

__all__ = ["encode_png"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: PNG colour types by channel count: grey, RGB, RGBA (grey with alpha is not written).
_COLOUR_TYPES = {1: 0, 3: 2, 4: 6}


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(pixels: np.ndarray, level: int = 6) -> bytes:
    """PNG bytes of an ``[height, width, channels]`` ``uint8`` array, with 1, 3 or 4
    channels, 8 bits a sample, no interlacing, and no row filter.

    Raises:
        ValueError: If the array has another shape, dtype or channel count.
    """
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] not in _COLOUR_TYPES:
        raise ValueError(
            f"encode_png takes a [height, width, 1|3|4] uint8 array, got {pixels.dtype} "
            f"of shape {pixels.shape}"
        )
    height, width, channels = pixels.shape
    header = struct.pack(">IIBBBBB", width, height, 8, _COLOUR_TYPES[channels], 0, 0, 0)
    rows = np.zeros((height, 1 + width * channels), dtype=np.uint8)  # filter byte 0: none
    rows[:, 1:] = np.ascontiguousarray(pixels).reshape(height, width * channels)
    return (
        _SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(rows.tobytes(), level))
        + _chunk(b"IEND", b"")
    )
