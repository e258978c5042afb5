"""Footfall benchmark (not a test): storage cost, local `/v1/batch` throughput and collect cold-start import time.

Run with `make bench` (`.venv/bin/python benchmarks/bench.py`). It prints a table and writes it to
`benchmarks/RESULTS.md`. The machine is shared and noisy, so every figure is set against a baseline measured in
the same run, and the ratio is reported next to the absolute figure.

1. Write and read units per event, billed as AWS bills them (`benchmarks/meter.py`, a metering proxy in front of
   the backend that every process of `footfall serve` goes through), per entity, on the workloads users run
   (`benchmarks/cost_bench.py`): 14 days of simulated history in bulk, live traffic at a steady rate, and mostly
   new visitors. A workload whose processing did not catch up is reported FAILED and the bench exits non-zero.
   Baseline: "naive 3", the same events' own event-item units + a de-duplication marker + a profile update each.
2. `/v1/batch` throughput of `footfall serve` (real HTTP, keep-alive clients, 100 events a request, every event
   must come back `accepted`) on its default embedded database (SQLite). Baseline: a raw SQLite insert loop of the
   same event items (one transaction per 25, one thread) on a fresh file, for as long.
3. Import time of the collect Lambda's handler module against `import boto3` + one DynamoDB client, each in a
   fresh interpreter, interleaved, medians.

4. Funnel report read cost at 10k/100k/1M events (`analytics_bench.py`).
5. Each TUI screen's reads (requests, ms, read units) on realistic data in the embedded SQLite database, and the
   `--check` path (`recompute`) (`tui_bench.py`).

Default scale (about 10 minutes on a shared 2-core machine): throughput 10 s per configuration; bulk history of
60 customers (~1,400 events); live 20 s and worst case 10 s at 50 events/s; TUI 2,500 customers x 10 events + one
heavy customer. Exit status 1 when any workload's processing did not catch up (reported FAILED, not a number).

Every process started here listens on 127.0.0.1 only and is stopped before the script exits.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import http.client
import json
import math
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.domain.events import batch_items, format_timestamp, parse_envelope, parse_event  # noqa: E402
from shared.local.stack import INFO_FILE, read_info  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
import analytics_bench  # noqa: E402
import cost_bench  # noqa: E402
import tui_bench  # noqa: E402

from shared.storage import items as storage_items  # noqa: E402
from shared.storage.dynamo import DynamoTrackingStore, make_client, serialize  # noqa: E402

HOST = "127.0.0.1"  # the only address this script ever talks to
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
REGION = "us-east-1"
TABLE = "footfall"
EVENTS_PER_REQUEST = 100
BATCH_WRITE_SIZE = 25
EVENT_RETENTION = timedelta(days=400)  # the collector's default (`FOOTFALL_EVENT_RETENTION_DAYS`)

# Every messageId of a request body template carries this placeholder; each request replaces it with a fresh
# uuid4 hex (same length), which makes the ids unique at the cost of one bytes.replace per request.
TAG = "~" * 32
TAG_BYTES = TAG.encode()

LAG_TARGET = 5.0
THROUGHPUT_TARGET = 3000.0
IMPORT_RATIO_TARGET = 1.3


# --- child processes ----------------------------------------------------------------------------------------------

_children: list[subprocess.Popen[Any]] = []


def _track(process: subprocess.Popen[Any]) -> subprocess.Popen[Any]:
    _children.append(process)
    return process


def stop_process(process: subprocess.Popen[Any]) -> None:
    """SIGTERM, then SIGKILL if it does not exit; only ever a process this script started."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    if process in _children:
        _children.remove(process)


def stop_all() -> None:
    """Stop every child process still running (also runs at exit)."""
    for process in list(_children):
        with contextlib.suppress(Exception):
            stop_process(process)


atexit.register(stop_all)


def _on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through the `finally` blocks, which stop the children


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


# --- realistic events -------------------------------------------------------------------------------------------

SHOP = "https://shop.example.com"
CDN = "https://cdn.shop.example.com"
FIRST_NAMES = ["Ana", "Ben", "Chloé", "David", "Emma", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemi", "Liam"]
LAST_NAMES = ["Martin", "Nguyen", "Okafor", "Petrov", "Quinn", "Rossi", "Schmidt", "Tanaka", "Urbina", "Vega"]
PLANS = ["free", "starter", "pro", "business"]
CATALOG = [
    ("Footwear", "Trail Runner 2 Running Shoe", 129.99),
    ("Footwear", "Everyday Leather Sneaker", 89.00),
    ("Footwear", "Merino Wool Hiking Sock (3-pack)", 24.50),
    ("Apparel", "Organic Cotton Crew T-Shirt", 29.00),
    ("Apparel", "Packable Down Jacket", 199.00),
    ("Apparel", "Stretch Chino Trousers", 69.95),
    ("Accessories", "Recycled Nylon Daypack 22L", 79.00),
    ("Accessories", "Insulated Steel Water Bottle 750ml", 34.99),
    ("Home", "Stoneware Pour-Over Coffee Set", 59.00),
    ("Home", "Linen Duvet Cover, Queen", 149.00),
    ("Electronics", "Noise-Cancelling Wireless Headphones", 249.99),
    ("Electronics", "USB-C Fast Charger 65W", 39.99),
]
USER_AGENTS = [
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36",
        "Windows",
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36",
        "macOS",
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.4.1 Safari/605.1.15",
        None,
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.4.1 Mobile/15E148 Safari/604.1",
        None,
    ),
    (
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.6367.82 Mobile Safari/537.36",
        "Android",
    ),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0", None),
]
LOCALES = ["en-US", "en-GB", "de-DE", "fr-FR", "es-ES", "ja-JP"]
TIMEZONES = ["America/New_York", "Europe/London", "Europe/Berlin", "Europe/Paris", "Europe/Madrid", "Asia/Tokyo"]
CAMPAIGNS = [
    {"name": "spring_sale", "source": "google", "medium": "cpc", "term": "running shoes", "content": "ad-variant-b"},
    {"name": "newsletter_2026_11", "source": "newsletter", "medium": "email", "content": "hero-banner"},
    {"name": "black_friday", "source": "facebook", "medium": "paid_social", "content": "carousel-3"},
]
REFERRERS = ["", "https://www.google.com/", "https://www.bing.com/", "https://l.facebook.com/", SHOP + "/"]


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-").replace("--", "-")


