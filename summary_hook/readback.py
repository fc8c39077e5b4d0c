"""Read any TensorBoard log directory back, with TensorBoard's own ``EventAccumulator``.

TensorBoard's reader is used rather than a parser of our own so that what comes back
is what TensorBoard shows: the same purge of stale points after a restart, the same
handling of a truncated last record. Files are checked first: a corrupted record
header is reported and the file is read up to it, never past it. A URL
(``s3://bucket/runs``, any fsspec filesystem) is read the same way, from a copy of its
event files fetched once. ``pandas`` and ``matplotlib`` come with the ``plot`` extra and
are imported only where needed.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from summary_hook._events.records import scan_records
from summary_hook._events.remote import is_remote, remote_filesystem

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["TagSummary", "format_table", "plot", "read_histograms", "read_scalars", "summarize"]

#: Longest record read back (TensorBoard's reader allocates what a header claims).
_MAX_RECORD_BYTES = 256 * 2**20
#: What :func:`plot` says when matplotlib is missing.
PLOT_NEEDS = "plotting needs matplotlib: pip install 'summary_hook[plot]'"
_LOAD_EVERYTHING = {"scalars": 0, "histograms": 0, "tensors": 0, "images": 0, "audio": 0}


@dataclass(frozen=True)
class TagSummary:
    """One row of :func:`summarize`: what a run holds for one tag."""

    run: str
    tag: str
    kind: str
    points: int
    first_step: int
    last_step: int
    last_value: float


def _runs(logdir: str) -> Iterator[tuple[str, EventAccumulator]]:
    """Each directory under ``logdir`` holding event files, as TensorBoard's runs."""
    if is_remote(logdir):
        with _fetched(logdir) as local:
            yield from _runs(local)
        return
    if not os.path.isdir(logdir):
        raise FileNotFoundError(f"logdir {logdir!r} is not a directory")
    for directory, _, files in sorted(os.walk(logdir)):
        names = sorted(name for name in files if "tfevents" in name)
        if names:
            with _sound_copy(directory, names) as readable:
                accumulator = EventAccumulator(readable, size_guidance=_LOAD_EVERYTHING)
                accumulator.Reload()
            yield os.path.relpath(directory, logdir), accumulator


@contextlib.contextmanager
def _fetched(url: str) -> Iterator[str]:
    """A local copy of the event files under ``url``, removed afterwards.

    Raises:
        FileNotFoundError: If nothing is there.
    """
    filesystem, root = remote_filesystem(url)
    names = [path for path in filesystem.find(root) if "tfevents" in path.rsplit("/", 1)[-1]]
    if not names:
        raise FileNotFoundError(f"logdir {url!r} holds no event files")
    with tempfile.TemporaryDirectory() as local:
        for name in names:
            target = os.path.join(local, os.path.relpath(name, root))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            filesystem.get_file(name, target)
        yield local


@contextlib.contextmanager
def _sound_copy(directory: str, names: list[str]) -> Iterator[str]:
    """``directory`` itself, or a temporary copy whose damaged files are cut before the damage.

    Every record header is checked first, so a corrupted or hostile length field never
    reaches TensorBoard's reader, which would try to allocate what it claims. Each damaged
    file is reported with a ``RuntimeWarning``; the records before the damage are kept.
    """
    damaged = {}
    for name in names:
        path = os.path.join(directory, name)
        with open(path, "rb") as file:
            good, problem = scan_records(
                file, os.fstat(file.fileno()).st_size, max_record_bytes=_MAX_RECORD_BYTES
            )
        if problem is not None and not _is_truncated_tail(problem):
            warnings.warn(
                f"{path}: {problem}; reading the {good} bytes before it",
                RuntimeWarning,
                stacklevel=4,
            )
            damaged[name] = good
    if not damaged:
        # Sound, or only a partly written last record (its length checked above), which
        # TensorBoard's reader skips.
        yield directory
        return
    with tempfile.TemporaryDirectory(prefix="summary_hook_read_") as copy:
        for name in names:
            source = os.path.join(directory, name)
            if name in damaged:
                with open(source, "rb") as file, open(os.path.join(copy, name), "wb") as out:
                    out.write(file.read(damaged[name]))
            else:
                os.symlink(os.path.abspath(source), os.path.join(copy, name))
        yield copy


