"""``SummarySaverHook``: TensorFlow's hook that saves summaries every N steps or seconds."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tensorboard.compat.proto.summary_pb2 import Summary

from summary_hook._evaluation import distributed as _distributed
from summary_hook._events.hook_writers import DiscardWriter, HookWriter, as_summary_writer
from summary_hook._events.hparams import (
    Hparams,
    SessionHparams,
    checked_hparams,
    checked_metrics,
)
from summary_hook._events.pending import DeferredSummary, complete
from summary_hook._events.writer_cache import SummaryWriterCache
from summary_hook._hooks.protocol import (
    Session,
    SessionRunArgs,
    SessionRunContext,
    SessionRunHook,
    SessionRunValues,
)
from summary_hook._hooks.restarts import RestartLedger, ledger_for, mark_restart
from summary_hook._hooks.schedule import AgreedSecondsTimer
from summary_hook._hooks.timer import (
    SecondOrStepTimer,
    _HookTimer,
    checked_seconds,
    checked_steps,
)
from summary_hook._ops.scaffold import Scaffold
from summary_hook._ops.summary_ops import SummaryOp

__all__ = ["SaverOptions", "SummarySaverHook"]

_NOTHING_TO_SAVE = (
    "SummarySaverHook has no summary op to save: its scaffold's summary_op is None, as the "
    "default collection held no op when the session started. Register ops (sh.scalar, "
    "sh.histogram, ...) before training starts (under Lightning: in the LightningModule's "
    "__init__, setup() or configure_model()), or pass summary_op="
)


@dataclass(frozen=True)
class SaverOptions:
    """``SummarySaverHook``'s arguments, checked once: the hook's, and ``SummarySaver``'s.

    Made by :meth:`checked`. ``SummarySaver`` checks its arguments with
    ``complete=False``: it may leave out the summary source (the default collection)
    and the destination (the run's), which it fills in when a fit starts.
    """

    save_steps: int | None = None
    save_secs: float | None = None
    output_dir: str | None = None
    summary_writer: HookWriter | None = None
    scaffold: Scaffold | None = None
    summary_op: SummaryOp | Sequence[SummaryOp] | None = None
    hparams: Hparams | None = None
    hparam_metrics: tuple[str, ...] | None = None

    @classmethod
    def checked(
        cls,
        *,
        save_steps: int | None,
        save_secs: float | None,
        output_dir: str | os.PathLike[str] | None,
        summary_writer: Any,
        scaffold: Scaffold | None,
        summary_op: SummaryOp | Sequence[SummaryOp] | None,
        complete: bool = True,
        hparams: Any = None,
        hparam_metrics: Any = None,
    ) -> SaverOptions:
        """Check the arguments in TensorFlow's order, with its messages, then ours.

        Raises:
            ValueError: If both or neither of ``scaffold`` and ``summary_op`` is given
                (neither is allowed when not ``complete``); if both or neither of
                ``save_steps`` and ``save_secs``; if ``output_dir`` is empty; if
                ``complete`` and neither ``output_dir`` nor ``summary_writer`` is given;
                if ``save_steps`` is not a positive integer or ``save_secs`` not a
                positive, finite number; if ``hparam_metrics`` is given without
                ``hparams``.
            TypeError: If an argument has the wrong type.
        """
        if complete or scaffold is not None or summary_op is not None:
            _check_summary_source(scaffold, summary_op)
        if (save_steps is None) == (save_secs is None):  # TensorFlow's messages, from its timer
            SecondOrStepTimer(every_secs=save_secs, every_steps=save_steps)
        if save_steps is not None:
            save_steps = checked_steps("save_steps", save_steps)
        if save_secs is not None:
            save_secs = checked_seconds("save_secs", save_secs)
        if complete and output_dir is None and summary_writer is None:
            raise ValueError(
                "SummarySaverHook needs output_dir or summary_writer; with neither it "
                "would evaluate the summary ops on every step and write nothing"
            )
        if output_dir is not None and (
            not isinstance(output_dir, (str, os.PathLike)) or not os.fspath(output_dir)
        ):
            raise ValueError(f"output_dir must be a non-empty path, got {output_dir!r}")
        if hparam_metrics is not None and hparams is None:
            raise ValueError(
                f"hparam_metrics={hparam_metrics!r} names the metrics shown beside "
                "hyperparameters: pass hparams={...} too"
            )
        return cls(
            save_steps=save_steps,
            save_secs=save_secs,
            output_dir=None if output_dir is None else os.fspath(output_dir),
            summary_writer=None if summary_writer is None else as_summary_writer(summary_writer),
            scaffold=scaffold,
            summary_op=summary_op,
            hparams=None if hparams is None else checked_hparams(hparams),
            hparam_metrics=None if hparam_metrics is None else checked_metrics(hparam_metrics),
        )


def scalar_tags(ops: Sequence[SummaryOp]) -> list[str]:
    """The tags of the scalar summaries of ``ops``: the metrics shown beside
    hyperparameters unless ``hparam_metrics`` names them."""
    return [leaf.tag for op in ops for leaf in op.leaves if leaf.kind == "scalar"]


def _check_summary_source(
    scaffold: Scaffold | None, summary_op: SummaryOp | Sequence[SummaryOp] | None
) -> None:
    """TensorFlow's first check: exactly one of ``scaffold`` and ``summary_op``."""
    if (scaffold is None) == (summary_op is None):
        raise ValueError(
            "Exactly one of scaffold or summary_op must be provided. "
            "(scaffold=summary_hook.Scaffold() saves every op of the default collection.)"
        )
    if scaffold is not None and not isinstance(scaffold, Scaffold):
        raise TypeError(f"scaffold must be a summary_hook.Scaffold, got {scaffold!r}")
    if summary_op is not None:
        ops = summary_op if isinstance(summary_op, (list, tuple)) else [summary_op]
        for op in ops:
            if not isinstance(op, SummaryOp):
                raise TypeError(
                    f"summary_op must be a summary op or a list of them, got {op!r} "
                    f"of type {type(op).__name__}"
                )


class SummarySaverHook(SessionRunHook):
    """Save summaries every ``save_steps`` steps or every ``save_secs`` seconds.

    A port of ``tf.train.SummarySaverHook``. The first step is always due, a step is
    never written twice, and summary functions run only on due steps. When the session
    resumes (its first step follows a step above 0), or starts again where this process
    already wrote later steps to the directory (a notebook cell run again), the first
    step writes ``SessionLog.START`` at its post-run global step, twice (once for each of
    TensorBoard's readers) and before its summaries, so TensorBoard drops the stale
    points of the earlier run; see ``_hooks.restarts`` for why a fresh run writes none.
    Each op in ``summary_op`` gives one event per due step. :meth:`end` flushes but never
    closes the writer, which is shared through :class:`SummaryWriterCache`.

    Under ``torch.distributed`` (an initialized process group at :meth:`begin`), every
    rank evaluates the ops on the same steps, so that collectives in them match, and
    only global rank zero writes. With ``save_secs``, rank zero's clock decides: it
    turns the period into a step count at each due step and broadcasts it, so steps in
    between make no collective (see ``_hooks.schedule`` for how this follows TensorFlow's
    timer).

    Args:
        save_steps: Save every this many steps.
        save_secs: Save every this many seconds.
        output_dir: Directory for the shared writer of that directory, or an fsspec
            URL such as ``s3://bucket/run`` (see ``FileWriter``).
        summary_writer: A writer to use instead (a :class:`FileWriter`, a
            ``torch.utils.tensorboard`` or ``tensorboardX`` ``SummaryWriter``, or an
            object with ``add_summary``, ``add_session_log`` and ``flush``).
        scaffold: A :class:`Scaffold` whose ``summary_op`` is used.
        summary_op: A summary op or a list of them. With neither this nor
            ``scaffold``, pass ``scaffold=Scaffold()`` to save every registered op.
        timer: Decides when a step is due, in place of
            ``SecondOrStepTimer(save_secs, save_steps)`` (whose checks still apply).
        hparams: Hyperparameters to show in TensorBoard's HParams dashboard (names to
            numbers, strings or booleans), written into the run's own event file on
            the first step, with the run's status at :meth:`end`.
        hparam_metrics: The scalar tags shown beside them; by default every
            ``sh.scalar`` tag the hook saves.

    Raises:
        ValueError: If both or neither of ``scaffold`` and ``summary_op`` is given, if
            both or neither of ``save_steps`` and ``save_secs`` is given (checked in
            that order, with TensorFlow's messages), if ``save_steps`` is not positive
            or ``save_secs`` not positive and finite (TensorFlow accepts both), or if
            neither ``output_dir`` nor ``summary_writer`` is given.
        TypeError: If an argument has the wrong type (``save_steps`` not an integer).

    Example:
        >>> import tempfile, summary_hook as sh
        >>> loss = sh.scalar("loss", lambda out: out, collections=[])
        >>> logdir = tempfile.mkdtemp()
        >>> hook = sh.SummarySaverHook(save_steps=10, output_dir=logdir, summary_op=loss)
    """

    def __init__(
        self,
        save_steps: int | None = None,
        save_secs: float | None = None,
        output_dir: str | os.PathLike[str] | None = None,
        summary_writer: Any = None,
        scaffold: Scaffold | None = None,
        summary_op: SummaryOp | Sequence[SummaryOp] | None = None,
        *,
        timer: _HookTimer | None = None,
        hparams: Any = None,
        hparam_metrics: Any = None,
    ) -> None:
        options = SaverOptions.checked(
            save_steps=save_steps,
            save_secs=save_secs,
            output_dir=output_dir,
            summary_writer=summary_writer,
            scaffold=scaffold,
            summary_op=summary_op,
            hparams=hparams,
            hparam_metrics=hparam_metrics,
        )
        self._timer = timer or SecondOrStepTimer(
            every_secs=options.save_secs, every_steps=options.save_steps
        )
        self._save_secs = options.save_secs
        self._agree_on_seconds = timer is None and options.save_secs is not None
        self._summary_op = options.summary_op
        self._scaffold = options.scaffold
        self._output_dir = options.output_dir
        self._summary_writer = options.summary_writer
        self._next_step: int | None = None
        self._stale_step = 0
        self._request_summary = False
        self._said_nothing_to_save = False
        self._ledger = RestartLedger()
        self._hparams = (
            None
            if options.hparams is None
            else SessionHparams(options.hparams, options.hparam_metrics)
        )
        # What the latest due step wrote, as evaluation gave it (see ``_events.pending``).
        self._last_saved: tuple[int, tuple[Summary | DeferredSummary, ...]] | None = None

    @property
    def summary_writer(self) -> HookWriter | None:
        """The writer in use: None before :meth:`begin` when only ``output_dir`` was given."""
        return self._summary_writer

    def begin(self) -> None:
        """Open the shared writer of ``output_dir`` and forget any earlier run.

        Under ``torch.distributed``, ranks other than zero get a writer that discards,
        and with ``save_secs`` every rank a timer they agree on.
        """
        if _distributed.global_rank() != 0:
            self._summary_writer = DiscardWriter()
        elif self._summary_writer is None and self._output_dir:
            self._summary_writer = SummaryWriterCache.get(self._output_dir)
        if self._agree_on_seconds and _distributed.active():
            assert self._save_secs is not None
            self._timer = AgreedSecondsTimer(self._save_secs)
        if self._summary_writer is not None:
            self._ledger = ledger_for(self._summary_writer)
        self._next_step = None

    def before_run(self, run_context: SessionRunContext) -> SessionRunArgs | None:
        """Ask for the summary ops when this step is due."""
        self._stale_step = run_context.session.global_step
        next_step = self._next_step
        if next_step is None and self._scaffold is not None:
            # A scaffold the session did not finalize (not the session's own) would give
            # no summary op, and TensorFlow would silently write none: resolve it now.
            self._scaffold.finalize()
        request = next_step is None or self._timer.should_trigger_for_step(next_step)
        self._request_summary = request
        if request:
            summary_op = self._get_summary_op()
            if summary_op is not None:
                return SessionRunArgs({"summary": summary_op})
            if not self._said_nothing_to_save:
                self._said_nothing_to_save = True
                warnings.warn(_NOTHING_TO_SAVE, UserWarning, stacklevel=2)
        return None

    def after_run(self, run_context: SessionRunContext, run_values: SessionRunValues) -> None:
        """Write ``SessionLog.START`` on the first step and the summaries on due steps."""
        writer = self._summary_writer
        if not writer:
            return
        next_step = self._next_step
        if next_step is not None and not self._request_summary:
            self._next_step = self._stale_step + 2  # the predicted step, plus one
            return
        global_step = run_context.session.global_step  # the real post-run step
        if next_step is None and (self._stale_step > 0 or self._ledger.frontier is not None):
            # A resumed run, or one that goes back in time in a directory this process
            # wrote (a notebook cell run again): hide the stale points.
            mark_restart(writer, self._ledger, global_step)
        if self._hparams is not None and not self._hparams.started:
            self._hparams.start(writer, scalar_tags(self._get_summary_op() or []))
        if self._request_summary and global_step != self._timer.last_triggered_step():
            # (The step may not have moved: a step read from a callable, such as an
            # optimizer step under accumulation. It was written already; never twice.)
            self._timer.update_last_triggered_step(global_step)
            self._ledger.advance(global_step)
            results = run_values.results
            if results is not None and "summary" in results:
                summaries = results["summary"]
                for summary in summaries:
                    writer.add_evaluated_summary(summary, global_step)
                self._last_saved = (global_step, tuple(summaries))
        self._next_step = global_step + 1

    @property
    def last_saved(self) -> tuple[int, tuple[Summary, ...]] | None:
        """The step and the summaries of the latest due step, or None before the first.

        A checkpoint taken at that step keeps them, so that a resumed run can write
        them again after its ``SessionLog.START`` (see ``SummarySaver``).
        """
        if self._last_saved is None:
            return None
        step, summaries = self._last_saved
        return step, tuple(complete(summary) for summary in summaries)

    def end(self, session: Session) -> None:
        """Write the run's status with its hyperparameters, if any, and flush the writer;
        it stays open for others that share it."""
        if self._summary_writer:
            if self._hparams is not None:
                self._hparams.end(session.global_step)
            self._summary_writer.flush()

    def _get_summary_op(self) -> list[SummaryOp] | None:
        summary_op: SummaryOp | Sequence[SummaryOp] | None = self._summary_op
        if summary_op is None and self._scaffold is not None:
            summary_op = self._scaffold.summary_op
        if summary_op is None:
            return None
        if isinstance(summary_op, SummaryOp):
            return [summary_op]
        return list(summary_op)
