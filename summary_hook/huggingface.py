"""``SummarySaverCallback``: ``SummarySaverHook`` for Hugging Face's ``transformers.Trainer``.

A ``TrainerCallback`` that translates the Trainer's step events into the hook protocol,
over the same hook, ops and writer as the Lightning callback and ``MonitoredSession``:

- ``on_step_begin`` (a window's first micro-batch) is ``before_run``: the hook decides
  whether the optimizer step is due, and arms the ``output_of`` taps of the ops it asks
  for. Each micro-batch that does not end the window (``on_substep_end``) lets go of
  what they captured, so that what is summarized is the window's last micro-batch's, as
  under Lightning's ``accumulate_grad_batches``.
- ``on_optimizer_step`` is ``after_run``: the ops are evaluated once per optimizer step,
  after ``optimizer.step()`` and before the Trainer zeroes the gradients, so that they
  are the ones the optimizer used (accumulated over the window, clipped, unscaled). The
  step written is ``state.global_step`` after that optimizer step, the step of the
  Trainer's own logs.

A one-argument summary function gets ``{"loss": ...}``: the loss the model returned for
the window's last micro-batch (``lambda out: out["loss"]``, as under Lightning).

Only the world's process zero writes; every process evaluates the ops on the same steps.
By default the callback is the Trainer's TensorBoard reporting too: it writes the
Trainer's logs (``on_log``, with ``TensorBoardCallback``'s tags) and the summaries through
one writer, into ``TENSORBOARD_LOGGING_DIR`` or ``<output_dir>/runs/<time>_<host>``, the
directory ``TensorBoardCallback`` would use. So one run has one writer; with
``report_to="tensorboard"`` as well, the Trainer's logs would go twice, into two runs, and
the callback says so.
"""

from __future__ import annotations

import datetime
import os
import socket
import warnings
from collections.abc import Sequence
from typing import Any

try:
    from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
except ImportError as error:  # pragma: no cover - the extra is not installed
    raise ImportError(
        "summary_hook.huggingface needs transformers: pip install 'summary_hook[huggingface]'"
    ) from error
import torch
from tensorboard.compat.proto.summary_pb2 import Summary

from summary_hook._evaluation.plans import PlanCache
from summary_hook._events.hook_writers import DiscardWriter, HookWriter
from summary_hook._events.writer_cache import SummaryWriterCache
from summary_hook._hooks.protocol import SessionRunArgs, SessionRunContext
from summary_hook._hooks.run import (
    call_after_run,
    call_before_run,
    rearm_taps,
    release_taps,
)
from summary_hook._hooks.summary_saver import SaverOptions, SummarySaverHook
from summary_hook._ops.scaffold import Scaffold
from summary_hook._ops.summary_ops import SummaryOp

__all__ = ["SummarySaverCallback"]


class _TrainerSession:
    """The hook's view of the Trainer: the global step, as the hook reads it."""

    __slots__ = ("global_step",)

    def __init__(self, step: int) -> None:
        self.global_step = step


