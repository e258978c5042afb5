"""One property-filter language for segment rules and funnel steps: every operator, in both kinds of file."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from shared.domain.analytics import AnalyticsDefinitionError, parse_definitions
from shared.domain.errors import RuleDefinitionError
from shared.domain.events import CallType, TrackingEvent
from shared.domain.segments import Facts, evaluate, parse_rules

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


def an_event(**properties: Any) -> TrackingEvent:
    return TrackingEvent(
        "web", "m1", CallType.TRACK, NOW, NOW, user_id="c1", event="Order Completed", properties=properties
    )


def in_segment(where: dict[str, Any], event: TrackingEvent) -> bool:
    document = {"segments": [{"id": "s", "rule": {"count": {"event": "Order Completed", "where": where}, "gte": 1}}]}
    (rule,) = parse_rules(document)
    return evaluate(rule, Facts({}, [event]), NOW).member


def a_funnel_step(where: dict[str, Any], event: TrackingEvent) -> bool:
    document = {"funnels": [{"id": "f", "steps": [{"event": "Order Completed", "where": where}]}]}
    return parse_definitions(document).funnels[0].steps[0].matches(event)


CONTEXTS = [pytest.param(in_segment, id="segment-rule"), pytest.param(a_funnel_step, id="funnel-step")]
OPERATORS = [
    # (where, properties that pass, properties that do not)
    ({"revenue": {"eq": 20}}, {"revenue": 20.0}, {"revenue": 21}),
    ({"currency": {"ne": "EUR"}}, {"currency": "USD"}, {"currency": "EUR"}),
    ({"revenue": {"gt": 20}}, {"revenue": 20.5}, {"revenue": 20}),
    ({"revenue": {"gte": 20}}, {"revenue": 20}, {"revenue": 19.99}),
    ({"revenue": {"lt": 20}}, {"revenue": 19}, {"revenue": 20}),
    ({"revenue": {"lte": 20}}, {"revenue": 20}, {"revenue": "n/a"}),
    ({"currency": {"in": ["EUR", "USD"]}}, {"currency": "USD"}, {"currency": "GBP"}),
    ({"paid": {"in": [True]}}, {"paid": True}, {"paid": False}),
    ({"coupon": {"exists": True}}, {"coupon": "X"}, {}),
    ({"coupon": {"exists": False}}, {}, {"coupon": "X"}),
    ({"product.category": {"eq": "shoes"}}, {"product": {"category": "shoes"}}, {"product": {"category": "hats"}}),
    ({"revenue": {"gte": 10}, "currency": {"in": ["EUR"]}}, {"revenue": 10, "currency": "EUR"}, {"revenue": 10}),
]


@pytest.mark.parametrize("matches", CONTEXTS)
@pytest.mark.parametrize(("where", "passing", "failing"), OPERATORS)
def test_every_operator_means_the_same_in_a_segment_rule_and_in_a_funnel_step(matches, where, passing, failing):
    assert matches(where, an_event(**passing))
    assert not matches(where, an_event(**failing))


def test_a_missing_property_fails_every_comparison_but_ne():
    for op in ("eq", "gt", "gte", "lt", "lte"):
        assert not in_segment({"revenue": {op: 1}}, an_event())
        assert not a_funnel_step({"revenue": {op: 1}}, an_event())
    assert in_segment({"revenue": {"ne": 1}}, an_event())


def test_a_segment_rules_shorthand_is_an_equality_of_the_value_as_it_is():
    assert in_segment({"plan": "pro", "seats": 2}, an_event(plan="pro", seats=2.0))
    assert not in_segment({"seats": 2}, an_event(seats="2"))  # a number is not its text


def test_a_funnel_steps_shorthand_is_any_of_the_values_compared_as_text():
    assert a_funnel_step({"seats": 2}, an_event(seats="2"))
    assert a_funnel_step({"category": ["shoes", "bags"]}, an_event(category="bags"))
    assert a_funnel_step({"premium": True}, an_event(premium="true"))
    assert not a_funnel_step({"category": ["shoes", "bags"]}, an_event(category="hats"))


def test_a_funnel_is_written_back_as_its_file_wrote_it():
    steps = [
        {"event": "A", "where": {"category": ["shoes", "bags"], "size": 42}},
        {"event": "B", "where": {"revenue": {"gte": 100}, "coupon": {"exists": False}}},
    ]
    funnel = parse_definitions({"funnels": [{"id": "f", "steps": steps}]}).funnels[0]
    written = [step.get("where") for step in funnel.definition()["steps"]]
    assert written == [
        {"category": ["shoes", "bags"], "size": ["42"]},
        {"revenue": {"gte": 100}, "coupon": {"exists": False}},
    ]


def test_a_segments_reasons_show_equalities_as_before_and_other_tests_by_operator():
    document = {
        "segments": [
            {
                "id": "s",
                "rule": {
                    "count": {"event": "Order Completed", "where": {"plan": "pro", "revenue": {"gte": 10}}},
                    "gte": 1,
                },
            }
        ]
    }
    (rule,) = parse_rules(document)
    (reason,) = evaluate(rule, Facts({}, [an_event(plan="pro", revenue=12)]), NOW).reasons
    assert reason.startswith("count of Order Completed [plan='pro'] [revenue gte 10] = 1")


@pytest.mark.parametrize(
    ("where", "problem"),
    [
        ({"revenue": {"gte": 1, "lte": 5}}, "one operator per property"),
        ({"currency": {"in": "EUR"}}, "expected a list"),
        ({"coupon": {"exists": "yes"}}, "expected true or false"),
    ],
)
def test_a_wrong_test_is_named_in_both_kinds_of_file(where, problem):
    with pytest.raises(RuleDefinitionError, match=problem):
        in_segment(where, an_event())
    with pytest.raises(AnalyticsDefinitionError, match=problem):
        a_funnel_step(where, an_event())
