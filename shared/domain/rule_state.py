"""Incremental segment-rule state: the few projected events every rule evaluates on exactly as on the whole history.

Processing keeps this state in the customer item so that a batch only adds its new events (`advance`) instead of
reading the customer's every event. The state is a set of *projected* events: those that a leaf condition of the
rules can still look at, at the `now` the state was advanced with or at any later one, each reduced to what the
conditions read (`event_key`, message id, timestamp, source, and the property paths the rules read). Which events a
leaf can still look at (`now` only grows; an event may arrive late, with any timestamp):

- an aggregate: the matching events its window counts now or will count later (`time >= now - oldest`, or not yet
  in a `between` window: `time > now - newest`); a window without `oldest` ("ever") keeps every matching event;
- a first/last: the first (last) matching event at or before `now`, and every matching event after `now`;
- an absence: every `did` and `then_not` event at or after `now - lookback` (an older A is never considered again,
  and only a B at or after its A resolves it, so an older B never matters, even to an A that comes late);
- a trait condition: none (traits come from the profile).

`evaluate(rule, facts(state, traits), now)` then equals `evaluate(rule, Facts(traits, every event), now)` (member,
reasons, next change) at any `now` at or after the latest `now` the state was built or advanced with. Events are
told apart by source and message id, as storage files them, so a redelivered event is kept once.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import json
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.domain.conditions import (
    AbsenceCondition,
    AggregateCondition,
    AllOf,
    AnyOf,
    Condition,
    EventFilter,
    Not,
    RecencyCondition,
    SegmentRule,
    TraitCondition,
    Window,
)
from shared.domain.errors import RuleDefinitionError
from shared.domain.events import CallType, TrackingEvent
from shared.domain.filters import property_at
from shared.domain.profiles import event_key
from shared.domain.segments import Facts

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
REASON_IDS = 5
"""How many of the events an aggregate counts its reason names (the latest: `segments._aggregate`)."""
ANONYMOUS = "\x00"
"""The first character of the message id the state keeps of an event no reason can name any more (`_anonymous`)."""
MICROSECOND = timedelta(microseconds=1)
_CALLS = {f"${call}": call for call in CallType}

Leaf = AggregateCondition | RecencyCondition | AbsenceCondition


class StaleRuleStateError(ValueError):
    """A state advanced with rules other than those it was built for: build it again from the whole history."""


@dataclass(frozen=True, slots=True)
class RuleState:
    """The projected events the rules with `signature` can still look at, in the order evaluation sorts them (time,
    message id), then by source."""

    signature: str
    events: tuple[TrackingEvent, ...]


def signature(rules: Iterable[SegmentRule]) -> str:
    """A stable hash of the rules' ids, versions and conditions (any order): a changed, added or removed rule
    changes it; a renamed or re-described one does not."""
    given = tuple(rules)
    try:
        return _remembered(given)
    except TypeError:  # a condition holding a value that cannot be hashed: computed each time
        return _signature(given)


@functools.lru_cache(maxsize=8)
def _remembered(rules: tuple[SegmentRule, ...]) -> str:
    """Processing asks for every customer of a batch, always with the same rules."""
    return _signature(rules)


def _signature(rules: tuple[SegmentRule, ...]) -> str:
    texts = sorted(
        json.dumps([rule.id, rule.version, _canonical(rule.condition)], sort_keys=True, default=_opaque)
        for rule in rules
    )
    return hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]


def build(rules: Sequence[SegmentRule], events: Iterable[TrackingEvent], now: datetime) -> RuleState:
    """The state of a whole history at `now`."""
    return RuleState(signature(rules), _pruned(rules, _projected(rules, events), now))


def advance(
    state: RuleState, rules: Sequence[SegmentRule], new_events: Iterable[TrackingEvent], now: datetime
) -> RuleState:
    """The state with `new_events` added (any order and timestamps; ones it already holds are kept once).

    Raises:
        StaleRuleStateError: the rules are not those the state was built for.
    """
    if state.signature != signature(rules):
        raise StaleRuleStateError(f"rule state {state.signature} was built for other rules")
    return RuleState(state.signature, _pruned(rules, [*state.events, *_projected(rules, new_events)], now))


def facts(state: RuleState, traits: Mapping[str, Any]) -> Facts:
    """What the rules are evaluated on: the profile's traits and the state's events."""
    return Facts(traits, state.events)


# --- which events a leaf can still look at ---------------------------------------------------------------------


def leaves(condition: Condition) -> Iterator[Leaf]:
    """The conditions of a rule that look at events (trait conditions do not)."""
    match condition:
        case AllOf(conditions=parts) | AnyOf(conditions=parts):
            for part in parts:
                yield from leaves(part)
        case Not(condition=inner):
            yield from leaves(inner)
        case AggregateCondition() | RecencyCondition() | AbsenceCondition():
            yield condition
        case TraitCondition():
            return
        case _:  # a new condition kind must say here which events it can still look at
            raise RuleDefinitionError(f"rule state: unknown condition {condition!r}")


def _pruned(rules: Sequence[SegmentRule], events: Iterable[TrackingEvent], now: datetime) -> tuple[TrackingEvent, ...]:
    unique = {_key(e): e for e in reversed(list(events))}  # the first copy of each wins
    ordered = sorted(unique.values(), key=lambda e: (e.timestamp, e.message_id, e.source_id))
    kept: set[tuple[str, str]] = set()
    named: set[tuple[str, str]] = set()
    for rule in rules:
        for leaf in leaves(rule.condition):
            read, nameable = _still_read(leaf, ordered, now)
            kept.update(map(_key, read))
            named.update(map(_key, nameable))
    held = [e for e in ordered if _key(e) in kept]
    moments = Counter(e.timestamp for e in held)
    named.update(_key(e) for e in held if moments[e.timestamp] > 1)  # a tie is ordered by the ids: keep them
    return tuple(e if _key(e) in named else replace(e, message_id=_anonymous(e)) for e in held)


def _still_read(leaf: Leaf, events: list[TrackingEvent], now: datetime) -> tuple[list[TrackingEvent], ...]:
    """The events (in time order) that `leaf` can look at, at `now` or later, and those of them whose message ids
    its reasons can name (now or later)."""
    match leaf:
        case AggregateCondition(events=wanted, window=window):
            read = [e for e in events if wanted.matches(e) and _may_count(window, e.timestamp, now)]
            counted = [e for e in read if window.contains(e.timestamp, now)]
            # A reason names the last 5 counted; one counted before them never is again (the 5 after it leave the
            # window after it does), and one not counted yet may be.
            return read, [*counted[-REASON_IDS:], *(e for e in read if e.timestamp > now - window.newest)]
        case RecencyCondition(which=which, events=wanted):
            matching = [e for e in events if wanted.matches(e)]
            past = [e for e in matching if e.timestamp <= now]
            read = (past[:1] if which == "first" else past[-1:]) + [e for e in matching if e.timestamp > now]
            return read, read
        case AbsenceCondition(did=did, then_not=then_not, lookback=lookback):
            since = now - lookback
            read = [e for e in events if e.timestamp >= since and (did.matches(e) or then_not.matches(e))]
            return read, [e for e in read if did.matches(e)]  # (a reason names an A, never a B)
    return [], []


def _key(event: TrackingEvent) -> tuple[str, str]:
    """What tells two events apart, whether the state still holds the event's message id or only its hash."""
    return event.source_id, _anonymous(event)


