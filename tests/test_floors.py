"""The declared floors of the dependencies the code supports, tested where they can be
installed beside this environment's torch: Lightning is pure Python, so its floor runs
the Lightning tests here. (torch's own floor, 2.7, needs another build of torch, which
this CPU-only environment does not install; CI tests torch 2.13.)"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow  # a download and a test run of their own


def declared_floor(package: str) -> str:
    with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as f:
        found = re.search(rf'"{package}>=([\d.]+)"', f.read())
    assert found, f"pyproject.toml declares no floor for {package}"
    return found.group(1)


def test_the_lightning_floor_passes_the_lightning_tests(tmp_path):
    floor = declared_floor("lightning")
    target = tmp_path / "floor"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
         f"lightning=={floor}"],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(target)}
    version = subprocess.run(
        [sys.executable, "-c", "import lightning; print(lightning.__version__)"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert version == floor
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/test_lightning.py", "tests/test_resume.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:]
