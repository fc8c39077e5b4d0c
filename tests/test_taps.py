"""sh.output_of: a module's output captured on due steps only, eager and compiled."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
import torch

import summary_hook as sh
from tests.conftest import accumulator


def net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))


def inputs(step: int) -> torch.Tensor:
    return torch.randn(5, 4, generator=torch.Generator().manual_seed(step))


def run(model, op, logdir, steps=7, save_steps=3, step_fn=None):
    hook = sh.SummarySaverHook(save_steps=save_steps, output_dir=logdir, summary_op=op)
    with sh.MonitoredSession(hooks=[hook]) as sess:
        for i in range(steps):
            sess.run(step_fn or (lambda x: model(x)), inputs(i))
    sh.SummaryWriterCache.get(logdir).flush()
    return accumulator(logdir)


def test_output_is_captured_on_due_steps_only_and_equals_the_modules(tmp_path, hook_calls):
    model = net()
    acc = run(
        model, sh.histogram("act/relu", sh.output_of(model[1]), collections=[]), str(tmp_path)
    )
    written = acc.Histograms("act/relu")
    assert [e.step for e in written] == [1, 4, 7]
    assert hook_calls == [True, True, True]  # no hook call on a non-due step
    for event in written:
        expected = torch.relu(model[0](inputs(event.step - 1))).detach().numpy()
        h = event.histogram_value
        assert (h.num, h.min, h.max) == (expected.size, expected.min(), expected.max())
        assert h.sum == pytest.approx(float(expected.astype(np.float64).sum()), rel=1e-6)


def test_nothing_captured_outlives_the_step(tmp_path):
    model = net()
    tap = sh.output_of(model[1])
    seen = []

    class Look(sh.SessionRunHook):
        def after_run(self, run_context, run_values):
            seen.append(list(tap.captured))

    outputs = []

    def step(x):
        out = model(x)
        outputs.append(weakref.ref(out))
        return out

    hook = sh.SummarySaverHook(
        save_steps=1, output_dir=str(tmp_path), summary_op=sh.histogram("a", tap, collections=[])
    )
    with sh.MonitoredSession(hooks=[hook, Look()]) as sess:
        for i in range(3):
            sess.run(step, inputs(i))
    gc.collect()
    assert seen == [[], [], []]  # released before the hooks' after_run
    assert all(ref() is None for ref in outputs)


def test_a_module_called_twice_in_a_step_counts_each_call_once(tmp_path):
    shared = torch.nn.Linear(4, 4)
    op = sh.histogram("act/shared", sh.output_of(shared), collections=[])

    def step(x):
        return shared(shared(x))

    acc = run(shared, op, str(tmp_path), steps=1, step_fn=step)
    (event,) = acc.Histograms("act/shared")
    assert event.histogram_value.num == 2 * 5 * 4


def test_under_accumulation_the_windows_last_micro_batch_is_captured(tmp_path):
    model = net()
    state = {"runs": 0, "steps": 0, "last": None}

    def micro_batch(x):
        state["runs"] += 1
        state["steps"] += state["runs"] % 2 == 0
        state["last"] = x
        return model(x)

    op = sh.histogram("act/relu", sh.output_of(model[1]), collections=[])
    hook = sh.SummarySaverHook(save_steps=1, output_dir=str(tmp_path), summary_op=op)
    with sh.MonitoredSession(hooks=[hook], global_step=lambda: state["steps"]) as sess:
        sess.run(micro_batch, inputs(0))
        sess.run(micro_batch, inputs(1))
    sh.SummaryWriterCache.get(str(tmp_path)).flush()
    (event,) = accumulator(str(tmp_path)).Histograms("act/relu")
    expected = torch.relu(model[0](inputs(1))).sum().item()
    assert event.step == 1 and event.histogram_value.num == 5 * 8
    assert event.histogram_value.sum == pytest.approx(expected, rel=1e-6)


def test_a_step_that_raises_releases_the_capture(tmp_path):
    model = net()
    tap = sh.output_of(model[1])
    hook = sh.SummarySaverHook(
        save_steps=1, summary_writer=sh.FileWriter(str(tmp_path)),
        summary_op=sh.histogram("a", tap, collections=[]),
    )  # fmt: skip

    def failing(x):
        model(x)
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"), sh.MonitoredSession(hooks=[hook]) as sess:
        sess.run(failing, inputs(0))
    assert tap.captured == [] and not tap.armed


def test_a_module_that_did_not_run_names_itself():
    tap = sh.output_of(torch.nn.Linear(2, 2))
    with pytest.raises(
        sh.SummaryEvaluationError, match=r"sh.output_of.s tap on Linear captured nothing"
    ):
        sh.evaluate(sh.histogram("a", tap, collections=[]))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: sh.output_of("fc"), r"output_of takes a torch.nn.Module, got 'fc'"),
        (lambda: sh.output_of(torch.nn.ReLU(), permanent=1), r"permanent must be a bool, got 1"),
    ],
)
def test_output_of_raises_on_bad_input(call, message):
    with pytest.raises(TypeError, match=message):
        call()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("backend", ["counting", "inductor"])
def test_a_compiled_model_is_captured_on_every_due_step_with_two_graphs(tmp_path, backend):
    graphs = []

    def counting(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    model = net()
    compiled = torch.compile(model, backend=counting if backend == "counting" else "inductor")
    tap = sh.output_of(model[1])
    acc = run(
        model,
        sh.histogram("act/relu", tap, collections=[]),
        str(tmp_path),
        steps=10,
        step_fn=lambda x: compiled(x),
    )
    written = acc.Histograms("act/relu")
    assert [e.step for e in written] == [1, 4, 7, 10]
    for event in written:
        expected = torch.relu(model[0](inputs(event.step - 1))).detach().numpy()
        h = event.histogram_value
        assert (h.num, h.min, h.max) == pytest.approx(
            (expected.size, expected.min(), expected.max()), rel=1e-6
        )
    if backend == "counting":
        assert len(graphs) == 2  # one for due steps, one for the others: no break, no recompile
