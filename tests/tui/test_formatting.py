"""Pure formatting and the data layer's helpers (no app, no storage)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tui import formatting as f
from tui.data import IteratorPager

NOW = datetime(2026, 3, 7, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, f.DASH),
        (0.42, "0.4s"),
        (45, "45s"),
        (720, "12m"),
        (3 * 3600 + 300, "3h 05m"),
        (2 * 86400 + 4 * 3600, "2d 4h"),
    ],
)
def test_duration(seconds, text):
    assert f.duration(seconds) == text


@pytest.mark.parametrize(
    ("at", "text"),
    [
        ("2026-03-07T11:55:00Z", "5m ago"),
        ("2026-03-07T12:00:02.000Z", "just now"),
        ("2026-03-07T14:00:00+00:00", "in 2h 00m"),
        (None, f.DASH),
        ("not a time", f.DASH),
    ],
)
def test_relative(at, text):
    assert f.relative(at, NOW) == text


def test_bars_and_sparklines():
    assert f.bar(1.0, 4) == "████"
    assert f.bar(0.5, 4) == "██  "
    assert f.bar(0.0625, 4) == "▎   "
    assert f.bar(2.0, 2) == "██"
    assert f.spark([1, 2, 3, 4, 5, 6, 7, 8]) == "▁▂▃▄▅▆▇█"
    assert f.spark([5, 5, 5]) == "▄▄▄"
    assert f.spark([0, 0]) == "▁▁"
    assert f.spark([]) == ""


def test_figures():
    assert f.count(1234567) == "1,234,567"
    assert f.percent(0.4423) == "44.2%"
    assert f.percent(None) == f.DASH
    assert f.money(59.5) == "59.50"
    assert f.delta([250, 311]) == "+61"
    assert f.delta([3, 3]) == "±0"
    assert f.hour_of_week(0) == "Mon 00:00"
    assert f.hour_of_week(42) == "Tue 18:00"
    assert f.hour_of_week(167) == "Sun 23:00"
    assert [f.lag_level(s) for s in (None, 1, 30, 600)] == ["none", "ok", "warn", "bad"]
    assert f.heat(None) == "dim"
    assert f.heat(1.0).startswith("black on #")


def test_compact_json_keeps_short_parts_on_one_line():
    rule = {"count": {"event": "Order Completed"}, "within": "30d", "gte": 1}
    assert f.compact_json(rule, 80) == '{"count": {"event": "Order Completed"}, "within": "30d", "gte": 1}'
    assert f.compact_json(rule, 40).splitlines() == [
        "{",
        '  "count": {"event": "Order Completed"},',
        '  "within": "30d",',
        '  "gte": 1',
        "}",
    ]
    assert f.pairs({"events": 3, "orders": 1}) == "events 3 · orders 1"


def test_error_text_never_a_traceback():
    from botocore.exceptions import ClientError, EndpointConnectionError

    throttled = ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "Query")
    assert f.error_text(throttled) == "ThrottlingException: slow down"
    assert f.error_text(EndpointConnectionError(endpoint_url="http://x")).startswith("the table does not answer")
    assert f.error_text(KeyError("purchase")) == "KeyError: 'purchase'"


def test_iterator_pager_pulls_lazily():
    pulled = []

    def members():
        for n in range(5):
            pulled.append(n)
            yield f"c{n}"

    pager = IteratorPager(members(), 2)
    assert pager.page(0) == (["c0", "c1"], True)
    assert pulled == [0, 1, 2]  # one ahead, to know there is more
    assert pager.page(2) == (["c4"], False)
    assert pager.page(1) == (["c2", "c3"], True)
    assert pager.page(3) == ([], False)
