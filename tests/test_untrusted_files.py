"""Reading files we did not write: corruption is reported and skipped, never a crash,
a huge allocation or an endless loop. Fuzzed with hypothesis, a bounded number of times."""

from __future__ import annotations

import io
import os
import struct
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary

from summary_hook import readback
from summary_hook._events.records import (
    RecordError,
    encode_record,
    iter_records,
    masked_crc32c,
    scan_records,
)

NAME = "events.out.tfevents.1700000000.host.1.0"


def valid_file(steps: int = 5) -> bytes:
    records = [encode_record(Event(file_version="brain.Event:2").SerializeToString())]
    for step in range(1, steps + 1):
        summary = Summary(value=[Summary.Value(tag="loss", simple_value=float(step))])
        records.append(
            encode_record(Event(step=step, wall_time=1.0, summary=summary).SerializeToString())
        )
    return b"".join(records)


def write(tmp_path, data: bytes) -> str:
    logdir = tmp_path / "run"
    logdir.mkdir(exist_ok=True)
    (logdir / NAME).write_bytes(data)
    return str(logdir)


def loss_steps(logdir: str) -> list[int]:
    frame = readback.read_scalars(logdir)
    return list(frame[frame.tag == "loss"].step)


def test_corrupted_crc_is_reported_and_earlier_records_are_kept(tmp_path):
    data = bytearray(valid_file())
    offset = 0
    for _ in range(3):  # skip the version record and two summaries
        (length,) = struct.unpack("<Q", data[offset : offset + 8])
        offset += 16 + length
    data[offset + 1] ^= 0xFF  # break the third summary's length field
    with pytest.warns(RuntimeWarning, match=r"corrupted length field at offset \d+"):
        assert loss_steps(write(tmp_path, bytes(data))) == [1, 2]


def test_absurd_length_field_is_refused_without_allocating(tmp_path):
    header = struct.pack("<Q", 3 << 30)  # claims 3 GiB, with a valid header CRC
    data = valid_file(2) + header + struct.pack("<I", masked_crc32c(header)) + b"tiny"
    with pytest.warns(RuntimeWarning, match="more than max_record_bytes"):
        assert loss_steps(write(tmp_path, data)) == [1, 2]


def test_truncated_last_record_is_skipped_quietly(tmp_path):
    data = valid_file(4)[:-7]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert loss_steps(write(tmp_path, data)) == [1, 2, 3]


def test_corrupted_data_is_reported_and_earlier_records_are_kept(tmp_path):
    data = bytearray(valid_file(4))
    data[-6] ^= 0x01  # inside the last record's payload
    with pytest.warns(RuntimeWarning, match="data CRC mismatch"):
        assert loss_steps(write(tmp_path, bytes(data))) == [1, 2, 3]


def test_scan_records_finds_the_damage():
    data = valid_file(3)
    assert scan_records(io.BytesIO(data), len(data)) == (len(data), None)
    good, problem = scan_records(io.BytesIO(data[:-2]), len(data) - 2)
    assert problem.startswith("truncated record data") and good < len(data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cuts=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=6),
    truncate=st.integers(0, 400),
    tail=st.binary(max_size=64),
)
def test_fuzzed_files_never_break_the_readers(cuts, truncate, tail):
    data = bytearray(valid_file(8))
    for position, byte in cuts:
        if position < len(data):
            data[position] = byte
    data = bytes(data[: len(data) - truncate]) + tail
    # Our strict reader: records or a RecordError, nothing else, and it terminates.
    try:
        for record in iter_records(io.BytesIO(data), max_record_bytes=1 << 20):
            assert len(record) <= 1 << 20
    except RecordError:
        pass
    good, _ = scan_records(io.BytesIO(data), len(data), max_record_bytes=1 << 20)
    assert 0 <= good <= len(data)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(position=st.integers(0, 300), byte=st.integers(0, 255), tail=st.binary(max_size=32))
def test_fuzzed_files_never_break_readback(tmp_path, position, byte, tail):
    data = bytearray(valid_file(8))
    if position < len(data):
        data[position] = byte
    logdir = write(tmp_path, bytes(data) + tail)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # damage is reported; here we only ask that it reads
        rows = readback.summarize(logdir)
    assert all(row.points <= 8 for row in rows)
    os.remove(os.path.join(logdir, NAME))
