"""Golden step tables shared by both front ends (the plain loop and Lightning).

Each scenario is TensorFlow's: the summary value counts its evaluations, so a table
that matches proves both the schedule and that functions ran only on due steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Scenario:
    name: str
    runs: int
    expected: dict[int, dict[str, float]]
    save_steps: int | None = None
    save_secs: float | None = None
    tick: float = 0.0  # seconds the mocked clock moves after each run
    tags: tuple[str, ...] = ("my_summary",)
    extra: dict[str, object] = field(default_factory=dict)


MOCK_START_TIME = 1484695987.209386

SCENARIOS = [
    Scenario(
        "save_steps",  # TensorFlow's test_save_steps
        runs=30,
        save_steps=8,
        expected={
            1: {"my_summary": 1.0},
            9: {"my_summary": 2.0},
            17: {"my_summary": 3.0},
            25: {"my_summary": 4.0},
        },
    ),
    Scenario(
        "multiple_summaries",  # TensorFlow's test_multiple_summaries
        runs=10,
        save_steps=8,
        tags=("my_summary", "my_summary2"),
        expected={
            1: {"my_summary": 1.0, "my_summary2": 2.0},
            9: {"my_summary": 2.0, "my_summary2": 4.0},
        },
    ),
    Scenario(
        "save_secs_saving_once_every_step",
        runs=4,
        save_secs=0.5,
        tick=0.5,
        expected={
            1: {"my_summary": 1.0},
            2: {"my_summary": 2.0},
            3: {"my_summary": 3.0},
            4: {"my_summary": 4.0},
        },
    ),
    Scenario(
        "save_secs_saving_once_every_three_steps",
        runs=8,
        save_secs=9.0,
        tick=3.1,
        expected={1: {"my_summary": 1.0}, 4: {"my_summary": 2.0}, 7: {"my_summary": 3.0}},
    ),
    Scenario(
        "save_steps_1",
        runs=5,
        save_steps=1,
        expected={s: {"my_summary": float(s)} for s in range(1, 6)},
    ),
    Scenario(
        "save_steps_3",
        runs=10,
        save_steps=3,
        expected={
            1: {"my_summary": 1.0},
            4: {"my_summary": 2.0},
            7: {"my_summary": 3.0},
            10: {"my_summary": 4.0},
        },
    ),
    Scenario(
        "save_secs_irregular_clock",
        runs=6,
        save_secs=1.0,
        tick=0.4,
        # triggers at T0 (step 1), T0+1.2 (step 4, first >= T0+1), T0+2.4 (step 7 > 6: none)
        expected={1: {"my_summary": 1.0}, 4: {"my_summary": 2.0}},
    ),
]
