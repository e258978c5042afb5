"""`make load`: load a fresh `footfall serve` on loopback, flat out or at a steady rate, and measure it.

Two modes (not part of `make test`: it is a measurement, and takes minutes):

- flat out (no `--rate`): N concurrent clients send bench corpus batches as fast as the collector answers for
  `--duration` s (default 30); reports accepted events/s, p50/p99 request latency, errors (target 0) and how long
  processing needed to catch up once the load stopped.
- steady (`--rate R`): the simulator's live traffic (`shared.simulate.live`: new and returning visitors, carts,
  orders, identifies, e-mail opens and clicks) paced at R events/s for `--duration` s (default 120), and issue
  #15's two figures measured end to end, as a user sees them:
  - the lag curve: every 5 s, during the load and after it until processing has caught up, a marker event of a
    fresh userId is posted, and its lag is the time until that customer's profile exists (several markers are in
    flight at once when the lag exceeds 5 s, so samples stay 5 s apart);
  - segment latency: every 10 s during the load, a deciding event for a starter segment that one event enters
    (`--segment`, default `new_customers`) from a fresh userId, timed until the membership is `in` in the store
    (and until its `Audience Entered` is published to the local outbox);
  - time-based latency: a segment decided by a deadline (`load_timed_abandoners`: a cart not ordered within
    `TIMED_WINDOW` s, applied at the start), probed every 10 s during the load by a fresh userId's cart, timed from
    its deadline until the membership is `in` (target `--timed-target`, default 10 s: issue #15's local bound);
  - the collector's p50/p99 `/v1/batch` latency at that rate.
  Exit status 1 when a lag sample reached `--lag-target` (default 5 s), a segment entry took longer than
  `--segment-target` (default 5 s) or a time-based one longer than `--timed-target` after its deadline, a probe
  was never seen, or an event was not accepted.

`--json PATH` writes the summary's figures as JSON.

    python benchmarks/load.py [--clients 8] [--duration 30] [--workers 2] [--catch-up 300]
    python benchmarks/load.py --rate 200 [--duration 120] [--lag-target 5] [--segment new_customers] [--json out.json]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import math
import signal
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SAMPLE_EVERY = 5.0
"""Seconds between lag markers."""
SEGMENT_EVERY = 10.0
"""Seconds between segment probes (during the load only)."""
POLL_EVERY = 0.25
"""Seconds between two looks at the store for the probes in flight (the resolution of every figure)."""
HOST = "127.0.0.1"

SEGMENT_PROBES: dict[str, tuple[str, dict[str, Any]]] = {
    "new_customers": ("Signed Up", {"method": "email"}),
    "heavy_spenders": ("Order Completed", {"order_id": "", "revenue": 640.0, "currency": "USD"}),
    "email_engaged": ("Email Opened", {"campaign": "bench"}),
}
"""Starter segments a single event from a new customer enters, and that event (name, properties)."""
TIMED_SEGMENT = "load_timed_abandoners"
TIMED_WINDOW = 5.0
"""Seconds after a probe's cart until it is due (the rule's window)."""
TIMED_EVENT = "Load Cart Probe"
TIMED_RULES = {
    "segments": [
        {
            "id": TIMED_SEGMENT,
            "name": "Load test: carts not ordered within 5 s",
            "rule": {
                "absence": {
                    "did": {"event": TIMED_EVENT},
                    "then_not": {"event": "Order Completed"},
                    "within": f"{TIMED_WINDOW:g}s",
                    "match": ["cart_id"],
                }
            },
        }
    ]
}
"""Applied at the start of a steady run beside the starters (which it leaves as they are)."""


# --- pure helpers (tested in tests/unit/test_load_tool.py) --------------------------------------------------------


def percentile(values: Iterable[float], fraction: float) -> float:
    """Nearest-rank percentile (`fraction` in 0..1) of the values; NaN when there are none."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


