"""notebooks/quickstart.ipynb runs top to bottom, and its committed outputs are current."""

from __future__ import annotations

import os

import nbformat
from nbclient import NotebookClient

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "notebooks", "quickstart.ipynb")


def test_quickstart_runs_top_to_bottom(tmp_path, monkeypatch):
    monkeypatch.setenv("CI", "true")  # skips the cell that would start a TensorBoard server
    monkeypatch.setenv("PYTHONWARNINGS", "ignore")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert not [o for cell in code for o in cell.outputs if o.output_type == "error"]
    text = "\n".join(
        o.get("text", "") + o.get("data", {}).get("text/plain", "")
        for cell in code
        for o in cell.outputs
    )
    assert "[('train/loss',), ('weights/net',), ('grads/net',)]" in text  # no doubling
    for run in ("by_hand", "session", "lightning"):
        assert os.path.isdir(tmp_path / "runs" / "notebook" / run)
    assert any("image/png" in o.get("data", {}) for cell in code for o in cell.outputs)


def test_committed_notebook_has_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code)
    assert sum(bool(cell.outputs) for cell in code) >= 5
