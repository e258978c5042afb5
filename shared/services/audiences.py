"""Audiences: what a segment entry or exit makes once it is decided, each step safe to repeat.

The `Audience Entered` / `Audience Exited` event (stored once: its message id is derived from the change; its own
stream record publishes it), the segment's history item, and, for a customer whose customer item holds its
segments, the member item that lists it in the segment. The changes come from stream records: a membership
item's (older customers) or a customer item's (`follow_customer_items`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from shared.domain.events import CallType, TrackingEvent
from shared.domain.segments import Membership
from shared.domain.sources import AUDIENCE_SOURCE
from shared.ports import Adoption, AudienceWriter, HistoryEntry

ENTERED, EXITED = "Audience Entered", "Audience Exited"


@dataclass(frozen=True, slots=True)
class MembershipChange:
    """A membership item's stream record: someone entered or left a segment."""

    segment_id: str
    customer_id: str
    entered: bool
    at: str
    rule_version: int
    reason: str
    identity: tuple[str, str]


def audience_event(change: MembershipChange) -> TrackingEvent:
    """The `Audience Entered`/`Audience Exited` event of a change (its message id is derived from the change)."""
    kind, value = change.identity
    moment = datetime.fromisoformat(change.at.replace("Z", "+00:00"))
    direction = "in" if change.entered else "out"
    return TrackingEvent(
        source_id=AUDIENCE_SOURCE,
        message_id=f"aud:{change.segment_id}:{change.customer_id}:{direction}:{change.at}",
        type=CallType.TRACK,
        timestamp=moment,
        received_at=moment,
        user_id=value if kind == "u" else None,
        anonymous_id=value if kind == "a" else None,
        event=ENTERED if change.entered else EXITED,
        properties={
            "audience_key": change.segment_id,
            "rule_version": change.rule_version,
            "customer_id": change.customer_id,
            "reason": change.reason[:500],
        },
    )


def record_membership_changes(store: AudienceWriter, changes: Sequence[MembershipChange]) -> list[MembershipChange]:
    """Turn membership changes into audience events (stored once each) and history items; returns the changes kept.

    Neither is written for an identity erased since the change was decided (the collector's check), and such a
    change is not kept: nothing else of it is written either.
    """
    if not changes:
        return []
    written = store.put_announcements(
        [
            (audience_event(c), HistoryEntry(c.segment_id, c.customer_id, c.at, c.entered, c.rule_version))
            for c in changes
        ]
    )
    return [change for change, kept in zip(changes, written, strict=True) if kept]


def follow_customer_items(
    store: AudienceWriter, records: Sequence[tuple[Sequence[MembershipChange], Adoption | None]]
) -> None:
    """What customer items' records make, in stream order (each record: its entries and exits, and the memberships
    it adopted from an older customer, if it did): audience events and history items, then member items (for
    listing the segment), then the adopted membership items retired; each safe to repeat, and nothing for a
    customer erased meanwhile.

    The member items follow the records in order (an adoption's before that record's entries and exits, a record
    before the next), so that the last step of a segment and customer decides, whatever a batch holds together.
    An adoption announces and counts nothing: its membership items were.
    """
    kept = set(record_membership_changes(store, [change for changes, _ in records for change in changes]))
    adopted = [adoption.customer_id for _, adoption in records if adoption is not None and adoption.members]
    erased = store.forgotten_identities(adopted) if adopted else set()
    steps: list[tuple[Membership, bool]] = []
    for changes, adoption in records:
        if adoption is not None and adoption.customer_id not in erased:
            steps += [(membership, True) for membership in adoption.members]
        steps += [
            (Membership(c.segment_id, c.customer_id, c.at, c.rule_version, c.reason), c.entered)
            for c in changes
            if c in kept
        ]
    if steps:
        store.follow_members(steps)
    for _, adoption in records:
        if adoption is not None:
            store.retire_memberships(adoption.customer_id, adoption.retired)
