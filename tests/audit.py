"""The audit every fault scenario ends with: what is stored equals a recomputation from the stored events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shared.domain.profiles import CustomerProfile, apply_events
from shared.domain.segments import Facts, evaluate
from shared.services.analytics import all_customer_ids, recompute, stored_counters
from shared.services.segments import customer_events, rules_of


def audit(store: Any, *, now: datetime | None = None) -> int:
    """Every customer's profile counters and segment memberships, and every analytics counter, equal what the
    stored events give when recomputed from scratch. Returns how many customers were checked."""
    moment = now or datetime.now(UTC)
    rules = rules_of(store.list_segments())
    checked = 0
    for customer_id in all_customer_ids(store):
        stored = store.get_profiles([customer_id])[customer_id]
        if stored.profile.merged_into:
            continue
        events = customer_events(store, stored)
        fresh = apply_events(CustomerProfile(customer_id=customer_id), events)
        found = (stored.profile.event_counts, stored.profile.orders, stored.profile.revenue)
        assert found == (fresh.event_counts, fresh.orders, fresh.revenue), customer_id
        members = {r.id for r in rules if evaluate(r, Facts(stored.profile.traits, events), moment).member}
        assert set(store.memberships_of(customer_id)) == members, customer_id
        checked += 1
    cells = recompute(store, now=moment)
    assert stored_counters(store, cells) == {key: counts for key, counts in cells.items() if any(counts.values())}
    return checked
