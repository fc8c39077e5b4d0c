"""The ``SessionRunHook`` protocol, with TensorFlow's names and semantics.

A session drives its hooks like this (``MonitoredSession`` in plain loops, the
Lightning adapter under a ``Trainer``)::

    for hook in hooks: hook.begin()
    scaffold.finalize()
    for hook in hooks: hook.after_create_session(session, coord)
    while not stop:
        for hook in hooks:                                   # in order
            args = hook.before_run(run_context)              # SessionRunArgs or None
        output = step_fn(...)                                # the training step
        results = evaluate(every hook's args.fetches, output)   # one host transfer
        for hook in hooks:                                   # in order, all of them
            hook.after_run(run_context, SessionRunValues(results[hook], ...))
        stop = stop or run_context.stop_requested
    for hook in hooks: hook.end(session)

``after_run`` is not called if the step or a ``before_run`` raises; ``end`` is not
called if the loop ends with an exception other than ``StopIteration``.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, runtime_checkable

__all__ = [
    "Session",
    "SessionRunArgs",
    "SessionRunContext",
    "SessionRunHook",
    "SessionRunValues",
]


@runtime_checkable
class Session(Protocol):
    """What a hook sees as ``run_context.session``: the global step, read at call time."""

    @property
    def global_step(self) -> int: ...


class SessionRunArgs(NamedTuple):
    """What a hook asks of a run: summary ops to evaluate in the same step.

    ``fetches`` is a summary op, or a list, tuple or dict of them; the hook's
    ``after_run`` receives the same structure with ``Summary`` protos. ``feed_dict``
    and ``options`` exist for TensorFlow compatibility and must stay None.
    """

    fetches: Any
    feed_dict: Any = None
    options: Any = None


class SessionRunValues(NamedTuple):
    """What a hook's ``after_run`` receives: the results of its fetches (None if it asked none)."""

    results: Any
    options: Any = None
    run_metadata: Any = None


class SessionRunContext:
    """The context of one run, shared by every hook in it.

    Args:
        original_args: The caller's request: ``SessionRunArgs(fetches=step_fn)``.
        session: The session under the hooks; ``session.global_step`` is the step.
    """

    __slots__ = ("_original_args", "_stop_requested", "session")

    def __init__(self, original_args: SessionRunArgs, session: Session) -> None:
        self._original_args = original_args
        #: The session the hooks run in; read ``session.global_step`` for the step.
        self.session = session
        self._stop_requested = False

    @property
    def original_args(self) -> SessionRunArgs:
        """The caller's arguments to ``run``."""
        return self._original_args

    @property
    def stop_requested(self) -> bool:
        """Whether a hook asked the loop to stop."""
        return self._stop_requested

    def request_stop(self) -> None:
        """Ask the loop to stop after this run; every hook's ``after_run`` still runs."""
        self._stop_requested = True


class SessionRunHook:
    """Base class of hooks: every method is a no-op, override those you need."""

    def begin(self) -> None:
        """Called once before the session is used."""

    def after_create_session(self, session: Session, coord: Any) -> None:
        """Called once the session exists (at ``on_train_start`` under Lightning).

        ``coord`` is always None: there is no TensorFlow coordinator.
        """

    def before_run(self, run_context: SessionRunContext) -> SessionRunArgs | None:
        """Called before each step; return ``SessionRunArgs`` to have ops evaluated."""
        return None

    def after_run(self, run_context: SessionRunContext, run_values: SessionRunValues) -> None:
        """Called after each step that did not raise, with the results of the fetches."""

    def end(self, session: Session) -> None:
        """Called once at the end of a loop that did not raise."""
