"""What hooks write through: the ``HookWriter`` interface, and an adapter of it for every
kind of writer a hook may be given (torch's and tensorboardX's ``SummaryWriter``, a writer
of one's own, ranks other than zero's), beside ``FileWriter``, which is one itself.

Thread contract: the adapters add no state of their own beyond ``_foreign_writers``, a
``WeakSet`` that :func:`flush_everything` reads from any thread; each adapter is as
thread-safe as the writer it wraps.
"""

from __future__ import annotations

import os
import sys
import warnings
import weakref
from typing import Any, Protocol, runtime_checkable

from tensorboard.compat.proto.event_pb2 import Event, SessionLog
from tensorboard.compat.proto.summary_pb2 import Summary

from summary_hook._events.event_file import flush_all_writers
from summary_hook._events.pending import DeferredSummary, complete
from summary_hook._events.writer import FileWriter

__all__ = [
    "DiscardWriter",
    "HookWriter",
    "SummaryWriterLike",
    "as_summary_writer",
    "flush_after_failure",
    "flush_everything",
    "writer_logdir",
]


@runtime_checkable
class SummaryWriterLike(Protocol):
    """A writer of one's own that a hook can use: TensorFlow's ``FileWriter`` methods."""

    def add_summary(self, summary: Summary | bytes, global_step: int | None = None) -> None: ...

    def add_session_log(self, session_log: SessionLog, global_step: int | None = None) -> None: ...

    def flush(self) -> None: ...


class HookWriter(Protocol):
    """What a hook writes through: every writer a hook holds, as :func:`as_summary_writer`
    makes it. ``add_evaluated_summary`` takes what evaluation gave for an op (a
    ``Summary``, or a ``DeferredSummary`` for an op with images or texts) as it is."""

    def add_summary(
        self, summary: Summary | bytes | DeferredSummary, global_step: int | None = None
    ) -> None: ...

    def add_evaluated_summary(
        self, summary: Summary | DeferredSummary, global_step: int | None = None
    ) -> None: ...

    def add_session_log(self, session_log: SessionLog, global_step: int | None = None) -> None: ...

    def flush(self) -> None: ...


_foreign_writers: weakref.WeakSet[_ForeignWriter] = weakref.WeakSet()


class DiscardWriter:
    """The writer of ranks other than zero: they evaluate the ops, and write nothing."""

    def add_summary(self, summary: Any, global_step: int | None = None) -> None:
        pass

    def add_evaluated_summary(self, summary: Any, global_step: int | None = None) -> None:
        pass

    def add_session_log(self, session_log: Any, global_step: int | None = None) -> None:
        pass

    def flush(self) -> None:
        pass


class _ForeignWriter:
    """Adapts a ``torch.utils.tensorboard`` or ``tensorboardX`` ``SummaryWriter``."""

    def __init__(self, writer: Any, event_type: Any) -> None:
        self._writer = writer
        self._event_type = event_type  # None: TensorBoard's own Event class
        _foreign_writers.add(self)

    def add_summary(
        self, summary: Summary | bytes | DeferredSummary, global_step: int | None = None
    ) -> None:
        if isinstance(summary, bytes):
            summary = Summary.FromString(summary)
        self._add(Event(summary=complete(summary)), global_step)

    def add_evaluated_summary(
        self, summary: Summary | DeferredSummary, global_step: int | None = None
    ) -> None:
        self.add_summary(summary, global_step)

    def add_session_log(self, session_log: SessionLog, global_step: int | None = None) -> None:
        self._add(Event(session_log=session_log), global_step)

    def flush(self) -> None:
        self._writer.flush()

    def get_logdir(self) -> str:
        """The directory of the wrapped writer."""
        get_logdir = getattr(self._writer, "get_logdir", None)  # torch's; tensorboardX: logdir
        return str(get_logdir() if callable(get_logdir) else self._writer.logdir)

    def _add(self, event: Event, step: int | None) -> None:
        converted: Any = event
        if self._event_type is not None:
            converted = self._event_type.FromString(event.SerializeToString())
        # Both libraries' public writers reach their file writer through this method,
        # which also reopens it after close().
        self._writer._get_file_writer().add_event(converted, step)

    def __repr__(self) -> str:
        return f"_ForeignWriter({self._writer!r})"


