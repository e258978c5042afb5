"""Segment rule files: `{"segments": [{id, name, rule}, …]}` → rules, with the file, the rule and the exact
problem named when one cannot be used. Durations (`90s`, `30m`, `1h`, `7d`, `2w`) are shared with funnel files.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from shared.domain.conditions import (
    AGGREGATES,
    COMPARISONS,
    DEFAULT_ABSENCE_LOOKBACK,
    AbsenceCondition,
    AggregateCondition,
    AllOf,
    AnyOf,
    Comparison,
    Condition,
    EventFilter,
    Not,
    RecencyCondition,
    SegmentRule,
    TraitCondition,
    Window,
)
from shared.domain.errors import RuleDefinitionError
from shared.domain.filters import FilterDefinitionError, parse_where

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: Any, where: str) -> timedelta:
    """`90s`, `30m`, `1h`, `7d`, `2w`."""
    match = _DURATION.match(str(text)) if isinstance(text, (str, int)) else None
    if not match:
        raise RuleDefinitionError(f"{where}: {text!r} is not a duration like 30m, 1h, 7d or 2w")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def parse_rules(document: Any, *, source: str = "<rules>") -> list[SegmentRule]:
    """Segment rules from a rule file's data (`{"segments": [{id, name, rule}, …]}`).

    Raises:
        RuleDefinitionError: naming the file, the rule id and the exact problem; nothing is returned then.
    """
    if not isinstance(document, Mapping) or not isinstance(document.get("segments"), list):
        raise RuleDefinitionError(f"{source}: expected a mapping with a 'segments' list")
    rules: list[SegmentRule] = []
    seen: set[str] = set()
    for index, entry in enumerate(document["segments"]):
        rule_id = entry.get("id") if isinstance(entry, Mapping) else None
        where = f"{source}: segment {rule_id or '#' + str(index + 1)}"
        if not isinstance(rule_id, str) or not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,62}", rule_id):
            raise RuleDefinitionError(f"{where}: id must be 1-63 of a-z, 0-9, '_' and '-'")
        if rule_id in seen:
            raise RuleDefinitionError(f"{where}: id is used twice")
        seen.add(rule_id)
        unknown = set(entry) - {"id", "name", "description", "version", "rule"}
        if unknown:
            raise RuleDefinitionError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
        if "rule" not in entry:
            raise RuleDefinitionError(f"{where}: 'rule' is required")
        version = entry.get("version", 1)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise RuleDefinitionError(f"{where}: version must be a positive integer")
        rules.append(
            SegmentRule(
                id=rule_id,
                name=str(entry.get("name") or rule_id),
                condition=_condition(entry["rule"], f"{where}: rule"),
                version=version,
                description=str(entry.get("description", "")),
            )
        )
    return rules


def _condition(data: Any, where: str) -> Condition:
    if not isinstance(data, Mapping) or not data:
        raise RuleDefinitionError(f"{where}: a condition must be a mapping")
    keys = set(data)
    if keys & {"all", "any"}:
        (kind,) = _one_of(keys, ("all", "any"), where)
        items = data[kind]
        if not isinstance(items, list) or not items:
            raise RuleDefinitionError(f"{where}.{kind}: expected a non-empty list of conditions")
        parts = tuple(_condition(item, f"{where}.{kind}[{n}]") for n, item in enumerate(items))
        return AllOf(parts) if kind == "all" else AnyOf(parts)
    if "not" in keys:
        _only(keys, {"not"}, where)
        return Not(_condition(data["not"], f"{where}.not"))
    if "trait" in keys:
        return _trait(data, where)
    if keys & set(AGGREGATES):
        return _aggregate_condition(data, where)
    if keys & {"first", "last"}:
        return _recency_condition(data, where)
    if "absence" in keys:
        return _absence_condition(data, where)
    raise RuleDefinitionError(
        f"{where}: unknown condition with keys {', '.join(sorted(map(str, keys)))}; use "
        "trait, count, sum, min, max, avg, first, last, absence, all, any or not"
    )


def _one_of(keys: set[Any], options: Iterable[str], where: str) -> list[str]:
    found = [k for k in options if k in keys]
    if len(found) != 1:
        raise RuleDefinitionError(f"{where}: use exactly one of {', '.join(options)}")
    return found


def _only(keys: set[Any], allowed: set[str], where: str) -> None:
    unknown = keys - allowed
    if unknown:
        raise RuleDefinitionError(f"{where}: unknown keys {', '.join(sorted(map(str, unknown)))}")


def _comparison(data: Mapping[str, Any], where: str, *, required: bool = True) -> Comparison | None:
    ops = [op for op in COMPARISONS if op in data]
    if not ops:
        if required:
            raise RuleDefinitionError(f"{where}: a comparison is required ({', '.join(COMPARISONS)})")
        return None
    if len(ops) > 1:
        raise RuleDefinitionError(f"{where}: only one comparison allowed, found {', '.join(ops)}")
    return Comparison(ops[0], data[ops[0]])


def _trait(data: Mapping[str, Any], where: str) -> TraitCondition:
    _only(set(data), {"trait", "exists", *COMPARISONS}, where)
    if not isinstance(data["trait"], str) or not data["trait"]:
        raise RuleDefinitionError(f"{where}.trait: expected a trait name")
    comparison = _comparison(data, where, required=not data.get("exists"))
    return TraitCondition(data["trait"], comparison)


def _filter(data: Any, where: str) -> EventFilter:
    if data == "any" or data == {"any": True}:
        return EventFilter()
    if not isinstance(data, Mapping):
        raise RuleDefinitionError(f"{where}: expected {{event: NAME or [NAMES], where: {{property: value}}}}")
    _only(set(data), {"event", "where", "property"}, where)
    names = data.get("event", [])
    names = [names] if isinstance(names, str) else names
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise RuleDefinitionError(f"{where}.event: expected an event name or a list of names")
    conditions = data.get("where", {})
    if not isinstance(conditions, Mapping):
        raise RuleDefinitionError(f"{where}.where: expected a mapping of property to value")
    try:
        return EventFilter(tuple(names), parse_where(conditions, f"{where}.where", shorthand="eq"))
    except FilterDefinitionError as exc:
        raise RuleDefinitionError(str(exc)) from exc


def _window(data: Mapping[str, Any], where: str) -> Window:
    if "within" in data and "between" in data:
        raise RuleDefinitionError(f"{where}: use within or between, not both")
    if "within" in data:
        return Window(oldest=parse_duration(data["within"], f"{where}.within"))
    if "between" in data:
        span = data["between"]
        if not isinstance(span, list) or len(span) != 2:
            raise RuleDefinitionError(f"{where}.between: expected [older, newer] ages, e.g. [14d, 7d]")
        oldest, newest = (parse_duration(age, f"{where}.between") for age in span)
        if newest >= oldest:
            raise RuleDefinitionError(f"{where}.between: the first age must be the older one")
        return Window(oldest=oldest, newest=newest)
    return Window()


def _aggregate_condition(data: Mapping[str, Any], where: str) -> AggregateCondition:
    (kind,) = _one_of(set(data), AGGREGATES, where)
    _only(set(data), {kind, "within", "between", *COMPARISONS}, where)
    events = _filter(data[kind], f"{where}.{kind}")
    prop = data[kind].get("property") if isinstance(data[kind], Mapping) else None
    if kind != "count" and not isinstance(prop, str):
        raise RuleDefinitionError(f"{where}.{kind}: 'property' (the number to {kind}) is required")
    comparison = _comparison(data, where)
    assert comparison is not None
    return AggregateCondition(kind, events, comparison, _window(data, where), prop if kind != "count" else None)


def _recency_condition(data: Mapping[str, Any], where: str) -> RecencyCondition:
    (which,) = _one_of(set(data), ("first", "last"), where)
    _only(set(data), {which, "within", "before"}, where)
    if "within" not in data and "before" not in data:
        raise RuleDefinitionError(f"{where}: {which} needs within or before (an age such as 30d)")
    return RecencyCondition(
        which,
        _filter(data[which], f"{where}.{which}"),
        within=parse_duration(data["within"], f"{where}.within") if "within" in data else None,
        before=parse_duration(data["before"], f"{where}.before") if "before" in data else None,
    )


def _absence_condition(data: Mapping[str, Any], where: str) -> AbsenceCondition:
    _only(set(data), {"absence"}, where)
    spec = data["absence"]
    here = f"{where}.absence"
    if not isinstance(spec, Mapping):
        raise RuleDefinitionError(f"{here}: expected {{did, then_not, within, match?, lookback?}}")
    _only(set(spec), {"did", "then_not", "within", "match", "lookback"}, here)
    for key in ("did", "then_not", "within"):
        if key not in spec:
            raise RuleDefinitionError(f"{here}: '{key}' is required")
    match = spec.get("match", [])
    match = [match] if isinstance(match, str) else match
    if not isinstance(match, list) or not all(isinstance(m, str) for m in match):
        raise RuleDefinitionError(f"{here}.match: expected a property name or a list of them")
    wait = parse_duration(spec["within"], f"{here}.within")
    lookback = (
        parse_duration(spec["lookback"], f"{here}.lookback")
        if "lookback" in spec
        else max(DEFAULT_ABSENCE_LOOKBACK, wait)
    )
    if lookback < wait:
        raise RuleDefinitionError(f"{here}.lookback: must be at least the wait ({spec['within']})")
    return AbsenceCondition(
        _filter(spec["did"], f"{here}.did"), _filter(spec["then_not"], f"{here}.then_not"), wait, tuple(match), lookback
    )
