"""The Hugging Face front end: ``SummarySaverCallback`` in a real ``transformers.Trainer``,
a tiny model built from a config, with gradient accumulation, in fresh processes (one,
and two under ``torchrun``), read back with TensorBoard's readers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from summary_hook.huggingface import SummarySaverCallback
from tests.readers import assert_readers_show, ended_well, event_files, free_port, on_disk, steps

JOURNEY = Path(__file__).parent / "journeys" / "huggingface_run.py"
BIN = os.path.dirname(sys.executable)
GRADIENT = "gradients/transformer.h.0.mlp.c_fc.weight"


def run_dirs(out: Path) -> list[Path]:
    return sorted(p for p in (out / "trainer" / "runs").iterdir() if p.is_dir())


def check_run(out: Path, ranks: int) -> None:
    (run,) = run_dirs(out)  # the Trainer's TensorBoard directory, one run
    assert len(event_files(str(run))) == 1  # one writer: process zero's
    disk = on_disk(str(run))
    # 7 optimizer steps of 3 micro-batches, save_steps=3: due at 1, 4, 7, once each.
    for tag in ("summary/model_loss", GRADIENT, "global_norm/gradient_norm"):
        assert steps(disk, tag) == [1, 4, 7], tag
    assert steps(disk, "train/loss") == [2, 4, 6]  # the Trainer's own logs, same file
    assert_readers_show(str(run), disk)
    records = [json.loads((out / f"grads-{rank}.json").read_text()) for rank in range(ranks)]
    for record in records:
        assert record["calls"] == {"loss": 3}  # evaluated on due steps only, every rank
    acc = EventAccumulator(str(run), size_guidance={"histograms": 0})
    acc.Reload()
    written = {e.step: e.histogram_value.sum_squares for e in acc.Histograms(GRADIENT)}
    used = records[0]["squares"]  # the gradient as the optimizer used it, at each step
    for step, sum_squares in written.items():
        assert sum_squares == pytest.approx(used[str(step)], rel=1e-9), step
        assert sum_squares > 0  # not the zeroed gradient


@pytest.mark.slow
def test_a_trainer_with_accumulation_writes_one_run_in_a_fresh_process(tmp_path):
    result = subprocess.run(
        [sys.executable, str(JOURNEY), str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    check_run(tmp_path, ranks=1)


@pytest.mark.slow
def test_two_cpu_processes_write_one_run_from_process_zero(tmp_path):
    command = [os.path.join(BIN, "torchrun"), "--nproc_per_node", "2"]
    command += ["--master_port", str(free_port()), str(JOURNEY), str(tmp_path)]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert ended_well(result.returncode, result.stderr), result.stderr[-4000:]
    check_run(tmp_path, ranks=2)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({}, ValueError, "every_secs or every_steps"),  # TensorFlow's message
        ({"save_steps": 0}, ValueError, "save_steps must be a positive integer"),
        ({"save_steps": 5, "report_logs": "yes"}, TypeError, "report_logs must be a bool"),
        ({"save_steps": 5, "hparams": {"lr": [1]}}, TypeError, r"hparams\['lr'\]"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, error, message):
    with pytest.raises(error, match=message):
        SummarySaverCallback(**kwargs)
