"""The independent oracle every audit ends with: what is stored equals what the raw stored events say.

It reads the table with one scan and recomputes identities, profiles, segment memberships and every analytics
counter from the README's definitions. It imports nothing from `shared.domain` or `shared.services` (only the
event body codec from `shared.storage.items`), so a bug in the product's rules cannot hide in its own audit.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.oracle.counters import Counters, add, customer_counters, overview_horizon
from tests.oracle.identities import resolve
from tests.oracle.profiles import expected_profile, stored_view
from tests.oracle.raw import AUDIENCE_SOURCE, Event, Table, scan
from tests.oracle.rules import member

DEFAULT_ANALYTICS = {"funnels": [], "retention": {"events": ["*", "Order Completed"]}}
COUNTER_PARTITIONS = ("FUNNEL#", "RETENTION#", "TIMING", "STATS#")


@dataclass
class Report:
    """What the audit checked."""

    customers: dict[str, frozenset[str]] = field(default_factory=dict)
    """Live customer id → its identities (`u:<userId>`, `a:<anonymousId>`)."""
    problems: list[str] = field(default_factory=list)

    def customer_of(self, identity: str) -> str | None:
        """The live customer an identity belongs to, if any."""
        return next((c for c, ids in self.customers.items() if identity in ids), None)


class AuditError(AssertionError):
    """The stored state disagrees with the raw events."""


def audit(store: Any, *, now: datetime | None = None) -> Report:
    """Recompute everything from a raw scan of `store`'s table and compare; raises `AuditError` on a difference."""
    report = check(scan(store.client, store.table_name), now=now or datetime.now(UTC))
    if report.problems:
        raise AuditError(f"{len(report.problems)} problems:\n" + "\n".join(report.problems[:40]))
    return report


def check(table: Table, *, now: datetime) -> Report:
    """Every difference between the stored state and the oracle, as text."""
    report = Report()
    problems = report.problems
    problems += _unquarantined(table)
    by_identity = _events_by_identity(table.events)
    live = {cid: body for cid, body in table.profiles.items() if not body.get("merged_into")}
    expected_counters: Counters = {}
    document = table.analytics or DEFAULT_ANALYTICS
    for group in resolve(table.events, table.sources).partition():
        claimed = _claim(table, group, live, by_identity, problems)
        if claimed is None:
            continue
        customer_id, body, events = claimed
        report.customers[customer_id] = frozenset(group)
        problems += _customer(table, customer_id, group, body, events, now)
        add(expected_counters, customer_counters(customer_id, events, document, now))
    problems += [f"profile {cid} belongs to no identity the events name" for cid in live]
    problems += [
        f"{cid} is not a live customer but is in {sorted(segments)}"
        for cid, segments in table.memberships.items()
        if segments and cid not in report.customers
    ]
    problems += [
        f"{cid}'s customer item holds {sorted(held)} but the member items list it in {sorted(table.listed[cid])}"
        for cid, held in table.held.items()
        if not table.profiles[cid].get("merged_into") and held != table.listed.get(cid, set())
    ]
    problems += [
        f"member items list {cid}, whose customer item holds no segments" for cid in set(table.listed) - set(table.held)
    ]
    problems += [  # README "Segments": adopting them retires the membership items (out of the members index)
        f"{cid}'s customer item holds its segments, yet membership items index it in {sorted(table.indexed[cid])}"
        for cid in table.held
        if table.indexed.get(cid)
    ]
    problems += _counters(table, expected_counters, now)
    problems += _segment_sizes(table)
    return report


def _unquarantined(table: Table) -> list[str]:
    """A record that cannot be read must be quarantined, not silently skipped."""
    return [
        f"undecodable event {item['PK']} {item['SK']} is not in the failed-events store"
        for item in table.undecodable
        if not any(item["SK"].encode() in raw for raw in table.failed_raw)
    ]


def _events_by_identity(events: list[Event]) -> dict[str, list[Event]]:
    """The stored events by the identity (`u:<userId>`, `a:<anonymousId>`) their key names; audience events aside."""
    by_identity = defaultdict(list)
    for event in events:
        if event.source != AUDIENCE_SOURCE:
            kind, value = event.pk.split("#", 2)[1:]
            by_identity[f"{kind}:{value}"].append(event)
    return by_identity


def _claim(
    table: Table,
    group: frozenset[str],
    live: dict[str, dict[str, Any]],
    by_identity: dict[str, list[Event]],
    problems: list[str],
) -> tuple[str, dict[str, Any], list[Event]] | None:
    """The one customer a group of identities is linked to, its live profile (taken out of `live`) and its events;
    None, with the problem noted, when the links name several customers or the customer has no live profile."""
    customer_ids = {_linked(table, identity) for identity in group}
    if len(customer_ids) != 1 or None in customer_ids:
        problems.append(f"identities {sorted(group)} are linked to {sorted(map(str, customer_ids))}, not one")
        return None
    (customer_id,) = customer_ids
    body = live.pop(customer_id, None)
    events = [e for identity in group for e in by_identity.get(identity, [])]
    if body is None:
        if events:
            problems.append(f"{customer_id} ({sorted(group)}) has events but no live profile")
        return None
    return customer_id, body, events


