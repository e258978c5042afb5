"""`footfall serve` over real HTTP: every route, bad input, duplicates, and kill -9 durability."""

from __future__ import annotations

import base64
import http.client
import json
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import pytest

from shared.domain.webhooks import sign_webhook
from shared.local.streams import SWEEP_SECONDS
from shared.services.segments import SETTLE
from tests.builders import a_track, random_ref
from tests.e2e.conftest import FOOTFALL, LocalStack
from tests.oracle import Report, audit

pytestmark = pytest.mark.e2e


def test_batch_is_stored_once_even_when_the_request_is_retried(local_stack: LocalStack):
    # Given
    batch = {"batch": [a_track() for _ in range(50)]}
    # When
    first = local_stack.post_json("/v1/batch", batch, write_key=local_stack.write_key)
    retry = local_stack.post_json("/v1/batch", batch, write_key=local_stack.write_key)
    # Then
    assert first.status == retry.status == 200
    assert {r["status"] for r in first.json["results"]} == {"accepted"}
    assert {r["status"] for r in retry.json["results"]} == {"duplicate"}
    # (the events only: once processed, new customers' segment announcements are stored too, as `aud:…` events)
    stored = [m for m in local_stack.stored_message_ids() if not m.startswith("aud:")]
    assert sorted(stored) == sorted(e["messageId"] for e in batch["batch"])


def test_pixel_answers_a_gif_for_good_and_bad_input_and_records_the_bad(local_stack: LocalStack):
    # Given
    data = base64.urlsafe_b64encode(
        json.dumps({"userId": "reader-1", "event": "Email Opened", "properties": {"campaign": "nov"}}).encode()
    ).decode()
    # When
    good = local_stack.request("GET", f"/v1/pixel/track?writeKey={local_stack.write_key}&data={data}")
    dotted = local_stack.request(
        "GET", f"/v1/pixel/page?writeKey={local_stack.write_key}&anonymousId=a-1&name=Home&properties.path=%2F"
    )
    bad = local_stack.request("GET", f"/v1/pixel/track?writeKey={local_stack.write_key}&data=%%%")
    # Then
    for answer in (good, dotted, bad):
        assert answer.status == 200
        assert answer.headers["Content-Type"] == "image/gif"
        assert len(answer.body) == 43 and answer.body.startswith(b"GIF89a")
        assert "no-cache" in answer.headers["Cache-Control"]
    events = local_stack.events("u", "reader-1")
    assert [(e.event, e.properties["campaign"]) for e in events] == [("Email Opened", "nov")]
    assert local_stack.events("a", "a-1")[0].name == "Home"
    assert [f.reason for f in local_stack.store().list_failed().items] == ["data is not valid base64"]


def test_signed_click_link_redirects_and_records_the_click_and_tampering_is_refused(local_stack: LocalStack):
    # Given a link made by the CLI
    link = local_stack.cli(
        "links",
        "sign",
        "--source",
        "default",
        "--url",
        "https://shop.example/sale?x=1",
        "--user-id",
        "clicker-1",
        "--property",
        "campaign=winter",
    )["url"]
    path = link[len(local_stack.info.collector_url) :]
    # When
    followed = local_stack.request("GET", path)
    tampered = local_stack.request("GET", path.replace("shop.example", "evil.example"))
    unsigned = local_stack.request("GET", "/v1/r?src=default&url=https%3A%2F%2Fevil.example&userId=x")
    # Then
    assert followed.status == 302
    assert followed.headers["Location"] == "https://shop.example/sale?x=1"
    assert tampered.status == unsigned.status == 400
    assert "Location" not in tampered.headers and "Location" not in unsigned.headers
    (click,) = local_stack.events("u", "clicker-1")
    assert (click.event, click.properties["campaign"], click.properties["url"]) == (
        "Email Link Clicked",
        "winter",
        "https://shop.example/sale?x=1",
    )


