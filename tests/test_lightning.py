"""SummarySaver and HookCallback on real Lightning Trainer runs (tiny model, CPU)."""

from __future__ import annotations

import copy
import glob
import os
import pickle
import threading
import time
from typing import Any
from unittest import mock

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

import summary_hook as sh
from tests.conftest import Counter, accumulator, all_events, event_files, summaries_by_step
from tests.contract import MOCK_START_TIME, SCENARIOS, Scenario
from tests.lightning_helpers import TinyModel, make_loader, make_trainer
from tests.test_summary_saver_hook import make_ops


class Tick(L.Callback):
    """Moves the mocked clock after each batch, after SummarySaver has run."""

    def __init__(self, mock_time, seconds):
        self.mock_time, self.seconds = mock_time, seconds

    def on_train_batch_end(self, *args):
        self.mock_time.return_value += self.seconds


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_lightning_matches_golden_table(scenario: Scenario, tmp_path):
    ops, counter = make_ops(scenario)
    with mock.patch.object(time, "time") as mock_time:
        mock_time.return_value = MOCK_START_TIME
        saver = sh.SummarySaver(
            save_steps=scenario.save_steps,
            save_secs=scenario.save_secs,
            output_dir=str(tmp_path),
            summary_op=ops,
        )
        trainer = make_trainer(
            str(tmp_path),
            max_steps=scenario.runs,
            callbacks=[saver, Tick(mock_time, scenario.tick)],
        )
        trainer.fit(TinyModel(), make_loader())
    assert summaries_by_step(str(tmp_path)) == scenario.expected
    assert counter.calls == len(scenario.expected)


def test_default_collection_is_resolved_when_training_starts(tmp_path):
    class Registering(TinyModel):
        def __init__(self):
            super().__init__()
            sh.scalar("train/loss", lambda out: out["loss"])
            sh.histogram("weights/net", lambda: self.net.weight)

    saver = sh.SummarySaver(save_steps=2)
    trainer = make_trainer(str(tmp_path), max_steps=5, callbacks=[saver])
    trainer.fit(Registering(), make_loader())
    logdir = os.path.join(str(tmp_path), "summaries", "version_0")  # logger=False
    assert saver.output_dir == logdir
    acc = accumulator(logdir)
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 3, 5]
    assert [e.step for e in acc.Histograms("weights/net")] == [1, 3, 5]


def test_steps_per_sec_adds_a_step_counter_on_the_same_schedule_and_file(tmp_path):
    sh.scalar("train/loss", lambda out: out["loss"])
    saver = sh.SummarySaver(save_steps=5, output_dir=str(tmp_path), steps_per_sec=True)
    trainer = make_trainer(str(tmp_path), max_steps=20, callbacks=[saver])
    trainer.fit(TinyModel(), make_loader())
    assert len(event_files(str(tmp_path))) == 1
    acc = accumulator(str(tmp_path))
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 6, 11, 16]
    rates = acc.Scalars("global_step/sec")
    assert [e.step for e in rates] == [6, 11, 16]  # the first trigger only arms the timer
    assert all(e.value > 0 for e in rates)


def test_outputs_reach_one_argument_functions(tmp_path):
    seen = []
    ops = [sh.scalar("extra", lambda out: seen.append(sorted(out)) or out["extra"], collections=[])]
    trainer = make_trainer(
        str(tmp_path),
        max_steps=3,
        callbacks=[sh.SummarySaver(save_steps=1, output_dir=str(tmp_path), summary_op=ops)],
    )
    trainer.fit(TinyModel(returns="dict"), make_loader())
    assert seen == [["extra", "loss"]] * 3
    assert summaries_by_step(str(tmp_path)) == {
        1: {"extra": 0.0},
        2: {"extra": 1.0},
        3: {"extra": 2.0},
    }


