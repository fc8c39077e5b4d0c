"""TFRecord framing: the only module that knows the byte layout of an event file.

Each record is an ``Event`` proto (see :func:`summary_event` for the one layout built
here by hand), framed as::

    uint64 length            little-endian
    uint32 masked_crc32c(the 8 length bytes)
    bytes  data[length]
    uint32 masked_crc32c(data)

CRC-32C comes from ``google-crc32c``, a C implementation that uses the CPU's CRC
instructions (SSE4.2 / ARMv8), so framing runs at memory speed instead of the few
MB/s of TensorBoard's pure-Python fallback. Everything here is a pure function of
bytes or works on a file-like object, so it is tested with ``io.BytesIO``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import BinaryIO

import google_crc32c
from tensorboard.compat.proto.event_pb2 import Event

__all__ = [
    "MAX_RECORD_BYTES",
    "RecordError",
    "crc32c",
    "encode_record",
    "iter_records",
    "masked_crc32c",
    "scan_records",
    "summary_event",
    "unmask_crc",
]

_MASK_DELTA = 0xA282EAD8
_U32 = 0xFFFFFFFF
_LENGTH = struct.Struct("<Q")
_CRC = struct.Struct("<I")
_HEADER = struct.Struct("<QI")

#: Largest record a reader accepts before it calls the length field absurd (1 GiB).
MAX_RECORD_BYTES = 1 << 30


#: ``Event.summary`` is field 5, length-delimited: its protobuf tag byte.
_SUMMARY_TAG = bytes([5 << 3 | 2])


def summary_event(wall_time: float, step: int | None, summary: bytes) -> bytes:
    """The serialized ``Event(wall_time=..., step=..., summary=...)`` around a serialized
    ``Summary``, without copying the summary into an ``Event`` proto.

    A message's wire format is its fields one after another, so the event is its
    ``wall_time`` and ``step`` fields followed by the summary as field 5; in this order
    (by field number, as protobuf writes them) the bytes equal what
    ``Event.SerializeToString`` gives. Copying a 100-value summary into an ``Event``
    costs more than serializing it.

    Example:
        >>> from tensorboard.compat.proto.event_pb2 import Event
        >>> from tensorboard.compat.proto.summary_pb2 import Summary
        >>> s = Summary(value=[Summary.Value(tag="a", simple_value=1.0)])
        >>> summary_event(2.5, 7, s.SerializeToString()) == Event(
        ...     wall_time=2.5, step=7, summary=s).SerializeToString()
        True
    """
    head = Event(wall_time=wall_time) if step is None else Event(wall_time=wall_time, step=step)
    head_bytes: bytes = head.SerializeToString()
    return head_bytes + _SUMMARY_TAG + _varint(len(summary)) + summary


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


class RecordError(ValueError):
    """A record that cannot be read: truncated, corrupted or absurdly long."""


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of ``data``.

    Example:
        >>> hex(crc32c(b"123456789"))
        '0xe3069283'
    """
    return int(google_crc32c.value(data))


def masked_crc32c(data: bytes) -> int:
    """CRC-32C of ``data``, rotated right by 15 bits plus TFRecord's mask delta."""
    crc = int(google_crc32c.value(data))
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & _U32


def unmask_crc(masked: int) -> int:
    """Invert :func:`masked_crc32c`'s masking step."""
    rot = (masked - _MASK_DELTA) & _U32
    return ((rot >> 17) | (rot << 15)) & _U32


def encode_record(data: bytes) -> bytes:
    """Frame ``data`` as one TFRecord.

    Example:
        >>> len(encode_record(b"abc"))  # 8 length + 4 CRC + 3 data + 4 CRC
        19
    """
    header = _LENGTH.pack(len(data))
    return b"".join(
        (header, _CRC.pack(masked_crc32c(header)), data, _CRC.pack(masked_crc32c(data)))
    )


def iter_records(stream: BinaryIO, *, max_record_bytes: int = MAX_RECORD_BYTES) -> Iterator[bytes]:
    """Yield the payload of each record in ``stream`` until a clean end of file.

    A length field is checked against its CRC before anything is allocated, and a
    length above ``max_record_bytes`` is refused, so a corrupted or hostile file
    never causes a huge allocation.

    Args:
        stream: A binary file-like object positioned at a record boundary.
        max_record_bytes: Longest payload accepted.

    Raises:
        RecordError: On a truncated record, a CRC mismatch or an absurd length. The
            records before it have already been yielded.
    """
    offset = 0
    while True:
        header = stream.read(_HEADER.size)
        if not header:
            return
        if len(header) < _HEADER.size:
            raise RecordError(f"truncated record header at offset {offset}")
        length, length_crc = _HEADER.unpack(header)
        if masked_crc32c(header[:8]) != length_crc:
            raise RecordError(f"corrupted length field at offset {offset} (header CRC mismatch)")
        if length > max_record_bytes:
            raise RecordError(
                f"record at offset {offset} claims {length} bytes, "
                f"more than max_record_bytes={max_record_bytes}"
            )
        body = stream.read(length + _CRC.size)
        if len(body) < length + _CRC.size:
            raise RecordError(f"truncated record data at offset {offset}")
        data = body[:length]
        if masked_crc32c(data) != _CRC.unpack(body[length:])[0]:
            raise RecordError(f"corrupted record data at offset {offset} (data CRC mismatch)")
        offset += _HEADER.size + len(body)
        yield data


def scan_records(
    stream: BinaryIO, size: int, *, max_record_bytes: int = MAX_RECORD_BYTES
) -> tuple[int, str | None]:
    """Check every record of a stream of ``size`` bytes: headers, lengths and CRCs.

    A length is checked against its CRC, ``max_record_bytes`` and ``size`` before any
    data is read, so nothing larger than one sound record is ever held in memory.

    Returns:
        ``(good_bytes, problem)``: the length of the prefix made of whole, sound records,
        and None if that is the whole stream, else what is wrong right after it.
    """
    offset = 0
    while offset < size:
        header = stream.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return offset, f"truncated record header at offset {offset}"
        length, length_crc = _HEADER.unpack(header)
        if masked_crc32c(header[:8]) != length_crc:
            return offset, f"corrupted length field at offset {offset} (header CRC mismatch)"
        if length > max_record_bytes:
            return (
                offset,
                f"record at offset {offset} claims {length} bytes, more than max_record_bytes",
            )
        if offset + _HEADER.size + length + _CRC.size > size:
            return offset, f"truncated record data at offset {offset}"
        body = stream.read(length + _CRC.size)
        if masked_crc32c(body[:length]) != _CRC.unpack(body[length:])[0]:
            return offset, f"corrupted record data at offset {offset} (data CRC mismatch)"
        offset += _HEADER.size + len(body)
    return offset, None
