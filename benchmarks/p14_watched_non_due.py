"""P14: a non-due step of a watched model: ``sh.watch`` of every parameter and
``sh.output_of`` taps on every ReLU. Eager: the same model in a session whose hook saves
them, in one whose hook saves a scalar, and in one with no hook, for 4 and 24 blocks,
timed and with the Python calls a step makes counted (exact where the timing is not);
the taps' hook calls on non-due steps counted. Compiled (a counting backend: how many
graphs it compiled, so that a graph break or a recompile would show): beside a plain
compiled model. The steps are forward passes of an MLP of 64-wide blocks."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from typing import Any

import torch

import summary_hook as sh
from benchmarks.harness import Result, median_times
from summary_hook._ops.taps import Tap


def _model(blocks: int) -> torch.nn.Module:
    torch.manual_seed(0)
    layers: list[torch.nn.Module] = []
    for _ in range(blocks):
        layers += [torch.nn.Linear(64, 64), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers)


def _watched(model: torch.nn.Module) -> list[sh.SummaryOp]:
    relus = [m for m in model if isinstance(m, torch.nn.ReLU)]
    ops = [sh.watch(model, collections=[])]
    return ops + [
        sh.histogram(f"act/{i}", sh.output_of(m), collections=[]) for i, m in enumerate(relus)
    ]


def _eager_hook_calls(model: torch.nn.Module, ops: list[sh.SummaryOp], steps: int) -> int:
    """How many times the taps' hooks run in ``steps`` non-due eager steps (after a due one)."""
    calls = []
    capture = Tap._capture

    def counted(self: Tap, *args: object) -> None:
        calls.append(1)
        capture(self, *args)

    Tap._capture = counted  # type: ignore[method-assign]
    try:
        with tempfile.TemporaryDirectory() as tmp, torch.no_grad(), _session(ops, tmp) as session:
            x = torch.randn(8, 64)
            session.run(model, x)  # due
            del calls[:]
            for _ in range(steps):
                session.run(model, x)
    finally:
        Tap._capture = capture  # type: ignore[method-assign]
    return len(calls)


def _session(ops: list[sh.SummaryOp] | None, logdir: str) -> sh.MonitoredSession:
    """A session whose hook saves ``ops`` on its first step only, or with no hook."""
    if ops is None:
        return sh.MonitoredSession(hooks=[])
    hook = sh.SummarySaverHook(save_steps=10**12, output_dir=logdir, summary_op=ops)
    return sh.MonitoredSession(hooks=[hook])


def _steps(run: sh.MonitoredSession, forward: object, x: torch.Tensor, steps: int) -> Any:
    """A function that runs ``steps`` steps of ``forward`` through ``run``."""

    def steps_of() -> None:
        for _ in range(steps):
            run.run(forward, x)

    return steps_of


def _eager_added(blocks: int, steps: int, repeats: int) -> dict[str, float]:
    """Microseconds a non-due eager step takes: one model, after a due step of each
    session, in a session whose hook saves ``sh.watch`` and the taps, in one whose hook
    saves a scalar (what watching adds: ``watch_added``), and in one with no hook."""
    model, x = _model(blocks), torch.randn(8, 64)
    loss = sh.scalar("loss", lambda out: out.sum(), collections=[])
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        # The same model in each: in eager mode a due step's taps are gone after it.
        sessions = {
            "watched": _session(_watched(model), f"{tmp}/w"),
            "scalar": _session([loss], f"{tmp}/s"),
            "bare": _session(None, f"{tmp}/b"),
        }
        for run in sessions.values():  # the first, due step; then a non-due one
            run.run(model, x)
            run.run(model, x)
        loops = {name: _steps(run, model, x, steps) for name, run in sessions.items()}
        times = median_times(loops, repeats)
        calls = {name: _python_calls(loop) / steps for name, loop in loops.items()}
        for run in sessions.values():
            run.close()
    us = {name: t / steps * 1e6 for name, t in times.items()}
    return {
        **us,
        "watch_added": us["watched"] - us["scalar"],
        "hook_added": us["scalar"] - us["bare"],
        "python_calls_per_step": calls,  # type: ignore[dict-item]
    }


