"""Event files in object stores, at any fsspec URL (``s3://``, ``gs://``, ``az://``,
``memory://``...): each flush a new object, so that every byte is uploaded once.

Object stores cannot append. TensorBoard's writer, and torch's ``SummaryWriter`` with
it, keeps the whole file and uploads it again at every flush: the bytes uploaded grow
with the square of the run's length. Here a flush uploads only what was written since
the last one, as an object of its own, ``<event file name>.<flush number>``:

- TensorBoard reads a run's event files in name order and keeps polling the last one.
  Flush numbers have eight digits, so a writer's objects sort in the order written, and
  an object appears whole: each is read once, completely, and then the next.
- A flush with nothing new makes no object. At the default ``flush_secs=120`` a
  day-long run makes at most 720 objects per writer.
- Credentials and endpoints come from the environment, as the storage's own SDK reads
  them (``AWS_ENDPOINT_URL`` for S3-compatible servers), or from ``storage_options``.

Thread contract: not thread-safe. A :class:`RemoteEventFile` belongs to the one thread
that writes it (an ``EventFileWriter``'s worker); only its constructor runs elsewhere.
"""

from __future__ import annotations

import time
from typing import Any

from tensorboard.compat.proto.event_pb2 import Event

from summary_hook._events.disk import event_file_name
from summary_hook._events.records import encode_record

__all__ = ["RemoteEventFile", "is_remote", "remote_filesystem"]


def is_remote(path: str) -> bool:
    """Whether ``path`` is a URL of a filesystem other than the local one."""
    protocol, _, rest = path.partition("://")
    return bool(rest) and protocol not in ("", "file", "local")


def remote_filesystem(url: str, storage_options: dict[str, Any] | None = None) -> tuple[Any, str]:
    """The fsspec filesystem of ``url`` and the path within it.

    Raises:
        ImportError: If fsspec, or the package of the URL's filesystem (s3fs, gcsfs,
            adlfs...), is not installed, naming it and the URL.
    """
    try:
        import fsspec
    except ImportError as error:
        raise ImportError(
            f'writing to {url!r} needs fsspec: pip install "summary_hook[remote]", and '
            "the package of its filesystem (s3fs, gcsfs, adlfs...)"
        ) from error
    try:
        filesystem, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
    except ImportError as error:  # fsspec says which package the protocol needs
        raise ImportError(f"writing to {url!r}: {error}") from error
    return filesystem, str(path).rstrip("/")


class RemoteEventFile:
    """A new event file at ``url``, written as one object per flush.

    The ``brain.Event:2`` version record is uploaded at once, so a bad URL (no bucket,
    no permission, no network) fails here. What fails to upload later is kept, and
    tried again at the next :meth:`sync`: ``retries`` tells the writer so.

    Raises:
        ImportError: As :func:`remote_filesystem`.
        OSError: If the first object cannot be uploaded, naming the URL.
    """

    #: The writer keeps what failed to upload and tries again (see ``event_file``).
    retries = True

    def __init__(
        self, url: str, suffix: str = "", storage_options: dict[str, Any] | None = None
    ) -> None:
        self._filesystem, self._directory = remote_filesystem(url, storage_options)
        self._name = event_file_name("")
        self._suffix = suffix
        #: The objects' common prefix, as a URL: what errors name.
        self.path = f"{url.rstrip('/')}/{self._name}"
        self._flushes = 0
        version = Event(wall_time=time.time(), file_version="brain.Event:2")
        self._pending = [encode_record(version.SerializeToString())]
        self.pending_bytes = len(self._pending[0])
        self.dirty = True
        try:
            self.sync()
        except Exception as error:
            raise OSError(f"cannot write event files to {url!r}: {error!r}") from error

    def object_url(self, flush: int) -> str:
        """The URL of the object of flush number ``flush`` (from 0)."""
        return f"{self.path}.{flush:08d}{self._suffix}"

    def append(self, records: list[bytes]) -> None:
        """Keep framed events for the next :meth:`sync`."""
        self._pending.extend(records)
        self.pending_bytes += sum(map(len, records))
        self.dirty = True

    def sync(self) -> None:
        """Upload what was appended since the last sync as one new object; return once
        the store holds it. On failure everything stays for the next call."""
        if not self._pending:
            self.dirty = False
            return
        data = b"".join(self._pending)
        name = f"{self._directory}/{self._name}.{self._flushes:08d}{self._suffix}"
        self._filesystem.pipe_file(name, data)
        self._pending.clear()
        self.pending_bytes = 0
        self._flushes += 1
        self.dirty = False

    def discard(self) -> None:
        """Keep everything: a retrying file drops nothing (see ``retries``)."""

    def close(self) -> None:
        """Nothing to close: every upload is complete when :meth:`sync` returns."""
