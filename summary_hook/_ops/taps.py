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

from typing import Any

import torch

__all__ = ["Tap", "output_of"]


class Tap:
    """The outputs of ``module`` in the current due step; call it for them.

    Made by :func:`output_of`.
    """

    def __init__(self, module: torch.nn.Module, permanent: bool) -> None:
        self._module = module
        self._handle: Any = None
        self.armed = False
        self.captured: list[torch.Tensor] = []
        self.permanent = permanent
        if permanent:
            self._install()

    def arm(self) -> None:
        """Capture the module's outputs from now until :meth:`release`."""
        self.armed = True
        if self._handle is None:
            self._install()

    def release(self) -> None:
        """Let go of what was captured; in eager mode, remove the hook."""
        self.armed = False
        self.captured = []
        if not self.permanent and self._handle is not None:
            self._handle.remove()
            self._handle = None

    def __call__(self) -> torch.Tensor:
        captured = self.captured
        if not captured:
            raise RuntimeError(
                f"sh.output_of({type(self._module).__name__}) captured nothing at this step: "
                "the module did not run in it, or it runs compiled and was compiled before "
                "its first due step (pass permanent=True to output_of)"
            )
        if len(captured) == 1:
            return captured[0]
        # Several calls (shared weights, recurrence): each counted once, along the batch.
        if all(t.shape[1:] == captured[0].shape[1:] and t.dim() for t in captured):
            return torch.cat(captured)
        return torch.cat([t.reshape(-1) for t in captured])

    def _install(self) -> None:
        self._handle = self._module.register_forward_hook(self._capture)

    def _capture(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        if self.armed:
            if torch.compiler.is_compiling():
                self.permanent = True  # see the module's docstring
            if isinstance(output, torch.Tensor):
                self.captured.append(output.detach())

    def __repr__(self) -> str:
        return f"output_of({type(self._module).__name__})"


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
    A module whose forward is recomputed in the backward pass (activation
    checkpointing) is captured in the recomputation too: not yet told apart.

    Args:
        module: The module whose output to capture (the tensor it returns).
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
