"""The command line: the demo job (both loops) and `show`, checked with TensorBoard's reader."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from summary_hook import readback
from tests.conftest import accumulator

pytestmark = pytest.mark.slow  # subprocesses, servers or several processes

PARAMETERS = [f"{layer}.{kind}" for layer in (0, 2, 4) for kind in ("weight", "bias")]
SCALARS = {
    "train/loss",
    "train/learning_rate",
    "global_norm/gradient_norm",
    *(f"weight_norm/{name}" for name in PARAMETERS),
    *(f"gradient_norm/{name}" for name in PARAMETERS),
    "zero_fraction/1",
    "zero_fraction/3",
}
HISTOGRAMS = {f"{kind}/{name}" for kind in ("weights", "gradients") for name in PARAMETERS} | {
    "activations/1",
    "activations/3",
}


def plain_demo(out: str, *args: str) -> None:
    """A quiet plain-loop demo into ``out`` (no plot, no progress bar)."""
    result = summary_hook(
        "demo", "--loop", "plain", "--output-dir", out, "--no-progress", "--no-plot", *args
    )
    assert result.returncode == 0, result.stderr[-3000:]


def summary_hook(*args: str, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "summary_hook", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


@pytest.mark.parametrize("loop", ["lightning", "plain"])
def test_demo_writes_reports_and_plots(tmp_path, loop):
    out = str(tmp_path / "demo")
    result = summary_hook(
        "demo",
        "--loop",
        loop,
        "--steps",
        "40",
        "--save-steps",
        "5",
        "--output-dir",
        out,
        "--no-progress",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    acc = accumulator(out)
    assert set(acc.Tags()["scalars"]) == SCALARS
    assert set(acc.Tags()["histograms"]) == HISTOGRAMS
    assert acc.Tags()["images"] == ["weights/layer0_map/image"]
    assert "train/report" in acc.Tags()["tensors"]
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 6, 11, 16, 21, 26, 31, 36]
    for tag in SCALARS | HISTOGRAMS | {"weights/layer0_map/image", "train/report"}:
        assert tag in result.stdout
    assert "   8           1         36" in result.stdout  # points, first step, last step
    assert os.path.getsize(os.path.join(out, "summaries.png")) > 10_000
    assert f"tensorboard --logdir {out}" in result.stdout


def test_demo_saves_by_seconds(tmp_path):
    out = str(tmp_path / "demo")
    result = summary_hook(
        "demo",
        "--steps",
        "20",
        "--save-secs",
        "0.001",
        "--output-dir",
        out,
        "--no-progress",
        "--no-plot",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    steps = [e.step for e in accumulator(out).Scalars("train/loss")]
    assert steps[0] == 1 and steps == sorted(set(steps)) and len(steps) > 1


def test_demo_rejects_both_schedules():
    result = summary_hook("demo", "--save-steps", "5", "--save-secs", "1")
    assert result.returncode == 2
    assert "not allowed with argument" in result.stderr


def test_show_prints_table_and_plots(tmp_path):
    out = str(tmp_path / "demo")
    plain_demo(out, "--steps", "10")
    png = str(tmp_path / "curves.png")
    result = summary_hook("show", out, "--plot", png)
    assert result.returncode == 0, result.stderr
    assert "train/loss" in result.stdout and "histogram" in result.stdout
    assert os.path.getsize(png) > 10_000


def test_show_names_a_missing_directory(tmp_path):
    result = summary_hook("show", str(tmp_path / "missing"))
    assert result.returncode == 2
    assert f"logdir {str(tmp_path / 'missing')!r} is not a directory" in result.stderr


def test_readback_frames_match_tensorboard(tmp_path):
    out = str(tmp_path / "demo")
    plain_demo(out, "--steps", "12", "--save-steps", "4")
    scalars = readback.read_scalars(out)
    acc = accumulator(out)
    loss = scalars[scalars.tag == "train/loss"]
    assert list(loss.step) == [e.step for e in acc.Scalars("train/loss")] == [1, 5, 9]
    assert list(loss.value) == [e.value for e in acc.Scalars("train/loss")]
    histograms = readback.read_histograms(out)
    assert set(histograms.tag) == HISTOGRAMS
    assert (histograms.num == histograms.bucket.map(sum)).all()
    rows = {row.tag: row for row in readback.summarize(out)}
    assert rows["train/loss"].points == 3 and rows["train/loss"].last_step == 9


#: Runs the command line as if matplotlib were not installed: importing it raises ImportError.
WITHOUT_MATPLOTLIB = (
    "import sys; sys.modules['matplotlib'] = None; "
    "from summary_hook.__main__ import main; sys.exit(main(sys.argv[1:]))"
)


def test_demo_without_matplotlib_reports_the_run_and_says_what_to_install(tmp_path):
    out = str(tmp_path / "demo")
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            WITHOUT_MATPLOTLIB,
            *("demo", "--loop", "plain", "--steps", "10"),
            *("--save-steps", "5", "--output-dir", out, "--no-progress"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert "no plot: plotting needs matplotlib: pip install 'summary_hook[plot]'" in result.stderr
    assert "train/loss" in result.stdout and f"tensorboard --logdir {out}" in result.stdout
    assert [e.step for e in accumulator(out).Scalars("train/loss")] == [1, 6]
    assert not os.path.exists(os.path.join(out, "summaries.png"))


def test_show_plot_without_matplotlib_prints_the_table_and_fails(tmp_path):
    out = str(tmp_path / "demo")
    plain_demo(out, "--steps", "5")
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_MATPLOTLIB, "show", out, "--plot", str(tmp_path / "p.png")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert "train/loss" in result.stdout and "Traceback" not in result.stderr
    assert "pip install 'summary_hook[plot]'" in result.stderr


@pytest.mark.parametrize(
    ("flag", "text", "api"),
    [
        ("--save-steps", "0", {"save_steps": 0}),
        ("--save-steps", "-3", {"save_steps": -3}),
        ("--save-secs", "nan", {"save_secs": float("nan")}),
        ("--save-secs", "0", {"save_secs": 0.0}),
    ],
)
def test_command_line_rejects_periods_as_the_api_does(flag, text, api):
    import summary_hook as sh

    with pytest.raises(ValueError) as raised:
        sh.SummarySaver(**api)
    result = summary_hook("demo", flag, text)
    assert result.returncode == 2
    assert f"argument {flag}: {raised.value}" in result.stderr


def test_command_line_names_an_unparsable_period():
    result = summary_hook("demo", "--save-steps", "ten")
    assert result.returncode == 2
    message = "argument --save-steps: save_steps must be a positive integer, got 'ten'"
    assert message in result.stderr


def test_plot_leaves_the_callers_matplotlib_backend_and_figures_alone(tmp_path):
    out = str(tmp_path / "demo")
    plain_demo(out, "--steps", "5")
    script = (
        "import matplotlib; matplotlib.use('svg'); import matplotlib.pyplot as plt; "
        "from summary_hook import readback; import sys; "
        "readback.plot(sys.argv[1], sys.argv[2]); "
        "print(matplotlib.get_backend(), plt.get_fignums())"
    )
    png = str(tmp_path / "p.png")
    result = subprocess.run(
        [sys.executable, "-c", script, out, png], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["svg", "[]"]
    assert os.path.getsize(png) > 10_000
