"""Real two-process runs (gloo, CPU) of a plain loop: DTensors, reduce=, one writer, and
the collectives of due and non-due steps. Each mode runs once, as two fresh processes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from summary_hook._evaluation.histogram import BUCKET_LIMITS
from tests.conftest import accumulator, event_files, summaries_by_step
from tests.readers import ended_well, free_port

pytestmark = pytest.mark.slow  # subprocesses, servers or several processes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "tests", "distributed", "plain_run.py")


def run_ranks(script: str, output_dir: str, mode: str, world: int = 2) -> list[dict]:
    """Start ``world`` ranks of ``script`` as fresh processes; their reports, by rank."""
    env = {
        **os.environ,
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
        "WORLD_SIZE": str(world),
        "PYTHONWARNINGS": "ignore",
    }
    ranks = [
        subprocess.Popen(
            [sys.executable, script, output_dir, mode],
            env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=ROOT,
        )
        for rank in range(world)
    ]
    logs = [process.communicate(timeout=240)[0] for process in ranks]
    for process, log in zip(ranks, logs, strict=True):
        assert ended_well(process.returncode, log), log[-4000:]
    reports = []
    for rank in range(world):
        with open(os.path.join(output_dir, f"rank{rank}.json")) as f:
            reports.append(json.load(f))
    return reports


def reference_histogram(values: torch.Tensor) -> dict:
    """TensorFlow's histogram of ``values``, computed here with numpy alone: each value
    in the first bucket whose limit is above it; the non-empty buckets only."""
    x = values.detach().double().reshape(-1).numpy()
    index = np.searchsorted(np.asarray(BUCKET_LIMITS), x, side="right")
    limits, counts = np.unique(index, return_counts=True)
    return {
        "min": x.min(),
        "max": x.max(),
        "num": x.size,
        "sum": x.sum(),
        "sum_squares": (x * x).sum(),
        "buckets": {BUCKET_LIMITS[i]: int(n) for i, n in zip(limits, counts, strict=True)},
    }


def written_histogram(run_dir: str, tag: str, step: int) -> dict:
    (event,) = [e for e in accumulator(run_dir).Histograms(tag) if e.step == step]
    h = event.histogram_value
    return {
        "min": h.min,
        "max": h.max,
        "num": h.num,
        "sum": h.sum,
        "sum_squares": h.sum_squares,
        "buckets": {limit: int(n) for limit, n in zip(h.bucket_limit, h.bucket, strict=True) if n},
    }


def assert_same_histogram(written: dict, expected: dict) -> None:
    assert written["buckets"] == expected["buckets"]
    assert (written["min"], written["max"], written["num"]) == (
        expected["min"],
        expected["max"],
        expected["num"],
    )
    assert written["sum"] == pytest.approx(expected["sum"], rel=1e-12, abs=1e-12)
    assert written["sum_squares"] == pytest.approx(expected["sum_squares"], rel=1e-12)


def scalars(run_dir: str) -> dict[str, list[tuple[int, float]]]:
    acc = accumulator(run_dir)
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def summary_collectives(report: dict) -> list[list[str]]:
    """The collectives of each due step beyond those of a non-due step (the training's own)."""
    steps = report["steps"]
    own = steps["non_due"][0]["collectives"] if steps["non_due"] else []
    return [step["collectives"][len(own) :] for step in steps["due"]]


def test_watch_of_an_fsdp1_model_on_two_ranks_raises_rather_than_write_a_ranks_shards(tmp_path):
    # FSDP1 keeps a flat shard of each parameter on each rank: summarized, it would be
    # one rank's piece of each weight, silently. Watched after wrapping, or before it
    # and evaluated after, each rank says so, and names FSDP2 instead.
    reports = run_ranks(SCRIPT, str(tmp_path), "fsdp1")
    for rank, report in enumerate(reports):
        errors = report["errors"]
        assert "FullyShardedDataParallel (FSDP1)" in errors["watch"]
        assert "fully_shard" in errors["watch"]
        assert re.search(
            rf"parameter '\d\.(weight|bias)' of Sequential holds \d+ values on rank {rank}, "
            r"not the \d+ it held when watched",
            errors["due_step"],
        ), errors["due_step"]
    assert accumulator(str(tmp_path)).Tags()["histograms"] == []


def test_watch_of_an_fsdp2_model_writes_the_unsharded_models_histograms_and_norms(tmp_path):
    reports = run_ranks(SCRIPT, str(tmp_path), "watch")
    reference = torch.load(os.path.join(str(tmp_path), "reference.pt"))
    assert sorted(reference) == [1, 3, 5]
    written = scalars(str(tmp_path))
    for step, parameters in reference.items():
        for name, (weight, grad) in parameters.items():
            for tag, whole in ((f"weights/{name}", weight), (f"gradients/{name}", grad)):
                expected = reference_histogram(whole)
                histogram = written_histogram(str(tmp_path), tag, step)
                assert histogram["buckets"] == expected["buckets"], tag
                assert histogram["sum_squares"] == pytest.approx(expected["sum_squares"], rel=1e-6)
            norm = dict(written[f"gradient_norm/{name}"])[step]
            assert norm == pytest.approx(float(grad.double().norm()), rel=1e-5)
        grads = torch.cat([grad.reshape(-1) for _, grad in parameters.values()]).double()
        global_norm = dict(written["global_norm/gradient_norm"])[step]
        assert global_norm == pytest.approx(float(grads.norm()), rel=1e-5)  # not per shard
    for report in reports:  # 33 summaries, 8 sharded parameters: the same 3 collectives
        for collectives in summary_collectives(report):
            assert collectives == ["allreduce_"] * 3


@pytest.mark.parametrize("mode", ["activations", "local_activations"])
def test_watched_activations_of_every_rank_are_counted_together_unless_told(tmp_path, mode):
    reports = run_ranks(SCRIPT, str(tmp_path), mode)
    ranks = [torch.load(os.path.join(str(tmp_path), f"activations{r}.pt")) for r in (0, 1)]
    counted = ranks if mode == "activations" else ranks[:1]  # rank zero's own, written
    written = scalars(str(tmp_path))["zero_fraction/1"]
    assert [step for step, _ in written] == [1, 3]
    for step, fraction in written:
        together = torch.cat([outputs[step].reshape(-1) for outputs in counted])
        assert_same_histogram(
            written_histogram(str(tmp_path), "activations/1", step), reference_histogram(together)
        )
        # Of every counted value, as the histogram: not the mean of the ranks' fractions.
        assert fraction == pytest.approx(float((together == 0).double().mean()), rel=1e-6)
    for report in reports:  # the counts and fractions in the due step's collectives, or none
        for collectives in summary_collectives(report):
            assert (collectives != []) == (mode == "activations"), collectives


def test_activations_of_a_module_that_ran_on_some_ranks_are_theirs_and_none_is_left_out(
    tmp_path,
):
    reports = run_ranks(SCRIPT, str(tmp_path), "uneven_activations")
    ranks = [torch.load(os.path.join(str(tmp_path), f"activations{r}.pt")) for r in (0, 1)]
    written = scalars(str(tmp_path))
    assert "zero_fraction/unused" not in written
    assert "activations/unused" not in accumulator(str(tmp_path)).Tags()["histograms"]
    for step in (1, 3):
        expert = ranks[0][step]["expert"]  # rank zero's alone: it ran there only
        assert_same_histogram(
            written_histogram(str(tmp_path), "activations/expert", step),
            reference_histogram(expert),
        )
        fraction = dict(written["zero_fraction/expert"])[step]
        assert fraction == pytest.approx(float((expert == 0).double().mean()), rel=1e-6)
        both = torch.cat([r[step]["relu"].reshape(-1) for r in ranks])
        assert_same_histogram(
            written_histogram(str(tmp_path), "activations/relu", step), reference_histogram(both)
        )
    for report in reports:  # every rank has rank zero's expert: only what ran nowhere is out
        (warning,) = report["warned"]  # once
        assert "2 summaries have no value" in warning, warning
        assert "'activations/unused', 'zero_fraction/unused'" in warning, warning
        for collectives in summary_collectives(report):  # the due step's usual three
            assert collectives == ["allreduce_"] * 3, collectives


def test_watch_of_a_ddp_model_has_the_models_own_tags(tmp_path):
    # DistributedDataParallel keeps the model as .module: its names, not module.0.weight.
    reports = run_ranks(SCRIPT, str(tmp_path), "ddp")
    names = ("0.weight", "0.bias", "2.weight", "2.bias")
    for report in reports:
        assert {t for t in report["tags"] if t.startswith("gradients/")} == {
            f"gradients/{name}" for name in names
        }
        assert "activations/1" in report["tags"]
    gradients = torch.load(os.path.join(str(tmp_path), "gradients.pt"))
    for step in (1, 3):
        for name in names:
            assert_same_histogram(
                written_histogram(str(tmp_path), f"gradients/{name}", step),
                reference_histogram(gradients[step][name]),  # every rank's mean
            )


@pytest.fixture(scope="module")
def fsdp_run(tmp_path_factory):
    output_dir = str(tmp_path_factory.mktemp("fsdp"))
    return output_dir, run_ranks(SCRIPT, output_dir, "fsdp")


def test_fsdp_histograms_of_sharded_weights_and_gradients_equal_the_gathered_ones(fsdp_run):
    run_dir, _ = fsdp_run
    gathered = torch.load(os.path.join(run_dir, "gathered.pt"))
    assert sorted(gathered) == [1, 3, 5]
    for step, tensors in gathered.items():
        for tag, whole in tensors.items():
            assert_same_histogram(written_histogram(run_dir, tag, step), reference_histogram(whole))


def test_fsdp_partial_scalar_is_the_global_value(fsdp_run):
    run_dir, _ = fsdp_run
    gathered = torch.load(os.path.join(run_dir, "gathered.pt"))
    written = dict(scalars(run_dir)["weight_sum/0"])
    for step, tensors in gathered.items():
        assert written[step] == pytest.approx(float(tensors["weight/0"].sum()), rel=1e-6)


def test_only_rank_zero_writes(fsdp_run):
    run_dir, _ = fsdp_run
    assert len(event_files(run_dir)) == 1


def test_a_due_step_makes_three_collectives_whatever_the_number_of_ops(fsdp_run, tmp_path):
    _, fsdp_reports = fsdp_run
    mesh_reports = run_ranks(SCRIPT, str(tmp_path), "mesh2d")
    for report in [*fsdp_reports, *mesh_reports]:  # 4 ops, then 12
        for collectives in summary_collectives(report):
            assert collectives == ["allreduce_"] * 3  # status, sums, maxima


def test_non_due_steps_make_no_summary_collective(fsdp_run):
    for report in fsdp_run[1]:
        non_due = [step["collectives"] for step in report["steps"]["non_due"]]
        # FSDP2's own all-gather and reduce-scatter, and nothing else
        assert non_due == [["_allgather_base_", "_reduce_scatter_base_"]] * len(non_due)


@pytest.fixture(scope="module")
def mesh_run(tmp_path_factory):
    output_dir = str(tmp_path_factory.mktemp("mesh2d"))
    run_ranks(SCRIPT, output_dir, "mesh2d")
    return output_dir


@pytest.mark.parametrize(
    "layout",
    ["2x1/shard_replicate", "2x1/replicate_shard", "1x2/replicate_shard", "1x2/shard_shard"],
)
def test_dtensors_on_a_2d_mesh_count_every_value_once(mesh_run, layout):
    whole = torch.load(os.path.join(mesh_run, "whole.pt"))
    assert_same_histogram(written_histogram(mesh_run, layout, 1), reference_histogram(whole))
    (written,) = scalars(mesh_run)[f"{layout}/sum"]
    assert written == (1, pytest.approx(float(whole.sum()), rel=1e-6))


def test_partial_scalars_combine_as_their_placement_says(mesh_run):
    # rank r holds r + 1
    written = {tag: values[0][1] for tag, values in scalars(mesh_run).items()}
    assert written["partial/sum"] == 3.0
    assert written["partial/avg"] == 1.5
    assert written["partial/max"] == 2.0
    assert written["partial/min"] == 1.0


def test_partial_and_other_meshes_give_the_whole_tensors_histogram(tmp_path):
    run_dir = str(tmp_path)
    reports = run_ranks(SCRIPT, run_dir, "partial_and_submesh")
    expected = reference_histogram(torch.arange(4.0) * 3)
    assert_same_histogram(written_histogram(run_dir, "partial", 1), expected)
    whole = torch.load(os.path.join(run_dir, "whole.pt"))
    assert_same_histogram(written_histogram(run_dir, "rank_one", 1), reference_histogram(whole))
    for report in reports:  # the partial one is made whole first: one all_reduce of its own
        (due,) = report["steps"]["due"]
        assert due["collectives"] == ["all_reduce"] + ["allreduce_"] * 3


@pytest.fixture(scope="module")
def reduce_run(tmp_path_factory):
    output_dir = str(tmp_path_factory.mktemp("reduce"))
    return output_dir, run_ranks(SCRIPT, output_dir, "reduce")


def test_reduce_combines_every_ranks_scalar(reduce_run):
    written = scalars(reduce_run[0])
    steps = [1, 4, 7]
    expected = {"mean": 1.5, "sum": 3.0, "min": 1.0, "max": 2.0, "none": 1.0, "tensor_mean": 1.5}
    for mode, value in expected.items():
        assert written[f"reduce/{mode}"] == [(step, value) for step in steps], mode


def test_histogram_reduce_sum_counts_every_ranks_values(reduce_run):
    values = torch.arange(10, dtype=torch.float32)
    both = torch.cat((values, values * 2))
    for step in (1, 4, 7):
        written = written_histogram(reduce_run[0], "reduce/histogram", step)
        assert_same_histogram(written, reference_histogram(both))
        alone = written_histogram(reduce_run[0], "reduce/histogram_none", step)
        assert_same_histogram(alone, reference_histogram(values))


def test_reduce_makes_collectives_on_due_steps_only(reduce_run):
    for report in reduce_run[1]:
        assert [step["collectives"] for step in report["steps"]["due"]] == [["allreduce_"] * 3] * 3
        assert all(not step["collectives"] for step in report["steps"]["non_due"])


def test_a_stalled_rank_does_not_hold_up_the_others_between_due_steps(tmp_path):
    fast, slow = run_ranks(SCRIPT, str(tmp_path), "stall")
    assert slow["loop_seconds"] >= 2.0
    assert fast["loop_seconds"] < 1.0  # nineteen non-due steps, none waiting for rank 1
    for report in (fast, slow):
        assert all(not step["collectives"] for step in report["steps"]["non_due"])
        (due,) = report["steps"]["due"]
        assert due["collectives"] == ["allreduce_", "allreduce_", "broadcast_"]


def test_a_summary_that_fails_on_one_rank_fails_every_rank_at_once(tmp_path):
    other, failing = run_ranks(SCRIPT, str(tmp_path), "raise1")
    assert (
        failing["error"]
        == "summary 'fragile': its function raised ValueError: rank 1's value is broken"
    )
    assert other["error"].startswith("summary 'fragile': rank 1's evaluation raised RemoteFailure")
    assert other["seconds"] < 30  # the process group's timeout is 60 s: nobody waited for it


def test_reduce_over_a_group_that_leaves_out_a_rank_makes_no_rank_wait(tmp_path):
    reports = run_ranks(SCRIPT, str(tmp_path), "subgroup", world=3)
    assert all(report["seconds"] < 30 for report in reports)  # the group's timeout is 60 s
    assert summaries_by_step(str(tmp_path)) == {step: {"pair_mean": 0.5} for step in (1, 3, 5)}


def test_a_text_or_image_that_fails_on_one_rank_fails_every_rank_at_once(tmp_path):
    reports = run_ranks(SCRIPT, str(tmp_path), "bad_values", world=3)
    assert all(report["seconds"] < 30 for report in reports)  # nobody waited for the timeout
    text_error = "TypeError: text 'note': its function returned None"
    image_error = "ValueError: image 'picture'"
    for rank, report in enumerate(reports):
        first, second = report["errors"]
        if rank == 1:
            assert first == text_error
        else:
            assert first.startswith("summary 'note': rank 1's evaluation raised RemoteFailure")
        if rank == 2:
            assert second.startswith(image_error), second
        else:
            assert second.startswith("summary 'picture': rank 2's evaluation raised RemoteFailure")


LIGHTNING = os.path.join(ROOT, "tests", "distributed", "lightning_run.py")


def run_lightning(output_dir: str, mode: str) -> list[dict]:
    """A two-process Lightning run (its launcher starts rank 1); the ranks' reports."""
    result = subprocess.run(
        [sys.executable, LIGHTNING, output_dir, mode],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "ignore", "MASTER_PORT": str(free_port())},
        cwd=ROOT,
    )
    output = result.stdout + result.stderr
    assert ended_well(result.returncode, output), output[-6000:]
    reports = []
    for rank in range(2):
        with open(os.path.join(output_dir, f"rank{rank}.json")) as f:
            reports.append(json.load(f))
    return reports


