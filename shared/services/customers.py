"""Reading customers: the views the CLI and the TUI show (one implementation for both).

The views are typed read models (frozen dataclasses): the CLI's `--json` is their serialisation, field by field in
declaration order, and the TUI draws them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from shared.domain.events import TrackingEvent, format_timestamp
from shared.domain.identity import identity_key, split_identity
from shared.domain.profiles import CustomerProfile, Touch, open_cart, rolling
from shared.ports import CorruptItemError, CustomerEraser, CustomerReader, StoredProfile

RECENT_EVENTS = 20

__all__ = [
    "RECENT_EVENTS",
    "CustomerDetail",
    "CustomerReader",
    "CustomerSummary",
    "Forgotten",
    "RecentEvent",
    "customer_detail",
    "customer_summary",
    "find_customer",
    "forget_customer",
]


@dataclass(frozen=True, slots=True)
class CustomerSummary:
    """One row of a customer list."""

    customer_id: str
    user_id: str | None
    email: Any
    """The `email` trait as stored (a string, or nothing)."""
    first_seen: str | None
    last_seen: str | None
    events: int
    orders: int
    revenue: int | float


@dataclass(frozen=True, slots=True)
class RecentEvent:
    """One of a customer's events, newest first in a `CustomerDetail`."""

    at: str
    type: str
    event: str | None
    """The track call's event name, or the page/screen name (None for calls that have neither)."""
    message_id: str
    source: str
    properties: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CustomerDetail(CustomerSummary):
    """Everything about one customer: the summary, then identities, traits, computed traits, recent events."""

    identities: tuple[str, ...]
    traits: dict[str, Any]
    computed: dict[str, Any]
    """Computed traits by name: `event_counts`, `average_order_value`, `last_order_at`, `rolling` (7/30/90-day
    figures), `open_cart`, `first_touch`, `last_touch` (channel, at, campaign) and `engagement`."""
    flags: dict[str, Any]
    links: tuple[dict[str, Any], ...]
    """How the identities came together (the provenance of every merge and link)."""
    recent_events: tuple[RecentEvent, ...]
    total_stored_events: int


@dataclass(frozen=True, slots=True)
class Forgotten:
    """What an erasure did."""

    customer_id: str | None
    """The customer erased (None when the reference named no known customer: its identities are suppressed)."""
    identities: tuple[str, ...]
    deleted_items: int


def find_customer(store: CustomerReader, reference: str) -> StoredProfile | None:
    """A customer by customer id, identity (`u:…`/`a:…`), userId or anonymousId; merges are followed."""
    candidates = _named(reference)
    links = store.get_links(candidates)
    customer_ids = [links[c].customer_id for c in candidates if c in links] or [reference]
    for _ in range(8):  # follow merge tombstones
        found = store.get_profiles(customer_ids[:1]).get(customer_ids[0])
        if found is None or not found.profile.merged_into:
            return found
        customer_ids = [found.profile.merged_into]
    return None


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _touch(touch: Touch | None) -> dict[str, Any] | None:
    return None if touch is None else {"channel": touch.channel, "at": touch.at, "campaign": dict(touch.campaign)}


def customer_summary(profile: CustomerProfile) -> CustomerSummary:
    """One row of a customer list."""
    return CustomerSummary(
        customer_id=profile.customer_id,
        user_id=profile.user_id,
        email=profile.traits.get("email"),
        first_seen=profile.first_seen,
        last_seen=profile.last_seen,
        events=sum(profile.event_counts.values()),
        orders=profile.orders,
        revenue=_plain(profile.revenue),
    )


def customer_detail(
    store: CustomerReader, stored: StoredProfile, *, now: datetime, recent: int = RECENT_EVENTS
) -> CustomerDetail:
    """Everything about one customer: profile, computed traits, identities, recent events."""
    profile = stored.profile
    events: list[TrackingEvent] = []
    for identity in profile.identities:
        kind, value = split_identity(identity)
        events += store.list_identity_events(kind, value)
    events.sort(key=lambda event: (event.timestamp, event.message_id), reverse=True)
    summary = customer_summary(profile)
    return CustomerDetail(
        customer_id=_plain(summary.customer_id),
        user_id=_plain(summary.user_id),
        email=_plain(summary.email),
        first_seen=_plain(summary.first_seen),
        last_seen=_plain(summary.last_seen),
        events=_plain(summary.events),
        orders=_plain(summary.orders),
        revenue=summary.revenue,
        identities=tuple(profile.identities),
        traits=_plain(dict(profile.traits)),
        computed=_plain(_computed(profile, now)),
        flags=_plain(dict(profile.flags)),
        links=tuple(_plain(list(profile.links))),
        recent_events=tuple(_recent(event) for event in events[:recent]),
        total_stored_events=len(events),
    )


def _computed(profile: CustomerProfile, now: datetime) -> dict[str, Any]:
    return {
        "event_counts": dict(profile.event_counts),
        "average_order_value": profile.average_order_value,
        "last_order_at": profile.last_order_at,
        "rolling": rolling(profile, now),
        "open_cart": open_cart(profile),
        "first_touch": _touch(profile.first_touch),
        "last_touch": _touch(profile.last_touch),
        "engagement": {channel: dict(hours) for channel, hours in profile.engagement.items()},
    }


def _recent(event: TrackingEvent) -> RecentEvent:
    return RecentEvent(
        at=format_timestamp(event.timestamp),
        type=str(event.type),
        event=event.event or event.name,
        message_id=event.message_id,
        source=event.source_id,
        properties=_plain(dict(event.properties)),
    )


def forget_customer(store: CustomerEraser, reference: str, *, now: datetime) -> Forgotten:
    """Erase a customer (GDPR): every identity, event, link and profile, including customers merged into it;
    later events for any of its identities are not stored.

    A reference to no known customer (`u:`/`a:` identity, userId or anonymousId) is still suppressed, so data
    that has not arrived yet will not be kept either.
    """
    named = _named(reference)
    customers: list[str] = []
    identities = named
    try:
        found = find_customer(store, reference)
    except CorruptItemError as exc:
        # A profile that cannot be decoded must still be erasable: the identities named, the customer's own id
        # and the customer the links point to (the links say so without the profile).
        found = None
        linked = store.get_links(named)
        owner = next((link.customer_id for link in linked.values()), exc.customer_id or reference)
        identities, customers = sorted({*named, owner}), [owner]
    if found is not None:
        profile = found.profile
        identities = sorted(set(profile.identities) | {profile.customer_id})
        merged_away = [link["merged"] for link in profile.links if "merged" in link]
        customers = [profile.customer_id, *merged_away]
    # The counters stop counting them when their cells items go: the fold takes back what a REMOVE held.
    deleted = store.forget(identities=identities, customer_ids=customers, at=format_timestamp(now))
    return Forgotten(
        customer_id=found.profile.customer_id if found else (customers[0] if customers else None),
        identities=tuple(identities),
        deleted_items=deleted,
    )


def _named(reference: str) -> list[str]:
    """The identities a reference names: itself if it is one (`u:…`/`a:…`), else the userId and anonymousId."""
    return (
        [reference] if reference[:2] in ("u:", "a:") else [identity_key("u", reference), identity_key("a", reference)]
    )
