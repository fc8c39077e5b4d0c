"""Every code block of the README and of the docs runs, in order, so neither can drift
from the code."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT, doc_blocks, docs_pages, readme_blocks
from tests.readers import ended_well, free_port

pytestmark = pytest.mark.slow  # subprocesses, servers or several processes

BIN = os.path.dirname(sys.executable)


def test_readme_starts_with_the_two_set_up_commands():
    (lang1, demo), (lang2, tests) = readme_blocks()[:2]
    assert lang1 == lang2 == "bash"
    setup = "python3 -m venv .venv && .venv/bin/pip install -q torch==2.13.0 -e "
    assert demo.startswith(setup + '".[demo]"')  # only what the demo needs
    assert tests.startswith(setup + '".[dev]"')
    assert demo.strip().endswith(".venv/bin/summary-hook demo")  # run by tests/test_cli.py
    assert tests.strip().endswith(".venv/bin/python -m pytest -n auto --maxprocesses 4")


def test_ci_runs_the_readme_test_command():
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as script:
        extract = re.search(r"^command=\$\((.*)\)$", script.read(), flags=re.M)
    assert extract, ".ci/run no longer takes its command from the README"
    ran = subprocess.run(
        ["bash", "-c", extract.group(1)], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert ran.stdout.strip() == readme_blocks()[1][1].strip()


#: How a README example that needs several processes says so; it runs that way.
TORCHRUN = "# torchrun --nproc_per_node 2 this_script.py"


def torchrun_command(code: str, path: os.PathLike[str]) -> list[str]:
    """Run ``code`` as the README says: two ranks under ``torchrun``, on a free port."""
    with open(path, "w") as f:
        f.write(code)
    return [
        os.path.join(BIN, "torchrun"),
        "--nproc_per_node",
        "2",
        "--master_port",
        str(free_port()),
        str(path),
    ]


def run_blocks(blocks: list[tuple[str, str]], cwd: os.PathLike[str], where: str) -> None:
    """Run each block as a user would, in order, in ``cwd``: Python in a fresh
    interpreter (under ``torchrun`` when the block says so), bash with this environment's
    ``.venv/bin``. A ``text`` block shows what to type elsewhere and is not run."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "MPLBACKEND": "Agg"}
    for index, (language, code) in enumerate(blocks):
        if language == "text":
            continue
        if language == "python" and TORCHRUN in code:
            command = torchrun_command(code, os.path.join(cwd, f"block{index}.py"))
        elif language == "python":
            command = [sys.executable, "-c", code]
        else:
            assert language == "bash", f"{where} block {index}: unknown language {language}"
            command = ["bash", "-euo", "pipefail", "-c", code.replace(".venv/bin/", BIN + "/")]
        result = subprocess.run(
            command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300
        )
        if TORCHRUN in code:  # torch may abort a rank at exit; the journey checks its files
            assert ended_well(result.returncode, result.stderr), result.stderr[-3000:]
        else:
            assert result.returncode == 0, (
                f"{where} block {index}:\n{code}\n{result.stderr[-3000:]}"
            )


def test_every_other_block_runs_in_order(tmp_path):
    blocks = readme_blocks()[2:]
    assert [language for language, _ in blocks].count("python") >= 2, "no usage shown"
    run_blocks(blocks, tmp_path, "README")
    assert os.path.exists(tmp_path / "runs" / "exp1")  # the plain loop's run


@pytest.mark.parametrize("page", docs_pages())
def test_every_block_of_each_docs_page_runs_in_order(tmp_path, page):
    run_blocks(doc_blocks(page), tmp_path, page)


def test_the_readme_links_to_files_that_exist():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as readme:
        links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme.read())
    local = [link for link in links if "://" not in link]
    assert local, "the README links into no page"
    missing = [link for link in local if not os.path.exists(os.path.join(ROOT, link))]
    assert not missing, missing
