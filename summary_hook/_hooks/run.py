"""One run of the hooks, as every front end drives it: ``before_run`` in order, the step,
the requested ops evaluated with its output (one host transfer), ``after_run`` in order.

``MonitoredSession`` and the Lightning callback both call these, so a hook sees the same
protocol, and gets the same errors, under either.
"""

from __future__ import annotations

from typing import Any

from summary_hook._evaluation.evaluate import evaluate_with, summary_ops_in
from summary_hook._evaluation.plans import PlanCache
from summary_hook._hooks.protocol import (
    SessionRunArgs,
    SessionRunContext,
    SessionRunHook,
    SessionRunValues,
)

__all__ = ["call_after_run", "call_before_run", "close_taps", "rearm_taps", "release_taps"]

_NO_RESULTS = SessionRunValues(None)


def call_before_run(
    indexed_hooks: list[tuple[int, SessionRunHook]], context: SessionRunContext
) -> dict[int, Any] | None:
    """Call every hook's ``before_run`` in order; return their fetches by position, or None.

    The :func:`~summary_hook.output_of` taps of the ops asked for are armed, to capture
    the step's outputs; :func:`call_after_run` (or :func:`release_taps`, when the step
    goes no further) releases them. Shared by every front end, so a hook sees the same
    protocol everywhere.

    Raises:
        TypeError: If a ``before_run`` returns something other than ``SessionRunArgs`` or None.
        ValueError: If a hook asks for ``feed_dict`` or ``options``.
    """
    requests: dict[int, Any] | None = None
    for index, hook in indexed_hooks:
        request = hook.before_run(context)
        if request is not None and (fetches := _fetches_of(hook, request)) is not None:
            if requests is None:
                requests = {}
            requests[index] = fetches
    if requests is not None:
        for tap in _taps(requests):
            tap.arm()
    return requests


def release_taps(requests: dict[int, Any] | None) -> None:
    """Let go of what the taps of ``requests`` captured (a step that raised, or one that
    is not a step after all)."""
    if requests is not None:
        for tap in _taps(requests):
            tap.release()


def rearm_taps(requests: dict[int, Any] | None) -> None:
    """Let go of what the taps of ``requests`` captured so far and capture afresh: the
    micro-batch that ran is not the one its window's summaries describe."""
    if requests is not None:
        for tap in _taps(requests):
            tap.release()
            tap.arm()


def close_taps(requests: dict[int, Any] | None) -> None:
    """The step's backward pass begins: its taps capture nothing more (a recomputed
    forward, under activation checkpointing, is not counted twice)."""
    if requests is not None:
        for tap in _taps(requests):
            tap.close()


def _taps(requests: dict[int, Any]) -> list[Any]:
    return [
        tap for fetches in requests.values() for op in summary_ops_in(fetches) for tap in op.taps
    ]


def call_after_run(
    indexed_hooks: list[tuple[int, SessionRunHook]],
    context: SessionRunContext,
    requests: dict[int, Any] | None,
    output: Any,
    plans: PlanCache,
) -> None:
    """Evaluate the requested fetches with the step's ``output`` (one host transfer), then
    call every hook's ``after_run`` in order; hooks that asked for nothing get None.

    ``plans`` is the calling session's, so evaluation plans live no longer than it.
    """
    if requests is None:  # a step no hook asked anything of: the common case
        for _, hook in indexed_hooks:
            hook.after_run(context, _NO_RESULTS)
        return
    try:
        results = evaluate_with(requests, output, plans, resolve=False)
    finally:
        release_taps(requests)  # nothing captured outlives the step
    for index, hook in indexed_hooks:
        hook.after_run(
            context, SessionRunValues(results[index]) if index in results else _NO_RESULTS
        )


def _fetches_of(hook: SessionRunHook, request: object) -> Any:
    if not isinstance(request, SessionRunArgs):
        raise TypeError(
            f"{type(hook).__name__}.before_run must return SessionRunArgs or None, got {request!r}"
        )
    if request.feed_dict is not None or request.options is not None:
        raise ValueError(
            f"{type(hook).__name__}.before_run asked for feed_dict={request.feed_dict!r} "
            f"and options={request.options!r}; PyTorch steps take no feeds or run options"
        )
    return request.fetches
