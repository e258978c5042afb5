"""Segment rules: every condition type at its boundaries, the starter segments on a story, rule-file errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from shared.domain.errors import RuleDefinitionError
from shared.domain.events import CallType, TrackingEvent
from shared.domain.segments import Facts, due_time, evaluate, parse_rules

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)
STARTERS = Path(__file__).resolve().parents[2] / "infra" / "segments" / "starters.json"


def an_event(name: str, at: datetime, n: int = 0, **properties: Any) -> TrackingEvent:
    return TrackingEvent(
        source_id="web",
        message_id=f"m{n}-{name}-{at.timestamp()}",
        type=CallType.TRACK,
        timestamp=at,
        received_at=at,
        user_id="u",
        event=name,
        properties=properties,
    )


def rule(condition: dict[str, Any]) -> Any:
    (parsed,) = parse_rules({"segments": [{"id": "s", "rule": condition}]})
    return parsed


def member(
    condition: dict[str, Any], events: list[TrackingEvent], traits: dict[str, Any] | None = None, now: datetime = NOW
) -> bool:
    return evaluate(rule(condition), Facts(traits or {}, events), now).member


@pytest.mark.parametrize(
    ("age", "expected"),
    [(timedelta(days=7) - SECOND, True), (timedelta(days=7), True), (timedelta(days=7) + SECOND, False)],
)
def test_count_within_a_window_is_inclusive_at_the_edge(age, expected):
    assert (
        member({"count": {"event": "Email Opened"}, "within": "7d", "gte": 1}, [an_event("Email Opened", NOW - age)])
        is expected
    )


@pytest.mark.parametrize(
    ("ages_in_days", "expected"), [((13, 8), True), ((6,), False), ((15,), False), ((7,), True), ((14,), True)]
)
def test_count_between_two_ages(ages_in_days, expected):
    events = [an_event("Product Viewed", NOW - timedelta(days=d), n) for n, d in enumerate(ages_in_days)]
    assert member({"count": {"event": "Product Viewed"}, "between": ["14d", "7d"], "gte": 1}, events) is expected


@pytest.mark.parametrize(
    ("kind", "expected_value", "op"), [("sum", 600, "gte"), ("min", 100, "eq"), ("max", 500, "eq"), ("avg", 300, "eq")]
)
def test_sum_min_max_avg_of_a_property_with_a_filter(kind, expected_value, op):
    events = [
        an_event("Order Completed", NOW - timedelta(days=1), 1, revenue=100, category="shoes"),
        an_event("Order Completed", NOW - timedelta(days=2), 2, revenue="500", category="shoes"),
        an_event("Order Completed", NOW - timedelta(days=3), 3, revenue=9999, category="hats"),
    ]
    condition = {
        kind: {"event": "Order Completed", "property": "revenue", "where": {"category": "shoes"}},
        "within": "30d",
        op: expected_value,
    }
    assert member(condition, events)


@pytest.mark.parametrize(
    ("age", "expected"),
    [(timedelta(days=60) - SECOND, False), (timedelta(days=60), False), (timedelta(days=60) + SECOND, True)],
)
def test_last_event_before_an_age(age, expected):
    assert (
        member({"last": {"event": "Order Completed"}, "before": "60d"}, [an_event("Order Completed", NOW - age)])
        is expected
    )


def test_recency_needs_the_event_to_exist():
    assert not member({"last": {"event": "Order Completed"}, "before": "60d"}, [])


@pytest.mark.parametrize(
    ("waited", "expected"),
    [(timedelta(hours=1) - SECOND, False), (timedelta(hours=1), True), (timedelta(hours=1) + SECOND, True)],
)
def test_absence_makes_a_member_from_the_deadline_on(waited, expected):
    added = an_event("Product Added", NOW - waited, cart_id="c1")
    condition = {
        "absence": {
            "did": {"event": "Product Added"},
            "then_not": {"event": "Order Completed"},
            "within": "1h",
            "match": "cart_id",
        }
    }
    assert member(condition, [added]) is expected


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        ({"cart_id": "c1"}, False),  # the same cart was bought
        ({"cart_id": "c2"}, True),  # another cart was bought: c1 is still abandoned
        ({}, False),  # an order without a cart id resolves every earlier cart
    ],
)
def test_absence_matches_the_awaited_event_on_properties(order, expected):
    events = [
        an_event("Product Added", NOW - timedelta(hours=3), 1, cart_id="c1"),
        an_event("Order Completed", NOW - timedelta(hours=2), 2, **order),
    ]
    condition = {
        "absence": {
            "did": {"event": "Product Added"},
            "then_not": {"event": "Order Completed"},
            "within": "1h",
            "match": ["cart_id"],
        }
    }
    assert member(condition, events) is expected


def test_absence_says_when_it_will_change_without_a_new_event():
    added = an_event("Product Added", NOW - timedelta(minutes=20), cart_id="c1")
    condition = {
        "absence": {"did": {"event": "Product Added"}, "then_not": {"event": "Order Completed"}, "within": "1h"}
    }
    result = evaluate(rule(condition), Facts({}, [added]), NOW)
    assert (result.member, result.next_change) == (False, added.timestamp + timedelta(hours=1))


@pytest.mark.parametrize(
    ("condition", "traits", "expected"),
    [
        ({"trait": "plan", "eq": "pro"}, {"plan": "pro"}, True),
        ({"trait": "plan", "eq": "pro"}, {"plan": "free"}, False),
        ({"trait": "age", "gte": 18}, {"age": 18}, True),
        ({"trait": "age", "gte": 18}, {"age": "n/a"}, False),
        ({"trait": "email", "exists": True}, {"email": "x"}, True),
        ({"trait": "email", "exists": True}, {}, False),
    ],
)
def test_trait_conditions(condition, traits, expected):
    assert member(condition, [], traits) is expected


def test_all_any_not_combine():
    views = [an_event("Product Viewed", NOW - timedelta(days=1), n) for n in range(5)]
    browsers = {
        "all": [
            {"count": {"event": "Product Viewed"}, "within": "7d", "gte": 5},
            {"not": {"count": {"event": "Order Completed"}, "within": "30d", "gte": 1}},
        ]
    }
    assert member(browsers, views)
    assert not member(browsers, [*views, an_event("Order Completed", NOW - timedelta(days=10), 9)])
    assert member({"any": [{"trait": "vip", "eq": True}, {"count": {"event": "Product Viewed"}, "gte": 5}]}, views)


def test_the_starter_segments_on_a_customer_story():
    # Given the starters and a customer who browses, adds to cart, leaves, then comes back and buys big
    rules = {r.id: r for r in parse_rules(json.loads(STARTERS.read_text()), source=str(STARTERS))}
    start = NOW
    story = [an_event("Product Viewed", start + timedelta(minutes=m), m) for m in range(5)]
    story.append(an_event("Product Added", start + timedelta(minutes=6), 10, cart_id="c1"))

    def segments_at(moment: datetime, events: list[TrackingEvent]) -> set[str]:
        return {i for i, r in rules.items() if evaluate(r, Facts({}, events), moment).member}

    # When / Then: at once a browser and new; one hour after the add, also a cart abandoner
    assert segments_at(start + timedelta(minutes=7), story) == {"browsers", "new_customers"}
    deadline = evaluate(rules["cart_abandoners"], Facts({}, story), start + timedelta(minutes=7)).next_change
    assert deadline == start + timedelta(minutes=66)
    assert "cart_abandoners" in segments_at(deadline, story)
    # an order of 600 brings them out of abandoners and browsers, into heavy spenders
    story.append(an_event("Order Completed", deadline + timedelta(minutes=5), 20, cart_id="c1", revenue=600))
    assert segments_at(deadline + timedelta(minutes=6), story) == {"heavy_spenders", "new_customers"}
    # two months of silence later: lapsed
    assert segments_at(deadline + timedelta(days=62), story) == {"heavy_spenders", "lapsed"}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({}, "rules.json: expected a mapping with a 'segments' list"),
        ({"segments": [{"id": "Bad Id", "rule": {}}]}, "rules.json: segment Bad Id: id must be"),
        (
            {"segments": [{"id": "a", "rule": {"trait": "x", "eq": 1}}, {"id": "a", "rule": {"trait": "x", "eq": 1}}]},
            "rules.json: segment a: id is used twice",
        ),
        (
            {"segments": [{"id": "a", "rule": {"count": {"event": "X"}, "within": "7 days", "gte": 1}}]},
            "rules.json: segment a: rule.within: '7 days' is not a duration like 30m, 1h, 7d or 2w",
        ),
        (
            {"segments": [{"id": "a", "rule": {"sum": {"event": "X"}, "gte": 1}}]},
            "rules.json: segment a: rule.sum: 'property' (the number to sum) is required",
        ),
        (
            {"segments": [{"id": "a", "rule": {"all": [{"count": {"event": "X"}}]}}]},
            "rules.json: segment a: rule.all[0]: a comparison is required",
        ),
        (
            {"segments": [{"id": "a", "rule": {"absence": {"did": {"event": "A"}, "within": "1h"}}}]},
            "rules.json: segment a: rule.absence: 'then_not' is required",
        ),
        ({"segments": [{"id": "a", "rule": {"frobnicate": 1}}]}, "rules.json: segment a: rule: unknown condition"),
        (
            {"segments": [{"id": "a", "rule": {"count": {"event": "X"}, "between": ["7d", "14d"], "gte": 1}}]},
            "rules.json: segment a: rule.between: the first age must be the older one",
        ),
    ],
)
def test_rule_file_errors_name_the_file_the_rule_and_the_problem(document, message):
    with pytest.raises(RuleDefinitionError) as refused:
        parse_rules(document, source="rules.json")
    assert str(refused.value).startswith(message)


@pytest.mark.parametrize("which", ["first", "last"])
@pytest.mark.parametrize(
    ("age", "expected"),
    [(timedelta(days=7) - SECOND, True), (timedelta(days=7), True), (timedelta(days=7) + SECOND, False)],
)
def test_first_and_last_within_an_age_are_inclusive_at_the_edge(which, age, expected):
    # Given the first and last matching events both exactly `age` old (the one event)
    events = [an_event("Product Viewed", NOW - age)]
    # Then
    assert member({which: {"event": "Product Viewed"}, "within": "7d"}, events) is expected


@pytest.mark.parametrize(
    "condition",
    [
        {"count": {"event": "Email Opened"}, "within": "7d", "gte": 1},
        {"last": {"event": "Email Opened"}, "within": "7d"},
        {"first": {"event": "Email Opened"}, "within": "7d"},
    ],
)
def test_an_event_leaving_a_window_is_the_next_change_right_after_the_edge(condition):
    # Given an event 2 days old in a 7-day window
    opened = an_event("Email Opened", NOW - timedelta(days=2))
    # When
    result = evaluate(rule(condition), Facts({}, [opened]), NOW)
    # Then it is a member until the edge (inclusive) and the scheduler must look right after it, not later
    leaves = opened.timestamp + timedelta(days=7)
    assert (result.member, result.next_change) == (True, leaves + timedelta(microseconds=1))
    assert evaluate(rule(condition), Facts({}, [opened]), leaves).member
    assert not evaluate(rule(condition), Facts({}, [opened]), result.next_change).member


def test_a_new_customer_leaves_new_customers_seven_days_after_the_first_event_without_any_new_one():
    # Given the starter and a customer first seen now, back every day since
    rules = {r.id: r for r in parse_rules(json.loads(STARTERS.read_text()), source=str(STARTERS))}
    events = [an_event("Product Viewed", NOW + timedelta(days=d), d) for d in range(5)]
    # When evaluated after their last event
    result = evaluate(rules["new_customers"], Facts({}, events), NOW + timedelta(days=4, hours=1))
    # Then they are new until 7 days after the first event, and that is when the scheduler looks again
    assert (result.member, result.next_change) == (True, NOW + timedelta(days=7, microseconds=1))
    assert not evaluate(rules["new_customers"], Facts({}, events), result.next_change).member


MICRO = timedelta(microseconds=1)
ABANDON = {
    "absence": {
        "did": {"event": "Product Added"},
        "then_not": {"event": "Order Completed"},
        "within": "1h",
        "match": ["cart_id"],
        "lookback": "7d",
    }
}


@pytest.mark.parametrize(("which", "expected"), [("first", False), ("last", True)])
def test_first_and_last_read_the_earliest_and_the_latest_matching_event(which, expected):
    events = [
        an_event("Product Viewed", NOW - timedelta(days=10), 1),
        an_event("Product Viewed", NOW - timedelta(days=1), 2),
    ]
    assert member({which: {"event": "Product Viewed"}, "within": "7d"}, events) is expected


def test_an_event_at_now_counts_for_recency():
    assert member({"last": {"event": "Product Viewed"}, "within": "1h"}, [an_event("Product Viewed", NOW)])


def test_last_before_an_age_changes_right_after_the_age():
    ordered = an_event("Order Completed", NOW - timedelta(days=1))
    result = evaluate(rule({"last": {"event": "Order Completed"}, "before": "60d"}), Facts({}, [ordered]), NOW)
    assert (result.member, result.next_change) == (False, ordered.timestamp + timedelta(days=60) + MICRO)


def test_a_change_that_is_now_is_not_upcoming():
    # Given the last open, which left its window exactly now
    opened = an_event("Email Opened", NOW - timedelta(days=7) - MICRO)
    result = evaluate(rule({"last": {"event": "Email Opened"}, "within": "7d"}), Facts({}, [opened]), NOW)
    assert (result.member, result.next_change) == (False, None)


def test_recency_reads_only_the_matching_events():
    events = [an_event("Order Completed", NOW - timedelta(days=10), 1), an_event("Product Viewed", NOW, 2)]
    assert not member({"last": {"event": "Order Completed"}, "within": "7d"}, events)


@pytest.mark.parametrize(("amounts", "expected"), [((200, 299), False), ((200, 300), True)])
def test_a_sum_starts_from_zero(amounts, expected):
    orders = [an_event("Order Completed", NOW - timedelta(days=1), n, revenue=a) for n, a in enumerate(amounts)]
    assert member({"sum": {"event": "Order Completed", "property": "revenue"}, "gte": 500}, orders) is expected


@pytest.mark.parametrize(("age", "expected"), [(timedelta(days=7), True), (timedelta(days=7) + MICRO, False)])
def test_an_abandonment_counts_up_to_its_lookback_inclusive(age, expected):
    added = an_event("Product Added", NOW - age, cart_id="c1")
    result = evaluate(rule(ABANDON), Facts({}, [added]), NOW)
    assert result.member is expected
    if expected:  # and it is let go right after the lookback
        assert result.next_change == added.timestamp + timedelta(days=7) + MICRO


def test_an_order_at_the_same_moment_as_the_add_resolves_it():
    events = [an_event("Product Added", NOW - timedelta(hours=2), 1, cart_id="c1")]
    events.append(an_event("Order Completed", NOW - timedelta(hours=2), 2, cart_id="c1"))
    assert not member(ABANDON, events)


def test_one_resolved_abandonment_does_not_hide_a_later_open_one():
    events = [
        an_event("Product Added", NOW - timedelta(hours=5), 1, cart_id="c1"),
        an_event("Order Completed", NOW - timedelta(hours=4), 2, cart_id="c1"),
        an_event("Product Added", NOW - timedelta(hours=3), 3, cart_id="c2"),
    ]
    assert member(ABANDON, events)


@pytest.mark.parametrize(
    ("moment", "swept_at"),
    [
        (NOW, NOW),
        (NOW + timedelta(microseconds=1), NOW + timedelta(seconds=1)),
        (NOW + timedelta(seconds=59, microseconds=999_999), NOW + timedelta(minutes=1)),
        (datetime(2026, 6, 15, 14, 0, 0, 500, tzinfo=timezone(timedelta(hours=2))), NOW + timedelta(seconds=1)),
    ],
)
def test_a_deadline_is_swept_at_the_first_whole_second_at_or_after_it_in_utc(moment, swept_at):
    assert due_time(moment) == swept_at
    assert due_time(moment).tzinfo == UTC


def test_a_deadline_is_covered_only_by_an_entry_still_to_come_at_or_before_it():
    from datetime import UTC, datetime, timedelta

    from shared.services.decisions import covered

    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    at = now + timedelta(hours=1)
    assert not covered(at, [], now=now)
    assert covered(at, [now + timedelta(minutes=5)], now=now)  # fires first, and its evaluation writes `at`
    assert covered(at, [at], now=now)
    assert not covered(at, [at + timedelta(seconds=1)], now=now)  # would fire too late
    assert not covered(at, [now - timedelta(seconds=1), now], now=now)  # swept already (or being swept)
