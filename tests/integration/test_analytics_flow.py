"""Analytics through the real pipeline: collector → stream → process Lambda → counters = recomputation."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.services import analytics, overview
from shared.services.analytics import STARTERS, apply_definitions
from shared.services.customers import find_customer
from tests.builders import random_ref
from tests.oracle import audit

pytestmark = pytest.mark.integration
NAMES = ["Product Viewed", "Product Added", "Checkout Started", "Order Completed", "Email Opened"]
NOW = (datetime.now(UTC) - timedelta(days=1)).replace(hour=12, minute=0, second=0, microsecond=0)
"""The frozen clock of this module: yesterday at noon, so "the last 30 minutes" is always one day (cohort, overview)."""


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every handler reads `NOW` as the time (the collector's receivedAt, processing, the minute sweep)."""
    from functions.collect import handler as collect
    from functions.fold import handler as fold
    from functions.schedule import handler as schedule
    from shared.services import collect as collect_service
    from shared.services import pipeline

    for module in (collect, fold, schedule, collect_service, pipeline):
        monkeypatch.setattr(module, "utcnow", lambda: NOW)


def _ms(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def call(person: str, name: str, at: datetime, *, message: str, user: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "track",
        "event": name,
        "messageId": message,
        "timestamp": _ms(at),  # no sentAt: the time is kept as sent (a sentAt equal to it would mean "now")
    }
    body["anonymousId"] = person
    if user:
        body["userId"] = user
    if name == "Email Opened":
        body["context"] = {"campaign": {"medium": "email", "name": "winter"}}
        body["properties"] = {"campaign": "winter"}
    return body


def counters_equal_recomputation(store: Any) -> None:
    """Every counter item in the table (and every profile and membership) equals the independent oracle's."""
    audit(store, now=NOW)


@pytest.fixture
def definitions(store: Any, stream: Any) -> None:
    from functions.process import handler

    apply_definitions(store, json.loads(STARTERS.read_text()), source="starters", now=NOW)
    handler.pipeline().forget_rules()  # the definitions just applied are used at once


def test_a_shop_day_lands_in_funnel_retention_timing_and_overview_exactly(
    http, source, store, stream, definitions, lambda_context
):
    # Given visitors who browse, cart and buy (one identifies mid-way: two identities, one customer)
    _, key = source
    now = NOW.replace(microsecond=0)
    anna, ben = random_ref("anna"), random_ref("ben")
    calls = [
        call(anna, "Product Viewed", now - timedelta(minutes=30), message="a1"),
        call(anna, "Product Added", now - timedelta(minutes=29), message="a2"),
        call(anna, "Checkout Started", now - timedelta(minutes=28), message="a3", user="anna@example.com"),
        call(anna, "Order Completed", now - timedelta(minutes=20), message="a4", user="anna@example.com"),
        call(ben, "Product Viewed", now - timedelta(minutes=10), message="b1"),
        call(ben, "Email Opened", now - timedelta(minutes=9), message="b2"),
    ]
    assert http("POST", "/v1/batch", body=json.dumps({"batch": calls}), write_key=key).status == 200
    stream.drain()
    # When a late event arrives for ben, a batch is delivered again, and one event is sent twice
    late = call(ben, "Product Added", now - timedelta(minutes=8), message="b3")
    assert http("POST", "/v1/batch", body=json.dumps({"batch": [late, late]}), write_key=key).status == 200
    stream.drain()
    from functions.fold import handler as fold
    from functions.process import handler

    for event in stream.calls:  # every batch, delivered a second time, to processing and to the fold
        handler.lambda_handler(event, lambda_context)
    for event in stream.fold.calls:
        fold.lambda_handler(event, lambda_context)
    # Then the counters equal a recomputation from the stored events, and the reports say what happened
    counters_equal_recomputation(store)
    report = analytics.funnel_report(store, "purchase", start=now.date() - timedelta(days=1), end=now.date())
    assert [s.customers for s in report.steps] == [2, 2, 1, 1]
    assert report.steps[3].median_seconds is not None and 7 * 60 < report.steps[3].median_seconds < 9 * 60
    retention = analytics.retention_report(store, by="day", today=now.date())
    assert retention.rows[-1].size == 2 and retention.rows[-1].percentages[0] == 1.0
    seen = overview.overview(store, now=NOW)
    assert seen.events_today == 7  # the frozen clock keeps the last 30 minutes in one day
    assert sum(seen.events_per_minute) == 7  # six events and the late one, the duplicate once
    assert dict(seen.top_events)["Product Viewed"] == 2
    anna_id = find_customer(store, "anna@example.com").profile.customer_id
    timing = analytics.timing_report(store, anna_id)
    assert timing.recommendation is not None and timing.recommendation.events == 4
    assert next(e.message_id for e in overview.recent_events(store, limit=3)) == "b3"


def test_a_customer_item_write_that_is_throttled_is_retried_and_counted_once(
    http, source, store, stream, definitions, ddb
):
    # Given the write of a customer item with its cells is throttled once while a batch is processed
    _, key = source
    now = NOW
    failures = {"left": 1}

    def refuse(params: dict[str, Any], **_: Any) -> Any:
        item = json.loads(params["body"]).get("Item", {})
        if failures["left"] and item.get("entity", {}).get("S") == "profile" and "cells" in item:
            failures["left"] -= 1
            from botocore.awsrequest import AWSResponse

            return AWSResponse("https://dynamodb", 400, {}, None), {
                "Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}
            }
        return None

    ddb.meta.events.register("before-call.dynamodb.PutItem", refuse)
    person = random_ref("p")
    events = [call(person, n, now - timedelta(minutes=5 - i), message=f"{person}-{i}") for i, n in enumerate(NAMES[:3])]
    assert http("POST", "/v1/batch", body=json.dumps({"batch": events}), write_key=key).status == 200
    # When the stream delivers the batch, and again (its records failed: nothing of the customer was written)
    stream.drain()
    # Then it was refused once, and in the end nothing is missing and nothing is counted twice
    assert failures["left"] == 0
    report = analytics.funnel_report(store, "purchase", start=now.date() - timedelta(days=1), end=now.date())
    assert report.steps[0].customers == 1
    counters_equal_recomputation(store)
    report = analytics.funnel_report(store, "purchase", start=now.date() - timedelta(days=1), end=now.date())
    assert [s.customers for s in report.steps][:3] == [1, 1, 1]


@pytest.mark.parametrize("fold_failures", [1, 3])
def test_a_throttled_fold_is_retried_by_the_stream_and_counts_once(
    http, source, store, stream, definitions, ddb, fold_failures
):
    # Given the counters' fold (one update per counter item per batch) is throttled, once or several times in a row
    _, key = source
    failures = {"left": fold_failures}

    def refuse(params: dict[str, Any], **_: Any) -> Any:
        if failures["left"] and ":first" in json.loads(params["body"]).get("ExpressionAttributeValues", {}):
            failures["left"] -= 1
            from botocore.awsrequest import AWSResponse

            return AWSResponse("https://dynamodb", 400, {}, None), {
                "Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}
            }
        return None

    ddb.meta.events.register("before-call.dynamodb.UpdateItem", refuse)
    people = [random_ref("p") for _ in range(3)]
    events = [
        call(person, n, NOW - timedelta(minutes=5 - i), message=f"{person}-{i}")
        for person in people
        for i, n in enumerate(NAMES[:3])
    ]
    assert http("POST", "/v1/batch", body=json.dumps({"batch": events}), write_key=key).status == 200
    # When the stream runs dry (the failed records come again)
    stream.drain()
    # Then the counters hold each customer once
    assert failures["left"] == 0
    counters_equal_recomputation(store)
    report = analytics.funnel_report(store, "purchase", start=NOW.date() - timedelta(days=1), end=NOW.date())
    assert [s.customers for s in report.steps][:3] == [3, 3, 3]


log = st.lists(
    st.tuples(st.integers(0, 3), st.sampled_from(NAMES), st.integers(0, 60 * 48), st.integers(0, 12)),
    min_size=1,
    max_size=25,
)


# On the embedded database (SQLite): moto's stream reads copy the whole growing stream on every poll (21 s on moto,
# under 1 s here); the property is the fold's exactness, the backends' fidelity has its own contract tests.
@pytest.mark.parametrize("ddb", ["sqlite"], indirect=True)
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=log, split=st.integers(1, 6))
def test_random_logs_delivered_in_pieces_give_counters_equal_to_recomputation(
    http, source, store, stream, definitions, entries, split
):
    # Given random events of a few people (duplicates and late arrivals included), sent in several requests
    _, key = source
    run = random_ref("run")
    now = NOW
    calls = [
        call(f"{run}-{person}", name, now - timedelta(minutes=minute), message=f"{run}-{person}-{number}")
        for person, name, minute, number in entries
    ]
    for start in range(0, len(calls), split):
        assert (
            http("POST", "/v1/batch", body=json.dumps({"batch": calls[start : start + split]}), write_key=key).status
            == 200
        )
        stream.drain()
    # Then
    counters_equal_recomputation(store)


