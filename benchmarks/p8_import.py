"""P8: the time of ``import summary_hook`` in fresh processes, and that Lightning stays out."""

from __future__ import annotations

import statistics
import subprocess
import sys

from benchmarks.harness import Result


def p8_import(repeats: int) -> Result:
    code = (
        "import time, sys; s = time.perf_counter(); import summary_hook; "
        "print(time.perf_counter() - s, 'lightning' in sys.modules)"
    )
    runs = [
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
        for _ in range(repeats)
    ]
    seconds = statistics.median(float(r[0]) for r in runs)
    lightning = any(r[1] == "True" for r in runs)
    torch_code = (
        "import time; s = time.perf_counter(); import torch; print(time.perf_counter() - s)"
    )
    torch_s = statistics.median(
        float(
            subprocess.run(
                [sys.executable, "-c", torch_code], capture_output=True, text=True, check=True
            ).stdout
        )
        for _ in range(repeats)
    )
    return Result(
        "P8",
        "import summary_hook (torch included)",
        seconds * 1e3,
        "ms",
        "does not import lightning; report the time",
        not lightning,
        {"imports_lightning": lightning, "import_torch_alone_ms": torch_s * 1e3},
        f"import torch alone: {torch_s * 1e3:.0f} ms; lightning imported: {lightning}",
    )


def measure(quick: bool, device: str) -> Result:
    return p8_import(2 if quick else 5)
