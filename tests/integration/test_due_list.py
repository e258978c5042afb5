"""The due list (#15): one entry per customer at its earliest deadline, written only when it is not there yet,
never deleted (TTL), swept by the second; forget finds its entries; old-format items are upgraded."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from shared.domain.segments import Due
from shared.local.streams import SWEEP_SECONDS
from shared.ports import ThrottledError
from shared.services.customers import find_customer, forget_customer
from shared.services.segments import SETTLE, apply_segments, run_scheduler
from shared.storage.dynamo import deserialize, serialize
from shared.storage.schema import TTL_ATTRIBUTE
from shared.storage.segments import upgrade_due_items
from tests.builders import cart_abandoners, random_ref
from tests.conftest import TABLE
from tests.oracle import audit

pytestmark = pytest.mark.integration
NOW = (datetime.now(UTC) - timedelta(days=1)).replace(hour=12, minute=0, second=0, microsecond=0)
"""Where the frozen clock starts: yesterday at noon (to the second)."""
RULES = {
    "segments": [
        cart_abandoners(),
        {"id": "viewers", "rule": {"count": {"event": "Product Viewed"}, "within": "1d", "gte": 1}},
    ]
}
QUICK = {"segments": [cart_abandoners("quick_abandoners", within="5s")]}


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch, stream: Any) -> dict[str, datetime]:
    """A clock every handler reads (collector, processing, scheduler); a test moves it by setting `clock["now"]`."""
    from functions.collect import handler as collect
    from functions.fold import handler as fold
    from functions.schedule import handler as schedule
    from shared.services import collect as collect_service
    from shared.services import pipeline

    now = {"now": NOW}
    for module in (collect, fold, schedule, collect_service, pipeline):
        monkeypatch.setattr(module, "utcnow", lambda: now["now"])
    return now


@pytest.fixture
def due_writes(ddb: Any) -> list[dict[str, Any]]:
    """Every due entry and due index row written from now on (as sent to DynamoDB)."""
    written: list[dict[str, Any]] = []

    def count(params: dict[str, Any], **_: Any) -> None:
        for request in params["RequestItems"][TABLE]:
            item = request.get("PutRequest", {}).get("Item")
            if item and item.get("entity", {}).get("S") in ("due", "due_index"):
                written.append(deserialize(item))

    ddb.meta.events.register("before-parameter-build.dynamodb.BatchWriteItem", count)
    return written


def apply(store: Any, rules: dict[str, Any]) -> None:
    from functions.process import handler

    apply_segments(store, rules, source="test", now=NOW, customers=[])
    handler.pipeline().forget_rules()  # the rules just applied are used at once


def send(http: Any, key: str, stream: Any, clock: dict[str, datetime], *calls: dict[str, Any]) -> None:
    """Collect and process calls at the clock's time (each call's `at`: minutes from NOW)."""
    batch = []
    for call in calls:
        at = NOW + timedelta(minutes=call.pop("at"))
        batch.append({"type": "track", "messageId": random_ref("m"), "timestamp": at.isoformat(), **call})
    assert http("POST", "/v1/batch", body=json.dumps({"batch": batch}), write_key=key).status == 200
    stream.drain()


def added(who: str, *, at: int = 0, cart: str = "c1", kind: str = "anonymousId") -> dict[str, Any]:
    """A `Product Added` call of cart `cart`, `at` minutes from NOW."""
    return {kind: who, "event": "Product Added", "at": at, "properties": {"cart_id": cart}}


def entries(ddb: Any) -> list[dict[str, Any]]:
    pages = ddb.get_paginator("scan").paginate(TableName=TABLE)
    found = [deserialize(item) for page in pages for item in page["Items"]]
    return [item for item in found if item.get("entity") in ("due", "due_index")]


def members(store: Any, reference: str) -> set[str]:
    return set(store.memberships_of(find_customer(store, reference).profile.customer_id))


def test_a_batch_that_leaves_the_earliest_deadline_where_it_is_writes_no_due_item(
    http, source, store, stream, clock, due_writes
):
    # Given a visitor whose cart makes its earliest deadline an hour on (viewing makes one a day on)
    _, key = source
    apply(store, RULES)
    visitor = random_ref("visitor")
    send(http, key, stream, clock, added(visitor))
    hour_on = (NOW + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")  # (an absence is due from A + N on)
    # (the entry only: the customer item lists the moment, in the write that holds the profile)
    assert [(w["entity"], w["at"]) for w in due_writes] == [("due", hour_on)]
    assert store.get_profiles([f"a:{visitor}"])[f"a:{visitor}"].scheduled == (NOW + timedelta(hours=1),)
    due_writes.clear()
    # When they view products a minute later, in two more batches (the cart's hour is still the earliest)
    for minute in (1, 2):
        clock["now"] = NOW + timedelta(minutes=minute)
        send(http, key, stream, clock, {"anonymousId": visitor, "event": "Product Viewed", "at": minute})
    # Then neither batch wrote a due entry or an index row
    assert members(store, visitor) == {"viewers"}
    assert due_writes == []
    # When they order (the cart's deadline goes: the earliest is now the first view's day)
    clock["now"] = NOW + timedelta(minutes=3)
    order = {"anonymousId": visitor, "event": "Order Completed", "at": 3, "properties": {"cart_id": "c1"}}
    send(http, key, stream, clock, order)
    # Then nothing is written yet: the hour's entry, still to come, brings the customer back before that moment
    assert due_writes == []
    # When the scheduler runs after the hour
    clock["now"] = NOW + timedelta(hours=1, seconds=5)
    assert run_scheduler(store, now=clock["now"])["due"] == 1
    # Then exactly one entry is written, for the day's moment
    day_on = NOW + timedelta(days=1, minutes=1, seconds=1)
    assert [(w["entity"], w["at"]) for w in due_writes if w["entity"] == "due"] == [
        ("due", day_on.strftime("%Y-%m-%dT%H:%M:%SZ"))
    ]
    assert all(w[TTL_ATTRIBUTE] == int((day_on + timedelta(days=2)).timestamp()) for w in due_writes)
    audit(store, now=clock["now"])


def test_a_batch_writes_its_customers_due_entries_in_one_request_before_any_of_their_items(
    http, source, store, stream, clock, ddb
):
    # Given every request the pipeline makes, in order: due-list writes and customer item writes
    _, key = source
    apply(store, RULES)
    calls: list[str] = []

    def record(model: Any, params: dict[str, Any], **_: Any) -> None:
        if model.name == "BatchWriteItem" and b'"due"' in params["body"]:
            calls.append("due entries")
        elif model.name == "PutItem" and b'"PROFILE"' in params["body"]:
            calls.append("customer item")

    ddb.meta.events.register("before-call.dynamodb", record)
    # When ten new visitors add carts, in one request (one stream batch)
    visitors = [random_ref(f"visitor{n}") for n in range(10)]
    send(http, key, stream, clock, *[added(visitor) for visitor in visitors])
    # Then their entry went in one request, before the first of their items: one entry, since they are all due at
    # the same second (a burst of visitors costs one write for its deadlines, not one each)
    assert calls == ["due entries"] + ["customer item"] * 10
    hour_on = NOW + timedelta(hours=1)
    [shared] = [e for e in entries(ddb) if e["entity"] == "due"]
    assert shared["customers"] == sorted(f"a:{v}" for v in visitors) and "customer_id" not in shared
    assert all(store.get_profiles([f"a:{v}"])[f"a:{v}"].scheduled == (hour_on,) for v in visitors)
    # And the sweep after the hour evaluates every one of them: all ten abandoned their carts
    clock["now"] = hour_on + timedelta(seconds=5)
    assert run_scheduler(store, now=clock["now"])["due"] == 10
    stream.drain()
    assert all(members(store, visitor) == {"abandoners"} for visitor in visitors)
    audit(store, now=clock["now"])


def test_a_batch_whose_due_entries_cannot_be_written_writes_none_of_their_items_and_is_retried(
    http, source, store, stream, clock, ddb
):
    # Given DynamoDB throttling every due-list write for a while (past the store's 8 attempts, twice)
    _, key = source
    apply(store, RULES)
    throttled = {"left": 20}
    calls: list[str] = []

    def throttle(model: Any, params: dict[str, Any], **_: Any) -> Any:
        if model.name == "PutItem" and b'"PROFILE"' in params["body"]:
            calls.append("customer item")
        if model.name == "BatchWriteItem" and b'"due"' in params["body"] and throttled["left"] > 0:
            throttled["left"] -= 1
            calls.append("throttled")
            return AWSResponse("https://dynamodb", 400, {}, None), {
                "Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}
            }
        return None

    ddb.meta.events.register("before-call.dynamodb", throttle)
    # When three visitors add carts
    visitors = [random_ref(f"visitor{n}") for n in range(3)]
    send(http, key, stream, clock, *[added(visitor) for visitor in visitors])
    # Then the batch waited for the entries (retried): no item was written before they were, so no item ever
    # listed a moment without its entry
    assert throttled["left"] == 0
    assert calls == ["throttled"] * 20 + ["customer item"] * 3
    [due] = [e for e in entries(ddb) if e["entity"] == "due"]  # (due at the same second: one shared entry)
    assert due["customers"] == sorted(f"a:{v}" for v in visitors)
    assert all(store.get_profiles([f"a:{v}"])[f"a:{v}"].profile.event_counts == {"Product Added": 1} for v in visitors)
    assert store.list_failed().items == ()
    audit(store, now=clock["now"])


def test_a_deadline_moved_later_is_written_when_the_earlier_entry_fires_and_evaluated_at_its_new_time(
    http, source, store, stream, clock, ddb
):
    # Given a cart added at NOW (due an hour on), then, ten minutes on, that cart ordered and another added
    _, key = source
    apply(store, RULES)
    shopper = random_ref("shopper")
    send(http, key, stream, clock, added(shopper))
    clock["now"] = NOW + timedelta(minutes=10)
    send(
        http,
        key,
        stream,
        clock,
        {"anonymousId": shopper, "event": "Order Completed", "at": 10, "properties": {"cart_id": "c1"}},
        added(shopper, at=10, cart="c2"),
    )
    # (the later deadline is not written yet: the first entry, still to come, comes before it)
    assert [e["at"] for e in entries(ddb) if e["entity"] == "due"] == [
        (NOW + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    ]
    # When the scheduler runs just after the old deadline
    swept = run_scheduler(store, now=NOW + timedelta(hours=1, seconds=5))
    # Then it evaluated the customer (the earlier entry): nothing changed, and the new deadline is on the list
    assert swept == {"due": 1, "entered": 0, "exited": 0}
    assert members(store, shopper) == set()
    new_deadline = (NOW + timedelta(hours=1, minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert new_deadline in [e["at"] for e in entries(ddb) if e["entity"] == "due"]
    # When it runs just after the new deadline
    clock["now"] = NOW + timedelta(hours=1, minutes=10, seconds=5)
    swept = run_scheduler(store, now=clock["now"])
    # Then the second cart made them an abandoner, at that sweep
    assert swept == {"due": 1, "entered": 1, "exited": 0}
    assert members(store, shopper) == {"abandoners"}
    stream.drain()  # the membership's stream record writes the history
    (entered,) = store.segment_history("abandoners")
    assert entered[0].startswith(clock["now"].strftime("%Y-%m-%dT%H:%M:%S"))
    audit(store, now=clock["now"])


@pytest.mark.parametrize("period", [SWEEP_SECONDS, 60.0], ids=["local", "aws"])
def test_the_sweep_picks_up_a_deadline_that_passed_seconds_ago_within_the_design_bound(
    http, source, store, stream, clock, period
):
    # Given a 5-second abandonment rule and a cart added at NOW
    _, key = source
    apply(store, QUICK)
    shopper = random_ref("shopper")
    send(http, key, stream, clock, added(shopper))
    deadline = NOW + timedelta(seconds=5)
    # When the scheduler runs every `period` (the local runner's, or EventBridge's minute)
    sweeps = (NOW + timedelta(seconds=period * n) for n in range(1, 100))
    at = next(moment for moment in sweeps if run_scheduler(store, now=moment)["entered"])
    # Then the first sweep at least SETTLE (and the second the deadline is rounded to) after it enters them:
    # within the period + SETTLE + 1 s of the deadline
    assert members(store, shopper) == {"quick_abandoners"}
    assert deadline + SETTLE < at <= deadline + timedelta(seconds=period) + SETTLE + timedelta(seconds=1)
    if period == SWEEP_SECONDS:
        assert (at - deadline).total_seconds() <= 10  # the local bound the README states


def test_the_sweep_sees_a_deadline_a_few_seconds_old_and_not_one_still_settling(http, source, store, stream, clock):
    # Given a 5-second abandonment rule, a cart added at NOW, and a sweep that ran at NOW
    _, key = source
    apply(store, QUICK)
    run_scheduler(store, now=NOW)
    shopper = random_ref("shopper")
    send(http, key, stream, clock, added(shopper))
    due = NOW + timedelta(seconds=5)
    # When the scheduler runs right at the deadline (still settling), then three seconds after it
    early = run_scheduler(store, now=due + timedelta(seconds=1))
    late = run_scheduler(store, now=due + SETTLE + timedelta(seconds=1))
    # Then the first leaves it to the second, which enters them
    assert (early["due"], late["due"], late["entered"]) == (0, 1, 1)
    assert store.sweep_cursor() == due + timedelta(seconds=1)


def test_forget_erases_every_due_entry_of_the_customer_the_stale_ones_too(http, source, store, stream, clock, ddb):
    # Given a customer whose deadline moved earlier (a view's day, then a cart's hour: two entries) and a bystander
    # with one
    _, key = source
    apply(store, RULES)
    gone, kept = random_ref("gone"), random_ref("kept")
    send(http, key, stream, clock, {"userId": gone, "event": "Product Viewed", "at": 0})
    clock["now"] = NOW + timedelta(minutes=10)
    send(
        http,
        key,
        stream,
        clock,
        added(gone, at=10, cart="c2", kind="userId"),
        {"userId": kept, "event": "Product Viewed", "at": 10},
    )
    assert len([e for e in entries(ddb) if e.get("customer_id") == f"u:{gone}"]) == 2
    # When the customer is forgotten
    forget_customer(store, f"u:{gone}", now=clock["now"])
    # Then no due entry or index row of theirs is left, and the bystander's is
    left = entries(ddb)
    assert not [e for e in left if gone in json.dumps(e, default=str)]
    assert [e["customer_id"] for e in left if e["entity"] == "due"] == [f"u:{kept}"]


def test_forget_cuts_the_customer_out_of_a_due_entry_it_shares_and_the_others_stay_due(
    http, source, store, stream, clock, ddb
):
    # Given three visitors whose carts fall due at the same second: one entry for the three
    _, key = source
    apply(store, RULES)
    gone, *kept = [random_ref("visitor") for _ in range(3)]
    send(http, key, stream, clock, *[added(visitor) for visitor in (gone, *kept)])
    [shared] = [e for e in entries(ddb) if e["entity"] == "due"]
    assert len(shared["customers"]) == 3
    # When one of them is forgotten
    forget_customer(store, f"a:{gone}", now=clock["now"])
    # Then the entry no longer names them, and still brings the others back after the hour
    left = [e for e in entries(ddb) if e["entity"] == "due"]
    assert not [e for e in left if gone in json.dumps(e, default=str)]
    assert [e["customers"] for e in left] == [sorted(f"a:{v}" for v in kept)]
    clock["now"] = NOW + timedelta(hours=1, seconds=5)
    assert run_scheduler(store, now=clock["now"])["due"] == 2
    stream.drain()
    assert all(members(store, visitor) == {"abandoners"} for visitor in kept)
    # And when the others are forgotten too, the entry goes with the last of them
    for visitor in kept:
        forget_customer(store, f"a:{visitor}", now=clock["now"])
    assert [e for e in entries(ddb) if e["entity"] == "due"] == []


def test_a_shared_due_entry_lists_at_most_its_bound_and_the_sweep_finds_every_customer(store, ddb):
    # Given 1,201 customers of one batch due at the same second (a batch of 10,000 records could bring more)
    from shared.storage.segments import SHARED_DUE_CUSTOMERS

    at = NOW + timedelta(days=7)
    customers = [f"a:{n:05d}" for n in range(2 * SHARED_DUE_CUSTOMERS + 201)]
    # When their entries are written (as processing writes them: the customer items list the moment)
    store.put_due([Due(customer, at) for customer in customers], indexed=True)
    # Then each entry holds at most the bound, and the sweep over that second finds each customer once
    shared = [e for e in entries(ddb) if e["entity"] == "due"]
    assert sorted(len(e["customers"]) for e in shared) == [201, SHARED_DUE_CUSTOMERS, SHARED_DUE_CUSTOMERS]
    found = store.due_between(at - timedelta(seconds=1), at)
    assert sorted(due.customer_id for due in found) == customers and {due.at for due in found} == {at}


# --- the upgrade of items written before #15 -------------------------------------------------------------------


def old_items(customer_id: str, minute: str, segment: str) -> list[dict[str, Any]]:
    """A due item and its index row exactly as `put_due` wrote them before #15."""
    return [
        {
            "PK": f"DUE#{minute}",
            "SK": f"{customer_id}#{segment}",
            "entity": "due",
            "customer_id": customer_id,
            "segment": segment,
        },
        {
            "PK": f"CUSTOMER#{customer_id}",
            "SK": f"DUEAT#{minute}#{segment}",
            "entity": "due_index",
            "minute": minute,
            "segment": segment,
        },
    ]


