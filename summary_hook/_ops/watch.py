"""``watch``: summaries of a whole model, its weights, gradients and their norms, as one op.

TensorFlow's users summarized every variable (``summarize_weights``, ``optimize_loss``'s
gradient summaries); ``watch`` registers the same for a ``torch.nn.Module``, as one merged
op in the default collection, so that ``SummarySaver()`` and ``Scaffold()`` pick it up.

Each value is looked up by its qualified name on a due step, not kept from the call:
``fully_shard`` (FSDP2) and other wrappers replace a module's parameters after the model
is built, and a kept parameter would be a stale copy. The weights are found together, by
one ``operator.attrgetter`` of every name (which follows a dotted name in C, still
through each module's ``__getattr__``), and the gradients taken from them. The functions
are ``partial``s of module-level functions, so the op can be pickled with the model
(``ddp_spawn``).

Norms are taken from the histograms' sums of squares, which evaluation already combines
across ranks for a ``DTensor``: a sharded model's norms and its global gradient norm are
the whole model's, with no collective of their own.
"""

from __future__ import annotations

import functools
import operator
import re
import sys
import warnings
from collections.abc import Iterable
from typing import Any

import torch
from torch.nn.utils import parametrize

from summary_hook._ops.summary_ops import (
    SUMMARIES,
    Kind,
    Leaf,
    Part,
    SummaryOp,
    clean_tag,
    register,
    registrations,
)
from summary_hook._ops.taps import ActivationTap, BackwardScope

__all__ = ["watch"]