def test_lightning_model_parallel_fsdp2_histograms_equal_the_gathered_ones(tmp_path):
    # ModelParallelStrategy: Lightning's strategy for FSDP2 and DTensor models, which runs
    # on the CPU with gloo; the model is fully_shard-ed over its data-parallel mesh.
    run_dir = str(tmp_path)
    reports = run_lightning(run_dir, "model_parallel")
    gathered = torch.load(os.path.join(run_dir, "gathered.pt"))
    due = [1, 3, 5, 7, 9, 11]
    assert [e.step for e in accumulator(run_dir).Histograms("weight")] == due
    for step in due:
        assert_same_histogram(
            written_histogram(run_dir, "weight", step),
            reference_histogram(gathered[step]["weight"]),
        )
        assert_same_histogram(
            written_histogram(run_dir, "grad", step), reference_histogram(gathered[step]["grad"])
        )
    written = dict(scalars(run_dir)["weight_sum"])
    assert written == {
        step: pytest.approx(float(gathered[step]["weight"].sum()), rel=1e-6) for step in due
    }
    assert len(event_files(run_dir)) == 1
    for report in reports:
        for step in report["steps"]:
            ours = step["collectives"].count("allreduce_")
            assert ours == (3 if step["step"] in due else 0), step


def test_lightning_ddp_save_secs_adds_no_collective_to_non_due_steps(tmp_path):
    with_saver = run_lightning(str(tmp_path / "saver"), "ddp_secs")
    without = run_lightning(str(tmp_path / "control"), "ddp_control")
    assert [e.step for e in accumulator(str(tmp_path / "saver")).Scalars("loss")] == [1]
    for ours, theirs in zip(with_saver, without, strict=True):
        first, *rest = ours["steps"]
        assert first["step"] == 1  # the due step: status, sums, maxima, the next due step
        assert first["collectives"][-4:] == ["allreduce_"] * 3 + ["broadcast_"]
        assert rest == theirs["steps"][1:]  # every other step: the training's own only
