"""Incremental cells: carried on from the stored cells and a small state, they equal a recomputation of everything."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.domain import analytics
from shared.domain.cell_state import CellState, advance, build, from_compact, signature, to_compact
from shared.domain.cells import FunnelCell, Reached, ReachedBy, StepTime
from shared.domain.events import CallType, TrackingEvent
from shared.domain.funnels import bucket
from shared.services.analytics import STARTERS

T0 = datetime(2026, 10, 5, 9, tzinfo=UTC)  # a Monday
NAMES = ["Product Viewed", "Product Added", "Order Completed", "Email Opened", "Signed Up"]
STEP_NAMES = [*NAMES, "$page"]
STARTER_NAMES = [
    "Product Viewed",
    "Product Added",
    "Checkout Started",
    "Order Completed",
    "Email Opened",
    "Email Link Clicked",
]
MEDIUMS = [None, "email", "cpc", "social"]


def an_event(
    message: str,
    at: datetime,
    *,
    call: CallType = CallType.TRACK,
    name: str | None = "Product Viewed",
    plan: str | None = None,
    medium: str | None = None,
    zone: str | None = None,
) -> TrackingEvent:
    context: dict[str, Any] = {}
    if medium:
        context["campaign"] = {"medium": medium}
    if zone:
        context["timezone"] = zone
    return TrackingEvent(
        "web",
        message,
        call,
        at,
        at,
        user_id="c1",
        event=name if call is CallType.TRACK else None,
        properties={"plan": plan, "campaign": plan} if plan else {},
        context=context,
    )


# --- generated definitions and histories ---------------------------------------------------------------------------

a_step = st.fixed_dictionaries(
    {"event": st.sampled_from(STEP_NAMES)},
    optional={"where": st.just({"plan": ["gold"]}), "within": st.sampled_from(["30m", "2h", "1d"])},
)
a_funnel = st.fixed_dictionaries(
    {
        "steps": st.lists(a_step, min_size=1, max_size=4),
        "window": st.sampled_from(["1h", "6h", "1d", "3d", "14d"]),
        "order": st.sampled_from(["sequential", "strict"]),
        "breakdown": st.sampled_from(["channel", "property:plan"]),
    }
)


@st.composite
def definitions(draw: st.DrawFn) -> analytics.Definitions:
    funnels = draw(st.lists(a_funnel, max_size=3))
    for index, funnel in enumerate(funnels):
        funnel["id"] = f"f{index}"
        funnel["steps"][0].pop("within", None)
        if funnel["breakdown"] != "channel" and draw(st.booleans()):
            funnel["breakdown_values"] = ["gold"]
    returns = draw(st.lists(st.sampled_from(["*", "Order Completed", "$page", "Signed Up"]), unique=True))
    overview = draw(st.lists(st.sampled_from(["Weird Thing", "Signed Up"]), unique=True))
    document = {"funnels": funnels, "retention": {"events": returns}, "overview": {"events": overview}}
    return analytics.parse_definitions(document)


@st.composite
def histories(draw: st.DrawFn, names: list[str] = NAMES) -> list[TrackingEvent]:
    """Events over about seven weeks: ties in time, page and identify calls, channels, zones, properties."""
    size = draw(st.integers(1, 30))
    numbers = draw(st.permutations(range(100)))[:size]  # message ids: the order of ties
    events = []
    for number in numbers:
        minutes = draw(st.one_of(st.integers(0, 60 * 24 * 50), st.sampled_from([0, 30, 90, 60 * 24])))
        call = draw(st.sampled_from([CallType.TRACK, CallType.TRACK, CallType.PAGE, CallType.IDENTIFY]))
        at = T0 + timedelta(minutes=minutes, seconds=draw(st.sampled_from([0, 0, 0.5])))
        event = an_event(
            f"m{number:03d}",
            at,
            call=call,
            name=draw(st.sampled_from([*names, "Weird Thing"])),
            plan=draw(st.sampled_from([None, "gold", "tin"])),
            medium=draw(st.sampled_from(MEDIUMS)),
            zone=draw(st.sampled_from([None, "Asia/Tokyo", "Nowhere/Else"])),
        )
        events.append(event)
    return analytics.ordered(events)


@st.composite
def batches(draw: st.DrawFn, events: list[TrackingEvent]) -> list[list[TrackingEvent]]:
    """`events` split into an in-order prefix and later batches (each shuffled: advance orders them)."""
    cuts = sorted(draw(st.lists(st.integers(1, len(events)), max_size=5)))
    bounds = [0, *cuts, len(events)]
    parts = [events[a:b] for a, b in pairwise(bounds) if b > a]
    return [draw(st.permutations(part)) for part in parts]


def nows_for(draw: st.DrawFn, count: int) -> list[datetime]:
    offsets = sorted(draw(st.lists(st.integers(0, 60 * 24 * 60), min_size=count, max_size=count)))
    return [T0 + timedelta(minutes=m) for m in offsets]


def carried(
    parts: list[list[TrackingEvent]], definitions: analytics.Definitions, nows: list[datetime]
) -> tuple[analytics.Cells, CellState]:
    """Build from the first part, then advance by each later one (the state through its compact form, as stored)."""
    cells, state = build("c1", parts[0], definitions, now=nows[0])
    assert state is not None
    cells = analytics.kept(cells, now=nows[0])
    for part, now in zip(parts[1:], nows[1:], strict=True):
        stored = from_compact(json.loads(json.dumps(to_compact(state))))
        assert stored == state
        moved = advance(cells, stored, part, definitions, now=now)
        assert moved is not None
        cells, state = moved
    return cells, state


def assert_carried_equals_a_recomputation(
    events: list[TrackingEvent], parts: list[list[TrackingEvent]], definitions: analytics.Definitions, nows: Any
) -> None:
    cells, state = carried(parts, definitions, nows)
    now = nows[-1]
    expected = analytics.kept(analytics.customer_cells("c1", events, definitions, now=now), now=now)
    assert cells == expected
    assert (cells, state) == (expected, build("c1", events, definitions, now=now)[1])


# --- properties ----------------------------------------------------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(data=st.data(), definitions=definitions())
def test_cells_carried_on_batch_by_batch_equal_a_recomputation_of_everything(data, definitions):
    events = data.draw(histories())
    parts = data.draw(batches(events))
    nows = data.draw(st.composite(lambda draw: nows_for(draw, len(parts)))())
    assert_carried_equals_a_recomputation(events, parts, definitions, nows)


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_the_starter_definitions_carried_on_equal_a_recomputation(data):
    definitions = analytics.parse_definitions(json.loads(STARTERS.read_text()))
    events = data.draw(histories(STARTER_NAMES))
    parts = data.draw(batches(events))
    nows = data.draw(st.composite(lambda draw: nows_for(draw, len(parts)))())
    assert_carried_equals_a_recomputation(events, parts, definitions, nows)
    assert_carried_equals_a_recomputation(events, parts, analytics.Definitions(), nows)


@settings(max_examples=30, deadline=None)
@given(data=st.data(), definitions=definitions())
def test_an_event_at_or_before_the_last_one_folded_is_not_carried_on(data, definitions):
    events = data.draw(histories())
    cut = data.draw(st.integers(1, len(events)))
    cells, state = build("c1", events[:cut], definitions, now=T0)
    assert state is not None
    late = data.draw(st.sampled_from(events[:cut]))
    earlier = replace(late, message_id=late.message_id[:-1])  # same moment, ordered before it
    for event in (late, earlier):
        batch = [*events[cut:], event]
        assert advance(analytics.kept(cells, now=T0), state, batch, definitions, now=T0) is None


# --- examples ------------------------------------------------------------------------------------------------------

PURCHASE = {"id": "buy", "steps": ["Product Viewed", "Product Added", {"event": "Order Completed", "within": "1h"}]}


def test_an_open_journey_is_taken_back_and_continued_by_the_next_batch():
    # Given a journey that reached step 2 in the first batch
    definitions = analytics.parse_definitions({"funnels": [PURCHASE]})
    first = [an_event("m1", T0), an_event("m2", T0 + timedelta(minutes=5), name="Product Added")]
    cells, state = build("c1", first, definitions, now=T0)
    assert state is not None
    assert [len(j.times) for j in state.journeys.values()] == [2]
    # When the order comes in the next batch
    moved = advance(
        cells, state, [an_event("m3", T0 + timedelta(minutes=20), name="Order Completed")], definitions, now=T0
    )
    # Then the journey counts once, with three steps, and none is open any more
    assert moved is not None
    assert moved[0][FunnelCell("buy", "2026-10-05")] == {
        **{Reached(step): 1 for step in (1, 2, 3)},
        **{ReachedBy("web", step): 1 for step in (1, 2, 3)},
        StepTime(2, bucket(5 * 60)): 1,
        StepTime(3, bucket(15 * 60)): 1,
    }
    assert moved[1].journeys == {}


def test_the_last_event_folded_again_is_not_counted_twice():
    definitions = analytics.Definitions()
    cells, state = build("c1", [an_event("m1", T0)], definitions, now=T0)
    assert state is not None
    assert advance(cells, state, [an_event("m1", T0)], definitions, now=T0) is None
    assert advance(cells, state, [an_event("m2", T0)], definitions, now=T0) is not None


def test_other_definitions_or_an_earlier_horizon_read_the_whole_history():
    definitions = analytics.parse_definitions({"funnels": [PURCHASE]})
    cells, state = build("c1", [an_event("m1", T0)], definitions, now=T0 + timedelta(days=3))
    assert state is not None
    later = [an_event("m2", T0 + timedelta(hours=1))]
    window = {**PURCHASE, "steps": [*PURCHASE["steps"][:2], {"event": "Order Completed", "within": "61m"}]}
    changed = analytics.parse_definitions({"funnels": [window]})
    assert advance(cells, state, later, changed, now=T0 + timedelta(days=3)) is None
    assert advance(cells, state, later, definitions, now=T0 + timedelta(days=1)) is None
    assert advance(cells, state, later, definitions, now=T0 + timedelta(days=3)) is not None


@pytest.mark.parametrize(
    "document",
    [
        {"funnels": [{**PURCHASE, "order": "strict"}]},
        {"funnels": [{**PURCHASE, "window": "13d"}]},
        {"funnels": [{**PURCHASE, "breakdown": "property:plan"}]},
        {"funnels": [{**PURCHASE, "breakdown": "property:plan", "breakdown_values": ["gold"]}]},
        {"funnels": [{**PURCHASE, "steps": [{"event": "Product Viewed", "where": {"plan": ["gold"]}}]}]},
        {"funnels": [{**PURCHASE, "steps": [{"event": "Product Viewed", "where": {"plan": ["tin"]}}]}]},
        {"funnels": [PURCHASE], "retention": {"events": ["Signed Up"]}},
        {"funnels": [PURCHASE], "overview": {"events": ["Weird Thing"]}},
        {"funnels": [{**PURCHASE, "id": "buy2"}]},
        {},
    ],
)
def test_any_change_to_the_definitions_changes_the_signature(document):
    assert signature(analytics.parse_definitions(document)) != signature(
        analytics.parse_definitions({"funnels": [PURCHASE]})
    )
    assert signature(analytics.parse_definitions(document)) == signature(analytics.parse_definitions(document))


def test_the_compact_form_is_small_and_exact():
    definitions = analytics.parse_definitions({"funnels": [PURCHASE]})
    events = [
        an_event("m1", T0 + timedelta(microseconds=7)),
        an_event("m2", T0 + timedelta(minutes=5), name="Product Added"),
    ]
    state = build("c1", events, definitions, now=T0)[1]
    assert state is not None
    compact = json.dumps(to_compact(state), separators=(",", ":"))
    assert from_compact(json.loads(compact)) == state
    assert len(compact) < 150
    with pytest.raises(ValueError, match="version"):
        from_compact({**to_compact(state), "v": 0})


def test_cells_that_do_not_go_with_the_state_are_not_carried_on():
    # Given a state with an open journey, and cells that do not hold that journey (another customer's, say)
    definitions = analytics.parse_definitions({"funnels": [PURCHASE]})
    cells, state = build("c1", [an_event("m1", T0)], definitions, now=T0)
    assert state is not None and state.journeys
    no_journey = {key: counts for key, counts in cells.items() if not isinstance(key, FunnelCell)}
    later = [an_event("m2", T0 + timedelta(hours=2), name="Signed Up")]
    # Then the whole history must be read, and so it must for cells without the customer's cohort
    assert advance(no_journey, state, later, definitions, now=T0) is None
    assert (
        advance(
            {FunnelCell("buy", "2026-10-05"): cells[FunnelCell("buy", "2026-10-05")]}, state, later, definitions, now=T0
        )
        is None
    )
    assert advance(cells, state, later, definitions, now=T0) is not None


def test_no_new_events_keep_the_cells_and_move_the_horizon():
    definitions = analytics.Definitions()
    cells, state = build("c1", [an_event("m1", T0)], definitions, now=T0)
    assert state is not None
    later = T0 + timedelta(days=5)
    assert advance(cells, state, [], definitions, now=later) == (
        analytics.kept(cells, now=later),
        replace(state, horizon=(later - timedelta(days=analytics.STATS_DAYS)).date()),
    )
