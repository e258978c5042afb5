"""Completing a customer item from its derived state: a batch reads none of the customer's history when the state
can be carried on, and the item it writes is the one a rebuild from the whole history gives; otherwise it reads."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from shared.domain import analytics
from shared.domain.events import CallType, TrackingEvent
from shared.domain.profiles import CustomerProfile, apply_events
from shared.domain.segments import Due, Memberships, parse_rules
from shared.ports import StoredProfile
from shared.services.analytics import STARTERS
from shared.services.prepare import CustomerItems
from shared.storage.capacity import write_units
from shared.storage.items import item_to_profile, profile_to_item

RULES = parse_rules(
    json.loads((Path(__file__).resolve().parents[2] / "infra" / "segments" / "starters.json").read_text()),
    source="starters.json",
)
DEFINITIONS = analytics.parse_definitions(json.loads(STARTERS.read_text()))
START = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
CUSTOMER = "u:ada"


def an_event(n: int, name: str, *, at: datetime | None = None, **properties: Any) -> TrackingEvent:
    moment = at or START + timedelta(hours=n)
    return TrackingEvent(
        source_id="web",
        message_id=f"m{n:04d}",
        type=CallType.TRACK,
        timestamp=moment,
        received_at=moment,
        user_id="ada",
        event=name,
        properties=properties,
    )


class History:
    """The customer's stored events (what a read of its history returns), counting the reads."""

    event_retention: timedelta | None = None

    def __init__(self) -> None:
        self.events: dict[tuple[str, str], list[TrackingEvent]] = {}
        self.reads = 0
        self.due: list[Due] = []

    def list_identity_events(self, kind: str, identifier: str) -> list[TrackingEvent]:
        self.reads += 1
        return list(self.events.get((kind, identifier), []))

    def put_due(self, dues: Any, *, indexed: bool = False) -> None:
        self.due += dues

    def memberships_of(self, customer_id: str) -> Memberships:
        return Memberships()


def fold(store: History, stored: StoredProfile, batch: list[TrackingEvent], now: datetime, **changes: Any) -> Any:
    """One customer-batch as processing runs it: the events stored, folded, the item completed; returns the item,
    whether the history was read, and the same item completed without a state (from the whole history)."""
    for event in batch:
        store.events.setdefault(event.identity, []).append(event)
    rules = changes.get("rules", RULES)
    folded = replace(stored, profile=apply_events(stored.profile, batch))  # (the version it was read at)
    items = CustomerItems(store, rules, DEFINITIONS, now=now)
    complete = items(folded, batch, first=not stored.version)
    reads = store.reads
    # The same write, completed from the whole history (as if stored before: a first write reads nothing).
    whole = CustomerItems(store, rules, DEFINITIONS, now=now)(replace(folded, derived=None, version=1), batch)
    store.reads = reads
    saved = folded.version + 1  # (the version the store leaves it at)
    return replace(complete, version=saved), items.read, replace(whole, version=saved)


def new_customer() -> StoredProfile:
    return StoredProfile(CustomerProfile(customer_id=CUSTOMER, identities=(CUSTOMER,)), segments={})


def test_a_returning_customer_is_completed_from_its_state_as_from_its_whole_history():
    store = History()
    batch = [an_event(0, "Product Viewed"), an_event(1, "Product Added")]
    stored, reads, whole = fold(store, new_customer(), batch, START)
    assert reads == 0 and store.reads == 0 and stored.derived is not None  # a new customer: nothing to read
    assert stored == whole
    batches = [
        [an_event(2, "Product Viewed"), an_event(3, "Product Viewed", cart_id="c1")],
        [an_event(30, "Email Opened"), an_event(31, "Order Completed", revenue=700, cart_id="c1")],
        [an_event(200, "Product Viewed")],
    ]
    for n, batch in enumerate(batches):
        stored, reads, whole = fold(store, stored, batch, START + timedelta(hours=4 + 100 * n))
        assert reads == 0 and store.reads == 0  # carried on: nothing read
        assert stored == whole  # segments, reasons, cells, due moments and the state: as from the whole history
        assert item_to_profile(profile_to_item(stored)).derived == stored.derived  # and stored as it is
    assert stored.segments is not None and set(stored.segments) == {"email_engaged", "heavy_spenders"}


