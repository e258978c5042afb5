"""The READMEs stay honest: every test infra/README.md names exists; cost figures follow benchmarks/RESULTS.md."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "infra" / "README.md"
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
WRITE_PRICE = 0.625  # USD per million write request units, the price the README states
READ_PRICE = 0.125  # USD per million read request units


def test_every_test_named_here_exists():
    named = re.findall(r"(tests/[\w/]+\.py)(?:::(\w+))?", README.read_text())
    assert len(named) > 30
    for path, test in named:
        source = ROOT / path
        assert source.is_file(), path
        if test:
            assert re.search(rf"^def {test}\(", source.read_text(), re.MULTILINE), f"{path}::{test}"


WORKLOADS = {
    "bulk": "14 days of history in bulk",
    "live": "live traffic",
    "steady": "steady 200 events/s",
    "worst": "mostly new visitors",
}
"""RESULTS.md's workload → the words the README's cost table names it by."""


def measured(prefix: str) -> float:
    """Units per event of the RESULTS.md row starting with `prefix` (a FAILED row has none: the test fails)."""
    match = re.search(rf"^\| {re.escape(prefix)}[^|]*\| ([\d.]+) (?:WU|RU) \|", RESULTS.read_text(), re.M)
    assert match, f"no measured figure for {prefix!r} in RESULTS.md (FAILED, or not run)"
    return float(match[1])


def stated(row: str, unit: str) -> tuple[float, float]:
    """Units per event and dollars per million events from a row of the README's cost table."""
    match = re.search(
        rf"^\| {re.escape(row)} \| ([\d.]+) {unit} units? per event[^|]*\| \$([\d.]+)", README.read_text(), re.M
    )
    assert match, row
    return float(match[1]), float(match[2])


def test_the_cost_table_uses_the_measured_units_and_the_stated_prices():
    text = " ".join(README.read_text().split())  # prices may be wrapped across lines
    assert f"${WRITE_PRICE} per million write request units" in text
    assert f"${READ_PRICE} per million read request units" in text
    rows = [("DynamoDB writes, collect", "write", WRITE_PRICE, measured("WU per accepted event, collect path, bulk"))]
    for workload, words in WORKLOADS.items():
        rows.append(
            (f"DynamoDB writes, {words}", "write", WRITE_PRICE, measured(f"WU per event end-to-end, {workload} ("))
        )
        rows.append((f"DynamoDB reads, {words}", "read", READ_PRICE, measured(f"RU per event end-to-end, {workload}")))
    for row, unit, price, units in rows:
        written, dollars = stated(row, unit)
        # a re-run of `make bench` may move the figures a little; more than that and this table must be redone
        assert abs(written - units) <= 0.05 * max(1.0, units), (row, written, units)
        assert abs(dollars - written * price) <= 0.005 + 1e-9, (row, dollars)  # to the cent


def test_the_main_readme_states_the_measured_figures():
    text = (ROOT / "README.md").read_text()
    for workload, words in WORKLOADS.items():
        units = measured(f"WU per event end-to-end, {workload} (")
        match = re.search(
            rf"^\| write units per event end-to-end, {re.escape(words)}[^|]*\| \*\*([\d.]+)\*\*", text, re.M
        )
        assert match, words
        assert abs(float(match[1]) - units) <= 0.05 * max(1.0, units), (words, match[1], units)
