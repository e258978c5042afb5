"""The traffic simulator: deterministic people and ids, valid calls through the real routes, realistic behaviour
(channels, stitching, abandoned carts, orders, rhythm), live traffic, and the sender's batching and pacing."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from functions.collect import routes
from shared.domain.events import TrackingEvent
from shared.domain.profiles import channel_of
from shared.services.collect import Collector
from shared.services.process import StreamChange, process_changes
from shared.simulate import Route, SimEvent, Target, generate, live, send
from shared.simulate.sender import BATCH_SIZE, click_link, pixel_path
from tests.builders import a_source
from tests.fakes import InMemoryTrackingStore
from tests.profile_fakes import InMemoryProfileStore

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
BASE = "http://collector.test"


@pytest.fixture(scope="module")
def history() -> list[SimEvent]:
    return list(generate(120, 14, 7, NOW))


@pytest.fixture(scope="module")
def collected(history: list[SimEvent]) -> tuple[list[TrackingEvent], InMemoryTrackingStore, list[Any]]:
    """Every simulated event sent through the collector's real routes, on an in-memory store."""
    store = InMemoryTrackingStore()
    source, write_key = a_source("default")
    store.put_source(source, write_keys=[write_key])
    target = Target(BASE, write_key, source.id, source.link_secrets[0])
    collector = Collector(store, clock=lambda: NOW)
    replies = []
    for request in _requests(history, target):
        replies.append((request, _call(collector, request)))
    events = sorted(store.events.values(), key=lambda e: (e.timestamp, e.message_id))
    return events, store, replies


def _requests(history: list[SimEvent], target: Target) -> Iterator[routes.HttpRequest]:
    auth = {"authorization": "Basic " + base64.b64encode(f"{target.write_key}:".encode()).decode()}
    batch: list[dict[str, Any]] = []
    for event in history:
        if event.route is Route.BATCH:
            batch.append(event.payload)
            if len(batch) == BATCH_SIZE:
                yield routes.HttpRequest("/v1/batch", auth, body=json.dumps({"batch": batch}))
                batch = []
        elif event.route is Route.PIXEL:
            path, _, query = pixel_path(target, event.payload).partition("?")
            yield routes.HttpRequest(path, {}, raw_query=query)
        else:
            assert event.target is not None
            path, _, query = click_link(target, event.payload, event.target)[len(BASE) :].partition("?")
            yield routes.HttpRequest(path, {}, raw_query=query)
    if batch:
        yield routes.HttpRequest("/v1/batch", auth, body=json.dumps({"batch": batch}))


def _call(collector: Collector, request: routes.HttpRequest) -> routes.HttpReply:
    state = routes.RequestState()
    if request.path == "/v1/batch":
        return routes.segment_call(collector, request, "batch", now=NOW, state=state)
    if request.path == "/v1/pixel/track":
        return routes.pixel(collector, request, "track", now=NOW)
    return routes.click(collector, request, now=NOW, state=state)


def _people(history: list[SimEvent]) -> dict[str, list[SimEvent]]:
    people: dict[str, list[SimEvent]] = defaultdict(list)
    for event in history:
        people[event.person].append(event)
    return people


# --- determinism ---------------------------------------------------------------------------------------------------


def test_the_same_arguments_give_the_same_events(history: list[SimEvent]):
    assert list(generate(120, 14, 7, NOW)) == history


def test_the_same_seed_gives_the_same_people_and_message_ids_whatever_now_and_days(history: list[SimEvent]):
    # Given the history again, later and over fewer days
    later = list(generate(120, 3, 7, NOW + timedelta(days=40, hours=5)))
    # Then only the timestamps moved
    assert sorted(map(_untimed, later)) == sorted(map(_untimed, history))
    assert {e.at for e in later}.isdisjoint({e.at for e in history})


