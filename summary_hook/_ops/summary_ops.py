"""Summary ops: named closures evaluated only on due steps, and their collections.

An op is a :class:`SummaryOp` holding one or more :class:`Leaf` values (a ``scalar``
or ``histogram`` is one leaf; ``merge`` joins leaves into one op that yields one
``Summary``). A leaf's function takes no argument (it reads state, such as a weight)
or one argument (what the step returned). Evaluation lives in ``_evaluation.evaluate``.

Collections mirror TensorFlow's graph collections: ``scalar`` and ``histogram`` add
their op to ``"summaries"`` (``GraphKeys.SUMMARIES``) unless told otherwise, and
``merge_all`` merges a collection. Registering a tag again in a collection replaces
the earlier op, so re-running a notebook cell does not double the summaries.

Thread contract: the collections are guarded by ``_lock``; ops are immutable.
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
import re
import threading
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "KINDS",
    "SUMMARIES",
    "Leaf",
    "Part",
    "SummaryOp",
    "audio",
    "clean_tag",
    "clear_collection",
    "get_collection",
    "histogram",
    "image",
    "merge",
    "merge_all",
    "register",
    "registrations",
    "scalar",
    "text",
]

#: The default collection, TensorFlow's ``GraphKeys.SUMMARIES``.
SUMMARIES = "summaries"

_INVALID_TAG_CHARACTERS = re.compile(r"[^-/\w\.]")
_lock = threading.Lock()  # guards _collections
_collections: dict[str, dict[str, SummaryOp]] = {}


def new_lock_in_child() -> None:
    """After a fork: a fresh lock for the collections (see ``_fork``)."""
    global _lock
    _lock = threading.Lock()


#: A norm (made by ``watch``) is the L2 norm of a tensor, or of a list of them together.
Kind = Literal["scalar", "histogram", "norm", "text", "image", "audio"]
#: Every kind, in the order evaluation keeps their values.
KINDS: tuple[Kind, ...] = ("scalar", "histogram", "norm", "text", "image", "audio")


def clean_tag(name: str) -> str:
    """Clean a summary name as TensorFlow does: invalid characters become ``_``.

    Leading slashes are removed too. A changed name is reported with a ``UserWarning``.

    Raises:
        TypeError: If ``name`` is not a string.
        ValueError: If ``name`` is empty, before or after cleaning.

    Example:
        >>> clean_tag("train/loss")
        'train/loss'
    """
    if not isinstance(name, str):
        raise TypeError(f"summary name must be a str, got {name!r}")
    cleaned = _INVALID_TAG_CHARACTERS.sub("_", name).lstrip("/")
    if not cleaned:
        raise ValueError(f"summary name must not be empty, got {name!r}")
    if cleaned != name:
        warnings.warn(
            f"Summary name {name!r} is illegal; using {cleaned!r} instead.",
            UserWarning,
            stacklevel=3,
        )
    return cleaned


#: How ``reduce=`` may combine the ranks' values of a scalar, and of a histogram.
SCALAR_REDUCTIONS = (None, "mean", "sum", "min", "max")
HISTOGRAM_REDUCTIONS = (None, "sum")


@dataclass(frozen=True, eq=False)
class Leaf:
    """One named value: its tag, kind, function, whether the function takes the output,
    and how the ranks' values combine (``reduce`` over the process ``group``; None for
    the world)."""

    tag: str
    kind: Kind
    fn: Callable[..., Any]
    takes_output: bool
    reduce: str | None = None
    group: Any = None
    max_outputs: int = 0  # images and audio only
    dataformats: str = ""  # images only
    sample_rate: float = 0.0  # audio only
    optional: bool = False  # None is no value, left out of the summary (a missing .grad)
    # A histogram of NaN or infinities is left out too, not an error (sh.watch's: a
    # GradScaler's skipped step must not stop training).
    skips_non_finite: bool = False


@dataclass(frozen=True, eq=False)
class Part:
    """The function of one of ``count`` leaves whose values one call of ``source`` finds
    together, in order (``watch``'s: every weight and gradient from one lookup of the
    weights). An evaluation calls ``source`` once for all of them when they come one
    after another, as an op holds them; called alone, a part calls it and takes its
    ``index``-th value."""

    source: Callable[[], Sequence[Any]]
    index: int
    count: int

    def __call__(self) -> Any:
        return self.source()[self.index]


@dataclass(frozen=True, eq=False)
class SummaryOp:
    """A summary op: evaluated on a due step, it yields one ``Summary`` holding its leaves.

    Create ops with :func:`scalar`, :func:`histogram`, :func:`merge` or :func:`merge_all`.
    """

    leaves: tuple[Leaf, ...]
    #: What evaluation works out once for this op (see ``_evaluation.plans.plan_for``): kept
    #: on the op so that it goes when the op goes.
    _cache: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        """Its state for pickling and copying, ``_cache`` left empty: what evaluation
        worked out belongs to this process (a plan holds a lock), and is worked out again
        where the op goes (a ``ddp_spawn`` process)."""
        return {**self.__dict__, "_cache": {}}

    @functools.cached_property
    def has_images(self) -> bool:
        """Whether it holds an image or audio summary: a variable number of values, each
        encoded (PNG, WAV) by the writer."""
        return any(leaf.kind in ("image", "audio") for leaf in self.leaves)

    @functools.cached_property
    def carries_metadata(self) -> bool:
        """Whether its summaries hold plugin metadata (texts), which a writer keeps for a
        tag's first value only, as TensorFlow's does."""
        return any(leaf.kind == "text" for leaf in self.leaves)

    @functools.cached_property
    def taps(self) -> tuple[Any, ...]:
        """The :func:`output_of` functions of its values, which a due step arms."""
        from summary_hook._ops.taps import tap_of

        taps = (tap_of(leaf.fn) for leaf in self.leaves)
        return tuple(dict.fromkeys(tap for tap in taps if tap is not None))

    @functools.cached_property
    def has_optional_values(self) -> bool:
        """Whether some value may be left out at a due step (see ``Leaf.optional`` and
        ``Leaf.skips_non_finite``)."""
        return any(leaf.optional or leaf.skips_non_finite for leaf in self.leaves)

    @property
    def tags(self) -> tuple[str, ...]:
        """The tags of the values this op produces, in order."""
        return tuple(leaf.tag for leaf in self.leaves)

    def __repr__(self) -> str:
        if len(self.leaves) == 1:
            return f"<{self.leaves[0].kind} {self.leaves[0].tag!r}>"
        return f"<merged summary of {len(self.leaves)} values: {', '.join(self.tags)}>"


def _takes_output(tag: str, fn: object) -> bool:
    if not callable(fn):
        raise TypeError(f"summary {tag!r}: fn must be callable, got {fn!r}")
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # some builtins have no signature: call with nothing
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    required = [p for p in parameters if p.kind in positional and p.default is p.empty]
    varargs = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters)
    if len(required) > 1:
        raise TypeError(
            f"summary {tag!r}: fn must take no argument or one (the step's output); "
            f"{fn!r} requires {len(required)}"
        )
    return len(required) == 1 or (not required and varargs)


def register(op: SummaryOp, collections: Iterable[str] | None, key: str | None = None) -> None:
    """Add ``op`` to ``collections`` (default ``["summaries"]``), replacing the op
    registered there under ``key`` (default: its first tag).

    A replaced op that is registered nowhere else lets go of its permanent taps' hooks,
    which the new op does not use: a notebook cell run again, with ``permanent=True``,
    would otherwise leave one more hook on the module each time. (The other taps have no
    hook outside a due step.)"""
    if collections is None:
        names = [SUMMARIES]
    elif isinstance(collections, str):  # one name, not its letters
        names = [collections]
    else:
        names = list(collections)
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"collections must hold str names, got {name!r}")
    slot = op.leaves[0].tag if key is None else key
    replaced = []
    with _lock:
        for name in names:
            collection = _collections.setdefault(name, {})
            old = collection.get(slot)
            collection[slot] = op
            if old is not None and old is not op:
                replaced.append(old)
        registered = [kept for collection in _collections.values() for kept in collection.values()]
    for old in replaced:
        if not any(kept is old for kept in registered):
            for tap in old.taps:
                if tap.permanent and tap not in op.taps:
                    tap.uninstall()


def _check_reduce(tag: str, kind: Kind, reduce: object, group: object) -> None:
    allowed = SCALAR_REDUCTIONS if kind == "scalar" else HISTOGRAM_REDUCTIONS
    if reduce not in allowed:
        raise ValueError(
            f"{kind} {tag!r}: reduce must be one of {', '.join(map(repr, allowed))}, got {reduce!r}"
        )
    if group is not None and reduce is None:
        raise ValueError(f"{kind} {tag!r}: group={group!r} needs reduce= to say how to combine")


def _leaf_op(
    kind: Kind,
    name: str,
    fn: Callable[..., Any],
    collections: Iterable[str] | None,
    reduce: str | None = None,
    group: Any = None,
) -> SummaryOp:
    tag = clean_tag(name)
    _check_reduce(tag, kind, reduce, group)
    op = SummaryOp((Leaf(tag, kind, fn, _takes_output(tag, fn), reduce, group),))
    register(op, collections)
    return op


def scalar(
    name: str,
    fn: Callable[..., Any],
    collections: Iterable[str] | None = None,
    *,
    reduce: str | None = None,
    group: Any = None,
) -> SummaryOp:
    """A scalar summary whose value ``fn`` computes on due steps only.

    ``fn`` may return a Python or numpy number, or a tensor with one element, on any
    device; a one-element ``DTensor`` is written as its global value. All scalars of a
    due step reach the host in one transfer.

    Args:
        name: The tag; invalid characters become ``_`` with a warning.
        fn: ``fn()`` reads state, ``fn(output)`` receives what the step returned.
        collections: The names of the collections to add the op to, or one name (as
            TensorFlow takes it: ``"mine"`` is ``["mine"]``); default ``["summaries"]``.
            An op with the same tag already there is replaced.
        reduce: Combine every rank's value: ``"mean"``, ``"sum"``, ``"min"`` or
            ``"max"``; None writes rank zero's. Without an initialized process group
            the value is written as it is.
        group: The process group ``reduce`` spans; None for the world.

    Returns:
        The op, for :func:`merge` or a hook's ``summary_op``.

    Raises:
        TypeError: If ``fn`` is not callable or needs more than one argument.
        ValueError: If ``name`` is empty, ``reduce`` is not one of the above, or
            ``group`` is given without ``reduce``.

    Example:
        >>> loss = scalar("loss", lambda out: out, collections=[])
        >>> loss
        <scalar 'loss'>
    """
    return _leaf_op("scalar", name, fn, collections, reduce, group)


def histogram(
    name: str,
    fn: Callable[..., Any],
    collections: Iterable[str] | None = None,
    *,
    reduce: str | None = None,
    group: Any = None,
) -> SummaryOp:
    """A histogram summary (TensorFlow's default buckets) of the tensor ``fn`` returns.

    Bucket counts and statistics are computed with torch on the tensor's device;
    only they reach the host. A sharded ``DTensor`` gives the histogram of the whole
    tensor: each rank counts its shard and the counts are summed across the mesh.

    Args:
        name: The tag; invalid characters become ``_`` with a warning.
        fn: ``fn()`` or ``fn(output)`` returning a real tensor, array or sequence.
        collections: As for :func:`scalar`.
        reduce: ``"sum"`` writes the histogram of every rank's values together;
            None writes rank zero's.
        group: The process group ``reduce`` spans; None for the world.

    Returns:
        The op.

    Raises:
        TypeError: If ``fn`` is not callable or needs more than one argument.
        ValueError: If ``name`` is empty, ``reduce`` is neither None nor ``"sum"``, or
            ``group`` is given without ``reduce``.

    Example:
        >>> import torch
        >>> weights = histogram("w", lambda: torch.ones(3), collections=[])
    """
    return _leaf_op("histogram", name, fn, collections, reduce, group)


def text(name: str, fn: Callable[..., Any], collections: Iterable[str] | None = None) -> SummaryOp:
    """A text summary, written as TensorFlow v1's ``tf.summary.text`` writes it.

    TensorBoard's text dashboard renders it as Markdown, and a 2-D array as a table.
    The value is a tag ``name`` holding a string tensor with the text plugin's
    metadata; it needs no device, so it adds nothing to the step's transfer.

    Args:
        name: The tag; invalid characters become ``_`` with a warning.
        fn: ``fn()`` or ``fn(output)`` returning a ``str``, or a list or a 1-D or 2-D
            array of them.
        collections: As for :func:`scalar`.

    Returns:
        The op.

    Raises:
        TypeError: If ``fn`` is not callable or needs more than one argument.
        ValueError: If ``name`` is empty.

    Example:
        >>> notes = text("notes", lambda: "**loss** went down", collections=[])
    """
    return _leaf_op("text", name, fn, collections)


def image(
    name: str,
    fn: Callable[..., Any],
    max_outputs: int = 3,
    dataformats: str = "NCHW",
    collections: Iterable[str] | None = None,
) -> SummaryOp:
    """An image summary, written as TensorFlow v1's ``tf.summary.image`` writes it.

    ``fn`` returns a tensor or array: a batch (``"NCHW"``, torch's convention, or
    ``"NHWC"``) or one image (``"CHW"``, ``"HWC"`` or ``"HW"``), with 1 (grey), 3 (RGB)
    or 4 (RGBA) channels. ``uint8`` is written as it is; floats are taken as [0, 1],
    scaled by 255 and rounded as TensorFlow's ``convert_image_dtype`` does, and clipped.
    On a due step only the first ``max_outputs`` images are converted, on their device,
    and cross to the host in the step's one transfer; PNG encoding happens off the
    training thread when a hook writes them. Tags are ``name/image`` when
    ``max_outputs`` is 1, else ``name/image/0``, ``name/image/1``...

    Args:
        name: The tag's prefix; invalid characters become ``_`` with a warning.
        fn: ``fn()`` or ``fn(output)`` returning the images.
        max_outputs: The most images written per due step.
        dataformats: The layout of what ``fn`` returns.
        collections: As for :func:`scalar`.

    Returns:
        The op.

    Raises:
        TypeError: If ``fn`` is not callable or needs more than one argument, or
            ``max_outputs`` is not an int.
        ValueError: If ``name`` is empty, ``max_outputs`` is not positive, or
            ``dataformats`` is not one of the above.

    Example:
        >>> import torch
        >>> samples = image("samples", lambda: torch.rand(8, 3, 32, 32), collections=[])
    """
    from summary_hook._evaluation.images import DATAFORMATS

    tag = clean_tag(name)
    if isinstance(max_outputs, bool) or not isinstance(max_outputs, int):
        raise TypeError(f"image {tag!r}: max_outputs must be an int, got {max_outputs!r}")
    if max_outputs < 1:
        raise ValueError(f"image {tag!r}: max_outputs must be positive, got {max_outputs!r}")
    if dataformats not in DATAFORMATS:
        raise ValueError(
            f"image {tag!r}: dataformats must be one of {', '.join(map(repr, DATAFORMATS))}, "
            f"got {dataformats!r}"
        )
    leaf = Leaf(tag, "image", fn, _takes_output(tag, fn), None, None, max_outputs, dataformats)
    op = SummaryOp((leaf,))
    register(op, collections)
    return op


def audio(
    name: str,
    fn: Callable[..., Any],
    sample_rate: float,
    max_outputs: int = 3,
    collections: Iterable[str] | None = None,
) -> SummaryOp:
    """An audio summary, written as TensorFlow v1's ``tf.summary.audio`` writes it.

    ``fn`` returns a batch of clips, ``[batch, frames, channels]`` or ``[batch, frames]``,
    floats in [-1, 1] (TensorFlow's layout). On a due step only the first
    ``max_outputs`` clips are turned into 16-bit samples, on their device, and cross to
    the host in the step's one transfer; WAV encoding happens off the training thread
    when a hook writes them. Tags are ``name/audio`` when ``max_outputs`` is 1, else
    ``name/audio/0``, ``name/audio/1``...

    Args:
        name: The tag's prefix; invalid characters become ``_`` with a warning.
        fn: ``fn()`` or ``fn(output)`` returning the clips.
        sample_rate: Frames a second.
        max_outputs: The most clips written per due step.
        collections: As for :func:`scalar`.

    Returns:
        The op.

    Raises:
        TypeError: If ``fn`` is not callable or needs more than one argument, or
            ``sample_rate`` is not a number or ``max_outputs`` not an int.
        ValueError: If ``name`` is empty, ``sample_rate`` is not positive and finite, or
            ``max_outputs`` is not positive.

    Example:
        >>> import torch
        >>> tone = audio("tone", lambda: torch.sin(torch.arange(8000.0))[None] / 2, 8000,
        ...              collections=[])
        >>> tone.tags
        ('tone',)
    """
    tag = clean_tag(name)
    if isinstance(max_outputs, bool) or not isinstance(max_outputs, int):
        raise TypeError(f"audio {tag!r}: max_outputs must be an int, got {max_outputs!r}")
    if max_outputs < 1:
        raise ValueError(f"audio {tag!r}: max_outputs must be positive, got {max_outputs!r}")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Real):
        raise TypeError(f"audio {tag!r}: sample_rate must be a number, got {sample_rate!r}")
    if not (math.isfinite(sample_rate) and sample_rate > 0):
        raise ValueError(
            f"audio {tag!r}: sample_rate must be positive and finite, got {sample_rate!r}"
        )
    leaf = Leaf(
        tag,
        "audio",
        fn,
        _takes_output(tag, fn),
        max_outputs=max_outputs,
        sample_rate=float(sample_rate),
    )
    op = SummaryOp((leaf,))
    register(op, collections)
    return op


def merge(inputs: Sequence[SummaryOp | None]) -> SummaryOp:
    """One op whose evaluation yields one ``Summary`` holding every value of ``inputs``.

    ``None`` entries are skipped. The merged op is not added to any collection.

    Raises:
        TypeError: If an entry is not a summary op.
        ValueError: If ``inputs`` holds no op, or two values share a tag.

    Example:
        >>> a = scalar("a", lambda: 1.0, collections=[])
        >>> b = scalar("b", lambda: 2.0, collections=[])
        >>> merge([a, b]).tags
        ('a', 'b')
    """
    if isinstance(inputs, SummaryOp) or not isinstance(inputs, Sequence):
        raise TypeError(f"merge takes a list of summary ops, got {inputs!r}")
    leaves: list[Leaf] = []
    seen: set[str] = set()
    for op in inputs:
        if op is None:
            continue
        if not isinstance(op, SummaryOp):
            raise TypeError(f"merge takes summary ops, got {op!r} of type {type(op).__name__}")
        for leaf in op.leaves:
            if leaf.tag in seen:
                raise ValueError(f"duplicate tag {leaf.tag!r} in merged summary")
            seen.add(leaf.tag)
            leaves.append(leaf)
    if not leaves:
        raise ValueError(f"merge needs at least one summary op, got {inputs!r}")
    return SummaryOp(tuple(leaves))


def merge_all(key: str = SUMMARIES) -> SummaryOp | None:
    """Merge every op in collection ``key``, or return None if it is empty.

    Example:
        >>> merge_all("an empty collection") is None
        True
    """
    ops = get_collection(key)
    return merge(ops) if ops else None


def registrations(key: str = SUMMARIES) -> list[tuple[str, SummaryOp]]:
    """Each op of collection ``key`` with the name it is registered under (its first
    tag, or the key ``watch`` gave it)."""
    with _lock:
        return list(_collections.get(key, {}).items())


def get_collection(key: str = SUMMARIES) -> list[SummaryOp]:
    """The ops in collection ``key``, in the order their tags were first registered."""
    with _lock:
        return list(_collections.get(key, {}).values())


def clear_collection(key: str | None = SUMMARIES) -> None:
    """Empty collection ``key``, or every collection when ``key`` is None."""
    with _lock:
        if key is None:
            _collections.clear()
        else:
            _collections.pop(key, None)
