"""`make load`'s figures (`load.py`), pure and tested without a stack: the sampling grid, probes and markers in
flight, the lag curve's statistics, segment latencies, the verdict and the summary."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

POLL_EVERY = 0.25
"""Seconds between two looks at the store for the probes in flight (the resolution of every figure)."""


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