def test_webhook_needs_a_fresh_signature_from_an_active_secret(local_stack: LocalStack):
    # Given a webhook source
    created = local_stack.cli("sources", "add", "Payments", "--id", "payments")
    body = json.dumps(
        {
            "type": "track",
            "event": "Order Completed",
            "userId": "buyer-1",
            "messageId": "pay-1",
            "properties": {"revenue": 42.5},
        }
    ).encode()
    now = int(time.time())

    def send(secret: str, stamp: int) -> int:
        return local_stack.request(
            "POST",
            "/v1/webhooks/payments",
            body=body,
            headers={
                "Content-Type": "application/json",
                "X-Footfall-Timestamp": str(stamp),
                "X-Footfall-Signature": sign_webhook(body, secret, stamp),
            },
        ).status

    # When / Then
    assert send("ffs_wrong", now) == 401
    assert send(created["webhook_secret"], now - 400) == 401
    assert send(created["webhook_secret"], now) == 200
    rotated = local_stack.cli("sources", "rotate-secret", "payments", "--kind", "webhook")
    assert send(created["webhook_secret"], now) == 200  # the previous secret still verifies after one rotation
    assert send(rotated["secret"], now) == 200
    (order,) = local_stack.events("u", "buyer-1")
    assert order.properties["revenue"] == 42.5


def test_bad_requests_get_clear_4xx_answers(local_stack: LocalStack):
    key = local_stack.write_key
    assert local_stack.post_json("/v1/track", a_track(), write_key="ffk_nope").status == 401
    assert local_stack.post_json("/v1/track", a_track()).status == 401
    assert local_stack.request("POST", "/v1/track", body=b"{oops", write_key=key).status == 400
    too_big = local_stack.request("POST", "/v1/batch", body=b"{" + b" " * 600_000 + b"}", write_key=key)
    assert too_big.status == 413
    assert local_stack.request("GET", "/nowhere").status == 404
    reasons = {f.reason for f in local_stack.store().list_failed().items}
    assert {"invalid write key", "body is not valid JSON", "body is larger than 500 KB"} <= reasons


