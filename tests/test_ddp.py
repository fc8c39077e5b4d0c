"""Real 2-process DDP runs: rank zero alone writes, and every rank evaluates on the same steps."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import accumulator, event_files

pytestmark = pytest.mark.slow  # subprocesses, servers or several processes

SCRIPT = os.path.join(os.path.dirname(__file__), "ddp_script.py")


def run_ddp(output_dir: str, mode: str, expect_success: bool = True) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        [sys.executable, SCRIPT, output_dir, mode],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=os.path.dirname(SCRIPT),
    )
    if not expect_success:
        assert result.returncode != 0, result.stderr[-3000:]
        assert "fails at step 5" in result.stderr, result.stderr[-3000:]
        return
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert os.path.exists(os.path.join(output_dir, "done0.pt"))
    assert os.path.exists(os.path.join(output_dir, "done1.pt"))


@pytest.fixture(scope="module")
def steps_run(tmp_path_factory):
    output_dir = str(tmp_path_factory.mktemp("ddp_steps"))
    run_ddp(output_dir, "steps")
    return output_dir


def test_only_rank_zero_writes_one_file(steps_run):
    (path,) = event_files(steps_run)
    acc = accumulator(steps_run)
    assert [e.value for e in acc.Scalars("rank")] == [0.0] * 4
    assert os.path.basename(path).startswith("events.out.tfevents.")


def test_save_steps_schedule_and_collective_in_summary_function(steps_run):
    acc = accumulator(steps_run)
    assert [e.step for e in acc.Scalars("loss/mean")] == [1, 3, 5, 7]
    assert [e.step for e in acc.Histograms("weights")] == [1, 3, 5, 7]


def test_save_secs_decision_is_rank_zeros_and_never_hangs(tmp_path):
    run_ddp(str(tmp_path), "secs")
    assert len(event_files(str(tmp_path))) == 1
    steps = [e.step for e in accumulator(str(tmp_path)).Scalars("loss/mean")]
    assert steps[0] == 1 and steps == sorted(set(steps))


@pytest.mark.parametrize("failing_rank", [0, 1])
def test_a_rank_that_raises_leaves_rank_zeros_summaries_on_disk(tmp_path, failing_rank):
    run_ddp(str(tmp_path), f"raise{failing_rank}", expect_success=False)
    assert len(event_files(str(tmp_path))) == 1  # rank one never created a file
    steps = [e.step for e in accumulator(str(tmp_path)).Scalars("loss/mean")]
    assert steps == [1, 2, 3, 4, 5]  # everything before the failure, flushed
