"""Customer profiles and computed traits, built so that the order of events does not matter.

Business rules:
- traits: the latest value of each trait by event time (ties broken by message id), whatever the arrival order;
- counters (events by name, orders, revenue) are sums, first/last seen are min/max: commutative;
- rolling 7/30/90-day figures come from per-day (UTC) buckets summed at read time: "the last 7 days" is today
  and the 6 calendar days before; buckets older than 91 days before the customer's newest event are dropped
  (which depends only on the events);
- open cart: products added (by `cart_id` where given) and not removed or ordered after they were added; entries
  an order closed are dropped (the order's stamp stays, to close adds that arrive late);
- first touch = the earliest event's channel and campaign; last touch = the latest event that carried a
  campaign;
- engagement: events per hour-of-week (customer's time zone when the client sent one) per channel.

Money is `Decimal`, so sums are exact and do not depend on the order they were added in.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shared.domain.events import MAX_MONEY, CallType, TrackingEvent, format_timestamp

ROLLING_WINDOWS = (7, 30, 90)
BUCKET_DAYS = 91
MAX_RECENT = 20
REVENUE_KEY = "$revenue"
USER_STAMP = "$userId"
ORDER_EVENT = "Order Completed"
ADD_EVENT = "Product Added"
REMOVE_EVENT = "Product Removed"
DEFAULT_CART = "-"


@dataclass(frozen=True, slots=True)
class Touch:
    """Where an interaction came from."""

    channel: str
    at: str
    message_id: str
    campaign: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CustomerProfile:
    """Everything Footfall knows about one customer, kept up to date from the stream."""

    customer_id: str
    identities: tuple[str, ...] = ()
    """`u:<userId>` and `a:<anonymousId>` keys linked to this customer."""
    user_id: str | None = None
    first_seen: str | None = None
    last_seen: str | None = None
    traits: Mapping[str, Any] = field(default_factory=dict)
    trait_stamps: Mapping[str, str] = field(default_factory=dict)
    """Per trait: `<event time>|<message id>` of the value kept (last write by event time wins); under
    `$userId`, the stamp of the earliest event that named the user id."""
    event_counts: Mapping[str, int] = field(default_factory=dict)
    orders: int = 0
    revenue: Decimal = Decimal(0)
    last_order_at: str | None = None
    daily: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """`yyyy-mm-dd` → event name → count, plus `$revenue`."""
    carts: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """cart id → {"products": {product id → {"added": t, "removed": t, "item": {...}}}, "ordered": t}; only what
    can still open holds: a product added at or before its cart's order is dropped, `item` is kept while open."""
    first_touch: Touch | None = None
    last_touch: Touch | None = None
    engagement: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    """channel → hour of week (`0` = Monday 00h … `167`) → events."""
    flags: Mapping[str, Any] = field(default_factory=dict)
    links: tuple[Mapping[str, str], ...] = ()
    """Provenance of identity links and merges: which call linked what, when."""
    merged_into: str | None = None
    """Set when this customer was merged into another one (a tombstone)."""

    @property
    def average_order_value(self) -> Decimal | None:
        """Revenue per order."""
        return (self.revenue / self.orders).quantize(Decimal("0.01")) if self.orders else None


def event_key(event: TrackingEvent) -> str:
    """The name an event is counted under: the track event name, else `$<type>` (`$page`, `$identify`…)."""
    return event.event if event.type is CallType.TRACK and event.event else f"${event.type}"


def money(value: Any) -> Decimal | None:
    """A monetary property as an exact Decimal (numbers and numeric strings), else None."""
    if isinstance(value, bool) or value is None:
        return None
    with contextlib.suppress(InvalidOperation, ValueError, TypeError):
        amount = Decimal(str(value))
        # The collector refuses money outside ±1e15; events stored before that rule must not break a profile.
        if amount.is_finite() and abs(amount) <= MAX_MONEY:
            return amount
    return None


def order_revenue(properties: Mapping[str, Any]) -> Decimal:
    """Segment's `revenue`, else `total`, of an order (0 when neither is a number)."""
    for key in ("revenue", "total"):
        amount = money(properties.get(key))
        if amount is not None:
            return amount
    return Decimal(0)


