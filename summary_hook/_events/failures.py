"""What an event file's worker does when a write fails, and when it writes again.

A local file's first failure is final: it is kept for the caller, and the worker drops
the events it takes from then on, so that no producer blocks forever on a queue that no
longer drains. The caller has been told: the failure is raised in its next call.

A remote file (an object store, ``retries``) keeps what failed to upload instead. An
outage is raised once in the caller's next call, and at every ``flush()`` and
``close()`` until an upload succeeds; the worker tries again after 1, 2, 4... seconds
(at most ``flush_secs``), and ``close()`` keeps trying for ``CLOSE_RETRY_SECS``.

Only the worker thread changes a :class:`WriteFailures`; callers read it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from summary_hook._events.disk import EventFile
from summary_hook._events.remote import RemoteEventFile

__all__ = ["CLOSE_RETRY_SECS", "WriteFailures", "WriterError"]

#: How long closing a remote file keeps trying to upload what is left.
CLOSE_RETRY_SECS = 30.0


class WriterError(RuntimeError):
    """Writing events failed in the background thread; ``__cause__`` holds why."""


class WriteFailures:
    """The failures of one file's writes, whether they reached a caller, and when the
    worker should write next.

    Args:
        file: The file written to; its ``retries`` says whether it keeps failed data.
        flush_secs: The writer's flush period, the longest wait between retries.
    """

    def __init__(self, file: EventFile | RemoteEventFile, flush_secs: float) -> None:
        self._file = file
        self._flush_secs = flush_secs
        self.error: BaseException | None = None
        self.reported = False  # whether ``error`` has reached a caller
        self._retry_secs = 0.0  # a remote file's wait before its next upload

    @property
    def writing(self) -> bool:
        """Whether writes are still attempted: no failure yet, or a file that retries."""
        return self.error is None or self._file.retries

    def run(self, write: Callable[..., None], *args: Any) -> None:
        """Run ``write``; a failure is kept for the caller's next call, never lost.

        A local file's data is discarded after its failure. A remote file keeps its data
        and is tried again after a growing wait; the first failure of an outage is the
        one reported, and a success that leaves nothing unwritten ends the outage.
        """
        if not self.writing:
            return
        try:
            write(*args)
        except BaseException as error:
            if not self._file.retries:
                self.error = error
                self._file.discard()
                return
            if self.error is None:  # a new outage: say so once more
                self.error, self.reported = error, False
            self._retry_secs = min(max(1.0, 2 * self._retry_secs), self._flush_secs)
        else:
            if self._file.retries and not self._file.dirty:
                self.error, self.reported, self._retry_secs = None, False, 0.0

    def raise_for_caller(self, path: str, always: bool = False) -> None:
        """Raise the failure as :class:`WriterError`: a remote file's once per outage,
        unless ``always`` (flush and close: its data is not in the store yet)."""
        if self.error is not None and (always or not self.reported or not self._file.retries):
            self.reported = True
            raise WriterError(f"writing event file {path!r} failed: {self.error!r}") from (
                self.error
            )

    def next_flush(self) -> float:
        """When to write next: after ``flush_secs``, or sooner to retry a failed upload."""
        if self._file.dirty and self._retry_secs:
            return time.monotonic() + self._retry_secs
        return time.monotonic() + self._flush_secs

    def sync_before_close(self) -> None:
        """Write what is left; a remote file keeps trying for ``CLOSE_RETRY_SECS``."""
        deadline = time.monotonic() + CLOSE_RETRY_SECS
        while self._file.dirty:
            self.run(self._file.sync)
            if not (self._file.dirty and self._file.retries) or time.monotonic() >= deadline:
                return
            time.sleep(min(self._retry_secs, max(0.0, deadline - time.monotonic())))

    def close(self, path: str, orphaned: bool) -> None:
        """Close the file, keeping a failure for the caller; when ``orphaned`` (no caller
        is left to raise it to), print an unreported failure on standard error."""
        try:
            self._file.close()
        except BaseException as error:
            if self.error is None:
                self.error = error
        if orphaned and self.error is not None and not self.reported:
            self.reported = True
            print(f"summary_hook: {path!r}: {self.error!r}", file=sys.stderr)