def _is_truncated_tail(problem: str) -> bool:
    return problem.startswith("truncated record")


def _require_pandas() -> Any:
    try:
        import pandas as pd
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError(
            "reading into DataFrames needs pandas: pip install 'summary_hook[plot]'"
        ) from error
    return pd


def read_scalars(logdir: str | os.PathLike[str]) -> pd.DataFrame:
    """Every scalar in ``logdir`` as a DataFrame with columns run, tag, step, wall_time, value.

    Raises:
        FileNotFoundError: If ``logdir`` is not a directory.

    Example:
        >>> import tempfile, summary_hook as sh
        >>> logdir = tempfile.mkdtemp()
        >>> loss = sh.scalar("loss", lambda: 0.5, collections=[])
        >>> hook = sh.SummarySaverHook(save_steps=1, output_dir=logdir, summary_op=loss)
        >>> with sh.MonitoredSession(hooks=[hook]) as sess:
        ...     sess.run(lambda: None)
        >>> sh.SummaryWriterCache.get(logdir).flush()
        >>> read_scalars(logdir)[["tag", "step", "value"]].values.tolist()
        [['loss', 1, 0.5]]
    """
    pd = _require_pandas()
    rows = [
        (run, tag, event.step, event.wall_time, event.value)
        for run, accumulator in _runs(os.fspath(logdir))
        for tag in accumulator.Tags()["scalars"]
        for event in accumulator.Scalars(tag)
    ]
    return pd.DataFrame(rows, columns=["run", "tag", "step", "wall_time", "value"])


def read_histograms(logdir: str | os.PathLike[str]) -> pd.DataFrame:
    """Every histogram in ``logdir``: run, tag, step, wall_time, min, max, num, sum,
    sum_squares, bucket_limit, bucket (the last two as lists).

    Raises:
        FileNotFoundError: If ``logdir`` is not a directory.
    """
    pd = _require_pandas()
    rows = []
    for run, accumulator in _runs(os.fspath(logdir)):
        for tag in accumulator.Tags()["histograms"]:
            for event in accumulator.Histograms(tag):
                h = event.histogram_value
                rows.append(
                    (
                        run,
                        tag,
                        event.step,
                        event.wall_time,
                        h.min,
                        h.max,
                        h.num,
                        h.sum,
                        h.sum_squares,
                        list(h.bucket_limit),
                        list(h.bucket),
                    )
                )
    columns = [
        "run",
        "tag",
        "step",
        "wall_time",
        "min",
        "max",
        "num",
        "sum",
        "sum_squares",
        "bucket_limit",
        "bucket",
    ]
    return pd.DataFrame(rows, columns=columns)


def summarize(logdir: str | os.PathLike[str]) -> list[TagSummary]:
    """One :class:`TagSummary` per run and tag: points, first and last step, last value.

    A histogram's last value is the mean of its last point; an image's, a clip's and a
    text's is NaN.

    Raises:
        FileNotFoundError: If ``logdir`` is not a directory.
    """
    rows = []
    for run, accumulator in _runs(os.fspath(logdir)):
        tags = accumulator.Tags()
        for tag in tags["scalars"]:
            events = accumulator.Scalars(tag)
            rows.append(
                TagSummary(
                    run,
                    tag,
                    "scalar",
                    len(events),
                    events[0].step,
                    events[-1].step,
                    events[-1].value,
                )
            )
        for tag in tags["histograms"]:
            events = accumulator.Histograms(tag)
            last = events[-1].histogram_value
            mean = last.sum / last.num if last.num else float("nan")
            rows.append(
                TagSummary(
                    run, tag, "histogram", len(events), events[0].step, events[-1].step, mean
                )
            )
        for tag in tags["images"]:
            images = accumulator.Images(tag)
            rows.append(
                TagSummary(
                    run, tag, "image", len(images), images[0].step, images[-1].step, float("nan")
                )
            )
        for tag in tags["audio"]:
            clips = accumulator.Audio(tag)
            rows.append(
                TagSummary(
                    run, tag, "audio", len(clips), clips[0].step, clips[-1].step, float("nan")
                )
            )
        for tag in tags["tensors"]:
            metadata = accumulator.SummaryMetadata(tag)
            if metadata.plugin_data.plugin_name == "text":
                texts = accumulator.Tensors(tag)
                first, last = texts[0].step, texts[-1].step
                rows.append(TagSummary(run, tag, "text", len(texts), first, last, float("nan")))
    return rows


