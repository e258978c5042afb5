"""Counter cells are domain values; storage maps them to the same keys and attribute names as ever, both ways."""

from __future__ import annotations

import json
import zlib
from datetime import UTC, datetime

import pytest

from shared.domain import analytics
from shared.domain.cells import (
    NET,
    TOTAL,
    FunnelCell,
    HourOfWeek,
    LastReturn,
    Minute,
    Named,
    Reached,
    ReachedBy,
    RetentionCell,
    ReturnedOn,
    SizeCell,
    StatsCell,
    StepTime,
    TimingCell,
    size_cells,
)
from shared.domain.events import CallType, TrackingEvent
from shared.storage.analytics import (
    RawCell,
    RawCounter,
    cell_key,
    cell_of,
    counter_name,
    counter_of,
    decode_cells,
    encode_cells,
    from_items,
    to_items,
)
from shared.storage.blobs import _ZDICTS

CELLS = [
    (FunnelCell("purchase", "2026-11-02"), ("FUNNEL#purchase", "DAY#2026-11-02#0")),
    (RetentionCell("week", "2026-11-02", "2"), ("RETENTION#week", "2026-11-02#2")),
    (TimingCell("email"), ("TIMING", "email#0")),
    (StatsCell("2026-11-30", 7), ("STATS#2026-11-30", "H07#0")),
    (StatsCell("2026-11-30"), ("STATS#2026-11-30", "E#0")),
    (SizeCell("vip#1"), ("SEGSIZE", "vip#1#0")),
    (SizeCell("vip", "2026-11-30", "3"), ("SEGSIZE#2026-11-30", "vip#3")),
]
COUNTERS = [
    (TOTAL, "n"),
    (NET, "net"),
    (Reached(2), "s|2"),
    (ReachedBy("a|b", 2), "b|a|b|2"),
    (StepTime(2, 41), "t|2|41"),
    (ReturnedOn("Order|Completed", 3), "on|Order|Completed|3"),
    (LastReturn("*", 12), "last|*|12"),
    (HourOfWeek("web", 167), "h|web|167"),
    (Minute(9, 5), "m|0905"),
    (Named("Product Viewed"), "e|Product Viewed"),
]


@pytest.mark.parametrize(("cell", "key"), CELLS)
def test_a_cell_is_stored_under_its_key_and_read_back_from_it(cell, key):
    assert cell_key(cell) == key
    assert cell_of(*key) == cell


@pytest.mark.parametrize(("counter", "name"), COUNTERS)
def test_a_counter_is_stored_under_its_attribute_name_and_read_back_from_it(counter, name):
    assert counter_name(counter) == name
    assert counter_of(name) == counter


@pytest.mark.parametrize(
    ("pk", "sk"),
    [("FUNNEL#f", "DAY#2026-11-02#Tx#0"), ("STATS#2026-11-30", "H7#0"), ("TIMING", "web"), ("OTHER", "x#0")],
)
def test_a_key_this_version_does_not_spell_is_kept_as_it_is(pk, sk):
    assert cell_of(pk, sk) == RawCell(pk, sk)
    assert cell_key(cell_of(pk, sk)) == (pk, sk)


@pytest.mark.parametrize("name", ["s|x", "m|930", "b|2", "x|1", "entity2"])
def test_a_counter_name_this_version_does_not_spell_is_kept_as_it_is(name):
    assert counter_of(name) == RawCounter(name)
    assert counter_name(counter_of(name)) == name


def test_cells_of_different_kinds_with_the_same_fields_are_different():
    assert ReturnedOn("*", 3) != LastReturn("*", 3)
    assert len({ReturnedOn("*", 3): 1, LastReturn("*", 3): 2}) == 2


