"""Decisions on a customer item that holds its segments: which segments it is in after an evaluation, and the
one conditional write that records them (with the due entry it then lists, written first).

The customer item is the authority for such a customer: the entries and exits ride on its write, and its stream
record makes the member items, announcements, history (`services.audiences`) and sizes (the fold). Processing
decides in the write that folds a batch (`services.prepare`); the sweep and a rule file's backfill decide with
`decide_and_save`. A customer stored by an earlier version (its membership items the authority) is adopted first
(`StoredProfile.adopting`), in the same write: whoever decides it next, or `footfall migrate`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from shared.domain.events import format_timestamp
from shared.domain.segments import Due, Facts, Membership, Memberships, SegmentRule, due_time, evaluate
from shared.ports import ConditionFailedError, StoredProfile, ThrottledError

SAVE_ATTEMPTS = 4


class ItemStore(Protocol):
    """What deciding a customer item needs of storage: the item, and the due list."""

    def get_profiles(self, customer_ids: Sequence[str]) -> dict[str, StoredProfile]: ...
    def save_profile(self, stored: StoredProfile) -> StoredProfile: ...
    def put_due(self, dues: Sequence[Due], *, indexed: bool = False) -> None: ...
    def memberships_of(self, customer_id: str) -> Memberships: ...


@dataclass(frozen=True, slots=True)
class Transition:
    """A customer entering or leaving a segment."""

    segment_id: str
    customer_id: str
    entered: bool
    reason: str


@dataclass(frozen=True, slots=True)
class Decision:
    """A customer item's segments after an evaluation: what it holds, the entries and exits (with their reasons),
    and the earliest moment a rule's answer can change without a new event."""

    segments: dict[str, Membership]
    transitions: list[Transition]
    earliest: datetime | None


def decide(stored: StoredProfile, rules: Sequence[SegmentRule], facts: Facts, *, now: datetime) -> Decision:
    """Every rule against a customer whose customer item holds its segments (pure)."""
    customer_id = stored.profile.customer_id
    current = dict(stored.segments or {})
    segments = dict(current)
    transitions: list[Transition] = []
    deadlines: list[datetime] = []
    for rule in rules:
        result = evaluate(rule, facts, now)
        if result.next_change is not None:
            deadlines.append(result.next_change)
        if result.member == (rule.id in current):
            continue
        reason = "; ".join(result.reasons)
        if result.member:
            segments[rule.id] = Membership(rule.id, customer_id, format_timestamp(now), rule.version, reason)
        else:
            del segments[rule.id]
        transitions.append(Transition(rule.id, customer_id, result.member, reason))
    return Decision(segments, transitions, min(deadlines, default=None))


def decided(stored: StoredProfile, decision: Decision, *, now: datetime) -> StoredProfile:
    """The customer item with a decision's segments (its entries' and exits' reasons ride on that write: a write
    without any leaves the last ones, which its record does not read)."""
    if not decision.transitions:
        return stored
    why = {t.segment_id: t.reason for t in decision.transitions}
    return replace(stored, segments=decision.segments, why=why, segments_at=format_timestamp(now))


def decide_and_save(
    store: ItemStore,
    stored: StoredProfile,
    rules: Sequence[SegmentRule],
    facts: Facts,
    *,
    now: datetime,
    reschedule: bool = False,
) -> list[Transition]:
    """Evaluate a customer whose customer item holds its segments and write the item if anything changed (its
    segments, or a deadline to list: that entry first); on a conflict, read it again and decide again.

    Returns:
        The entries and exits written (their member items, announcements and history follow from the stream).
    """
    customer_id = stored.profile.customer_id
    for _ in range(SAVE_ATTEMPTS):
        decision = decide(stored, rules, facts, now=now)
        item = decided(stored, decision, now=now)
        if decision.earliest is not None:
            at = due_time(decision.earliest)
            if at not in stored.scheduled and not covered(at, stored.scheduled, now=now):
                store.put_due([Due(customer_id, at)], indexed=True)  # the entry, before the item that lists it
                item = replace(item, scheduled=(*item.scheduled, at))
            elif reschedule and at in stored.scheduled:
                store.put_due([Due(customer_id, at)], indexed=True)
        if item == stored and stored.adopted is None:  # (an adoption is written even when nothing else changes)
            return []
        try:
            store.save_profile(item)
            return decision.transitions
        except ConditionFailedError:
            again = store.get_profiles([customer_id]).get(customer_id)
            if again is None or again.profile.merged_into:
                return []
            if again.segments is None:  # still an older customer's: adopt its memberships as they are now
                again = again.adopting(store.memberships_of(customer_id))
            stored, facts = again, Facts(again.profile.traits, facts.events)
    raise ThrottledError(f"the customer item of {customer_id} kept changing while its segments were decided")


def covered(at: datetime, scheduled: Iterable[datetime], *, now: datetime) -> bool:
    """Whether a customer item's due moments already bring the customer back in time for a deadline at `at`: an
    entry still to come (after `now`, so not swept yet) at or before it. Its evaluation then finds the deadline
    and puts it on the list, so a deadline that moves later (a cart added again) is not written at every move.

    Only the customer item's moments count: their entries were written before the item listed them.
    """
    return any(now < moment <= at for moment in scheduled)