def _product(index: int) -> dict[str, Any]:
    category, name, price = CATALOG[index % len(CATALOG)]
    slug = _slug(name)
    return {
        "product_id": f"{507000 + index * 37}",
        "sku": f"{category[:3].upper()}-{1000 + index * 7}-{'BLK' if index % 2 else 'NVY'}",
        "category": category,
        "name": name,
        "price": price,
        "url": f"{SHOP}/products/{slug}",
        "image_url": f"{CDN}/images/products/{slug}-800x800.jpg",
    }


@dataclass
class Visitor:
    """One browser (anonymousId), maybe logged in (userId), with its device and acquisition campaign."""

    anonymous_id: str
    user_id: str | None
    first: str
    last: str
    plan: str
    user_agent: str
    platform: str | None
    locale: str
    timezone: str
    ip: str
    campaign: dict[str, str] | None
    referrer: str


def _visitor(rng: random.Random) -> Visitor:
    ua, ua_platform = rng.choice(USER_AGENTS)
    locale_index = rng.randrange(len(LOCALES))
    return Visitor(
        anonymous_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        user_id=f"usr_{rng.getrandbits(48):012x}" if rng.random() < 0.45 else None,
        first=rng.choice(FIRST_NAMES),
        last=rng.choice(LAST_NAMES),
        plan=rng.choice(PLANS),
        user_agent=ua,
        platform=ua_platform,
        locale=LOCALES[locale_index],
        timezone=TIMEZONES[locale_index],
        ip=f"{rng.choice(['203.0.113', '198.51.100', '192.0.2'])}.{rng.randrange(1, 255)}",
        campaign=rng.choice(CAMPAIGNS) if rng.random() < 0.35 else None,
        referrer=rng.choice(REFERRERS),
    )


def _ms(moment: datetime) -> str:
    return format_timestamp(moment)


def _ajs_event(rng: random.Random, visitor: Visitor, index: int, when: datetime) -> dict[str, Any]:
    """An event as analytics.js (analytics-next) sends it from a browser."""
    roll = rng.random()
    product = _product(rng.randrange(len(CATALOG) * 3))
    if roll < 0.40:
        kind, path, title = "page", rng.choice(["/", "/collections/new", product["url"][len(SHOP) :]]), "Example Shop"
    else:
        kind, path, title = "track", product["url"][len(SHOP) :], f"{product['name']} | Example Shop"
    search = ""
    if visitor.campaign:
        utm = visitor.campaign
        search = f"?utm_source={utm['source']}&utm_medium={utm['medium']}&utm_campaign={utm['name']}"
    page = {"path": path, "referrer": visitor.referrer, "search": search, "title": title, "url": SHOP + path + search}
    context: dict[str, Any] = {
        "page": page,
        "userAgent": visitor.user_agent,
        "locale": visitor.locale,
        "library": {"name": "analytics.js", "version": "npm:next-1.70.0"},
        "timezone": visitor.timezone,
        "ip": visitor.ip,
    }
    if visitor.platform:
        context["userAgentData"] = {
            "brands": [
                {"brand": "Chromium", "version": "124"},
                {"brand": "Google Chrome", "version": "124"},
                {"brand": "Not-A.Brand", "version": "99"},
            ],
            "mobile": visitor.platform == "Android",
            "platform": visitor.platform,
        }
    if visitor.campaign:
        context["campaign"] = dict(visitor.campaign)
    event: dict[str, Any] = {
        "timestamp": _ms(when),
        "integrations": {},
        "type": kind,
        "messageId": f"ajs-next-{int(when.timestamp() * 1000)}-{TAG}-{index:03x}",
        "anonymousId": visitor.anonymous_id,
        "context": context,
        "writeKey": "wk_placeholder",
        "sentAt": _ms(when + timedelta(milliseconds=rng.randrange(20, 900))),
        "_metadata": {"bundled": ["Segment.io"], "unbundled": [], "bundledIds": []},
    }
    if visitor.user_id:
        event["userId"] = visitor.user_id
    if kind == "page":
        event["properties"] = dict(page)
        return event
    if roll < 0.72:
        event.update(event="Product Viewed", properties={**product, "currency": "USD"})
    elif roll < 0.84:
        cart = f"cart_{rng.getrandbits(40):010x}"
        event.update(event="Product Added", properties={**product, "cart_id": cart, "quantity": 1, "currency": "USD"})
    elif roll < 0.92:
        event.update(event="Order Completed", properties=_order(rng))
    else:
        event["type"] = "identify"
        event["traits"] = {
            "email": f"{visitor.first.lower()}.{visitor.last.lower()}@example.com",
            "name": f"{visitor.first} {visitor.last}",
            "plan": visitor.plan,
        }
        event["userId"] = visitor.user_id or f"usr_{rng.getrandbits(48):012x}"
    return event


def _order(rng: random.Random) -> dict[str, Any]:
    lines = []
    for position in range(rng.randrange(2, 4)):
        product = _product(rng.randrange(len(CATALOG) * 3))
        lines.append({**product, "quantity": rng.randrange(1, 3), "position": position + 1})
    subtotal = round(sum(p["price"] * p["quantity"] for p in lines), 2)
    return {
        "order_id": f"ORD-{rng.randrange(10**7, 10**8)}",
        "affiliation": "Example Shop",
        "total": round(subtotal + 5.99, 2),
        "revenue": subtotal,
        "shipping": 5.99,
        "tax": round(subtotal * 0.08, 2),
        "currency": "USD",
        "products": lines,
    }