def watch(
    module: torch.nn.Module,
    *,
    weights: bool = True,
    gradients: bool = True,
    norms: bool = True,
    include: str | None = None,
    exclude: str | None = None,
    module_types: type[torch.nn.Module] | tuple[type[torch.nn.Module], ...] | None = None,
    activations: Any = None,
    reduce_activations: bool = True,
    permanent: bool = False,
    prefix: str = "",
    collections: Iterable[str] | None = None,
) -> SummaryOp:
    """Summarize every parameter of ``module``: histograms of the weights and gradients,
    their norms, and the global gradient norm, on due steps only; and, when asked, the
    outputs of chosen modules.

    Tags carry each parameter's qualified name (``model.named_parameters()``, the same
    whether the model is compiled or not: ``torch.compile``'s ``_orig_mod.`` is left out,
    as are the root ``module.`` of ``DistributedDataParallel`` and ``DataParallel``,
    ``checkpoint_wrapper``'s ``_checkpoint_wrapped_module.`` and FSDP1's
    ``_fsdp_wrapped_module.``):
    ``weights/<name>`` and ``gradients/<name>`` (histograms), ``weight_norm/<name>`` and
    ``gradient_norm/<name>`` (L2 norms), and ``global_norm/gradient_norm`` (the L2 norm
    of every gradient together, what ``clip_grad_norm_`` computes). A gradient that is
    None at a due step (a frozen or unused parameter, or a step before the first
    backward) is left out, with one warning naming it. Calling ``watch`` again with the
    same ``prefix`` replaces the earlier op, as registering a tag again does.

    Activations (``activations=``) are the outputs of the chosen modules in the due step:
    ``activations/<name>`` (a histogram, each call of the module counted once) and, for
    ReLU-like modules, TensorFlow's ``zero_fraction/<name>``. Each output is counted
    into its histogram in the module's forward hook, so only the counts (12 KB a
    module) are kept, never the activations; under ``torch.compile`` that counting is
    traced into the compiled graph. A forward recomputed in the backward pass (activation
    checkpointing) is not counted again: the taps close when the backward pass reaches
    ``module``'s output (or, under Lightning, at ``on_before_backward``). Under
    ``torch.distributed`` every rank's activations are counted together
    (``reduce="sum"``), and the zero fractions are of every rank's values together,
    unless ``reduce_activations=False``. A module that returns a tuple, a list or a
    dict (an LSTM, an attention, a transformer block) is summarized by the first tensor
    in it. A chosen module that did not run in a due step while others of the model did
    (an attention's ``out_proj``, whose weights the attention uses directly; an expert
    no token reached) is left out of that step, with one warning naming it, as is one
    whose output a histogram cannot count (a complex tensor, from an FFT); under
    ``torch.distributed`` it has the values of the ranks where it ran.

    Args:
        module: The model.
        weights: Summarize the parameters.
        gradients: Summarize their gradients, and the global gradient norm.
        norms: Write the norms (beside the histograms).
        include: Only parameters whose qualified name, as tags show it, matches this
            regular expression (``re.search``).
        exclude: Leave out parameters whose qualified name matches it.
        module_types: Only the parameters of modules of these types (their own, not
            their submodules').
        activations: Which modules' outputs to summarize: a regular expression of their
            qualified names (``named_modules()``), a module class or a tuple of them, or
            True for every module without children (a layer's parametrizations, such as
            ``weight_norm``'s, which compute its weight, are not counted as modules or
            children). None (the default): none.
        reduce_activations: Under ``torch.distributed``, count every rank's activations
            together (their counts summed, and their zeros, in the due step's
            collectives); False: each rank's own, so that rank zero
            writes its own, with no collective.
        permanent: Keep the activations' forward hooks installed on every step, for a
            model compiled and run with gradients before its first due step (a warm-up
            training step outside the session): a compiled graph keeps only the hooks it
            was traced with. In eager mode they then cost a call per forward on non-due
            steps too.
        prefix: Put before every tag, to watch several models (``"critic/"``).
        collections: As for :func:`scalar`.

    Returns:
        The op, registered in ``collections`` (by default the default collection).

    Raises:
        TypeError: If ``module`` is not a ``torch.nn.Module`` or an argument has the
            wrong type.
        ValueError: If a pattern is not a regular expression, nothing is asked for, or
            the filters leave no parameter; or if ``module`` is or holds an FSDP1
            ``FullyShardedDataParallel`` on several ranks, whose parameters are each
            rank's flat shards (FSDP2's are summarized whole). A model that FSDP1 wraps
            after ``watch`` raises the same at its first due step, as its weights no
            longer hold the values they held.

    Example:
        >>> import torch, summary_hook as sh
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())
        >>> op = sh.watch(model, include=r"weight$", collections=[])
        >>> op.tags[:2]
        ('weights/0.weight', 'gradients/0.weight')
    """
    if not isinstance(module, torch.nn.Module):
        raise TypeError(
            f"watch takes a torch.nn.Module, got {module!r} of type {type(module).__name__}"
        )
    flags = {
        "weights": weights,
        "gradients": gradients,
        "norms": norms,
        "reduce_activations": reduce_activations,
        "permanent": permanent,
    }
    for name, flag in flags.items():
        if not isinstance(flag, bool):
            raise TypeError(f"watch: {name} must be a bool, got {flag!r}")
    wants_activations = activations is not None and activations is not False
    if not (weights or gradients or wants_activations):
        raise ValueError(
            "watch: weights=False and gradients=False, without activations, leave nothing "
            "to summarize"
        )
    if not isinstance(prefix, str):
        raise TypeError(f"watch: prefix must be a str, got {prefix!r}")
    _refuse_fsdp1(module)
    module = _unwrapped(module)
    names: list[str] = []
    complex_: set[str] = set()
    if weights or gradients:
        include_, exclude_ = _pattern("include", include), _pattern("exclude", exclude)
        names, complex_ = _selected(module, include_, exclude_, module_types)
        if complex_:
            _warn_of_complex([n for n in names if n in complex_], norms, gradients)
            if not (norms or gradients):  # (nothing of theirs to write)
                names = [name for name in names if name not in complex_]
    if (weights or gradients) and not names:
        raise ValueError(
            f"watch: no parameter of {type(module).__name__} is left by include={include!r}, "
            f"exclude={exclude!r} and module_types={module_types!r}"
        )
    leaves: list[Leaf] = []
    if names:
        leaves += _parameter_leaves(module, names, complex_, prefix, weights, gradients, norms)
    if wants_activations:
        leaves += _activation_leaves(module, activations, prefix, reduce_activations, permanent)
    op = SummaryOp(tuple(leaves))
    # (In the op's cache, which stays in this process: an op carried to a ddp_spawn
    # process, whose model is a copy, is replaced there without a warning.)
    op._cache["watched"] = module
    key = f"watch:{prefix}"  # (a key no tag can be)
    _warn_if_another_is_replaced(module, key, prefix, collections)
    register(op, collections, key=key)
    return op