class Ticker:
    """Moments `start`, `start + every`, ... ; `due(now)` is true once per moment reached. A moment missed while
    the caller was busy is dropped (the next one stays on the grid), so a slow loop never sends a burst."""

    def __init__(self, start: float, every: float) -> None:
        self.every = every
        self.next = start

    def due(self, now: float) -> bool:
        if now < self.next:
            return False
        missed = math.floor((now - self.next) / self.every)
        self.next += (missed + 1) * self.every
        return True


@dataclass
class Probe:
    """One event posted to be watched for: a lag marker or a segment's deciding event."""

    name: str
    """Its userId (fresh: nothing else names this customer)."""
    sent: float
    """Monotonic clock when the POST began."""
    t: float
    """Seconds since the load began."""
    phase: str = "load"
    """`load` (sent during the load) or `after` (after it stopped)."""
    seen: float | None = None
    """Monotonic clock when it was first seen processed."""
    published: float | None = None
    """Segment probes: monotonic clock when its `Audience Entered` reached the outbox."""
    after: float = 0.0
    """Seconds after `sent` from which its latency counts (a time-based probe: its window, until its deadline)."""
    expired: bool = False
    """Not seen within the timeout."""
    rejected: str | None = None
    """The collector did not accept it (and why)."""

    @property
    def customer_id(self) -> str:
        return f"u:{self.name}"

    @property
    def latency(self) -> float | None:
        return None if self.seen is None else self.seen - self.sent - self.after

    @property
    def publish_latency(self) -> float | None:
        return None if self.published is None else self.published - self.sent - self.after

    @property
    def pending(self) -> bool:
        return self.seen is None and not self.expired and self.rejected is None