def channel_of(event: TrackingEvent) -> str:
    """Business rule: the channel an event came through (email, ads, push, social, app or web)."""
    campaign = event.context.get("campaign")
    medium = str(campaign.get("medium", "")).lower() if isinstance(campaign, Mapping) else ""
    name = (event.event or "").lower()
    if name.startswith("email") or medium in ("email", "e-mail", "newsletter"):
        return "email"
    if name.startswith("push") or medium == "push":
        return "push"
    if medium in ("cpc", "ppc", "paid", "paidsearch", "paid_social", "display", "ads", "cpm", "affiliate"):
        return "ads"
    if medium in ("social", "social-network", "social-media"):
        return "social"
    if event.type is CallType.SCREEN or isinstance(event.context.get("app"), Mapping):
        return "app"
    return "web"


def _campaign(event: TrackingEvent) -> dict[str, str]:
    campaign = event.context.get("campaign")
    if not isinstance(campaign, Mapping):
        return {}
    return {str(k): str(v) for k, v in campaign.items() if isinstance(v, (str, int, float)) and str(v)}


def hour_of_week(event: TrackingEvent) -> int:
    """0 = Monday 00:00 … 167 = Sunday 23:00, in the client's time zone when it sent a valid one."""
    moment = event.timestamp
    zone = event.context.get("timezone")
    if isinstance(zone, str) and zone:
        with contextlib.suppress(ZoneInfoNotFoundError, ValueError, OSError):
            moment = moment.astimezone(ZoneInfo(zone))
    return moment.weekday() * 24 + moment.hour


def apply_events(profile: CustomerProfile, events: Iterable[TrackingEvent]) -> CustomerProfile:
    """Fold events into a profile. Any order, any grouping into calls, gives the same result."""
    work = _Working.of(profile)
    for event in events:
        work.apply(event)
    return work.freeze(profile)


def merge_profiles(into: CustomerProfile, other: CustomerProfile, *, link: Mapping[str, str]) -> CustomerProfile:
    """Fold `other` (a customer found to be the same person) into `into`, keeping provenance."""
    work = _Working.of(into)
    work.absorb(other)
    merged = work.freeze(into)
    identities = tuple(sorted(set(into.identities) | set(other.identities)))
    return replace(
        merged,
        identities=identities,
        user_id=into.user_id or other.user_id,
        links=(*into.links, *other.links, dict(link)),
    )


def rolling(profile: CustomerProfile, now: datetime) -> dict[str, dict[str, Any]]:
    """Counts and revenue over the last 7/30/90 days: today (UTC, from `now`) and the N-1 calendar days before."""
    result: dict[str, dict[str, Any]] = {}
    for days in ROLLING_WINDOWS:
        since = (now - timedelta(days=days)).strftime("%Y-%m-%d")
        totals: dict[str, Any] = {}
        for day, counts in profile.daily.items():
            if since < day <= now.strftime("%Y-%m-%d"):
                for name, value in counts.items():
                    totals[name] = totals.get(name, 0) + value
        result[f"{days}d"] = totals
    return result


def open_cart(profile: CustomerProfile) -> list[dict[str, Any]]:
    """Products added and not removed or ordered since, across carts, newest first."""
    items: list[dict[str, Any]] = []
    global_order = profile.carts.get("*", {}).get("ordered") or ""
    for cart_id, cart in profile.carts.items():
        if cart_id == "*":
            continue
        closed = max(cart.get("ordered") or "", global_order)
        for product_id, product in cart.get("products", {}).items():
            if product["added"] > closed and product["added"] > (product.get("removed") or ""):
                items.append(
                    {
                        "cart_id": cart_id,
                        "product_id": product_id,
                        "added_at": product["added"],
                        **product.get("item", {}),
                    }
                )
    return sorted(items, key=lambda item: (item["added_at"], item["product_id"]), reverse=True)


