"""``SecondOrStepTimer``: TensorFlow's every-N-steps-or-seconds trigger, exactly.

The clock is read as ``time.time()`` through the ``time`` module at call time, so a
test may patch ``time.time`` as TensorFlow's tests do. Not thread-safe: one timer
belongs to one hook.
"""

from __future__ import annotations

import math
import numbers
import time

__all__ = ["NeverTriggerTimer", "SecondOrStepTimer", "checked_seconds", "checked_steps"]


def checked_steps(name: str, value: object) -> int:
    """A hook's period in steps: a positive integer (numpy's included), as an ``int``.

    TensorFlow accepts any value here (0, negatives, floats); a hook of this package
    rejects them, naming the argument the user passed.

    Raises:
        TypeError: If ``value`` is not an integer.
        ValueError: If it is not positive.

    Example:
        >>> checked_steps("save_steps", 10)
        10
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive integer, got {value!r}")
    steps = int(value)
    if steps < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return steps


def checked_seconds(name: str, value: object) -> float:
    """A hook's period in seconds: a positive, finite real number, as a ``float``.

    Raises:
        TypeError: If ``value`` is not a real number.
        ValueError: If it is not positive and finite (0, negative, NaN, infinity).

    Example:
        >>> checked_seconds("save_secs", 30)
        30.0
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a positive number of seconds, got {value!r}")
    seconds = float(value)
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"{name} must be a positive, finite number of seconds, got {value!r}")
    return seconds


class _HookTimer:
    """Base of the timers: decides whether a step is due."""

    def reset(self) -> None:
        """Forget the last trigger."""
        raise NotImplementedError

    def should_trigger_for_step(self, step: int) -> bool:
        """Whether ``step`` is due."""
        raise NotImplementedError

    def update_last_triggered_step(self, step: int) -> tuple[float | None, int | None]:
        """Record a trigger at ``step``; return (seconds, steps) since the previous one."""
        raise NotImplementedError

    def last_triggered_step(self) -> int | None:
        """The step of the last trigger, or None."""
        raise NotImplementedError


class SecondOrStepTimer(_HookTimer):
    """Trigger every ``every_steps`` steps or every ``every_secs`` seconds.

    The first call always triggers, a step never triggers twice, and a later step
    triggers when ``step >= last_step + every_steps`` or
    ``time.time() >= last_time + every_secs``. As in TensorFlow, zero, negative and
    float periods are accepted (``every_steps=0`` triggers on every new step); the hooks
    of this package accept positive periods only (:func:`checked_steps`).

    Args:
        every_secs: Period in seconds.
        every_steps: Period in steps.

    Raises:
        ValueError: If both or neither period is given (TensorFlow's messages).
        TypeError: If a period is not a real number.

    Example:
        >>> timer = SecondOrStepTimer(every_steps=3)
        >>> timer.should_trigger_for_step(1)
        True
        >>> timer.update_last_triggered_step(1)
        (None, None)
        >>> [timer.should_trigger_for_step(s) for s in (2, 3, 4)]
        [False, False, True]
    """

    def __init__(self, every_secs: float | None = None, every_steps: int | None = None) -> None:
        self.reset()
        self._every_secs = every_secs
        self._every_steps = every_steps
        if self._every_secs is None and self._every_steps is None:
            raise ValueError("Either every_secs or every_steps should be provided.")
        if self._every_secs is not None and self._every_steps is not None:
            raise ValueError("Can not provide both every_secs and every_steps.")
        for name, value in (("every_secs", every_secs), ("every_steps", every_steps)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, numbers.Real)
            ):
                raise TypeError(f"{name} must be a number, got {value!r}")
        super().__init__()

    def reset(self) -> None:
        self._last_triggered_step: int | None = None
        self._last_triggered_time: float | None = None

    def should_trigger_for_step(self, step: int) -> bool:
        if self._last_triggered_step is None:
            return True
        if self._last_triggered_step == step:
            return False
        if self._every_secs is not None:
            assert self._last_triggered_time is not None
            if time.time() >= self._last_triggered_time + self._every_secs:
                return True
        return (
            self._every_steps is not None and step >= self._last_triggered_step + self._every_steps
        )

    def update_last_triggered_step(self, step: int) -> tuple[float | None, int | None]:
        current_time = time.time()
        if self._last_triggered_time is None:
            elapsed_secs: float | None = None
            elapsed_steps: int | None = None
        else:
            assert self._last_triggered_step is not None
            elapsed_secs = current_time - self._last_triggered_time
            elapsed_steps = step - self._last_triggered_step
        self._last_triggered_time = current_time
        self._last_triggered_step = step
        return elapsed_secs, elapsed_steps

    def last_triggered_step(self) -> int | None:
        return self._last_triggered_step

    def __repr__(self) -> str:
        period = (
            f"every_steps={self._every_steps!r}"
            if self._every_steps is not None
            else f"every_secs={self._every_secs!r}"
        )
        return f"SecondOrStepTimer({period})"


class NeverTriggerTimer(_HookTimer):
    """A timer that never triggers."""

    def reset(self) -> None:
        pass

    def should_trigger_for_step(self, step: int) -> bool:
        return False

    def update_last_triggered_step(self, step: int) -> tuple[float | None, int | None]:
        return None, None

    def last_triggered_step(self) -> int | None:
        return None