def _warn_if_another_is_replaced(
    module: torch.nn.Module, key: str, prefix: str, collections: Iterable[str] | None
) -> None:
    """Warn when ``watch`` is about to replace its op of another model under the same
    prefix: two models watched alike (a GAN's) would otherwise keep only the last one."""
    names = [SUMMARIES] if collections is None else collections
    for name in [names] if isinstance(names, str) else names:
        if not isinstance(name, str):
            continue  # (register says so)
        for slot, old in registrations(name):
            watched = old._cache.get("watched")
            if slot == key and watched is not None and watched is not module:
                warnings.warn(
                    f"sh.watch replaces its watch of another {type(watched).__name__} "
                    f"(prefix={prefix!r}), as it would a model made again in a notebook "
                    "cell; to watch both, give each its own prefix, such as "
                    "prefix='generator/'",
                    UserWarning,
                    stacklevel=3,
                )
                return


_WRAPPERS = (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)
#: The attributes under which wrappers keep the module they wrap, each a segment of the
#: wrapped module's names: ``torch.compile``'s, ``checkpoint_wrapper``'s and FSDP1's
#: (``FullyShardedDataParallel``).
_WRAPPED = ("_orig_mod", "_checkpoint_wrapped_module", "_fsdp_wrapped_module")


def _unwrapped(module: torch.nn.Module) -> torch.nn.Module:
    """The model inside the wrappers of ``torch.compile``, ``DistributedDataParallel``,
    ``DataParallel``, ``checkpoint_wrapper`` and FSDP1, whose names are the model's own
    (``0.weight``, not ``_orig_mod.0.weight`` or ``module.0.weight``): a run's tags are
    the same compiled or not, checkpointed or not, on one process or several. Its
    parameters and modules are the wrapper's."""
    while True:
        if isinstance(module, _WRAPPERS):
            module = module.module
            continue
        for attribute in _WRAPPED:
            inner = getattr(module, attribute, None)
            if isinstance(inner, torch.nn.Module):
                module = inner
                break
        else:
            return module


def _shown(name: str) -> str:
    """A qualified name as tags and filters see it: without the segments of wrappers
    (``encoder._orig_mod.0`` is ``encoder.0``, as is
    ``encoder._checkpoint_wrapped_module.0``)."""
    if "_" not in name:
        return name
    return ".".join(part for part in name.split(".") if part not in _WRAPPED)


def _world_size() -> int:
    """How many ranks train together: 1 without ``torch.distributed``."""
    available = torch.distributed.is_available() and torch.distributed.is_initialized()
    return torch.distributed.get_world_size() if available else 1


#: Why ``watch`` cannot summarize FSDP1's parameters on several ranks.
_FSDP1 = (
    "a FullyShardedDataParallel (FSDP1) model holds a flat shard of each parameter on each "
    "rank, which sh.watch cannot make whole; shard it with FSDP2 "
    "(torch.distributed.fsdp.fully_shard, or Lightning's ModelParallelStrategy), whose "
    "sharded parameters sh.watch summarizes whole"
)


def _refuse_fsdp1(module: torch.nn.Module) -> None:
    """Raise when ``module`` is, or holds, an FSDP1 unit on several ranks: its parameters
    are each rank's flat shards, and their histograms and norms would be a rank's.

    Raises:
        ValueError: Saying so, and what to use instead.
    """
    if "torch.distributed.fsdp" not in sys.modules or _world_size() == 1:
        return  # (no FSDP1 unit can exist, or one rank holds every parameter whole)
    from torch.distributed.fsdp import FullyShardedDataParallel

    if any(isinstance(m, FullyShardedDataParallel) for m in module.modules()):
        raise ValueError(f"sh.watch of {type(module).__name__}: {_FSDP1}")