def test_every_acknowledged_event_survives_kill_9_under_load(local_stack: LocalStack):
    # Given clients posting batches while the server is killed
    acknowledged: dict[str, str] = {}  # messageId → userId
    lock = threading.Lock()
    stop = threading.Event()
    threads = [
        threading.Thread(target=_post_batches_until, args=(local_stack, stop, acknowledged, lock)) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    time.sleep(3)
    # When
    local_stack.kill9()
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    local_stack.start()
    # Then
    stored = set(local_stack.stored_message_ids())
    assert len(acknowledged) > 100
    assert set(acknowledged) <= stored
    assert local_stack.write_key  # the same default source and key after the restart
    marker = a_track(userId=random_ref("after-restart"))
    assert local_stack.post_json("/v1/track", marker, write_key=local_stack.write_key).status == 200
    # And once processing has caught up (the stream is in order: the marker's profile comes last), every profile,
    # membership and analytics counter equals a recomputation from the stored events
    store, deadline = local_stack.store(), time.monotonic() + 180
    while not store.get_profiles([f"u:{marker['userId']}"]):
        assert time.monotonic() < deadline, "processing did not catch up after the restart"
        time.sleep(1)
    report = _audit_when_converged(store, deadline)
    # And every acknowledged customer (each event a new user) has a live profile of its own
    missing = {user for user in acknowledged.values() if report.customer_of(f"u:{user}") is None}
    assert not missing, f"{len(missing)} acknowledged customers have no profile, e.g. {sorted(missing)[:3]}"


def _post_batches_until(
    local_stack: LocalStack, stop: threading.Event, acknowledged: dict[str, str], lock: threading.Lock
) -> None:
    """A client posting batches of 10 new users' events until `stop`; what the server answered 200 to is added to
    `acknowledged` (messageId → userId)."""
    while not stop.is_set():
        batch = [a_track(userId=random_ref("load")) for _ in range(10)]
        try:
            answer = local_stack.post_json("/v1/batch", {"batch": batch}, write_key=local_stack.write_key)
        except (OSError, http.client.HTTPException):  # (a reply cut short: IncompleteRead)
            return  # the server died mid-request: not acknowledged
        if answer.status == 200:
            with lock:
                acknowledged.update((e["messageId"], e["userId"]) for e in batch)


def _audit_when_converged(store: Any, deadline: float) -> Report:
    """The oracle's audit, retried until it passes or `deadline` (monotonic) has passed: evaluations cut short by
    the kill or the restart converge through the due list (the 15 s sweep)."""
    while True:
        try:
            return audit(store)
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(5)


def test_cli_lists_sources_and_failed_events_as_json(local_stack: LocalStack):
    local_stack.request("POST", "/v1/track", body=b"nope", write_key=local_stack.write_key)
    sources = local_stack.cli("sources", "list")
    failed = local_stack.cli("failed", "list")
    shown = local_stack.cli("failed", "show", failed[0]["id"])
    assert [s["id"] for s in sources] == ["default"]
    assert all("write_key" not in s for s in sources)
    assert (failed[0]["route"], failed[0]["status"], shown["raw"]) == ("/v1/track", 400, "nope")


def test_pixel_query_string_with_quoted_plus_in_base64(local_stack: LocalStack):
    raw = json.dumps({"userId": "plus-user", "event": "Opened ???"}).encode()
    data = base64.b64encode(raw).decode()
    answer = local_stack.request(
        "GET", "/v1/pixel/track?" + urllib.parse.urlencode({"writeKey": local_stack.write_key, "data": data})
    )
    assert answer.status == 200
    assert local_stack.events("u", "plus-user")[0].event == "Opened ???"


def test_posted_events_show_up_in_footfall_customers_show(local_stack: LocalStack):
    # Given an anonymous visitor who logs in and buys
    anon = random_ref("visitor")
    batch = [
        {"type": "page", "anonymousId": anon, "name": "Home"},
        {
            "type": "track",
            "anonymousId": anon,
            "event": "Product Added",
            "properties": {"product_id": "p1", "cart_id": "c1", "price": 20},
        },
        {"type": "identify", "anonymousId": anon, "userId": "carol", "traits": {"name": "Carol"}},
        {
            "type": "track",
            "userId": "carol",
            "event": "Order Completed",
            "properties": {"revenue": 20, "cart_id": "c1"},
        },
    ]
    assert local_stack.post_json("/v1/batch", {"batch": batch}, write_key=local_stack.write_key).status == 200
    # When the stream runner has processed them (polling; the lag itself is measured by `make bench`)
    deadline = time.monotonic() + 15
    while True:
        from shared.services.customers import find_customer

        found = find_customer(local_stack.store(), "carol")
        if (found and sum(found.profile.event_counts.values()) == 4) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    shown = local_stack.cli("customers", "show", "carol")
    # Then the CLI shows one customer with the whole story
    assert set(shown["identities"]) == {"u:carol", f"a:{anon}"}
    assert (shown["orders"], shown["revenue"], shown["traits"]["name"]) == (1, 20, "Carol")
    assert len([e for e in shown["recent_events"] if e["source"] != "footfall"]) == 4
    listed = local_stack.cli("customers", "list")["customers"]
    assert [c["user_id"] for c in listed] == ["carol"]


def test_footfall_forget_needs_yes_and_then_erases(local_stack: LocalStack):
    local_stack.post_json("/v1/track", a_track(userId="gone", event="X"), write_key=local_stack.write_key)
    refused = subprocess.run(
        [*FOOTFALL, "forget", "gone", "--data-dir", str(local_stack.data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2 and "--yes" in refused.stderr
    erased = local_stack.cli("forget", "gone", "--yes")
    assert "u:gone" in erased["identities"] and erased["deleted_items"] >= 1
    assert local_stack.events("u", "gone") == []
    again = local_stack.post_json("/v1/track", a_track(userId="gone", event="Y"), write_key=local_stack.write_key)
    assert again.json["results"][0]["status"] == "suppressed"


SWEPT_BOUND = SWEEP_SECONDS + SETTLE.total_seconds() + 1
"""Design bound for a time-based transition locally: a deadline is swept by the first sweep (every `SWEEP_SECONDS`)
that reads `SETTLE` past its second (deadlines are kept to the second): 8 s, plus the evaluation."""
DECIDED_BOUND = 5
"""Design bound for a transition decided by an event (the README's ≤ 5 s)."""
LOADED_MARGIN = 30
"""Margin for this 2-core machine shared with other suites: each of the three stream hops (event → profile and
membership → audience event → outbox) may wait behind a full poll-and-batch cycle of a starved runner. `make bench`
measures the latency itself; this test checks that the transition happens, and in bounded time."""


def wait_for(happened: Callable[[], bool], *, since: float, bound: float) -> float:
    """Seconds from `since` until `happened()`; fails when it has not happened within `bound` seconds."""
    while not happened():
        assert time.monotonic() - since < bound, f"not within {bound} s"
        time.sleep(0.3)
    return time.monotonic() - since


def test_a_short_window_cart_abandoner_enters_after_the_deadline_and_leaves_on_order(local_stack: LocalStack, tmp_path):
    # Given an abandonment rule with a 5 s window (the starters use 1 h)
    rules = tmp_path / "rules.json"
    rules.write_text(
        json.dumps(
            {
                "segments": [
                    {
                        "id": "quick_abandoners",
                        "rule": {
                            "absence": {
                                "did": {"event": "Product Added"},
                                "then_not": {"event": "Order Completed"},
                                "within": "5s",
                                "match": ["cart_id"],
                            }
                        },
                    }
                ]
            }
        )
    )
    assert local_stack.cli("segments", "apply", str(rules))["segments"] == [{"id": "quick_abandoners", "version": 1}]
    shopper = random_ref("shopper")
    added = {"type": "track", "anonymousId": shopper, "event": "Product Added", "properties": {"cart_id": "c7"}}
    assert local_stack.post_json("/v1/track", added, write_key=local_stack.write_key).status == 200
    deadline = time.monotonic() + 5
    outbox = local_stack.data_dir / "outbox.jsonl"

    def announced(event: str) -> bool:
        lines = [json.loads(line) for line in outbox.read_text().splitlines()] if outbox.exists() else []
        return any(e["event"] == event and e["properties"]["audience_key"] == "quick_abandoners" for e in lines)

    # When nothing happens: they are in, and the outbox says so, within the design bound of the deadline
    wait_for(lambda: announced("Audience Entered"), since=deadline, bound=SWEPT_BOUND + LOADED_MARGIN)
    members = local_stack.cli("segments", "members", "quick_abandoners")
    assert len(members) == 1, members
    # When they order, they leave: the order's stream hop, the membership's, the audience event's
    order = {"type": "track", "anonymousId": shopper, "event": "Order Completed", "properties": {"cart_id": "c7"}}
    local_stack.post_json("/v1/track", order, write_key=local_stack.write_key)
    wait_for(lambda: announced("Audience Exited"), since=time.monotonic(), bound=DECIDED_BOUND + LOADED_MARGIN)
    assert local_stack.cli("segments", "members", "quick_abandoners") == []
    history = local_stack.cli("segments", "history", "quick_abandoners")
    assert [h["change"] for h in history] == ["entered", "exited"]
    explained = local_stack.cli("segments", "explain", "quick_abandoners", shopper)
    assert explained["member"] is False


# The design bound for processing an event on the local stack is 5 s; this machine has 2 cores that other work
# (other test modules, CI) loads, so the test allows a stated margin of 25 s on top and prints what it measured.
BYSTANDER_BOUND_SECONDS = 5 + 25


def test_a_bystander_is_processed_right_after_every_hostile_request_of_the_issue(local_stack: LocalStack):
    # Given the hostile requests of #13 sent with the public write key (codec tag, huge money, 260 made-up names,
    # an alias takeover, ids over the byte limit, separators in ids, 500 levels of nesting)
    from shared.services.customers import find_customer

    key = local_stack.write_key
    deep: Any = {"email": "x@example.com"}
    for _ in range(500):
        deep = {"a": deep}
    attacks = [
        ("/v1/identify", {"userId": "victim", "traits": {"plan": {"$d": "bogus"}}}),
        ("/v1/track", {"userId": "victim", "event": "Order Completed", "properties": {"revenue": "1e999999"}}),
        ("/v1/batch", {"batch": [{"type": "track", "userId": "spam", "event": f"e{n}"} for n in range(260)]}),
        ("/v1/alias", {"userId": "mallory", "previousId": "victim"}),
        ("/v1/track", {"userId": "u", "event": "x", "messageId": "😀" * 256}),
        ("/v1/track", {"userId": "mallory#u:victim", "event": "Order Completed"}),
        ("/v1/track", {"userId": "u", "event": "x", "properties": deep}),
    ]
    answers = [local_stack.post_json(route, body, write_key=key).status for route, body in attacks]
    assert all(status < 500 for status in answers), answers
    # When a bystander orders right after
    bystander = random_ref("bystander")
    order = {"userId": bystander, "event": "Order Completed", "properties": {"revenue": 12}}
    assert local_stack.post_json("/v1/track", order, write_key=key).status == 200
    started = time.monotonic()
    # Then the order is processed within the bound, and the victim's profile is still the victim's
    while (found := find_customer(local_stack.store(), bystander)) is None or found.profile.orders != 1:
        assert time.monotonic() - started < BYSTANDER_BOUND_SECONDS, "the bystander's order was not processed"
        time.sleep(0.2)
    print(f"bystander processed {time.monotonic() - started:.1f} s after the order")
    victim = find_customer(local_stack.store(), "u:victim")
    assert victim is not None and victim.profile.traits["plan"] == {"$d": "bogus"}
    assert victim.profile.customer_id == "u:victim"