def format_table(rows: list[TagSummary]) -> str:
    """A plain-text table of :func:`summarize`'s rows."""
    header = ("run", "tag", "kind", "points", "first step", "last step", "last value")
    body = [
        (
            r.run,
            r.tag,
            r.kind,
            str(r.points),
            str(r.first_step),
            str(r.last_step),
            f"{r.last_value:.6g}",
        )
        for r in rows
    ]
    if not body:
        return "no scalars or histograms found"
    widths = [max(len(row[i]) for row in (header, *body)) for i in range(len(header))]
    numeric = {3, 4, 5, 6}

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            cell.rjust(w) if i in numeric else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(row) for row in body)])


def plot(logdir: str | os.PathLike[str], output: str | os.PathLike[str]) -> str:
    """Draw every scalar curve, and each histogram's spread over steps, into a PNG.

    Args:
        logdir: A TensorBoard log directory.
        output: The PNG file to write.

    Returns:
        The path written.

    Raises:
        FileNotFoundError: If ``logdir`` is not a directory.
        ValueError: If it holds no scalar or histogram.
        ImportError: If matplotlib is not installed, saying what to install.
    """
    try:
        # A Figure of its own, not pyplot's: drawing it leaves the caller's backend (a
        # notebook's inline one) and pyplot's list of figures as they were.
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(PLOT_NEEDS) from error
    scalars = read_scalars(logdir)
    histograms = read_histograms(logdir)
    panels = [("scalar", key) for key in sorted(set(zip(scalars.run, scalars.tag, strict=True)))]
    panels += [
        ("histogram", key) for key in sorted(set(zip(histograms.run, histograms.tag, strict=True)))
    ]
    if not panels:
        raise ValueError(f"no scalars or histograms in {os.fspath(logdir)!r} to plot")
    columns = min(3, len(panels))
    rows = -(-len(panels) // columns)
    figure = Figure(figsize=(5 * columns, 3.2 * rows))
    axes = figure.subplots(rows, columns, squeeze=False)
    for axis, (kind, (run, tag)) in zip(axes.flat, panels, strict=False):
        title = tag if run == "." else f"{run}: {tag}"
        if kind == "scalar":
            data = scalars[(scalars.run == run) & (scalars.tag == tag)]
            axis.plot(data.step, data.value, marker="." if len(data) < 50 else None)
        else:
            data = histograms[(histograms.run == run) & (histograms.tag == tag)]
            mean = data["sum"] / data["num"].where(data["num"] > 0)
            std = (data["sum_squares"] / data["num"].where(data["num"] > 0) - mean**2).clip(
                lower=0
            ) ** 0.5
            axis.fill_between(data.step, data["min"], data["max"], alpha=0.2, label="min-max")
            axis.fill_between(data.step, mean - std, mean + std, alpha=0.4, label="mean±std")
            axis.plot(data.step, mean, label="mean")
            axis.legend(fontsize="x-small")
            title += " (histogram)"
        axis.set_title(title, fontsize="small")
        axis.set_xlabel("step", fontsize="small")
        axis.tick_params(labelsize="x-small")
    for axis in list(axes.flat)[len(panels) :]:
        axis.set_visible(False)
    figure.tight_layout()
    path = os.fspath(output)
    figure.savefig(path, dpi=100)
    return path
