"""``SessionLog.START``: how a resumed run hides a crashed run's stale points.

TensorBoard's readers purge, on a ``SessionLog.START`` at step ``s``, every point at step
``s`` or later that they read before it, in that run directory, from any writer. The two
readers differ on the first START of a run: ``EventAccumulator`` (what ``readback``,
``summary-hook show`` and tbparse use) purges on it, while the accumulator behind the
TensorBoard UI ignores it, taking it for the start of the original session.

TensorFlow writes a START at the first step of every session. A fresh run has nothing
stale to hide, so there that START can only hide points of other writers in the same
directory (Lightning's metrics, a user's ``SummaryWriter``), and only in one of the two
readers. So this package marks a restart only when a session resumes (its first step
follows a step above 0) or goes back in time in a directory this process wrote to (a
notebook cell run again), and then writes START twice at its first step: the first
purges in ``EventAccumulator``, the second in the UI's accumulator too.

Several hooks of one process on one directory mark one restart: each hook asks, and a
START is written only when it would go back in time for that directory, that is, when
no hook of this process has yet written at the resumed step or later there.

Thread contract: a :class:`RestartLedger` is shared by the hooks of one directory; its
one field is read and written under the GIL, and a race can at worst write one more
pair of STARTs at the same step, which hides nothing written after them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tensorboard.compat.proto.event_pb2 import SessionLog
from tensorboard.compat.proto.summary_pb2 import Summary

from summary_hook._events.hook_writers import writer_logdir
from summary_hook._events.writer_cache import directory_key

__all__ = ["RestartLedger", "ledger_for", "mark_restart"]


class RestartLedger:
    """The highest step that hooks of this process wrote to one directory."""

    __slots__ = ("frontier",)

    def __init__(self) -> None:
        self.frontier: int | None = None

    def advance(self, step: int) -> None:
        """Note that a hook wrote at ``step``."""
        if self.frontier is None or step > self.frontier:
            self.frontier = step


#: One ledger per directory (by normalised absolute path): a small string key, so a
#: user's writer is never kept alive by it.
_ledgers: dict[str, RestartLedger] = {}


def ledger_for(writer: Any) -> RestartLedger:
    """The ledger of the directory ``writer`` writes to.

    A writer that does not say its directory (no ``get_logdir()``) gets a ledger of its own.
    """
    logdir = writer_logdir(writer)
    if logdir is None:
        return RestartLedger()
    key = directory_key(logdir)
    return _ledgers.setdefault(key, RestartLedger())  # atomic under the GIL


def mark_restart(
    writer: Any, ledger: RestartLedger, step: int, keep: Iterable[Summary] = ()
) -> bool:
    """Write the two ``SessionLog.START`` events of a run resumed at ``step``, if needed.

    Args:
        writer: The writer of the directory.
        ledger: Its :func:`ledger_for`.
        step: The first step of the resumed run: the START hides every point at ``step``
            or later read before it.
        keep: Summaries the interrupted run wrote at ``step`` that are not stale (a
            checkpoint kept them): written again after the STARTs, so they stay.

    Returns:
        Whether they were written: not when a hook of this process already wrote at
        ``step`` or later in this directory, which a START would hide.
    """
    if ledger.frontier is not None and step >= ledger.frontier:
        return False
    start = SessionLog(status=SessionLog.START)
    writer.add_session_log(start, step)
    writer.add_session_log(start, step)
    for summary in keep:
        writer.add_summary(summary, step)
    ledger.frontier = step  # TensorBoard drops everything later: the directory is back at step
    return True