@pytest.fixture
def old_table(ddb: Any, store: Any) -> dict[str, Any]:
    """A table as the old version left it: due items of a future and of a past minute (two segments in one
    minute; an analytics retry), an index row whose item was already swept, and a cursor by the minute."""
    future, past = "2031-05-04T10:07", "2020-01-02T03:04"
    rows = [
        *old_items("u:ann", future, "abandoners"),
        *old_items("u:ann", future, "viewers"),
        *old_items("u:ann", future, "$analytics"),
        *old_items("a:bob#1", past, "abandoners"),
        old_items("u:cy", past, "viewers")[1],
        {"PK": "SCHEDULER", "SK": "CURSOR", "entity": "cursor", "minute": "2024-06-01T08:15"},
    ]
    for row in rows:
        ddb.put_item(TableName=TABLE, Item=serialize(row))
    return {"future": datetime(2031, 5, 4, 10, 7, tzinfo=UTC)}


def upgraded_state(ddb: Any) -> set[tuple[str, str, str, bool]]:
    return {(e["entity"], e.get("customer_id", e["PK"]), e["at"], bool(e.get("analytics"))) for e in entries(ddb)}


def test_upgrade_turns_old_due_items_into_entries_and_is_idempotent(ddb, store, old_table):
    # When the upgrade runs, then again
    now = datetime(2025, 3, 1, 9, 30, 15, tzinfo=UTC)
    converted = upgrade_due_items(store, now=now)
    again = upgrade_due_items(store, now=now + timedelta(minutes=5))
    # Then the four old items became three entries (ann's two segments share a minute), each with its index row;
    # bob's past minute is due a minute from the upgrade; cy's orphan index row is gone; the second run did nothing
    assert (converted, again) == (4, 0)
    soon = (now + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    future = "2031-05-04T10:07:00Z"
    assert upgraded_state(ddb) == {
        ("due", "u:ann", future, False),
        ("due", "u:ann", future, True),
        ("due", "a:bob#1", soon, False),
        ("due_index", "CUSTOMER#u:ann", future, False),
        ("due_index", "CUSTOMER#u:ann", future, True),
        ("due_index", "CUSTOMER#a:bob#1", soon, False),
    }
    assert set(store.due_between(now, now + timedelta(minutes=2))) == {Due("a:bob#1", now + timedelta(minutes=1))}
    # And the old cursor (a minute) reads as that minute's start
    assert store.sweep_cursor() == datetime(2024, 6, 1, 8, 15, tzinfo=UTC)


def test_upgrade_interrupted_before_its_deletes_ends_the_same_when_run_again(ddb, store, old_table, monkeypatch):
    # Given an upgrade whose deletes do not happen (a crash after the new entries were written)
    now = datetime(2025, 3, 1, 9, 30, 15, tzinfo=UTC)
    write = store._batch_write
    with monkeypatch.context() as patched:
        patched.setattr(
            store, "_batch_write", lambda rows, delete=False: list(range(len(rows))) if delete else write(rows)
        )
        with pytest.raises(ThrottledError):
            upgrade_due_items(store, now=now)
    # When it runs again
    converted = upgrade_due_items(store, now=now)
    # Then it converted the same items, and the table holds exactly what one clean run leaves
    soon = (now + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert converted == 4
    assert {(kind, who, at) for kind, who, at, _ in upgraded_state(ddb)} == {
        ("due", "u:ann", "2031-05-04T10:07:00Z"),
        ("due", "a:bob#1", soon),
        ("due_index", "CUSTOMER#u:ann", "2031-05-04T10:07:00Z"),
        ("due_index", "CUSTOMER#a:bob#1", soon),
    }
    assert len(entries(ddb)) == 6
    assert upgrade_due_items(store, now=now) == 0