class InFlight:
    """Probes posted, one per sample; several may be in flight at once (when the lag exceeds the interval)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.probes: list[Probe] = []

    def add(self, probe: Probe) -> Probe:
        self.probes.append(probe)
        return probe

    def pending(self) -> list[Probe]:
        return [p for p in self.probes if p.pending]

    def mark_seen(self, names: Iterable[str], now: float) -> list[Probe]:
        """Record the probes of these userIds as seen at `now` (first sighting only); returns those newly seen."""
        wanted = set(names)
        newly = [p for p in self.pending() if p.name in wanted]
        for probe in newly:
            probe.seen = now
        return newly

    def expire(self, now: float) -> list[Probe]:
        """Give up on probes older than the timeout; returns them."""
        late = [p for p in self.pending() if now - p.sent >= self.timeout]
        for probe in late:
            probe.expired = True
        return late

    @property
    def settled(self) -> bool:
        return not self.pending()


@dataclass
class Curve:
    """Statistics of the lag samples against a target."""

    samples: int
    seen: int
    max: float
    p95: float
    over: list[Probe] = field(default_factory=list)
    """Samples whose lag reached the target, and those never seen (their lag is at least the timeout)."""


def curve_stats(probes: list[Probe], target: float) -> Curve:
    """Max and p95 of the seen samples; a sample never seen counts as infinite (and over the target)."""
    lags = [math.inf if p.latency is None else p.latency for p in probes if p.rejected is None]
    seen = [p.latency for p in probes if p.latency is not None]
    over = [p for p in probes if p.rejected is None and (p.latency is None or p.latency >= target)]
    return Curve(
        samples=len(lags),
        seen=len(seen),
        max=max(lags) if lags else math.nan,
        p95=percentile(lags, 0.95),
        over=over,
    )


def lag_table(probes: list[Probe], target: float) -> list[str]:
    """`t (s) | lag (s)` lines, one per sample, flagged when at or over the target or never seen."""
    lines = ["  t (s) | lag (s)", "  ------+--------"]
    for probe in probes:
        if probe.rejected is not None:
            lag, note = "   -  ", f"not accepted: {probe.rejected}"
        elif probe.latency is None:
            lag, note = "   -  ", "NOT SEEN (gave up)" if probe.expired else "not seen yet"
        else:
            lag, note = f"{probe.latency:6.1f}", f">= {target:g} s target" if probe.latency >= target else ""
        phase = "after the load" if probe.phase == "after" else ""
        extra = "; ".join(x for x in (phase, note) if x)
        lines.append(f"  {probe.t:5.0f} | {lag}" + (f"   {extra}" if extra else ""))
    return lines


def seconds(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return "never (gave up)" if math.isinf(value) else f"{value:.1f} s"


def rounded(value: float | None, digits: int = 1) -> float | None:
    """JSON-friendly: None for a missing or infinite figure; one decimal, as printed (no double rounding)."""
    if value is None or math.isnan(value) or math.isinf(value):
        return None
    return round(value, digits)


def segment_figures(probes: list[Probe]) -> dict[str, Any]:
    entered = [p.latency for p in probes if p.latency is not None]
    published = [p.publish_latency for p in probes if p.publish_latency is not None]
    missing = sum(1 for p in probes if p.latency is None)
    return {
        "probes": len(probes),
        "entered": len(entered),
        "never_entered": missing,
        "p50_s": rounded(statistics.median(entered)) if entered else None,
        "max_s": rounded(math.inf if missing else max(entered)) if probes else None,
        "published": len(published),
        "published_p50_s": rounded(statistics.median(published)) if published else None,
        "published_max_s": rounded(max(published)) if published else None,
    }


RATE_SHORTFALL = 0.95
"""A run that sent less than this share of the asked rate did not test that rate."""


def failures(figures: dict[str, Any]) -> list[str]:
    """Why the run misses issue #15's targets (empty when it meets them)."""
    found = []
    lag = figures["lag"]
    if lag["over_target"]:
        found.append(
            f"processing lag reached the {lag['target_s']:g} s target in {lag['over_target']} of {lag['samples']} "
            f"samples (max {seconds(lag['max_s'] if lag['max_s'] is not None else math.inf)})"
        )
    if figures["caught_up_after_stop_s"] is None:
        found.append("processing did not catch up after the load stopped")
    segment = figures["segment"]
    found += _entry_failures(segment, "segment probes", "the deciding event")
    if segment["probes"] == 0:
        found.append("no segment probe was sent (the load was shorter than the probe interval)")
    if (timed := figures.get("timed")) is not None:
        found += _entry_failures(timed, "time-based probes", "the deadline")
    traffic = figures["traffic"]
    asked = figures.get("rate")
    if asked and traffic["sending_events_per_second"] < RATE_SHORTFALL * asked:
        found.append(
            f"the load reached only {traffic['sending_events_per_second']:,.0f} of the {asked:,.0f} events/s asked: "
            "every other figure is for that rate"
        )
    if traffic["rejected"] or traffic["not_stored"]:
        found.append(f"{traffic['rejected'] + traffic['not_stored']} events not accepted")
    if figures.get("error"):
        found.append(f"the run stopped early: {figures['error']}")
    return found


def _entry_failures(probed: dict[str, Any], probes: str, since: str) -> list[str]:
    """Why a kind of segment probe misses its target: some never entered, or one entered too late."""
    found = []
    if probed["never_entered"]:
        found.append(f"{probed['never_entered']} of {probed['probes']} {probes} never entered {probed['id']}")
    if probed["max_s"] is not None and probed["max_s"] > probed["target_s"]:
        found.append(
            f"segment {probed['id']} entered up to {probed['max_s']:.1f} s after {since} "
            f"(target <= {probed['target_s']:g} s)"
        )
    return found