class _OwnWriter:
    """Adapts a writer of the user's own (``SummaryWriterLike``): what evaluation gives
    reaches it as a complete ``Summary``."""

    def __init__(self, writer: SummaryWriterLike) -> None:
        self.writer = writer

    def add_summary(
        self, summary: Summary | bytes | DeferredSummary, global_step: int | None = None
    ) -> None:
        self.writer.add_summary(
            summary if isinstance(summary, bytes) else complete(summary), global_step
        )

    def add_evaluated_summary(
        self, summary: Summary | DeferredSummary, global_step: int | None = None
    ) -> None:
        self.writer.add_summary(complete(summary), global_step)

    def add_session_log(self, session_log: SessionLog, global_step: int | None = None) -> None:
        self.writer.add_session_log(session_log, global_step)

    def flush(self) -> None:
        self.writer.flush()

    def get_logdir(self) -> str | None:
        """The directory of the wrapped writer, when it says."""
        return writer_logdir(self.writer)

    def __bool__(self) -> bool:
        return bool(self.writer)

    def __repr__(self) -> str:
        return f"_OwnWriter({self.writer!r})"


def as_summary_writer(writer: object) -> HookWriter:
    """Return ``writer`` as a hook writes through it (a :class:`HookWriter`).

    Accepts a :class:`FileWriter` (returned as it is), a
    ``torch.utils.tensorboard.SummaryWriter``, a ``tensorboardX.SummaryWriter``, or any
    object with TensorFlow's ``add_summary``, ``add_session_log`` and ``flush`` methods.

    Raises:
        TypeError: For anything else, naming the type received.
    """
    if isinstance(writer, (FileWriter, DiscardWriter, _ForeignWriter, _OwnWriter)):
        return writer
    # A writer of either library means its module is imported: look, never import.
    torch_tensorboard = sys.modules.get("torch.utils.tensorboard")
    if torch_tensorboard is not None and isinstance(writer, torch_tensorboard.SummaryWriter):
        return _ForeignWriter(writer, None)
    tensorboardx = sys.modules.get("tensorboardX")
    if tensorboardx is not None and isinstance(writer, tensorboardx.SummaryWriter):
        from tensorboardX.proto import event_pb2 as tbx_event_pb2

        return _ForeignWriter(writer, tbx_event_pb2.Event)
    if isinstance(writer, SummaryWriterLike):
        return _OwnWriter(writer)
    raise TypeError(
        "summary_writer must be a summary_hook.FileWriter, a torch.utils.tensorboard or "
        "tensorboardX SummaryWriter, or have add_summary, add_session_log and flush methods; "
        f"got {writer!r} of type {type(writer).__qualname__}"
    )


def writer_logdir(writer: object) -> str | None:
    """The directory ``writer`` writes to, when it says (``get_logdir()``), else None."""
    get_logdir = getattr(writer, "get_logdir", None)
    logdir = get_logdir() if callable(get_logdir) else None
    if isinstance(logdir, (str, os.PathLike)) and os.fspath(logdir):
        return os.fspath(logdir)
    return None


def flush_everything() -> None:
    """Flush every event file this process writes, directly or through an adapter.

    Raises:
        Exception: The first failure, after every writer was tried.
    """
    first: BaseException | None = None
    for flush in (flush_all_writers, *(w.flush for w in list(_foreign_writers))):
        try:
            flush()
        except BaseException as error:
            first = first or error
    if first is not None:
        raise first


def flush_after_failure(failure: BaseException) -> None:
    """Flush every writer while ``failure`` propagates; warn if that fails too.

    A writer error that is ``failure`` itself, or has the same cause, is not repeated.
    """
    try:
        flush_everything()
    except Exception as error:
        if error is failure or (
            error.__cause__ is not None and error.__cause__ is failure.__cause__
        ):
            return
        warnings.warn(
            f"flushing summaries after {type(failure).__name__} failed: {error!r}",
            RuntimeWarning,
            stacklevel=3,
        )