@pytest.mark.parametrize("ddb", ["sqlite"], indirect=True)  # (26 s on moto)
def test_a_customer_whose_counters_span_more_than_a_hundred_items_is_counted_exactly(
    http, source, store, stream, definitions
):
    # Given one customer who bought on 40 different days (a funnel item per day and step: far over 100 items)
    _, key = source
    person = random_ref("loyal")
    now = NOW
    calls = [
        call(person, name, now - timedelta(days=day, minutes=10 - step), message=f"{person}-{day}-{step}")
        for day in range(1, 41)
        for step, name in enumerate(NAMES[:4])
    ]
    for start in range(0, len(calls), 100):
        assert (
            http("POST", "/v1/batch", body=json.dumps({"batch": calls[start : start + 100]}), write_key=key).status
            == 200
        )
    stream.drain()
    # Then the counters equal a recomputation, and every day's journey is there
    counters_equal_recomputation(store)
    report = analytics.funnel_report(store, "purchase", start=(now - timedelta(days=41)).date(), end=now.date())
    assert [s.customers for s in report.steps] == [40, 40, 40, 40]


def test_forgetting_a_customer_takes_their_contribution_out_of_the_counters(http, source, store, stream, definitions):
    # Given two shoppers counted in the funnel
    from shared.services.customers import forget_customer

    _, key = source
    now = NOW
    gone, kept = random_ref("gone"), random_ref("kept")
    calls = [
        call(person, name, now - timedelta(minutes=20 - step), message=f"{person}-{step}", user=person)
        for person in (gone, kept)
        for step, name in enumerate(NAMES[:4])
    ]
    assert http("POST", "/v1/batch", body=json.dumps({"batch": calls}), write_key=key).status == 200
    stream.drain()
    report = analytics.funnel_report(store, "purchase", start=now.date() - timedelta(days=1), end=now.date())
    assert report.steps[3].customers == 2
    # When one of them is erased
    forget_customer(store, gone, now=now)
    stream.drain()  # the removal of their cells item comes down the stream, and the fold takes it back
    # Then the counters equal a recomputation from what is left: only the other one
    counters_equal_recomputation(store)
    report = analytics.funnel_report(store, "purchase", start=now.date() - timedelta(days=1), end=now.date())
    assert [s.customers for s in report.steps] == [1, 1, 1, 1]