def test_the_corpus_of_a_seed_is_the_one_benchmarks_were_measured_on(history: list[SimEvent]):
    # Benchmarks compare runs on the same seed: any change to what a seed generates (people, calls, ids, times) must
    # be deliberate. These digests are those of shared/simulate.py before it became a package.
    ticks = itertools.count()
    live_events = live(7, customers=120, clock=lambda: NOW + timedelta(seconds=next(ticks)), run="golden")
    assert _digest(history) == "f26a754862e7f8fe3a0bb5f08bad40148a60a0f163d72f98c6eff464ac2e91e9"
    assert _digest(itertools.islice(live_events, 1000)) == (
        "ff4e94894ad68303825368057d0a7f293067d369612a6c171e9dd4615f4fe23f"
    )


def _digest(events: Iterable[SimEvent]) -> str:
    digest = hashlib.sha256()
    for e in events:
        digest.update(
            json.dumps([e.at.isoformat(), e.route.value, e.payload, e.person, e.target], sort_keys=True).encode()
        )
        digest.update(b"\n")
    return digest.hexdigest()


def _untimed(event: SimEvent) -> str:
    return json.dumps([event.person, event.route, event.target, {**event.payload, "timestamp": None}], sort_keys=True)


def test_message_ids_are_unique_and_another_seed_gives_other_ids(history: list[SimEvent]):
    ids = [e.payload["messageId"] for e in history]
    assert len(ids) == len(set(ids))
    assert set(ids).isdisjoint(e.payload["messageId"] for e in generate(120, 14, 8, NOW))


def test_a_customer_behaves_the_same_whatever_the_number_of_customers(history: list[SimEvent]):
    fewer = {e.payload["messageId"] for e in generate(40, 14, 7, NOW)}
    assert fewer < {e.payload["messageId"] for e in history}


# --- validity: every call passes the collector's real routes ---------------------------------------------------------


def test_every_event_is_accepted_by_the_collector_routes(history, collected):
    events, store, replies = collected
    assert store.failed == []
    for request, reply in replies:
        if request.path == "/v1/batch":
            assert reply.status == 200
            assert {r["status"] for r in reply.body["results"]} == {"accepted"}
        elif request.path == "/v1/pixel/track":
            assert (reply.status, reply.content_type) == (200, "image/gif")
        else:
            assert reply.status == 302
    assert len(events) == len(history)


def test_stored_events_keep_their_simulated_time_and_clicks_redirect_to_their_landing(history, collected):
    events, _store, replies = collected
    sent = {e.payload["messageId"]: e for e in history}
    for event in events:
        assert event.timestamp == sent[event.message_id].at  # skew correction left the past timestamps alone
    clicks = [(request, reply) for request, reply in replies if request.path == "/v1/r"]
    targets = [e.target for e in history if e.route is Route.CLICK]
    assert [reply.headers["Location"] for _, reply in clicks] == targets
    assert all(urlsplit(t).query and "utm_medium=email" in t for t in targets)


def test_events_span_the_history_in_time_order_with_a_daily_rhythm(history: list[SimEvent]):
    assert all(a.at <= b.at for a, b in itertools.pairwise(history))
    assert NOW - timedelta(days=14) <= history[0].at and history[-1].at < NOW
    hours = Counter(e.at.hour for e in history)
    assert sum(hours[h] for h in range(18, 22)) > 3 * sum(hours[h] for h in range(2, 6))
    days = Counter((NOW - e.at).days for e in history)
    assert len(days) >= 12  # customers arrive all through the two weeks


# --- behaviour -----------------------------------------------------------------------------------------------------


def test_people_arrive_through_organic_paid_and_email_channels(collected):
    events, _store, _replies = collected
    channels = Counter(channel_of(e) for e in events if e.type == "page" and e.context.get("campaign"))
    assert channels["ads"] > 0 and channels["email"] > 0
    paid = [e for e in events if e.context.get("campaign", {}).get("medium") == "cpc"]
    assert {e.context["campaign"]["source"] for e in paid} >= {"google", "facebook"}
    assert all("utm_source=" in e.properties["url"] for e in paid if e.type == "page")
    organic = [e for e in events if e.type == "page" and e.properties.get("referrer") == "https://www.google.com/"]
    assert any("campaign" not in e.context for e in organic)
    names = Counter(e.event for e in events)
    assert names["Email Opened"] > names["Email Link Clicked"] > 0


