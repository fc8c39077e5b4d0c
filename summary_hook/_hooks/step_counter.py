"""``StepCounterHook``: TensorFlow's hook that writes the training speed, ``global_step/sec``."""

from __future__ import annotations

import logging
import os
from typing import Any

from tensorboard.compat.proto.summary_pb2 import Summary

from summary_hook._evaluation import distributed
from summary_hook._events.hook_writers import DiscardWriter, HookWriter, as_summary_writer
from summary_hook._events.writer_cache import SummaryWriterCache
from summary_hook._hooks.protocol import (
    SessionRunArgs,
    SessionRunContext,
    SessionRunHook,
    SessionRunValues,
)
from summary_hook._hooks.timer import SecondOrStepTimer, checked_seconds, checked_steps

__all__ = ["StepCounterHook"]

_log = logging.getLogger("summary_hook")

#: How many times the stuck-step warning is logged, as TensorFlow's ``log_first_n``.
_WARNINGS = 5


class StepCounterHook(SessionRunHook):
    """Write ``global_step/sec`` every N steps or seconds: a port of TensorFlow's hook.

    The first trigger only records the time; each later one writes the steps over the
    seconds since the previous trigger, at the post-run global step, through the shared
    writer of ``output_dir`` (or ``summary_writer``), and logs it. Under
    ``torch.distributed`` only global rank zero writes; the hook makes no collective.

    Args:
        every_n_steps: Write every this many steps (pass None to use ``every_n_secs``).
        every_n_secs: Write every this many seconds.
        output_dir: Directory (or URL) whose shared writer is used.
        summary_writer: A writer to use instead.

    Raises:
        ValueError: Unless exactly one of ``every_n_steps`` and ``every_n_secs`` is given
            (TensorFlow's message), if a period is not positive (or the seconds not
            finite), or if ``output_dir`` is empty.
        TypeError: If a period is not a number (or the steps not an integer).

    Example:
        >>> import tempfile, summary_hook as sh
        >>> hook = sh.StepCounterHook(every_n_steps=100, output_dir=tempfile.mkdtemp())
    """

    def __init__(
        self,
        every_n_steps: int | None = 100,
        every_n_secs: float | None = None,
        output_dir: str | os.PathLike[str] | None = None,
        summary_writer: Any = None,
    ) -> None:
        if (every_n_steps is None) == (every_n_secs is None):
            raise ValueError("exactly one of every_n_steps and every_n_secs should be provided.")
        if every_n_steps is not None:
            every_n_steps = checked_steps("every_n_steps", every_n_steps)
        if every_n_secs is not None:
            every_n_secs = checked_seconds("every_n_secs", every_n_secs)
        self._timer = SecondOrStepTimer(every_steps=every_n_steps, every_secs=every_n_secs)
        if output_dir is not None and (
            not isinstance(output_dir, (str, os.PathLike)) or not os.fspath(output_dir)
        ):
            raise ValueError(f"output_dir must be a non-empty path, got {output_dir!r}")
        self._output_dir = None if output_dir is None else os.fspath(output_dir)
        self._summary_writer: HookWriter | None = (
            None if summary_writer is None else as_summary_writer(summary_writer)
        )
        self._last_global_step: int | None = None
        self._steps_per_run = 1
        self._stale_step = 0
        self._warnings = 0
        self._summary_tag = "global_step/sec"

    def _set_steps_per_run(self, steps_per_run: int) -> None:
        self._steps_per_run = steps_per_run

    def begin(self) -> None:
        """Open the shared writer of ``output_dir`` (rank zero's; others write nothing)."""
        if distributed.global_rank() != 0:
            self._summary_writer = DiscardWriter()
        elif self._summary_writer is None and self._output_dir:
            self._summary_writer = SummaryWriterCache.get(self._output_dir)

    def before_run(self, run_context: SessionRunContext) -> SessionRunArgs | None:
        """Note the step before the run (TensorFlow's stale global step)."""
        self._stale_step = run_context.session.global_step
        return None

    def after_run(self, run_context: SessionRunContext, run_values: SessionRunValues) -> None:
        """Write the steps per second when the timer triggers at the post-run step."""
        stale = self._stale_step
        if self._timer.should_trigger_for_step(stale + self._steps_per_run):
            global_step = run_context.session.global_step
            if self._timer.should_trigger_for_step(global_step):
                elapsed_time, elapsed_steps = self._timer.update_last_triggered_step(global_step)
                if elapsed_time is not None and elapsed_steps is not None:
                    self._record(elapsed_steps / elapsed_time, global_step)
        if stale == self._last_global_step and self._warnings < _WARNINGS:
            self._warnings += 1
            _log.warning(
                "It seems that global step has not been increased. Current value (could "
                "be stable): %s vs previous value: %s. Pass a global_step that counts "
                "optimizer steps to MonitoredSession.",
                stale,
                self._last_global_step,
            )
        self._last_global_step = stale

    def _record(self, steps_per_sec: float, global_step: int) -> None:
        if self._summary_writer is not None:
            summary = Summary(
                value=[Summary.Value(tag=self._summary_tag, simple_value=steps_per_sec)]
            )
            self._summary_writer.add_summary(summary, global_step)
        _log.info("%s: %g", self._summary_tag, steps_per_sec)