class _Working:
    """Mutable scratch copy of a profile while events are folded in."""

    def __init__(self, profile: CustomerProfile) -> None:
        self.user_id = profile.user_id
        self.first_seen = profile.first_seen
        self.last_seen = profile.last_seen
        self.traits = dict(profile.traits)
        self.trait_stamps = dict(profile.trait_stamps)
        self.event_counts = dict(profile.event_counts)
        self.orders = profile.orders
        self.revenue = profile.revenue
        self.last_order_at = profile.last_order_at
        self.daily = {day: dict(counts) for day, counts in profile.daily.items()}
        self.carts: dict[str, dict[str, Any]] = {
            cid: {"ordered": c.get("ordered"), "products": {p: dict(v) for p, v in c.get("products", {}).items()}}
            for cid, c in profile.carts.items()
        }
        self.first_touch = profile.first_touch
        self.last_touch = profile.last_touch
        self.engagement = {channel: dict(hours) for channel, hours in profile.engagement.items()}
        self.flags = dict(profile.flags)

    @classmethod
    def of(cls, profile: CustomerProfile) -> _Working:
        return cls(profile)

    def apply(self, event: TrackingEvent) -> None:
        at = format_timestamp(event.timestamp)
        stamp = f"{at}|{event.message_id}"
        self.first_seen = min(filter(None, (self.first_seen, at)))
        self.last_seen = max(filter(None, (self.last_seen, at)))
        name = event_key(event)
        self.event_counts[name] = self.event_counts.get(name, 0) + 1
        day = self.daily.setdefault(at[:10], {})
        day[name] = day.get(name, 0) + 1
        if event.user_id and stamp < self.trait_stamps.get(USER_STAMP, "~"):
            self.user_id = event.user_id  # the earliest known user id names the customer
            self.trait_stamps[USER_STAMP] = stamp
        for key, value in {**_context_traits(event), **event.traits}.items():
            if stamp > self.trait_stamps.get(key, ""):
                self.traits[key] = value
                self.trait_stamps[key] = stamp
        if event.type is CallType.TRACK:
            self._commerce(event, at)
        channel = channel_of(event)
        hours = self.engagement.setdefault(channel, {})
        hour = str(hour_of_week(event))
        hours[hour] = hours.get(hour, 0) + 1
        touch = Touch(channel=channel, at=at, message_id=event.message_id, campaign=_campaign(event))
        self._touch(touch, last=False)
        self._touch(touch, last=True)

    def _commerce(self, event: TrackingEvent, at: str) -> None:
        properties = event.properties
        cart_id = str(properties.get("cart_id") or DEFAULT_CART)
        if event.event == ORDER_EVENT:
            amount = order_revenue(properties)
            self.orders += 1
            self.revenue += amount
            self.last_order_at = max(filter(None, (self.last_order_at, at)))
            day = self.daily[at[:10]]
            day[REVENUE_KEY] = day.get(REVENUE_KEY, Decimal(0)) + amount
            # An order with a cart id closes that cart; one without closes every cart (as of its time).
            target = cart_id if properties.get("cart_id") else "*"
            cart = self.carts.setdefault(target, {"ordered": None, "products": {}})
            cart["ordered"] = max(filter(None, (cart["ordered"], at)))
        elif event.event in (ADD_EVENT, REMOVE_EVENT):
            product_id = str(properties.get("product_id") or properties.get("sku") or "")
            if not product_id:
                return
            cart = self.carts.setdefault(cart_id, {"ordered": None, "products": {}})
            product = cart["products"].setdefault(product_id, {"added": "", "removed": None})
            if event.event == ADD_EVENT and at > product["added"]:
                product["added"] = at
                product["item"] = {
                    k: properties[k]
                    for k in ("name", "price", "quantity", "category")
                    if k in properties and isinstance(properties[k], (str, int, float, Decimal))
                }
            elif event.event == REMOVE_EVENT:
                product["removed"] = max(filter(None, (product["removed"], at)))

    def absorb(self, other: CustomerProfile) -> None:
        self.first_seen = min(filter(None, (self.first_seen, other.first_seen)), default=None)
        self.last_seen = max(filter(None, (self.last_seen, other.last_seen)), default=None)
        self.last_order_at = max(filter(None, (self.last_order_at, other.last_order_at)), default=None)
        self.orders += other.orders
        self.revenue += other.revenue
        self._absorb_traits(other)
        _add_counts(self.event_counts, other.event_counts)
        for day, counts in other.daily.items():
            _add_counts(self.daily.setdefault(day, {}), counts)
        for channel, hours in other.engagement.items():
            _add_counts(self.engagement.setdefault(channel, {}), hours)
        for cart_id, cart in other.carts.items():
            self._absorb_cart(cart_id, cart)
        if other.first_touch is not None:
            self._touch(other.first_touch, last=False)
        if other.last_touch is not None:
            self._touch(other.last_touch, last=True)
        for key, value in other.flags.items():
            self.flags.setdefault(key, value)

    def _absorb_traits(self, other: CustomerProfile) -> None:
        for key, value in other.traits.items():
            stamp = other.trait_stamps.get(key, "")
            if stamp > self.trait_stamps.get(key, ""):
                self.traits[key] = value
                self.trait_stamps[key] = stamp
        if other.user_id and other.trait_stamps.get(USER_STAMP, "~") < self.trait_stamps.get(USER_STAMP, "~"):
            self.user_id = other.user_id
            self.trait_stamps[USER_STAMP] = other.trait_stamps[USER_STAMP]

    def _absorb_cart(self, cart_id: str, cart: Mapping[str, Any]) -> None:
        mine = self.carts.setdefault(cart_id, {"ordered": None, "products": {}})
        mine["ordered"] = max(filter(None, (mine["ordered"], cart.get("ordered"))), default=None)
        for product_id, product in cart.get("products", {}).items():
            current = mine["products"].setdefault(product_id, {"added": "", "removed": None})
            if product["added"] > current["added"]:
                current["added"] = product["added"]
                current["item"] = dict(product.get("item", {}))
            current["removed"] = max(filter(None, (current.get("removed"), product.get("removed"))), default=None)

    def _touch(self, touch: Touch, *, last: bool) -> None:
        key = (touch.at, touch.message_id)
        if not last and (self.first_touch is None or key < (self.first_touch.at, self.first_touch.message_id)):
            self.first_touch = touch
        if (
            last
            and touch.campaign
            and (self.last_touch is None or key > (self.last_touch.at, self.last_touch.message_id))
        ):
            self.last_touch = touch

    def freeze(self, base: CustomerProfile) -> CustomerProfile:
        self._prune()
        return replace(
            base,
            user_id=self.user_id,
            first_seen=self.first_seen,
            last_seen=self.last_seen,
            traits=self.traits,
            trait_stamps=self.trait_stamps,
            event_counts=self.event_counts,
            orders=self.orders,
            revenue=self.revenue,
            last_order_at=self.last_order_at,
            daily=self.daily,
            carts=self.carts,
            first_touch=self.first_touch,
            last_touch=self.last_touch,
            engagement=self.engagement,
            flags=self.flags,
        )

    def _prune(self) -> None:
        # Everything dated more than BUCKET_DAYS before the newest event is dropped, whenever it arrived: the
        # result then depends only on the set of events, not on how they were batched.
        oldest = ""
        if self.last_seen:
            oldest = (datetime.fromisoformat(self.last_seen) - timedelta(days=BUCKET_DAYS)).strftime("%Y-%m-%d~")
            self.daily = {day: counts for day, counts in self.daily.items() if day > oldest}
        self.carts = _compact_carts(self.carts, oldest)