def test_nothing_is_evaluated_outside_training_batches(tmp_path):
    counter = Counter()
    saver = sh.SummarySaver(
        save_steps=1, output_dir=str(tmp_path), summary_op=sh.scalar("x", counter, collections=[])
    )
    trainer = make_trainer(
        str(tmp_path),
        max_steps=6,
        val_check_interval=2,
        num_sanity_val_steps=2,
        limit_val_batches=2,
        callbacks=[saver],
    )
    model = TinyModel()
    trainer.fit(model, make_loader(), make_loader(batches=4))
    trainer.validate(model, make_loader(batches=4))
    assert counter.calls == 6
    assert sorted(summaries_by_step(str(tmp_path))) == [1, 2, 3, 4, 5, 6]


def test_accumulation_writes_once_per_optimizer_step_with_accumulated_gradient(tmp_path):
    captured = {}
    model = TinyModel()
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    ops = [
        sh.scalar("calls", Counter(), collections=[]),
        sh.histogram("grads/net", lambda: model.net.weight.grad, collections=[]),
        sh.scalar(
            "grad_sum",
            lambda: captured.setdefault("g", model.net.weight.grad.clone()).sum(),
            collections=[],
        ),
    ]
    saver = sh.SummarySaver(save_steps=1, output_dir=str(tmp_path), summary_op=sh.merge(ops))
    trainer = make_trainer(str(tmp_path), max_steps=3, accumulate_grad_batches=4, callbacks=[saver])
    trainer.fit(model, make_loader())
    table = summaries_by_step(str(tmp_path))
    assert sorted(table) == [1, 2, 3]
    assert [table[s]["calls"] for s in (1, 2, 3)] == [1.0, 2.0, 3.0]

    # The first window's gradient, accumulated by hand from the initial weights.
    reference = TinyModel()
    reference.load_state_dict(initial)
    for x, y in list(make_loader())[:4]:
        (torch.nn.functional.mse_loss(reference.net(x), y) / 4).backward()
    expected = reference.net.weight.grad
    assert torch.allclose(captured["g"], expected, atol=1e-6)
    histo = next(e for e in all_events(str(tmp_path)) if e.step == 1 and e.HasField("summary"))
    histo = next(v.histo for v in histo.summary.value if v.tag == "grads/net")
    assert histo.sum == pytest.approx(float(expected.sum()), abs=1e-6)
    assert histo.sum_squares == pytest.approx(float((expected.double() ** 2).sum()), rel=1e-6)


