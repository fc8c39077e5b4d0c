"""``FileWriter``, TensorFlow's public event writer.

Thread contract: :class:`FileWriter` is thread-safe; ``_lock`` guards the switch of
``_events`` on :meth:`FileWriter.reopen` and ``_seen_tags``. Writing itself is
serialised by :class:`~summary_hook._events.event_file.EventFileWriter`.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from typing import Any

from tensorboard.compat.proto.event_pb2 import Event, SessionLog
from tensorboard.compat.proto.summary_pb2 import Summary

from summary_hook._events.event_file import EventFileWriter
from summary_hook._events.pending import DeferredSummary
from summary_hook._events.records import summary_event

__all__ = ["FileWriter"]


class FileWriter:
    """Write ``Summary`` and ``SessionLog`` events to a new event file in ``logdir``.

    The file is named ``events.out.tfevents.<secs>.<host>.<pid>.<n>.<random><suffix>``
    (``secs`` and ``n``, this process's count of files, with ten digits; ``random`` eight
    hex digits) and starts with the ``file_version="brain.Event:2"`` record. Events go
    through a bounded queue to a background thread; a full queue makes the caller wait.

    Args:
        logdir: Directory of the event file; created if missing. Or any fsspec URL
            (``s3://bucket/run``, ``gs://``, ``memory://``...; ``pip install
            "summary_hook[remote]"`` and the store's package): each flush then uploads
            what is new as an object of its own (see the README).
        max_queue: Events that may wait before ``add_*`` blocks. The thread takes them
            when the queue is full, so a larger queue wakes it less often.
        flush_secs: Longest time an event waits in memory before it reaches the OS.
        filename_suffix: Appended to the file name.
        storage_options: For a URL: passed to its fsspec filesystem (credentials,
            endpoint); by default the store's own SDK reads them from the environment.

    Raises:
        ValueError: If ``max_queue`` or ``flush_secs`` is not positive.
        OSError: If the directory or the file cannot be created, or a URL written to.
        ImportError: If a URL's filesystem package is not installed, naming it.

    A ``with`` block closes it at its end.

    Example:
        >>> import tempfile
        >>> with FileWriter(tempfile.mkdtemp()) as writer:
        ...     writer.add_session_log(SessionLog(status=SessionLog.START), global_step=1)
    """

    def __init__(
        self,
        logdir: str | os.PathLike[str],
        max_queue: int = 10,
        flush_secs: float = 120,
        filename_suffix: str | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(logdir, (str, os.PathLike)) or not os.fspath(logdir):
            raise ValueError(f"logdir must be a non-empty path, got {logdir!r}")
        self._logdir = os.fspath(logdir)
        self._options = (max_queue, flush_secs, filename_suffix or "", storage_options)
        self._lock = threading.Lock()
        self._seen_tags: set[str] = set()
        self._events: EventFileWriter | None = None
        self._closer: weakref.finalize[..., FileWriter] | None = None
        self._open()

    def get_logdir(self) -> str:
        """The directory this writer writes to."""
        return self._logdir

    @property
    def path(self) -> str | None:
        """The event file being written, or None once closed."""
        events = self._events
        return None if events is None else events.path

    def add_summary(
        self, summary: Summary | bytes | DeferredSummary, global_step: int | None = None
    ) -> None:
        """Write ``summary`` (a ``Summary``, its serialized bytes, or what a hook's
        results hold for an op with images) at ``global_step``.

        As in TensorFlow, only the first value of each tag in the file keeps its
        ``metadata``; the caller's summary is not changed.

        Raises:
            TypeError: If ``summary`` is none of these.
            RuntimeError: If the writer is closed.
        """
        if isinstance(summary, bytes):
            summary = Summary.FromString(summary)
        elif isinstance(summary, DeferredSummary):
            summary = summary.resolve()
        elif not isinstance(summary, Summary):
            raise TypeError(f"summary must be a Summary proto or bytes, got {type(summary)!r}")
        self._add_summary(self._strip_repeated_metadata(summary), global_step)

    def add_evaluated_summary(
        self, summary: Summary | DeferredSummary, global_step: int | None = None
    ) -> None:
        """Write what evaluating an op gave (see ``HookWriter``) at ``global_step``.

        A ``Summary`` from evaluation carries no ``metadata``, so TensorFlow's
        first-occurrence rule, which :meth:`add_summary` checks value by value, is
        skipped: for 100 scalars the check takes longer than writing them. A
        ``DeferredSummary``'s images are encoded in the writer's thread; its event keeps
        its place and its wall time (now) among the events around it. One with texts
        goes through :meth:`add_summary`, now, so that their metadata follows the rule.

        Raises:
            RuntimeError: If the writer is closed.
        """
        if not isinstance(summary, DeferredSummary):
            self._add_summary(summary, global_step)
        elif summary.has_metadata or not summary.has_images:
            self.add_summary(summary.resolve(), global_step)
        else:
            wall_time = time.time()
            resolve = summary.resolve

            def serialized() -> bytes:  # in the writer's thread
                return summary_event(wall_time, global_step, resolve().SerializeToString())

            self._live().add_later(serialized)

    def add_session_log(self, session_log: SessionLog, global_step: int | None = None) -> None:
        """Write ``session_log`` (for example ``SessionLog(status=SessionLog.START)``).

        Raises:
            TypeError: If ``session_log`` is not a ``SessionLog``.
            RuntimeError: If the writer is closed.
        """
        if not isinstance(session_log, SessionLog):
            raise TypeError(f"session_log must be a SessionLog proto, got {type(session_log)!r}")
        self._add_event(Event(session_log=session_log), global_step)

    def add_event(self, event: Event) -> None:
        """Write ``event`` exactly as given (``wall_time`` and ``step`` are not touched).

        Raises:
            TypeError: If ``event`` is not an ``Event``.
            RuntimeError: If the writer is closed.
        """
        if not isinstance(event, Event):
            raise TypeError(f"event must be an Event proto, got {type(event)!r}")
        self._live().add_event(event)

    def flush(self) -> None:
        """Return once every event added before this call is on disk. No-op when closed."""
        events = self._events
        if events is not None:
            events.flush()

    def close(self) -> None:
        """Flush and close the file. Safe to call twice; :meth:`reopen` starts a new file."""
        with self._lock:
            events, self._events = self._events, None
            if self._closer is not None:
                self._closer.detach()
        if events is not None:
            events.close()

    def __enter__(self) -> FileWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def reopen(self) -> None:
        """Start writing to a new event file after :meth:`close`. No-op when open."""
        with self._lock:
            if self._events is None:
                self._open()

    def _open(self) -> None:
        events = self._events = EventFileWriter(self._logdir, *self._options)
        # TensorFlow's first-occurrence rule is a file's: a new file gets every tag's
        # metadata again, or its readers could not tell a text from a tensor.
        self._seen_tags = set()
        # A writer nobody can reach any more is closed: its file completed, its thread
        # ended. Without waiting, since the collector may run in any thread.
        self._closer = weakref.finalize(self, events.close_soon, orphaned=True)
        self._closer.atexit = False  # at exit, every file is closed and waited for anyway

    def _add_event(self, event: Event, step: int | None) -> None:
        event.wall_time = time.time()
        if step is not None:
            event.step = int(step)
        self._live().add_event(event)

    def _add_summary(self, summary: Summary, step: int | None) -> None:
        data = summary.SerializeToString()
        self._live().add_serialized(summary_event(time.time(), step, data))

    def _live(self) -> EventFileWriter:
        events = self._events
        if events is None:
            raise RuntimeError(
                f"FileWriter for {self._logdir!r} is closed; call reopen() to write again"
            )
        return events

    def _strip_repeated_metadata(self, summary: Summary) -> Summary:
        """``summary``, or a copy without the metadata of the tags seen before."""
        stripped = summary
        for index, value in enumerate(summary.value):
            if value.HasField("metadata"):
                with self._lock:
                    if value.tag not in self._seen_tags:
                        self._seen_tags.add(value.tag)
                        continue
                if stripped is summary:
                    stripped = Summary()
                    stripped.CopyFrom(summary)
                stripped.value[index].ClearField("metadata")
        return stripped

    def __repr__(self) -> str:
        return f"FileWriter({self._logdir!r}, path={self.path!r})"
