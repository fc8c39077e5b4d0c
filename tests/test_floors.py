"""The declared floors of the dependencies the code supports, tested where they can be
installed beside this environment's torch: Lightning and transformers are pure Python,
so their floors run their front ends' tests here. (torch's own floor, 2.7, needs another
build of torch, which this CPU-only environment does not install; CI tests torch 2.13.)"""

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


def run_tests_on(tmp_path, requirements: list[str], module: str, tests: list[str]) -> None:
    """Install ``requirements`` (no dependencies of theirs) into a directory put first on
    the path, check that ``module`` is the floor's, then run ``tests`` there."""
    target = tmp_path / "floor"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
         *requirements],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(target)}
    version = subprocess.run(
        [sys.executable, "-c", f"import {module}; print({module}.__version__)"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert f"{module}=={version}" == requirements[0]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:]


def test_the_lightning_floor_passes_the_lightning_tests(tmp_path):
    floor = declared_floor("lightning")
    tests = ["tests/test_lightning.py", "tests/test_resume.py"]
    run_tests_on(tmp_path, [f"lightning=={floor}"], "lightning", tests)


def test_the_transformers_floor_passes_the_huggingface_tests(tmp_path):
    floor = declared_floor("transformers")
    # transformers 5.0 pins tokenizers and huggingface-hub below what 5.24 brings.
    companions = ["tokenizers==0.22.1", "huggingface-hub==1.3.0"]
    requirements = [f"transformers=={floor}", *companions]
    run_tests_on(tmp_path, requirements, "transformers", ["tests/test_huggingface.py"])
