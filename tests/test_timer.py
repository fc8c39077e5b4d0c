"""TensorFlow's SecondOrStepTimerTest, ported (reference section 5.1)."""

from __future__ import annotations

import time
from unittest import mock

import pytest

from summary_hook import NeverTriggerTimer, SecondOrStepTimer

MOCK_START_TIME = 1484695987.209386


def test_raise_in_both_secs_and_steps():
    with pytest.raises(ValueError, match="Can not provide both every_secs and every_steps."):
        SecondOrStepTimer(every_secs=2.0, every_steps=10)


def test_raise_in_none_secs_and_steps():
    with pytest.raises(ValueError, match="Either every_secs or every_steps should be provided."):
        SecondOrStepTimer()


@mock.patch.object(time, "time")
def test_every_secs(mock_time):
    mock_time.return_value = MOCK_START_TIME
    timer = SecondOrStepTimer(every_secs=1.0)
    assert timer.should_trigger_for_step(1)
    timer.update_last_triggered_step(1)
    assert not timer.should_trigger_for_step(1)
    assert not timer.should_trigger_for_step(2)
    mock_time.return_value += 1.0
    assert not timer.should_trigger_for_step(1)
    assert timer.should_trigger_for_step(2)


def test_every_steps():
    timer = SecondOrStepTimer(every_steps=3)
    assert timer.should_trigger_for_step(1)
    timer.update_last_triggered_step(1)
    assert not timer.should_trigger_for_step(1)
    assert not timer.should_trigger_for_step(2)
    assert not timer.should_trigger_for_step(3)
    assert timer.should_trigger_for_step(4)


@mock.patch.object(time, "time")
def test_update_last_triggered_step(mock_time):
    mock_time.return_value = MOCK_START_TIME
    timer = SecondOrStepTimer(every_steps=1)
    assert timer.update_last_triggered_step(1) == (None, None)
    mock_time.return_value += 1.5
    assert timer.update_last_triggered_step(5) == (1.5, 4)
    mock_time.return_value += 0.25
    assert timer.update_last_triggered_step(7) == (0.25, 2)
    assert timer.last_triggered_step() == 7


def test_every_steps_zero_triggers_on_every_later_step():
    timer = SecondOrStepTimer(every_steps=0)
    timer.update_last_triggered_step(5)
    assert not timer.should_trigger_for_step(5)
    assert timer.should_trigger_for_step(6)
    assert not timer.should_trigger_for_step(4)  # the rule is step >= last + every_steps


def test_reset_forgets_last_trigger():
    timer = SecondOrStepTimer(every_steps=100)
    timer.update_last_triggered_step(1)
    timer.reset()
    assert timer.last_triggered_step() is None
    assert timer.should_trigger_for_step(2)


@mock.patch.object(time, "time")
def test_every_secs_boundary_is_inclusive_in_float(mock_time):
    mock_time.return_value = MOCK_START_TIME
    timer = SecondOrStepTimer(every_secs=0.5)
    timer.update_last_triggered_step(1)
    mock_time.return_value += 0.5
    assert timer.should_trigger_for_step(2)


@pytest.mark.parametrize("bad", ["10", True, [1]])
def test_raises_when_period_is_not_a_number(bad):
    with pytest.raises(TypeError, match="every_steps must be a number"):
        SecondOrStepTimer(every_steps=bad)


def test_never_trigger_timer_never_triggers():
    timer = NeverTriggerTimer()
    assert not timer.should_trigger_for_step(1)
    assert timer.update_last_triggered_step(1) == (None, None)
    assert timer.last_triggered_step() is None
