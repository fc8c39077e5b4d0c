"""TFRecord framing against TensorFlow's test vectors and framed bytes (reference section 7)."""

from __future__ import annotations

import io
import struct

import pytest
from tensorboard.compat.proto.event_pb2 import Event, SessionLog
from tensorboard.compat.proto.summary_pb2 import Summary

from summary_hook._events.records import (
    RecordError,
    crc32c,
    encode_record,
    iter_records,
    masked_crc32c,
    unmask_crc,
)


def test_crc32c_matches_the_standard_check_value():
    assert crc32c(b"123456789") == 0xE3069283


def test_crc32c_of_32_zero_bytes_matches_rfc_3720():
    assert crc32c(bytes(32)) == 0x8A9136AA


def test_masked_crc_matches_tensorboard_vector():
    assert masked_crc32c(b"\x1a\x11CRC test, one two") == 0x5794D08A


def test_unmask_inverts_mask():
    data = b"some payload"
    assert unmask_crc(masked_crc32c(data)) == crc32c(data)


@pytest.mark.parametrize(
    ("event", "record_hex"),
    [
        (
            Event(file_version="brain.Event:2"),
            "0f000000000000006d532b091a0d627261696e2e4576656e743a32fc985129",
        ),
        (
            Event(wall_time=1.0, step=1, session_log=SessionLog(status=SessionLog.START)),
            "0f000000000000006d532b0909000000000000f03f10013a020801ffe20e91",
        ),
        (
            Event(
                wall_time=1.0,
                step=1,
                summary=Summary(value=[Summary.Value(tag="my_summary", simple_value=1.0)]),
            ),
            "2000000000000000"
            "29eda950"
            "09000000000000f03f10012a130a110a0a6d795f73756d6d617279150000803f"
            "aa272639",
        ),
    ],
)
def test_encode_record_matches_tensorflow_bytes(event, record_hex):
    assert encode_record(event.SerializeToString()).hex() == record_hex


def test_iter_records_round_trips():
    payloads = [b"", b"a", bytes(range(256)) * 10]
    stream = io.BytesIO(b"".join(encode_record(p) for p in payloads))
    assert list(iter_records(stream)) == payloads


def test_iter_records_raises_on_truncated_tail_after_good_records():
    stream = io.BytesIO(encode_record(b"good") + encode_record(b"cut off")[:-3])
    records = iter_records(stream)
    assert next(records) == b"good"
    with pytest.raises(RecordError, match="truncated record data"):
        next(records)


def test_iter_records_raises_on_corrupted_data():
    raw = bytearray(encode_record(b"payload"))
    raw[13] ^= 0xFF
    with pytest.raises(RecordError, match="data CRC mismatch"):
        list(iter_records(io.BytesIO(bytes(raw))))


def test_iter_records_refuses_absurd_length_without_allocating():
    header = struct.pack("<Q", 1 << 60)
    raw = header + struct.pack("<I", masked_crc32c(header))
    with pytest.raises(RecordError, match="max_record_bytes"):
        list(iter_records(io.BytesIO(raw)))


def test_iter_records_raises_on_corrupted_length():
    raw = bytearray(encode_record(b"payload"))
    raw[0] ^= 0x01
    with pytest.raises(RecordError, match="header CRC mismatch"):
        list(iter_records(io.BytesIO(bytes(raw))))
