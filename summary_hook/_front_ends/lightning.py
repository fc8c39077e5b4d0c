"""Lightning front end: ``SessionRunHook``s driven by a ``Trainer``'s training loop.

The mapping is the whole adapter:

============================  =========================================================
Lightning                     hook protocol
============================  =========================================================
``on_fit_start``              ``begin()`` on each hook, then the scaffold is finalized
``on_train_start``            ``after_create_session`` (a resumed step is visible here)
``on_train_batch_start``      ``before_run``, on batches that end in an optimizer step
``on_before_backward``        the requested ops' taps close (a recomputed forward)
``on_train_batch_end``        requested ops evaluated with ``outputs``, ``after_run``
``on_train_end``              ``end()``
``on_exception``              every event writer flushed (``end()`` is skipped)
``teardown``                  the fit's module and requests let go
============================  =========================================================

``SummarySaver`` adds ``setup`` (a fresh scaffold per fit) and makes its hook at
``on_train_start``, where it also calls ``begin()``: some strategies restore a
checkpoint's callback state, and with it the directory of the resumed run, only after
``on_fit_start``. Where its events go is ``_front_ends.run_dirs``'s to decide.

The step is ``trainer.global_step``: the count of optimizer steps. Under gradient
accumulation only the batch that completes a window is a run, so summaries see the
accumulated gradients and are written once per optimizer step. Under manual
optimization every batch is a run and ``global_step`` counts every
``optimizer.step()`` call (two optimizers: +2 per batch).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable, Sequence
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info
from tensorboard.compat.proto.summary_pb2 import Summary
from typing_extensions import override

from summary_hook._evaluation.plans import PlanCache
from summary_hook._events.hook_writers import (
    DiscardWriter,
    HookWriter,
    flush_after_failure,
    writer_logdir,
)
from summary_hook._events.hparams import SessionHparams, flattened, shown
from summary_hook._events.writer_cache import SummaryWriterCache
from summary_hook._front_ends.run_dirs import close_run, run_writer
from summary_hook._front_ends.spawn import portable_collection, register_again
from summary_hook._hooks.protocol import SessionRunArgs, SessionRunContext, SessionRunHook
from summary_hook._hooks.restarts import ledger_for, mark_restart
from summary_hook._hooks.run import call_after_run, call_before_run, close_taps, release_taps
from summary_hook._hooks.step_counter import StepCounterHook
from summary_hook._hooks.summary_saver import SaverOptions, SummarySaverHook, scalar_tags
from summary_hook._ops.scaffold import Scaffold
from summary_hook._ops.summary_ops import SUMMARIES, SummaryOp, get_collection

__all__ = ["HookCallback", "SummarySaver"]


class _TrainerSession:
    """``run_context.session`` under Lightning: the step is ``trainer.global_step``."""

    __slots__ = ("_trainer",)

    def __init__(self, trainer: pl.Trainer) -> None:
        self._trainer = trainer

    @property
    def global_step(self) -> int:
        return int(self._trainer.global_step)


def _ends_in_optimizer_step(
    trainer: pl.Trainer, pl_module: pl.LightningModule, batch_idx: int
) -> bool:
    if not pl_module.automatic_optimization:
        return True
    k = trainer.accumulate_grad_batches
    return k == 1 or (batch_idx + 1) % k == 0 or batch_idx + 1 == trainer.num_training_batches


class HookCallback(pl.Callback):
    """Run TensorFlow-style ``SessionRunHook``s inside a Lightning ``Trainer``.

    Args:
        hooks: The hooks, called in this order.
        scaffold: Finalized at ``on_fit_start``; a new :class:`Scaffold` when None.

    Raises:
        TypeError: If a hook is not a ``SessionRunHook``.

    Example:
        >>> import summary_hook as sh
        >>> callback = sh.HookCallback([sh.SessionRunHook()])
    """

    def __init__(
        self, hooks: Iterable[SessionRunHook], *, scaffold: Scaffold | None = None
    ) -> None:
        self._set_hooks(list(hooks))
        self._scaffold = scaffold or Scaffold()
        self._session: _TrainerSession | None = None
        self._run_args = SessionRunArgs(None)
        self._context: SessionRunContext | None = None
        self._requests: dict[int, Any] | None = None
        self._plans = PlanCache()

    @property
    def hooks(self) -> list[SessionRunHook]:
        """The hooks this callback drives."""
        return list(self._hooks)

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._session = _TrainerSession(trainer)
        self._run_args = SessionRunArgs(pl_module.training_step)
        for hook in self._hooks:
            hook.begin()
        self._scaffold.finalize()

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for hook in self._hooks:
            hook.after_create_session(self._require_session(), None)

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._context = None
        if not _ends_in_optimizer_step(trainer, pl_module, batch_idx):
            return
        context = SessionRunContext(self._run_args, self._require_session())
        self._requests = call_before_run(self._indexed_hooks, context)
        self._context = context

    @override
    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        context, self._context = self._context, None
        if context is None:
            return
        call_after_run(self._indexed_hooks, context, self._requests, outputs, self._plans)
        if context.stop_requested:
            trainer.should_stop = True

    @override
    def on_before_backward(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: Any
    ) -> None:
        # A recomputed forward (activation checkpointing) is captured no more.
        close_taps(self._requests if self._context is not None else None)

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for hook in self._hooks:
            hook.end(self._require_session())

    @override
    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        # Lightning skips on_train_end here, as TensorFlow skips end(); keep the data anyway.
        release_taps(self._requests)
        flush_after_failure(exception)

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # Let go of this fit's module (its training_step), requests and plans.
        self._run_args = SessionRunArgs(None)
        self._context = self._requests = None
        self._plans = PlanCache()

    def _set_hooks(self, hooks: list[SessionRunHook]) -> None:
        for hook in hooks:
            if not isinstance(hook, SessionRunHook):
                raise TypeError(f"hooks must be SessionRunHook instances, got {hook!r}")
        self._hooks = hooks
        self._indexed_hooks = list(enumerate(hooks))

    def _require_session(self) -> _TrainerSession:
        if self._session is None:
            raise RuntimeError("the Trainer has not started fitting with this callback yet")
        return self._session


class SummarySaver(HookCallback):
    """``SummarySaverHook`` as a Lightning callback: save summaries every N steps or seconds.

    With neither ``scaffold`` nor ``summary_op``, every op registered in the default
    collection when training starts is saved (as ``MonitoredTrainingSession`` does).
    With neither ``output_dir`` nor ``summary_writer``, the run decides: through the
    first ``TensorBoardLogger``'s own writer (Lightning's metrics and the summaries in
    one file of ``logger.log_dir``), else into the first ``CSVLogger``'s version
    directory, else into ``<default_root_dir>/summaries/version_<n>``, a new one for
    each ``Trainer`` and the same one when a checkpoint resumes it. A resumed run marks
    the restart at the checkpoint's step, so TensorBoard drops the interrupted run's
    later points. Only global rank zero writes; every rank evaluates the ops on the
    same steps, so a summary function may use collectives. Under ``fast_dev_run`` the
    ops are evaluated and nothing is written, as Lightning writes no logs then.

    A one-argument summary function gets the batch's outputs as Lightning passes them:
    what ``training_step`` returned, as a dict with ``"loss"`` even when it returned a
    tensor (``lambda out: out["loss"]``).

    Under a spawn-based strategy (``strategy="ddp_spawn"``), the processes Lightning
    starts get the saver, and with it the ops registered in the main process, by
    pickling: a ``lambda`` cannot cross, and ``fit`` raises a ``TypeError`` saying so.
    Register such ops in the module's ``setup()`` or ``configure_model()``, which run in
    every process (see ``_front_ends.spawn``).

    Several savers: Lightning keeps each saver's state in a checkpoint under a key made
    of its ops and ``output_dir`` (not its schedule, so a run resumed with another
    ``save_steps`` finds it), and refuses two savers with the same key ("Found more than
    one stateful callback of type SummarySaver"). Use one saver with both ops, or give
    each its own output_dir or ``summary_op``.

    Args:
        save_steps: Save every this many optimizer steps.
        save_secs: Save every this many seconds (rank zero's clock, under DDP; see
            ``SummarySaverHook``).
        output_dir: Directory for the event file, or an fsspec URL such as
            ``s3://bucket/run`` (see ``FileWriter``).
        summary_writer: A writer to use instead, e.g. ``trainer.logger.experiment``.
        scaffold: A :class:`Scaffold` whose ``summary_op`` is used.
        summary_op: A summary op or a list of them.
        steps_per_sec: Also write ``global_step/sec`` with a :class:`StepCounterHook` on
            the same schedule and writer (as ``MonitoredTrainingSession`` did).
        hparams: Hyperparameters for TensorBoard's HParams dashboard (names to numbers,
            strings or booleans), written into the run's own event file with the
            module's and datamodule's ``save_hyperparameters()`` values beside them,
            and the run's status at its end. With a ``TensorBoardLogger`` they are
            written at ``setup``, before Lightning logs its own: TensorBoard keeps the
            first, so the dashboard shows one session with every value, and the
            metrics named here, not Lightning's ``hp_metric`` placeholder. Its session
            status is the saver's (failed, when the fit raises) only with
            ``TensorBoardLogger(default_hp_metric=False)``: the placeholder comes with a
            "success" that Lightning writes at the start.
        hparam_metrics: The scalar tags shown beside them; by default every
            ``sh.scalar`` tag saved.

    Raises:
        ValueError: With TensorFlow's messages: both ``scaffold`` and ``summary_op``;
            both or neither of ``save_steps`` and ``save_secs``; and if ``output_dir``
            is empty.
        TypeError: If an argument has the wrong type.

    Example:
        >>> import summary_hook as sh
        >>> saver = sh.SummarySaver(save_steps=50)
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
        steps_per_sec: bool = False,
        hparams: Any = None,
        hparam_metrics: Any = None,
    ) -> None:
        if not isinstance(steps_per_sec, bool):
            raise TypeError(f"steps_per_sec must be a bool, got {steps_per_sec!r}")
        self._steps_per_sec = steps_per_sec
        self._options = SaverOptions.checked(
            save_steps=save_steps,
            save_secs=save_secs,
            output_dir=output_dir,
            summary_writer=summary_writer,
            scaffold=scaffold,
            summary_op=summary_op,
            complete=False,  # the run gives the destination, the default collection the ops
            hparams=hparams,
            hparam_metrics=hparam_metrics,
        )
        self._hparams: SessionHparams | None = None  # this fit's, on rank zero
        self._log_dir: str | None = None  # where this fit's events go, on rank zero
        self._resumed_dir: str | None = None  # where the resumed checkpoint's run wrote
        self._resumed: tuple[int, list[bytes]] | None = None  # what it wrote at its step
        self._hook: SummarySaverHook | None = None  # this fit's hook, from on_train_start
        # The main process's ops and their names (see _front_ends.spawn).
        self._spawned_ops: list[tuple[str, SummaryOp]] = []
        super().__init__([], scaffold=scaffold)
        # What the saver saves, and where: not its schedule, so that a run resumed with
        # another save_steps finds the state of the run it resumes.
        self._state_key = self._generate_state_key(
            output_dir=self._options.output_dir,
            summary_op=None if summary_op is None else repr(summary_op),
            scaffold=None if scaffold is None else repr(scaffold.summary_op),
        )

    @property
    @override
    def state_key(self) -> str:
        # Fixed at construction: Lightning reads it around every hook call.
        return self._state_key

    @property
    def output_dir(self) -> str | None:
        """Where events go: the directory given, else resolved when training starts."""
        return self._log_dir if self._log_dir is not None else self._options.output_dir

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            # The main process's ops, in a process a spawn-based strategy started: before
            # the module's own setup(), which may register them again.
            register_again(self._spawned_ops)
            self._spawned_ops = []
            # A fresh scaffold per fit, so ops re-registered in a notebook are picked up.
            self._scaffold = self._options.scaffold or Scaffold()
            self._hparams = self._fit_hparams(trainer, pl_module)
            if self._hparams is not None and self._writes_through_logger(trainer):
                # Before Lightning logs its own hyperparameters: TensorBoard keeps the first.
                self._hparams.start(run_writer(trainer, None).writer, self._metric_tags())

    def _fit_hparams(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> SessionHparams | None:
        """This fit's hyperparameters on the writing rank: the module's and datamodule's
        saved ones (as Lightning logs them), then the saver's."""
        options = self._options
        if options.hparams is None or not trainer.is_global_zero:
            return None
        if getattr(trainer, "fast_dev_run", False):  # (writes no logs; set by the Trainer)
            return None
        values: dict[str, Any] = {}
        datamodule = getattr(trainer, "datamodule", None)
        for owner in (pl_module, datamodule):
            saved = getattr(owner, "hparams_initial", None)
            if saved:
                values.update((k, shown(v)) for k, v in flattened(dict(saved)).items())
        values.update(options.hparams)
        return SessionHparams(values, options.hparam_metrics)

    def _writes_through_logger(self, trainer: pl.Trainer) -> bool:
        """Whether this fit's summaries go through a ``TensorBoardLogger``'s writer."""
        options = self._options
        return (
            options.output_dir is None
            and options.summary_writer is None
            and any(isinstance(logger, TensorBoardLogger) for logger in trainer.loggers)
        )

    def _metric_tags(self) -> list[str]:
        """The saver's scalar tags, from its ops or, before they are merged, the default
        collection's."""
        explicit = self._options.summary_op
        if explicit is not None:
            ops = [explicit] if isinstance(explicit, SummaryOp) else list(explicit)
        elif self._scaffold.summary_op is not None:
            ops = [self._scaffold.summary_op]
        else:
            ops = get_collection(SUMMARIES)
        return scalar_tags(ops)

    def __getstate__(self) -> dict[str, Any]:
        # Pickled for the processes a spawn-based strategy starts: the default
        # collection's ops go along (see ``_front_ends.spawn``).
        state = self.__dict__.copy()
        explicit = self._options.summary_op or self._options.scaffold
        state["_spawned_ops"] = portable_collection(explicit)
        return state

    def __deepcopy__(self, memo: dict[int, Any]) -> SummarySaver:
        # A copy is no trip to another process: copy the state as it is.
        copied = type(self).__new__(type(self))
        memo[id(self)] = copied
        copied.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return copied

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # The hook is made here, not at on_fit_start: some strategies (FSDP, model
        # parallel) restore a checkpoint's callback state, and with it the directory of
        # the resumed run, only after on_fit_start.
        options = self._options
        hook = SummarySaverHook(
            save_steps=options.save_steps,
            save_secs=options.save_secs,
            summary_writer=self._rank_writer(trainer),
            scaffold=None if options.summary_op is not None else self._scaffold,
            summary_op=options.summary_op,
        )
        self._hook = hook
        hooks: list[SessionRunHook] = [hook]
        hook.begin()
        if self._steps_per_sec:
            counter = StepCounterHook(
                every_n_steps=options.save_steps,
                every_n_secs=options.save_secs,
                summary_writer=hook.summary_writer,
            )
            counter.begin()
            hooks.append(counter)
        self._set_hooks(hooks)
        if trainer.global_step > 0 and hook.summary_writer is not None:
            self._mark_restart(hook.summary_writer, trainer.global_step)
        if self._hparams is not None and hook.summary_writer is not None:
            self._hparams.start(hook.summary_writer, self._metric_tags())  # (once)
        super().on_train_start(trainer, pl_module)

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._hparams is not None:
            self._hparams.end(trainer.global_step)
        super().on_train_end(trainer, pl_module)

    @override
    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if self._hparams is not None:
            self._hparams.end(trainer.global_step, failed=True)
        super().on_exception(trainer, pl_module, exception)

    def _mark_restart(self, writer: HookWriter, step: int) -> None:
        # Lightning logs a batch's metrics at the step before its optimizer step, so the
        # interrupted run's first point past the checkpoint is at ``step`` itself: the
        # restart is marked there, not at step + 1 as the hook would, and the summaries
        # that run wrote at ``step``, which the checkpoint kept, are written again.
        keep: list[Summary] = []
        if self._resumed is not None and self._resumed[0] == step:
            keep = [Summary.FromString(data) for data in self._resumed[1]]
        mark_restart(writer, ledger_for(writer), step, keep)

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            if trainer.is_global_zero:
                close_run(trainer)
            super().teardown(trainer, pl_module, stage)

    @override
    def state_dict(self) -> dict[str, Any]:
        """The run's directory, and the summaries written at the current step, if any."""
        state: dict[str, Any] = {}
        if self._log_dir is not None:
            state["log_dir"] = self._log_dir
        last = None if self._hook is None else self._hook.last_saved
        if last is not None and self._session is not None:
            step, summaries = last
            if step == self._session.global_step:
                state["step"] = step
                state["summaries"] = [summary.SerializeToString() for summary in summaries]
        return state

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        log_dir = state_dict.get("log_dir")
        self._resumed_dir = log_dir if isinstance(log_dir, str) else None
        step, summaries = state_dict.get("step"), state_dict.get("summaries")
        self._resumed = (step, summaries) if isinstance(step, int) and summaries else None

    def _rank_writer(self, trainer: pl.Trainer) -> HookWriter:
        """The writer of this rank: rank zero's destination, a discarding one elsewhere
        and under ``fast_dev_run`` (which writes no logs: the ops are evaluated, so that
        a broken one fails the dry run, and nothing is written)."""
        if getattr(trainer, "fast_dev_run", False):  # set by the Trainer, untyped
            rank_zero_info("SummarySaver: fast_dev_run evaluates the summary ops, writes none")
            return DiscardWriter()
        if not trainer.is_global_zero:
            return DiscardWriter()
        writer = self._options.summary_writer
        if writer is None and self._options.output_dir is not None:
            writer = SummaryWriterCache.get(self._options.output_dir)
        if writer is None:
            run = run_writer(trainer, self._resumed_dir)
            self._log_dir, writer = run.log_dir, run.writer
        else:
            self._log_dir = writer_logdir(writer)
        return writer
