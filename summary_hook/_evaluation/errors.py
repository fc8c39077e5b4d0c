"""The error of a summary that could not be evaluated, shared by evaluation and the
collectives that combine values across ranks."""

from __future__ import annotations

__all__ = ["SummaryEvaluationError"]


class SummaryEvaluationError(RuntimeError):
    """A summary could not be evaluated; ``tag`` names it and ``__cause__`` says why.

    Args:
        tag: The summary's tag.
        error: What went wrong.
        what: What raised ``error``: by default the summary's function.
    """

    def __init__(self, tag: str, error: BaseException, what: str = "its function") -> None:
        super().__init__(f"summary {tag!r}: {what} raised {type(error).__name__}: {error}")
        self.tag = tag
