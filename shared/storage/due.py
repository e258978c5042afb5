"""The due list's keys and items: when a customer's rules (or an analytics retry) fall due.

Entries are keyed by hour, then moment (`DUE#<hour>` / `<time>#<kind>#<cid>`), each with an index row in the
customer's partition (`DUEAT#<time>#<kind>`) written first, so that `forget` finds the entry and evaluation knows
which deadlines are already listed. Segment storage writes and reads them; erasure follows the index rows.
Processing's entries have no index row: the customer item lists their moments, and those of a stream batch's
customers due at the same second share one entry (`<time>#segments#*<digest>`, the ids in `customers`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.storage import keys
from shared.storage.schema import TTL_ATTRIBUTE

DUE_INDEX_PREFIX = "DUEAT#"
DUE_STAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
DUE_KEPT = timedelta(days=2)
"""How long a due entry (and its index row) outlives its moment before TTL removes it: longer than the scheduler's
catch-up (a day), so a sweep that was down still finds it. Entries are never deleted otherwise (deletes are billed)."""


def due_stamp(at: datetime) -> str:
    """A due moment as stored (UTC, to the second): sorts as it reads, so a time range is a key range."""
    return at.astimezone(UTC).strftime(DUE_STAMP_FORMAT)


def due_pk(at: datetime) -> str:
    """The due list's partition of the hour holding `at`."""
    return f"DUE#{at.astimezone(UTC):%Y-%m-%dT%H}"


def due_key(customer_id: str, at: datetime, *, analytics: bool) -> dict[str, str]:
    """The key of a due-list entry: hour partition, then moment, so one query per hour returns a time range."""
    kind = "analytics" if analytics else "segments"
    return {"PK": due_pk(at), "SK": f"{due_stamp(at)}#{kind}#{customer_id}"}


GROUP_MARK = "*"
"""Starts the last part of a shared entry's sort key (a customer id never does: `u:`, `a:`)."""


def due_group_key(customer_ids: Sequence[str], at: datetime) -> dict[str, str]:
    """The key of a due-list entry that several customers share: one stream batch's customers whose segments fall
    due at the same second (a burst of new visitors entering `new_customers`), in one item instead of one each. The
    digest of their ids tells apart the entries of other batches due at that second; a retried batch writes the
    same one again."""
    digest = hashlib.sha256("\n".join(sorted(customer_ids)).encode()).hexdigest()[:16]
    return {"PK": due_pk(at), "SK": f"{due_group_prefix(at)}{digest}"}


def due_group_prefix(at: datetime) -> str:
    """The sort-key prefix of the shared entries due at `at` (segments only: analytics retries are never shared)."""
    return f"{due_stamp(at)}#segments#{GROUP_MARK}"


def due_expiry(at: datetime) -> int:
    """The TTL (epoch seconds) of a due entry and of its index row."""
    return int((at + DUE_KEPT).timestamp())


def due_index_row(customer_id: str, at: datetime, *, analytics: bool) -> dict[str, Any]:
    """The index item, in the customer's partition, of one due-list entry (which is keyed by the raw id).

    It expires with its entry. It also tells evaluation, which reads it with the memberships, which deadlines are
    already on the due list (so an unchanged deadline is not written again).
    """
    return {
        "PK": keys.customer_pk(customer_id),
        "SK": f"{DUE_INDEX_PREFIX}{due_stamp(at)}#{'analytics' if analytics else 'segments'}",
        "entity": "due_index",
        "at": due_stamp(at),
        "analytics": analytics,
        TTL_ATTRIBUTE: due_expiry(at),
    }


def old_due_key(customer_id: str, minute: str, segment: str) -> dict[str, str]:
    """The key of a due item as written before #15 (`DUE#<minute>`, one per segment; see `upgrade_due_items`)."""
    return {"PK": f"DUE#{minute}", "SK": f"{customer_id}#{segment}"}


def old_due_index_key(customer_id: str, minute: str, segment: str) -> dict[str, str]:
    """The key of an old due item's index row."""
    return {"PK": keys.customer_pk(customer_id), "SK": f"{DUE_INDEX_PREFIX}{minute}#{segment}"}


def due_target(row: dict[str, Any], customer_id: str) -> dict[str, str]:
    """The key of the due-list entry a due index row points at."""
    if "minute" in row:  # an index row written before #15
        return old_due_key(customer_id, row["minute"], row["segment"])
    at = datetime.strptime(row["at"], DUE_STAMP_FORMAT).replace(tzinfo=UTC)
    return due_key(customer_id, at, analytics=bool(row.get("analytics")))