def summary_lines(figures: dict[str, Any]) -> list[str]:
    traffic, lag, segment, collector = figures["traffic"], figures["lag"], figures["segment"], figures["collector"]
    lag_max = seconds(math.inf if lag["max_s"] is None and lag["samples"] else lag["max_s"])
    lag_p95 = seconds(math.inf if lag["p95_s"] is None and lag["samples"] else lag["p95_s"])
    segment_max = seconds(math.inf if segment["never_entered"] else segment["max_s"])
    return [
        f"rate achieved           {traffic['sending_events_per_second']:,.1f} events/s in the "
        f"{figures['duration_s']:g} s window (target {figures['rate']:g}); {traffic['events_per_second']:,.1f} "
        "events/s until all were answered "
        f"({traffic['seconds']:.0f} s)",
        f"events accepted         {traffic['recorded']:,} of {traffic['sent']:,} sent ({traffic['accepted']:,} "
        f"batch events accepted, {traffic['opens']} e-mail opens and {traffic['clicks']} clicks recorded; "
        f"{traffic['duplicate']} duplicate, {traffic['rejected']} rejected, {traffic['not_stored']} not stored)",
        f"processing lag          max {lag_max}, p95 {lag_p95} over {lag['samples']} samples "
        f"({lag['over_target']} at or over the {lag['target_s']:g} s target)",
        f"segment {segment['id']:<15} p50 {seconds(segment['p50_s'])}, max {segment_max} "
        f"to enter ({segment['entered']} of {segment['probes']} probes; target <= {segment['target_s']:g} s)",
        f"Audience Entered out    p50 {seconds(segment['published_p50_s'])}, max "
        f"{seconds(segment['published_max_s'])} to reach the outbox ({segment['published']} of {segment['probes']})",
        *(
            [
                f"time-based (deadline)   p50 {seconds(timed['p50_s'])}, max "
                f"{seconds(math.inf if timed['never_entered'] else timed['max_s'])} after the deadline to enter "
                f"{timed['id']} ({timed['entered']} of {timed['probes']} probes; target <= {timed['target_s']:g} s); "
                f"in the outbox p50 {seconds(timed['published_p50_s'])}, max {seconds(timed['published_max_s'])}"
            ]
            if (timed := figures.get("timed"))
            else []
        ),
        f"collector /v1/batch     p50 {collector['p50_ms']:.0f} ms, p99 {collector['p99_ms']:.0f} ms "
        f"({collector['requests']} requests of up to 100 events)"
        if collector["requests"]
        else "collector /v1/batch     no request answered",
        f"caught up after stop    {seconds(figures['caught_up_after_stop_s'])}",
        *(
            [
                f"this tool               {tool['cpu_share_of_a_core']:.0%} of a core (simulator and probes); "
                f"slowest look at the store {tool['slowest_look_ms']} ms (figures are +/- {POLL_EVERY:g} s plus that)"
            ]
            if (tool := figures.get("tool"))
            else []
        ),
    ]