def _customer(
    table: Table, customer_id: str, group: frozenset[str], body: dict[str, Any], events: list[Event], now: datetime
) -> list[str]:
    """One customer's identities, every documented profile field and its memberships."""
    problems = []
    if set(body.get("identities", ())) != set(group):
        problems.append(f"{customer_id}: identities {sorted(body.get('identities', ()))} != {sorted(group)}")
    if not events:
        return problems
    want, have = expected_profile(events, now=now), stored_view(body, now=now)
    problems += [
        f"{customer_id}: {name} stored {have[name]!r} != oracle {want[name]!r}"
        for name in want
        if want[name] != have[name]
    ]
    members = {s["id"] for s in table.segments if member(s["rule"], want["traits"], events, now)}
    stored = table.memberships.get(customer_id, set())
    if stored != members:
        problems.append(f"{customer_id}: in segments {sorted(stored)} != oracle {sorted(members)}")
    return problems


def _linked(table: Table, identity: str) -> str | None:
    """README "Where a link is kept": an identity's link item if it has one (a merge's, or an earlier version's), else
    its slot, the customer item at its own id: the customer itself, or a pointer to the customer it was attached
    to; a merge's tombstone or a pointer met on the way leads on to where it points."""
    kind, _, value = identity.partition(":")
    link = table.links.get(f"ID#{kind}#{value}")
    if link:
        target = str(link["customer_id"])
    elif isinstance(table.profiles.get(identity), dict):
        target = identity
    else:
        return None
    for _ in range(4):  # a tombstone or a pointer leads on to where it points
        body = table.profiles.get(target)
        if not isinstance(body, dict) or not body.get("merged_into"):
            return target
        target = str(body["merged_into"])
    return None


def _counters(table: Table, expected: Counters, now: datetime) -> list[str]:
    """Every counter item in the table, expected or not, against the oracle's."""
    problems = []
    frozen = overview_horizon(now)
    stored = _unsharded(table.counters)
    expected = _unsharded(expected)
    for key in sorted(stored.keys() | expected.keys()):
        pk = key[0]
        if pk == "SEGSIZE" or pk.startswith("SEGSIZE#"):
            continue
        if not pk.startswith(COUNTER_PARTITIONS):
            problems.append(f"unexpected counter item {key}: {stored.get(key)}")
            continue
        have, want = stored.get(key, {}), expected.get(key, {})
        if pk.startswith("STATS#") and pk < frozen:
            # A day more than two days old was frozen when it left the window: it holds what had arrived by then.
            over = {a: n for a, n in have.items() if n < 0 or n > want.get(a, 0)}
            if over:
                problems.append(f"frozen overview counter {key} above the events: {over} (oracle {want})")
        elif have != want:
            problems.append(f"counter {key}: stored {have} != oracle {want}")
    return problems


def _unsharded(counters: Counters) -> Counters:
    """Counters summed over their shards (the last part of a sort key) and, for a funnel day, over the items that
    versions before 2026-12 kept each step's times in (`DAY#<day>#T<step>#<shard>`, README): how many items hold a
    key's counts is the product's choice (4 per customer shard before the stream fold, 1 after); the sums are what
    must be exact."""
    total: Counters = {}
    for (pk, sk), attrs in counters.items():
        head, _, shard = sk.rpartition("#")
        if pk.startswith("FUNNEL#") and re.fullmatch(r"DAY#[^#]+#T[0-9]+", head):
            head = head.rpartition("#")[0]
        target = total.setdefault((pk, head if head and shard.isdigit() else sk), {})
        for name, count in attrs.items():
            target[name] = target.get(name, 0) + count
    return {key: {a: n for a, n in attrs.items() if n} for key, attrs in total.items()}


def _segment_sizes(table: Table) -> list[str]:
    """A segment's size counter (total and the sum of its daily changes) equals its members now."""
    members: dict[str, int] = defaultdict(int)
    for segments in table.memberships.values():
        for segment in segments:
            members[segment] += 1
    totals: dict[str, int] = defaultdict(int)
    daily: dict[str, int] = defaultdict(int)
    for (pk, sk), attrs in table.counters.items():
        if pk == "SEGSIZE":
            totals[sk.rsplit("#", 1)[0]] += attrs.get("net", 0)
        elif pk.startswith("SEGSIZE#"):
            daily[sk.rsplit("#", 1)[0]] += attrs.get("net", 0)
    problems = []
    for segment in sorted(members.keys() | totals.keys() | daily.keys()):
        if not members[segment] == totals[segment] == daily[segment]:
            problems.append(
                f"segment {segment}: {members[segment]} members, size counter {totals[segment]}, "
                f"daily changes sum to {daily[segment]}"
            )
    return problems
