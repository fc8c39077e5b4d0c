"""TensorFlow's ``SummarySaverHook`` for PyTorch and Lightning.

Summary ops are closures evaluated only on due steps, moved to the host in one
transfer, and written as TensorFlow writes them. ``import summary_hook`` does not
import Lightning; :class:`SummarySaver` and :class:`HookCallback` load it on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from summary_hook import _fork  # noqa: F401  (registers what a forked child resets)
from summary_hook._evaluate import SummaryEvaluationError, evaluate
from summary_hook._event_file import WriterError
from summary_hook._hooks import (
    SessionRunArgs,
    SessionRunContext,
    SessionRunHook,
    SessionRunValues,
)
from summary_hook._ops import (
    SUMMARIES,
    SummaryOp,
    clear_collection,
    get_collection,
    histogram,
    merge,
    merge_all,
    scalar,
)
from summary_hook._scaffold import Scaffold
from summary_hook._session import MonitoredSession, StepSession
from summary_hook._summary_saver import SummarySaverHook
from summary_hook._timer import NeverTriggerTimer, SecondOrStepTimer
from summary_hook._version import __version__
from summary_hook._writer import FileWriter
from summary_hook._writer_cache import SummaryWriterCache

if TYPE_CHECKING:
    from summary_hook._lightning import HookCallback, SummarySaver

__all__ = [
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
    "StepSession",
    "SummaryEvaluationError",
    "SummaryOp",
    "SummarySaver",
    "SummarySaverHook",
    "SummaryWriterCache",
    "WriterError",
    "__version__",
    "clear_collection",
    "evaluate",
    "get_collection",
    "histogram",
    "merge",
    "merge_all",
    "scalar",
]

_LAZY = {"HookCallback", "SummarySaver"}


def __getattr__(name: str) -> Any:
    # Lazy import: plain PyTorch loops never pay for importing Lightning.
    if name in _LAZY:
        from summary_hook import _lightning

        return getattr(_lightning, name)
    raise AttributeError(f"module 'summary_hook' has no attribute {name!r}")