#: Modules whose outputs TensorFlow also summarized as a fraction of zeros.
ZERO_FRACTION_MODULES = (torch.nn.ReLU, torch.nn.ReLU6, torch.nn.Softplus)


def _activation_leaves(
    module: torch.nn.Module, activations: Any, prefix: str, reduce: bool, permanent: bool
) -> list[Leaf]:
    chosen = _activation_modules(module, activations)
    if not chosen:
        raise ValueError(
            f"watch: activations={activations!r} chooses no module of {type(module).__name__}"
        )
    scope = BackwardScope(module, permanent)
    leaves = []
    for name, child in chosen:
        tap = ActivationTap(child, scope)
        tag = clean_tag(f"{prefix}activations/{name}")
        how = "sum" if reduce else None  # (a zero fraction: its zeros and values summed)
        leaves.append(Leaf(tag, "histogram", tap, False, how, optional=True, skips_non_finite=True))
        if isinstance(child, ZERO_FRACTION_MODULES):
            tag = clean_tag(f"{prefix}zero_fraction/{name}")
            leaves.append(Leaf(tag, "scalar", tap.zero_fraction, False, how, optional=True))
    return leaves


def _activation_modules(
    module: torch.nn.Module, activations: Any
) -> list[tuple[str, torch.nn.Module]]:
    inside = _parametrizations(module)
    named = [
        (_shown(name), m)
        for name, m in module.named_modules()
        if name and _unwrapped(m) is m and id(m) not in inside
    ]
    if activations is True:
        return [(n, m) for n, m in named if all(id(c) in inside for c in m.children())]
    if isinstance(activations, str):
        pattern = _pattern("activations", activations)
        assert pattern is not None
        return [(name, m) for name, m in named if pattern.search(name)]
    kinds = activations if isinstance(activations, tuple) else (activations,)
    modules = all(isinstance(k, type) and issubclass(k, torch.nn.Module) for k in kinds)
    if not kinds or not modules:
        raise TypeError(
            "watch: activations must be a regular expression, module classes or True, "
            f"got {activations!r}"
        )
    return [(name, m) for name, m in named if isinstance(m, kinds)]


def _parametrizations(module: torch.nn.Module) -> set[int]:
    """The ids of the modules that compute parametrized weights
    (``torch.nn.utils.parametrize``: ``weight_norm``, ``spectral_norm``, ``orthogonal``),
    which are not a layer's: their outputs are weights, and a parametrized layer has no
    children but them."""
    inside: set[int] = set()
    for owner in module.modules():
        if parametrize.is_parametrized(owner):
            parametrizations = owner.parametrizations
            assert isinstance(parametrizations, torch.nn.Module)
            inside.update(id(m) for m in parametrizations.modules())
    return inside


def _pattern(argument: str, pattern: str | None) -> re.Pattern[str] | None:
    if pattern is None:
        return None
    if not isinstance(pattern, str):
        raise TypeError(f"watch: {argument} must be a regular expression str, got {pattern!r}")
    try:
        return re.compile(pattern)
    except re.error as error:
        raise ValueError(
            f"watch: {argument}={pattern!r} is not a regular expression: {error}"
        ) from error


def _selected(
    module: torch.nn.Module,
    include: re.Pattern[str] | None,
    exclude: re.Pattern[str] | None,
    module_types: Any,
) -> tuple[list[str], set[str]]:
    """The qualified names of the parameters the filters keep, each once (tied weights
    under their first name), in ``named_parameters`` order; and those of them that are
    complex, whose values no histogram counts."""
    if module_types is not None:
        kinds = module_types if isinstance(module_types, tuple) else (module_types,)
        if not all(isinstance(k, type) and issubclass(k, torch.nn.Module) for k in kinds):
            raise TypeError(f"watch: module_types must be module classes, got {module_types!r}")
        owned = {
            id(p)
            for m in module.modules()
            if isinstance(m, kinds)
            for p in m.parameters(recurse=False)
        }
    names: list[str] = []
    complex_: set[str] = set()
    for name, parameter in module.named_parameters():
        if module_types is not None and id(parameter) not in owned:
            continue
        shown = _shown(name)
        if include is not None and not include.search(shown):
            continue
        if exclude is not None and exclude.search(shown):
            continue
        if parameter.is_complex():  # (a histogram counts real values only)
            complex_.add(name)
        names.append(name)
    return names, complex_


