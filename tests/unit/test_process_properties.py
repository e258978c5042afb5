"""Property: however the stream delivers a log (any arrival order, any batching, redelivered batches, crashes
mid-batch), each customer's profile equals a straightforward recomputation from the de-duplicated log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from shared.domain.events import CallType, TrackingEvent
from shared.domain.profiles import CustomerProfile, apply_events
from shared.services.process import StreamChange, process_changes
from tests.profile_fakes import InMemoryProfileStore

START = datetime(2026, 3, 1, tzinfo=UTC)
NAMES = ["Product Viewed", "Product Added", "Product Removed", "Order Completed", "Email Opened"]


@st.composite
def customer_logs(draw: Any) -> list[TrackingEvent]:
    """Events of 1-3 people: anonymous browsing, an identify, logged-in activity; random times and contents."""
    events: list[TrackingEvent] = []
    for person in range(draw(st.integers(1, 3))):
        user, anonymous = f"user-{person}", f"anon-{person}"
        count = draw(st.integers(1, 12))
        for n in range(count):
            kind = draw(st.sampled_from(["anonymous", "identified", "identify"]))
            at = START + timedelta(minutes=draw(st.integers(0, 60 * 24 * 120)))
            name = draw(st.sampled_from(NAMES))
            properties: dict[str, Any] = {
                "product_id": draw(st.sampled_from(["p1", "p2", "p3"])),
                "cart_id": draw(st.sampled_from(["c1", "c2", None])),
                "revenue": draw(st.sampled_from([10, 19.99, "5.5", None])),
            }
            campaign = draw(st.sampled_from([None, {"medium": "email", "name": "nov"}, {"medium": "cpc"}]))
            events.append(
                TrackingEvent(
                    source_id="web",
                    message_id=f"m-{person}-{n}",
                    type=CallType.IDENTIFY if kind == "identify" else CallType.TRACK,
                    timestamp=at,
                    received_at=at,
                    user_id=None if kind == "anonymous" else user,
                    anonymous_id=anonymous if kind != "identified" or draw(st.booleans()) else None,
                    event=None if kind == "identify" else name,
                    properties={k: v for k, v in properties.items() if v is not None} if kind != "identify" else {},
                    traits={"plan": draw(st.sampled_from(["free", "pro"]))} if kind == "identify" else {},
                    context={"campaign": campaign} if campaign else {},
                )
            )
        events.append(
            TrackingEvent(
                source_id="web",
                message_id=f"m-{person}-id",
                type=CallType.IDENTIFY,
                timestamp=START,
                received_at=START,
                user_id=user,
                anonymous_id=anonymous,
            )
        )
    return events


def facts(profile: CustomerProfile) -> dict[str, Any]:
    """What a profile says about the person (not how it was stitched)."""
    return {
        "user_id": profile.user_id,
        "first_seen": profile.first_seen,
        "last_seen": profile.last_seen,
        "traits": profile.traits,
        "event_counts": profile.event_counts,
        "orders": profile.orders,
        "revenue": Decimal(profile.revenue),
        "last_order_at": profile.last_order_at,
        "daily": profile.daily,
        "carts": profile.carts,
        "first_touch": profile.first_touch,
        "last_touch": profile.last_touch,
        "engagement": profile.engagement,
    }


@settings(max_examples=80, deadline=None)
@given(log=customer_logs(), data=st.data())
def test_any_delivery_of_the_stream_gives_the_recomputed_profiles(log: list[TrackingEvent], data: st.DataObject):
    # Given the log arriving in a random order, as stream records with increasing sequence numbers
    arrival = data.draw(st.permutations(log))
    stream = [StreamChange(str(1000 + n), event) for n, event in enumerate(arrival)]
    store = InMemoryProfileStore()
    # When it is delivered in random batches, some redelivered, some after a crash mid-batch
    position = 0
    while position < len(stream):
        size = data.draw(st.integers(1, 6))
        batch = stream[position : position + size]
        if data.draw(st.booleans()):  # a crash after part of the batch was processed
            process_changes(store, batch[: data.draw(st.integers(1, len(batch)))])
        for _ in range(data.draw(st.integers(1, 3))):  # delivered once, or redelivered
            assert process_changes(store, batch) == []
        position += size
    # Then there is one live customer per person, equal to folding that person's events once
    people = sorted({(e.user_id or e.anonymous_id or "").split("-")[1] for e in log})
    live = store.live_profiles()
    assert len(live) == len(people)
    for stored in live:
        person = stored.profile.user_id.split("-")[1]
        mine = [e for e in log if (e.user_id or e.anonymous_id).endswith(f"-{person}")]
        expected = apply_events(CustomerProfile(customer_id="expected"), mine)
        assert facts(stored.profile) == facts(expected)
        assert set(stored.profile.identities) == {f"u:user-{person}", f"a:anon-{person}"}


def _cart_event(n: int, name: str, days: int) -> TrackingEvent:
    return TrackingEvent(
        source_id="web",
        message_id=f"m-0-{n}",
        type=CallType.TRACK,
        timestamp=START + timedelta(days=days),
        received_at=START + timedelta(days=days),
        user_id="user-0",
        event=name,
        properties={"product_id": "p1", "cart_id": "c1"},
    )


# Found with --hypothesis-seed=13: an add older than the 91-day horizon was pruned once a later event arrived, and a
# removal arriving afterwards left a cart entry `{"added": "", …}` where folding everything at once kept the add.
PRUNED_ADD_THEN_REMOVAL = [
    _cart_event(0, "Product Added", 0),
    _cart_event(1, "Product Viewed", 100),
    _cart_event(2, "Product Removed", 30),
]


@settings(max_examples=60, deadline=None)
@given(log=customer_logs())
@example(log=PRUNED_ADD_THEN_REMOVAL)
def test_one_event_at_a_time_in_order_gives_the_recomputed_profile(log: list[TrackingEvent]):
    # Given a store fed the log one record per batch, in arrival order
    store = InMemoryProfileStore()
    # When
    for n, event in enumerate(log):
        assert process_changes(store, [StreamChange(str(1000 + n), event)]) == []
    # Then each person's profile equals folding all their events at once
    for stored in store.live_profiles():
        person = stored.profile.user_id.split("-")[1]
        mine = [e for e in log if (e.user_id or e.anonymous_id).endswith(f"-{person}")]
        assert facts(stored.profile) == facts(apply_events(CustomerProfile(customer_id="expected"), mine))


def test_a_batch_writes_each_profile_once_however_many_events_it_holds():
    events = [
        TrackingEvent(
            source_id="web",
            message_id=f"m{n}",
            type=CallType.TRACK,
            timestamp=START,
            received_at=START,
            user_id=f"u{n % 3}",
            event="Product Viewed",
        )
        for n in range(60)
    ]
    store = InMemoryProfileStore()
    process_changes(store, [StreamChange(str(n + 1), e) for n, e in enumerate(events)])
    assert store.writes == 3  # one customer item each, which also links its own identity: no link writes
    assert sorted(p.profile.event_counts["Product Viewed"] for p in store.live_profiles()) == [20, 20, 20]


def test_a_merge_that_cannot_be_written_fails_that_record_and_the_ones_after_it():
    # Given two stored customers, anonymous and known, and a store that throttles merges
    from shared.ports import ThrottledError

    store = InMemoryProfileStore()

    def track(n: int, **ids: str) -> StreamChange:
        return StreamChange(
            str(n),
            TrackingEvent(
                source_id="web",
                message_id=f"m{n}",
                type=CallType.TRACK,
                timestamp=START,
                received_at=START,
                event="Viewed",
                **ids,
            ),
        )

    assert process_changes(store, [track(1, user_id="u"), track(2, anonymous_id="a")]) == []

    def throttled(**_: Any) -> Any:
        raise ThrottledError("merges are throttled")

    store.merge_customers = throttled  # type: ignore[method-assign]
    # When a batch has an event before the merging call, the call itself, and one after it
    failed = process_changes(
        store, [track(3, user_id="u"), track(4, user_id="u", anonymous_id="a"), track(5, anonymous_id="a")]
    )
    # Then the record before is folded, and the stream is told to retry from the merging call on
    assert failed == ["4", "5"]
    assert store.get_profiles(["u:u"])["u:u"].profile.event_counts == {"Viewed": 2}
