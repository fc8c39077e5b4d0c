"""``watch``: summaries of a whole model, its weights, gradients and their norms, as one op.

TensorFlow's users summarized every variable (``summarize_weights``, ``optimize_loss``'s
gradient summaries); ``watch`` registers the same for a ``torch.nn.Module``, as one merged
op in the default collection, so that ``SummarySaver()`` and ``Scaffold()`` pick it up.

Each value is looked up by its qualified name on a due step, not kept from the call:
``fully_shard`` (FSDP2) and other wrappers replace a module's parameters after the model
is built, and a kept parameter would be a stale copy. The functions are ``partial``s of
module-level functions, so the op can be pickled with the model (``ddp_spawn``).

Norms are taken from the histograms' sums of squares, which evaluation already combines
across ranks for a ``DTensor``: a sharded model's norms and its global gradient norm are
the whole model's, with no collective of their own.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any

import torch

from summary_hook._ops.summary_ops import Leaf, SummaryOp, clean_tag, register

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
    prefix: str = "",
    collections: Iterable[str] | None = None,
) -> SummaryOp:
    """Summarize every parameter of ``module``: histograms of the weights and gradients,
    their norms, and the global gradient norm, on due steps only.

    Tags carry each parameter's qualified name (``model.named_parameters()``):
    ``weights/<name>`` and ``gradients/<name>`` (histograms), ``weight_norm/<name>`` and
    ``gradient_norm/<name>`` (L2 norms), and ``global_norm/gradient_norm`` (the L2 norm
    of every gradient together, what ``clip_grad_norm_`` computes). A gradient that is
    None at a due step (a frozen or unused parameter, or a step before the first
    backward) is left out, with one warning naming it. Calling ``watch`` again with the
    same ``prefix`` replaces the earlier op, as registering a tag again does.

    Args:
        module: The model.
        weights: Summarize the parameters.
        gradients: Summarize their gradients, and the global gradient norm.
        norms: Write the norms (beside the histograms).
        include: Only parameters whose qualified name matches this regular expression
            (``re.search``).
        exclude: Leave out parameters whose qualified name matches it.
        module_types: Only the parameters of modules of these types (their own, not
            their submodules').
        prefix: Put before every tag, to watch several models (``"critic/"``).
        collections: As for :func:`scalar`.

    Returns:
        The op, registered in ``collections`` (by default the default collection).

    Raises:
        TypeError: If ``module`` is not a ``torch.nn.Module`` or an argument has the
            wrong type.
        ValueError: If a pattern is not a regular expression, nothing is asked for, or
            the filters leave no parameter.

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
    for name, flag in (("weights", weights), ("gradients", gradients), ("norms", norms)):
        if not isinstance(flag, bool):
            raise TypeError(f"watch: {name} must be a bool, got {flag!r}")
    if not (weights or gradients):
        raise ValueError("watch: weights=False and gradients=False leave nothing to summarize")
    if not isinstance(prefix, str):
        raise TypeError(f"watch: prefix must be a str, got {prefix!r}")
    names = _selected(
        module, _pattern("include", include), _pattern("exclude", exclude), module_types
    )
    if not names:
        raise ValueError(
            f"watch: no parameter of {type(module).__name__} is left by include={include!r}, "
            f"exclude={exclude!r} and module_types={module_types!r}"
        )
    leaves: list[Leaf] = []
    for name in names:
        weight = functools.partial(_parameter, module, name)
        grad = functools.partial(_gradient, module, name)
        if weights:
            leaves.append(_leaf(prefix, "weights", name, "histogram", weight))
        if gradients:
            leaves.append(_leaf(prefix, "gradients", name, "histogram", grad, optional=True))
        if weights and norms:
            leaves.append(_leaf(prefix, "weight_norm", name, "norm", weight))
        if gradients and norms:
            leaves.append(_leaf(prefix, "gradient_norm", name, "norm", grad, optional=True))
    if gradients:
        every = functools.partial(_gradients, module, tuple(names))
        leaves.append(_leaf(prefix, "global_norm", "gradient_norm", "norm", every, optional=True))
    op = SummaryOp(tuple(leaves))
    register(op, collections, key=f"watch:{prefix}")  # (a key no tag can be)
    return op


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
) -> list[str]:
    """The qualified names of the parameters the filters keep, each once (tied weights
    under their first name), in ``named_parameters`` order."""
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
    names = []
    for name, parameter in module.named_parameters():
        if module_types is not None and id(parameter) not in owned:
            continue
        if include is not None and not include.search(name):
            continue
        if exclude is not None and exclude.search(name):
            continue
        names.append(name)
    return names


def _leaf(prefix: str, group: str, name: str, kind: Any, fn: Any, optional: bool = False) -> Leaf:
    return Leaf(clean_tag(f"{prefix}{group}/{name}"), kind, fn, False, optional=optional)


def _parameter(module: torch.nn.Module, name: str) -> torch.Tensor:
    return module.get_parameter(name)


def _gradient(module: torch.nn.Module, name: str) -> torch.Tensor | None:
    return module.get_parameter(name).grad


def _gradients(module: torch.nn.Module, names: tuple[str, ...]) -> list[torch.Tensor | None]:
    return [module.get_parameter(name).grad for name in names]