def _python_events(rng: random.Random, visitors: list[Visitor], count: int, when: datetime) -> list[dict[str, Any]]:
    """Server-side events as the official analytics-python SDK builds them (its own message code, not sent)."""
    from segment.analytics.client import Client

    sdk = Client("wk_placeholder", send=False, sync_mode=True)
    out: list[dict[str, Any]] = []
    for index in range(count):
        visitor = rng.choice(visitors)
        user_id = visitor.user_id or f"usr_{rng.getrandbits(48):012x}"
        message_id = f"{TAG}-{index:03x}"  # analytics-python sends uuid4 strings: 36 characters, like this
        moment = when + timedelta(milliseconds=index * 37)
        roll = rng.random()
        if roll < 0.40:
            traits = {
                "email": f"{visitor.first.lower()}.{visitor.last.lower()}@example.com",
                "name": f"{visitor.first} {visitor.last}",
                "plan": visitor.plan,
            }
            _, msg = sdk.identify(user_id, traits, timestamp=moment, message_id=message_id)
        elif roll < 0.75:
            _, msg = sdk.track(user_id, "Order Completed", _order(rng), timestamp=moment, message_id=message_id)
        else:
            product = _product(rng.randrange(len(CATALOG) * 3))
            properties = {**product, "cart_id": f"cart_{rng.getrandbits(40):010x}", "quantity": 1, "currency": "USD"}
            _, msg = sdk.track(user_id, "Product Added", properties, timestamp=moment, message_id=message_id)
        out.append(json.loads(json.dumps(msg, default=str)))
    return out


@dataclass
class Corpus:
    """Request body templates (100 events each, ids carrying `TAG`) and their decoded form."""

    bodies: list[bytes]
    decoded: list[dict[str, Any]]
    sdk: list[str]


def build_corpus(write_key: str, templates: int = 24, seed: int = 7) -> Corpus:
    """Three in four bodies from analytics.js (browsers), one in four from analytics-python (a backend)."""
    rng = random.Random(seed)
    visitors = [_visitor(rng) for _ in range(400)]
    start = datetime.now(UTC) - timedelta(minutes=5)
    bodies, decoded, sdks = [], [], []
    for number in range(templates):
        when = start + timedelta(seconds=number)
        if number % 4 == 3:
            events = _python_events(rng, visitors, EVENTS_PER_REQUEST, when)
            body: dict[str, Any] = {"batch": events, "sentAt": _ms(datetime.now(UTC)), "writeKey": write_key}
            sdks.append("analytics-python")
        else:
            events = []
            for index in range(EVENTS_PER_REQUEST):
                visitor = rng.choice(visitors)
                event = _ajs_event(rng, visitor, index, when + timedelta(milliseconds=index * 53))
                event["writeKey"] = write_key
                events.append(event)
            body = {"batch": events, "sentAt": _ms(datetime.now(UTC))}
            sdks.append("analytics.js")
        decoded.append(body)
        bodies.append(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode())
    return Corpus(bodies, decoded, sdks)


def fresh_body(template: bytes) -> bytes:
    return template.replace(TAG_BYTES, uuid.uuid4().hex.encode())


# --- load generation --------------------------------------------------------------------------------------------


@dataclass
class Window:
    """Warm-up, then a measured window; work that completes inside it counts."""

    warmup: float
    duration: float
    start: float = 0.0
    stop_event: threading.Event = field(default_factory=threading.Event)

    def begin(self) -> None:
        self.start = time.perf_counter() + self.warmup

    @property
    def end(self) -> float:
        return self.start + self.duration

    def inside(self, moment: float) -> bool:
        return self.start <= moment < self.end


@dataclass
class LoadStats:
    counted: int = 0  # events accepted (or items written) inside the window
    accepted_total: int = 0  # events accepted (items written) in the whole run, warm-up included
    requests: int = 0  # requests completed inside the window
    bad_requests: int = 0  # whole run: non-200 answers, transport errors, unreadable answers
    bad_events: int = 0  # whole run: events of a 200 answer that were not `accepted`
    samples: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    def merge(self, other: LoadStats) -> None:
        self.counted += other.counted
        self.accepted_total += other.accepted_total
        self.requests += other.requests
        self.bad_requests += other.bad_requests
        self.bad_events += other.bad_events
        self.samples.extend(other.samples[: max(0, 5 - len(self.samples))])
        self.latencies.extend(other.latencies)


def run_threads(count: int, window: Window, work: Callable[[int, LoadStats], None]) -> LoadStats:
    """Run `work(thread_index, stats)` in `count` threads through warm-up and window; merged stats."""
    per_thread = [LoadStats() for _ in range(count)]
    failures: list[BaseException] = []

    def guarded(index: int) -> None:
        try:
            work(index, per_thread[index])
        except BaseException as exc:  # reported below: a dead client thread must not go unnoticed
            failures.append(exc)
            window.stop_event.set()

    threads = [threading.Thread(target=guarded, args=(i,), daemon=True) for i in range(count)]
    window.begin()
    for thread in threads:
        thread.start()
    while not window.stop_event.is_set() and time.perf_counter() < window.end:
        time.sleep(0.05)
    window.stop_event.set()
    for thread in threads:
        thread.join(timeout=120)
    if failures:
        raise RuntimeError(f"a load thread failed: {failures[0]!r}") from failures[0]
    total = LoadStats()
    for stats in per_thread:
        total.merge(stats)
    return total


def drive_collector(port: int, write_key: str, corpus: Corpus, clients: int, window: Window) -> LoadStats:
    auth = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()

    def client(index: int, stats: LoadStats) -> None:
        connection = http.client.HTTPConnection(HOST, port, timeout=60)
        turn = index
        try:
            while not window.stop_event.is_set():
                template = turn % len(corpus.bodies)
                turn += clients
                body = fresh_body(corpus.bodies[template])
                headers = {
                    "Content-Type": "application/json",
                    "Authorization": auth,
                    "User-Agent": "analytics-python/2.4.0" if corpus.sdk[template] == "analytics-python" else "bench",
                }
                sent = time.perf_counter()
                try:
                    connection.request("POST", "/v1/batch", body=body, headers=headers)
                    response = connection.getresponse()
                    data = response.read()
                except (OSError, http.client.HTTPException) as exc:
                    stats.bad_requests += 1
                    stats.samples.append(f"transport: {exc!r}")
                    connection.close()
                    time.sleep(0.05)  # a refused or reset connection must not turn into a busy loop
                    connection = http.client.HTTPConnection(HOST, port, timeout=60)
                    continue
                done = time.perf_counter()
                accepted = _accepted(response.status, data, stats)
                stats.accepted_total += accepted
                if window.inside(done):
                    stats.counted += accepted
                    stats.requests += 1
                    stats.latencies.append(done - sent)
        finally:
            connection.close()

    return run_threads(clients, window, client)


