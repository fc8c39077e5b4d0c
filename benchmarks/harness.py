"""The benchmark harness: results, timing with contenders taking turns, machine facts,
the table, and the counters that the test suite shares.

Each measurement (``benchmarks/p*.py``) has ``measure(quick, device) -> Result`` and sets
up and removes what it needs; ``run.py`` runs them and writes the table and the JSON.
"""

from __future__ import annotations

import contextlib
import gc
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = [
    "CountCollectives",
    "CountTransfers",
    "Result",
    "count_cuda_syncs",
    "format_results",
    "machine",
    "median_time",
    "median_times",
    "rss_mb",
    "scalars",
    "writer_path",
]


@dataclass
class Result:
    id: str
    measurement: str
    value: float
    unit: str
    target: str
    met: bool | None
    details: dict[str, Any] = field(default_factory=dict)
    comparison: str = ""  # the ratios that the target is about, for the printed table


def median_time(fn: Callable[[], object], repeats: int, number: int = 1) -> float:
    """Median over ``repeats`` of the mean seconds per call over ``number`` calls."""
    return median_times({"fn": fn}, repeats, number)["fn"]


def median_times(
    fns: Mapping[str, Callable[[], object]],
    repeats: int,
    number: int = 1,
    settle: Mapping[str, Callable[[], object]] | None = None,
) -> dict[str, float]:
    """:func:`median_time` of several functions, their repeats taking turns, so that a
    noisy spell on a shared machine hits each alike and their ratios stay fair.

    ``settle`` maps a name to what finishes the work its function left running, such as
    a writer thread's; it runs untimed after each turn. Without it, that work competes
    for the interpreter with the next contender and is charged to it: torch's
    ``add_histogram`` left 1 ms of event serialisation to its writer thread, which
    showed up in the next contender's time.
    """
    settle = settle or {}
    for fn in fns.values():
        fn()  # warm up
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            gc.collect()
            start = time.perf_counter()
            for _ in range(number):
                fn()
            times[name].append((time.perf_counter() - start) / number)
            if name in settle:
                settle[name]()
    return {name: statistics.median(values) for name, values in times.items()}


def scalars(n: int, device: str) -> list[torch.Tensor]:
    return [torch.tensor(float(i) / 7, device=device) for i in range(n)]


class CountTransfers(TorchDispatchMode):
    """Counts copies to the host and ``.item()``-style reads: the ways a value leaves a
    device. Used by P3 and P4, and by the tests of laziness and the one transfer."""

    def __init__(self) -> None:
        super().__init__()
        self.transfers = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func is torch.ops.aten._local_scalar_dense.default or (
            func is torch.ops.aten._to_copy.default and str(kwargs.get("device")) == "cpu"
        ):
            self.transfers += 1
        return func(*args, **kwargs)


class CountCollectives(TorchDispatchMode):
    """Counts the collectives that go through torch's dispatcher (``c10d`` and its
    functional form, as DTensor uses), and the bytes of the tensors handed to them,
    per step: :meth:`step` sorts the steps into due and non-due ones. Used by the
    distributed benchmark and the multi-process tests."""

    _NAMESPACES = ("c10d", "_c10d_functional")
    _NOT_COLLECTIVES = ("wait_tensor", "_wrap_tensor_autograd")

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []
        self.bytes = 0
        self.steps: dict[str, list[dict[str, Any]]] = {"due": [], "non_due": []}

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        name = func.name()
        if func.namespace in self._NAMESPACES and not any(
            part in name for part in self._NOT_COLLECTIVES
        ):
            self.calls.append(name.split("::")[-1])
            self.bytes += sum(t.nbytes for t in _tensors_in(args))
        return func(*args, **kwargs)

    @contextlib.contextmanager
    def step(self, due: bool) -> Iterator[None]:
        """Count the collectives of one step, filed under due or non-due steps."""
        calls, bytes_before = len(self.calls), self.bytes
        with self:
            yield
        record = {"collectives": self.calls[calls:], "bytes": self.bytes - bytes_before}
        self.steps["due" if due else "non_due"].append(record)

    def report(self) -> dict[str, Any]:
        return {"steps": self.steps}


def _tensors_in(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors_in(item)


def count_cuda_syncs(fn: Callable[[], object]) -> int:
    """How many times ``fn`` synchronises the host with the GPU, from torch's sync debug
    mode, which warns on each synchronising call."""
    torch.cuda.synchronize()
    previous = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # (setting the mode warns too, on some versions)
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode(previous)
    return sum("called a synchronizing CUDA operation" in str(w.message) for w in caught)


def rss_mb() -> float:
    """Resident memory of this process, in MB (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def writer_path(logdir: str) -> str:
    """The one event file in ``logdir``."""
    (name,) = [n for n in os.listdir(logdir) if "tfevents" in n]
    return os.path.join(logdir, name)


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
    }
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            info["cpu"] = next(
                line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def format_results(results: list[Result]) -> str:
    lines = [
        "| # | measurement | result | compared | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        met = {True: "yes", False: "**no**", None: "n/a"}[r.met]
        result = f"{r.value:.3g} {r.unit}"
        lines.append(
            f"| {r.id} | {r.measurement} | {result} | {r.comparison} | {r.target} | {met} |"
        )
    return "\n".join(lines)
