"""``save_secs`` across ranks: due steps every rank agrees on, with no collective on the
steps between.

Each rank evaluates the summary ops on the same steps, or the collectives in them would
not match. With ``save_steps`` the step count alone decides, the same everywhere. With
``save_secs`` the clocks disagree, and asking rank zero on every step would cost a
blocking collective per step (a host synchronisation on NCCL). So rank zero turns the
period into steps, at due steps only: at each due step it measures the pace since the
previous one (at the first, since the timer began: the first step), and the next due step is
the first at which ``save_secs`` will have passed at that pace. One broadcast of that
step count, at the due step, tells every rank.

Against TensorFlow's timer, which saves at the first step at or after ``save_secs``:
at a steady pace the two agree; when steps speed up a save comes early, when they slow
down it comes late, each by the change of pace over one period, and the next period
is measured afresh. The first period is measured on the first step, which may include
warm-up: then the second save comes early.
"""

from __future__ import annotations

import math
import time

import torch
import torch.distributed as dist

from summary_hook._evaluation.distributed import collective_device
from summary_hook._hooks.timer import SecondOrStepTimer, _HookTimer

__all__ = ["AgreedSecondsTimer"]

_LONGEST = 1 << 62  # steps to the next due step, at most: an int64 on every backend


class AgreedSecondsTimer(_HookTimer):
    """Every ``every_secs`` seconds of rank zero's clock, on steps every rank agrees on.

    ``update_last_triggered_step`` is a collective: every rank calls it at the same due
    steps (the hook does). Not thread-safe: one timer belongs to one hook.

    Args:
        every_secs: The period in seconds.

    Raises:
        TypeError: If ``every_secs`` is not a number.
    """

    def __init__(self, every_secs: float) -> None:
        SecondOrStepTimer(every_secs=every_secs)  # its checks
        self._every_secs = every_secs
        self.reset()

    def reset(self) -> None:
        self._last_step: int | None = None
        self._last_time: float | None = None
        self._next_due = 0
        self._started = time.time()  # the first period is measured from here

    def should_trigger_for_step(self, step: int) -> bool:
        if self._last_step is None:
            return True
        return step != self._last_step and step >= self._next_due

    def update_last_triggered_step(self, step: int) -> tuple[float | None, int | None]:
        now = time.time()
        if self._last_step is None or self._last_time is None:
            elapsed: tuple[float | None, int | None] = (None, None)
            pace = now - self._started
        else:
            elapsed = (now - self._last_time, step - self._last_step)
            pace = (now - self._last_time) / max(step - self._last_step, 1)
        self._next_due = step + self._agreed_steps_ahead(pace)
        self._last_step, self._last_time = step, now
        return elapsed

    def _agreed_steps_ahead(self, pace: float) -> int:
        """Rank zero's count of steps to the next due step, broadcast to every rank."""
        steps = self._every_secs / pace if pace > 0 else 1.0
        ahead = _LONGEST if not math.isfinite(steps) else max(1, min(math.ceil(steps), _LONGEST))
        count = torch.full((1,), ahead, dtype=torch.int64, device=collective_device())
        dist.broadcast(count, src=0)
        return int(count.item())

    def last_triggered_step(self) -> int | None:
        return self._last_step

    def __repr__(self) -> str:
        return f"AgreedSecondsTimer(every_secs={self._every_secs!r})"