# --- steady-rate run ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def timed_batches(latencies: list[float]) -> Iterator[None]:
    """Time every answered `/v1/batch` request the simulator makes in this process (its own client, wrapped)."""
    from shared import simulate

    original = simulate.CollectorClient.batch

    def timed(self: Any, payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
        started = time.perf_counter()
        results = original(self, payloads)
        latencies.append(time.perf_counter() - started)
        return results

    simulate.CollectorClient.batch = timed  # type: ignore[method-assign]
    try:
        yield
    finally:
        simulate.CollectorClient.batch = original  # type: ignore[method-assign]


class Poster:
    """Posts single probe events with `POST /v1/track` over one keep-alive connection."""

    def __init__(self, port: int, write_key: str) -> None:
        self.port = port
        self.auth = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
        self.connection: http.client.HTTPConnection | None = None

    def track(self, user_id: str, event: str, properties: dict[str, Any]) -> str | None:
        """Post it; None when accepted, else why not."""
        body = json.dumps(
            {"userId": user_id, "event": event, "properties": properties, "messageId": uuid.uuid4().hex}
        ).encode()
        headers = {"Content-Type": "application/json", "Authorization": self.auth}
        for attempt in (1, 2):
            if self.connection is None:
                self.connection = http.client.HTTPConnection(HOST, self.port, timeout=60)
            try:
                self.connection.request("POST", "/v1/track", body=body, headers=headers)
                answer = self.connection.getresponse()
                data = answer.read()
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                if attempt == 2:
                    return f"transport: {exc!r}"
                continue
            if answer.will_close:
                self.close()
            if answer.status == 200:
                return None
            return f"HTTP {answer.status}: {data[:200]!r}"
        return "unreachable"

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


class Outbox:
    """Reads the local outbox (`outbox.jsonl`, where serve publishes Audience Entered/Exited) as it grows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def entered(self, segment_id: str) -> set[str]:
        """userIds of the `Audience Entered` events of `segment_id` appended since the last call."""
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
        except OSError:
            return set()
        complete = chunk.rfind(b"\n") + 1
        self.offset += complete
        found = set()
        for line in chunk[:complete].splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                properties = event.get("properties") or {}
                if event.get("event") == "Audience Entered" and properties.get("audience_key") == segment_id:
                    found.add(str(event.get("userId")))
        return found


class Probing:
    """The probes of a steady run: lag markers on a 5 s grid (during the load, then until the marker posted when
    it stopped has come through), segment probes every 10 s during the load, and the looks for them."""

    def __init__(
        self, args: argparse.Namespace, poster: Poster, store: Any, outbox: Outbox, run: str, started: float
    ) -> None:
        self.args, self.poster, self.store, self.outbox, self.run = args, poster, store, outbox, run
        self.timed_outbox = Outbox(outbox.path)  # a reader of its own: each reads the lines once
        self.started = started
        self.markers, self.segment_probes = InFlight(args.catch_up), InFlight(args.catch_up)
        self.timed_probes = InFlight(args.catch_up)
        self.lag_tick = Ticker(started, SAMPLE_EVERY)
        self.segment_tick = Ticker(started + SEGMENT_EVERY / 2, SEGMENT_EVERY)
        self.timed_tick = Ticker(started + SEGMENT_EVERY / 4, SEGMENT_EVERY)
        self.stopped_at: float | None = None
        self.stop_marker: Probe | None = None
        self.deadline = math.inf
        self.slowest_look = 0.0
        """Seconds of the slowest look: the figures' resolution is POLL_EVERY plus this."""

    def post(self, book: InFlight, kind: str, event: str, properties: dict[str, Any]) -> Probe:
        now = time.monotonic()
        name = f"load-{kind}-{self.run}-{len(book.probes):03d}"
        probe = book.add(Probe(name, now, now - self.started, "load" if self.stopped_at is None else "after"))
        probe.rejected = self.poster.track(name, event, properties)
        return probe

    def load_stopped(self, now: float) -> None:
        """Everything sent has been answered: post the catch-up marker and keep sampling until it comes through."""
        self.stopped_at = now
        self.stop_marker = self.post(self.markers, "lag", "Load Marker", {})
        self.lag_tick = Ticker(now + SAMPLE_EVERY, SAMPLE_EVERY)
        self.deadline = now + self.args.catch_up

    def send_due(self, now: float, *, loading: bool) -> None:
        sampling = self.stopped_at is None or (self.stop_marker is not None and self.stop_marker.pending)
        if sampling and self.lag_tick.due(now):
            self.post(self.markers, "lag", "Load Marker", {})
        if loading and self.segment_tick.due(now):
            event, properties = SEGMENT_PROBES[self.args.segment]
            properties = dict(properties)
            if "order_id" in properties:
                properties["order_id"] = uuid.uuid4().hex[:12]
            self.post(self.segment_probes, "segment", event, properties)
        if loading and self.timed_tick.due(now):
            probe = self.post(self.timed_probes, "timed", TIMED_EVENT, {"cart_id": uuid.uuid4().hex[:12]})
            probe.after = TIMED_WINDOW

    def look(self) -> None:
        """One look at the store (and the outbox) for every probe in flight; gives up on those too old."""
        began = time.monotonic()
        self._look()
        self.slowest_look = max(self.slowest_look, time.monotonic() - began)

    def _look(self) -> None:
        pending = self.markers.pending()
        if pending:
            found = self.store.get_profiles([p.customer_id for p in pending])
            self.markers.mark_seen((p.name for p in pending if p.customer_id in found), time.monotonic())
        for probe in self.segment_probes.pending():
            if self.args.segment in self.store.memberships_of(probe.customer_id):
                self.segment_probes.mark_seen([probe.name], time.monotonic())
        for probe in self.timed_probes.pending():
            if time.monotonic() >= probe.sent + probe.after and TIMED_SEGMENT in self.store.memberships_of(
                probe.customer_id
            ):
                self.timed_probes.mark_seen([probe.name], time.monotonic())
        published = self.outbox.entered(self.args.segment)
        timed_out = self.timed_outbox.entered(TIMED_SEGMENT)
        now = time.monotonic()
        for book, announced in ((self.segment_probes, published), (self.timed_probes, timed_out)):
            for probe in book.probes:
                if probe.published is None and probe.name in announced:
                    probe.published = now
        self.markers.expire(now)
        self.segment_probes.expire(now)
        self.timed_probes.expire(now)

    @property
    def caught_up(self) -> float | None:
        """Seconds from the load's stop until its catch-up marker came through (None: not, or not yet)."""
        if self.stop_marker is None or self.stop_marker.seen is None or self.stopped_at is None:
            return None
        return self.stop_marker.seen - self.stopped_at

    def finished(self, now: float) -> bool:
        if now >= self.deadline:
            return True
        done = self.stop_marker is not None and not self.stop_marker.pending
        unpublished = [
            p
            for p in [*self.segment_probes.probes, *self.timed_probes.probes]
            if p.seen is not None and p.published is None and now - p.sent < self.args.catch_up
        ]
        settled = self.markers.settled and self.segment_probes.settled and self.timed_probes.settled
        return done and settled and not unpublished

    def newest_lag(self) -> float | None:
        seen = [p.latency for p in self.markers.probes if p.latency is not None]
        return seen[-1] if seen else None


def run_steady(args: argparse.Namespace) -> dict[str, Any]:
    import bench

    from shared import simulate
    from shared.storage.dynamo import DynamoTrackingStore, make_client

    serve = bench.start_serve(args.workers)
    latencies: list[float] = []
    stats = simulate.Stats()
    problem: list[BaseException] = []
    load_seconds = 0.0
    sent_in_window = 0
    cpu_began = time.process_time()
    try:
        info = serve.info
        store = DynamoTrackingStore(
            info.table,
            client=make_client(endpoint_url=info.dynamodb_endpoint, region=info.region),
        )
        target = simulate.local_target(serve.data_dir, find_source=store.get_source)
        from shared.services.segments import apply_segments

        apply_segments(store, TIMED_RULES, source="load", now=datetime.now(UTC), customers=[])
        poster = Poster(serve.port, info.write_key)
        run = uuid.uuid4().hex[:8]
        print(
            f"steady load: simulator live traffic at {args.rate:g} events/s for {args.duration:g} s on "
            f"{info.collector_url} (serve --workers {args.workers}); lag marker every {SAMPLE_EVERY:g} s, "
            f"{args.segment} probe every {SEGMENT_EVERY:g} s",
            flush=True,
        )
        stop = threading.Event()

        def traffic() -> None:
            try:
                events = simulate.live(args.seed, customers=0, clock=lambda: datetime.now(UTC), run=run)
                simulate.send(events, target, rate=args.rate, stop=stop, stats=stats)
            except BaseException as exc:  # reported: a dead sender must stop the run, not go unnoticed
                problem.append(exc)
                stop.set()

        with timed_batches(latencies):
            started = time.monotonic()
            stats.started = started
            sender = threading.Thread(target=traffic, name="load-traffic", daemon=True)
            sender.start()
            probing = Probing(args, poster, store, Outbox(serve.data_dir / "outbox.jsonl"), run, started)
            progress_tick = Ticker(started + 15, 15)
            while True:
                now = time.monotonic()
                if now - started >= args.duration and not stop.is_set():
                    sent_in_window = stats.sent
                    stop.set()
                if probing.stopped_at is None and stop.is_set() and not sender.is_alive():
                    load_seconds = now - started
                    print(f"  load stopped at {load_seconds:.0f} s: {stats.line()}", flush=True)
                    probing.load_stopped(now)
                probing.send_due(now, loading=not stop.is_set())
                probing.look()
                now = time.monotonic()
                if probing.stopped_at is None and progress_tick.due(now):
                    print(
                        f"  t={now - started:3.0f} s: {stats.line()}; newest lag {seconds(probing.newest_lag())}, "
                        f"{len(probing.markers.pending())} markers in flight",
                        flush=True,
                    )
                if probing.finished(now):
                    break
                time.sleep(POLL_EVERY)
        poster.close()
    finally:
        bench.discard_serve(serve)
        bench.stop_all()
    if not sent_in_window:  # stopped early (the sender failed)
        sent_in_window = stats.sent
    tool_cpu = (time.process_time() - cpu_began) / max(time.monotonic() - started, 1e-6)
    figures = steady_figures(args, stats, load_seconds, probing, latencies, problem)
    figures["traffic"]["sending_events_per_second"] = round(sent_in_window / args.duration, 1)
    figures["tool"] = {"cpu_share_of_a_core": round(tool_cpu, 2), "slowest_look_ms": round(probing.slowest_look * 1000)}
    return figures


def steady_figures(
    args: argparse.Namespace,
    stats: Any,
    load_seconds: float,
    probing: Probing,
    latencies: list[float],
    problem: list[BaseException],
) -> dict[str, Any]:
    traffic_figures = stats.to_json()
    traffic_figures["seconds"] = round(load_seconds, 1)
    traffic_figures["events_per_second"] = round(stats.sent / load_seconds, 1) if load_seconds else 0.0
    traffic_figures["recorded"] = stats.accepted + stats.opens + stats.clicks
    markers = probing.markers.probes
    curve = curve_stats(markers, args.lag_target)
    figures: dict[str, Any] = {
        "mode": "steady",
        "rate": args.rate,
        "duration_s": args.duration,
        "workers": args.workers,
        "traffic": traffic_figures,
        "lag": {
            "target_s": args.lag_target,
            "every_s": SAMPLE_EVERY,
            "samples": curve.samples,
            "over_target": len(curve.over),
            "max_s": rounded(curve.max),
            "p95_s": rounded(curve.p95),
            "curve": [
                {"t_s": round(p.t, 1), "lag_s": rounded(p.latency), "phase": p.phase, "rejected": p.rejected}
                for p in markers
            ],
        },
        "segment": {
            "id": args.segment,
            "target_s": args.segment_target,
            **segment_figures(probing.segment_probes.probes),
        },
        "timed": {
            "id": TIMED_SEGMENT,
            "window_s": TIMED_WINDOW,
            "target_s": args.timed_target,
            **segment_figures(probing.timed_probes.probes),
        },
        "collector": {
            "requests": len(latencies),
            "p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
            "p99_ms": round(percentile(latencies, 0.99) * 1000, 1) if latencies else None,
        },
        "caught_up_after_stop_s": rounded(probing.caught_up),
        "error": repr(problem[0]) if problem else None,
    }
    figures["_table"] = lag_table(markers, args.lag_target)
    return figures


def report_steady(figures: dict[str, Any], json_path: Path | None) -> int:
    print()
    print(
        f"processing lag, end to end (a marker event of a new userId every {SAMPLE_EVERY:g} s; lag = until its "
        "profile exists):"
    )
    print("\n".join(figures.pop("_table")))
    problems = failures(figures)
    figures["met_targets"] = not problems
    figures["failures"] = problems
    print()
    print("summary")
    print("\n".join("  " + line for line in summary_lines(figures)))
    for problem in problems:
        print(f"FAILED: {problem}")
    if not problems:
        print(f"targets met: lag < {figures['lag']['target_s']:g} s at every sample, segment entries within target")
    if json_path is not None:
        json_path.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"figures written to {json_path}")
    return 1 if problems else 0


