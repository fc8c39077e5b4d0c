"""Journeys: every usage as users run it, each in a fresh process of its own.

A suite that shares one warm process hides what a new user meets: counters and caches
warmed by earlier tests, imports already done, objects kept alive. Each journey here runs
a user's script (the README's examples verbatim, each logger setup, a crash and its
resumption, DDP, foreign writers in one second, the notebook run twice in one kernel) as
a subprocess, then checks what TensorBoard's readers show against every point of every
writer on disk: nothing hidden, nothing stale, nothing written twice.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import Counter

import nbformat
import numpy as np
import pytest
import torch
from nbclient import NotebookClient

from tests.conftest import accumulator, usage_blocks
from tests.readers import (
    assert_readers_show,
    ended_well,
    event_files,
    on_disk,
    scalar_values,
    steps,
    tensorboard,
    wait_until_served,
)

pytestmark = pytest.mark.slow  # subprocesses, servers or several processes

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
JOURNEYS = os.path.join(HERE, "journeys")


def run(args: list[str], cwd: str, returncode: int = 0) -> str:
    """Run ``python args...`` in ``cwd`` as a fresh process; return its standard output."""
    result = subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == returncode, f"{args}:\n{result.stderr[-4000:]}"
    return result.stdout


def readme_python(marker: str) -> str:
    """The one example of the README or the docs that holds ``marker``."""
    (code,) = [code for lang, code in usage_blocks() if lang == "python" and marker in code]
    return code


def test_readme_lightning_example_with_the_default_trainer(tmp_path):
    run(["-c", readme_python("trainer.fit(Model(), loader)")], cwd=str(tmp_path))
    run_dir = str(tmp_path / "lightning_logs" / "version_0")
    disk = on_disk(run_dir)
    assert len(event_files(run_dir)) == 1  # Lightning's metrics and the summaries: one file
    for tag in ("train/loss", "weights/net", "grads/net"):
        assert steps(disk, tag) == list(range(1, 100, 10)), tag
    assert steps(disk, "lightning/loss") == [49, 99]  # log_every_n_steps=50
    assert_readers_show(run_dir, disk)


def test_readme_sharded_example_under_torchrun(tmp_path):
    from tests.test_readme import torchrun_command

    code = readme_python("fully_shard(model)")
    result = subprocess.run(
        torchrun_command(code, tmp_path / "sharded.py"),
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ended_well(result.returncode, result.stderr), result.stderr[-4000:]
    run_dir = str(tmp_path / "runs" / "sharded")
    disk = on_disk(run_dir)
    assert len(event_files(run_dir)) == 1  # rank zero's
    for tag in ("weights/0", "grads/0", "weight_norm/0", "loss"):
        assert steps(disk, tag) == list(range(1, 100, 10)), tag
    assert_readers_show(run_dir, disk)


@pytest.mark.parametrize(
    ("marker", "run_dir", "expected"),
    [
        ('output_dir="runs/exp1"', "runs/exp1", {"loss": 10, "fc/weight": 10}),
        ("sh.StepSession()", "runs/manual", {"loss": 5}),
    ],
)
def test_readme_plain_loop_examples(tmp_path, marker, run_dir, expected):
    run(["-c", readme_python(marker)], cwd=str(tmp_path))
    disk = on_disk(str(tmp_path / run_dir))
    assert Counter(tag for tag, _ in disk.elements()) == expected
    assert_readers_show(str(tmp_path / run_dir), disk)


def test_readme_accumulation_example_matches_lightnings_accumulate_grad_batches(tmp_path):
    plain, lightning = tmp_path / "plain", tmp_path / "lightning"
    plain.mkdir()
    run(["-c", readme_python("lambda: optimizer_steps")], cwd=str(plain))
    script = os.path.join(JOURNEYS, "accumulation_lightning.py")
    run([script, str(lightning)], cwd=str(tmp_path))
    shown = {}
    for name, run_dir in (
        ("plain", str(plain / "runs" / "accumulate")),
        ("lightning", str(lightning)),
    ):
        disk = on_disk(run_dir)
        assert steps(disk, "train/loss") == steps(disk, "gradients/weight") == [1, 3, 5, 7, 9]
        assert_readers_show(run_dir, disk)
        acc = accumulator(run_dir)
        shown[name] = (
            [e.value for e in acc.Scalars("train/loss")],
            [
                (h.histogram_value.sum, h.histogram_value.sum_squares)
                for h in acc.Histograms("gradients/weight")
            ],
        )
    # The same window's gradients and the same last micro-batch's loss, step by step.
    assert np.allclose(shown["plain"][0], shown["lightning"][0], rtol=1e-6)
    assert np.allclose(shown["plain"][1], shown["lightning"][1], rtol=1e-5)


def watched_tags(layers: str) -> set[str]:
    """The tags of ``sh.watch`` of two linear layers, ``layers`` their names' format
    (``"{}"``: ``0`` and ``2``), and the global gradient norm's."""
    names = [f"{layers.format(layer)}.{kind}" for layer in (0, 2) for kind in ("weight", "bias")]
    groups = ("weights", "gradients", "weight_norm", "gradient_norm")
    return {f"{group}/{name}" for group in groups for name in names} | {"global_norm/gradient_norm"}


