"""The segments a customer item holds, read off its stream record: the entries and exits one write made.

A customer created since the customer item holds memberships has `segments` in its body (`{id: [since, rule
version]}`), with `segments_at` (when they last changed) and `why` (the reasons of that write's entries and exits).
The difference between a record's old and new image is what that write changed: the process function turns it
into member items, announcements and history, the fold into segment sizes. An image without `segments` belongs
to a customer stored by an earlier version, whose membership items are the authority: such a record changes
nothing here. The write that adopts those memberships into the customer item (`StoredProfile.adopting`) says
which it adopted (`adopted`, on that write only): its entries and exits are relative to them, and its record
retires the membership items and writes the member items of those still held (`adoption`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.domain.segments import Membership
from shared.ports import Adoption
from shared.storage import keys
from shared.storage.blobs import decode_json


@dataclass(frozen=True, slots=True)
class Step:
    """A customer entering or leaving a segment, as a customer item's record says it."""

    segment_id: str
    customer_id: str
    entered: bool
    at: str | None
    """The moment of the change (None: the item was deleted, the customer erased)."""
    rule_version: int
    reason: str


def _segments(image: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    body = decode_json(image["body"])
    if not isinstance(body, dict) or "segments" not in body:
        return None
    return body, dict(body["segments"])


def steps(*, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> list[Step]:
    """The entries and exits of a customer item's record (none for any other record, or a customer whose
    membership items are the authority)."""
    image = new or old
    if not image or image.get("entity") != keys.PROFILE_ENTITY:
        return []
    before = _segments(old) if old else ({}, {})
    after = _segments(new) if new else ({}, {})
    if before is None and after is not None and "adopted" in after[0]:  # adopted: relative to what it held
        before = ({}, dict(after[0]["adopted"]))
    if before is None or after is None:
        return []
    body, now_in = after
    was_in = before[1]
    customer_id = str(image["customer_id"])
    why, at = body.get("why", {}), (str(body.get("segments_at") or "") if new else None)
    found = [
        Step(segment, customer_id, True, str(since), int(version), str(why.get(segment, "")))
        for segment, (since, version) in sorted(now_in.items())
        if segment not in was_in
    ]
    found += [
        Step(segment, customer_id, False, at, int(version), str(why.get(segment, "")))
        for segment, (_, version) in sorted(was_in.items())
        if segment not in now_in
    ]
    return found


def adoption(*, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> Adoption | None:
    """The memberships a customer item's write adopted from its customer's membership items (None for any other
    record): those it still holds after the write get member items, and every adopted one's membership item is
    retired (its entries and exits in the same write are `steps`)."""
    if not old or not new or new.get("entity") != keys.PROFILE_ENTITY or _segments(old) is not None:
        return None
    after = _segments(new)
    if after is None or "adopted" not in after[0]:
        return None
    body, now_in = after
    adopted = dict(body["adopted"])
    customer_id = str(new["customer_id"])
    kept = memberships({s: value for s, value in now_in.items() if s in adopted}, customer_id)
    return Adoption(customer_id, tuple(kept[s] for s in sorted(kept)), tuple(sorted(adopted)))


def held(image: Mapping[str, Any]) -> dict[str, Membership] | None:
    """The segments a customer item holds (None: its customer's membership items are the authority)."""
    found = _segments(image)
    return None if found is None else memberships(found[1], str(image["customer_id"]))


def memberships(segments: Mapping[str, Any], customer_id: str) -> dict[str, Membership]:
    """A customer body's `segments` (`{id: [since, rule version]}`) as memberships."""
    return {s: Membership(s, customer_id, str(since), int(version), "") for s, (since, version) in segments.items()}