def test_a_customers_cells_are_stored_as_the_same_bytes_as_before():
    # Given a customer's events today (one order, one view) and the legacy spelling of what they add
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    events = [
        TrackingEvent("web", "m1", CallType.TRACK, now, now, user_id="c1", event="Order Completed"),
        TrackingEvent("web", "m2", CallType.TRACK, now, now, user_id="c1", event="Product Viewed"),
    ]
    definitions = analytics.parse_definitions({"funnels": [{"id": "buy", "steps": ["Product Viewed"]}]})
    # When they are computed and mapped to items
    items = to_items(analytics.customer_cells("c1", events, definitions, now=now))
    # Then the keys and names are those the table has always held
    assert items[("FUNNEL#buy", "DAY#2026-11-30#0")] == {"s|1": 1, "b|web|1": 1}
    assert items[("STATS#2026-11-30", "H12#0")] == {"n": 2, "m|1200": 2}
    assert items[("STATS#2026-11-30", "E#0")] == {"e|Order Completed": 1, "e|Product Viewed": 1}
    assert items[("RETENTION#day", "2026-11-30#0")]["on|Order Completed|0"] == 1
    assert items[("TIMING", "web#0")] == {"h|web|12": 2}  # a Monday, noon
    # And an encoded item decodes to the same cells and encodes to the same bytes
    blob = encode_cells(analytics.customer_cells("c1", events, definitions, now=now))
    assert encode_cells(decode_cells(blob)) == blob


def _a_customers_cells() -> analytics.Cells:
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    events = [
        TrackingEvent("web", f"m{n}", CallType.TRACK, now, now, user_id="c1", event=name)
        for n, name in enumerate(["Product Viewed", "Product Added", "Checkout Started", "Order Completed"])
    ]
    definitions = analytics.parse_definitions(
        {"funnels": [{"id": "purchase", "steps": ["Product Viewed", "Product Added", "Order Completed"]}]}
    )
    return analytics.customer_cells("c1", events, definitions, now=now)


def test_cells_are_stored_with_their_codec_and_those_stored_as_plain_zlib_still_decode():
    cells = _a_customers_cells()
    blob = encode_cells(cells)
    assert blob[:1] == b"\x05"
    assert decode_cells(blob) == cells
    plain = {f"{pk}\x1f{sk}": counts for (pk, sk), counts in sorted(to_items(cells).items())}
    stored_before = zlib.compress(json.dumps(plain, separators=(",", ":"), sort_keys=True).encode(), 6)
    assert stored_before[:1] == b"\x78"
    assert decode_cells(stored_before) == cells
    assert len(blob) < len(stored_before) * 0.8


def test_a_funnel_days_step_times_an_earlier_version_kept_apart_are_read_into_the_days_cell():
    # Given a funnel day as versions before 2026-12 stored it: the steps' times in items of their own, and a
    # customer's cells that spell it so, compressed with that version's codec (v4)
    day = ("FUNNEL#buy", "DAY#2026-11-02#0", {"s|1": 2, "s|2": 1, "b|web|1": 2, "b|web|2": 1})
    times = ("FUNNEL#buy", "DAY#2026-11-02#T2#0", {"t|2|5": 1})
    plain = {f"{pk}\x1f{sk}": counts for pk, sk, counts in (day, times)}
    compressor = zlib.compressobj(level=6, zdict=_ZDICTS[b"\x04"])
    v4 = b"\x04" + compressor.compress(json.dumps(plain, separators=(",", ":"), sort_keys=True).encode())
    v4 += compressor.flush()
    # When they are read (counter items, or the customer's cells)
    expected = {
        FunnelCell("buy", "2026-11-02"): {
            Reached(1): 2,
            Reached(2): 1,
            ReachedBy("web", 1): 2,
            ReachedBy("web", 2): 1,
            StepTime(2, 5): 1,
        }
    }
    # Then both are the day's one cell, written back as this version keys it
    assert from_items([day, times]) == expected
    assert decode_cells(v4) == expected
    assert to_items(expected) == {("FUNNEL#buy", "DAY#2026-11-02#0"): {**day[2], "t|2|5": 1}}


def test_a_size_step_counts_the_total_and_the_days_net_change():
    assert to_items(size_cells("vip", -1, "2026-11-30")) == {
        ("SEGSIZE", "vip#0"): {"net": -1},
        ("SEGSIZE#2026-11-30", "vip#0"): {"net": -1},
    }