@pytest.mark.parametrize("how", ["training_step", "callback"])
def test_exception_loses_nothing(tmp_path, how):
    class Failing(L.Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == 7:
                raise RuntimeError("callback boom")

    saver = sh.SummarySaver(
        save_steps=1, output_dir=str(tmp_path), summary_op=sh.scalar("x", Counter(), collections=[])
    )
    model = TinyModel(fail_at_step=7 if how == "training_step" else None)
    trainer = make_trainer(
        str(tmp_path), max_steps=20, callbacks=[saver] + ([Failing()] if how == "callback" else [])
    )
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(model, make_loader())
    # The shared writer is still open (end() never ran): only the flush on failure saved these.
    assert sh.SummaryWriterCache.get(str(tmp_path)).path is not None
    assert sorted(summaries_by_step(str(tmp_path))) == list(range(1, 8))


def test_keyboard_interrupt_loses_nothing(tmp_path):
    class Interrupt(L.Callback):
        def on_train_batch_start(self, trainer, *args):
            if trainer.global_step == 4:
                raise KeyboardInterrupt

    saver = sh.SummarySaver(
        save_steps=1, output_dir=str(tmp_path), summary_op=sh.scalar("x", Counter(), collections=[])
    )
    trainer = make_trainer(str(tmp_path), max_steps=20, callbacks=[saver, Interrupt()])
    with pytest.raises(SystemExit) as info:
        trainer.fit(TinyModel(), make_loader())
    assert info.value.code == 1
    assert sorted(summaries_by_step(str(tmp_path))) == [1, 2, 3, 4]


def test_request_stop_sets_should_stop(tmp_path):
    class StopAt(sh.SessionRunHook):
        def after_run(self, run_context, run_values):
            if run_context.session.global_step >= 5:
                run_context.request_stop()

    trainer = make_trainer(str(tmp_path), max_steps=100, callbacks=[sh.HookCallback([StopAt()])])
    trainer.fit(TinyModel(), make_loader())
    assert trainer.global_step == 5


def test_hook_callback_runs_hooks_in_protocol_order(tmp_path):
    log = []

    class Recorder(sh.SessionRunHook):
        def begin(self):
            log.append("begin")

        def after_create_session(self, session, coord):
            log.append(f"after_create_session({session.global_step})")

        def before_run(self, run_context):
            log.append(f"before_run({run_context.session.global_step})")

        def after_run(self, run_context, run_values):
            log.append(f"after_run({run_context.session.global_step})")

        def end(self, session):
            log.append(f"end({session.global_step})")

    trainer = make_trainer(str(tmp_path), max_steps=2, callbacks=[sh.HookCallback([Recorder()])])
    trainer.fit(TinyModel(), make_loader())
    assert log == [
        "begin",
        "after_create_session(0)",
        "before_run(0)",
        "after_run(1)",
        "before_run(1)",
        "after_run(2)",
        "end(2)",
    ]


def test_tensorboard_logger_metrics_and_summaries_share_one_run(tmp_path):
    class Logging(TinyModel):
        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            self.log("lightning/loss", loss)
            return loss

    logger = TensorBoardLogger(str(tmp_path), name="exp")
    saver = sh.SummarySaver(
        save_steps=2, summary_op=sh.scalar("hook/loss", lambda out: out["loss"], collections=[])
    )
    trainer = make_trainer(
        str(tmp_path), max_steps=6, logger=logger, log_every_n_steps=1, callbacks=[saver]
    )
    trainer.fit(Logging(), make_loader())
    assert saver.output_dir == trainer.log_dir == logger.log_dir
    acc = accumulator(logger.log_dir)
    assert {"lightning/loss", "hook/loss"} <= set(acc.Tags()["scalars"])
    assert [e.step for e in acc.Scalars("hook/loss")] == [1, 3, 5]


def test_logger_experiment_as_summary_writer(tmp_path):
    logger = TensorBoardLogger(str(tmp_path), name="exp")
    saver = sh.SummarySaver(
        save_steps=1,
        summary_writer=logger.experiment,
        summary_op=sh.scalar("hook/x", Counter(), collections=[]),
    )
    trainer = make_trainer(str(tmp_path), max_steps=3, logger=logger, callbacks=[saver])
    trainer.fit(TinyModel(), make_loader())
    logger.experiment.flush()
    assert summaries_by_step(logger.log_dir) == {
        1: {"hook/x": 1.0},
        2: {"hook/x": 2.0},
        3: {"hook/x": 3.0},
    }


def checkpointed_fit(root, logdir, max_steps, ckpt_path=None, offset=0.0):
    """Fit with two SummarySavers and a checkpoint every 10 steps; returns the trainer."""
    sh.SummaryWriterCache.clear()  # a new process in real life
    model = TinyModel()
    fast = sh.SummarySaver(
        save_steps=1,
        output_dir=logdir,
        summary_op=sh.scalar("fast", lambda: offset + model.global_step, collections=[]),
    )
    slow = sh.SummarySaver(
        save_steps=5,
        output_dir=logdir + "_slow",
        summary_op=sh.scalar("slow", lambda: offset + model.global_step, collections=[]),
    )
    checkpoints = ModelCheckpoint(
        dirpath=os.path.join(root, "ckpt"), every_n_train_steps=10, save_top_k=-1, filename="{step}"
    )
    trainer = make_trainer(
        root, max_steps=max_steps, enable_checkpointing=True, callbacks=[fast, slow, checkpoints]
    )
    trainer.fit(model, make_loader(batches=100), ckpt_path=ckpt_path)
    return trainer


def test_resume_purges_stale_points_with_two_savers(tmp_path):
    root, logdir = str(tmp_path), str(tmp_path / "events")
    checkpointed_fit(root, logdir, max_steps=30, offset=1000.0)  # "dies" after step 30
    (ckpt,) = glob.glob(os.path.join(root, "ckpt", "step=20*.ckpt"))
    with pytest.warns(UserWarning, match="exists and is not empty"):  # the resumed run's own
        trainer = checkpointed_fit(root, logdir, max_steps=40, ckpt_path=ckpt)
    assert trainer.global_step == 40
    sh.SummaryWriterCache.clear()
    assert len(event_files(logdir)) == 2

    points = [(e.step, e.value) for e in accumulator(logdir).Scalars("fast")]
    assert [s for s, _ in points] == list(range(1, 41))
    assert all(v >= 1000 for s, v in points if s <= 20) and all(
        v < 1000 for s, v in points if s > 20
    )
    slow = [(e.step, e.value) for e in accumulator(logdir + "_slow").Scalars("slow")]
    assert [s for s, _ in slow] == [1, 6, 11, 16, 21, 26, 31, 36]
    assert all(v < 1000 for s, v in slow if s > 20)


def test_two_savers_of_one_type_do_not_clash_on_state_key():
    a = sh.SummarySaver(save_steps=1, summary_op=sh.scalar("a", lambda: 1.0, collections=[]))
    b = sh.SummarySaver(save_steps=5, summary_op=sh.scalar("b", lambda: 1.0, collections=[]))
    assert a.state_key != b.state_key
    L.Trainer(callbacks=[a, b], logger=False, enable_progress_bar=False)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"save_steps": 1, "save_secs": 1}, "Can not provide both every_secs and every_steps."),
        ({}, "Either every_secs or every_steps should be provided."),
        (
            {"save_steps": 1, "scaffold": sh.Scaffold(), "summary_op": "x"},
            "Exactly one of scaffold or summary_op must be provided.",
        ),
        ({"save_steps": 1, "output_dir": ""}, "output_dir must be a non-empty path, got ''"),
    ],
)
def test_summary_saver_raises_with_tensorflow_messages(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sh.SummarySaver(**kwargs)


def test_manual_optimization_with_two_optimizers_counts_every_step(tmp_path):
    class TwoOptimizers(TinyModel):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False
            self.head = torch.nn.Linear(4, 1)

        def training_step(self, batch, batch_idx):
            first, second = self.optimizers()
            x, y = batch
            for optimizer, net in ((first, self.net), (second, self.head)):
                loss = torch.nn.functional.mse_loss(net(x), y)
                optimizer.zero_grad()
                self.manual_backward(loss)
                optimizer.step()

        def configure_optimizers(self):
            return [
                torch.optim.SGD(self.net.parameters(), lr=0.01),
                torch.optim.SGD(self.head.parameters(), lr=0.01),
            ]

    saver = sh.SummarySaver(
        save_steps=1, output_dir=str(tmp_path), summary_op=sh.scalar("x", Counter(), collections=[])
    )
    trainer = make_trainer(str(tmp_path), max_steps=6, callbacks=[saver])
    trainer.fit(TwoOptimizers(), make_loader())
    assert sorted(summaries_by_step(str(tmp_path))) == [2, 4, 6]


def test_hook_protocol_errors_are_the_same_under_lightning(tmp_path):
    class Bad(sh.SessionRunHook):
        def before_run(self, run_context):
            return {"summary": 1}

    trainer = make_trainer(str(tmp_path), max_steps=2, callbacks=[sh.HookCallback([Bad()])])
    with pytest.raises(TypeError, match=r"Bad.before_run must return SessionRunArgs or None"):
        trainer.fit(TinyModel(), make_loader())


@pytest.mark.parametrize("logger", [False, "tensorboard"])
def test_two_savers_of_one_trainer_share_its_run_and_its_file(tmp_path, logger):
    fast = sh.SummarySaver(save_steps=1, summary_op=sh.scalar("fast", Counter(), collections=[]))
    slow = sh.SummarySaver(save_steps=3, summary_op=sh.scalar("slow", Counter(), collections=[]))
    trainer = make_trainer(
        str(tmp_path),
        max_steps=6,
        callbacks=[fast, slow],
        logger=TensorBoardLogger(str(tmp_path)) if logger else False,
    )
    trainer.fit(TinyModel(), make_loader())
    run_dir = fast.output_dir
    assert (
        run_dir
        == slow.output_dir
        == os.path.join(str(tmp_path), "lightning_logs" if logger else "summaries", "version_0")
    )
    assert len(event_files(run_dir)) == 1
    acc = accumulator(run_dir)
    assert [e.step for e in acc.Scalars("fast")] == [1, 2, 3, 4, 5, 6]
    assert [e.step for e in acc.Scalars("slow")] == [1, 4]


def test_a_writer_the_saver_opened_is_closed_when_the_fit_ends(tmp_path):
    saver = sh.SummarySaver(save_steps=1, summary_op=sh.scalar("x", Counter(), collections=[]))
    trainer = make_trainer(str(tmp_path), max_steps=2, callbacks=[saver])
    threads = threading.active_count()
    trainer.fit(TinyModel(), make_loader())
    assert threading.active_count() <= threads  # its writer thread has ended
    assert summaries_by_step(saver.output_dir) == {1: {"x": 1.0}, 2: {"x": 2.0}}


def constant_one() -> float:
    """A summary function that can be pickled: module-level, no closure."""
    return 1.0


def test_a_pickled_saver_takes_the_default_collection_along():
    # What a spawn-based strategy does: pickle the saver, unpickle it in a process whose
    # collections are empty, and call setup there before the module's own.
    sh.scalar("portable", constant_one)
    saver = sh.SummarySaver(save_steps=1)
    data = pickle.dumps(saver)
    sh.clear_collection()
    spawned = pickle.loads(data)
    spawned.setup(None, None, "fit")
    assert [op.tags for op in sh.get_collection()] == [("portable",)]


def test_a_spawned_process_that_watches_again_replaces_the_carried_op():
    # sh.watch in __init__ (main process) and again in setup() (every process): one op.
    net = torch.nn.Linear(2, 1)
    sh.watch(net)
    data = pickle.dumps(sh.SummarySaver(save_steps=1))
    sh.clear_collection()
    pickle.loads(data).setup(None, None, "fit")
    sh.watch(net)
    assert len(sh.get_collection()) == 1


@pytest.mark.parametrize("explicit", [False, True])
def test_pickling_a_saver_whose_ops_cannot_cross_names_them_and_says_what_to_do(explicit):
    op = sh.scalar("local", lambda: 1.0, collections=[] if explicit else None)
    saver = sh.SummarySaver(save_steps=1, summary_op=op if explicit else None)
    what = "the summary_op or scaffold given" if explicit else r"the summary ops .* \('local'\)"
    with pytest.raises(
        TypeError, match=rf"strategy='ddp_spawn'.*{what}.*in the LightningModule's setup\(\)"
    ):
        pickle.dumps(saver)


def test_a_copied_saver_keeps_ops_that_cannot_be_pickled():
    op = sh.scalar("local", lambda: 1.0, collections=[])
    saver = sh.SummarySaver(save_steps=3, summary_op=op)
    copied = copy.deepcopy(saver)
    assert copied.state_key == saver.state_key and copied is not saver


def test_fast_dev_run_evaluates_the_ops_and_writes_nothing(tmp_path):
    counter = Counter()
    sh.scalar("x", counter)
    trainer = make_trainer(str(tmp_path), fast_dev_run=2, callbacks=[sh.SummarySaver(save_steps=1)])
    trainer.fit(TinyModel(), make_loader())
    assert counter.calls == 2
    assert os.listdir(tmp_path) == []  # no summaries/ directory, no event file


def test_a_saver_with_nothing_to_save_says_so(tmp_path):
    trainer = make_trainer(str(tmp_path), max_steps=3, callbacks=[sh.SummarySaver(save_steps=1)])
    with pytest.warns(
        UserWarning, match="has no summary op to save.*in the LightningModule's __init__, setup"
    ):
        trainer.fit(TinyModel(), make_loader())


def test_the_schedule_is_not_part_of_the_state_key():
    # A run resumed with another schedule finds the state of the run it resumes.
    assert sh.SummarySaver(save_steps=2).state_key == sh.SummarySaver(save_steps=5).state_key
    assert sh.SummarySaver(save_secs=9).state_key == sh.SummarySaver(save_steps=5).state_key


def test_two_savers_of_the_same_ops_and_directory_meet_lightnings_duplicate_check():
    # Lightning's message sends the user to SummarySaver's docstring, which says what to do.
    with pytest.raises(RuntimeError, match="consult the documentation of `SummarySaver`"):
        L.Trainer(callbacks=[sh.SummarySaver(save_steps=1), sh.SummarySaver(save_steps=10)])
    doc = " ".join(sh.SummarySaver.__doc__.split())
    assert "one saver with both ops, or give each its own output_dir" in doc


class Watched(TinyModel):
    def __init__(self) -> None:
        super().__init__()
        sh.watch(self)


def test_watch_summarizes_the_gradients_the_optimizer_used_under_bf16_clipping_and_accumulation(
    tmp_path,
):
    # The window's gradients, clipped to 0.01 before the step: what the optimizer used.
    trainer = make_trainer(
        str(tmp_path),
        max_steps=4,
        precision="bf16-mixed",
        accumulate_grad_batches=2,
        gradient_clip_val=0.01,
        callbacks=[sh.SummarySaver(save_steps=1, output_dir=str(tmp_path))],
    )
    trainer.fit(Watched(), make_loader())
    acc = accumulator(str(tmp_path))
    norms = [(e.step, e.value) for e in acc.Scalars("global_norm/gradient_norm")]
    assert [step for step, _ in norms] == [1, 2, 3, 4]
    assert all(value == pytest.approx(0.01, rel=1e-3) for _, value in norms), norms
    assert {"weights/net.weight", "gradients/net.bias"} <= set(acc.Tags()["histograms"])


class UsedGradients(L.Callback):
    """The weight gradient's norm at each optimizer step, as the optimizer gets it, and
    as each backward pass left it."""

    def __init__(self) -> None:
        self.norms: list[float] = []
        self.after_backward: list[float] = []

    def on_after_backward(self, trainer: L.Trainer, module: Any) -> None:
        self.after_backward.append(float(module.net.weight.grad.double().norm()))

    def on_before_optimizer_step(self, trainer: L.Trainer, module: Any, optimizer: Any) -> None:
        self.norms.append(float(module.net.weight.grad.double().norm()))


@pytest.mark.parametrize("accumulate", [1, 2])
def test_watch_summarizes_the_unscaled_gradients_under_16_mixed_and_its_scaler(
    tmp_path, accumulate
):
    # Lightning's own 16-mixed plugin, its GradScaler on the CPU (the Trainer's
    # precision="16-mixed" becomes bf16 there): the plugin unscales before the step, and
    # the gradients written are those, not the 1,024x larger ones backward() left.
    from lightning.pytorch.plugins.precision import MixedPrecision

    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    used = UsedGradients()
    trainer = make_trainer(
        str(tmp_path),
        max_steps=3,
        accumulate_grad_batches=accumulate,
        plugins=[MixedPrecision("16-mixed", "cpu", scaler=scaler)],
        callbacks=[used, sh.SummarySaver(save_steps=1, output_dir=str(tmp_path))],
    )
    trainer.fit(Watched(), make_loader())
    assert trainer.precision_plugin.scaler is scaler and scaler.get_scale() == 1024.0
    written = [e.value for e in accumulator(str(tmp_path)).Scalars("gradient_norm/net.weight")]
    assert len(written) == 3 and written == pytest.approx(used.norms, rel=1e-6)
    scaled = used.after_backward[accumulate - 1 :: accumulate]  # each window's last
    assert [s / w for s, w in zip(scaled, written, strict=True)] == pytest.approx([1024.0] * 3)


class Tapped(TinyModel):
    def __init__(self) -> None:
        super().__init__()
        sh.histogram("act/net", sh.output_of(self.net))


def test_output_of_under_lightning_captures_the_due_batches_only(tmp_path, hook_calls):
    trainer = make_trainer(
        str(tmp_path),
        max_steps=7,
        callbacks=[sh.SummarySaver(save_steps=3, output_dir=str(tmp_path))],
    )
    trainer.fit(Tapped(), make_loader())
    written = accumulator(str(tmp_path)).Histograms("act/net")
    assert [e.step for e in written] == [1, 4, 7]
    assert all(e.histogram_value.num == 2 for e in written)  # batch 2, one output each
    assert hook_calls == [True, True, True]  # no hook call on the other batches


class CheckpointedActivations(TinyModel):
    """training_step runs the layers itself (not the module's forward) through a
    reentrant checkpoint, which recomputes them in the backward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.act = torch.nn.ReLU()
        sh.watch(self, weights=False, gradients=False, activations=torch.nn.ReLU)

    def training_step(self, batch, batch_idx):
        from torch.utils.checkpoint import checkpoint

        x, y = batch
        h = checkpoint(lambda t: self.act(self.net(t)), x.requires_grad_(), use_reentrant=True)
        return torch.nn.functional.mse_loss(h, y)


def test_watched_activations_under_lightning_are_not_counted_again_when_recomputed(tmp_path):
    trainer = make_trainer(
        str(tmp_path),
        max_steps=3,
        callbacks=[sh.SummarySaver(save_steps=1, output_dir=str(tmp_path))],
    )
    trainer.fit(CheckpointedActivations(), make_loader())
    written = accumulator(str(tmp_path)).Histograms("activations/act")
    assert [e.step for e in written] == [1, 2, 3]
    assert all(e.histogram_value.num == 2 for e in written)  # a batch of 2, one output each


def test_a_watch_given_to_the_saver_summarizes_the_module(tmp_path):
    # sh.watch as an argument of SummarySaver, for a model made outside the module's code.
    model = TinyModel()
    saver = sh.SummarySaver(
        save_steps=2, output_dir=str(tmp_path), summary_op=sh.watch(model, collections=[])
    )
    assert sh.get_collection() == []  # registered nowhere: the saver holds it
    trainer = make_trainer(str(tmp_path), max_steps=5, callbacks=[saver])
    trainer.fit(model, make_loader())
    sh.SummaryWriterCache.clear()
    acc = accumulator(str(tmp_path))
    for tag in ("weights/net.weight", "gradients/net.weight"):
        assert [e.step for e in acc.Histograms(tag)] == [1, 3, 5], tag
    assert [e.step for e in acc.Scalars("global_norm/gradient_norm")] == [1, 3, 5]


class CompiledActivations(TinyModel):
    """Its body compiled; the sanity check runs it (without gradients) before training."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1)
        )
        sh.watch(self.net, weights=False, gradients=False, activations=torch.nn.ReLU)
        self.compiled = torch.compile(self.net, backend="eager")

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.compiled(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.compiled(x), y))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf")
def test_watched_activations_of_a_compiled_module_after_the_sanity_check(tmp_path):
    # The sanity check's graph, traced without gradients before the first due step, is
    # another graph than training's: the taps are in training's, with no permanent=True.
    torch.compiler.reset()
    trainer = make_trainer(
        str(tmp_path),
        max_steps=5,
        num_sanity_val_steps=1,
        limit_val_batches=1,
        callbacks=[sh.SummarySaver(save_steps=2, output_dir=str(tmp_path))],
    )
    trainer.fit(CompiledActivations(), make_loader(8), make_loader(2))
    acc = accumulator(str(tmp_path))
    written = acc.Histograms("activations/1")
    assert [e.step for e in written] == [1, 3, 5]
    assert all(e.histogram_value.num == 2 * 8 for e in written)  # a batch of 2, 8 features
    assert [e.step for e in acc.Scalars("zero_fraction/1")] == [1, 3, 5]
