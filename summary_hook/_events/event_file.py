"""One event file fed by one background thread through a bounded queue.

Thread contract: :class:`EventFileWriter` is thread-safe. ``_lock`` guards the queue
(``_items``: framed events and flush or close requests, in order, with ``_waiting``
counting the events) and ``_closed``, so no event can be queued behind the close request
and lost; producers wait on ``_room`` for a full queue to empty, the worker on ``_wake``
for work. The worker thread alone touches the file, an
:class:`~summary_hook._events.disk.EventFile`; it takes the whole queue at once and is woken
only when there is work (see :meth:`EventFileWriter._take`), not for every event.

A failed write is kept and raised in the caller's next call
(:class:`~summary_hook._events.failures.WriteFailures` says what the worker does then: a
local file's events are dropped from then on, a remote file's kept and retried). In a
forked child, which has no worker, events cannot be added at all. While more than
``_MAX_PENDING_BYTES`` of a remote file wait for the store, the worker takes no more
events, so producers block (and are told why) rather than memory grow.
"""

from __future__ import annotations

import atexit
import itertools
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from tensorboard.compat.proto.event_pb2 import Event

from summary_hook._events.disk import EventFile
from summary_hook._events.failures import WriteFailures, WriterError
from summary_hook._events.records import encode_record
from summary_hook._events.remote import RemoteEventFile, is_remote

__all__ = ["EventFileWriter", "WriterError", "flush_all_writers"]

#: How often a blocked producer or flusher re-checks that the worker is alive.
_POLL_SECS = 0.2

#: A remote file takes no more events while this many bytes wait for the store.
_MAX_PENDING_BYTES = 64 * 2**20

_live_writers: weakref.WeakSet[EventFileWriter] = weakref.WeakSet()


@dataclass(frozen=True)
class _Deferred:
    """An event the worker serializes itself (see ``add_later``)."""

    build: Callable[[], bytes]


@dataclass
class _FlushRequest:
    """Sync everything queued before it, then set ``done``."""

    done: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class _CloseRequest:
    """Write everything queued before it, close the file and stop the worker.

    ``orphaned``: nobody can call the writer again (its ``FileWriter`` was collected), so
    the worker reports a failure on standard error, having no caller to raise it to.
    """

    orphaned: bool = False