@pytest.mark.parametrize("ddb", ["moto", "sqlite"], indirect=True)
def test_a_counter_update_adds_once_per_shard_mark_and_drops_the_marks_of_closed_shards(store):
    # Given a counter item folded by two shards, one of them since closed
    from shared.domain.cells import TOTAL, StatsCell
    from shared.ports import fold_position
    from shared.storage.fold import mark_attribute

    cell = StatsCell("2026-11-30")
    assert store.fold_item("closed", cell, {TOTAL: 2}, first=fold_position("5"), upto=fold_position("5"))
    assert store.fold_item("shard-1", cell, {TOTAL: 3}, first=fold_position("10"), upto=fold_position("20"))
    # When the same records come again, and then one that overlaps the mark
    again = store.fold_item("shard-1", cell, {TOTAL: 3}, first=fold_position("10"), upto=fold_position("20"))
    overlap = store.fold_item("shard-1", cell, {TOTAL: 9}, first=fold_position("20"), upto=fold_position("30"))
    # Then neither is added, and the item says how far the shard went
    assert (again, overlap) == (False, False)
    assert store.item_mark("shard-1", cell) == fold_position("20")
    # When the next records come, with the closed shard named
    assert store.fold_item(
        "shard-1", cell, {TOTAL: 1}, first=fold_position("21"), upto=fold_position("21"), forget=["closed"]
    )
    # Then the count is every record once, the closed shard's mark is gone, and the mark is no count
    assert store.stats_counters(date(2026, 11, 30)) == {cell: {TOTAL: 6}}
    assert store.item_mark("closed", cell) is None
    ((_, counts),) = store.counter_items("STATS#2026-11-30")
    assert counts == {"n": 6} and mark_attribute("shard-1").startswith("~")