def test_a_new_customer_is_built_from_what_it_folds_and_rebuilt_when_another_shard_brings_earlier_events():
    # On a multi-shard stream, events of a new customer's identity may be stored but not folded yet: the first
    # write builds from its own events (what the item has folded), the later ones carry the state on or rebuild.
    store = History()
    elsewhere = [an_event(1, "Product Viewed"), an_event(2, "Product Added", cart_id="c9")]
    for event in elsewhere:  # stored by the collector; their stream records are in another shard's batch
        store.events.setdefault(event.identity, []).append(event)
    batch = [an_event(5, "Product Viewed"), an_event(6, "Order Completed", revenue=90, cart_id="c2")]
    first, reads, _ = fold(store, new_customer(), batch, START + timedelta(hours=7))
    assert reads == 0 and store.reads == 0
    assert first.derived is not None and first.derived.events == 2  # what this write folded, not what was stored
    assert first.cells == analytics.customer_cells(CUSTOMER, batch, DEFINITIONS, now=START + timedelta(hours=7))
    later = START + timedelta(hours=8)  # the other shard's batch folds the two events stored before
    folded = replace(first, profile=apply_events(first.profile, elsewhere))
    items = CustomerItems(store, RULES, DEFINITIONS, now=later)
    done = items(folded, elsewhere)
    assert items.read == 1  # earlier than the last event counted: rebuilt from the history, which holds all four
    assert done.derived is not None and done.derived.events == 4
    assert done.cells == analytics.customer_cells(CUSTOMER, [*elsewhere, *batch], DEFINITIONS, now=later)
    assert done == CustomerItems(store, RULES, DEFINITIONS, now=later)(replace(folded, derived=None), elsewhere)


def test_the_history_is_read_when_the_state_cannot_be_carried_on():
    store = History()
    stored, _, _ = fold(store, new_customer(), [an_event(5, "Product Viewed")], START + timedelta(hours=6))
    cases = {
        "an event before the last one counted": (stored, [an_event(6, "Product Viewed", at=START)], {}),
        "an identity attached": (
            replace(stored, profile=replace(stored.profile, identities=(CUSTOMER, "a:phone"))),
            [an_event(7, "Product Viewed")],
            {},
        ),
        "other rules": (stored, [an_event(8, "Product Viewed")], {"rules": RULES[:2]}),
        "no state (an item from an earlier version)": (replace(stored, derived=None), [an_event(9, "Signed Up")], {}),
    }
    for case, (item, batch, changes) in cases.items():
        before = store.reads
        done, reads, whole = fold(store, item, batch, START + timedelta(hours=20), **changes)
        assert reads == 1 and store.reads > before, case
        assert done == whole, case


def test_the_history_is_read_again_once_its_oldest_event_has_expired():
    store = History()
    store.event_retention = timedelta(days=2)
    stored, _, _ = fold(store, new_customer(), [an_event(0, "Product Viewed")], START + timedelta(hours=1))
    assert stored.derived is not None and stored.derived.expires == START + timedelta(days=2)
    _, reads, _ = fold(store, stored, [an_event(24, "Product Viewed")], START + timedelta(days=1, hours=1))
    assert reads == 0
    _, reads, _ = fold(store, stored, [an_event(49, "Product Viewed")], START + timedelta(days=2, hours=1))
    assert reads == 1


def test_the_state_is_kept_where_it_costs_less_than_the_read_it_saves():
    store = History()
    stored, _, _ = fold(store, new_customer(), [an_event(n, "Product Viewed") for n in range(9)], START)
    assert stored.derived is not None and stored.derived.events == 9 and not stored.derived.spare  # nearly free
    # From 10 to 49 events the state is spare: the item keeps it only where it takes no more kilobytes with it
    kept, had = [], True
    for n in range(9, 49):
        name = "Email Opened" if n % 2 else "Product Viewed"
        item = item_to_profile(profile_to_item(stored))  # as the next batch reads it
        stored, reads, whole = fold(store, item, [an_event(n, name)], START + timedelta(hours=n + 1))
        assert reads == (0 if had else 1) and stored == whole
        assert stored.derived is not None and stored.derived.spare
        written, lean = profile_to_item(stored), profile_to_item(replace(stored, derived=None))
        had = item_to_profile(written).derived is not None
        costlier = write_units(profile_to_item(replace(stored, derived=replace(stored.derived, spare=False))))
        assert had == (costlier == write_units(lean)) and write_units(written) == write_units(lean)
        kept.append(had)
    assert True in kept and False in kept  # kept while the item has room for it, then read at every batch
    item = item_to_profile(profile_to_item(stored))
    stored, reads, whole = fold(store, item, [an_event(49, "Order Completed")], START + timedelta(hours=50))
    assert reads == 1 and stored.derived is not None and stored.derived.events == 50 and stored == whole
    assert not stored.derived.spare and item_to_profile(profile_to_item(stored)).derived is not None
    item = item_to_profile(profile_to_item(stored))
    stored, reads, whole = fold(store, item, [an_event(50, "Order Completed")], START + timedelta(hours=51))
    assert reads == 0 and stored == whole  # a long history: carried on
