"""A customer's profile from their raw events, written from the README's "Profile and computed traits"."""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tests.oracle.raw import Event, parse_time

HORIZON = timedelta(days=91)
"""Day buckets and cart entries older than this before the customer's newest event are forgotten (the profile
module's documented rule), so a cart added long ago is no longer open."""

EMAIL_MEDIA = {"email", "e-mail", "newsletter"}
AD_MEDIA = {"cpc", "ppc", "paid", "paidsearch", "paid_social", "display", "ads", "cpm", "affiliate"}
SOCIAL_MEDIA = {"social", "social-network", "social-media"}


def amount(value: Any) -> Decimal | None:
    """A number or numeric string as an exact Decimal (booleans and non-finite values are not money)."""
    if isinstance(value, bool) or value is None:
        return None
    with contextlib.suppress(InvalidOperation, ValueError, TypeError):
        number = Decimal(str(value))
        return number if number.is_finite() else None
    return None


def revenue_of(event: Event) -> Decimal:
    """README: `revenue`, else `total`, of an `Order Completed`."""
    for key in ("revenue", "total"):
        found = amount(event.properties.get(key))
        if found is not None:
            return found
    return Decimal(0)


def channel(event: Event) -> str:
    """README: the channel from the UTM medium and the event: email, ads, push, social, app, web."""
    campaign = event.context.get("campaign")
    medium = str(campaign.get("medium", "")).lower() if isinstance(campaign, dict) else ""
    name = str(event.payload.get("event") or "").lower()
    checks = (
        ("email", name.startswith("email") or medium in EMAIL_MEDIA),
        ("push", name.startswith("push") or medium == "push"),
        ("ads", medium in AD_MEDIA),
        ("social", medium in SOCIAL_MEDIA),
        ("app", event.type == "screen" or isinstance(event.context.get("app"), dict)),
    )
    return next((label for label, holds in checks if holds), "web")


def campaign(event: Event) -> dict[str, str]:
    found = event.context.get("campaign")
    if not isinstance(found, dict):
        return {}
    return {str(k): str(v) for k, v in found.items() if isinstance(v, (str, int, float, Decimal)) and str(v)}


def hour_of_week(event: Event) -> int:
    """Monday 00h = 0 … Sunday 23h = 167, in the client's time zone when it sent a valid one."""
    moment = event.at
    zone = event.context.get("timezone")
    if isinstance(zone, str) and zone:
        with contextlib.suppress(ZoneInfoNotFoundError, ValueError, OSError):
            moment = moment.astimezone(ZoneInfo(zone))
    return moment.weekday() * 24 + moment.hour


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def expected_profile(events: Sequence[Event], *, now: datetime) -> dict[str, Any]:
    """Every documented profile field, comparable with `stored_view` of the stored profile."""
    ordered = sorted(events, key=Event.order_key)
    first, last = ordered[0], ordered[-1]
    traits: dict[str, Any] = {}
    for event in ordered:  # last write by event time (then message id) wins
        context_traits = event.context.get("traits")
        traits.update(
            {**(context_traits if isinstance(context_traits, dict) else {}), **(event.payload.get("traits") or {})}
        )
    orders = [e for e in ordered if e.type == "track" and e.payload.get("event") == "Order Completed"]
    named = [e for e in ordered if e.user_id]
    engagement: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    counts: dict[str, int] = defaultdict(int)
    for event in ordered:
        counts[event.name] += 1
        engagement[channel(event)][str(hour_of_week(event))] += 1
    touched = [e for e in ordered if campaign(e)]
    revenue = sum((revenue_of(e) for e in orders), Decimal(0))
    return {
        "user_id": named[0].user_id if named else None,
        "first_seen": stamp(first.at),
        "last_seen": stamp(last.at),
        "traits": traits,
        "event_counts": dict(counts),
        "orders": len(orders),
        "revenue": revenue,
        "average_order_value": (revenue / len(orders)).quantize(Decimal("0.01")) if orders else None,
        "last_order_at": stamp(orders[-1].at) if orders else None,
        "rolling": _rolling([(e.at, e.name, revenue_of(e) if e in orders else None) for e in ordered], now),
        "open_cart": _open_cart(ordered),
        "first_touch": _touch(first),
        "last_touch": _touch(touched[-1]) if touched else None,
        "engagement": {c: dict(h) for c, h in engagement.items()},
    }


