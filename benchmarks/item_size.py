"""Customer item size for `make bench` (issue #15): how big the `CUSTOMER#<cid>` / `PROFILE` item gets.

Histories: `days` of the simulator's shop traffic (`shared.simulate.generate`, what the bulk workload sends) for
`customers` people. Each person's events are folded as processing folds them (`apply_events` on a
`CustomerProfile`) into one profile keyed by their primary identity (`u:<userId>` once they are known, else their
first `a:<anonymousId>`; identity linking is not run), with the analytics cells of the starter definitions
(`customer_cells` then `kept`, at `now` = the end of the history), one stream position per identity in `applied`
and three due moments. The item is `profile_to_item` of that, sized as the meter bills it
(`benchmarks/dynamo_meter/sizes.py`: attribute names plus values; 1 write unit per KB started).

A heavy customer: whole simulated people's events (so each visit stays whole: carts, checkouts, orders) pooled into
one profile until it holds `HEAVY_EVENTS` events over the same days; three identities as the TUI bench's heavy
customer has. Its body is also sized field by field (each field's JSON compressed alone, as the body codec does).
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: `python benchmarks/item_size.py`
    sys.path.insert(0, str(ROOT))

from benchmarks.dynamo_meter.sizes import WRITE_KB, item_size, write_units  # noqa: E402
from shared.domain import analytics, cell_state, rule_state  # noqa: E402
from shared.domain.events import CallType, TrackingEvent, format_timestamp, parse_event  # noqa: E402
from shared.domain.identity import event_identities  # noqa: E402
from shared.domain.profiles import CustomerProfile, apply_events  # noqa: E402
from shared.domain.segments import Facts, Membership, SegmentRule, evaluate, parse_rules  # noqa: E402
from shared.local.stack import STARTERS as SEGMENT_STARTERS  # noqa: E402
from shared.ports import Derived, StoredProfile  # noqa: E402
from shared.services.analytics import STARTERS  # noqa: E402
from shared.services.prepare import keeps_state  # noqa: E402
from shared.simulate import Route, SimEvent, generate  # noqa: E402
from shared.storage.blobs import decode_json, encode_profile_json  # noqa: E402
from shared.storage.codec import serialize  # noqa: E402
from shared.storage.items import profile_to_item  # noqa: E402

CUSTOMERS = 500
DAYS = 30.0
SEED = 7
HEAVY_EVENTS = 3_000
HEAVY_IDENTITIES = 3
TARGET_BYTES = 1024
"""Issue #15: p95 ≤ 1 KB on 30-day simulated histories."""
VERSION = 12
SCHEDULED = (timedelta(hours=1), timedelta(days=1), timedelta(days=7))
FIRST_SEQUENCE = 49_000_000_000_000_000_000
"""Stream sequence numbers are 21 digits (DynamoDB Streams); one per identity goes into `applied`."""

Row = tuple[str, str, str, str, str, str]
"""what, measured, baseline, ratio, target, met: `bench_report.Row`'s columns."""


@dataclass(frozen=True)
class ItemSize:
    """One customer item, in bytes as billed: the whole item and its two compressed attributes (name + value)."""

    total: int
    body: int
    cells: int
    events: int

    @property
    def units(self) -> int:
        return write_units(self.total)


@dataclass
class Figures:
    customers: int
    days: float
    items: list[ItemSize]
    """Sorted by total size."""
    heavy: ItemSize
    heavy_fields: dict[str, int]
    """Body field → bytes of its JSON compressed alone, largest first."""
    seconds: float

    def percentile(self, share: float) -> ItemSize:
        """The item at `share` (nearest rank) of the sorted sizes."""
        return self.items[max(0, math.ceil(share * len(self.items)) - 1)]

    def within(self, limit: int) -> float:
        """The share of the items of at most `limit` bytes (`WRITE_KB`: one write unit each)."""
        return sum(item.total <= limit for item in self.items) / max(1, len(self.items))

    def share(self, part: str) -> float:
        """Body's or cells' share of all the items' bytes."""
        return sum(getattr(i, part) for i in self.items) / max(1, sum(i.total for i in self.items))