def _warn_of_complex(complex_: list[str], norms: bool, gradients: bool) -> None:
    """Say which complex parameters have no histograms, and what of theirs is written."""
    shown = ", ".join(repr(_shown(name)) for name in complex_[:5])
    shown += ", ..." if len(complex_) > 5 else ""
    written = []
    if norms:
        written.append("their norms, of their values' moduli, are written")
    if gradients:
        written.append("their gradients count in the global norm, as in clip_grad_norm_")
    warnings.warn(
        f"watch: {len(complex_)} complex parameters have no histograms, as a histogram "
        f"counts real values only: {shown}; "
        + (" and ".join(written) if written else "nothing of theirs is written")
        + "; summarize their .real and .imag with sh.histogram",
        UserWarning,
        stacklevel=3,
    )


#: Each parameter's leaves, as ``(group, kind, value)``: value 0 is its weight, 1 its
#: gradient (optional: None when frozen or unused).
_PER_PARAMETER: tuple[tuple[str, Kind, int], ...] = (
    ("weights", "histogram", 0),
    ("gradients", "histogram", 1),
    ("weight_norm", "norm", 0),
    ("gradient_norm", "norm", 1),
)


def _parameter_leaves(
    module: torch.nn.Module,
    names: list[str],
    complex_: set[str],
    prefix: str,
    weights: bool,
    gradients: bool,
    norms: bool,
) -> list[Leaf]:
    """The leaves of the parameters at ``names``, in order, then the global gradient
    norm's: each a :class:`Part` of one source, which looks every weight up once and
    takes the gradients from them (each leaf looked its own value up before: five
    lookups a parameter, 4 µs each five modules deep, 2.2 ms of a 24-layer transformer's
    due step). A complex parameter (``complex_``) has its norms only, of its values'
    moduli, and its gradient counts in the global norm."""
    wanted = {"weights": weights, "gradients": gradients}
    wanted |= {"weight_norm": weights and norms, "gradient_norm": gradients and norms}
    per_parameter = [entry for entry in _PER_PARAMETER if wanted[entry[0]]]
    entries = [
        [e for e in per_parameter if e[1] == "norm" or name not in complex_] for name in names
    ]
    picks = tuple(tuple(value for _, _, value in own) for own in entries)
    count = sum(len(own) for own in entries) + (1 if gradients else 0)  # (the global norm)
    sizes = tuple(_size(module.get_parameter(name)) for name in names)
    source = functools.partial(
        _parameter_values,
        tuple(names),
        operator.attrgetter(*names),
        picks,
        gradients,
        module,
        sizes,
        tuple(i for i, name in enumerate(names) if name in complex_),
    )
    specs = [
        (group, _shown(name), kind, value)
        for name, own in zip(names, entries, strict=True)
        for group, kind, value in own
    ]
    if gradients:
        specs.append(("global_norm", "gradient_norm", "norm", 1))
    return [
        Leaf(
            clean_tag(f"{prefix}{group}/{name}"),
            kind,
            Part(source, index, count),
            False,
            optional=value == 1,
            skips_non_finite=kind == "histogram",
        )
        for index, (group, name, kind, value) in enumerate(specs)
    ]


