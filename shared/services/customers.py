"""Reading customers: the views the CLI and the TUI show (one implementation for both)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from shared.domain.events import TrackingEvent, format_timestamp
from shared.domain.identity import identity_key, split_identity
from shared.domain.profiles import CustomerProfile, Touch, open_cart, rolling
from shared.ports import CorruptItemError, Link, Page, StoredProfile

RECENT_EVENTS = 20


class CustomerReader(Protocol):
    """What the customer views need from storage."""

    def get_links(self, identities: Sequence[str]) -> dict[str, Link]: ...

    def get_profiles(self, customer_ids: Sequence[str]) -> dict[str, StoredProfile]: ...

    def list_customers(self, *, limit: int = 50, next_token: str | None = None) -> Page[StoredProfile]: ...

    def list_identity_events(self, kind: str, identifier: str) -> list[TrackingEvent]: ...


def find_customer(store: CustomerReader, reference: str) -> StoredProfile | None:
    """A customer by customer id, identity (`u:…`/`a:…`), userId or anonymousId; merges are followed."""
    candidates = (
        [reference] if reference[:2] in ("u:", "a:") else [identity_key("u", reference), identity_key("a", reference)]
    )
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


def customer_summary(profile: CustomerProfile) -> dict[str, Any]:
    """One row of a customer list."""
    return {
        "customer_id": profile.customer_id,
        "user_id": profile.user_id,
        "email": profile.traits.get("email"),
        "first_seen": profile.first_seen,
        "last_seen": profile.last_seen,
        "events": sum(profile.event_counts.values()),
        "orders": profile.orders,
        "revenue": _plain(profile.revenue),
    }


def customer_detail(
    store: CustomerReader, stored: StoredProfile, *, now: datetime, recent: int = RECENT_EVENTS
) -> dict[str, Any]:
    """Everything about one customer: profile, computed traits, identities, recent events."""
    profile = stored.profile
    events: list[TrackingEvent] = []
    for identity in profile.identities:
        kind, value = split_identity(identity)
        events += store.list_identity_events(kind, value)
    events.sort(key=lambda event: (event.timestamp, event.message_id), reverse=True)
    return _plain(
        {
            **customer_summary(profile),
            "identities": list(profile.identities),
            "traits": dict(profile.traits),
            "computed": {
                "event_counts": dict(profile.event_counts),
                "average_order_value": profile.average_order_value,
                "last_order_at": profile.last_order_at,
                "rolling": rolling(profile, now),
                "open_cart": open_cart(profile),
                "first_touch": _touch(profile.first_touch),
                "last_touch": _touch(profile.last_touch),
                "engagement": {channel: dict(hours) for channel, hours in profile.engagement.items()},
            },
            "flags": dict(profile.flags),
            "links": list(profile.links),
            "recent_events": [
                {
                    "at": format_timestamp(e.timestamp),
                    "type": str(e.type),
                    "event": e.event or e.name,
                    "message_id": e.message_id,
                    "source": e.source_id,
                    "properties": dict(e.properties),
                }
                for e in events[:recent]
            ],
            "total_stored_events": len(events),
        }
    )


class Eraser(CustomerReader, Protocol):
    """What erasure needs from storage."""

    def forget(self, *, identities: Sequence[str], customer_ids: Sequence[str], at: str) -> int: ...


def forget_customer(store: Eraser, reference: str, *, now: datetime) -> dict[str, Any]:
    """Erase a customer (GDPR): every identity, event, link and profile, including customers merged into it;
    later events for any of its identities are not stored.

    A reference to no known customer (`u:`/`a:` identity, userId or anonymousId) is still suppressed, so data
    that has not arrived yet will not be kept either.
    """
    named = (
        [reference] if reference[:2] in ("u:", "a:") else [identity_key("u", reference), identity_key("a", reference)]
    )
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
    return {
        "customer_id": found.profile.customer_id if found else (customers[0] if customers else None),
        "identities": identities,
        "deleted_items": deleted,
    }