def paced_lag(rate: float, duration: float) -> tuple[float, int]:
    """A steady load of `rate` events/s for `duration` s on a fresh stack; returns (seconds the stream runner
    needed after the load to catch up, events accepted)."""
    serve = start_serve(2)
    try:
        corpus = build_corpus(serve.info.write_key, seed=23)
        auth = "Basic " + base64.b64encode(f"{serve.info.write_key}:".encode()).decode()
        connection = http.client.HTTPConnection(HOST, serve.port, timeout=60)
        stats = LoadStats()
        interval = EVENTS_PER_REQUEST / rate
        started = time.perf_counter()
        for turn in range(max(1, int(duration / interval))):
            due = started + turn * interval
            time.sleep(max(0.0, due - time.perf_counter()))
            body = fresh_body(corpus.bodies[turn % len(corpus.bodies)])
            connection.request(
                "POST", "/v1/batch", body=body, headers={"Content-Type": "application/json", "Authorization": auth}
            )
            response = connection.getresponse()
            stats.accepted_total += _accepted(response.status, response.read(), stats)
        connection.close()
        return wait_for_processing(serve), stats.accepted_total
    finally:
        discard_serve(serve)


def _accepted(status: int, data: bytes, stats: LoadStats) -> int:
    try:
        answer = json.loads(data)
        results = answer["results"]
    except (ValueError, KeyError, TypeError):
        stats.bad_requests += 1
        stats.samples.append(f"HTTP {status}: {data[:200]!r}")
        return 0
    accepted = sum(1 for r in results if r.get("status") == "accepted")
    if status != 200 or not answer.get("success") or len(results) != EVENTS_PER_REQUEST:
        stats.bad_requests += 1
        stats.samples.append(f"HTTP {status}: {data[:200]!r}")
    stats.bad_events += EVENTS_PER_REQUEST - accepted
    return accepted if status == 200 else 0


# --- the local stack --------------------------------------------------------------------------------------------


@dataclass
class Serve:
    process: subprocess.Popen[Any]
    data_dir: Path
    port: int
    workers: int
    info: Any