# --- flat-out run ------------------------------------------------------------------------------------------------


def run_flat_out(args: argparse.Namespace) -> int:
    import bench

    duration = args.duration if args.duration is not None else 30.0
    serve = bench.start_serve(args.workers)
    try:
        corpus = bench.build_corpus(serve.info.write_key, seed=31)
        window = bench.Window(args.warmup, duration)
        print(f"{args.clients} clients, {args.warmup:g} s warm-up + {duration:g} s on {serve.info.collector_url}")
        stats = bench.drive_collector(serve.port, serve.info.write_key, corpus, args.clients, window)
        print("waiting for processing to catch up...", flush=True)
        lag = bench.wait_for_processing(serve, timeout=args.catch_up)
    finally:
        bench.discard_serve(serve)
        bench.stop_all()
    latencies = sorted(stats.latencies)
    p50 = statistics.median(latencies) * 1000 if latencies else float("nan")
    p99 = percentile(latencies, 0.99) * 1000 if latencies else float("nan")
    rate = stats.counted / duration
    caught = f"{lag:.1f} s" if lag != float("inf") else f"not within {args.catch_up:g} s"
    print(f"accepted events/s       {rate:,.0f}")
    print(f"requests                {stats.requests:,} (100 events each)")
    print(f"latency p50 / p99       {p50:.0f} ms / {p99:.0f} ms")
    print(f"errors                  {stats.bad_requests} bad requests, {stats.bad_events} events not accepted")
    print(f"processing caught up    {caught} after the load stopped")
    for sample in stats.samples[:3]:
        print(f"  first errors: {sample}")
    if args.json is not None:
        figures = {
            "mode": "flat_out",
            "clients": args.clients,
            "duration_s": duration,
            "workers": args.workers,
            "accepted_events_per_second": round(rate, 1),
            "requests": stats.requests,
            "collector": {"p50_ms": rounded(p50, 1), "p99_ms": rounded(p99, 1)},
            "bad_requests": stats.bad_requests,
            "events_not_accepted": stats.bad_events,
            "caught_up_after_stop_s": rounded(lag),
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"figures written to {args.json}")
    return 0 if stats.bad_requests == 0 and stats.bad_events == 0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, help="steady mode: events/s of paced simulator traffic")
    parser.add_argument("--duration", type=float, help="seconds of load (default 30 flat out, 120 with --rate)")
    parser.add_argument("--clients", type=int, default=8, help="flat out: concurrent keep-alive clients (default 8)")
    parser.add_argument("--warmup", type=float, default=3.0, help="flat out: seconds before measuring (default 3)")
    parser.add_argument("--workers", type=int, default=2, help="serve --workers (default 2)")
    parser.add_argument("--catch-up", type=float, default=300.0, help="how long to wait for processing (default 300)")
    parser.add_argument("--lag-target", type=float, default=5.0, help="steady: lag at which a sample fails (5)")
    parser.add_argument("--segment", choices=sorted(SEGMENT_PROBES), default="new_customers", help="steady: probe")
    parser.add_argument("--segment-target", type=float, default=5.0, help="steady: max seconds to enter (5)")
    parser.add_argument("--seed", type=int, default=15, help="steady: simulator seed (default 15)")
    parser.add_argument(
        "--timed-target", type=float, default=10.0, help="steady: max seconds after a deadline to enter (10)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _on_signal)
    if args.rate is None:
        return run_flat_out(args)
    if args.rate <= 0:
        parser.error("--rate must be positive")
    args.duration = args.duration if args.duration is not None else 120.0
    return report_steady(run_steady(args), args.json)


def _on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through the `finally` blocks, which stop serve


if __name__ == "__main__":
    began = time.perf_counter()
    code = main()
    print(f"({time.perf_counter() - began:.0f} s)")
    sys.exit(code)
