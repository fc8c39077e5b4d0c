"""TensorFlow's ``SummarySaverHook`` for PyTorch and Lightning.

Summary ops are closures evaluated only on due steps, moved to the host in one
transfer, and written as TensorFlow writes them. ``import summary_hook`` does not
import Lightning; :class:`SummarySaver` and :class:`HookCallback` load it on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from summary_hook import _fork  # noqa: F401  (registers what a forked child resets)
from summary_hook._evaluation.evaluate import SummaryEvaluationError, evaluate
from summary_hook._events.event_file import WriterError
from summary_hook._events.writer import FileWriter
from summary_hook._events.writer_cache import SummaryWriterCache
from summary_hook._front_ends.session import MonitoredSession, StepSession
from summary_hook._hooks.protocol import (
    SessionRunArgs,
    SessionRunContext,
    SessionRunHook,
    SessionRunValues,
)
from summary_hook._hooks.step_counter import StepCounterHook
from summary_hook._hooks.summary_saver import SummarySaverHook
from summary_hook._hooks.timer import NeverTriggerTimer, SecondOrStepTimer
from summary_hook._ops.scaffold import Scaffold
from summary_hook._ops.summary_ops import (
    SUMMARIES,
    SummaryOp,
    audio,
    clear_collection,
    get_collection,
    histogram,
    image,
    merge,
    merge_all,
    scalar,
    text,
)
from summary_hook._ops.taps import output_of
from summary_hook._ops.watch import watch
from summary_hook._version import __version__

if TYPE_CHECKING:
    from summary_hook._front_ends.lightning import HookCallback, SummarySaver

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

_LAZY = {"HookCallback", "SummarySaver"}


def __getattr__(name: str) -> Any:
    # Lazy import: plain PyTorch loops never pay for importing Lightning.
    if name in _LAZY:
        try:
            from summary_hook._front_ends import lightning as _lightning
        except ImportError as error:
            raise ImportError(
                f"summary_hook.{name} needs Lightning: pip install 'summary_hook[lightning]'"
            ) from error
        return getattr(_lightning, name)
    raise AttributeError(f"module 'summary_hook' has no attribute {name!r}")