def _compact_carts(carts: Mapping[str, Mapping[str, Any]], oldest: str) -> dict[str, dict[str, Any]]:
    """Carts with what can no longer matter dropped: stamps older than the horizon, and closed entries.

    A cart is closed as of its own order or the latest order without cart id (`*`), whichever is later. An add or
    a removal at or before that can never open or hide the product again (an add after it replaces the add, and
    only a removal after it can hide that one), so it is forgotten like a stamp past the horizon; the order stamps
    themselves are kept, as they still close late-arriving older adds. A product's details are kept only while it
    can still show in the open cart (added after its removal). Each rule depends only on the set of events, so the
    result is the same whatever the order and batching they were folded in.
    """
    everything = _newer((carts.get("*") or {}).get("ordered"), oldest)
    compacted: dict[str, dict[str, Any]] = {}
    for cart_id, cart in carts.items():
        ordered = _newer(cart.get("ordered"), oldest)
        closed = max(oldest, ordered or "", everything or "")
        products = {pid: kept for pid, p in cart.get("products", {}).items() if (kept := _prune_product(p, closed))}
        if products or ordered:
            compacted[cart_id] = {"ordered": ordered, "products": products}
    return compacted


def _newer(stamp: str | None, oldest: str) -> str | None:
    return stamp if (stamp or "") > oldest else None


def _prune_product(product: Mapping[str, Any], oldest: str) -> dict[str, Any] | None:
    """A cart entry with its add and its removal each forgotten once at or before `oldest` (None: nothing left).

    Both are cleared the same way, so the entry does not depend on whether the old add was pruned before or after
    a later removal arrived. A removal alone is kept: its add may still arrive (out of order) and must not open.
    The details of the add are kept only while it is open (after the removal).
    """
    added = product["added"] if product["added"] > oldest else ""
    removed = _newer(product.get("removed"), oldest)
    if not added and removed is None:
        return None
    kept: dict[str, Any] = {"added": added, "removed": removed}
    if added and added > (removed or "") and "item" in product:
        kept["item"] = product["item"]
    return kept


def _add_counts(into: dict[str, Any], counts: Mapping[str, Any]) -> None:
    for key, value in counts.items():
        into[key] = into.get(key, 0) + value


def _context_traits(event: TrackingEvent) -> Mapping[str, Any]:
    traits = event.context.get("traits")
    return traits if isinstance(traits, Mapping) else {}
