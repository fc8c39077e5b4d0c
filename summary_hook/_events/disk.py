"""An event file on disk: a name no other writer gives, and buffered, synced writes.

Thread contract: not thread-safe. An :class:`EventFile` belongs to the one thread that
writes it (an ``EventFileWriter``'s worker); only its constructor runs elsewhere.
"""

from __future__ import annotations

import io
import itertools
import os
import secrets
import socket
import time

from tensorboard.compat.proto.event_pb2 import Event

from summary_hook._events.records import encode_record

__all__ = ["EventFile", "event_file_name"]

#: Buffered events go to the OS once this many bytes wait, sync or not.
_WRITE_CHUNK = 64 * 1024

_file_counter = itertools.count()


def event_file_name(suffix: str) -> str:
    """A name no other writer gives a file, sorted by creation time like TensorBoard's own.

    torch's and tensorboardX's ``SummaryWriter`` name files
    ``events.out.tfevents.<secs>.<host>.<pid>.<n>``, with ``n`` counting from 0 in each
    process, and TensorFlow ``events.out.tfevents.<secs>.<host>``: two writers made in one
    second on one directory would share a name. The random part after this process's
    counter makes ours differ from theirs and from any other process or host. The counter
    has ten digits, so that this process's files of one second sort in the order they
    were made: TensorBoard reads a directory's files in name order, and a resumed run's
    ``SessionLog.START`` hides only the points of files read before it (``...1.10`` would
    sort before ``...1.9``).
    """
    stamp = int(time.time())
    name = f"events.out.tfevents.{stamp:010d}.{socket.gethostname()}.{os.getpid()}"
    return f"{name}.{next(_file_counter):010d}.{secrets.token_hex(4)}{suffix}"


class EventFile:
    """A new event file in ``logdir``, starting with the ``brain.Event:2`` version record.

    The file is created exclusively (an existing file is never opened, truncated or
    appended to), unbuffered so that a forked child holds no copy of pending bytes, and
    the version record is written at once, so a bad directory fails here.

    Raises:
        NotADirectoryError: If ``logdir`` exists and is not a directory.
        OSError: If the directory or the file cannot be created.
    """

    #: What failed to write is dropped, and the failure raised (see ``event_file``).
    retries = False

    def __init__(self, logdir: str, suffix: str = "") -> None:
        if os.path.exists(logdir) and not os.path.isdir(logdir):
            raise NotADirectoryError(f"logdir {logdir!r} exists and is not a directory")
        os.makedirs(logdir, exist_ok=True)
        for _ in range(8):
            self.path = os.path.join(logdir, event_file_name(suffix))
            try:
                self._file = io.FileIO(self.path, "xb")
                break
            except FileExistsError:
                continue  # a name taken by chance: draw another
        else:
            raise FileExistsError(f"could not create a new event file in {logdir!r}")
        version = Event(wall_time=time.time(), file_version="brain.Event:2")
        self._file.write(encode_record(version.SerializeToString()))
        self._pending: list[bytes] = []  # framed events not yet handed to the OS
        self._pending_bytes = 0
        self.dirty = False  # events appended since the last sync

    def append(self, records: list[bytes]) -> None:
        """Buffer framed events; hand them to the OS once ``_WRITE_CHUNK`` bytes wait."""
        self._pending.extend(records)
        self._pending_bytes += sum(map(len, records))
        self.dirty = True
        if self._pending_bytes >= _WRITE_CHUNK:
            self.write_out()

    def write_out(self) -> None:
        """Hand every buffered event to the OS; the buffer is emptied even if this fails."""
        data = b"".join(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        view = memoryview(data)
        while view:
            written = self._file.write(view)
            if written is None:  # pragma: no cover - only for non-blocking files
                raise OSError(f"short write to {self.path!r}")
            view = view[written:]

    def sync(self) -> None:
        """Write out and fsync; fail if the file was deleted meanwhile.

        Raises:
            FileNotFoundError: If the file no longer has a name: what it held is gone.
        """
        self.dirty = False
        self.write_out()
        os.fsync(self._file.fileno())
        if os.fstat(self._file.fileno()).st_nlink == 0:
            raise FileNotFoundError(f"event file {self.path!r} was deleted while being written")

    def discard(self) -> None:
        """Drop what is buffered: after a failure, nothing more is written."""
        self._pending.clear()
        self._pending_bytes = 0
        self.dirty = False

    def close(self) -> None:
        """Close the file (what is buffered and not written out is dropped)."""
        self._file.close()