def start_serve(workers: int, data_dir: Path | None = None) -> Serve:
    """`footfall serve` on a free port, once its `serve.json` says it is ready (this start's, not a stale one).

    Args:
        data_dir: the data directory to serve (default: a fresh temporary one, removed by `discard_serve`).
    """
    footfall = Path(sys.executable).parent / "footfall"
    if not footfall.exists():
        raise RuntimeError(f"{footfall} not found: run `make setup` first")
    data_dir = data_dir or Path(tempfile.mkdtemp(prefix="footfall-bench-serve-"))
    (data_dir / INFO_FILE).unlink(missing_ok=True)
    port = free_port()
    log = (data_dir / "serve.log").open("w")
    command = [str(footfall), "serve", "--data-dir", str(data_dir), "--host", HOST, "--port", str(port)]
    command += ["--workers", str(workers)]
    process = _track(
        subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    )
    log.close()
    deadline = time.monotonic() + 90
    try:
        while True:
            info = read_info(data_dir)
            if info is not None and info.pid == process.pid:
                break
            if process.poll() is not None:
                raise RuntimeError(f"footfall serve exited ({process.returncode}): {_tail(data_dir / 'serve.log')}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"footfall serve did not get ready: {_tail(data_dir / 'serve.log')}")
            time.sleep(0.1)
        if not info.write_key or not info.collector_url.startswith(f"http://{HOST}:"):
            raise RuntimeError(f"unexpected serve.json: {info}")
        if not info.dynamodb_endpoint.startswith((f"http://{HOST}:", "sqlite:///")):
            raise RuntimeError(f"serve's database is not local: {info.dynamodb_endpoint}")
    except BaseException:
        discard_serve(Serve(process, data_dir, port, workers, None))
        raise
    return Serve(process, data_dir, port, workers, info)


def discard_serve(serve: Serve) -> None:
    stop_process(serve.process)
    shutil.rmtree(serve.data_dir, ignore_errors=True)


def _tail(path: Path) -> str:
    with contextlib.suppress(OSError):
        return path.read_text()[-600:]
    return ""


# --- figure 2: throughput ---------------------------------------------------------------------------------------


@dataclass
class Run:
    workers: int
    clients: int
    stats: LoadStats
    died: str | None = None  # `footfall serve` exited during the run: its exit code and log tail

    def rate(self, duration: float) -> float:
        return self.stats.counted / duration


def throughput(configs: list[tuple[int, int]], args: argparse.Namespace) -> tuple[list[Run], Run, Serve]:
    """Load each (workers, clients) configuration on its own fresh stack; keeps the best one's stack running."""
    runs: list[Run] = []
    best: tuple[Run, Serve] | None = None
    try:
        for workers, clients in configs:
            serve = start_serve(workers)
            try:
                corpus = build_corpus(serve.info.write_key)
                stats = drive_collector(
                    serve.port, serve.info.write_key, corpus, clients, Window(args.warmup, args.duration)
                )
            except BaseException:
                discard_serve(serve)
                raise
            run = Run(workers, clients, stats)
            if serve.process.poll() is not None:
                run.died = f"exit code {serve.process.returncode}: {_tail(serve.data_dir / 'serve.log')}"
            runs.append(run)
            p50 = statistics.median(stats.latencies) * 1000 if stats.latencies else float("nan")
            print(
                f"  serve --workers {workers}, {clients} clients: {run.rate(args.duration):,.0f} events/s "
                f"(p50 request {p50:.0f} ms, bad requests {stats.bad_requests}, "
                f"events not accepted {stats.bad_events}{', SERVE DIED: ' + run.died if run.died else ''})",
                flush=True,
            )
            if run.died is None and (best is None or run.rate(args.duration) > best[0].rate(args.duration)):
                if best is not None:
                    discard_serve(best[1])
                best = (run, serve)
            else:
                discard_serve(serve)
    except BaseException:
        if best is not None:
            discard_serve(best[1])
        raise
    if best is None:
        raise RuntimeError("`footfall serve` died in every configuration: " + " | ".join(str(r.died) for r in runs))
    return runs, best[0], best[1]


def template_items(corpus: Corpus) -> list[list[dict[str, Any]]]:
    """Serialized event items as the collector stores them, 25 a batch; each SK holds a replaceable uuid hex."""
    received = datetime.now(UTC)
    batches: list[list[dict[str, Any]]] = []
    for body in corpus.decoded:
        text = json.dumps(body)
        marker = uuid.uuid4().hex  # real-looking ids, so compressed bodies are as large as the real ones
        real = json.loads(text.replace(TAG, marker))
        envelope = parse_envelope(real)
        serialized = []
        for raw in batch_items(real):
            event = parse_event(raw, source_id="default", received_at=received, new_id=lambda: "", envelope=envelope)
            item = serialize(storage_items.event_to_item(event, retention=EVENT_RETENTION))
            item["SK"]["S"] = item["SK"]["S"].replace(marker, TAG)
            serialized.append(item)
        batches.extend(serialized[i : i + BATCH_WRITE_SIZE] for i in range(0, len(serialized), BATCH_WRITE_SIZE))
    return batches


RAW_SCHEMA = """
CREATE TABLE items (pk BLOB NOT NULL, sk BLOB NOT NULL, body TEXT NOT NULL, PRIMARY KEY (pk, sk)) WITHOUT ROWID;
"""


def sqlite_rate(corpus: Corpus, args: argparse.Namespace) -> LoadStats:
    """A raw SQLite insert loop: the same event items (JSON bodies, binary in base64) into a fresh WAL file with the
    embedded store's durability (`synchronous=NORMAL`), one transaction per 25, one thread: the file's ceiling."""
    import sqlite3

    def wire(item: dict[str, Any]) -> dict[str, Any]:
        return {
            name: {"B": base64.b64encode(value["B"]).decode()} if "B" in value else value
            for name, value in item.items()
        }

    batches = [[wire(item) for item in batch] for batch in template_items(corpus)]
    data_dir = Path(tempfile.mkdtemp(prefix="footfall-bench-sqlite-"))
    try:
        db = sqlite3.connect(data_dir / "raw.db", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(RAW_SCHEMA)
        window = Window(args.warmup, args.duration)
        window.begin()
        stats = LoadStats()
        turn = 0
        while time.perf_counter() < window.end:
            batch = batches[turn % len(batches)]
            turn += 1
            rows = []
            for item in batch:
                sk = item["SK"]["S"].replace(TAG, uuid.uuid4().hex)
                rows.append((item["PK"]["S"], sk, json.dumps({**item, "SK": {"S": sk}}, separators=(",", ":"))))
            started = time.perf_counter()
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT INTO items (pk, sk, body) VALUES (?, ?, ?)", rows)
            db.execute("COMMIT")
            done = time.perf_counter()
            stats.accepted_total += len(rows)
            if window.inside(done):
                stats.counted += len(rows)
                stats.requests += 1
                stats.latencies.append(done - started)
        db.close()
        return stats
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


# --- processing catch-up (throughput and steady-load runs) ----------------------------------------------------


def wait_for_processing(serve: Serve, *, timeout: float = 60.0) -> float:
    """Seconds, from now (the load just stopped), until processing has caught up.

    A marker event is posted after the load; the stream delivers records in order, so once the marker's customer
    profile exists, everything before it has been processed too.
    """
    started = time.monotonic()
    marker = f"bench-marker-{uuid.uuid4().hex[:10]}"
    auth = "Basic " + base64.b64encode(f"{serve.info.write_key}:".encode()).decode()
    connection = http.client.HTTPConnection(HOST, serve.port, timeout=60)
    connection.request(
        "POST",
        "/v1/track",
        body=json.dumps({"userId": marker, "event": "Bench Marker"}),
        headers={"Content-Type": "application/json", "Authorization": auth},
    )
    connection.getresponse().read()
    connection.close()
    store = DynamoTrackingStore(
        serve.info.table,
        client=make_client(endpoint_url=serve.info.dynamodb_endpoint, region=serve.info.region),
    )
    while time.monotonic() - started < timeout:
        if store.get_profiles([f"u:{marker}"]):
            return time.monotonic() - started
        time.sleep(0.2)
    return math.inf  # not caught up within the timeout: reported as such


# --- figure 3: import time --------------------------------------------------------------------------------------

HANDLER_IMPORT = """
import time
started = time.perf_counter()
import functions.collect.handler
print(time.perf_counter() - started)
"""
BOTO3_IMPORT = """
import time
started = time.perf_counter()
import boto3
boto3.client("dynamodb", region_name="us-east-1")
print(time.perf_counter() - started)
"""


def import_times(runs: int) -> tuple[list[float], list[float]]:
    env = dict(os.environ)
    env.update({"FOOTFALL_TABLE_NAME": "x", "AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_METRICS_DISABLED": "true"})
    env.pop("PYTHONPROFILEIMPORTTIME", None)

    def once(code: str) -> float:
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"import run failed: {done.stderr[-600:]}")
        return float(done.stdout.strip().splitlines()[-1])

    handler, boto = [], []
    for round_number in range(runs):
        # Interleaved, alternating which goes first, so drifting machine load hits both alike.
        if round_number % 2 == 0:
            handler.append(once(HANDLER_IMPORT))
            boto.append(once(BOTO3_IMPORT))
        else:
            boto.append(once(BOTO3_IMPORT))
            handler.append(once(HANDLER_IMPORT))
    return handler, boto


# --- report -----------------------------------------------------------------------------------------------------


@dataclass
class Row:
    what: str
    measured: str
    baseline: str
    ratio: str
    target: str
    met: str


def machine() -> dict[str, str]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return {
        "nproc": str(cores),
        "cpu": model,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "load": load,
    }


def render(
    rows: list[Row],
    header: dict[str, str],
    notes: list[str],
    ledgers: Sequence[str] = (),
    *,
    title: str = "# Footfall benchmark results",
) -> str:
    """A results page: the header, the table of rows, the notes, and the per-entity ledgers when there are any."""
    lines = [
        title,
        "",
        f"- date: {header['date']}",
        f"- machine: nproc {header['nproc']}, {header['cpu']}, {header['python']} "
        f"(load average at start: {header['load']})",
        f"- run time: {header['elapsed']}",
        f"- scale: {header['scale']}",
        "",
        "| what | measured | baseline (same run) | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {r.what} | {r.measured} | {r.baseline} | {r.ratio} | {r.target} | {r.met} |" for r in rows]
    lines += ["", "Notes:", ""] + [f"- {note}" for note in notes]
    if ledgers:
        lines += ["", "### Per-entity ledgers (write and read units, billed as AWS bills them)", "", *ledgers]
    return "\n".join(lines).rstrip("\n") + "\n"


def print_table(rows: list[Row]) -> None:
    columns = ["what", "measured", "baseline", "ratio", "target", "met"]
    cells = [columns] + [[r.what, r.measured, r.baseline, r.ratio, r.target, r.met] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    for number, row in enumerate(cells):
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if number == 0:
            print("  ".join("-" * w for w in widths))


def yes(flag: bool) -> str:
    return "yes" if flag else "no"


KEPT_SECTIONS = ("## Steady load", "## Mutation testing")
"""Sections of RESULTS.md written by other tools (`make load`, `make mutate`): a new `make bench` keeps them."""


def kept_sections(path: Path) -> str:
    """The sections of an existing results file that this run does not measure, from the first one on."""
    try:
        text = path.read_text()
    except OSError:
        return ""
    starts = [text.find(f"\n{title}") for title in KEPT_SECTIONS if f"\n{title}" in text]
    return "\n" + text[min(starts) + 1 :] if starts else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per load run (default 10)")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds before each window (default 3)")
    parser.add_argument("--workers", default="2", help="serve --workers values to try (default 2)")
    parser.add_argument("--clients", default="4", help="client concurrencies to try (default 4)")
    parser.add_argument("--steady-rate", type=float, default=200.0, help="events/s of the steady-load lag run")
    parser.add_argument("--import-runs", type=int, default=5, help="fresh interpreters per import figure (default 5)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="markdown file to write")
    parser.add_argument("--tui-customers", type=int, default=2_500, help="customers (x10 events) for TUI reads")
    parser.add_argument("--cost-customers", type=int, default=60, help="customers of the bulk history (default 60)")
    parser.add_argument("--live-rate", type=float, default=50.0, help="events/s of the live workloads (default 50)")
    parser.add_argument("--live-seconds", type=float, default=20.0, help="seconds of each live workload (default 20)")
    parser.add_argument("--worst-visits", type=int, default=1000, help="visits at once, worst case (default 1000)")
    parser.add_argument("--worst-seconds", type=float, default=10.0, help="seconds of the worst case (default 10)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _on_signal)

    began = time.perf_counter()
    header = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), **machine()}
    configs = [(int(w), int(c)) for w in args.workers.split(",") for c in args.clients.split(",")]
    try:
        print("import time (fresh interpreters)...", flush=True)
        phase = time.perf_counter()
        handler_times, boto_times = import_times(args.import_runs)
        print(f"  {time.perf_counter() - phase:.1f} s", flush=True)
        print(f"throughput: {len(configs)} configurations, {args.warmup:g} s warm-up + {args.duration:g} s each...")
        phase = time.perf_counter()
        runs, best, best_serve = throughput(configs, args)
        try:
            print(f"  {time.perf_counter() - phase:.1f} s", flush=True)
            print("processing: waiting for the stream runner to catch up after the best run...", flush=True)
            drain = wait_for_processing(best_serve, timeout=45)
            print(f"  caught up {drain:.1f} s after the load stopped", flush=True)
        finally:
            discard_serve(best_serve)
        print(
            f"write and read units (metering proxy): bulk {args.cost_customers} customers x 14 days, live "
            f"{args.live_seconds:g} s and worst {args.worst_seconds:g} s at {args.live_rate:g} events/s...",
            flush=True,
        )
        phase = time.perf_counter()
        workloads = cost_bench.measure(
            customers=args.cost_customers,
            rate=args.live_rate,
            seconds=args.live_seconds,
            worst_concurrent=args.worst_visits,
            worst_seconds=args.worst_seconds,
        )
        print(f"  {time.perf_counter() - phase:.1f} s", flush=True)
        print(f"processing lag at a steady {args.steady_rate:g} events/s for {args.duration:g} s...", flush=True)
        phase = time.perf_counter()
        steady_lag, steady_events = paced_lag(args.steady_rate, args.duration)
        print(f"  caught up {steady_lag:.1f} s after the load, {time.perf_counter() - phase:.1f} s", flush=True)
        print("baseline: raw SQLite insert loop, 1 thread...", flush=True)
        phase = time.perf_counter()
        raw = sqlite_rate(build_corpus("wk_placeholder"), args)
        print(f"  {raw.counted / args.duration:,.0f} items/s, {time.perf_counter() - phase:.1f} s", flush=True)
        print("analytics: funnel report read cost at 10k/100k/1M events...", flush=True)
        phase = time.perf_counter()
        figures = analytics_bench.measure()
        print(f"  {time.perf_counter() - phase:.1f} s", flush=True)
        print(f"TUI screens at {args.tui_customers:,} customers x 10 events + a heavy one...", flush=True)
        phase = time.perf_counter()
        screens, tui_info = tui_bench.measure(args.tui_customers)
        print(f"  {time.perf_counter() - phase:.1f} s", flush=True)
    finally:
        stop_all()

    duration = args.duration
    raw_rate_value = raw.counted / duration
    collector_rate = best.rate(duration)
    handler_ms = statistics.median(handler_times) * 1000
    boto_ms = statistics.median(boto_times) * 1000
    errors = sum(r.stats.bad_requests for r in runs), sum(r.stats.bad_events for r in runs)

    rows = cost_rows(workloads)
    rows += [
        Row(
            f"processing lag at a steady {args.steady_rate:g} events/s ({steady_events:,} events)",
            seconds_or_failed(steady_lag),
            "—",
            "—",
            f"< {LAG_TARGET:g} s",
            yes(steady_lag < LAG_TARGET),
        ),
        Row(
            "processing backlog after the best throughput run: stream runner caught up after the load",
            seconds_or_failed(drain),
            "—",
            "—",
            "— (reported: the collector outruns processing)",
            "—",
        ),
        Row(
            f"/v1/batch throughput, best (serve --workers {best.workers}, {best.clients} clients)",
            f"{collector_rate:,.0f} events/s",
            f"{raw_rate_value:,.0f} items/s (raw SQLite insert loop, 1 thread)",
            f"{collector_rate / raw_rate_value:.3f}",
            f"≥ {THROUGHPUT_TARGET:,.0f} events/s",
            yes(collector_rate >= THROUGHPUT_TARGET),
        ),
    ]
    rows += [
        Row(
            f"/v1/batch throughput (serve --workers {r.workers}, {r.clients} clients)",
            f"{r.rate(duration):,.0f} events/s",
            f"{raw_rate_value:,.0f} items/s",
            f"{r.rate(duration) / raw_rate_value:.3f}",
            "— (tried)",
            "—",
        )
        for r in runs
        if r is not best
    ]
    rows += [
        Row(
            "load errors: bad requests / events not accepted (all runs)",
            f"{errors[0]} / {errors[1]}",
            "—",
            "—",
            "0 / 0",
            yes(errors == (0, 0)),
        ),
        Row(
            f"collect handler module import (median of {args.import_runs})",
            f"{handler_ms:.0f} ms",
            f"{boto_ms:.0f} ms (import boto3 + DynamoDB client)",
            f"{handler_ms / boto_ms:.3f}",
            f"ratio ≤ {IMPORT_RATIO_TARGET:g}",
            yes(handler_ms / boto_ms <= IMPORT_RATIO_TARGET),
        ),
    ]
    rows += analytics_rows(figures)
    rows += tui_rows(screens, tui_info)
    header["elapsed"] = f"{time.perf_counter() - began:.0f} s"
    header["scale"] = (
        f"throughput {args.warmup:g} + {args.duration:g} s per configuration (workers {args.workers}, clients "
        f"{args.clients}); steady lag {args.steady_rate:g} events/s for {args.duration:g} s; bulk history "
        f"{args.cost_customers} customers x 14 days; live {args.live_rate:g} events/s for {args.live_seconds:g} s; "
        f"worst {args.worst_visits} visits at once, {args.live_rate:g} events/s for {args.worst_seconds:g} s; "
        f"TUI {args.tui_customers:,} customers x 10 events + a heavy merged customer"
    )
    best_latency = statistics.median(best.stats.latencies) * 1000 if best.stats.latencies else float("nan")
    notes = [
        "Write and read units (benchmarks/cost_bench.py, benchmarks/meter.py): each workload runs a fresh moto "
        "server (stock) with the metering proxy in front of it and `footfall serve --endpoint-url <proxy>`, so every "
        "request of the collector workers, the stream runner and the scheduler is billed as AWS bills it (item "
        "size per 1 KB written / 4 KB read, the larger of before and after, transaction actions 2x, index entries, "
        "deletes, failed conditions; the rules and their sources are in meter.py's docstring). The stream runner "
        f"batches like the template's mappings (processing: BatchSize 1000, {cost_bench.BATCH_WINDOW:g} s window; "
        f"the counter fold every {cost_bench.FOLD_WINDOW:g} s). Events come from shared/simulate/. Per-entity "
        "ledgers below the table; `event/default` are the collector's event items, `event/footfall` the Audience "
        "Entered/Exited events processing writes, `pk:ID`/`pk:CUSTOMER` reads of items that did not exist "
        "(identity-link and first-profile lookups). Naive 3 = each event's own event "
        "item units + 1 de-duplication marker + 1 profile update.",
        "Events: 3 of 4 bodies as analytics.js sends them from browsers (page calls, Product Viewed, Product Added "
        "with cart_id, Order Completed with 2-3 products, identify with email/name/plan; context.page, userAgent, "
        "userAgentData, locale, timezone, ip, UTM campaign), 1 of 4 built by the official analytics-python SDK "
        "(identify, Order Completed, Product Added). 100 events per request, unique messageIds.",
        f"Throughput: {args.warmup:g} s warm-up then {duration:g} s measured per configuration, each on a fresh "
        "`footfall serve` (own data dir, the embedded SQLite database); keep-alive http.client threads "
        f"in this process; events counted from `accepted` answers completed in the window. Best run: "
        f"{best.stats.requests:,} requests, median request latency {best_latency:.0f} ms.",
        f"Baseline throughput: a raw SQLite insert loop in this process (fresh WAL file, synchronous=NORMAL as the "
        f"embedded store), {BATCH_WRITE_SIZE} event items per transaction (event_to_item on the same kind of parsed "
        "events, unique keys, JSON bodies), one thread, same warm-up and window: the file's ceiling. The collector's "
        "path does more per event: parsing and validating the call, a conditional put each (its own transaction, "
        "with the change-feed row), the suppression read, HTTP.",
        "Import: `python -c` fresh interpreters, timed inside the child with time.perf_counter, interleaved; "
        f"handler {', '.join(f'{t * 1000:.0f}' for t in handler_times)} ms; "
        f"boto3 {', '.join(f'{t * 1000:.0f}' for t in boto_times)} ms.",
    ]
    notes.append(
        "Analytics (benchmarks/analytics_bench.py): the purchase funnel's counter items that processing keeps for "
        "10k/100k/1M synthetic shop events over 30 days (each customer's cells, summed) are put into a fresh "
        "embedded database (SQLite, opened in this process as `footfall serve`'s default is); a 30-day report is "
        "read 5 times (requests counted with a botocore-style hook: the definitions GetItem and one Query; median "
        "latency shown)."
    )
    check = tui_info["check"]
    notes.append(
        f"TUI (benchmarks/tui_bench.py): {tui_info['items']:,} items in a table made from TABLE_DEFINITION (stream "
        f"enabled) in a fresh embedded SQLite database, in {tui_info['fill_seconds']:.0f} s "
        f"({tui_info['sqlite_bytes'] / 2**20:.0f} MB with its WAL): {check.customers:,} customers, "
        f"{check.events:,} events (one heavy merged customer with {len(tui_bench.HEAVY_IDENTITIES)} identities and "
        f"{len(tui_bench.HEAVY_IDENTITIES) * tui_bench.HEAVY_EVENTS_EACH:,} events and two logins, plus its merged "
        f"tombstone), profiles folded by processing's code, links, {tui_info['counter_items']:,} counter items (the "
        "customers' cells and segment sizes, summed as the fold sums them); every customer evaluated against the "
        "starter segments through the product's write path "
        f"({tui_info['transitions']:,} entries: memberships, due list, audience events, history; sizes "
        f"{tui_info['segment_sizes']}), then their analytics cells items (`update_customers`); "
        f"{tui_bench.FAILED_EVENTS} failed events; {tui_bench.LIVE_ITEMS} live "
        "items. Each screen's data-source reads (what it calls when it opens) timed, median of 3, requests counted "
        "with a botocore-style hook, read units from one metered pass (benchmarks/meter.py), the file opened "
        "directly as `footfall tui` opens `footfall serve`'s default. Rendering is not included. Check path: "
        "`services.analytics.recompute` (what `funnels show --check` and `retention --check` run) on that table; "
        "baseline: its pure part (`domain.analytics.recompute`) on the same events already in memory."
    )
    samples = [s for r in runs for s in r.stats.samples][:3]
    if samples:
        notes.append("First load errors: " + "; ".join(f"`{s}`" for s in samples))
    for r in runs:
        if r.died:
            notes.append(
                f"`footfall serve --workers {r.workers}` ({r.clients} clients) died during its run: {r.died!r}"
            )
    ledgers = [line for workload in workloads for line in cost_bench.ledger_table(workload)]
    print()
    print_table(rows)
    args.output.write_text(render(rows, header, notes, ledgers) + kept_sections(args.output))
    print(f"\nwritten to {args.output}")
    failures = cost_bench.problems(workloads)
    failures += [
        f"{what}: processing did not catch up"
        for what, lag in (("steady load", steady_lag), ("best run", drain))
        if math.isinf(lag)
    ]
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


def tui_rows(screens: list[tui_bench.ScreenFigure], info: dict[str, Any]) -> list[Row]:
    check = info["check"]
    scale = f"{check.customers:,} customers, {check.events:,} events"
    rows = [
        Row(
            f"TUI screen `{f.screen}` ({f.path}): reads at {scale}",
            f"{f.requests} requests, {f.ms:.0f} ms, {f.ru:.1f} RU",
            "—",
            "—",
            f"≤ {tui_bench.SCREEN_REQUEST_TARGET} requests, < {tui_bench.SCREEN_MS_TARGET:g} ms",
            yes(f.requests <= tui_bench.SCREEN_REQUEST_TARGET and f.ms < tui_bench.SCREEN_MS_TARGET),
        )
        for f in screens
    ]
    rows.append(
        Row(
            f"check path (`--check`: services.analytics.recompute) at {scale}",
            f"{check.seconds:.1f} s, {check.requests:,} requests",
            f"{check.baseline_seconds:.2f} s (domain recompute, events in memory)",
            f"{check.seconds / check.baseline_seconds:.1f}",
            f"≤ {tui_bench.CHECK_TARGET_SECONDS:g} s",
            yes(check.seconds <= tui_bench.CHECK_TARGET_SECONDS),
        )
    )
    return rows


def seconds_or_failed(seconds: float) -> str:
    return "FAILED (did not catch up)" if math.isinf(seconds) else f"{seconds:.1f} s"


def cost_rows(workloads: list[cost_bench.Workload]) -> list[Row]:
    """Write and read units per event of each workload, against the design's targets; FAILED when not caught up."""
    rows = []
    for workload in workloads:
        events = f"{workload.events:,} events"
        naive = _naive(workload)
        target = cost_bench.TARGETS[workload.name]
        if not workload.caught_up:
            rows.append(Row(f"WU per event, {workload.name} ({events})", "FAILED", "—", "—", f"≤ {target:g}", "no"))
            continue
        rows.append(
            Row(
                f"WU per event end-to-end, {workload.name} ({events}, caught up {workload.lag:.1f} s after)",
                f"{workload.wu:.2f} WU",
                f"{naive:.2f} WU (naive 3)",
                f"{workload.wu / naive:.2f}",
                f"≤ {target:g} WU",
                yes(workload.wu <= target),
            )
        )
        rows.append(
            Row(
                f"WU per accepted event, collect path, {workload.name}",
                f"{workload.collect_wu:.2f} WU",
                f"{naive:.2f} WU (naive 3)",
                f"{workload.collect_wu / naive:.2f}",
                f"≤ {cost_bench.TARGETS['collect']:g} WU",
                yes(workload.collect_wu <= cost_bench.TARGETS["collect"]),
            )
        )
        rows.append(
            Row(
                f"RU per accepted event, collect path (at most: shared entities), {workload.name}",
                f"{workload.collect_ru:.2f} RU",
                "—",
                "—",
                "—",
                "—",
            )
        )
        rows.append(
            Row(
                f"round trips per customer-batch (processing's requests / profile writes), {workload.name}",
                f"{workload.round_trips:.2f}",
                "—",
                "—",
                f"≤ {cost_bench.TARGETS['round_trips']:g}",
                yes(workload.round_trips <= cost_bench.TARGETS["round_trips"]),
            )
        )
        rows.append(
            Row(
                f"RU per event end-to-end, {workload.name}",
                f"{workload.ru:.2f} RU",
                "—",
                "—",
                f"≤ {cost_bench.TARGETS['reads']:g} RU",
                yes(workload.ru <= cost_bench.TARGETS["reads"]),
            )
        )
    return rows


def _naive(workload: cost_bench.Workload) -> float:
    """Naive 3 for the same events: their own event-item units, a de-duplication marker and a profile update each."""
    events = sum(
        line.total_wu
        for name, line in workload.ledger.entities.items()
        if name.startswith("event/") and name != cost_bench.PROCESSING_EVENTS
    )
    return events / max(workload.events, 1) + 2


def analytics_rows(figures: analytics_bench.Figures) -> list[Row]:
    smallest = min(figures.reads)
    rows = [
        Row(
            f"funnel report read, 30 days, {events:,} events ({items} counter items)",
            f"{requests} requests, {ms:.0f} ms",
            f"{figures.reads[smallest][0]} requests at {smallest:,} events",
            f"{requests / figures.reads[smallest][0]:.2f}",
            f"≤ {analytics_bench.READ_REQUEST_TARGET} requests, flat",
            yes(requests <= analytics_bench.READ_REQUEST_TARGET and requests == figures.reads[smallest][0]),
        )
        for events, (requests, ms, items) in sorted(figures.reads.items())
    ]
    return rows


if __name__ == "__main__":
    sys.exit(main())