class EventFileWriter:
    """Append :class:`Event` protos to a new event file from a background thread.

    The file is created at construction, with the ``file_version="brain.Event:2"``
    record written and flushed at once, so a bad directory fails here and not later.

    Args:
        logdir: Directory for the file; created if missing. A URL (``s3://``...) writes
            to an object store through fsspec (see ``remote``).
        max_queue: Events that may wait for the worker before ``add_event`` blocks;
            the worker takes them all when the queue is full.
        flush_secs: Longest time written events stay in memory before the worker
            hands them to the OS.
        filename_suffix: Appended to the file name.
        storage_options: For a URL: passed to its fsspec filesystem.

    Raises:
        ValueError: If ``max_queue`` or ``flush_secs`` is not positive.
        OSError: If the directory or file cannot be created.
        ImportError: If a URL's filesystem is not installed, naming it.
    """

    def __init__(
        self,
        logdir: str,
        max_queue: int = 10,
        flush_secs: float = 120,
        filename_suffix: str = "",
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        if isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 1:
            raise ValueError(f"max_queue must be a positive int, got {max_queue!r}")
        if (
            isinstance(flush_secs, bool)
            or not isinstance(flush_secs, (int, float))
            or not (flush_secs > 0)
        ):
            raise ValueError(f"flush_secs must be a positive number, got {flush_secs!r}")
        self._file: EventFile | RemoteEventFile = (
            RemoteEventFile(logdir, filename_suffix, storage_options)
            if is_remote(logdir)
            else EventFile(logdir, filename_suffix)
        )
        self.path = self._file.path
        self._failures = WriteFailures(self._file, float(flush_secs))
        self._max_queue = max_queue
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)  # the worker waits here for work
        self._room = threading.Condition(self._lock)  # producers wait here for room
        self._items: list[object] = []  # framed events and requests, in order
        self._waiting = 0  # how many of ``_items`` are events: the rest are requests
        self._worker_idle = True  # the worker sleeps with no deadline: a new event wakes it
        self._closed = False
        self._pid = os.getpid()
        self._thread = threading.Thread(
            target=self._work,
            name=f"summary_hook-writer-{os.path.basename(self.path)}",
            daemon=True,
        )
        self._thread.start()
        _live_writers.add(self)

    # --- producer side -------------------------------------------------------------

    def add_event(self, event: Event) -> None:
        """Serialize ``event`` and :meth:`add_serialized` it.

        Serialized in the caller, so changing the event afterwards changes nothing written.
        """
        self.add_serialized(event.SerializeToString())

    def add_serialized(self, event: bytes) -> None:
        """Frame a serialized ``Event`` now and queue it; blocks while ``max_queue`` wait.

        The worker thread only writes bytes.

        Raises:
            RuntimeError: If the writer is closed or belongs to another process.
            WriterError: If the worker failed on an earlier event.
        """
        self._check_usable()
        self._queue(encode_record(event))

    def add_later(self, build: Callable[[], bytes]) -> None:
        """Queue an event that the worker thread serializes: ``build()`` returns the
        serialized ``Event`` (an image summary's PNG encoding happens there, off the
        caller's thread). It keeps its place among the events queued around it.

        Raises:
            RuntimeError: If the writer is closed or belongs to another process.
            WriterError: If the worker failed on an earlier event.
        """
        self._check_usable()
        self._queue(_Deferred(build))

    def _queue(self, record: bytes | _Deferred) -> None:
        """Queue a framed event or a deferred one; block while ``max_queue`` wait."""
        with self._lock:
            if self._closed:
                raise RuntimeError(f"event file {self.path!r} is closed")
            while self._waiting >= self._max_queue:
                self._wake.notify()
                if not self._room.wait(_POLL_SECS):
                    self._raise_if_worker_dead()
            self._items.append(record)
            self._waiting += 1
            if self._worker_idle or self._waiting >= self._max_queue:
                self._wake.notify()

    def flush(self) -> None:
        """Return once every event queued before this call is handed to the OS and synced.

        Raises:
            WriterError: If the worker failed.
        """
        self._check_usable()
        request = _FlushRequest()
        with self._lock:
            if self._closed:
                return
            self._request(request)
        while not request.done.wait(_POLL_SECS):
            self._raise_if_worker_dead()
        self._failures.raise_for_caller(self.path, always=True)

    def close(self) -> None:
        """Write everything queued, close the file and stop the worker. Safe to call twice.

        Raises:
            WriterError: If the worker failed and no earlier call has said so.
        """
        if os.getpid() != self._pid:
            return
        self.close_soon()
        self._thread.join()
        _live_writers.discard(self)
        if not self._failures.reported or self._file.retries:
            self._failures.raise_for_caller(self.path, always=True)

    def close_soon(self, *, orphaned: bool = False) -> None:
        """Ask the worker to write everything queued, close the file and stop; do not wait.

        Args:
            orphaned: Nobody can call this writer again: the worker reports a failure
                on standard error, since no caller is left to raise it to.
        """
        if os.getpid() != self._pid:
            return
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._request(_CloseRequest(orphaned))

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._closed

    def _request(self, item: object) -> None:
        """Queue a flush or close request behind every event; hold ``_lock``."""
        self._items.append(item)
        self._wake.notify()

    def _check_usable(self) -> None:
        if os.getpid() != self._pid:
            raise RuntimeError(
                f"event file {self.path!r} belongs to process {self._pid}; "
                f"a forked child (pid {os.getpid()}) must open its own writer"
            )
        self._failures.raise_for_caller(self.path)

    def _raise_if_worker_dead(self) -> None:
        self._failures.raise_for_caller(self.path)
        if not self._thread.is_alive():
            raise WriterError(f"the writer thread of {self.path!r} stopped unexpectedly")

    # --- worker side -----------------------------------------------------------------

    def _take(self, dirty: bool, next_flush: float) -> list[object]:
        """Wait until there is work, then take every queued item, in order.

        There is work when a flush or close was requested, when the queue is full,
        or when the flush deadline has passed with anything unwritten. Until then the
        worker sleeps to the deadline, with work or without, so a producer wakes it
        once per ``max_queue`` events rather than once per event: every wake-up costs
        the producer a system call and a hand-over of the GIL. Only once the deadline
        has passed with nothing to write does it sleep until a producer wakes it; that
        event is then flushed at once, as TensorFlow flushes the first event after the
        deadline.
        """
        with self._lock:
            while True:
                unwritten = dirty or bool(self._items)
                now = time.monotonic()
                requested = len(self._items) > self._waiting
                if self._over_memory_bound() and not self._closed:
                    # Take nothing until the store takes what waits; then try again.
                    if now >= next_flush:
                        return []
                    self._wake.wait(next_flush - now)
                    continue
                if (
                    requested
                    or self._waiting >= self._max_queue
                    or (unwritten and now >= next_flush)
                ):
                    break
                self._worker_idle = now >= next_flush  # then only a producer can give it work
                self._wake.wait(None if self._worker_idle else next_flush - now)
            items, self._items = self._items, []
            self._waiting = 0
            self._worker_idle = False
            self._room.notify_all()
        return items

    def _append_deferred(self, items: list[_Deferred]) -> None:
        self._file.append([encode_record(item.build()) for item in items])

    def _over_memory_bound(self) -> bool:
        """Whether a remote file holds too much that the store has not taken yet."""
        return isinstance(self._file, RemoteEventFile) and (
            self._file.pending_bytes > _MAX_PENDING_BYTES
        )

    def _work(self) -> None:
        failures = self._failures
        next_flush = 0.0  # the first event is synced at once, as TensorFlow does
        while True:
            for kind, run in itertools.groupby(self._take(self._file.dirty, next_flush), type):
                if kind is bytes:  # a run of events, buffered without a loop in Python
                    # (after a local file's failure, ``run`` drops them: drained, not written)
                    failures.run(self._file.append, cast("list[bytes]", list(run)))
                    continue
                for item in run:  # deferred events, flush or close requests
                    if isinstance(item, _Deferred):
                        failures.run(self._append_deferred, [item])
                        continue
                    if isinstance(item, _CloseRequest):
                        failures.sync_before_close()
                        failures.close(self.path, item.orphaned)
                        return
                    if self._file.dirty:  # everything queued before it goes first
                        failures.run(self._file.sync)
                    next_flush = failures.next_flush()
                    cast("_FlushRequest", item).done.set()
            if self._file.dirty and time.monotonic() >= next_flush:
                failures.run(self._file.sync)
                next_flush = failures.next_flush()


def flush_all_writers() -> None:
    """Flush every open :class:`EventFileWriter` of this process.

    Raises:
        WriterError: The first failure, after every writer was tried.
    """
    first: BaseException | None = None
    for writer in list(_live_writers):
        if writer._pid != os.getpid() or writer.closed or writer._failures.reported:
            continue  # not ours, closed, or its failure already reached a caller
        try:
            writer.flush()
        except BaseException as error:
            first = first or error
    if first is not None:
        raise first


def _close_all_at_exit() -> None:
    for writer in list(_live_writers):
        if writer._pid == os.getpid():
            try:
                writer.close()
            except Exception as error:  # never reported to a caller: say it now
                print(f"summary_hook: {error}", file=sys.stderr)


def forget_writers_in_child() -> None:
    """After a fork: the parent's writers are not the child's to flush (see ``_fork``)."""
    _live_writers.clear()


atexit.register(_close_all_at_exit)
