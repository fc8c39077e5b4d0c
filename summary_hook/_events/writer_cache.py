"""``SummaryWriterCache``: one shared :class:`FileWriter` per log directory.

Thread contract: thread-safe; the class-level ``_lock`` guards ``_cache``.
"""

from __future__ import annotations

import os
import threading
from typing import ClassVar

from summary_hook._events.event_file import WriterError
from summary_hook._events.remote import is_remote
from summary_hook._events.writer import FileWriter

__all__ = ["SummaryWriterCache", "directory_key"]


class SummaryWriterCache:
    """One :class:`FileWriter` per directory, shared by every hook that writes there.

    Unlike TensorFlow, the key is the normalised absolute path, so ``"runs/a"`` and
    ``"./runs/a/"`` share one writer and one file; a URL (``s3://bucket/run``) is its own
    key, less a trailing slash. A local writer whose file was removed since (a notebook
    cell that clears its log directory and runs again) starts a new file.

    Example:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> SummaryWriterCache.get(d) is SummaryWriterCache.get(d + "/")
        True
        >>> SummaryWriterCache.clear()
    """

    _cache: ClassVar[dict[str, FileWriter]] = {}
    _lock: ClassVar[threading.RLock] = threading.RLock()

    @staticmethod
    def get(logdir: str | os.PathLike[str]) -> FileWriter:
        """Return the shared writer for ``logdir``, creating it on first use.

        Raises:
            ValueError: If ``logdir`` is empty or not a path.
            OSError: If the directory or the event file cannot be created.
        """
        if not isinstance(logdir, (str, os.PathLike)) or not os.fspath(logdir):
            raise ValueError(f"logdir must be a non-empty path, got {logdir!r}")
        key = directory_key(os.fspath(logdir))
        with SummaryWriterCache._lock:
            writer = SummaryWriterCache._cache.get(key)
            if writer is None:
                writer = FileWriter(key)
                SummaryWriterCache._cache[key] = writer
            elif writer.path is not None and not is_remote(key) and not os.path.exists(writer.path):
                _start_new_file(writer)
            return writer

    @staticmethod
    def clear() -> None:
        """Close every cached writer and empty the cache.

        Raises:
            Exception: The first close failure, after every writer was closed.
        """
        with SummaryWriterCache._lock:
            writers = list(SummaryWriterCache._cache.values())
            SummaryWriterCache._cache.clear()
        first: BaseException | None = None
        for writer in writers:
            try:
                writer.close()
            except BaseException as error:
                first = first or error
        if first is not None:
            raise first


def directory_key(logdir: str) -> str:
    """One name per log directory: the absolute real path, or the URL less a final slash."""
    if is_remote(logdir):
        return logdir.rstrip("/")
    return os.path.realpath(os.path.expanduser(logdir))


def _start_new_file(writer: FileWriter) -> None:
    """Replace a writer's file that was removed (a notebook cell that clears its log
    directory and runs again), as TensorFlow's ``EventsWriter`` does when its file
    disappears: what it held went with the directory."""
    try:
        writer.close()
    except WriterError as error:
        if not isinstance(error.__cause__, FileNotFoundError):
            raise
    writer.reopen()


def new_lock_in_child() -> None:
    """After a fork: a fresh lock for the cache (see ``_fork``)."""
    SummaryWriterCache._lock = threading.RLock()
