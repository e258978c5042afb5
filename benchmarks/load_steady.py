"""`make load --rate R` (`load.py`): the simulator's live traffic paced at R events/s against a fresh
`footfall serve`, with lag markers, segment and time-based probes in flight, and the outbox read for publishing."""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import math
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.load_figures import (
    POLL_EVERY,
    InFlight,
    Probe,
    Ticker,
    curve_stats,
    failures,
    lag_table,
    percentile,
    rounded,
    seconds,
    segment_figures,
    summary_lines,
)

SAMPLE_EVERY = 5.0
"""Seconds between lag markers."""
SEGMENT_EVERY = 10.0
"""Seconds between segment probes (during the load only)."""
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
    from bench_stack import discard_serve, start_serve, stop_all

    from shared import simulate
    from shared.storage.dynamo import DynamoTrackingStore, make_client

    serve = start_serve(args.workers)
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
        discard_serve(serve)
        stop_all()
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
