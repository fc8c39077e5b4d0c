"""Hyperparameters in the run's own event file, as TensorBoard's HParams dashboard shows
them: read back with TensorBoard's reader, and served by the real server's hparams plugin."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

import summary_hook as sh
from tests.readers import get, tensorboard

JOURNEY = Path(__file__).parent / "journeys" / "hparams_run.py"
STATUSES = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]


def plugin_data(logdir: str) -> dict[str, plugin_data_pb2.HParamsPluginData]:
    """Each hparams tag of the run's files, as TensorBoard keeps it: its first metadata."""
    acc = EventAccumulator(logdir, size_guidance={"tensors": 0})
    acc.Reload()
    found = {}
    for tag in acc.Tags()["tensors"]:
        metadata = acc.SummaryMetadata(tag)
        if metadata.plugin_data.plugin_name == "hparams":
            found[tag] = plugin_data_pb2.HParamsPluginData.FromString(metadata.plugin_data.content)
    return found


def run_steps(hook: sh.SummarySaverHook, steps: int) -> None:
    with sh.MonitoredSession(hooks=[hook]) as session:
        for i in range(steps):
            session.run(lambda i: 1.0 / (i + 1), i)


def test_hook_writes_the_experiment_the_session_and_its_end_into_the_runs_file(tmp_path):
    loss = sh.scalar("loss", lambda out: out, collections=[])
    norm = sh.scalar("norm", lambda out: 2 * out, collections=[])
    hook = sh.SummarySaverHook(
        save_steps=2,
        output_dir=str(tmp_path),
        summary_op=sh.merge([loss, norm]),
        hparams={"lr": 0.5, "name": "adam", "nesterov": False, "layers": 3},
    )
    run_steps(hook, 5)
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == []  # no extra run
    data = plugin_data(str(tmp_path))
    assert set(data) == {
        "_hparams_/experiment",
        "_hparams_/session_start_info",
        "_hparams_/session_end_info",
    }
    experiment = data["_hparams_/experiment"].experiment
    assert [(i.name, i.type) for i in experiment.hparam_infos] == [
        ("lr", 3),  # DATA_TYPE_FLOAT64
        ("name", 1),  # DATA_TYPE_STRING
        ("nesterov", 2),  # DATA_TYPE_BOOL
        ("layers", 3),
    ]
    # No hparam_metrics: every scalar tag the hook saves.
    assert [m.name.tag for m in experiment.metric_infos] == ["loss", "norm"]
    start = data["_hparams_/session_start_info"].session_start_info
    assert start.hparams["lr"].number_value == 0.5
    assert start.hparams["name"].string_value == "adam"
    assert start.hparams["nesterov"].bool_value is False
    assert start.hparams["layers"].number_value == 3.0
    assert data["_hparams_/session_end_info"].session_end_info.status == 1  # STATUS_SUCCESS


def test_hparam_metrics_name_the_metrics(tmp_path):
    loss = sh.scalar("loss", lambda out: out, collections=[])
    hook = sh.SummarySaverHook(
        save_steps=1,
        output_dir=str(tmp_path),
        summary_op=loss,
        hparams={"lr": 1},
        hparam_metrics="val/accuracy",
    )
    run_steps(hook, 2)
    experiment = plugin_data(str(tmp_path))["_hparams_/experiment"].experiment
    assert [m.name.tag for m in experiment.metric_infos] == ["val/accuracy"]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"hparams": [("lr", 1)]}, TypeError, "hparams must be a dict"),
        ({"hparams": {"lr": [1, 2]}}, TypeError, r"hparams\['lr'\] must be a number.*\[1, 2\]"),
        ({"hparams": {"lr": None}}, TypeError, r"hparams\['lr'\].*None"),
        ({"hparams": {"": 1}}, TypeError, "non-empty str"),
        ({"hparams": {"lr": 1}, "hparam_metrics": [3]}, TypeError, "scalar tags.*3"),
        ({"hparam_metrics": ["loss"]}, ValueError, "pass hparams"),
    ],
)
def test_bad_hparams_name_the_argument_and_show_the_value(tmp_path, kwargs, error, message):
    loss = sh.scalar("loss", lambda out: out, collections=[])
    with pytest.raises(error, match=message):
        sh.SummarySaverHook(save_steps=1, output_dir=str(tmp_path), summary_op=loss, **kwargs)
    with pytest.raises(error, match=message):
        sh.SummarySaver(save_steps=1, **kwargs)