def _step_times_apart(ddb: Any, *, counters: bool) -> int:
    """Rewrite funnel days as versions before 2026-12 kept them: each step's times in a cell (an item) of their own,
    `DAY#<day>#T<step>#<shard>`; in customers' cells (their codec then, v4), or in the counter items. Returns how
    many items were rewritten."""
    import zlib

    from shared.storage.analytics import decode_cells, to_items
    from shared.storage.blobs import _ZDICTS
    from shared.storage.dynamo import deserialize
    from tests.conftest import TABLE
    from tests.integration.test_migrate import _items

    def apart(pk: str, sk: str, counts: dict[str, Any]) -> dict[str, dict[str, Any]]:
        day = {name: n for name, n in counts.items() if not name.startswith("t|")}
        times: dict[str, dict[str, Any]] = {}
        for name, n in counts.items():
            if name.startswith("t|") and pk.startswith("FUNNEL#"):
                head, _, shard = sk.rpartition("#")
                times.setdefault(f"{head}#T{name.split('|')[1]}#{shard}", {})[name] = n
        return {sk: day, **times}

    rewritten = 0
    for raw in _items(ddb):
        item = deserialize(raw)
        if not counters and item.get("entity") == "profile" and "cells" in item:
            plain = {
                f"{pk}\x1f{sk}": part
                for (pk, whole), counts in sorted(to_items(decode_cells(bytes(item["cells"]))).items())
                for sk, part in apart(pk, whole, counts).items()
            }
            compressor = zlib.compressobj(level=6, zdict=_ZDICTS[b"\x04"])
            text = json.dumps(plain, separators=(",", ":"), sort_keys=True).encode()
            blob = b"\x04" + compressor.compress(text) + compressor.flush()
            ddb.update_item(
                TableName=TABLE,
                Key={"PK": raw["PK"], "SK": raw["SK"]},
                UpdateExpression="SET cells = :c",
                ExpressionAttributeValues={":c": {"B": blob}},
            )
            rewritten += 1
        elif counters and item.get("entity") == "counter" and str(item["PK"]).startswith("FUNNEL#"):
            counts = {name: value for name, value in raw.items() if name.startswith("t|")}
            if not counts:
                continue
            marks = {name: value for name, value in raw.items() if name.startswith("~")}
            for sk, part in apart(item["PK"], item["SK"], counts).items():
                if sk != item["SK"]:
                    legacy = {"PK": raw["PK"], "SK": {"S": sk}, "entity": {"S": "counter"}, **marks, **part}
                    ddb.put_item(TableName=TABLE, Item=legacy)
            names = {f"#t{n}": name for n, name in enumerate(counts)}
            ddb.update_item(
                TableName=TABLE,
                Key={"PK": raw["PK"], "SK": raw["SK"]},
                UpdateExpression="REMOVE " + ", ".join(names),
                ExpressionAttributeNames=names,
            )
            rewritten += 1
    return rewritten


def test_funnel_days_an_earlier_version_stored_stay_exact_as_their_customers_come_back(
    http, source, store, stream, definitions, ddb
):
    # Given a customer half-way through the purchase funnel, stored as versions before 2026-12 stored it: the
    # time to step 2 in an item (and a cell) of its own
    _, key = source
    anna, ben = random_ref("anna"), random_ref("ben")
    first = [
        call(anna, "Product Viewed", NOW - timedelta(minutes=30), message=f"{anna}-1"),
        call(anna, "Product Added", NOW - timedelta(minutes=29), message=f"{anna}-2"),
    ]
    assert http("POST", "/v1/batch", body=json.dumps({"batch": first}), write_key=key).status == 200
    stream.drain()
    days = {"start": NOW.date() - timedelta(days=1), "end": NOW.date()}
    before = analytics.funnel_report(store, "purchase", **days)
    assert _step_times_apart(ddb, counters=False) == 1
    stream.drain()  # (the customer item's record: the same cells, spelled as before)
    assert _step_times_apart(ddb, counters=True) == 1
    assert analytics.funnel_report(store, "purchase", **days) == before
    counters_equal_recomputation(store)
    # When she comes back to buy, and someone new gets as far as she had
    more = [
        call(anna, "Checkout Started", NOW - timedelta(minutes=20), message=f"{anna}-3"),
        call(anna, "Order Completed", NOW - timedelta(minutes=10), message=f"{anna}-4"),
        call(ben, "Product Viewed", NOW - timedelta(minutes=10), message=f"{ben}-1"),
        call(ben, "Product Added", NOW - timedelta(minutes=5), message=f"{ben}-2"),
    ]
    assert http("POST", "/v1/batch", body=json.dumps({"batch": more}), write_key=key).status == 200
    stream.drain()
    # Then the old item still holds her time to step 2, the day's item the rest, and together they are exact
    from tests.conftest import TABLE

    day = f"DAY#{(NOW - timedelta(minutes=30)).date().isoformat()}"
    legacy = ddb.get_item(TableName=TABLE, Key={"PK": {"S": "FUNNEL#purchase"}, "SK": {"S": f"{day}#T2#0"}})["Item"]
    assert sum(int(v["N"]) for name, v in legacy.items() if name.startswith("t|")) == 1
    counters_equal_recomputation(store)
    report = analytics.funnel_report(store, "purchase", **days)
    assert [s.customers for s in report.steps] == [2, 2, 1, 1]
    recomputed = analytics.recompute(store, now=NOW)
    from shared.domain import analytics as domain

    assert report == domain.funnel_report(analytics.find_funnel(store, "purchase"), recomputed, **days)
