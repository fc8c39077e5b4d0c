"""The public surface: pinned names, lazy Lightning, and a typed package."""

from __future__ import annotations

import os
import subprocess
import sys

import summary_hook as sh

PUBLIC = [
    "SUMMARIES",
    "FileWriter",
    "HookCallback",
    "MonitoredSession",
    "NeverTriggerTimer",
    "Scaffold",
    "SecondOrStepTimer",
    "SessionRunArgs",
    "SessionRunContext",
    "SessionRunHook",
    "SessionRunValues",
    "StepCounterHook",
    "StepSession",
    "SummaryEvaluationError",
    "SummaryOp",
    "SummarySaver",
    "SummarySaverHook",
    "SummaryWriterCache",
    "WriterError",
    "__version__",
    "audio",
    "clear_collection",
    "evaluate",
    "get_collection",
    "histogram",
    "image",
    "merge",
    "merge_all",
    "output_of",
    "scalar",
    "text",
    "watch",
]


def test_public_names_are_pinned_and_sorted():
    assert sh.__all__ == PUBLIC
    for name in sh.__all__:
        assert getattr(sh, name) is not None


def test_import_does_not_import_lightning():
    code = (
        "import sys, summary_hook; "
        "print('lightning' in sys.modules, 'lightning.pytorch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_lightning_names_load_on_first_use():
    code = (
        "import sys, summary_hook as sh; sh.SummarySaver; print('lightning.pytorch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True"]


def test_package_is_typed():
    assert os.path.exists(os.path.join(os.path.dirname(sh.__file__), "py.typed"))


def test_without_lightning_the_package_works_and_the_callbacks_say_what_to_install():
    import subprocess
    import sys

    script = (
        "import sys; sys.modules['lightning'] = None  # as if it were not installed\n"
        "import summary_hook as sh\n"
        "op = sh.scalar('x', lambda: 1.0, collections=[])\n"
        "assert sh.evaluate(op).value[0].simple_value == 1.0\n"
        "try:\n"
        "    sh.SummarySaver\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == (
        "summary_hook.SummarySaver needs Lightning: pip install 'summary_hook[lightning]'"
    )