def test_every_person_becomes_one_customer_after_identity_stitching(history, collected):
    # Given every stored event processed as the stream would deliver it
    events, _store, _replies = collected
    profiles = InMemoryProfileStore()
    changes = [StreamChange(str(n + 1), e) for n, e in enumerate(events)]
    for start in range(0, len(changes), 100):
        assert process_changes(profiles, changes[start : start + 100]) == []
    # Then one live customer per simulated person, holding every id the person used
    customers = profiles.live_profiles()
    assert len(customers) == len(_people(history))
    merged = [c for c in customers if len(c.profile.identities) > 2]
    assert merged  # anonymous browsing + user id + a second device or more
    for person in _people(history).values():
        ids = {f"a:{e.payload['anonymousId']}" for e in person if "anonymousId" in e.payload}
        ids |= {f"u:{e.payload['userId']}" for e in person if "userId" in e.payload}
        assert sum(1 for c in customers if ids <= set(c.profile.identities)) == 1


def test_identified_people_were_anonymous_first_and_are_stitched_by_identify(history):
    stitched = 0
    for person in _people(history).values():
        identifies = [e for e in person if e.payload.get("type") == "identify"]
        if identifies and person[0].route is Route.BATCH:
            assert "userId" not in person[0].payload  # browsing started anonymously
            assert all({"userId", "anonymousId"} <= e.payload.keys() for e in identifies)
            assert identifies[0].payload["traits"]["email"].endswith("@example.com")
            stitched += 1
    assert stitched >= 20


def test_some_carts_are_abandoned_and_some_of_them_recovered_later(history):
    added: dict[str, datetime] = {}
    ordered: dict[str, datetime] = {}
    for event in history:
        cart = event.payload.get("properties", {}).get("cart_id")
        if event.payload.get("event") == "Product Added":
            added.setdefault(cart, event.at)
        elif event.payload.get("event") == "Order Completed":
            ordered[cart] = event.at
    abandoned = set(added) - set(ordered)
    recovered = {cart for cart in ordered if cart in added and ordered[cart] - added[cart] > timedelta(hours=1)}
    assert len(abandoned) >= 8 and len(recovered) >= 2
    reminders = [e for e in history if e.payload.get("properties", {}).get("campaign") == "cart_reminder"]
    assert reminders


def test_orders_have_revenue_totals_and_products(history):
    orders = [e.payload["properties"] for e in history if e.payload.get("event") == "Order Completed"]
    assert len(orders) >= 20
    for order in orders:
        subtotal = sum(Decimal(str(p["price"])) * p["quantity"] for p in order["products"])
        assert order["order_id"] and order["cart_id"] and order["currency"] == "USD"
        assert Decimal(str(order["revenue"])) == subtotal - Decimal(str(order["discount"])) > 0
        assert order["total"] >= order["revenue"]
    spend: Counter[str] = Counter()
    for event in history:
        if event.payload.get("event") == "Order Completed":
            spend[event.person] += event.payload["properties"]["revenue"]
    assert max(spend.values()) >= 500  # heavy spenders exist


# --- live traffic --------------------------------------------------------------------------------------------------


def test_live_traffic_is_stamped_by_the_clock_unique_per_run_and_brings_back_known_customers(history):
    # Given a clock that moves a second per event
    ticks = itertools.count()

    def clock() -> datetime:
        return NOW + timedelta(seconds=next(ticks))

    # When
    first = list(itertools.islice(live(7, customers=120, clock=clock, run="a"), 600))
    again = list(itertools.islice(live(7, customers=120, clock=lambda: NOW, run="a"), 600))
    other = list(itertools.islice(live(7, customers=120, clock=lambda: NOW, run="b"), 600))
    # Then
    assert [e.at for e in first] == [NOW + timedelta(seconds=n) for n in range(600)]
    assert [e.payload["messageId"] for e in first] == [e.payload["messageId"] for e in again]
    assert {e.payload["messageId"] for e in first}.isdisjoint(e.payload["messageId"] for e in other)
    assert {e.payload["messageId"] for e in first}.isdisjoint(e.payload["messageId"] for e in history)
    history_people = {e.person for e in history}
    assert any(e.person in history_people for e in first)  # returning customers
    assert Counter(e.route for e in first).keys() == {Route.BATCH, Route.PIXEL, Route.CLICK}


