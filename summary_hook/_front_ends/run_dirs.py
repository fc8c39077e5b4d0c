"""Where a Lightning run's summaries go: one run directory, written by one writer.

TensorBoard shows the event files of one directory as one run, and reads them in name
order; a ``SessionLog.START`` in one file then purges the points of the files read before
it, and the UI's loader follows only the newest file of a directory live. So, as
TensorFlow's ``FileWriterCache`` intended, one run directory has one writer:

- With a ``TensorBoardLogger``, the summaries go through its own ``SummaryWriter``
  (``logger.experiment``): Lightning's metrics and the summaries share one file in
  ``logger.log_dir``, and the logger's versioning decides the run.
- Else with a ``CSVLogger``, into a file of this package's in its version directory.
- Else into ``<default_root_dir>/summaries/version_<n>``, claiming the next free ``n``
  for each ``Trainer``, or the directory of the run that a checkpoint resumes.

The savers of one ``Trainer`` share its writer. A writer this package opened for a run
is closed when the fit tears down, and with the ``Trainer`` if that never happens.

Thread contract: called from the training thread of each ``Trainer``; ``_runs`` is a
``WeakKeyDictionary``, so a dropped ``Trainer`` takes its entry and writer with it.
"""

from __future__ import annotations

import os
import re
import weakref
from dataclasses import dataclass

import lightning.pytorch as pl
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from summary_hook._events.hook_writers import HookWriter, as_summary_writer
from summary_hook._events.writer import FileWriter

__all__ = ["RunWriter", "close_run", "run_writer"]


@dataclass
class RunWriter:
    """The directory of a run and the writer its savers share."""

    log_dir: str
    writer: HookWriter
    owned: FileWriter | None  # opened by this package for the run: closed at teardown


_runs: weakref.WeakKeyDictionary[pl.Trainer, RunWriter] = weakref.WeakKeyDictionary()


def run_writer(trainer: pl.Trainer, resumed_dir: str | None) -> RunWriter:
    """The writer of ``trainer``'s run, opened on first use; call on global rank zero only.

    Args:
        trainer: The ``Trainer`` whose run it is.
        resumed_dir: The directory a resumed checkpoint's saver wrote to, if any; used
            when no logger decides the run.
    """
    run = _runs.get(trainer)
    if run is None:
        run = _runs[trainer] = _open_run(trainer, resumed_dir)
    elif run.owned is not None:
        run.owned.reopen()  # a later fit of the same Trainer: the same run, a new file
    return run


def close_run(trainer: pl.Trainer) -> None:
    """Close the writer this package opened for ``trainer``'s run, if any."""
    run = _runs.get(trainer)
    if run is not None and run.owned is not None:
        run.owned.close()


def _open_run(trainer: pl.Trainer, resumed_dir: str | None) -> RunWriter:
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return RunWriter(logger.log_dir, as_summary_writer(logger.experiment), None)
    csv = next((logger for logger in trainer.loggers if isinstance(logger, CSVLogger)), None)
    if csv is not None:
        log_dir = csv.log_dir
    elif resumed_dir is not None:
        log_dir = resumed_dir
    else:
        log_dir = claim_version_dir(os.path.join(trainer.default_root_dir, "summaries"))
    writer = FileWriter(log_dir)
    return RunWriter(log_dir, writer, writer)


def claim_version_dir(root: str) -> str:
    """Create and return ``root/version_<n>`` for the first ``n`` no one has taken.

    The directory is created with ``exist_ok=False``, so two processes never claim
    the same one.

    Example:
        >>> import tempfile
        >>> root = tempfile.mkdtemp()
        >>> [os.path.basename(claim_version_dir(root)) for _ in range(2)]
        ['version_0', 'version_1']
    """
    os.makedirs(root, exist_ok=True)
    taken = [int(m.group(1)) for m in map(_VERSION.fullmatch, os.listdir(root)) if m]
    version = max(taken, default=-1) + 1
    while True:
        path = os.path.join(root, f"version_{version}")
        try:
            os.mkdir(path)
        except FileExistsError:
            version += 1
            continue
        return path


_VERSION = re.compile(r"version_(\d+)")
