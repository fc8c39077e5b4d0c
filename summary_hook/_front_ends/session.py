"""``MonitoredSession``: drives hooks around a plain PyTorch training step.

Not thread-safe: one session belongs to one training loop.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, TypeVar

from summary_hook._evaluation.plans import PlanCache
from summary_hook._events.hook_writers import flush_after_failure
from summary_hook._hooks.protocol import SessionRunArgs, SessionRunContext, SessionRunHook
from summary_hook._hooks.run import call_after_run, call_before_run, release_taps
from summary_hook._ops.scaffold import Scaffold

__all__ = ["MonitoredSession", "StepSession"]

T = TypeVar("T")

#: Runs in a row that leave a callable step where it was before the session says so.
_STUCK_RUNS = 1000
_STUCK_MESSAGE = (
    "global_step has not moved in {runs} runs (it reads {step}): each run that leaves a "
    "callable global_step where it was is a micro-batch of the next step, so nothing is "
    "evaluated or written until it moves. Pass a callable that counts optimizer steps."
)


class StepSession:
    """The session under the hooks: it owns the global step.

    Args:
        global_step: The first step (0, or the step a resumed run restarts from), or
            a callable returning the current step (for example one that counts
            optimizer steps, so gradient accumulation gives one step per update).

    Raises:
        TypeError: If ``global_step`` is neither an int nor a callable.

    Example:
        >>> session = StepSession(10)
        >>> session.advance()
        >>> session.global_step
        11
    """

    __slots__ = ("_read", "_step")

    def __init__(self, global_step: int | Callable[[], int] = 0) -> None:
        if callable(global_step):
            self._read: Callable[[], int] | None = global_step
            self._step = 0
        elif isinstance(global_step, bool) or not isinstance(global_step, int):
            raise TypeError(f"global_step must be an int or a callable, got {global_step!r}")
        else:
            self._read, self._step = None, global_step

    @property
    def global_step(self) -> int:
        """The current global step: counted by :meth:`advance`, or read from the callable."""
        return self._step if self._read is None else int(self._read())

    @property
    def reads_step(self) -> bool:
        """Whether the step is read from a callable, so a run may leave it where it was."""
        return self._read is not None

    def advance(self) -> None:
        """Count one step; a step read from a callable moves by itself."""
        if self._read is None:
            self._step += 1


class MonitoredSession:
    """Run a training step with hooks around it, as TensorFlow's ``MonitoredSession`` did.

    Construction calls ``begin()`` on each hook, finalizes the scaffold, then calls
    ``after_create_session``. :meth:`run` calls every ``before_run``, the step, then
    evaluates the summary ops hooks asked for (one host transfer) and calls every
    ``after_run``. Leaving the ``with`` block normally, or through ``StopIteration``
    (which is suppressed), calls ``end()`` on each hook. Any other exception skips
    ``end()``, as in TensorFlow, but every event writer is still flushed first.

    With ``global_step`` a callable (one that counts optimizer steps, under gradient
    accumulation), a run that leaves the step where it was is a micro-batch, not a
    step: nothing is evaluated and no ``after_run`` is called for it. The run that
    moves the step completes it: the ops that were due are evaluated then, with that
    run's output and the whole window's gradients, as Lightning does under
    ``accumulate_grad_batches``. A callable step that stays where it is for 1,000 runs
    in a row gets a ``UserWarning``.

    Args:
        hooks: Hooks, called in this order.
        scaffold: Provides the default summary op; a new :class:`Scaffold` if None.
        global_step: The first step (default 0), or a callable that reads the step.

    Raises:
        TypeError: If a hook is not a ``SessionRunHook`` or an argument has the wrong type.

    Example:
        >>> with MonitoredSession(hooks=[]) as sess:
        ...     sess.run(lambda x: x + 1, 41)
        42
    """

    def __init__(
        self,
        hooks: Iterable[SessionRunHook] = (),
        scaffold: Scaffold | None = None,
        global_step: int | Callable[[], int] = 0,
    ) -> None:
        self._hooks = list(hooks)
        for hook in self._hooks:
            if not isinstance(hook, SessionRunHook):
                raise TypeError(f"hooks must be SessionRunHook instances, got {hook!r}")
        if scaffold is not None and not isinstance(scaffold, Scaffold):
            raise TypeError(f"scaffold must be a summary_hook.Scaffold, got {scaffold!r}")
        self.scaffold = scaffold or Scaffold()
        self._session = StepSession(global_step)
        self._indexed_hooks = list(enumerate(self._hooks))
        self._should_stop = False
        self._closed = False
        self._micro_batches = 0  # runs since a callable step last moved
        self._last_fn: Callable[..., Any] | None = None
        self._last_args = SessionRunArgs(None)
        self._plans = PlanCache()
        for hook in self._hooks:
            hook.begin()
        self.scaffold.finalize()
        for hook in self._hooks:
            hook.after_create_session(self._session, None)

    @property
    def global_step(self) -> int:
        """The current global step."""
        return self._session.global_step

    def should_stop(self) -> bool:
        """Whether a hook requested a stop (or the session is closed)."""
        return self._should_stop or self._closed

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one training step ``fn(*args, **kwargs)`` with the hooks around it.

        A run that leaves a callable ``global_step`` where it was calls no
        ``after_run`` (see the class).

        Returns:
            What ``fn`` returned.

        Raises:
            RuntimeError: If called after a stop was requested or the session closed.
            TypeError: If a hook's ``before_run`` returns something other than
                ``SessionRunArgs`` or None.
            ValueError: If a hook asks for ``feed_dict`` or ``options``.
        """
        if self._should_stop or self._closed:
            raise RuntimeError("Run called even after should_stop requested.")
        if fn is not self._last_fn:  # the step function rarely changes: reuse its args
            self._last_fn, self._last_args = fn, SessionRunArgs(fn)
        session = self._session
        before = session.global_step if session.reads_step else None
        context = SessionRunContext(self._last_args, session)
        requests = call_before_run(self._indexed_hooks, context)
        try:
            output = fn(*args, **kwargs)
        except BaseException:
            release_taps(requests)
            raise
        session.advance()
        if before is not None and session.global_step == before:
            release_taps(requests)  # (the window's last micro-batch is captured)
            self._micro_batches += 1  # the run that moves the step completes it
            if self._micro_batches == _STUCK_RUNS:
                warnings.warn(_STUCK_MESSAGE.format(runs=_STUCK_RUNS, step=before), stacklevel=2)
            return output
        self._micro_batches = 0
        call_after_run(self._indexed_hooks, context, requests, output, self._plans)
        if context.stop_requested:
            self._should_stop = True
        return output

    def close(self) -> None:
        """Call ``end()`` on every hook. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        for hook in self._hooks:
            hook.end(self._session)

    def __enter__(self) -> MonitoredSession:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        if exc_type is None or issubclass(exc_type, StopIteration):
            self.close()
            return exc_type is not None
        self._closed = True  # TensorFlow skips end() here; the data is kept all the same
        flush_after_failure(exc if exc is not None else exc_type())
        return False