# --- sending -------------------------------------------------------------------------------------------------------


class _FakeCollector(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, str, dict[str, str], bytes]]
    fail_next: list[int]

    def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append(("POST", self.path, dict(self.headers), body))
        if self.fail_next:
            self._answer(self.fail_next.pop(), b'{"success":false}', {"Retry-After": "0"})
            return
        results = [{"index": n, "status": "accepted"} for n, _ in enumerate(json.loads(body)["batch"])]
        self._answer(200, json.dumps({"success": True, "results": results}).encode(), {})

    def do_GET(self) -> None:
        self.seen.append(("GET", self.path, dict(self.headers), b""))
        if self.path.startswith("/v1/r?"):
            query = parse_qs(urlsplit(self.path).query)
            self._answer(302, b"", {"Location": query["url"][0]})
        else:
            self._answer(200, b"GIF89a", {"Content-Type": "image/gif"})

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def fake_collector() -> Iterator[tuple[Target, type[_FakeCollector]]]:
    handler = type("Handler", (_FakeCollector,), {"seen": [], "fail_next": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    yield Target(f"http://{host}:{port}", "ffk_test", "default", "secret"), handler
    server.shutdown()
    server.server_close()


def test_send_batches_by_100_with_basic_auth_and_uses_pixel_and_signed_links(fake_collector, history):
    # Given a collector that first answers 503 (not stored: retry)
    target, handler = fake_collector
    handler.fail_next.append(503)
    events = history[:400]
    # When
    stats = send(events, target, connections=2)
    # Then
    posts = [json.loads(body)["batch"] for method, _, _, body in handler.seen if method == "POST"]
    batch_events = [e.payload for e in events if e.route is Route.BATCH]
    assert max(map(len, posts)) == BATCH_SIZE
    assert sorted(p["messageId"] for p in itertools.chain(*posts[1:])) == sorted(p["messageId"] for p in batch_events)
    auth = {headers["Authorization"] for method, _, headers, _ in handler.seen if method == "POST"}
    assert auth == {"Basic " + base64.b64encode(b"ffk_test:").decode()}
    gets = [path for method, path, _, _ in handler.seen if method == "GET"]
    assert len([p for p in gets if p.startswith("/v1/pixel/track?")]) == stats.opens
    assert len([p for p in gets if p.startswith("/v1/r?") and "sig=" in p]) == stats.clicks
    assert (stats.sent, stats.accepted, stats.rejected) == (len(events), len(batch_events), 0)
    assert stats.opens + stats.clicks == len(events) - len(batch_events) > 0


def test_send_paces_events_at_the_rate_and_stops_when_asked(fake_collector, history):
    target, _handler = fake_collector
    # When 30 events go at 100 per second
    started = time.monotonic()
    stats = send(history[:30], target, rate=100)
    # Then it took about 0.3 s
    assert 0.28 <= time.monotonic() - started < 2
    assert stats.sent == 30
    # And a stop request ends an endless stream, sending what was batched: stop is asked once 10 events were drawn
    stop = threading.Event()
    endless = live(7, customers=0, clock=lambda: datetime.now(UTC), run="stop")

    def until_stopped() -> Iterator[Any]:
        for drawn, event in enumerate(endless, start=1):
            if drawn == 10:
                stop.set()
            yield event

    stats = send(until_stopped(), target, rate=50, stop=stop)
    assert stats.sent == 10  # the stop is seen before the next event is drawn
    assert stats.accepted + stats.opens + stats.clicks == stats.sent
