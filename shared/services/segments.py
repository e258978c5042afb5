"""The segments service: keep memberships true, on every event and at every deadline, and answer questions.

Membership is recomputed from the customer's whole state (never applied as deltas), so redelivery and
out-of-order events cannot make it drift; a transition is written only if the stored membership says
otherwise, conditionally, so it happens (and is announced) once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from shared.domain import rule_state
from shared.domain.events import TrackingEvent, format_timestamp
from shared.domain.identity import split_identity
from shared.domain.segments import (
    Due,
    Facts,
    Membership,
    SegmentRule,
    due_time,
    evaluate,
    parse_rules,
)
from shared.domain.sources import AUDIENCE_SOURCE
from shared.ports import (
    IdentityEventReader,
    RejectedWriteError,
    SegmentStore,
    StorageError,
    StoredProfile,
    StoredSegment,
)
from shared.services.decisions import Transition, decide_and_save
from shared.services.quarantine import failure_reason, quarantine_customer

logger = logging.getLogger(__name__)
SETTLE = timedelta(seconds=2)
"""The sweep reads the due list up to `now - SETTLE`: an entry is written before its moment, and this leaves a write
that is slow to land (a retried batch) that long to be seen before the cursor passes its moment."""
RETRY_AFTER = timedelta(seconds=5)
"""When processing could not evaluate a customer, it is due again this much later (the next sweep or so)."""
SWEEP_RETRY_AFTER = timedelta(minutes=1)
"""When the sweep could not evaluate a customer for now, it is due again this much later."""


def rules_of(segments: Iterable[StoredSegment]) -> list[SegmentRule]:
    """Rules from stored definitions (validated when they were applied)."""
    return parse_rules({"segments": [s.definition for s in segments]}, source="stored segments")


def customer_events(store: IdentityEventReader, profile: StoredProfile) -> list[TrackingEvent]:
    """A customer's events, every identity's, audience events left out (what segments and analytics read)."""
    events: list[TrackingEvent] = []
    for identity in profile.profile.identities or (profile.profile.customer_id,):
        kind, value = split_identity(identity)
        events += [e for e in store.list_identity_events(kind, value) if e.source_id != AUDIENCE_SOURCE]
    return events


def customer_facts(store: SegmentStore, profile: StoredProfile) -> Facts:
    """A customer's traits and events (every identity's), audience events left out."""
    return Facts(traits=profile.profile.traits, events=customer_events(store, profile))


def derived_usable(stored: StoredProfile, *, now: datetime) -> bool:
    """Whether a customer item's derived state (`Derived`) holds for its customer at `now`: made for the identities
    it has, not after `now`, and its oldest event not expired. (Each part's rules or definitions are checked apart.)"""
    derived, profile = stored.derived, stored.profile
    if derived is None or now < derived.at or (derived.expires is not None and now >= derived.expires):
        return False
    return set(derived.identities) == set(profile.identities or (profile.customer_id,))


def known_facts(stored: StoredProfile, rules: Sequence[SegmentRule], *, now: datetime) -> Facts | None:
    """What the rules see of a customer from its item's rule state, without reading its history (None: read it)."""
    derived = stored.derived
    if derived is None or derived.rules is None or not derived_usable(stored, now=now):
        return None
    if derived.rules.signature != rule_state.signature(rules):
        return None
    return rule_state.facts(derived.rules, stored.profile.traits)


def evaluate_customers(
    store: SegmentStore,
    customer_ids: Iterable[str],
    rules: Sequence[SegmentRule],
    *,
    now: datetime,
    profiles: Mapping[str, StoredProfile] | None = None,
    events: Mapping[str, list[TrackingEvent]] | None = None,
    memberships: Mapping[str, dict[str, Membership]] | None = None,
    reschedule: bool = False,
) -> list[Transition]:
    """Re-evaluate every rule for these customers: each customer item's entries and exits, and its earliest
    deadline if the due list does not have it yet, in one conditional write (`decide_and_save`); an older
    customer's membership items are adopted in that write (`StoredProfile.adopting`).

    `profiles`, `events` (every identity's, audience events left out) and the `memberships` of older customers
    (`memberships_of`) may be given when already read. `reschedule` writes the earliest deadline's entry even when
    the item lists it (the sweep does: an entry whose write failed is written again the next time the customer
    falls due).
    """
    if not rules:
        return []
    transitions: list[Transition] = []
    wanted = sorted(set(customer_ids))
    if profiles is None or any(c not in profiles for c in wanted):
        profiles = store.get_profiles(wanted)
    for customer_id in wanted:
        stored = profiles.get(customer_id)
        if stored is None or stored.profile.merged_into:
            continue
        known = (events or {}).get(customer_id)
        facts = (
            Facts(stored.profile.traits, known)
            if known is not None
            else known_facts(stored, rules, now=now) or customer_facts(store, stored)
        )
        if stored.segments is None:  # an older customer's: its membership items are adopted in the same write
            read = (memberships or {}).get(customer_id)
            stored = stored.adopting(store.memberships_of(customer_id) if read is None else read)
        transitions += decide_and_save(store, stored, rules, facts, now=now, reschedule=reschedule)
    return transitions


def run_scheduler(
    store: SegmentStore,
    *,
    now: datetime,
    max_catch_up: timedelta = timedelta(days=1),
    refresh: Callable[[list[str]], None] | None = None,
) -> dict[str, int]:
    """The scheduled job: sweep what fell due since the last sweep (at most `max_catch_up` back), then move on.

    A deadline is evaluated by the first sweep at least `SETTLE` after it (to the second): within the schedule's
    period + `SETTLE` + 1 s, plus the evaluation. `refresh` is handed the customers whose analytics update failed
    during processing.
    """
    cursor = store.sweep_cursor()
    since = max(cursor or now - timedelta(minutes=1), now - max_catch_up)
    until = (now - SETTLE).replace(microsecond=0)
    if until <= since:
        return {"due": 0, "entered": 0, "exited": 0}
    transitions, swept = sweep_due(store, now=now, since=since, until=until, refresh=refresh)
    store.set_sweep_cursor(until)
    return {
        "due": swept,
        "entered": sum(t.entered for t in transitions),
        "exited": sum(not t.entered for t in transitions),
    }


def sweep_due(
    store: SegmentStore,
    *,
    now: datetime,
    since: datetime,
    until: datetime,
    refresh: Callable[[list[str]], None] | None = None,
) -> tuple[list[Transition], int]:
    """Evaluate the customers due after `since` up to `until` (one query per hour of the due list; no scan).

    An entry left behind by a deadline that moved later only evaluates its customer early: nothing changes then,
    and the later deadline has its own entry. Nothing is deleted: entries expire.

    Returns:
        The transitions, and how many due-list entries there were.
    """
    due = store.due_between(since, until)
    if not due:
        return [], 0
    rules = rules_of(store.list_segments())
    later = due_time(now + SWEEP_RETRY_AFTER)
    transitions: list[Transition] = []
    # One customer at a time, each on its own: a customer that fails never holds up the others.
    for customer_id in sorted({d.customer_id for d in due if not d.analytics}) if rules else ():
        transitions += (
            _contained(
                store,
                customer_id,
                partial(evaluate_customers, store, [customer_id], rules, now=now, reschedule=True),
                [Due(customer_id, later)],
                now=now,
            )
            or []
        )
    if refresh is not None:
        for customer_id in sorted({d.customer_id for d in due if d.analytics}):
            _contained(store, customer_id, partial(refresh, [customer_id]), [Due(customer_id, later, True)], now=now)
    return transitions, len(due)


def retry_later(customer_ids: Iterable[str], *, now: datetime, analytics: bool = False) -> list[Due]:
    """Due-list entries that have the sweep evaluate these customers again, `RETRY_AFTER` from now: their segments,
    or with `analytics` their analytics (after processing could not)."""
    at = due_time(now + RETRY_AFTER)
    return [Due(customer_id, at, analytics) for customer_id in dict.fromkeys(customer_ids)]


def _contained(
    store: SegmentStore, customer_id: str, work: Callable[[], Any], later: list[Due], *, now: datetime
) -> Any:
    """Run one customer's work: a transient failure is tried again a minute later, a permanent one quarantined."""
    try:
        return work()
    except StorageError as exc:
        if not isinstance(exc, RejectedWriteError):
            logger.warning("a due customer failed for now; retried in a minute")
            store.put_due(later)
            return None
        reason = failure_reason(exc)
    except Exception as exc:
        reason = failure_reason(exc)
    logger.error("a due customer is quarantined", extra={"reason": reason})
    quarantine_customer(store, customer_id, reason, now=now)
    return None


@dataclass(frozen=True, slots=True)
class AppliedSegment:
    """A segment as a rule file stored it."""

    id: str
    version: int


@dataclass(frozen=True, slots=True)
class SegmentsApplied:
    """What applying a rule file did: the segments stored, and the backfill's entries and exits."""

    segments: tuple[AppliedSegment, ...]
    entered: int
    exited: int


@dataclass(frozen=True, slots=True)
class SegmentDiff:
    """What a rule would change in its segment: how many enter and leave (with a sample of each), the size after."""

    enter: int
    exit: int
    size: int
    sample_enter: tuple[str, ...]
    sample_exit: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SegmentPlan(Mapping[str, SegmentDiff]):
    """The membership diff a rule file would make: each segment's, by id, in the file's order."""

    diffs: dict[str, SegmentDiff]

    def __getitem__(self, segment_id: str) -> SegmentDiff:
        return self.diffs[segment_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self.diffs)

    def __len__(self) -> int:
        return len(self.diffs)


@dataclass(frozen=True, slots=True)
class SegmentExplanation:
    """Why a customer is in or out of a segment, and when that can next change."""

    segment: str
    customer_id: str
    member: bool
    """Whether the stored membership says the customer is in."""
    rule_says: bool
    """Whether the rule, evaluated now, says so (they differ while a change is on its way)."""
    reasons: tuple[str, ...]
    next_change: str | None
    """When the rule's answer changes without a new event (a window closing), if it can."""


def apply_segments(
    store: SegmentStore, document: Any, *, source: str, now: datetime, customers: Iterable[str]
) -> SegmentsApplied:
    """Validate a rule file, store its segments (a changed rule gets a new version), and backfill memberships.

    Raises:
        RuleDefinitionError: the file is wrong; nothing is stored.
    """
    rules = parse_rules(document, source=source)
    existing = {s.id: s for s in store.list_segments()}
    entries = {entry["id"]: entry for entry in document["segments"]}
    stored: list[StoredSegment] = []
    for rule in rules:
        definition = {k: v for k, v in entries[rule.id].items() if k != "version"}
        version = _version(existing.get(rule.id), definition)
        stored.append(
            StoredSegment(rule.id, rule.name, version, {**definition, "version": version}, format_timestamp(now))
        )
    store.put_segments(stored)
    if store.sweep_cursor() is None:  # the scheduler's first sweep starts here
        store.set_sweep_cursor(now.replace(microsecond=0))
    applied = rules_of(stored)
    transitions = evaluate_customers(store, customers, applied, now=now)
    return SegmentsApplied(
        segments=tuple(AppliedSegment(s.id, s.version) for s in stored),
        entered=sum(t.entered for t in transitions),
        exited=sum(not t.entered for t in transitions),
    )


def _version(old: StoredSegment | None, definition: Mapping[str, Any]) -> int:
    """A stored segment's version: the same for the same definition, the next one for a changed definition."""
    if old is None:
        return 1
    unchanged = {k: v for k, v in old.definition.items() if k != "version"} == definition
    return old.version if unchanged else old.version + 1


def plan_segments(
    store: SegmentStore,
    document: Any,
    *,
    source: str,
    now: datetime,
    customers: Iterable[str],
    members: Callable[[str], Iterable[str]],
) -> SegmentPlan:
    """The membership diff a rule file would make (+entered / -exited, with samples), changing nothing."""
    rules = parse_rules(document, source=source)
    current = {rule.id: set(members(rule.id)) for rule in rules}
    wanted: dict[str, set[str]] = {rule.id: set() for rule in rules}
    profiles = store.get_profiles(sorted(set(customers)))
    for customer_id, stored in profiles.items():
        if stored.profile.merged_into:
            continue
        facts = customer_facts(store, stored)
        for rule in rules:
            if evaluate(rule, facts, now).member:
                wanted[rule.id].add(customer_id)
    return SegmentPlan({rule.id: _diff(current[rule.id], wanted[rule.id]) for rule in rules})


def _diff(current: set[str], wanted: set[str]) -> SegmentDiff:
    enter, leave = sorted(wanted - current), sorted(current - wanted)
    return SegmentDiff(
        enter=len(enter), exit=len(leave), size=len(wanted), sample_enter=tuple(enter[:5]), sample_exit=tuple(leave[:5])
    )


def explain(store: SegmentStore, rule: SegmentRule, stored: StoredProfile, *, now: datetime) -> SegmentExplanation:
    """Why a customer is in or out of a segment, and when that can next change."""
    result = evaluate(rule, customer_facts(store, stored), now)
    member = rule.id in store.memberships_of(stored.profile.customer_id)
    return SegmentExplanation(
        segment=rule.id,
        customer_id=stored.profile.customer_id,
        member=member,
        rule_says=result.member,
        reasons=tuple(result.reasons),
        next_change=format_timestamp(result.next_change) if result.next_change else None,
    )
