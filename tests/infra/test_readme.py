"""infra/README.md stays honest: every test it names exists, and its cost table follows the measured write units."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "infra" / "README.md"
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
WRITE_PRICE = 0.625  # USD per million write request units, the price the README states


def test_every_test_named_here_exists():
    named = re.findall(r"(tests/[\w/]+\.py)(?:::(\w+))?", README.read_text())
    assert len(named) > 30
    for path, test in named:
        source = ROOT / path
        assert source.is_file(), path
        if test:
            assert re.search(rf"^def {test}\(", source.read_text(), re.MULTILINE), f"{path}::{test}"


def measured(row: str) -> tuple[float, float | None]:
    """Write units per event from a RESULTS.md row: the total, and the process share when given."""
    match = re.search(rf"^\| {re.escape(row)} \| ([\d.]+) WU(?: \(([\d.]+) process\))? \|", RESULTS.read_text(), re.M)
    assert match, row
    return float(match[1]), float(match[2]) if match[2] else None


def stated(row: str) -> tuple[float, float]:
    """Write units per event and dollars per million events from a row of the README's cost table."""
    match = re.search(
        rf"^\| {re.escape(row)} \| ([\d.]+) write units? per event[^|]*\| \$([\d.]+)", README.read_text(), re.M
    )
    assert match, row
    return float(match[1]), float(match[2])


def test_the_cost_table_uses_the_measured_write_units_and_the_stated_price():
    assert f"${WRITE_PRICE} per million write request units" in README.read_text()
    collect, _ = measured("write units per accepted event, collect path (mean)")
    total, process = measured("write units per accepted event, collect + process (mean)")
    assert process is not None
    for row, units in (
        ("DynamoDB writes, collect", collect),
        ("DynamoDB writes, process", process),
        ("DynamoDB writes, collect + process", total),
    ):
        written, dollars = stated(row)
        # a re-run of `make bench` may move the figures a little; more than that and this table must be redone
        assert abs(written - units) <= 0.05, (row, written, units)
        assert abs(dollars - written * WRITE_PRICE) <= 0.005 + 1e-9, (row, dollars)  # to the cent
