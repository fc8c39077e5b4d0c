"""reduce= and DTensors in one process, and the timer that ranks agree on."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

import summary_hook as sh
from summary_hook._hooks.schedule import AgreedSecondsTimer
from tests.readers import free_port


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda: sh.scalar("s", lambda: 1.0, reduce="median"),
            r"scalar 's': reduce must be one of None, 'mean', 'sum', 'min', 'max', got 'median'",
        ),
        (
            lambda: sh.histogram("h", lambda: [1.0], reduce="mean"),
            r"histogram 'h': reduce must be one of None, 'sum', got 'mean'",
        ),
        (
            lambda: sh.scalar("s", lambda: 1.0, group=object()),
            r"scalar 's': group=<object object at .*> needs reduce=",
        ),
    ],
)
def test_raises_when_reduce_or_group_is_bad(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_reduce_without_a_process_group_writes_the_value_as_it_is():
    ops = [
        sh.scalar(f"s/{mode}", lambda: torch.tensor(2.5), reduce=mode, collections=[])
        for mode in ("mean", "sum", "min", "max")
    ]
    histogram = sh.histogram("h", lambda: torch.arange(4.0), reduce="sum", collections=[])
    summaries = sh.evaluate([*ops, histogram])
    assert [s.value[0].simple_value for s in summaries[:4]] == [2.5] * 4
    assert summaries[4] == sh.evaluate(sh.histogram("h", lambda: torch.arange(4.0), collections=[]))


@pytest.fixture
def one_rank_group():
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1
    )
    yield
    dist.destroy_process_group()


def test_a_dtensor_histogram_on_one_rank_equals_the_plain_one(one_rank_group):
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor

    whole = torch.randn(50, 3, generator=torch.Generator().manual_seed(1))
    mesh = init_device_mesh("cpu", (1,))
    for placement in (Shard(0), Replicate()):
        dtensor = distribute_tensor(whole, mesh, [placement])
        ours = sh.evaluate(sh.histogram("h", lambda d=dtensor: d, collections=[]))
        plain = sh.evaluate(sh.histogram("h", lambda: whole, collections=[]))
        assert ours.value[0].histo.bucket == plain.value[0].histo.bucket
        assert ours.value[0].histo.num == plain.value[0].histo.num == 150


def test_many_dtensor_histograms_are_counted_together(one_rank_group, monkeypatch):
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    from summary_hook._evaluation import distributed

    counted = []
    original = distributed.device_histograms
    monkeypatch.setattr(
        distributed,
        "device_histograms",
        lambda tensors: counted.append(len(tensors)) or original(tensors),
    )
    mesh = init_device_mesh("cpu", (1,))
    wholes = [torch.randn(20, 3, generator=torch.Generator().manual_seed(i)) for i in range(30)]
    dtensors = [distribute_tensor(whole, mesh, [Shard(0)]) for whole in wholes]
    op = sh.merge(
        [sh.histogram(f"h{i}", lambda d=d: d, collections=[]) for i, d in enumerate(dtensors)]
    )
    written = sh.evaluate(op).value
    assert counted == [30]  # one batched count for the 30 shards, not one per tensor
    for value, whole in zip(written, wholes, strict=True):
        plain = sh.evaluate(sh.histogram("h", lambda w=whole: w, collections=[])).value[0].histo
        assert value.histo.bucket == plain.bucket and value.histo.num == 60


def test_reduced_and_plain_scalars_of_one_op_each_keep_their_value(one_rank_group):
    # The plain scalar and the reduced vector cross in one copy: each takes its own part.
    op = sh.merge(
        [
            sh.scalar("reduced", lambda: 1.5, reduce="sum", collections=[]),
            sh.scalar("plain", lambda: torch.tensor(5.0), collections=[]),
            sh.scalar("last", lambda: torch.tensor(7.0), collections=[]),
        ]
    )
    values = sh.evaluate(op).value
    assert [(v.tag, v.simple_value) for v in values if v.HasField("simple_value")] == [
        ("reduced", 1.5),
        ("plain", 5.0),
        ("last", 7.0),
    ]


def test_raises_when_a_dtensor_has_reduce(one_rank_group):
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    dtensor = distribute_tensor(torch.ones(4), init_device_mesh("cpu", (1,)), [Shard(0)])
    op = sh.histogram("h", lambda: dtensor, reduce="sum", collections=[])
    with pytest.raises(
        ValueError, match=r"histogram 'h' is a DTensor, whose value is already global"
    ):
        sh.evaluate(op)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_agreed_seconds_timer_turns_the_period_into_steps_at_due_steps(one_rank_group, monkeypatch):
    clock = _Clock()
    monkeypatch.setattr("time.time", clock)
    timer = AgreedSecondsTimer(every_secs=10)
    assert timer.should_trigger_for_step(1)
    clock.now += 2.0  # the first step took 2 s: due again 5 steps on
    assert timer.update_last_triggered_step(1) == (None, None)
    assert next(s for s in range(2, 12) if timer.should_trigger_for_step(s)) == 6
    clock.now += 5 * 0.5  # the pace became 0.5 s a step: 20 steps on
    assert timer.update_last_triggered_step(6) == (2.5, 5)
    assert not timer.should_trigger_for_step(25) and timer.should_trigger_for_step(26)
    assert not timer.should_trigger_for_step(6)  # a step never triggers twice
    assert timer.last_triggered_step() == 6


def test_agreed_seconds_timer_checks_its_period():
    with pytest.raises(TypeError, match=r"every_secs must be a number, got '10'"):
        AgreedSecondsTimer(every_secs="10")
