"""Laziness and the one host transfer per due step, counted at the dispatcher."""

from __future__ import annotations

import pytest
import torch

import summary_hook as sh
from benchmarks.harness import CountTransfers as CountHostTransfers
from benchmarks.harness import count_cuda_syncs

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def make_hook(tmp_path, device, n_scalars, n_histograms=0):
    calls = []
    ops = []
    for i in range(n_scalars):
        ops.append(
            sh.scalar(
                f"s/{i}", lambda i=i: calls.append(i) or torch.tensor(float(i), device=device)
            )
        )
    for i in range(n_histograms):
        ops.append(
            sh.histogram(f"h/{i}", lambda: calls.append("h") or torch.randn(1000, device=device))
        )
    hook = sh.SummarySaverHook(save_steps=10, output_dir=str(tmp_path), summary_op=sh.merge(ops))
    return hook, calls


@pytest.mark.parametrize("device", DEVICES)
def test_due_step_moves_50_scalars_in_one_transfer(tmp_path, device):
    hook, calls = make_hook(tmp_path, device, 50)
    with sh.MonitoredSession(hooks=[hook]) as sess, CountHostTransfers() as counter:
        sess.run(lambda: None)  # the first step is due
    assert len(calls) == 50
    assert counter.transfers == 1


@pytest.mark.parametrize("device", DEVICES)
def test_due_step_with_scalars_and_histograms_is_still_one_transfer(tmp_path, device):
    hook, calls = make_hook(tmp_path, device, 20, n_histograms=5)
    with sh.MonitoredSession(hooks=[hook]) as sess, CountHostTransfers() as counter:
        sess.run(lambda: None)
    assert len(calls) == 25
    assert counter.transfers == 1


@pytest.mark.parametrize("device", DEVICES)
def test_non_due_step_calls_nothing_and_transfers_nothing(tmp_path, device):
    hook, calls = make_hook(tmp_path, device, 50, n_histograms=2)
    with sh.MonitoredSession(hooks=[hook]) as sess:
        sess.run(lambda: None)
        calls.clear()
        with CountHostTransfers() as counter:
            for _ in range(8):
                sess.run(lambda: None)
    assert calls == []
    assert counter.transfers == 0


def test_two_hooks_due_on_one_step_share_one_transfer(tmp_path):
    a = sh.SummarySaverHook(
        save_steps=1,
        output_dir=str(tmp_path / "a"),
        summary_op=sh.scalar("a", lambda: torch.tensor(1.0)),
    )
    b = sh.SummarySaverHook(
        save_steps=1,
        output_dir=str(tmp_path / "b"),
        summary_op=sh.scalar("b", lambda: torch.tensor(2.0)),
    )
    with sh.MonitoredSession(hooks=[a, b]) as sess, CountHostTransfers() as counter:
        sess.run(lambda: None)
    assert counter.transfers == 1


def test_counter_sees_per_value_reads():
    # The counting mode itself must be able to fail: 3 .item() calls are 3 transfers.
    with CountHostTransfers() as counter:
        for i in range(3):
            torch.tensor(float(i)).item()
    assert counter.transfers == 3


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU to count real synchronisations"
)
def test_due_step_synchronises_a_gpu_once(tmp_path):
    # bincount and .item() synchronise inside ATen, out of a dispatch mode's sight; torch's
    # sync debug mode sees every synchronisation. A GPU machine runs this. The values are
    # made beforehand: a tensor made from a host number in a summary function would
    # itself synchronise.
    values = [torch.tensor(float(i), device="cuda") for i in range(50)]
    weights = [torch.randn(1000, device="cuda") for _ in range(5)]
    ops = [sh.scalar(f"s/{i}", lambda v=v: v) for i, v in enumerate(values)]
    ops += [sh.histogram(f"h/{i}", lambda w=w: w) for i, w in enumerate(weights)]
    hook = sh.SummarySaverHook(save_steps=1, output_dir=str(tmp_path), summary_op=sh.merge(ops))
    with sh.MonitoredSession(hooks=[hook]) as sess:
        sess.run(lambda: None)  # the first due step also uploads the bucket tables, once
        syncs = count_cuda_syncs(lambda: sess.run(lambda: None))
    assert syncs == 1


def test_parts_cross_in_one_copy_and_read_back_at_any_offset():
    # Off the CPU every part crosses, the count rows too: an odd number of int32 rows puts
    # the next float64 part at an offset 8 does not divide. (Here on the CPU, with nothing
    # read in place, the same layout.)
    from summary_hook._evaluation.to_host import _copy_parts_to_host

    parts = [
        torch.arange(3, dtype=torch.float64),
        torch.arange(15, dtype=torch.int32).reshape(3, 5),
        torch.tensor([1.5, 2.5], dtype=torch.float64),
        torch.tensor([-3, 7], dtype=torch.int16),
        torch.arange(7, dtype=torch.uint8),
    ]
    with CountHostTransfers() as counter:
        host = _copy_parts_to_host(parts, range(0))
    assert counter.transfers == 1
    for part, array in zip(parts, host, strict=True):
        assert array.dtype == part.numpy().dtype and array.tolist() == part.tolist()
