"""``output_of``: a module's output, captured on due steps only, for any summary op.

A :class:`Tap` holds a forward hook on one module. It is armed by the session when a hook
asks for an op that uses it (``before_run``, Lightning's ``on_train_batch_start``),
captures the module's outputs in that step, and is released once the step's ops are
evaluated (``after_run``): nothing captured outlives the step.

In eager mode the forward hook exists only while the tap is armed, so a non-due step
makes no hook call at all. Under ``torch.compile`` a hook added and removed around due
steps is lost after the first one (the compiled graph keeps no trace of hooks added
later), so a tap that finds itself traced (``torch.compiler.is_compiling()`` in its hook)
stays installed from then on and reads its ``armed`` flag instead: the compiler keeps one
graph for due steps and one for the others, and recompiles no more. A model compiled
before its first due step never shows the tap to the compiler; ``permanent=True``
installs it from the start for that case.

Thread contract: a tap belongs to the training thread of the session that arms it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["ActivationTap", "BackwardScope", "Counted", "Tap", "ZeroCount", "output_of", "tap_of"]


class Tap:
    """The outputs of ``module`` in the current due step; call it for them.

    Made by :func:`output_of`.
    """

    def __init__(self, module: torch.nn.Module, permanent: bool) -> None:
        self._module = module
        self._handle: Any = None
        self.armed = False
        self.closed = False  # the step's forward pass is over: a recomputation follows
        self.captured: list[torch.Tensor] = []
        # What the module returned when it held nothing to capture, for the error.
        self.uncounted: str | None = None
        self.permanent = permanent
        self._made_by = "sh.output_of"  # what made it, and takes permanent=, for the error
        if permanent:
            self._install()

    def arm(self) -> None:
        """Capture the module's outputs from now until :meth:`release`."""
        self.armed = True
        if self._handle is None:
            self._install()

    def close(self) -> None:
        """Capture nothing more this step: its backward pass begins, and with it any
        recomputation of the forward (activation checkpointing)."""
        self.closed = True

    def release(self) -> None:
        """Let go of what was captured; in eager mode, remove the hook."""
        self.armed = False
        self.closed = False
        self.captured = []
        self.uncounted = None
        if not self.permanent and self._handle is not None:
            self._handle.remove()
            self._handle = None

    def uninstall(self) -> None:
        """Remove the hook for good, permanent or not: the op that used it was replaced."""
        self.permanent = False
        self.release()

    def __call__(self) -> torch.Tensor:
        captured = self.captured
        if not captured:
            raise RuntimeError(self._nothing_captured())
        if len(captured) == 1:
            return captured[0]
        # Several calls (shared weights, recurrence): each counted once, along the batch.
        if all(t.shape[1:] == captured[0].shape[1:] and t.dim() for t in captured):
            return torch.cat(captured)
        return torch.cat([t.reshape(-1) for t in captured])

    def _nothing_captured(self) -> str:
        """Why the tap holds nothing at this step, for its error."""
        name = type(self._module).__name__
        if self.uncounted is not None:
            return (
                f"{self._made_by}'s tap on {name} captured nothing at this step: the "
                f"module returned {self.uncounted}"
            )
        return (
            f"{self._made_by}'s tap on {name} captured nothing at this step: the module "
            "did not run in it, or it runs compiled and ran before its first due step "
            f"(pass permanent=True to {self._made_by})"
        )

    def _install(self) -> None:
        self._handle = self._module.register_forward_hook(self._capture)

    def _capture(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        if self.armed and not self.closed:
            if torch.compiler.is_compiling():
                self.permanent = True  # see the module's docstring
            tensor = _first_tensor(output)
            if tensor is not None:
                self.captured.append(tensor.detach())
            else:
                self.uncounted = f"a {type(output).__name__}, which holds no tensor"

    def __repr__(self) -> str:
        return f"output_of({type(self._module).__name__})"


@dataclass(frozen=True)
class Counted:
    """A histogram counted where the values were, as ``device_histogram`` gives it: the
    ``[STATS + buckets]`` float64 row on the values' device, and how many values."""

    row: torch.Tensor
    num: int


@dataclass(frozen=True)
class ZeroCount:
    """How many of a tap's captured values are zero (a tensor on their device), of how
    many: a fraction of zeros that ranks combine exactly, by adding both."""

    zeros: torch.Tensor
    num: int


class BackwardScope:
    """Closes the activation taps of one model when the backward pass reaches its output.

    A forward hook on the model, while a tap is armed, puts a gradient hook on the
    model's output; the backward pass calls it before it reaches anything inside the
    model, so before any recomputation of a checkpointed part of the forward, whose
    calls are then not captured twice. Under ``torch.compile`` the hook stays installed
    once traced and reads its ``armed`` flag, as a :class:`Tap` does, and the compiled
    graph of due steps registers the gradient hook on its output. Under Lightning, whose
    module's own forward may never run, the callback closes the taps at
    ``on_before_backward``.
    """

    def __init__(self, root: torch.nn.Module, permanent: bool = False) -> None:
        self._root = root
        self._handle: Any = None
        self._tables: tuple[torch.Tensor, torch.Tensor] | None = None
        self.armed = False
        self.permanent = permanent
        self.taps: list[ActivationTap] = []
        if permanent:
            self._handle = root.register_forward_hook(self._on_output)

    def arm(self) -> None:
        self.armed = True
        if self._handle is None:
            self._handle = self._root.register_forward_hook(self._on_output)
        if self._tables is None:  # (for a compiled model's taps, which cannot make them)
            from summary_hook._evaluation.histogram import cell_tables_on

            first = next(itertools.chain(self._root.parameters(), self._root.buffers()), None)
            device = first.device if first is not None else torch.device("cpu")
            self._tables = cell_tables_on(device)

    def tables_on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The histogram tables (``cell_tables_on``) on ``device``, made when armed."""
        assert self._tables is not None
        threshold, bucket = self._tables
        if threshold.device != device:  # (outputs on another device than the model's)
            return threshold.to(device), bucket.to(device)
        return threshold, bucket

    def release(self) -> None:
        self.armed = False
        if not self.permanent and self._handle is not None:
            self._handle.remove()
            self._handle = None

    def uninstall(self) -> None:
        self.permanent = False
        self.release()

    def _on_output(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        if torch.compiler.is_compiling():
            self.permanent = True  # see output_of's module docstring
        if not self.armed:
            return
        tensor = _first_tensor(output, needs_grad=True)
        if tensor is not None:
            tensor.register_hook(self._close)  # type: ignore[no-untyped-call]

    def _close(self, grad: torch.Tensor) -> None:
        for tap in self.taps:
            tap.close()

    def captured_any(self) -> bool:
        """Whether some tap of the model captured an output at this step."""
        return any(tap.has_captured() for tap in self.taps)


def _first_tensor(output: Any, needs_grad: bool = False) -> torch.Tensor | None:
    """The first tensor in a module's ``output``, itself or in the tuples, lists and dicts
    it holds, depth first (a ``ModelOutput`` is a dict), if any: an LSTM's output before
    its states, an attention's output before its weights. With ``needs_grad``, the first
    that takes part in the backward pass."""
    if isinstance(output, torch.Tensor):
        return output if output.requires_grad or not needs_grad else None
    if isinstance(output, (tuple, list, dict)):
        for item in output.values() if isinstance(output, dict) else output:
            found = _first_tensor(item, needs_grad)
            if found is not None:
                return found
    return None


class ActivationTap(Tap):
    """A tap of ``sh.watch``'s activations: each captured output is counted into a
    histogram row at once, in the hook, so that only the row (12 KB) is kept, not the
    output, and a deep model's activations are never held together. Under
    ``torch.compile`` the counting is traced into the compiled graph
    (``traced_histogram``), whose outputs are then the rows, not the activations.
    """

    def __init__(self, module: torch.nn.Module, scope: BackwardScope) -> None:
        super().__init__(module, permanent=scope.permanent)
        self._made_by = "sh.watch"
        self._scope = scope
        scope.taps.append(self)
        self._row: torch.Tensor | None = None
        self._num = 0
        self._zeros: torch.Tensor | None = None

    def arm(self) -> None:
        super().arm()
        self._scope.arm()

    def release(self) -> None:
        super().release()
        self._scope.release()
        self._row, self._num, self._zeros = None, 0, None

    def uninstall(self) -> None:
        super().uninstall()
        self._scope.uninstall()

    def __call__(self) -> Any:  # (a Counted or None, not the tensor of Tap's)
        """The histogram of the captured outputs; None when the module did not run in the
        step (an attention's ``out_proj``, whose weights its parent uses directly; an
        expert no token reached) while others of the model did, so that its summaries
        are left out of the step.

        Raises:
            RuntimeError: If no tap of the model captured anything, saying why.
        """
        if self._row is None:
            self._check_some_captured()
            return None
        return Counted(self._row, self._num)

    def zero_fraction(self) -> ZeroCount | None:
        """How many of the captured values are zero, for TensorFlow's ``zero_fraction``;
        None as for the histogram."""
        if self._zeros is None:
            self._check_some_captured()
            return None
        return ZeroCount(self._zeros, self._num)

    def has_captured(self) -> bool:
        """Whether an output was captured at this step."""
        return self._row is not None

    def _check_some_captured(self) -> None:
        if not self._scope.captured_any():
            super().__call__()  # raises, saying why

    def _capture(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        if not self.armed or self.closed:
            return
        tensor = _first_tensor(output)
        if tensor is None:
            self.uncounted = f"a {type(output).__name__}, which holds no tensor"
            return
        uncountable = _uncountable(tensor)  # (a spectral layer's FFT, say)
        if uncountable is not None:
            self.uncounted = f"{uncountable}, which a histogram cannot count"
            return  # (left out of the step, as a module that did not run)
        from summary_hook._evaluation.histogram import combine_rows, traced_histogram

        with torch.no_grad():
            values = tensor.detach()
            if values.numel() == 0:
                return
            if torch.compiler.is_compiling():  # counted in the compiled graph itself
                self.permanent = True
                row = traced_histogram(values, self._scope.tables_on(values.device))
            else:
                row = _counted_eagerly(values)
            zeros = (values == 0).sum()
        self._row = row if self._row is None else combine_rows(self._row, row)
        self._zeros = zeros if self._zeros is None else self._zeros + zeros
        self._num += values.numel()


def _uncountable(tensor: torch.Tensor) -> str | None:
    """What ``tensor`` is when a histogram cannot count it (as ``_evaluation.values``
    checks an op's values), else None."""
    if tensor.is_complex():
        return f"a {tensor.dtype} tensor"
    if tensor.layout != torch.strided:
        return f"a {tensor.layout} tensor"
    if tensor.is_meta:
        return "a tensor on the meta device"
    return None


def _counted(values: torch.Tensor) -> torch.Tensor:
    from summary_hook._evaluation.histogram import device_histogram

    return device_histogram(values)


#: ``device_histogram``, never compiled: a tap's hook runs eagerly inside a compiled
#: model where the compiler gave up on the module (an LSTM), and the compiler would
#: otherwise compile the counting's own functions, which break its graphs (a numpy
#: table, a ``bincount``).
_counted_eagerly: Callable[[torch.Tensor], torch.Tensor] = torch.compiler.disable(  # type: ignore[no-untyped-call]
    _counted
)


def tap_of(fn: object) -> Tap | None:
    """The tap a summary function is, or is a method of (``zero_fraction``), if any."""
    if isinstance(fn, Tap):
        return fn
    owner = getattr(fn, "__self__", None)
    return owner if isinstance(owner, Tap) else None


def output_of(module: torch.nn.Module, *, permanent: bool = False) -> Tap:
    """A function for any summary op that gives ``module``'s output on a due step.

    For example ``sh.histogram("act/fc1", sh.output_of(model.fc1))`` or
    ``sh.image("maps", sh.output_of(model.conv1))``: pass it as the op's function
    itself (not inside another function), so that the session finds and arms it. The
    output is captured only in due
    steps (armed when the step is known to be due, released once its ops are
    evaluated), detached, and let go of after the step. A module called several times
    in one step gives its outputs concatenated along the first dimension, each call
    counted once. Under gradient accumulation it is the due window's last micro-batch's,
    as under Lightning. Under ``torch.compile`` it works unchanged (see
    ``_ops.taps``); ``permanent=True`` is for a model compiled before its first due step.
    A forward recomputed in the backward pass (activation checkpointing) is not captured
    again under Lightning, whose callback closes the taps at ``on_before_backward``; in
    a plain loop, ``watch(..., activations=)`` tells it apart (``BackwardScope``).

    Args:
        module: The module whose output to capture: the tensor it returns, or the first
            tensor in the tuple, list or dict it returns (an LSTM's output, not its
            states).
        permanent: Keep the forward hook installed on every step (it then costs a call
            per forward on non-due steps, in eager mode).

    Returns:
        The function, for a summary op.

    Raises:
        TypeError: If ``module`` is not a ``torch.nn.Module``.

    Example:
        >>> import torch, summary_hook as sh
        >>> fc = torch.nn.Linear(4, 2)
        >>> op = sh.histogram("act/fc", sh.output_of(fc), collections=[])
    """
    if not isinstance(module, torch.nn.Module):
        raise TypeError(
            f"output_of takes a torch.nn.Module, got {module!r} of type {type(module).__name__}"
        )
    if not isinstance(permanent, bool):
        raise TypeError(f"output_of: permanent must be a bool, got {permanent!r}")
    return Tap(module, permanent)
