"""Every segment-rule operator, and every `where` operator, agrees with the independent oracle (tests/oracle) on
random histories, and is in the README: the path a new operator takes (README "How it is built": add a segment-rule
operator). A condition kind or filter operator without an example here fails the completeness tests."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from random import Random
from typing import Any, get_args

import pytest

from shared.domain import conditions, filters
from shared.domain.events import format_timestamp, parse_event
from shared.domain.rules import parse_rules
from shared.domain.segments import Facts, evaluate
from tests.oracle.raw import Event
from tests.oracle.rules import member

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
README = Path(__file__).resolve().parents[2] / "README.md"

CONDITION_EXAMPLES: dict[type, list[dict[str, Any]]] = {
    conditions.TraitCondition: [
        {"trait": "plan", "eq": "pro"},
        {"trait": "plan", "exists": True},
        {"trait": "age", "gte": 30},
    ],
    conditions.AggregateCondition: [
        {"count": {"event": "Product Viewed"}, "within": "2d", "gte": 2},
        {"sum": {"event": "Order Completed", "property": "revenue"}, "gte": 50},
        {"min": {"event": "Order Completed", "property": "revenue"}, "lt": 10},
        {"max": {"event": "Order Completed", "property": "revenue"}, "between": ["3d", "1d"], "gt": 50},
        {"avg": {"event": "Order Completed", "property": "revenue"}, "lte": 30},
    ],
    conditions.RecencyCondition: [
        {"last": {"event": "Order Completed"}, "within": "1d"},
        {"first": "any", "before": "2d"},
    ],
    conditions.AbsenceCondition: [
        {
            "absence": {
                "did": {"event": "Product Added"},
                "then_not": {"event": "Order Completed"},
                "within": "1h",
                "match": ["cart_id"],
            }
        }
    ],
    conditions.AllOf: [{"all": [{"trait": "plan", "exists": True}, {"count": {"event": "Product Viewed"}, "gte": 1}]}],
    conditions.AnyOf: [{"any": [{"trait": "plan", "eq": "free"}, {"last": "any", "within": "6h"}]}],
    conditions.Not: [{"not": {"count": {"event": "Order Completed"}, "gte": 1}}],
}
"""Each kind of condition a rule file can hold (`conditions.Condition`), with rules that use it."""

WHERE_EXAMPLES: dict[str, list[dict[str, Any]]] = {
    "eq": [{"category": {"eq": "shoes"}}, {"category": "shoes"}],  # the bare value is `eq` in segment rules
    "ne": [{"category": {"ne": "shoes"}}],
    "gt": [{"revenue": {"gt": 10}}],
    "gte": [{"revenue": {"gte": 60}}],
    "lt": [{"revenue": {"lt": 60}}],
    "lte": [{"revenue": {"lte": 5}}],
    "in": [{"category": {"in": ["shoes", "hats"]}}, {"gift": {"in": [True]}}],
    "exists": [{"coupon": {"exists": True}}, {"coupon": {"exists": False}}, {"item.sku": {"exists": True}}],
}
"""Each operator of the property-filter language (`filters.OPERATORS`), in a count's `where`."""


def history(seed: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Traits and a few days of calls of one customer, drawn so that every example rule sometimes holds."""
    rng = Random(seed)
    traits = {
        key: value
        for key, value in (("plan", rng.choice(["pro", "free", None])), ("age", rng.choice([20, 30, 45, None])))
        if value is not None
    }
    calls = []
    for n in range(rng.randint(0, 7)):
        properties: dict[str, Any] = {"cart_id": rng.choice(["c1", "c2"])}
        for name, values in (
            ("revenue", [5, 10, 60, 60.0, "60", None]),
            ("category", ["shoes", "hats", "bags", None]),
            ("coupon", ["SPRING", None]),
            ("gift", [True, False, None]),
            ("item", [{"sku": "s1"}, {"name": "x"}, None]),
        ):
            if (value := rng.choice(values)) is not None:
                properties[name] = value
        at = NOW - timedelta(minutes=rng.choice([5, 30, 90, 60 * 20, 60 * 30, 60 * 60, 60 * 80]))
        calls.append(
            {
                "type": "track",
                "event": rng.choice(["Product Viewed", "Product Added", "Order Completed"]),
                "userId": "u1",
                "messageId": f"m{seed}-{n}",
                "timestamp": format_timestamp(at),
                "properties": properties,
            }
        )
    return traits, calls


def product_says(rule: dict[str, Any], traits: dict[str, Any], calls: list[dict[str, Any]]) -> bool:
    (segment,) = parse_rules({"segments": [{"id": "s", "rule": rule}]})
    ids = itertools.count()
    events = [parse_event(c, source_id="web", received_at=NOW, new_id=lambda: f"x{next(ids)}") for c in calls]
    return evaluate(segment, Facts(traits, events), NOW).member


def oracle_says(rule: dict[str, Any], traits: dict[str, Any], calls: list[dict[str, Any]]) -> bool:
    return member(rule, traits, [Event("ID#u#u1", c["messageId"], "web", c) for c in calls], NOW)


def where_rule(where: dict[str, Any]) -> dict[str, Any]:
    return {"count": {"event": ["Product Viewed", "Order Completed"], "where": where}, "gte": 1}


CASES = [(kind.__name__, rule) for kind, rules in CONDITION_EXAMPLES.items() for rule in rules]
CASES += [(f"where {op}", where_rule(where)) for op, wheres in WHERE_EXAMPLES.items() for where in wheres]


@pytest.mark.parametrize(("kind", "rule"), CASES, ids=[f"{kind}: {rule}" for kind, rule in CASES])
def test_the_product_and_the_oracle_agree_on_every_operator(kind: str, rule: dict[str, Any]):
    # Given 80 random customers (traits and a few days of events)
    verdicts = []
    for seed in range(80):
        traits, calls = history(seed)
        # Then the product's evaluation and the oracle's reading of the README agree on each
        expected = oracle_says(rule, traits, calls)
        assert product_says(rule, traits, calls) == expected, (seed, traits, calls)
        verdicts.append(expected)
    # And the histories tell the rule apart: some customers are in, some are out (else the check proves nothing)
    assert set(verdicts) == {True, False}, kind


def test_every_condition_kind_has_examples():
    assert set(CONDITION_EXAMPLES) == set(get_args(conditions.Condition))


def test_every_filter_operator_has_examples():
    assert set(WHERE_EXAMPLES) == set(filters.OPERATORS)


def test_every_condition_keyword_and_filter_operator_is_in_the_readme():
    # The Segments section lists each keyword in backquotes
    section = README.read_text().split("## Segments", 1)[1].split("\n## ", 1)[0]
    quoted = set(re.findall(r"`([a-z_]+)`", section)) | set(re.findall(r"\b([a-z]+)\b", section))
    keywords = {key for rules in CONDITION_EXAMPLES.values() for rule in rules for key in rule}
    missing = (keywords | set(filters.OPERATORS)) - quoted
    assert not missing, f"not in the README's Segments section: {sorted(missing)}"
