"""The analytics counters (funnels, retention, timing, overview) from raw events, per the README's Analytics."""

from __future__ import annotations

import math
import zlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from tests.oracle.profiles import channel, hour_of_week
from tests.oracle.raw import Event
from tests.oracle.rules import duration

SHARDS = 4
BEHAVIOUR = {"track", "page", "screen"}
"""What a customer did (identify/alias/group say who they are): funnels and named return events read these."""
OVERVIEW_DAYS = 2
RETENTION = {"day": 31, "week": 13}

Counters = dict[tuple[str, str], dict[str, int]]
OTHER = "(other)"
# README (Analytics, bounded cardinality): the names counted by name without configuration.
SPEC_NAMES = {
    *[
        "Products Searched",
        "Product List Viewed",
        "Product List Filtered",
        "Promotion Viewed",
        "Promotion Clicked",
        "Product Clicked",
        "Product Viewed",
        "Product Added",
        "Product Removed",
        "Cart Viewed",
        "Checkout Started",
        "Checkout Step Viewed",
        "Checkout Step Completed",
        "Payment Info Entered",
        "Order Updated",
        "Order Completed",
        "Order Refunded",
        "Order Cancelled",
        "Coupon Entered",
        "Coupon Applied",
        "Coupon Denied",
        "Coupon Removed",
        "Product Added to Wishlist",
        "Product Removed from Wishlist",
        "Wishlist Product Added to Cart",
        "Product Shared",
        "Cart Shared",
        "Product Reviewed",
        "Email Bounced",
        "Email Delivered",
        "Email Link Clicked",
        "Email Marked as Spam",
        "Email Opened",
        "Unsubscribed",
        "Signed Up",
        "Signed In",
        "Signed Out",
        "Account Created",
        "Account Deleted",
        "Trial Started",
        "Trial Ended",
        "$identify",
        "$page",
        "$screen",
        "$group",
        "$alias",
    ]
}


def catalogued(document: Mapping[str, Any]) -> set[str]:
    """Event names the overview counts by name: the spec's, every name the definitions use, `overview.events`."""
    names = set(SPEC_NAMES)
    for funnel in document.get("funnels", []):
        names |= {step if isinstance(step, str) else step["event"] for step in funnel["steps"]}
    names |= set(document.get("retention", {}).get("events", ["*", "Order Completed"])) - {"*"}
    return names | set(document.get("overview", {}).get("events", []))


def shard(customer_id: str, shards: int = SHARDS) -> int:
    return zlib.crc32(customer_id.encode("utf-8", "surrogatepass")) % shards


def time_bucket(seconds: float) -> int:
    """The ±10 % bucket of a time between steps: 0 under a second, then powers of 1.2."""
    return 0 if seconds < 1 else int(math.log(seconds) / math.log(1.2)) + 1


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def customer_counters(
    customer_id: str, events: Sequence[Event], document: Mapping[str, Any], now: datetime
) -> Counters:
    """What one customer adds to every counter."""
    out: Counters = defaultdict(lambda: defaultdict(int))
    ordered = sorted(events, key=Event.order_key)
    if not ordered:
        return {}
    part = str(shard(customer_id))
    _funnel_counters(out, part, ordered, document)
    _retention_counters(out, part, ordered, document)
    _activity_counters(out, part, ordered, document)
    return out


def _funnel_counters(out: Counters, part: str, ordered: Sequence[Event], document: Mapping[str, Any]) -> None:
    """Each journey's entries per step, per breakdown label, and the time between steps (by entry day)."""
    behaviour = [e for e in ordered if e.type in BEHAVIOUR]
    for funnel in document.get("funnels", []):
        for entry, times, label in _journeys(funnel, behaviour, channel(ordered[0])):
            day = f"DAY#{entry.date().isoformat()}"
            for step in range(1, len(times) + 1):
                out[(f"FUNNEL#{funnel['id']}", f"{day}#{part}")][f"s|{step}"] += 1
                out[(f"FUNNEL#{funnel['id']}", f"{day}#{part}")][f"b|{label}|{step}"] += 1
                if step > 1:
                    took = (times[step - 1] - times[step - 2]).total_seconds()
                    out[(f"FUNNEL#{funnel['id']}", f"{day}#{part}")][f"t|{step}|{time_bucket(took)}"] += 1