def test_readme_watch_example_writes_every_parameter(tmp_path):
    run(["-c", readme_python("sh.watch(model)  #")], cwd=str(tmp_path))
    run_dir = str(tmp_path / "runs" / "watched")
    disk = on_disk(run_dir)
    tags = watched_tags("{}")
    assert {tag for tag, _ in disk} == tags
    for tag in tags:
        assert steps(disk, tag) == [1, 11, 21, 31, 41], tag
    assert_readers_show(run_dir, disk)


def test_readme_whole_model_example_writes_every_layer_in_lightning(tmp_path):
    run(["-c", readme_python("sh.watch(self, activations=True)")], cwd=str(tmp_path))
    run_dir = str(tmp_path / "lightning_logs" / "version_0")
    disk = on_disk(run_dir)
    tags = watched_tags("body.{}") | {"zero_fraction/body.1"}
    tags |= {f"activations/body.{layer}" for layer in range(3)}
    assert {tag for tag, _ in disk} == tags
    for tag in tags:
        assert steps(disk, tag) == [1, 11, 21, 31, 41], tag
    assert_readers_show(run_dir, disk)
    # Each output is one batch's (8 x 64 values after the first layer and the ReLU), and
    # the fraction of zeros is the ReLU histogram's count in the bucket that holds 0.
    acc = accumulator(run_dir)
    for step, (relu, fraction) in enumerate(
        zip(
            acc.Histograms("activations/body.1"),
            acc.Scalars("zero_fraction/body.1"),
            strict=True,
        )
    ):
        assert relu.histogram_value.num == 8 * 64, step
        assert relu.histogram_value.min == 0.0, step
        limits = list(relu.histogram_value.bucket_limit)
        zeros = relu.histogram_value.bucket[limits.index(1e-12)]  # the bucket [0, 1e-12)
        assert fraction.value == pytest.approx(zeros / (8 * 64)), step
    assert acc.Histograms("activations/body.2")[0].histogram_value.num == 8


LOGGER_SETUPS = {
    # loggers: (run directories of two fits, whether Lightning's metrics are in them)
    "default": (["lightning_logs/version_0", "lightning_logs/version_1"], True),
    "tensorboard": (["lightning_logs/version_0", "lightning_logs/version_1"], True),
    "tensorboard+csv": (["lightning_logs/version_0", "lightning_logs/version_1"], True),
    "csv": (["lightning_logs/version_0", "lightning_logs/version_1"], False),
    "none": (["summaries/version_0", "summaries/version_1"], False),
}


