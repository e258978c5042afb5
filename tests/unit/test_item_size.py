"""The customer item size section of `make bench` (benchmarks/item_size.py), on a tiny history: its figures agree
with each other and with the meter's billing (not a test of the 1 KB target)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from benchmarks.item_size import HEAVY_EVENTS, HEAVY_IDENTITIES, Figures, measure, rows
from shared.storage.blobs import decode_json

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def figures() -> Figures:
    return measure(20, 5, now=NOW)


def test_percentiles_are_ordered_and_every_customer_is_sized(figures: Figures) -> None:
    p50, p95 = figures.percentile(0.5), figures.percentile(0.95)
    assert figures.customers == len(figures.items) == 20
    assert figures.items[0].total <= p50.total <= p95.total <= figures.items[-1].total
    assert all(item.events > 0 for item in figures.items)


def test_write_units_are_the_kilobytes_started(figures: Figures) -> None:
    for item in [*figures.items, figures.heavy]:
        assert item.units == math.ceil(item.total / 1024)
        assert item.body + item.cells < item.total


def test_the_heavy_customer_holds_its_events_and_outweighs_the_p95(figures: Figures) -> None:
    assert figures.heavy.events == HEAVY_EVENTS
    assert figures.heavy.total > figures.percentile(0.95).total
    assert figures.heavy_fields["carts"] > 0
    assert list(figures.heavy_fields.values()) == sorted(figures.heavy_fields.values(), reverse=True)


def test_body_and_cells_shares_are_parts_of_the_bytes(figures: Figures) -> None:
    body, cells = figures.share("body"), figures.share("cells")
    assert 0 < body < 1 and 0 < cells < 1 and body + cells < 1


def test_the_rows_report_the_p95_against_the_target(figures: Figures) -> None:
    simulated, heavy = rows(figures)
    p95 = figures.percentile(0.95)
    assert f"p95 {p95.total:,} B ({p95.units} WU)" in simulated[1]
    in_1_kb = sum(item.total <= 1024 for item in figures.items) / len(figures.items)
    assert f"{in_1_kb:.1%} in 1 KB" in simulated[1]
    assert 0 < figures.within(1024) <= figures.within(2048) <= 1
    assert simulated[4] == "≤ 1 KB"
    assert simulated[5] == ("yes" if p95.total <= 1024 else "no")
    assert f"{HEAVY_EVENTS:,} events" in heavy[0]
    assert heavy[4] == "—"


def test_the_heavy_body_fields_are_the_stored_body_fields(figures: Figures) -> None:
    from benchmarks.item_size import customer_item, heavy_history, identities_of
    from shared.domain import analytics

    history = heavy_history(5, 8, NOW, events=200)
    item = customer_item(history, identities_of(history)[:HEAVY_IDENTITIES], analytics.Definitions(), NOW)
    assert set(decode_json(item["body"])) == set(figures.heavy_fields)
    assert len(history) == 200