def _retention_counters(out: Counters, part: str, ordered: Sequence[Event], document: Mapping[str, Any]) -> None:
    """The customer in its first day's (week's) cohort, with the periods it returned in, per return event."""
    returns = (document.get("retention") or {}).get("events", ["*", "Order Completed"])
    first = ordered[0].at.date()
    for by, limit in RETENTION.items():
        cohort = _period(first, by)
        item = out[(f"RETENTION#{by}", f"{cohort.isoformat()}#{part}")]
        item["n"] += 1
        for name in returns:
            offsets = {
                _offset(cohort, e.at.date(), by)
                for e in ordered
                if name == "*" or (e.type in BEHAVIOUR and e.name == name)
            }
            offsets = {o for o in offsets if o < limit}
            for offset in offsets:
                item[f"on|{name}|{offset}"] += 1
            if offsets:
                item[f"last|{name}|{max(offsets)}"] += 1


def _activity_counters(out: Counters, part: str, ordered: Sequence[Event], document: Mapping[str, Any]) -> None:
    """Every event in the timing grid (channel, hour of week) and the overview's day (hour, minute, name)."""
    counted_by_name = catalogued(document)
    for event in ordered:
        out[("TIMING", f"{channel(event)}#{part}")][f"h|{channel(event)}|{hour_of_week(event)}"] += 1
        day = event.at.date().isoformat()
        hour = out[(f"STATS#{day}", f"H{event.at:%H}#{part}")]
        hour["n"] += 1
        hour[f"m|{event.at:%H%M}"] += 1
        out[(f"STATS#{day}", f"E#{part}")][f"e|{event.name if event.name in counted_by_name else OTHER}"] += 1


def _period(day: date, by: str) -> date:
    return day - timedelta(days=day.weekday()) if by == "week" else day


def _offset(cohort: date, day: date, by: str) -> int:
    days = (_period(day, by) - cohort).days
    return days // 7 if by == "week" else days


def _step_matches(step: Mapping[str, Any], event: Event) -> bool:
    if event.name != step["event"]:
        return False
    return all(
        _text(event.properties.get(k)) in {str(v) for v in accepted} for k, accepted in step.get("where", {}).items()
    )


Journey = tuple[datetime, list[datetime], str]
"""A funnel journey: its entry time, the time of each step reached, its breakdown label."""


def _journeys(funnel: Mapping[str, Any], events: Sequence[Event], first_channel: str) -> list[Journey]:
    """README: a journey starts at a step-1 event when none is open, advances on the next step's event (strict:
    any other event ends it), and closes when complete or when the window since its start, or the next step's
    own `within` since the previous step, has passed (bounds inclusive)."""
    steps = funnel["steps"]
    window = duration(funnel.get("window", "14d"))
    strict = funnel.get("order") == "strict"
    found: list[Journey] = []
    open_: Journey | None = None
    for event in events:
        if open_ is not None:
            open_, consumed = _advance(open_, event, steps, found, window=window, strict=strict)
            if consumed:
                continue
        if _step_matches(steps[0], event):
            open_ = (event.at, [event.at], _label(funnel, event, first_channel))
            if len(steps) == 1:
                found.append(open_)
                open_ = None
    if open_ is not None:
        found.append(open_)
    return found


def _advance(
    journey: Journey,
    event: Event,
    steps: Sequence[Mapping[str, Any]],
    found: list[Journey],
    *,
    window: timedelta,
    strict: bool,
) -> tuple[Journey | None, bool]:
    """The open journey after `event` (None once it closed into `found`), and whether the event was its to take
    (then it cannot start a new journey)."""
    entry, times, _ = journey
    nxt = steps[len(times)]
    deadline = entry + window
    if nxt.get("within"):
        deadline = min(deadline, times[-1] + duration(nxt["within"]))
    if event.at > deadline:
        found.append(journey)
        return None, False
    if _step_matches(nxt, event):
        times.append(event.at)
        if len(times) == len(steps):
            found.append(journey)
            return None, True
        return journey, True
    if not strict:
        return journey, True
    found.append(journey)
    return None, False


def _label(funnel: Mapping[str, Any], event: Event, first_channel: str) -> str:
    """A journey's breakdown label: the customer's first channel, or the entry event's property when it is one of
    the listed values (else `(other)`, or `(none)` when the property is absent or empty)."""
    breakdown = funnel.get("breakdown", "channel")
    value = _text(event.properties.get(breakdown.split(":", 1)[1])) if breakdown != "channel" else ""
    listed = funnel.get("breakdown_values", [])
    label = first_channel if breakdown == "channel" else (value in listed and value) or (value and OTHER)
    return label or "(none)"


def add(total: Counters, more: Counters) -> None:
    for key, attributes in more.items():
        for name, n in attributes.items():
            if n:
                total.setdefault(key, {})
                total[key][name] = total[key].get(name, 0) + n


def overview_horizon(now: datetime) -> str:
    """Overview day counters stop changing once their day is more than two days before now."""
    return f"STATS#{(now - timedelta(days=OVERVIEW_DAYS)).date().isoformat()}"
