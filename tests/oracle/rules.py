"""Segment membership from the README's rule language, evaluated on raw events at one moment.

Windows include their edges; `within N`: `now - N <= t <= now`; `between [old, new]`: `now - old <= t <= now - new`;
`first`/`last … within N`: that event's age ≤ N, `before N`: its age > N; absence: an A (within the lookback) with
no B at or after it that matches A on the `match` properties (a B without the property matches any A), and
`now ≥ A + wait`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from tests.oracle.profiles import amount
from tests.oracle.raw import Event

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
OPS = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
}


def duration(text: Any) -> timedelta:
    number, unit = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", str(text)).groups()  # type: ignore[union-attr]
    return timedelta(seconds=int(number) * UNITS[unit])


def _value(value: Any) -> Any:
    return Decimal(str(value)) if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool) else value


def _compare(spec: Mapping[str, Any], actual: Any) -> bool:
    (op,) = [k for k in OPS if k in spec]
    if actual is None:
        return False
    try:
        return bool(OPS[op](_value(actual), _value(spec[op])))
    except TypeError:
        return False


def _prop(event: Event, path: str) -> Any:
    """README: a property is a name (as written) or else a dotted path into nested objects."""
    if path in event.properties:
        return event.properties[path]
    node: Any = event.properties
    for part in path.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


def _matcher(spec: Any) -> Any:
    if spec == "any" or spec == {"any": True}:
        return lambda e: True
    names = spec.get("event", [])
    names = [names] if isinstance(names, str) else list(names)
    where = dict(spec.get("where", {}))
    return lambda e: (not names or e.name in names) and all(_holds(test, _prop(e, k)) for k, test in where.items())


def _holds(test: Any, actual: Any) -> bool:
    """README's `where` test: a bare value is equality; `{op: value}` is eq or ne (as is), gt/gte/lt/lte (numbers by
    value; a missing or incomparable property fails), `in` (compared as text: true/false, "" for missing) or
    `exists`."""
    if not (isinstance(test, Mapping) and len(test) == 1 and next(iter(test)) in (*OPS, "in", "exists")):
        return bool(actual == test)
    ((op, value),) = test.items()
    if op == "exists":
        return (actual is not None) == value
    if op == "in":
        return _as_text(actual) in {_as_text(v) for v in value}
    if op in ("eq", "ne"):
        return bool(OPS[op](actual, value))
    return _compare(test, actual)


def _as_text(value: Any) -> str:
    if value is True or value is False:
        return str(value).lower()
    return "" if value is None else str(value)


def member(rule: Mapping[str, Any], traits: Mapping[str, Any], events: Sequence[Event], now: datetime) -> bool:
    """Whether a customer with these traits and events is in the segment whose `rule` this is, at `now`."""
    past = [e for e in events if e.at <= now]
    if "all" in rule:
        return all(member(r, traits, events, now) for r in rule["all"])
    if "any" in rule:
        return any(member(r, traits, events, now) for r in rule["any"])
    if "not" in rule:
        return not member(rule["not"], traits, events, now)
    if "trait" in rule:
        value = traits.get(rule["trait"])
        return value is not None if not any(k in OPS for k in rule) else _compare(rule, value)
    if "absence" in rule:
        return _absence(rule["absence"], past, now)
    for which in ("first", "last"):
        if which in rule:
            hits = sorted((e for e in past if _matcher(rule[which])(e)), key=Event.order_key)
            if not hits:
                return False
            age = now - (hits[0] if which == "first" else hits[-1]).at
            return ("within" not in rule or age <= duration(rule["within"])) and (
                "before" not in rule or age > duration(rule["before"])
            )
    return _aggregate(rule, past, now)


def _aggregate(rule: Mapping[str, Any], past: Sequence[Event], now: datetime) -> bool:
    (kind,) = [k for k in ("count", "sum", "min", "max", "avg") if k in rule]
    spec = rule[kind]
    oldest, newest = None, timedelta(0)
    if "within" in rule:
        oldest = duration(rule["within"])
    elif "between" in rule:
        oldest, newest = duration(rule["between"][0]), duration(rule["between"][1])
    hits = [e for e in past if _matcher(spec)(e) and (oldest is None or e.at >= now - oldest) and e.at <= now - newest]
    if kind == "count":
        return _compare(rule, len(hits))
    values = [v for v in (amount(_prop(e, spec["property"])) for e in hits) if v is not None]
    if kind == "sum":
        return _compare(rule, sum(values, Decimal(0)))
    if not values:
        return False
    result = {"min": min(values), "max": max(values), "avg": sum(values, Decimal(0)) / len(values)}[kind]
    return _compare(rule, result)


def _absence(spec: Mapping[str, Any], past: Sequence[Event], now: datetime) -> bool:
    wait = duration(spec["within"])
    lookback = duration(spec["lookback"]) if "lookback" in spec else max(timedelta(days=30), wait)
    match = spec.get("match", [])
    match = [match] if isinstance(match, str) else list(match)
    did, then_not = _matcher(spec["did"]), _matcher(spec["then_not"])
    for a in past:
        if not did(a) or a.at < now - lookback or a.at + wait > now:
            continue
        answered = any(
            then_not(b) and b.at >= a.at and all(_prop(b, k) in (None, _prop(a, k)) for k in match) for b in past
        )
        if not answered:
            return True
    return False