def test_numpy_and_tensor_scalars_are_numbers(tmp_path):
    import numpy as np
    import torch

    loss = sh.scalar("loss", lambda out: out, collections=[])
    hparams = {"a": np.float32(0.5), "b": np.int64(4), "c": torch.tensor(2.0), "d": np.bool_(1)}
    hook = sh.SummarySaverHook(
        save_steps=1, output_dir=str(tmp_path), summary_op=loss, hparams=hparams
    )
    run_steps(hook, 1)
    start = plugin_data(str(tmp_path))["_hparams_/session_start_info"].session_start_info
    assert [start.hparams[k].number_value for k in "abc"] == [0.5, 4.0, 2.0]
    assert start.hparams["d"].bool_value is True


def served_hparams(logdir: str) -> tuple[dict, dict]:
    """The experiment and the session groups the real server's hparams plugin shows."""
    with tensorboard(logdir, load_fast="false") as port:
        deadline = time.monotonic() + 60
        request = json.dumps({"experimentName": ""})
        while not (experiment := get(port, "/data/plugin/hparams/experiment", request=request)).get(
            "hparamInfos"
        ):
            assert time.monotonic() < deadline, "tensorboard shows no hyperparameters"
            time.sleep(0.5)
        query = {
            "experimentName": "",
            "allowedStatuses": STATUSES,
            "colParams": [],
            "startIndex": 0,
            "sliceSize": 100,
        }
        groups = get(port, "/data/plugin/hparams/session_groups", request=json.dumps(query))
    return experiment, groups


def journey(root: Path, mode: str) -> None:
    result = subprocess.run(
        [sys.executable, str(JOURNEY), str(root), mode],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow
def test_the_readme_example_is_served_by_the_hparams_plugin(tmp_path):
    journey(tmp_path, "plain")
    experiment, groups = served_hparams(str(tmp_path))
    assert {i["name"]: i["type"] for i in experiment["hparamInfos"]} == {
        "lr": "DATA_TYPE_FLOAT64",
        "optimizer": "DATA_TYPE_STRING",
        "bias": "DATA_TYPE_BOOL",
    }
    assert [m["name"]["tag"] for m in experiment["metricInfos"]] == ["loss"]
    (group,) = groups["sessionGroups"]
    assert group["name"] == "run"  # the run itself: no extra run directory
    assert group["hparams"] == {"lr": 0.05, "optimizer": "sgd", "bias": True}
    (session,) = group["sessions"]
    assert session["status"] == "STATUS_SUCCESS"
    acc = EventAccumulator(str(tmp_path / "run"))
    acc.Reload()
    last = acc.Scalars("loss")[-1]
    (metric,) = session["metricValues"]
    assert (metric["trainingStep"], metric["value"]) == (last.step, pytest.approx(last.value))


@pytest.mark.slow
def test_lightning_with_tensorboard_logger_shows_one_coherent_session(tmp_path):
    journey(tmp_path, "lightning")
    run = tmp_path / "lightning_logs" / "version_0"
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_dir()) == [
        "lightning_logs",
        "version_0",
    ]
    experiment, groups = served_hparams(str(tmp_path))
    # The module's save_hyperparameters() values and the saver's, one experiment; the
    # saver's scalar as its metric, not Lightning's hp_metric placeholder.
    assert {i["name"] for i in experiment["hparamInfos"]} == {"lr", "width", "batch_size", "seed"}
    assert [m["name"]["tag"] for m in experiment["metricInfos"]] == ["train/loss"]
    (group,) = groups["sessionGroups"]
    assert group["hparams"] == {"lr": 0.01, "width": 8.0, "batch_size": 8.0, "seed": "s0"}
    (session,) = group["sessions"]
    assert session["status"] == "STATUS_SUCCESS"  # (Lightning's, with its hp_metric)
    acc = EventAccumulator(str(run))
    acc.Reload()
    # Lightning's own metrics are in the same run, as written.
    assert "lightning/loss" in acc.Tags()["scalars"]
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 3, 5, 7]
    assert session["metricValues"][0]["trainingStep"] == 7


@pytest.mark.slow
def test_a_failed_lightning_run_shows_its_status(tmp_path):
    journey(tmp_path, "lightning-fails")
    _, groups = served_hparams(str(tmp_path))
    (group,) = groups["sessionGroups"]
    assert group["sessions"][0]["status"] == "STATUS_FAILURE"