@pytest.mark.parametrize("loggers", LOGGER_SETUPS)
def test_each_logger_setup_gives_each_fit_a_complete_run_of_its_own(tmp_path, loggers):
    root = str(tmp_path)
    printed = run([os.path.join(JOURNEYS, "lightning_run.py"), root, loggers, "2"], cwd=root)
    run_dirs, with_lightning_metrics = LOGGER_SETUPS[loggers]
    assert printed.split() == [os.path.join(root, d) for d in run_dirs]
    for run_dir in printed.split():
        disk = on_disk(run_dir)
        assert len(event_files(run_dir)) == 1
        assert steps(disk, "summary/loss") == steps(disk, "summary/weight") == [1, 3, 5, 7]
        lightning = steps(disk, "lightning/loss")
        assert lightning == (list(range(8)) if with_lightning_metrics else [])
        assert_readers_show(run_dir, disk)
    if loggers == "csv":  # Lightning's own metrics went to the CSV file beside the events
        assert os.path.exists(os.path.join(printed.split()[0], "metrics.csv"))


@pytest.mark.parametrize(
    ("logger", "run_dir"), [("none", "summaries/version_0"), ("tensorboard", "lightning_logs/run")]
)
def test_resume_from_a_checkpoint_hides_the_crashed_runs_stale_points(tmp_path, logger, run_dir):
    root, script = str(tmp_path), os.path.join(JOURNEYS, "resume_run.py")
    crashed = run([script, root, logger, "crash"], cwd=root, returncode=1)
    del crashed
    run([script, root, logger, "resume"], cwd=root)
    run_dir = os.path.join(root, run_dir)
    assert len(event_files(run_dir)) == 2
    # The crashed run wrote steps 1-25 and checkpointed at 20; the resumed one 21-40.
    # Lightning logs a batch at the step before its optimizer step: 0-24, then 20-39.
    expected = {"summary/run": (range(1, 41), 20)}
    if logger == "tensorboard":
        expected["lightning/run"] = (range(40), 19)
    for tag, (all_steps, last_of_crash) in expected.items():
        want = [(s, 1.0 if s <= last_of_crash else 2.0) for s in all_steps]
        for reader, shown in scalar_values(run_dir, tag).items():
            assert shown == want, f"{reader}, {tag}"


