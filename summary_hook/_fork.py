"""What a forked child starts with: everything about forks, in one place.

A fork copies the parent's memory but only the thread that forked. A DataLoader worker
is such a child. So a child:

- drops the parent's event writers: it has their objects but not their threads, and
  must never write to the parent's files (``_events.event_file``; a child that tries to write
  gets a ``RuntimeError``);
- gets fresh locks for the op collections and the writer cache, which another thread
  of the parent may have held at the fork and nobody in the child would release;
- makes its evaluation plans afresh, since a plan's template lock may have been held
  the same way (``_evaluation.plans``).
"""

from __future__ import annotations

import os

from summary_hook._evaluation import plans as _plans
from summary_hook._events import event_file as _event_file
from summary_hook._events import writer_cache as _writer_cache
from summary_hook._ops import summary_ops as _ops

__all__: list[str] = []


def _after_fork_in_child() -> None:
    _event_file.forget_writers_in_child()
    _ops.new_lock_in_child()
    _writer_cache.new_lock_in_child()
    _plans.forget_plans_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
