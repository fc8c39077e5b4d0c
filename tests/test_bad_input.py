"""Every misuse gets a clear error: the type, and a message naming the argument or tag and
showing the bad value. Values that are odd but valid (NaN, integers, bf16, ...) are written."""

from __future__ import annotations

import math
import tempfile

import numpy as np
import pytest
import torch

import summary_hook as sh
from tests.conftest import all_events, summaries_by_step

LOGDIR = tempfile.mkdtemp()


def op():
    return sh.scalar("x", lambda: 1.0, collections=[])


def evaluate_scalar(value):
    return sh.evaluate(sh.scalar("t", lambda: value, collections=[]))


def evaluate_histogram(value):
    return sh.evaluate(sh.histogram("h", lambda: value, collections=[]))


def run_with(hook_like):
    with sh.MonitoredSession(hooks=[hook_like]) as sess:
        sess.run(lambda: None)


def closed_writer_hook():
    writer = sh.FileWriter(tempfile.mkdtemp())
    writer.close()
    return sh.SummarySaverHook(save_steps=1, summary_writer=writer, summary_op=op())


def run_after_stop():
    class Stop(sh.SessionRunHook):
        def after_run(self, run_context, run_values):
            run_context.request_stop()

    with sh.MonitoredSession(hooks=[Stop()]) as sess:
        sess.run(lambda: None)
        sess.run(lambda: None)


def before_run_returning(value):
    class Hook(sh.SessionRunHook):
        def before_run(self, run_context):
            return value

    run_with(Hook())


def raising():
    raise OSError("sensor offline")