def test_resume_with_another_save_steps_continues_the_crashed_runs_directory(tmp_path):
    root, script = str(tmp_path), os.path.join(JOURNEYS, "resume_run.py")
    run([script, root, "none", "crash", "2"], cwd=root, returncode=1)
    result = subprocess.run(
        [sys.executable, script, root, "none", "resume", "5"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Please add the following callbacks" not in result.stderr
    assert os.listdir(os.path.join(root, "summaries")) == ["version_0"]
    run_dir = os.path.join(root, "summaries", "version_0")
    # The crash wrote 1, 3, ... 25 and checkpointed at 20; the resumed run 21, 26, 31, 36.
    want = [(s, 1.0) for s in range(1, 20, 2)] + [(s, 2.0) for s in (21, 26, 31, 36)]
    for reader, shown in scalar_values(run_dir, "summary/run").items():
        assert shown == want, reader


STRATEGIES = ["ddp", "ddp_spawn", "model_parallel", "fsdp"]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_each_documented_strategy_with_the_default_logger_writes_one_complete_run(
    tmp_path, strategy
):
    if strategy == "fsdp" and torch.cuda.device_count() < 2:
        pytest.skip(
            "Lightning's FSDPStrategy runs on two CUDA GPUs only; FSDP2 on CPUs is model_parallel"
        )
    root = str(tmp_path)
    result = subprocess.run(
        [sys.executable, os.path.join(JOURNEYS, "strategies.py"), root, strategy],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )  # (torch may abort a process at exit, after its work: the files below are checked)
    assert ended_well(result.returncode, result.stderr), result.stderr[-4000:]
    run_dir = os.path.join(root, "lightning_logs", "version_0")
    assert os.listdir(os.path.join(root, "lightning_logs")) == ["version_0"]
    assert len(event_files(run_dir)) == 1  # rank zero's logger file; rank one writes none
    disk = on_disk(run_dir)
    watched = [
        f"{kind}/net.{p}" for kind in ("weights", "gradients") for p in ("0.weight", "2.bias")
    ]
    for tag in (
        "summary/loss",
        "summary/weight",
        "summary/grad",
        "global_norm/gradient_norm",
        *watched,
    ):
        assert steps(disk, tag) == [1, 3, 5, 7], tag
    assert steps(disk, "lightning/loss") == list(range(8))
    assert_readers_show(run_dir, disk)


def test_ddp_spawn_with_ops_registered_in_init_fails_at_fit_saying_what_to_do(tmp_path):
    # The README's pattern registers lambdas in __init__, in the main process only.
    root = str(tmp_path)
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(JOURNEYS, "lightning_run.py"),
            root,
            "default",
            "1",
            "ddp_spawn",
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("TypeError: SummarySaver: a spawn-based strategy"), message
    assert "('summary/loss', 'summary/weight')" in message
    assert "register the ops in the LightningModule's setup() or configure_model()" in message
    assert not os.path.exists(os.path.join(root, "lightning_logs", "version_0", "hparams.yaml"))


def test_ddp_with_the_default_logger_writes_one_complete_run(tmp_path):
    root = str(tmp_path)
    run([os.path.join(JOURNEYS, "lightning_run.py"), root, "default", "1", "ddp"], cwd=root)
    run_dir = os.path.join(root, "lightning_logs", "version_0")
    assert os.listdir(os.path.join(root, "lightning_logs")) == ["version_0"]
    assert len(event_files(run_dir)) == 1  # rank zero's logger file; rank one writes none
    disk = on_disk(run_dir)
    assert steps(disk, "summary/loss") == steps(disk, "summary/weight") == [1, 3, 5, 7]
    assert steps(disk, "lightning/loss") == list(range(8))
    assert_readers_show(run_dir, disk)


def test_torch_and_tensorboardx_writers_in_the_same_second_lose_nothing(tmp_path):
    root = str(tmp_path)
    run([os.path.join(JOURNEYS, "foreign_writers.py"), root], cwd=root)
    every_ten = list(range(1, 11))
    expected = {
        "a": {"torch/before": every_ten, "tbx/before": every_ten, "torch/after": every_ten},
        "b": {"torch/before": every_ten, "tbx/after": every_ten, "torch/after": every_ten},
    }
    for name, theirs in expected.items():
        run_dir = os.path.join(root, name)
        assert len(event_files(run_dir)) == 4  # three of theirs, one of ours: none shared
        disk = on_disk(run_dir)
        for tag, tag_steps in {**theirs, "summary/loss": [1, 3, 5, 7, 9]}.items():
            assert steps(disk, tag) == tag_steps, (name, tag)
        assert_readers_show(run_dir, disk)


def test_the_notebook_run_twice_in_one_kernel_keeps_nothing_of_the_first_run(tmp_path, monkeypatch):
    from tools.build_notebook import CELLS, build

    monkeypatch.setenv("CI", "true")  # skips the cell that would start a TensorBoard server
    monkeypatch.setenv("PYTHONWARNINGS", "ignore")

    notebook = build()
    cells = list(notebook.cells)
    keep = nbformat.v4.new_code_cell(
        "import weakref\n"
        "first = {'model': weakref.ref(model), 'module': weakref.ref(trainer.lightning_module),"
        " 'trainer': weakref.ref(trainer), 'hook': weakref.ref(hook)}"
    )
    check = nbformat.v4.new_code_cell(
        "import gc\ngc.collect()\nprint(f'alive: {sorted(k for k, r in first.items() if r())}')"
    )
    notebook.cells = [*cells, keep, *cells, check]
    assert len(CELLS) == len(cells)
    NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    errors = [o for o in outputs if o.output_type == "error"]
    assert not errors, errors[0].get("evalue")
    # (A print may reach the notebook as several stream messages, as under load.)
    printed = "".join(o.get("text", "") for o in notebook.cells[-1].outputs)
    assert "alive: []" in printed, printed
    second = [o for cell in notebook.cells[len(cells) + 1 : -1] for o in cell.get("outputs", [])]
    text = "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in second)
    assert text.count("[('train/loss',), ('weights/net',), ('grads/net',)]") == 1  # no doubling
    assert any("image/png" in o.get("data", {}) for o in second)  # the plot, drawn again
    logdir = tmp_path / "runs" / "notebook"
    expected = {
        "by_hand": {"loss": [1, 11, 21, 31, 41]},
        "session": {"train/loss": list(range(1, 101, 5))},
        "lightning": {"train/loss": list(range(1, 121, 10))},
    }
    for name, tags in expected.items():
        disk = on_disk(str(logdir / name))
        for tag, tag_steps in tags.items():
            assert steps(disk, tag) == tag_steps, (name, tag)  # the second run's, once each
        assert_readers_show(str(logdir / name), disk)


def test_tensorboard_shows_every_point_live_and_drops_the_stale_ones_of_a_resume(tmp_path):
    root, journeys = str(tmp_path), JOURNEYS
    fresh, resumed = "fresh/lightning_logs/version_0", "resumed/lightning_logs/run"
    lightning = ["lightning/run", "epoch"]
    with tensorboard(root, load_fast="false") as port:  # polling before any run starts
        run([os.path.join(journeys, "lightning_run.py"), f"{root}/fresh", "default"], cwd=root)
        wait_until_served(port, fresh, on_disk(os.path.join(root, fresh)))
        script = os.path.join(journeys, "resume_run.py")
        run([script, f"{root}/resumed", "tensorboard", "crash"], cwd=root, returncode=1)
        crashed = Counter({("summary/run", s): 1 for s in range(1, 26)})
        crashed.update((tag, s) for tag in lightning for s in range(25))
        wait_until_served(port, resumed, crashed)
        run([script, f"{root}/resumed", "tensorboard", "resume"], cwd=root)
        every = Counter({("summary/run", s): 1 for s in range(1, 41)})
        every.update((tag, s) for tag in lightning for s in range(40))
        wait_until_served(port, resumed, every)  # live: the stale points went
    with tensorboard(root, load_fast="false") as port:  # a first load of the same runs
        wait_until_served(port, fresh, on_disk(os.path.join(root, fresh)))
        wait_until_served(port, resumed, every)
    with tensorboard(root, load_fast="true") as port:  # the Rust loader: it never purges
        wait_until_served(port, fresh, on_disk(os.path.join(root, fresh)))


def test_tensorboard_shows_a_run_while_it_trains(tmp_path):
    root = str(tmp_path)
    run_dir = os.path.join(root, "lightning_logs", "version_0")
    with tensorboard(root, load_fast="false") as port:
        script = os.path.join(JOURNEYS, "lightning_run.py")
        child = subprocess.Popen(
            [sys.executable, script, root, "tensorboard", "1", "live"], cwd=root,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while not os.path.exists(os.path.join(root, "paused")):
                assert child.poll() is None, child.stderr.read()[-3000:] if child.stderr else ""
                assert time.monotonic() < deadline, "the run never reached step 6"
                time.sleep(0.2)
            # Paused in step 6's on_train_batch_end: once the logger's one-second flush has
            # run, its file holds the summaries of steps 1, 3 and 5, and Lightning's metric
            # of steps 0-4 (step 6's batch, at 5, is logged after the callbacks).
            so_far = Counter({("summary/loss", s): 1 for s in (1, 3, 5)})
            so_far.update({("summary/weight", s): 1 for s in (1, 3, 5)})
            so_far.update({(tag, s): 1 for tag in ("lightning/loss", "epoch") for s in range(5)})
            wait_until_served(port, "lightning_logs/version_0", so_far)
        finally:
            open(os.path.join(root, "go"), "w").close()
            _, errors = child.communicate(timeout=120)
        assert child.returncode == 0, errors[-3000:]
        disk = on_disk(run_dir)
        assert steps(disk, "summary/loss") == [1, 3, 5, 7]
        wait_until_served(port, "lightning_logs/version_0", disk)  # the same server, live


def test_the_journey_scripts_are_the_ones_documented():
    # Each script in tests/journeys says how it is run, and is run here or by the tests of
    # its front end (test_hparams.py, test_huggingface.py).
    source = ""
    for test in os.listdir(HERE):
        if test.startswith("test_") and test.endswith(".py"):
            with open(os.path.join(HERE, test), encoding="utf-8") as f:
                source += f.read()
    for name in os.listdir(JOURNEYS):
        if name.endswith(".py"):
            assert re.search(rf'"{re.escape(name)}"', source), f"{name} is not run by a journey"