def _anonymous(event: TrackingEvent) -> str:
    """The message id the state keeps of an event no reason can name any more: a hash of its source and id (48
    bits: events told apart for redelivery), marked so that it sorts before any id an SDK makes."""
    if event.message_id.startswith(ANONYMOUS):
        return event.message_id
    digest = hashlib.blake2b(f"{event.source_id}\n{event.message_id}".encode(), digest_size=6).digest()
    return ANONYMOUS + base64.urlsafe_b64encode(digest).decode()


def _may_count(window: Window, moment: datetime, now: datetime) -> bool:
    """Counted at `now` or at a later moment (windows only slide forward)."""
    return window.oldest is None or moment >= now - window.oldest or moment > now - window.newest


# --- projection ------------------------------------------------------------------------------------------------


def paths(rules: Iterable[SegmentRule]) -> tuple[str, ...]:
    """Every property path the rules read: `where` tests, aggregated properties, absence `match` properties."""
    found: set[str] = set()
    for rule in rules:
        for leaf in leaves(rule.condition):
            found.update(_paths(leaf))
    return tuple(sorted(found))


def _paths(leaf: Leaf) -> Iterator[str]:
    match leaf:
        case AggregateCondition(kind=kind, events=wanted, property=prop):
            yield from _filter_paths(wanted)
            if kind != "count":
                yield prop or ""
        case RecencyCondition(events=wanted):
            yield from _filter_paths(wanted)
        case AbsenceCondition(did=did, then_not=then_not, match=match):
            yield from (*_filter_paths(did), *_filter_paths(then_not), *match)


def _filter_paths(wanted: EventFilter) -> Iterator[str]:
    return (test.path for test in wanted.where.tests)


def _projected(rules: Sequence[SegmentRule], events: Iterable[TrackingEvent]) -> list[TrackingEvent]:
    read = paths(rules)
    return [project(event, read) for event in events]


