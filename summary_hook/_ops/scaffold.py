"""``Scaffold``: where a session finds its default summary op."""

from __future__ import annotations

from summary_hook._ops.summary_ops import SummaryOp, merge_all

__all__ = ["Scaffold"]


class Scaffold:
    """Holds the summary op of a session, defaulting to ``merge_all()`` at finalize time.

    Args:
        summary_op: The op to use; when None, :meth:`finalize` merges the default
            collection, so ops registered before the session starts are included.

    Raises:
        TypeError: If ``summary_op`` is not a summary op.

    Example:
        >>> import summary_hook as sh
        >>> sh.clear_collection()
        >>> loss = sh.scalar("loss", lambda out: out)  # registered in the default collection
        >>> scaffold = Scaffold()
        >>> scaffold.summary_op is None
        True
        >>> scaffold.finalize()
        >>> scaffold.summary_op.tags
        ('loss',)
        >>> sh.clear_collection()
    """

    def __init__(self, summary_op: SummaryOp | None = None) -> None:
        if summary_op is not None and not isinstance(summary_op, SummaryOp):
            raise TypeError(f"summary_op must be a summary op or None, got {summary_op!r}")
        self._summary_op = summary_op
        self._finalized = False

    @property
    def summary_op(self) -> SummaryOp | None:
        """The summary op: None until :meth:`finalize` when none was given."""
        return self._summary_op

    @property
    def finalized(self) -> bool:
        """Whether :meth:`finalize` has run."""
        return self._finalized

    def finalize(self) -> None:
        """Resolve the default summary op (``merge_all()``). Idempotent."""
        if self._finalized:
            return
        if self._summary_op is None:
            self._summary_op = merge_all()
        self._finalized = True
