"""P7: framing and CRC of a 1 MB payload, beside TensorBoard's pure-Python record writer."""

from __future__ import annotations

import io
import os
import tempfile

import summary_hook as sh
from benchmarks.harness import Result, median_time
from summary_hook._events.records import encode_record


def p7_large_payload(repeats: int, tmp: str) -> Result:
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.summary.writer.record_writer import RecordWriter

    payload = os.urandom(1 << 20)
    t_frame = median_time(lambda: encode_record(payload), repeats, number=20)
    writer = sh.FileWriter(tmp)
    event = Event(step=1, file_version=payload.hex()[: 1 << 20])  # a ~1 MB event

    def through_writer() -> None:
        for _ in range(5):
            writer.add_event(event)
        writer.flush()

    t_writer = median_time(through_writer, repeats) / 5
    writer.close()
    small = payload[: 1 << 16]  # TensorBoard's pure-Python CRC is too slow for 1 MB repeats
    buffer = io.BytesIO()
    t_tb = median_time(lambda: RecordWriter(buffer).write(small), 3) / len(small) * len(payload)
    mb = len(payload) / 2**20
    return Result(
        "P7",
        "1 MB payload: framing and CRC throughput",
        mb / t_frame,
        "MB/s",
        "≥ 200 MB/s",
        mb / t_frame >= 200,
        {
            "framing_MBps": mb / t_frame,
            "through_FileWriter_to_disk_MBps": mb / t_writer,
            "tensorboard_python_writer_MBps": mb / t_tb,
        },
        f"{t_tb / t_frame:,.0f}x TensorBoard's Python writer",
    )


def measure(quick: bool, device: str) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        return p7_large_payload(3 if quick else 7, tmp=tmp)
