"""Summary ops and the processes a spawn-based strategy starts (``strategy="ddp_spawn"``).

Such a strategy pickles the ``Trainer``, its callbacks and the module, and unpickles them
in fresh interpreters, whose collections of summary ops are empty: the ops a module
registered in its ``__init__`` stayed in the main process. So a ``SummarySaver``, when
pickled, takes the default collection's ops along, and registers them again in the new
process before the module's ``setup``. A summary function that cannot be pickled (a
``lambda``, a function defined in another function) cannot cross: pickling the saver then
raises, in the main process, an error that names the ops and says what to do.

Ops a module registers in ``setup()`` or ``configure_model()`` are registered in every
process and need none of this; nor do fork-based strategies (``ddp_fork``,
``ddp_notebook``), whose processes start with the main process's collections.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any

from summary_hook._ops.summary_ops import SUMMARIES, SummaryOp, register, registrations

__all__ = ["portable_collection", "register_again"]

_ADVICE = (
    "register the ops in the LightningModule's setup() or configure_model(), which run in "
    "every process, or use strategy='ddp', whose processes run your script"
)


def portable_collection(explicit: object) -> list[tuple[str, SummaryOp]]:
    """The default collection's ops and their registration names, to cross to a spawned
    process with the saver; checks that ``explicit`` (a saver's own ``summary_op`` or
    ``scaffold``) can cross too.

    Raises:
        TypeError: If the ops, or ``explicit``, cannot be pickled, naming them.
    """
    if explicit is not None:
        _check_portable(explicit, "the summary_op or scaffold given to SummarySaver")
        return []
    ops = registrations(SUMMARIES)
    if ops:
        tags = ", ".join(repr(tag) for _, op in ops for tag in op.tags)
        _check_portable(ops, f"the summary ops registered in this process ({tags})")
    return ops


def register_again(ops: Sequence[tuple[str, SummaryOp]]) -> None:
    """In a spawned process: register the ops that came from the main process, each
    under its name there, so that the module's own registrations replace them."""
    for key, op in ops:
        register(op, None, key=key)


def _check_portable(value: Any, what: str) -> None:
    try:
        pickle.dumps(value)
    except Exception as error:
        raise TypeError(
            f"SummarySaver: a spawn-based strategy (strategy='ddp_spawn') starts fresh "
            f"processes and pickles the Trainer for them, but {what} cannot be pickled "
            f"({error}); {_ADVICE}"
        ) from error