def project(event: TrackingEvent, read: Sequence[str]) -> TrackingEvent:
    """The event as the conditions see it: its `event_key` (as a call type, or a track call's name), message id,
    source, timestamp, and each path in `read` flattened to the value `property_at` finds there."""
    return _event(
        event_key(event), event.source_id, event.message_id, event.timestamp, _properties(event.properties, read)
    )


def _properties(properties: Mapping[str, Any], read: Sequence[str]) -> dict[str, Any]:
    kept = {path: value for path in read if (value := property_at(properties, path)) is not None}
    for path in read:  # a dotted key that holds None in the event, but whose path the kept values would resolve
        if path not in kept and property_at(kept, path) is not None:
            kept[path] = None
    return kept


def _event(key: str, source: str, message_id: str, at: datetime, properties: dict[str, Any]) -> TrackingEvent:
    call = _CALLS.get(key)
    return TrackingEvent(
        source_id=source,
        message_id=message_id,
        type=call or CallType.TRACK,
        timestamp=at,
        received_at=at,
        event=None if call else key,
        properties=properties,
    )


# --- compact form ------------------------------------------------------------------------------------------------


def to_compact(state: RuleState) -> dict[str, Any]:
    """The state as small JSON: names, sources and paths interned; times as deltas of epoch ms (or µs) in order.

    `{"s": signature, "n": [event keys], "o": [sources], "p": [paths], "u": 1000 | 1, "t": [time deltas],
    "k": [name index], "r": [source index] (only with several sources), "m": [message ids, a UUID in base64],
    "x": [[path index, value, …] per event] (only when an event holds a property)}`.
    """
    events = state.events
    names, sources, read = (_interned(column) for column in _columns(events))
    micros = [(e.timestamp - EPOCH) // MICROSECOND for e in events]
    unit = 1000 if all(m % 1000 == 0 for m in micros) else 1
    data: dict[str, Any] = {"s": state.signature, "n": list(names), "o": list(sources), "p": list(read), "u": unit}
    data["t"] = [(m - p) // unit for m, p in zip(micros, [0, *micros], strict=False)]
    data["k"] = [names[event_key(e)] for e in events]
    if len(sources) > 1:
        data["r"] = [sources[e.source_id] for e in events]
    data["m"] = [_short_id(e.message_id) for e in events]
    if read:
        data["x"] = [[x for path, value in e.properties.items() for x in (read[path], value)] for e in events]
    return data


def from_compact(data: Mapping[str, Any]) -> RuleState:
    """The state `to_compact` gave (after a JSON round trip too)."""
    names, sources, read, unit = data["n"], data["o"], data["p"], data["u"]
    count = len(data["m"])
    times, total = [], 0
    for delta in data["t"]:
        total += delta * unit
        times.append(EPOCH + total * MICROSECOND)
    origin = data.get("r", [0] * count)
    values = data.get("x", [[]] * count)
    events = tuple(
        _event(names[k], sources[r], m, at, {read[x[i]]: x[i + 1] for i in range(0, len(x), 2)})
        for k, r, m, at, x in zip(data["k"], origin, map(_long_id, data["m"]), times, values, strict=True)
    )
    return RuleState(data["s"], events)


def _short_id(message_id: str) -> str:
    """A UUID as written (lower case, dashes) in 22 characters of base64 (its 16 bytes), a hash kept of an id no
    reason names any more after a `!`, any other id after a `~`."""
    if message_id.startswith(ANONYMOUS):
        return "!" + message_id[1:]
    with contextlib.suppress(ValueError):
        if str(parsed := uuid.UUID(message_id)) == message_id:
            return base64.urlsafe_b64encode(parsed.bytes).decode()[:22]
    return f"~{message_id}"


def _long_id(text: str) -> str:
    if text.startswith("!"):
        return ANONYMOUS + text[1:]
    return text[1:] if text.startswith("~") else str(uuid.UUID(bytes=base64.urlsafe_b64decode(f"{text}==")))


def _columns(events: Sequence[TrackingEvent]) -> Iterator[Iterable[str]]:
    yield (event_key(e) for e in events)
    yield (e.source_id for e in events)
    yield (path for e in events for path in e.properties)


def _interned(values: Iterable[str]) -> dict[str, int]:
    """Each distinct value (in order of first appearance) → its index."""
    return {value: index for index, value in enumerate(dict.fromkeys(values))}


def _canonical(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {"@": type(value).__name__, **{f.name: _canonical(getattr(value, f.name)) for f in fields(value)}}
    if isinstance(value, timedelta):
        return {"@": "timedelta", "us": value // MICROSECOND}
    if isinstance(value, (list, tuple)):
        return [_canonical(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): _canonical(item) for key, item in value.items()}
    return value


def _opaque(value: Any) -> Any:
    return {"@": type(value).__name__, "text": str(value)}
