"""The README's first command, verbatim, on a fresh clone: it sets up a virtual
environment with only what the demo needs, and runs the demo, whose run TensorBoard's
reader then shows. (The second command is what CI runs, on a fresh clone too.)"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess

import pytest

from tests.conftest import ROOT, accumulator, readme_blocks

pytestmark = pytest.mark.slow  # a virtual environment of its own: a minute or two

#: What the demo's extra must not bring: the test, remote-storage and notebook tools.
NOT_FOR_THE_DEMO = ("pytest", "hypothesis", "moto", "s3fs", "ruff", "mypy", "nbclient")


@pytest.mark.skipif(
    not os.path.isdir(os.path.join(ROOT, ".git")) or shutil.which("git") is None,
    reason="clones the repository: needs git and a git checkout",
)
def test_the_demo_command_sets_up_and_runs_on_a_fresh_clone(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", ROOT, str(clone)], check=True, timeout=120)
    (_, demo), _ = readme_blocks()[:2]
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", demo],
        cwd=clone,
        capture_output=True,
        text=True,
        timeout=900,
        env={k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "tensorboard --logdir" in result.stdout  # it says how to open the run
    installed = subprocess.run(
        [str(clone / ".venv" / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
        capture_output=True, text=True, check=True,
    ).stdout.lower()  # fmt: skip
    names = {line.split("==")[0] for line in installed.splitlines()}
    assert "lightning" in names and "matplotlib" in names
    assert not names & set(NOT_FOR_THE_DEMO), names & set(NOT_FOR_THE_DEMO)
    (run,) = {
        os.path.dirname(p)
        for p in glob.glob(str(clone / "runs" / "demo" / "**" / "*tfevents*"), recursive=True)
    }
    tags = accumulator(run).Tags()
    assert tags["scalars"] and tags["histograms"]