def _touch(event: Event) -> dict[str, Any]:
    return {
        "channel": channel(event),
        "at": stamp(event.at),
        "message_id": event.message_id,
        "campaign": campaign(event),
    }


def _rolling(rows: list[tuple[datetime, str, Decimal | None]], now: datetime) -> dict[str, dict[str, Any]]:
    """README: counts and revenue over the last 7/30/90 calendar days (today, UTC, and the N-1 days before)."""
    result: dict[str, dict[str, Any]] = {}
    today = now.date()
    for days in (7, 30, 90):
        totals: dict[str, Any] = defaultdict(int)
        for at, name, money in rows:
            if 0 <= (today - at.date()).days < days:
                totals[name] += 1
                if money is not None:
                    totals["$revenue"] = totals.get("$revenue", Decimal(0)) + money
        result[f"{days}d"] = dict(totals)
    return result


def _open_cart(ordered: list[Event]) -> set[tuple[str, str, str]]:
    """README: products added, not removed or ordered since, by `cart_id` (an order without one closes all)."""
    horizon = ordered[-1].at - HORIZON
    added: dict[tuple[str, str], datetime] = {}
    removed: dict[tuple[str, str], datetime] = {}
    closed: dict[str, datetime] = {}
    for event in ordered:
        name, props = event.payload.get("event"), event.properties
        if event.type != "track":
            continue
        cart = str(props.get("cart_id") or "-")
        if name == "Order Completed":
            closed["*" if not props.get("cart_id") else cart] = event.at
        product = str(props.get("product_id") or props.get("sku") or "")
        if name == "Product Added" and product:
            added[(cart, product)] = event.at
        elif name == "Product Removed" and product:
            removed[(cart, product)] = event.at
    epoch = datetime.min.replace(tzinfo=horizon.tzinfo)
    return {
        (cart, product, stamp(at))
        for (cart, product), at in added.items()
        if at.date() > horizon.date()
        and at > max(closed.get(cart, epoch), closed.get("*", epoch), removed.get((cart, product), epoch))
    }


def stored_view(body: dict[str, Any], *, now: datetime) -> dict[str, Any]:
    """The same fields read off a stored profile body (its day buckets summed, its carts read)."""
    rows = [
        (parse_time(day + "T00:00:00+00:00"), name, None)
        for day, counts in body.get("daily", {}).items()
        for name, n in counts.items()
        if name != "$revenue"
        for _ in range(int(n))
    ]
    rolling = _rolling(rows, now)
    for days, totals in rolling.items():
        money = [
            Decimal(counts["$revenue"])
            for day, counts in body.get("daily", {}).items()
            if "$revenue" in counts
            and 0 <= (now.date() - parse_time(day + "T00:00:00+00:00").date()).days < int(days[:-1])
        ]
        if money:
            totals["$revenue"] = sum(money, Decimal(0))
    carts = body.get("carts", {})
    everything = (carts.get("*") or {}).get("ordered") or ""
    cart_rows = set()
    for cart_id, cart in carts.items():
        for product_id, product in (cart.get("products") or {}).items():
            at = product.get("added") or ""
            if at and at > max(cart.get("ordered") or "", everything, product.get("removed") or ""):
                cart_rows.add((cart_id, product_id, at))
    revenue = Decimal(body["revenue"])
    orders = int(body["orders"])
    return {
        "user_id": body.get("user_id"),
        "first_seen": body.get("first_seen"),
        "last_seen": body.get("last_seen"),
        "traits": body.get("traits", {}),
        "event_counts": {k: int(v) for k, v in body.get("event_counts", {}).items()},
        "orders": orders,
        "revenue": revenue,
        "average_order_value": (revenue / orders).quantize(Decimal("0.01")) if orders else None,
        "last_order_at": body.get("last_order_at"),
        "rolling": rolling,
        "open_cart": cart_rows,
        "first_touch": body.get("first_touch"),
        "last_touch": body.get("last_touch"),
        "engagement": {c: {h: int(n) for h, n in hours.items()} for c, hours in body.get("engagement", {}).items()},
    }
