"""P14: a non-due step of a watched model: ``sh.watch`` of every parameter and
``sh.output_of`` taps on every ReLU, beside the same model unwatched, eager and under
``torch.compile`` (a counting backend: how many graphs it compiled, so that a graph break
or a recompile would show). The steps are forward passes of a 24-block MLP; the hook
calls of the taps on non-due steps are counted."""

from __future__ import annotations

import tempfile

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
        with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
            hook = sh.SummarySaverHook(save_steps=10**12, output_dir=tmp, summary_op=ops)
            with sh.MonitoredSession(hooks=[hook]) as session:
                x = torch.randn(8, 64)
                session.run(model, x)  # due
                del calls[:]
                for _ in range(steps):
                    session.run(model, x)
    finally:
        Tap._capture = capture  # type: ignore[method-assign]
    return len(calls)


def measure(quick: bool, device: str) -> Result:
    blocks, steps, repeats = (4, 200, 3) if quick else (24, 2_000, 7)
    x = torch.randn(8, 64)
    # A model each: a tap traced once stays installed, so no model is shared.
    eager, plain, compiled_model, compiled_plain_model = (_model(blocks) for _ in range(4))
    graphs: list[object] = []

    def counting(gm: torch.fx.GraphModule, example_inputs: object) -> object:
        graphs.append(gm)
        return gm.forward

    compiled = torch.compile(compiled_model, backend=counting)
    compiled_plain = torch.compile(compiled_plain_model, backend=counting)
    eager_calls = _eager_hook_calls(eager, _watched(eager), steps)
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():

        def session(ops: list[sh.SummaryOp] | None, name: str) -> sh.MonitoredSession:
            if ops is None:
                return sh.MonitoredSession(hooks=[])
            hook = sh.SummarySaverHook(
                save_steps=10**12, output_dir=f"{tmp}/{name}", summary_op=ops
            )
            return sh.MonitoredSession(hooks=[hook])

        sessions = {
            "eager_watched": (session(_watched(eager), "e"), eager),
            "eager_plain": (session(None, "p"), plain),
            "compiled_watched": (session(_watched(compiled_model), "c"), compiled),
            "compiled_plain": (session(None, "q"), compiled_plain),
        }
        for run, forward in sessions.values():  # the first, due step; then a non-due one
            run.run(forward, x)
            run.run(forward, x)
        warm = len(graphs)

        def loop(run: sh.MonitoredSession, forward: object) -> object:
            def steps_of() -> None:
                for _ in range(steps):
                    run.run(forward, x)

            return steps_of

        times = median_times({name: loop(*pair) for name, pair in sessions.items()}, repeats)
        recompiles = len(graphs) - warm
        for run, _ in sessions.values():
            run.close()
    us = {name: t / steps * 1e6 for name, t in times.items()}
    eager_added = us["eager_watched"] - us["eager_plain"]
    compiled_added = us["compiled_watched"] - us["compiled_plain"]
    met = eager_added <= 2 and eager_calls == 0 and recompiles == 0
    return Result(
        "P14",
        f"non-due step, {blocks}-block MLP: watch of {2 * blocks} parameters, {blocks} taps",
        eager_added,
        "µs added (eager)",
        "≤ 2 µs added, no hook call in eager mode; compiled: no recompile after warm-up",
        met,
        {
            "us_per_step": us,
            "eager_added_us": eager_added,
            "compiled_added_us": compiled_added,
            "tap_hook_calls_on_non_due_eager_steps": eager_calls,
            "graphs_after_warm_up": warm,
            "recompiles_after_warm_up": recompiles,
        },
        f"eager +{eager_added:.2f} µs ({us['eager_plain']:.0f} µs a step), {eager_calls} tap "
        f"hook calls in {steps} non-due steps; compiled +{compiled_added:.2f} µs "
        f"({us['compiled_plain']:.0f} µs a step), {warm} graphs after warm-up (the watched "
        f"model's due and non-due steps, the plain model's), {recompiles} more after",
    )