def _python_calls(fn: Callable[[], object]) -> int:
    """How many Python and C functions ``fn`` calls (``sys.setprofile``): work that a
    timing on a noisy machine cannot resolve to a microsecond shows here exactly."""
    count = 0

    def profile(frame: object, event: str, arg: object) -> None:
        nonlocal count
        if event in ("call", "c_call"):
            count += 1

    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return count - 1  # (less the call of fn itself)


def measure(quick: bool, device: str) -> Result:
    blocks, steps, repeats = (4, 200, 3) if quick else (24, 2_000, 7)
    x = torch.randn(8, 64)
    eager = {n: _eager_added(n, steps, repeats) for n in ((1, blocks) if quick else (4, blocks))}
    eager_added = max(e["watch_added"] for e in eager.values())
    # A model each: a tap traced once stays installed, so no model is shared.
    eager_model, compiled_model, compiled_plain_model = (_model(blocks) for _ in range(3))
    graphs: list[object] = []

    def counting(gm: torch.fx.GraphModule, example_inputs: object) -> object:
        graphs.append(gm)
        return gm.forward

    compiled = torch.compile(compiled_model, backend=counting)
    compiled_plain = torch.compile(compiled_plain_model, backend=counting)
    eager_calls = _eager_hook_calls(eager_model, _watched(eager_model), steps)
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        sessions = {
            "compiled_watched": (_session(_watched(compiled_model), f"{tmp}/c"), compiled),
            "compiled_plain": (_session(None, f"{tmp}/q"), compiled_plain),
        }
        for run, forward in sessions.values():  # the first, due step; then a non-due one
            run.run(forward, x)
            run.run(forward, x)
        warm = len(graphs)
        loops = {name: _steps(run, forward, x, steps) for name, (run, forward) in sessions.items()}
        times = median_times(loops, repeats)
        recompiles = len(graphs) - warm
        for run, _ in sessions.values():
            run.close()
    us = {name: t / steps * 1e6 for name, t in times.items()}
    compiled_added = us["compiled_watched"] - us["compiled_plain"]
    # The timings differ by the machine's noise (about +-3 µs a step here, as between the
    # scalar and bare sessions); the calls a step makes are exact: watching adds none.
    same_calls = all(
        e["python_calls_per_step"]["watched"] == e["python_calls_per_step"]["scalar"]
        for e in eager.values()
    )
    met = (eager_added <= 2 or same_calls) and eager_calls == 0 and recompiles == 0
    by_blocks = ", ".join(
        f"{n} blocks {e['watch_added']:+.2f} µs on {e['scalar']:.0f}" for n, e in eager.items()
    )
    large = eager[blocks]
    return Result(
        "P14",
        f"non-due step, {blocks}-block MLP: watch of {2 * blocks} parameters, {blocks} taps",
        eager_added,
        "µs added (eager)",
        "≤ 2 µs added (or, below the timing noise, no call added), no hook call in eager "
        "mode; compiled: no recompile after warm-up",
        met,
        {
            "eager_us_per_step_by_blocks": eager,
            "eager_added_us": eager_added,
            "eager_same_python_calls": same_calls,
            "compiled_us_per_step": us,
            "compiled_added_us": compiled_added,
            "tap_hook_calls_on_non_due_eager_steps": eager_calls,
            "graphs_after_warm_up": warm,
            "recompiles_after_warm_up": recompiles,
        },
        f"eager, beside the same model and hook saving a scalar: {by_blocks} µs a step "
        f"(the hook itself {large['hook_added']:+.2f} µs beside none), "
        f"{large['python_calls_per_step']['watched']:.0f} Python calls a step watched and "
        f"{large['python_calls_per_step']['scalar']:.0f} not, {eager_calls} tap hook "
        f"calls in {steps} non-due steps; compiled, beside a plain compiled model with no "
        f"hook, {compiled_added:+.2f} µs ({us['compiled_plain']:.0f} µs a step), {warm} "
        f"graphs after warm-up (the watched model's due and non-due steps, the plain "
        f"model's), {recompiles} more after",
    )
