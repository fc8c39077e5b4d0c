"""The benchmark suite runs (quick mode), so it cannot rot. It asserts no timing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from benchmarks.harness import median_times

pytestmark = pytest.mark.slow  # subprocesses, servers or several processes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_benchmark_quick_mode_runs_and_reports_every_measurement(tmp_path):
    out = tmp_path / "results.json"
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "run.py"), "--quick", "--json", str(out)],
        capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert [r["id"] for r in report["results"]] == [f"P{i}" for i in range(1, 15)]
    by_id = {r["id"]: r for r in report["results"]}
    # Facts, not timings: laziness, one transfer, complete files, lazy Lightning.
    assert by_id["P3"]["details"]["summary_calls"] == 0
    assert by_id["P3"]["details"]["host_transfers"] == 0
    assert set(by_id["P4"]["details"]["transfers_by_scalar_count"].values()) == {1}
    assert by_id["P6"]["details"]["records_read_back"] == by_id["P6"]["details"]["expected"]
    hook_run = by_id["P6"]["details"]["through_the_hook"]
    assert hook_run["records_read_back"] == hook_run["expected"]
    assert by_id["P2"]["details"]["same_bucket_counts"]
    # The profiler finds every stage's kernels: a stale kernel table would show a 0 here.
    stages = by_id["P2"]["details"]["threads"]["1"]["stages_ms"]
    assert set(stages) == {"statistics", "bucket index", "counting", "other"}
    assert all(stages[name] > 0 for name in ("statistics", "bucket index", "counting"))
    assert not by_id["P8"]["details"]["imports_lightning"]
    assert by_id["P9"]["details"]["parameters"] == 10 * (128 * 128 + 128)
    due = by_id["P10"]["details"]["due_step"]["counts"]
    assert due["summary_hook"]["collectives"] == 3
    assert due["by_hand"]["collectives"] == 110
    # Many tensors: a few ATen calls more per tensor, not a chain of kernels each.
    assert by_id["P13"]["details"]["aten_calls_per_tensor_more"] <= 4
    # A watched model's non-due steps: the compiler keeps its graphs.
    assert by_id["P14"]["details"]["recompiles_after_warm_up"] == 0
    assert by_id["P14"]["details"]["tap_hook_calls_on_non_due_eager_steps"] == 0
    assert by_id["P14"]["details"]["eager_same_python_calls"]  # watching adds no call
    assert by_id["P10"]["details"]["non_due_steps"]["collectives_per_non_due_step"] == {
        "bare": 0,
        "save_steps": 0,
        "save_secs": 0,
        "broadcast_every_step": 2,  # broadcast_object_list: a size, then the data
    }
    growth = by_id["P11"]["details"]["bytes_per_flush_growth"]
    assert growth["summary_hook"] < 1.5 < growth["torch"]  # linear, and quadratic
    assert "| P1 |" in result.stdout


def test_quick_and_partial_runs_leave_the_committed_results_alone(tmp_path):
    committed = os.path.join(ROOT, "benchmarks", "results.json")
    before = os.stat(committed).st_mtime_ns
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "run.py"), "--quick", "--only", "p4,P8"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert [line.split("|")[1].strip() for line in result.stdout.splitlines()[2:4]] == ["P4", "P8"]
    assert os.stat(committed).st_mtime_ns == before
    assert os.listdir(tmp_path) == []  # and nothing left behind


def test_only_names_the_ids_it_takes():
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "run.py"), "--only", "P15"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2
    ids = ", ".join(f"P{i}" for i in range(1, 15))
    assert f"--only takes ids from {ids}, got 'P15'" in result.stderr


def test_contenders_take_turns_and_each_settles_before_the_next():
    calls: list[str] = []
    median_times(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
        repeats=2,
        settle={"a": lambda: calls.append("a settled")},
    )
    assert calls == ["a", "b"] + ["a", "a settled", "b"] * 2  # warm-ups, then the turns


def test_p13s_accelerator_checks_run_on_the_cpu():
    # What `--only P13 --device cuda` adds, run here so that it cannot rot: on the CPU
    # the launches are ATen calls, and synchronisations and memory are not measured.
    from benchmarks.p13_many_tensors import _device_text, on_device

    checks = on_device("cpu", quick=True)
    assert checks["synchronisations_per_due_step"] is None
    assert checks["activations_peak_mb"] is None
    calls = checks["aten_calls_by_tensors"]
    assert 0 < calls["10"] < calls["400"] < calls["10"] + 4 * 390  # batched: few a tensor
    assert checks["parameters"] > 0 and checks["ms_per_due_step"] > 0
    assert "launches for 10 and 400 tensors" in _device_text(checks)