CASES = [
    # (id, call, exception, message pattern)
    ("both save_steps and save_secs",
     lambda: sh.SummarySaverHook(save_steps=1, save_secs=1, output_dir=LOGDIR, summary_op=op()),
     ValueError, r"Can not provide both every_secs and every_steps\."),
    ("neither save_steps nor save_secs",
     lambda: sh.SummarySaverHook(output_dir=LOGDIR, summary_op=op()),
     ValueError, r"Either every_secs or every_steps should be provided\."),
    ("both scaffold and summary_op",
     lambda: sh.SummarySaverHook(save_steps=1, output_dir=LOGDIR, scaffold=sh.Scaffold(), summary_op=op()),
     ValueError, r"Exactly one of scaffold or summary_op must be provided\."),
    ("neither scaffold nor summary_op",
     lambda: sh.SummarySaverHook(save_steps=1, output_dir=LOGDIR),
     ValueError, r"Exactly one of scaffold or summary_op must be provided\. \(scaffold=summary_hook\.Scaffold\(\) saves every op"),
    ("no writer",
     lambda: sh.SummarySaverHook(save_steps=1, summary_op=op()),
     ValueError, r"needs output_dir or summary_writer"),
    ("save_steps of the wrong type",
     lambda: sh.SummarySaverHook(save_steps="100", output_dir=LOGDIR, summary_op=op()),
     TypeError, r"save_steps must be a positive integer, got '100'"),
    ("save_steps of zero",
     lambda: sh.SummarySaverHook(save_steps=0, output_dir=LOGDIR, summary_op=op()),
     ValueError, r"save_steps must be a positive integer, got 0"),
    ("negative save_steps",
     lambda: sh.SummarySaverHook(save_steps=-1, output_dir=LOGDIR, summary_op=op()),
     ValueError, r"save_steps must be a positive integer, got -1"),
    ("fractional save_steps",
     lambda: sh.SummarySaverHook(save_steps=1.5, output_dir=LOGDIR, summary_op=op()),
     TypeError, r"save_steps must be a positive integer, got 1.5"),
    ("save_secs of zero",
     lambda: sh.SummarySaverHook(save_secs=0, output_dir=LOGDIR, summary_op=op()),
     ValueError, r"save_secs must be a positive, finite number of seconds, got 0"),
    ("negative save_secs",
     lambda: sh.SummarySaverHook(save_secs=-2, output_dir=LOGDIR, summary_op=op()),
     ValueError, r"save_secs must be a positive, finite number of seconds, got -2"),
    ("NaN save_secs",
     lambda: sh.SummarySaverHook(save_secs=math.nan, output_dir=LOGDIR, summary_op=op()),
     ValueError, r"save_secs must be a positive, finite number of seconds, got nan"),
    ("infinite save_secs",
     lambda: sh.SummarySaverHook(save_secs=math.inf, output_dir=LOGDIR, summary_op=op()),
     ValueError, r"save_secs must be a positive, finite number of seconds, got inf"),
    ("save_secs of the wrong type",
     lambda: sh.SummarySaverHook(save_secs="30", output_dir=LOGDIR, summary_op=op()),
     TypeError, r"save_secs must be a positive number of seconds, got '30'"),
    ("SummarySaver's save_steps of zero",
     lambda: sh.SummarySaver(save_steps=0),
     ValueError, r"save_steps must be a positive integer, got 0"),
    ("SummarySaver's NaN save_secs",
     lambda: sh.SummarySaver(save_secs=math.nan),
     ValueError, r"save_secs must be a positive, finite number of seconds, got nan"),
    ("StepCounterHook's every_n_steps of zero",
     lambda: sh.StepCounterHook(every_n_steps=0, output_dir=LOGDIR),
     ValueError, r"every_n_steps must be a positive integer, got 0"),
    ("StepCounterHook's infinite every_n_secs",
     lambda: sh.StepCounterHook(every_n_steps=None, every_n_secs=math.inf, output_dir=LOGDIR),
     ValueError, r"every_n_secs must be a positive, finite number of seconds, got inf"),
    ("summary_op that is not an op",
     lambda: sh.SummarySaverHook(save_steps=1, output_dir=LOGDIR, summary_op="loss"),
     TypeError, r"summary_op must be a summary op or a list of them, got 'loss' of type str"),
    ("summary_writer of a wrong type",
     lambda: sh.SummarySaverHook(save_steps=1, summary_writer=42, summary_op=op()),
     TypeError, r"summary_writer must be .*got 42 of type int"),
    ("empty output_dir",
     lambda: sh.SummarySaverHook(save_steps=1, output_dir="", summary_op=op()),
     ValueError, r"output_dir must be a non-empty path, got ''"),
    ("non-callable function",
     lambda: sh.scalar("x", 3.0),
     TypeError, r"summary 'x': fn must be callable, got 3.0"),
    ("function needing two arguments",
     lambda: sh.histogram("h", lambda a, b: a),
     TypeError, r"summary 'h': fn must take no argument or one"),
    ("function that raises",
     lambda: sh.evaluate(sh.scalar("sensor", raising, collections=[])),
     sh.SummaryEvaluationError, r"summary 'sensor': its function raised OSError: sensor offline"),
    ("function returning None",
     lambda: evaluate_scalar(None),
     TypeError, r"scalar 't': its function returned None; a parameter's .grad is None until"),
    ("histogram of a .grad that is None (a frozen layer)",
     lambda: sh.evaluate(sh.histogram("g", lambda: torch.nn.Linear(2, 1).weight.grad, collections=[])),
     TypeError, r"histogram 'g': its function returned None; .*\(a frozen layer, "),
    ("function returning a string",
     lambda: evaluate_scalar("0.5"),
     TypeError, r"scalar 't' must be a real number .*got '0.5' of type str"),
    ("complex tensor",
     lambda: evaluate_scalar(torch.tensor(1 + 1j)),
     TypeError, r"scalar 't' must be real, got a torch.complex64 tensor"),
    ("multi-element tensor for a scalar",
     lambda: evaluate_scalar(torch.zeros(3, 2)),
     ValueError, r"scalar 't' must have exactly one element, got a tensor of shape \(3, 2\)"),
    ("tensor on the meta device",
     lambda: evaluate_scalar(torch.empty((), device="meta")),
     ValueError, r"scalar 't' is a tensor on the meta device"),
    ("sparse tensor for a scalar",
     lambda: evaluate_scalar(torch.tensor([2.0]).to_sparse()),
     TypeError, r"scalar 't' got a torch.sparse_coo tensor of shape \(1,\); summaries take dense tensors: return its .to_dense\(\)"),
    ("sparse tensor for a histogram",
     lambda: evaluate_histogram(torch.eye(3).to_sparse()),
     TypeError, r"histogram 'h' got a torch.sparse_coo tensor of shape \(3, 3\); .*\(.coalesce\(\).values\(\) for sparse COO\)"),
    ("complex histogram",
     lambda: evaluate_histogram(torch.ones(4, dtype=torch.complex128)),
     TypeError, r"histogram 'h' must be real, got a torch.complex128 tensor"),
    ("dict for a histogram",
     lambda: evaluate_histogram({"a": 1}),
     TypeError, r"histogram 'h' got a dict \(keys 'a'\); return one of its values, such as out\['loss'\]"),
    ("Lightning's outputs dict for a scalar (lambda out: out)",
     lambda: evaluate_scalar({"loss": torch.tensor(0.5)}),
     TypeError, r"scalar 't' got a dict \(keys 'loss'\); .*a one-argument function gets the batch's outputs"),
    ("non-numeric histogram",
     lambda: evaluate_histogram(["a", "b"]),
     TypeError, r"histogram 'h' must hold real numbers, got \['a', 'b'\]"),
    ("empty tag",
     lambda: sh.scalar("", lambda: 1.0),
     ValueError, r"summary name must not be empty, got ''"),
    ("tag of only invalid characters",
     lambda: sh.scalar("///", lambda: 1.0),
     ValueError, r"summary name must not be empty, got '///'"),
    ("tag that is not a string",
     lambda: sh.scalar(None, lambda: 1.0),
     TypeError, r"summary name must be a str, got None"),
    ("repeated tag in one merge",
     lambda: sh.merge([sh.scalar("a", lambda: 1.0, collections=[]), sh.scalar("a", lambda: 2.0, collections=[])]),
     ValueError, r"duplicate tag 'a' in merged summary"),
    ("merge of a single op instead of a list",
     lambda: sh.merge(op()),
     TypeError, r"merge takes a list of summary ops, got <scalar 'x'>"),
    ("closed writer",
     lambda: run_with(closed_writer_hook()),
     RuntimeError, r"FileWriter for '.*' is closed; call reopen\(\) to write again"),
    ("run after a stop request",
     run_after_stop,
     RuntimeError, r"Run called even after should_stop requested\."),
    ("before_run returning a dict",
     lambda: before_run_returning({"summary": op()}),
     TypeError, r"Hook.before_run must return SessionRunArgs or None, got \{'summary': <scalar 'x'>\}"),
    ("before_run returning a feed_dict",
     lambda: before_run_returning(sh.SessionRunArgs(op(), feed_dict={"lr": 0.1})),
     ValueError, r"Hook.before_run asked for feed_dict=\{'lr': 0.1\}"),
    ("hook that is not a SessionRunHook",
     lambda: sh.MonitoredSession(hooks=[object()]),
     TypeError, r"hooks must be SessionRunHook instances, got <object object"),
    ("global_step of a wrong type",
     lambda: sh.MonitoredSession(global_step="0"),
     TypeError, r"global_step must be an int or a callable, got '0'"),
    ("writer option out of range",
     lambda: sh.FileWriter(LOGDIR, flush_secs=0),
     ValueError, r"flush_secs must be a positive number, got 0"),
    ("collections of a wrong type",
     lambda: sh.scalar("x", lambda: 1.0, collections=[3]),
     TypeError, r"collections must hold str names, got 3"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("call", "error", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_raises_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_numpy_save_steps_schedule_as_an_int(tmp_path):
    hook = sh.SummarySaverHook(save_steps=np.int64(5), output_dir=str(tmp_path), summary_op=op())
    with sh.MonitoredSession(hooks=[hook]) as sess:
        for _ in range(11):
            sess.run(lambda: None)
    assert sorted(summaries_by_step(str(tmp_path))) == [1, 6, 11]


def test_the_table_has_at_least_25_cases():
    assert len(CASES) >= 25


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (torch.tensor(math.nan), math.nan),
        (torch.tensor([math.inf]), math.inf),
        (torch.tensor(7, dtype=torch.int32), 7.0),
        (torch.tensor(False), 0.0),
        (torch.tensor(0.5, dtype=torch.bfloat16), 0.5),
        (torch.tensor(0.25, dtype=torch.float16), 0.25),
        (torch.tensor(3.0, requires_grad=True), 3.0),
    ],
    ids=["nan", "inf", "int32", "bool", "bf16", "fp16", "requires_grad"],
)
def test_odd_but_valid_scalars_are_written_as_they_are(tmp_path, value, expected):
    hook = sh.SummarySaverHook(
        save_steps=1,
        output_dir=str(tmp_path),
        summary_op=sh.scalar("v", lambda: value, collections=[]),
    )
    run_with(hook)
    sh.SummaryWriterCache.get(str(tmp_path)).flush()
    (written,) = [v.simple_value for e in all_events(str(tmp_path)) for v in e.summary.value]
    assert (math.isnan(written) and math.isnan(expected)) or written == expected


def test_empty_tensor_histogram_is_written_not_an_error(tmp_path):
    hook = sh.SummarySaverHook(
        save_steps=1,
        output_dir=str(tmp_path),
        summary_op=sh.histogram("h", lambda: torch.empty(0, 3), collections=[]),
    )
    run_with(hook)
    sh.SummaryWriterCache.get(str(tmp_path)).flush()
    (histo,) = [v.histo for e in all_events(str(tmp_path)) for v in e.summary.value]
    assert histo.num == 0