def _parameter_values(
    names: tuple[str, ...],
    get: operator.attrgetter[Any],
    picks: tuple[tuple[int, ...], ...],
    every: bool,
    module: torch.nn.Module,
    sizes: tuple[int, ...],
    complex_at: tuple[int, ...],
) -> list[Any]:
    """The values of :func:`_parameter_leaves`' leaves: for each weight that ``get``
    finds at its qualified name (``names``), the weight (pick 0) or its gradient (pick 1)
    as its ``picks`` say; then, when ``every``, all the gradients, for the global norm.
    A complex weight, at ``complex_at``, and its gradient are given as real tensors of
    their real and imaginary parts, whose sums of squares are those of their moduli.

    Raises:
        AttributeError: If a name finds nothing any more (a layer deleted or replaced
            after ``watch``), naming the first such parameter.
        ValueError: If, on several ranks, a weight holds another number of values than
            when it was watched (its ``sizes``): FSDP1 wrapped the model after ``watch``,
            and each rank holds a shard, or a layer was resized.
    """
    try:
        found = get(module)  # (one name: the weight itself, not a tuple)
    except AttributeError as error:
        gone = next((name for name in names if not _finds(module, name)), None)
        if gone is None:  # (an AttributeError from inside a module's own __getattr__)
            raise
        raise AttributeError(
            f"sh.watch: {type(module).__name__} has no parameter {_shown(gone)!r} any more "
            f"({error}); call sh.watch again after changing the model's layers"
        ) from error
    weights = found if isinstance(found, tuple) else (found,)
    if _world_size() > 1:
        _refuse_changed_sizes(names, weights, sizes, module)
    pairs = [(w, _gradient_of(w)) for w in weights]
    for i in complex_at:
        pairs[i] = (_real_view(pairs[i][0]), _real_view(pairs[i][1]))
    values = [pair[pick] for pair, own in zip(pairs, picks, strict=True) for pick in own]
    if every:
        values.append([grad for _, grad in pairs])
    return values


def _real_view(value: Any) -> Any:
    """A complex tensor as the real tensor of its parts (``view_as_real``), for its norm;
    anything else as it is, for its checks to say what it is."""
    if isinstance(value, torch.Tensor) and value.is_complex():
        return torch.view_as_real(value.detach())
    return value


def _size(parameter: torch.nn.Parameter) -> int:
    """How many values ``parameter`` holds; -1 for a lazy module's, not made yet."""
    return -1 if torch.nn.parameter.is_lazy(parameter) else parameter.numel()


def _refuse_changed_sizes(
    names: tuple[str, ...], weights: tuple[Any, ...], sizes: tuple[int, ...], module: Any
) -> None:
    """Raise for the first weight whose number of values is not its watched ``size``
    (one made since, by a lazy module, excepted; a value that is not a tensor any more
    is for its histogram to refuse, naming its tag)."""
    for name, weight, size in zip(names, weights, sizes, strict=True):
        if size >= 0 and isinstance(weight, torch.Tensor) and weight.numel() != size:
            raise ValueError(
                f"sh.watch: parameter {_shown(name)!r} of {type(module).__name__} holds "
                f"{weight.numel()} values on rank {torch.distributed.get_rank()}, not the "
                f"{size} it held when watched: {_FSDP1}; if the layer was resized "
                "instead, call sh.watch again after changing it"
            )


def _gradient_of(weight: Any) -> torch.Tensor | None:
    """The gradient of what a watched name finds, as :func:`_stored` gives it; None for a
    tensor that is not a leaf (a pruned weight, which ``torch.nn.utils.prune`` computes
    from its ``weight_orig``), whose ``.grad`` torch never fills, and warns when read."""
    if not getattr(weight, "is_leaf", True):
        return None
    return _stored(getattr(weight, "grad", None))


def _stored(grad: torch.Tensor | None) -> torch.Tensor | None:
    """A gradient as its histogram and norm take it: a sparse COO one (``nn.Embedding``'s
    with ``sparse=True``) as its stored values, the rows the step reached, summed where a
    row repeats. TensorFlow summarized such an ``IndexedSlices`` gradient by its values,
    as well; the implicit zeros of the other rows, most of a large table, are left out,
    and the norm is the whole gradient's."""
    if grad is not None and grad.layout == torch.sparse_coo:
        return grad.coalesce().values()
    return grad


def _finds(module: torch.nn.Module, name: str) -> bool:
    try:
        operator.attrgetter(name)(module)
    except AttributeError:
        return False
    return True