def tracking_event(sim: SimEvent) -> TrackingEvent:
    """A simulated call as the collector stores it (pixel opens and link clicks are track calls)."""
    call_type = None if sim.route is Route.BATCH else CallType.TRACK

    def no_id() -> str:
        raise ValueError("the simulator gives every call a messageId")

    return parse_event(sim.payload, source_id="web", received_at=sim.at, new_id=no_id, call_type=call_type)


def people(customers: int, days: float, seed: int, now: datetime) -> list[list[TrackingEvent]]:
    """Each simulated person's events, in time order, people in order of first event."""
    by_person: dict[str, list[TrackingEvent]] = {}
    for sim in generate(customers, days, seed, now):
        by_person.setdefault(sim.person, []).append(tracking_event(sim))
    return list(by_person.values())


def identities_of(events: Iterable[TrackingEvent]) -> tuple[str, ...]:
    """The person's identity keys, the primary one first: their user id once known, else their first device."""
    seen = dict.fromkeys(key for event in events for key in event_identities(event))
    users = [key for key in seen if key.startswith("u:")]
    return tuple(dict.fromkeys([*users[:1], *seen]))


@cache
def segment_rules() -> list[SegmentRule]:
    """The starter segments (what `footfall serve` applies on its first start): the item holds those it is in."""
    return parse_rules(json.loads(SEGMENT_STARTERS.read_text()), source=str(SEGMENT_STARTERS))


def customer_item(
    events: list[TrackingEvent],
    identities: tuple[str, ...],
    definitions: analytics.Definitions,
    now: datetime,
    *,
    with_state: bool | None = None,
) -> dict[str, Any]:
    """The item processing writes for one customer holding `events`, with the state that spares its next batch the
    history (`Derived`) when processing keeps it (`with_state` None: `services.prepare.keeps_state`, and where it
    costs no write unit in between), or always (True), or never (False)."""
    customer_id = identities[0]
    profile = apply_events(CustomerProfile(customer_id=customer_id, identities=identities), events)
    built, state = cell_state.build(customer_id, events, definitions, now=now)
    cells = analytics.kept(built, now=now)
    facts = Facts(profile.traits, events)
    spare = with_state is None and not keeps_state(len(events))  # kept only where free (`Derived.spare`)
    rules = rule_state.build(segment_rules(), events, now)
    derived = Derived(tuple(sorted(identities)), now, rules, state, spare=spare)
    kept = derived if with_state is not False else None
    segments = {
        rule.id: Membership(rule.id, customer_id, format_timestamp(now), rule.version, "")
        for rule in segment_rules()
        if evaluate(rule, facts, now).member
    }
    stored = StoredProfile(
        profile,
        version=VERSION,
        applied={key: f"{FIRST_SEQUENCE + n * 977:021d}" for n, key in enumerate(identities)},
        cells=cells,
        cells_at=format_timestamp(now),
        scheduled=tuple(now + after for after in SCHEDULED),
        segments=segments,
        segments_at=format_timestamp(now),
        derived=kept,
    )
    return profile_to_item(stored)


def sized(item: dict[str, Any], events: int) -> ItemSize:
    typed = serialize(item)
    parts = {name: item_size({name: typed[name]}) if name in typed else 0 for name in ("body", "cells")}
    return ItemSize(item_size(typed), parts["body"], parts["cells"], events)


def field_sizes(item: dict[str, Any]) -> dict[str, int]:
    """Each body field's stored JSON (escaped, money tagged), compressed alone with the body codec."""
    body = decode_json(item["body"])
    sizes = {name: len(encode_profile_json(value)) for name, value in body.items()}
    return dict(sorted(sizes.items(), key=lambda pair: -pair[1]))


