"""One rank of a real multi-process run (gloo, CPU) of a plain PyTorch loop, started by
tests/test_distributed.py once per rank, with the usual RANK, WORLD_SIZE, MASTER_ADDR and
MASTER_PORT in its environment.

Usage: python tests/distributed/plain_run.py OUTPUT_DIR MODE

MODE:
  fsdp     a fully_shard (FSDP2) model: histograms of sharded weights and gradients, and a
           partial scalar; rank zero saves the gathered tensors for the test to compare
  mesh2d   DTensors on a 2-D mesh, sharded and replicated on each dimension
  partial_and_submesh
           a histogram of a Partial DTensor, and of a DTensor on a mesh without rank 0
  reduce   per-rank values with reduce= in every mode
  stall    save_secs; rank 1 stalls two seconds in a non-due step; each rank records
           how long its loop took
  raise1   rank 1's summary function raises at the second due step
  watch    sh.watch of a fully_shard (FSDP2) model, every rank on the same batch; rank
           zero saves an unsharded copy's weights and gradients, trained alike
  activations  sh.watch(activations=ReLU) of a replicated model, each rank on its own
           batch; each rank saves its ReLU's outputs at the due steps
  local_activations  the same with reduce_activations=False
  uneven_activations  sh.watch(activations=ReLU) of a model with a ReLU that runs on rank
           zero only and one that runs on no rank
  ddp      sh.watch of a DistributedDataParallel model, its weights, gradients and ReLU;
           rank zero saves the model's gradients at the due steps
  fsdp1    an FSDP1 (FullyShardedDataParallel) model: sh.watch of it, and a due step of
           sh.watch of the model before FSDP1 wrapped it; each rank reports the errors
  subgroup (3 ranks) reduce= over a group of ranks 0 and 1 only
  bad_values (3 ranks) at the second due step rank 1's text and, at the next, rank 2's
           image are values no summary can hold, in a plan with reduce= values

Each rank writes OUTPUT_DIR/rank<r>.json: the collectives its due and non-due steps made,
and what the mode measured.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from datetime import timedelta

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import summary_hook as sh
from benchmarks.harness import CountCollectives


def fsdp(output_dir: str, rank: int) -> dict:
    from torch.distributed.fsdp import fully_shard

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3))
    fully_shard(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    sh.histogram("weight/0", lambda: model[0].weight)
    sh.histogram("grad/0", lambda: model[0].weight.grad)
    sh.histogram("weight/2", lambda: model[2].weight)
    sh.scalar("weight_sum/0", lambda: model[0].weight.sum())  # a Partial(sum) DTensor
    hook = sh.SummarySaverHook(save_steps=2, output_dir=output_dir, scaffold=sh.Scaffold())
    gathered = {}

    def step(x: torch.Tensor) -> torch.Tensor:
        optimizer.zero_grad()
        loss = model(x).pow(2).mean()
        loss.backward()
        return loss

    counter = CountCollectives()
    with sh.MonitoredSession(hooks=[hook]) as session:
        for i in range(5):
            x = torch.randn(4, 5, generator=torch.Generator().manual_seed(100 * rank + i))
            with counter.step(due=session.global_step % 2 == 0):
                session.run(step, x)
            if session.global_step % 2 == 1:  # the step just written: keep the whole tensors
                tensors = {
                    "weight/0": model[0].weight.full_tensor(),
                    "grad/0": model[0].weight.grad.full_tensor(),
                    "weight/2": model[2].weight.full_tensor(),
                }
                gathered[session.global_step] = {k: v.detach().clone() for k, v in tensors.items()}
            optimizer.step()
    if rank == 0:
        torch.save(gathered, os.path.join(output_dir, "gathered.pt"))
    return counter.report()


def mesh2d(output_dir: str, rank: int) -> dict:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Partial, Replicate, Shard, distribute_tensor

    whole = torch.randn(6, 8, generator=torch.Generator().manual_seed(7))
    meshes = {"2x1": init_device_mesh("cpu", (2, 1)), "1x2": init_device_mesh("cpu", (1, 2))}
    layouts = {
        "2x1/shard_replicate": (meshes["2x1"], [Shard(0), Replicate()]),
        "2x1/replicate_shard": (meshes["2x1"], [Replicate(), Shard(1)]),
        "1x2/replicate_shard": (meshes["1x2"], [Replicate(), Shard(0)]),
        "1x2/shard_shard": (meshes["1x2"], [Shard(1), Shard(0)]),
    }
    tensors = {name: distribute_tensor(whole, mesh, p) for name, (mesh, p) in layouts.items()}
    for name, tensor in tensors.items():
        sh.histogram(name, lambda t=tensor: t)
        sh.scalar(f"{name}/sum", lambda t=tensor: t.sum())
    world = meshes["2x1"]
    local = torch.tensor([float(rank + 1)])
    partial = {
        reduction: torch.distributed.tensor.DTensor.from_local(
            local, world, [Partial(reduction), Replicate()], run_check=False
        )
        for reduction in ("sum", "avg", "max", "min")
    }
    for reduction, tensor in partial.items():
        sh.scalar(f"partial/{reduction}", lambda t=tensor: t.sum())
    hook = sh.SummarySaverHook(save_steps=1, output_dir=output_dir, scaffold=sh.Scaffold())
    counter = CountCollectives()
    with sh.MonitoredSession(hooks=[hook]) as session:
        with counter.step(due=True):
            session.run(lambda: None)
    if rank == 0:
        torch.save(whole, os.path.join(output_dir, "whole.pt"))
    return counter.report()


def partial_and_submesh(output_dir: str, rank: int) -> dict:
    from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
    from torch.distributed.tensor import DTensor, Partial, Shard, distribute_tensor

    world = init_device_mesh("cpu", (2,))
    partial = DTensor.from_local(torch.arange(4.0) * (rank + 1), world, [Partial()])
    sh.histogram("partial", lambda: partial)  # the whole tensor: arange(4) * 3
    whole = torch.randn(6, 3, generator=torch.Generator().manual_seed(3))
    rank_one = DeviceMesh("cpu", [1])  # a mesh without rank zero, which still writes
    on_rank_one = distribute_tensor(whole, rank_one, [Shard(0)])
    sh.histogram("rank_one", lambda: on_rank_one)
    hook = sh.SummarySaverHook(save_steps=1, output_dir=output_dir, scaffold=sh.Scaffold())
    counter = CountCollectives()
    with sh.MonitoredSession(hooks=[hook]) as session, counter.step(due=True):
        session.run(lambda: None)
    if rank == 0:
        torch.save(whole, os.path.join(output_dir, "whole.pt"))
    return counter.report()


def reduce(output_dir: str, rank: int) -> dict:
    values = torch.arange(10, dtype=torch.float32) * (rank + 1)  # rank 1's are twice rank 0's
    for mode in ("mean", "sum", "min", "max"):
        sh.scalar(f"reduce/{mode}", lambda: float(rank + 1), reduce=mode)
    sh.scalar("reduce/none", lambda: float(rank + 1))
    sh.scalar("reduce/tensor_mean", lambda: torch.tensor(rank + 1.0), reduce="mean")
    sh.histogram("reduce/histogram", lambda: values, reduce="sum")
    sh.histogram("reduce/histogram_none", lambda: values)
    hook = sh.SummarySaverHook(save_steps=3, output_dir=output_dir, scaffold=sh.Scaffold())
    counter = CountCollectives()
    with sh.MonitoredSession(hooks=[hook]) as session:
        for _ in range(7):
            with counter.step(due=session.global_step % 3 == 0):
                session.run(lambda: None)
    return counter.report()


def stall(output_dir: str, rank: int) -> dict:
    sh.scalar("rank_mean", lambda: float(rank), reduce="mean")
    hook = sh.SummarySaverHook(save_secs=60, output_dir=output_dir, scaffold=sh.Scaffold())
    counter = CountCollectives()
    times = []
    with sh.MonitoredSession(hooks=[hook]) as session:
        for i in range(20):
            start = time.perf_counter()
            with counter.step(due=i == 0):
                session.run(lambda i=i: time.sleep(2.0) if rank == 1 and i == 5 else None)
            times.append(time.perf_counter() - start)
    return {**counter.report(), "loop_seconds": sum(times[1:]), "step_seconds": times}


def raise1(output_dir: str, rank: int) -> dict:
    def value(out: object) -> float:
        if rank == 1 and session.global_step == 3:
            raise ValueError("rank 1's value is broken")
        return float(rank)

    sh.scalar("fragile", value, reduce="sum")
    hook = sh.SummarySaverHook(save_steps=2, output_dir=output_dir, scaffold=sh.Scaffold())
    error = None
    start = time.perf_counter()
    with sh.MonitoredSession(hooks=[hook]) as session:
        try:
            for _ in range(5):
                session.run(lambda: None)
        except sh.SummaryEvaluationError as raised:
            error = str(raised)
    return {"error": error, "seconds": time.perf_counter() - start}


def watch(output_dir: str, rank: int) -> dict:
    import copy

    from torch.distributed.fsdp import fully_shard

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 6), torch.nn.Linear(6, 3)
    )
    reference = copy.deepcopy(model)  # unsharded, on every rank: the same batches
    fully_shard(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    reference_optimizer = torch.optim.SGD(reference.parameters(), lr=0.1)
    sh.watch(model)
    hook = sh.SummarySaverHook(save_steps=2, output_dir=output_dir, scaffold=sh.Scaffold())
    expected = {}

    def step(x: torch.Tensor) -> None:
        for net, opt in ((model, optimizer), (reference, reference_optimizer)):
            opt.zero_grad()
            net(x).pow(2).mean().backward()

    counter = CountCollectives()
    with sh.MonitoredSession(hooks=[hook]) as session:
        for i in range(5):
            x = torch.randn(4, 5, generator=torch.Generator().manual_seed(i))  # every rank's
            with counter.step(due=session.global_step % 2 == 0):
                session.run(step, x)
            if session.global_step % 2 == 1:  # the step just written
                expected[session.global_step] = {
                    name: (p.detach().clone(), p.grad.clone())
                    for name, p in reference.named_parameters()
                }
            optimizer.step()
            reference_optimizer.step()
    if rank == 0:
        torch.save(expected, os.path.join(output_dir, "reference.pt"))
    return counter.report()


def activations(output_dir: str, rank: int, reduce: bool = True) -> dict:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 1))
    sh.watch(
        model, weights=False, gradients=False, activations=torch.nn.ReLU, reduce_activations=reduce
    )
    hook = sh.SummarySaverHook(save_steps=2, output_dir=output_dir, scaffold=sh.Scaffold())
    outputs = {}
    counter = CountCollectives()
    with sh.MonitoredSession(hooks=[hook]) as session:
        for i in range(3):
            x = torch.randn(4 + rank, 5, generator=torch.Generator().manual_seed(10 * rank + i))
            step = session.global_step + 1
            with counter.step(due=step % 2 == 1):
                session.run(lambda x=x: model(x).sum().backward())
            outputs[step] = torch.relu(model[0](x)).detach()
    torch.save(outputs, os.path.join(output_dir, f"activations{rank}.pt"))
    return counter.report()


def local_activations(output_dir: str, rank: int) -> dict:
    return activations(output_dir, rank, reduce=False)


class Branchy(torch.nn.Module):
    """A ReLU that runs on rank zero only (an expert some ranks' tokens never reach),
    and one that runs on no rank."""

    def __init__(self, rank: int) -> None:
        super().__init__()
        self.rank = rank
        self.fc = torch.nn.Linear(5, 7)
        self.relu = torch.nn.ReLU()
        self.expert = torch.nn.ReLU()
        self.unused = torch.nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.fc(x))
        return self.expert(h - 0.1) if self.rank == 0 else h


def uneven_activations(output_dir: str, rank: int) -> dict:
    torch.manual_seed(0)
    model = Branchy(rank)
    sh.watch(model, weights=False, gradients=False, activations=torch.nn.ReLU)
    hook = sh.SummarySaverHook(save_steps=2, output_dir=output_dir, scaffold=sh.Scaffold())
    outputs, warned = {}, []
    counter = CountCollectives()
    with sh.MonitoredSession(hooks=[hook]) as session, warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        for i in range(3):
            x = torch.randn(4 + rank, 5, generator=torch.Generator().manual_seed(10 * rank + i))
            step = session.global_step + 1
            with counter.step(due=step % 2 == 1):
                session.run(lambda x=x: model(x).sum().backward())
            h = torch.relu(model.fc(x)).detach()
            outputs[step] = {"relu": h, "expert": torch.relu(h - 0.1) if rank == 0 else None}
        warned = [str(w.message) for w in seen if "no value" in str(w.message)]
    torch.save(outputs, os.path.join(output_dir, f"activations{rank}.pt"))
    return {**counter.report(), "warned": warned}


def ddp(output_dir: str, rank: int) -> dict:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 1))
    wrapped = torch.nn.parallel.DistributedDataParallel(model)
    sh.watch(wrapped, activations=torch.nn.ReLU, reduce_activations=False)
    hook = sh.SummarySaverHook(save_steps=2, output_dir=output_dir, scaffold=sh.Scaffold())
    gradients = {}
    with sh.MonitoredSession(hooks=[hook]) as session:
        for i in range(3):
            x = torch.randn(4, 5, generator=torch.Generator().manual_seed(10 * rank + i))
            step = session.global_step + 1
            model.zero_grad()
            session.run(lambda x=x: wrapped(x).sum().backward())
            gradients[step] = {n: p.grad.clone() for n, p in model.named_parameters()}
    if rank == 0:
        torch.save(gradients, os.path.join(output_dir, "gradients.pt"))
    return {"tags": list(sh.merge_all().tags)}


def fsdp1(output_dir: str, rank: int) -> dict:
    from torch.distributed.fsdp import FullyShardedDataParallel

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    watched_before = sh.watch(model, collections=[])
    wrapped = FullyShardedDataParallel(model, device_id=torch.device("cpu"), use_orig_params=True)
    errors = {}
    try:
        sh.watch(wrapped, collections=[])
    except ValueError as error:
        errors["watch"] = str(error)
    hook = sh.SummarySaverHook(save_steps=1, output_dir=output_dir, summary_op=watched_before)
    try:
        with sh.MonitoredSession(hooks=[hook]) as session:
            session.run(lambda: wrapped(torch.randn(5, 4)).sum().backward())
    except sh.SummaryEvaluationError as error:
        errors["due_step"] = str(error)
    return {"errors": errors}


def subgroup(output_dir: str, rank: int) -> dict:
    pair = dist.new_group([0, 1])  # every rank takes part in making it
    sh.scalar("pair_mean", lambda: float(rank), reduce="mean", group=pair)
    hook = sh.SummarySaverHook(save_steps=2, output_dir=output_dir, scaffold=sh.Scaffold())
    start = time.perf_counter()
    with sh.MonitoredSession(hooks=[hook]) as session:
        for _ in range(5):
            session.run(lambda: None)
    return {"seconds": time.perf_counter() - start}


def bad_values(output_dir: str, rank: int) -> dict:
    def note() -> object:
        return None if rank == 1 and session.global_step == 3 else "fine"

    def picture() -> torch.Tensor:
        bad = rank == 2 and session.global_step == 4  # the due step after the failed one
        return torch.zeros(2, 3, 4, 4) if not bad else torch.zeros(2, 5, 4, 4)

    sh.scalar("total", lambda: float(rank), reduce="sum")
    sh.text("note", note)
    sh.image("picture", picture)
    hook = sh.SummarySaverHook(save_steps=2, output_dir=output_dir, scaffold=sh.Scaffold())
    errors = []
    start = time.perf_counter()
    with sh.MonitoredSession(hooks=[hook]) as session:
        for _ in range(6):
            try:
                session.run(lambda: None)
            except sh.SummaryEvaluationError as raised:
                errors.append(str(raised))
            except (TypeError, ValueError) as raised:
                errors.append(f"{type(raised).__name__}: {raised}")
    return {"errors": errors, "seconds": time.perf_counter() - start}


if __name__ == "__main__":
    output_dir, mode = sys.argv[1], sys.argv[2]
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    rank = dist.get_rank()
    report = globals()[mode](output_dir, rank)
    with open(os.path.join(output_dir, f"rank{rank}.json"), "w") as f:
        json.dump(report, f)
    # Let go of the DTensors (the registered ops hold them) while the process groups
    # exist: torch may abort at exit when one outlives them.
    sh.clear_collection(None)
    dist.destroy_process_group()
