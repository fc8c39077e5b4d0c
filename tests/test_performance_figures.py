"""The benchmark figures of the docs' Performance page agree with
``benchmarks/results.json``, so the two cannot drift apart again.

Every number in the result column of the Performance table must be one of the committed
run's numbers for that measurement (a value, a detail, a count in its keys, or a number
of its comparison), as the page rounds it: to the decimals written, or for a whole
number to its significant digits, in any unit a thousand or a million times larger or
smaller. Outside the Performance page, a paragraph of the README or the docs that names
a measurement (``P7``) states no figure of it: the figures live in one place.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ROOT, docs_pages

RESULTS = os.path.join(ROOT, "benchmarks", "results.json")
#: A number as the README writes one: 1,551 or 0.59 or 2^17 (the last is not a figure).
NUMBER = re.compile(r"(?<![\w^.])\d[\d,]*(?:\.\d+)?(?![\w^])")
#: A measured figure: a number with a unit of time, size or speed, or a ratio.
FIGURE = re.compile(r"\d[\d,]*(?:\.\d+)?\s?(?:µs|ms|s\b|MB|GB|KB|bytes|x\b)")
SCALES = (1.0, 1e3, 1e-3, 1e6, 1e-6)


PERFORMANCE = "docs/performance.md"


def prose(path: str) -> str:
    """A Markdown file's text without its code blocks."""
    with open(os.path.join(ROOT, path), encoding="utf-8") as page:
        text = page.read()
    return re.sub(r"^```\w*\n.*?^```$", "", text, flags=re.S | re.M)


def numbers_of(result: Any) -> Iterator[float]:
    """Every number in one measurement's results: values, numeric keys, and the numbers
    its comparison text states."""
    if isinstance(result, bool):
        return
    if isinstance(result, (int, float)):
        yield float(result)
    elif isinstance(result, str):
        for match in NUMBER.findall(result):
            yield float(match.replace(",", ""))
    elif isinstance(result, dict):
        for key, item in result.items():
            if re.fullmatch(r"\d+", str(key)):
                yield float(key)
            yield from numbers_of(item)
    elif isinstance(result, list):
        for item in result:
            yield from numbers_of(item)


def rounds_to(value: float, written: str) -> bool:
    """Whether ``value``, in some unit, is what the page writes as ``written``."""
    target = float(written.replace(",", ""))
    digits = written.replace(",", "")
    for scale in SCALES:
        scaled = value * scale
        if "." in digits:
            if round(scaled, len(digits.split(".")[1])) == target:
                return True
        else:
            significant = max(1, len(digits.rstrip("0")))
            if float(f"{scaled:.{significant}g}") == target:
                return True
    return False


def performance_rows() -> list[tuple[str, str]]:
    table = prose(PERFORMANCE)
    rows = re.findall(r"^\| (P\d+) \| [^|]* \| ([^|]*) \|", table, flags=re.M)
    assert len(rows) >= 12, "the Performance table lost its rows"
    return rows


def committed_results() -> dict[str, Any]:
    with open(RESULTS, encoding="utf-8") as f:
        return {result["id"]: result for result in json.load(f)["results"]}


@pytest.mark.parametrize(("id_", "cell"), performance_rows(), ids=lambda v: v[:4])
def test_each_figure_of_the_performance_table_is_the_committed_runs(id_, cell):
    known = list(numbers_of(committed_results()[id_]))
    for written in NUMBER.findall(cell.replace("`", "")):
        assert any(rounds_to(value, written) for value in known), (
            f"{id_}: the page says {written} ({cell!r}); results.json has no such number"
        )


def test_no_measurement_is_quoted_outside_the_performance_page():
    others = [path for path in ["README.md", *docs_pages()] if path != PERFORMANCE]
    assert "docs/guides/distributed.md" in others
    for path in others:
        for paragraph in re.split(r"\n\s*\n|\n(?=- )|\n(?=\| )", prose(path)):
            if re.search(r"\bP\d+\b", paragraph):
                assert not FIGURE.search(paragraph), (
                    f"{path} quotes a figure of a measurement; cite it from the "
                    f"Performance page instead:\n{paragraph}"
                )


def test_the_check_finds_a_figure_that_drifted():
    # The rule can fail: earlier READMEs said P9's step took 31 ms (30.5 in the run), P1
    # 0.59 µs a value (0.585) and P10's due step was 3.5x faster (5.2x).
    assert not rounds_to(30.486688100063475, "31") and rounds_to(30.486688100063475, "30.5")
    assert not rounds_to(0.5849840399969253, "0.59")
    assert not any(rounds_to(v, "3.5") for v in numbers_of(committed_results()["P10"]))
    assert rounds_to(125288, "125") and rounds_to(125288, "0.13")  # bytes as KB, as MB