class _LossCapture:
    """The loss the model returns in the micro-batches of a due window: a forward hook
    on the model, installed only while a due window runs."""

    def __init__(self, model: torch.nn.Module) -> None:
        self._model = model
        self._handle: Any = None
        self.loss: torch.Tensor | None = None

    def arm(self) -> None:
        self.loss = None
        if self._handle is None:
            self._handle = self._model.register_forward_hook(self._capture)

    def release(self) -> None:
        self.loss = None
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _capture(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        loss = output.get("loss") if hasattr(output, "get") else getattr(output, "loss", None)
        if isinstance(loss, torch.Tensor):
            self.loss = loss.detach()


class SummarySaverCallback(TrainerCallback):
    """``SummarySaverHook`` as a ``transformers.Trainer`` callback: save summaries every N
    optimizer steps or seconds.

    With neither ``scaffold`` nor ``summary_op``, every op registered in the default
    collection when training starts is saved. With neither ``output_dir`` nor
    ``summary_writer``, the summaries and the Trainer's logs go into the directory of the
    Trainer's TensorBoard reporting (see the module's docstring); set ``report_logs=False``
    to write the summaries alone.

    Args:
        save_steps: Save every this many optimizer steps (``state.global_step``).
        save_secs: Save every this many seconds.
        output_dir: Directory for the event file, or an fsspec URL.
        summary_writer: A writer to use instead (as for ``SummarySaverHook``).
        scaffold: A :class:`Scaffold` whose ``summary_op`` is used.
        summary_op: A summary op or a list of them.
        hparams: Hyperparameters for TensorBoard's HParams dashboard (as for
            ``SummarySaverHook``).
        hparam_metrics: The scalar tags shown beside them.
        report_logs: Also write the Trainer's logs (loss, learning rate, evaluation
            metrics), as ``TensorBoardCallback`` does, through the same writer.

    Raises:
        ValueError: As ``SummarySaverHook`` does.
        TypeError: If an argument has the wrong type.

    Example:
        >>> from summary_hook.huggingface import SummarySaverCallback
        >>> callback = SummarySaverCallback(save_steps=50)
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
        hparams: Any = None,
        hparam_metrics: Any = None,
        report_logs: bool = True,
    ) -> None:
        if not isinstance(report_logs, bool):
            raise TypeError(f"report_logs must be a bool, got {report_logs!r}")
        self._options = SaverOptions.checked(
            save_steps=save_steps,
            save_secs=save_secs,
            output_dir=output_dir,
            summary_writer=summary_writer,
            scaffold=scaffold,
            summary_op=summary_op,
            complete=False,  # the Trainer gives the destination, the collection the ops
            hparams=hparams,
            hparam_metrics=hparam_metrics,
        )
        self._report_logs = report_logs
        self._log_dir: str | None = None  # where this training's events go, on process zero
        self._hook: SummarySaverHook | None = None
        self._writer: HookWriter | None = None
        self._session = _TrainerSession(0)
        self._context: SessionRunContext | None = None
        self._requests: dict[int, Any] | None = None
        self._loss: _LossCapture | None = None
        self._plans = PlanCache()

    @property
    def output_dir(self) -> str | None:
        """Where the events go: the directory given, else this training's, once begun."""
        return self._log_dir if self._log_dir is not None else self._options.output_dir

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        options = self._options
        self._writer = self._rank_writer(args, state)
        scaffold = None if options.summary_op is not None else (options.scaffold or Scaffold())
        hook = SummarySaverHook(
            save_steps=options.save_steps,
            save_secs=options.save_secs,
            summary_writer=self._writer,
            scaffold=scaffold,
            summary_op=options.summary_op,
            hparams=options.hparams if state.is_world_process_zero else None,
            hparam_metrics=options.hparam_metrics,
        )
        self._hook = hook
        self._session = _TrainerSession(state.global_step)
        hook.begin()
        if scaffold is not None:
            scaffold.finalize()
        hook.after_create_session(self._session, None)
        model = kwargs.get("model")
        self._loss = _LossCapture(model) if isinstance(model, torch.nn.Module) else None
        self._plans = PlanCache()

    def on_step_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        hook = self._require_hook()
        self._session.global_step = state.global_step
        context = SessionRunContext(SessionRunArgs(None), self._session)
        self._requests = call_before_run([(0, hook)], context)
        self._context = context
        if self._requests is not None and self._loss is not None:
            self._loss.arm()

    def on_substep_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        # Not the window's last micro-batch: what it captured is not what is summarized.
        if self._requests is not None:
            rearm_taps(self._requests)
            if self._loss is not None:
                self._loss.arm()

    def on_optimizer_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        context, self._context = self._context, None
        if context is None:
            return
        loss = None if self._loss is None else self._loss.loss
        output = {} if loss is None else {"loss": loss}
        self._session.global_step = state.global_step + 1  # as the Trainer counts it next
        try:
            call_after_run(
                [(0, self._require_hook())], context, self._requests, output, self._plans
            )
        finally:
            self._requests = None
            if self._loss is not None:
                self._loss.release()
        if context.stop_requested:
            control.should_training_stop = True

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not (self._report_logs and logs and state.is_world_process_zero and self._writer):
            return
        summary = Summary()
        for key, value in logs.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                summary.value.add(tag=_log_tag(key), simple_value=float(value))
        if summary.value:
            self._writer.add_summary(summary, state.global_step)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        release_taps(self._requests)
        self._requests = self._context = None
        if self._loss is not None:
            self._loss.release()
        if self._hook is not None:
            self._session.global_step = state.global_step
            self._hook.end(self._session)
        self._plans = PlanCache()

    def _rank_writer(self, args: TrainingArguments, state: TrainerState) -> HookWriter:
        """Process zero's writer, a discarding one on the others."""
        if not state.is_world_process_zero:
            return DiscardWriter()
        options = self._options
        if options.summary_writer is not None:
            return options.summary_writer
        log_dir = options.output_dir or _default_log_dir(args)
        if (
            self._report_logs
            and options.output_dir is None
            and "tensorboard" in (args.report_to or [])
        ):
            warnings.warn(
                "SummarySaverCallback writes the Trainer's logs itself, into "
                f"{log_dir!r}; with report_to='tensorboard' they go twice, into two runs: "
                "leave report_to out (it is 'none' by default), or pass report_logs=False",
                UserWarning,
                stacklevel=3,
            )
        self._log_dir = log_dir
        return SummaryWriterCache.get(log_dir)

    def _require_hook(self) -> SummarySaverHook:
        if self._hook is None:
            raise RuntimeError("SummarySaverCallback: the Trainer has not begun training")
        return self._hook


def _default_log_dir(args: TrainingArguments) -> str:
    """Where ``TensorBoardCallback`` would write: ``TENSORBOARD_LOGGING_DIR``, else
    ``<output_dir>/runs/<Mon>DD_HH-MM-SS_<host>``, as torch's ``SummaryWriter`` names runs."""
    configured = os.getenv("TENSORBOARD_LOGGING_DIR")
    if configured:
        return os.path.expanduser(configured)
    stamp = datetime.datetime.now().strftime("%b%d_%H-%M-%S")
    return os.path.join(args.output_dir or ".", "runs", f"{stamp}_{socket.gethostname()}")


def _log_tag(key: str) -> str:
    """``TensorBoardCallback``'s tag of a log key: ``eval_loss`` is ``eval/loss``,
    ``test_...`` ``test/...``, anything else ``train/<key>``."""
    for prefix in ("eval_", "test_"):
        if key.startswith(prefix):
            return f"{prefix[:-1]}/{key[len(prefix) :]}"
    return f"train/{key}"