def heavy_history(days: float, seed: int, now: datetime, events: int = HEAVY_EVENTS) -> list[TrackingEvent]:
    """`events` events over `days`: whole simulated people pooled (more of them simulated until there are enough)."""
    wanted = max(1, events // 20)
    while True:
        pooled: list[TrackingEvent] = []
        for person in people(wanted, days, seed, now):
            pooled += person
            if len(pooled) >= events:
                return sorted(pooled[:events], key=lambda e: e.timestamp)
        wanted *= 2


def measure(
    customers: int = CUSTOMERS, days: float = DAYS, seed: int = SEED, *, now: datetime | None = None
) -> Figures:
    began = time.perf_counter()
    now = now or datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    definitions = analytics.parse_definitions(json.loads(STARTERS.read_text()), source=str(STARTERS))
    items = sorted(
        (
            sized(customer_item(events, identities_of(events), definitions, now), len(events))
            for events in people(customers, days, seed, now)
        ),
        key=lambda size: size.total,
    )
    history = heavy_history(days, seed + 1, now)
    identities = identities_of(history)[:HEAVY_IDENTITIES]
    heavy = customer_item(history, identities, definitions, now)
    return Figures(
        customers=len(items),
        days=days,
        items=items,
        heavy=sized(heavy, len(history)),
        heavy_fields=field_sizes(heavy),
        seconds=time.perf_counter() - began,
    )


def _bytes(size: ItemSize) -> str:
    return f"{size.total:,} B ({size.units} WU)"


def rows(figures: Figures) -> list[Row]:
    """The results table's rows: the simulated customers against the target, and the heavy customer."""
    p50, p95, largest = figures.percentile(0.5), figures.percentile(0.95), figures.items[-1]
    body, cells = figures.share("body"), figures.share("cells")
    fields = ", ".join(f"{name} {size:,} B" for name, size in list(figures.heavy_fields.items())[:4])
    heavy = figures.heavy
    return [
        (
            f"customer item size, {figures.days:g}-day simulated histories ({figures.customers:,} customers): "
            f"p95 (p50, max); share of the items in 1 KB (in 2 KB); body {body:.0%}, cells {cells:.0%} of the bytes",
            f"p95 {_bytes(p95)} (p50 {_bytes(p50)}, max {_bytes(largest)} at {largest.events} events); "
            f"{figures.within(WRITE_KB):.1%} in 1 KB ({figures.within(2 * WRITE_KB):.1%} in 2 KB)",
            "—",
            "—",
            f"≤ {TARGET_BYTES // WRITE_KB} KB",
            "yes" if p95.total <= TARGET_BYTES else "no",
        ),
        (
            f"customer item size, heavy customer ({heavy.events:,} events, {figures.days:g} days); largest body "
            f"fields compressed alone: {fields}",
            f"{_bytes(heavy)}: body {heavy.body:,} B, cells {heavy.cells:,} B",
            "—",
            "—",
            "—",
            "—",
        ),
    ]


def note(figures: Figures) -> str:
    """How the figures were made, for the results' notes."""
    return (
        "Customer item size (benchmarks/item_size.py): the simulator's shop traffic, each person's events folded "
        "by processing's code (apply_events) into one profile under their primary identity, with the starter "
        "analytics definitions' cells (kept), one stream position per identity, three due moments and, where "
        "processing keeps it (services.prepare.keeps_state: under 10 events or from 50, and in between where it "
        "costs no write unit), the derived state: "
        "profile_to_item, sized as the meter bills it (benchmarks/dynamo_meter/sizes.py). Heavy customer: whole "
        f"simulated people pooled into one profile up to {figures.heavy.events:,} events, 3 identities. Body "
        "fields: each field's JSON compressed alone with the body codec. "
        f"Median {statistics.median(i.events for i in figures.items):g} events per customer; "
        f"{figures.seconds:.1f} s."
    )


def main() -> None:
    figures = measure()
    for row in rows(figures):
        print(" | ".join(row))
    print("heavy customer body fields (bytes compressed alone):", figures.heavy_fields)
    print(note(figures))


if __name__ == "__main__":
    main()
