"""Segment storage: rule definitions, memberships, membership history, the due list (mixed into the store).

| access pattern                               | key condition                                                   |
|----------------------------------------------|-----------------------------------------------------------------|
| all segment definitions                      | PK = `SEGMENTS`, SK begins_with `SEGMENT#`                      |
| a customer's memberships (an older          | PK = `CUSTOMER#<cid>`, SK BETWEEN `MEMBER#` AND `PROFILE`       |
|   customer's items, or its customer item)    |   (`MEMBER#<segment>`, then the customer item)                  |
| a segment's members (paged)                  | PK = `MEMBERS#<id>#0` (customers whose customer item holds      |
|                                              |   their segments), then GSI1: GSI1PK = `SEGMENT#<id>` (older)   |
| a segment's entries and exits, in time order | PK = `SEGHIST#<id>`, SK = `<time>#<cid>#<in|out>`               |
| what fell due in a time range (per hour)     | PK = `DUE#<yyyy-mm-ddThh>`, SK BETWEEN `<time>` AND `<time>`    |
| a segment's size (total; net change per day) | PK = `SEGSIZE` / `SEGSIZE#<day>`, SK = `<segment>#<shard>`      |

A customer created since the customer item holds segments has them there (the authority: `services.decisions`);
its record writes the member items (`follow_members`), announcements and history, and the fold the sizes. For
customers stored by earlier versions, the membership items were the authority (a change was one conditional write of
the membership item, whose stream record made the announcement and the history, and whose size the fold counted:
`size_change`). This version adopts them into the customer item the first time it decides such a customer (or
`footfall migrate` does): that write's record writes their member items and retires the membership items
(`retire_memberships`), which then leave the index and both stream readers' filters. Records of membership
changes written before the upgrade are still followed.

The due list holds, per customer, the earliest deadline across its rules (`DUE#<hour>` / `<time>#segments#<cid>`),
and the analytics updates to try again (`…#analytics#<cid>`). An entry is written only when that deadline is not on
the list yet, is never deleted (its TTL removes it two days after its moment), and a moved deadline leaves the old
entry to fire harmlessly (evaluation is idempotent). Each entry has an index row in the customer's partition, written
first, so that `forget` finds it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from shared.domain.segments import Due, Membership, Memberships, due_time
from shared.ports import HistoryEntry, StoredSegment
from shared.storage import customer_segments, keys
from shared.storage.due import (
    DUE_STAMP_FORMAT,
    due_expiry,
    due_group_key,
    due_index_row,
    due_key,
    due_pk,
    due_stamp,
    old_due_index_key,
)
from shared.storage.errors import ConditionFailedError, ThrottledError
from shared.storage.schema import TTL_ATTRIBUTE
from shared.storage.table import Table

SEGMENTS_PK = "SEGMENTS"
SIZES_PK = "SEGSIZE"
SIZE_SHARDS = 4
"""Size items are read over 4 shards (tables written before sizes were folded from the stream have 4); the fold
writes shard 0 only (one update per segment per stream batch stays far below a partition's 1,000 WU/s)."""
SHARED_DUE_CUSTOMERS = 500
"""Customers one shared due entry lists at most (about 25 KB: far from the 400 KB item limit, whatever the batch)."""
MEMBERSHIP_ENTITY = "membership"
MEMBERSHIP_SK_PREFIX = "MEMBER#"
MOVED_MEMBERSHIP_ENTITY = "membership_moved"
"""A membership item whose segment its customer item adopted (`retire_memberships`): kept only until an erasure."""
MEMBER_ENTITY = "member"
"""A customer in a segment whose customer item holds its segments: only for listing the segment (the customer item
is the authority, and its stream record writes these); no index, no stream consumer."""
MEMBER_SHARDS = 1
"""Member items of a segment are one partition (`MEMBERS#<segment>#0`): listing a segment is one query. A partition
takes 1,000 writes a second: a backfill entering more customers than that a second is throttled and retried
(the stream brings the records again); more shards make it faster and a listing one query per shard."""
OLD_ANALYTICS_SEGMENT = "$analytics"
"""The segment of an old due item that meant "update this customer's analytics" (see `upgrade_due_items`)."""


def size_change(*, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> tuple[str, int, str | None] | None:
    """A membership item's stream record as a step of its segment's size: (segment, +1 or -1, the day of the
    change, None for a REMOVE: the customer was erased), or None when it did not enter or leave."""
    was_in, now_in = _is_member(old), _is_member(new)
    if was_in == now_in:
        return None
    image = new or old
    assert image is not None
    return str(image["segment"]), 1 if now_in else -1, str(new["changed_at"])[:10] if new else None


def _is_member(image: Mapping[str, Any] | None) -> bool:
    return image is not None and image.get("entity") == MEMBERSHIP_ENTITY and image.get("state") == "in"


class SegmentStorage(Table):
    """Segment access patterns; mixed into `DynamoTrackingStore`."""

    # --- definitions ---------------------------------------------------------------------------------------

    def put_segments(self, segments: Sequence[StoredSegment]) -> None:
        """Store segment definitions (replacing those with the same id)."""
        rows = [
            {
                "PK": SEGMENTS_PK,
                "SK": f"SEGMENT#{s.id}",
                "entity": "segment",
                "id": s.id,
                "name": s.name,
                "version": s.version,
                "definition": json.dumps(s.definition),
                "applied_at": s.applied_at,
            }
            for s in segments
        ]
        if self._batch_write(rows):
            raise ConditionFailedError("segment definitions could not be stored")

    def list_segments(self) -> list[StoredSegment]:
        """All segment definitions."""
        return [
            StoredSegment(
                id=r["id"],
                name=r["name"],
                version=int(r["version"]),
                definition=json.loads(r["definition"]),
                applied_at=r["applied_at"],
            )
            for r in self._query(
                KeyConditionExpression="PK = :pk AND begins_with(SK, :sk)",
                ExpressionAttributeValues={":pk": {"S": SEGMENTS_PK}, ":sk": {"S": "SEGMENT#"}},
            )
        ]

    # --- memberships ---------------------------------------------------------------------------------------

    def memberships_of(self, customer_id: str) -> Memberships:
        """The segments a customer is in (strongly consistent: read to adopt them, or to explain them).

        One query over the key range holding them (`MEMBER#…`, then the customer item `PROFILE`): a customer item
        that holds its segments is their authority; otherwise the membership items of an older customer are.
        """
        found = self._query(
            KeyConditionExpression="PK = :pk AND SK BETWEEN :low AND :high",
            ConsistentRead=True,
            ExpressionAttributeValues={
                ":pk": {"S": keys.customer_pk(customer_id)},
                ":low": {"S": MEMBERSHIP_SK_PREFIX},
                ":high": {"S": keys.PROFILE_SK},
            },
        )
        memberships: dict[str, Membership] = {}
        for row in found:
            if row.get("entity") == keys.PROFILE_ENTITY and (held := customer_segments.held(row)) is not None:
                return held
            if row.get("entity") == MEMBERSHIP_ENTITY and row.get("state", "in") == "in":
                memberships[row["segment"]] = _membership(row)
        return memberships

    def segment_members(self, segment_id: str) -> Iterator[str]:
        """Customer ids in a segment: the member items of customers whose customer item holds their segments (one
        query per shard), then the membership items of older customers (the index, eventually consistent)."""
        for shard in range(MEMBER_SHARDS):
            for row in self._query(
                KeyConditionExpression="PK = :pk",
                ExpressionAttributeValues={":pk": {"S": _members_pk(segment_id, shard)}},
            ):
                yield str(row["customer_id"])
        for row in self._query(
            IndexName="GSI1",
            KeyConditionExpression="GSI1PK = :pk",
            ExpressionAttributeValues={":pk": {"S": f"SEGMENT#{segment_id}"}},
        ):
            yield row["GSI1SK"]

    def follow_members(self, steps: Sequence[tuple[Membership, bool]]) -> None:
        """Member items after a customer item's entries (True) and exits (False), in order: the last step of a
        segment and customer decides (a put, or a delete); both are safe to repeat. No index: a segment's members
        are its partitions (`MEMBERS#<segment>#<shard>`)."""
        final: dict[tuple[str, str], tuple[Membership, bool]] = {}
        for membership, entered in steps:
            final[(membership.segment_id, membership.customer_id)] = (membership, entered)
        puts = [_member_item(m) for m, entered in final.values() if entered]
        deletes = [_member_key(m.segment_id, m.customer_id) for m, entered in final.values() if not entered]
        if (puts and self._batch_write(puts)) or (deletes and self._batch_write(deletes, delete=True)):
            raise ThrottledError("member items could not be stored")

    def retire_memberships(self, customer_id: str, segment_ids: Sequence[str]) -> None:
        """Membership items whose segments a customer item adopted become `membership_moved`: out of the members
        index, and out of both stream readers' filters, so neither this change nor a later deletion (an erasure)
        moves a size or announces anything. Safe to repeat; an item that is not there is left so."""
        for segment_id in segment_ids:
            with contextlib.suppress(ConditionFailedError):  # retired already (a redelivery), or never there
                self._call(
                    self.client.update_item,
                    TableName=self.table_name,
                    Key={"PK": {"S": keys.customer_pk(customer_id)}, "SK": {"S": MEMBERSHIP_SK_PREFIX + segment_id}},
                    UpdateExpression="SET #entity = :moved REMOVE GSI1PK, GSI1SK",
                    ConditionExpression="#entity = :membership",
                    ExpressionAttributeNames={"#entity": "entity"},
                    ExpressionAttributeValues={
                        ":moved": {"S": MOVED_MEMBERSHIP_ENTITY},
                        ":membership": {"S": MEMBERSHIP_ENTITY},
                    },
                )

    def record_history(self, segment_id: str, customer_id: str, *, at: str, entered: bool, rule_version: int) -> None:
        """One entry or exit in a segment's history (see `put_history`)."""
        self.put_history([HistoryEntry(segment_id, customer_id, at, entered, rule_version)])

    def put_history(self, entries: Sequence[HistoryEntry]) -> None:
        """Entries and exits in segments' histories, in batches. A repeat writes the same item again (its key is
        the change itself), so no condition is needed; sizes are not counted here but folded from the membership
        items' stream records (`size_change`)."""
        rows = [history_row(e) for e in entries]
        if rows and self._batch_write(rows):
            raise ConditionFailedError("history items could not be stored")

    def segment_size_items(self, segments: Sequence[str], *, days: Sequence[date]) -> dict[tuple[str, str | None], int]:
        """(segment, None) → size now, (segment, day) → that day's net change; one batch read."""
        wanted = [
            {"PK": pk, "SK": f"{segment}#{shard}"}
            for segment in segments
            for pk in (SIZES_PK, *(f"{SIZES_PK}#{day.isoformat()}" for day in days))
            for shard in range(SIZE_SHARDS)
        ]
        found: dict[tuple[str, str | None], int] = {}
        for item in self._batch_get(wanted):
            segment = item["SK"].rsplit("#", 1)[0]
            day = item["PK"].split("#", 1)[1] if "#" in item["PK"] else None
            found[(segment, day)] = found.get((segment, day), 0) + int(item.get("net", 0))
        return found

    def segment_history(self, segment_id: str, *, until: str | None = None) -> list[tuple[str, str, bool]]:
        """(time, customer id, entered) of a segment, oldest first, up to `until` (inclusive)."""
        condition = "PK = :pk" + (" AND SK <= :until" if until else "")
        values = {":pk": {"S": f"SEGHIST#{segment_id}"}} | ({":until": {"S": until + "~"}} if until else {})
        rows = self._query(
            KeyConditionExpression=condition,
            ExpressionAttributeValues=values,
        )
        return [_history_entry(row) for row in rows]

    def recent_segment_history(self, segment_id: str, *, limit: int) -> list[tuple[str, str, bool]]:
        """The `limit` latest (time, customer id, entered) of a segment, newest first.

        One Query (newest first, `Limit`), so its cost does not grow with the history's length.
        """
        values = {":pk": {"S": f"SEGHIST#{segment_id}"}}
        result: list[tuple[str, str, bool]] = []
        start: dict[str, Any] | None = None
        while len(result) < limit:
            page = self._call(
                self.client.query,
                TableName=self.table_name,
                KeyConditionExpression="PK = :pk",
                ExpressionAttributeValues=values,
                ScanIndexForward=False,
                Limit=limit - len(result),
                **({"ExclusiveStartKey": start} if start else {}),
            )
            for raw in page.get("Items", []):
                at, customer_id, direction = raw["SK"]["S"].rsplit("#", 2)
                result.append((at, customer_id, direction == "in"))
            start = page.get("LastEvaluatedKey")
            if not start:  # (a page stops short of `Limit` only at 1 MB, or at the end)
                break
        return result

    def sweep_cursor(self) -> datetime | None:
        """The end of the last time range the scheduler swept (to the second)."""
        item = self._get({"PK": "SCHEDULER", "SK": "CURSOR"}, consistent=True)
        if item is None:
            return None
        if "at" in item:
            return _parse_stamp(item["at"])
        # A cursor written before #15 names the last minute bucket swept, which held deadlines up to that minute.
        return datetime.fromisoformat(f"{item['minute']}:00+00:00")

    def set_sweep_cursor(self, at: datetime) -> None:
        """Remember the end of the time range swept."""
        self._batch_write([{"PK": "SCHEDULER", "SK": "CURSOR", "entity": "cursor", "at": due_stamp(at)}])

    # --- the due list --------------------------------------------------------------------------------------

    def put_due(self, dues: Sequence[Due], *, indexed: bool = False) -> None:
        """Put customers on the due list (idempotent: one entry per customer, moment and kind).

        The index rows go first, so a forget finds every entry that may exist. `indexed`: the customer items list
        the moments (processing's entries, written before the items), so no index row is written, and customers
        due at the same second share one entry (`due_group_key`).

        Raises:
            ThrottledError: some could not be written (what was written is harmless: see the module docstring).
        """
        wanted = list({(d.customer_id, d.at, d.analytics): d for d in dues}.values())
        index = [] if indexed else [due_index_row(d.customer_id, d.at, analytics=d.analytics) for d in wanted]
        if index and self._batch_write(index):
            raise ThrottledError("due index rows could not be stored")
        entries = _shared_entries(wanted) if indexed else [_due_entry(d) for d in wanted]
        if entries and self._batch_write(entries):
            raise ThrottledError("due entries could not be stored")

    def due_between(self, since: datetime, until: datetime) -> list[Due]:
        """What fell due after `since` up to `until` (inclusive), oldest first: one query per hour partition.

        Strongly consistent, so an entry written just before the sweep is seen by it.
        """
        found: list[Due] = []
        hour = since.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        while hour <= until:
            for row in self._query(
                KeyConditionExpression="PK = :pk AND SK BETWEEN :low AND :high",
                ConsistentRead=True,
                ExpressionAttributeValues={
                    ":pk": {"S": due_pk(hour)},
                    ":low": {"S": due_stamp(since) + "$"},  # after every `<since>#…`: `since` itself was swept
                    ":high": {"S": due_stamp(until) + "$"},  # up to every `<until>#…`
                },
            ):
                at, analytics = _parse_stamp(row["at"]), bool(row.get("analytics"))
                found += [Due(str(cid), at, analytics) for cid in row.get("customers") or [row["customer_id"]]]
            hour += timedelta(hours=1)
        return found


def upgrade_due_items(store: SegmentStorage, *, now: datetime | None = None) -> int:
    """Turn due items written before #15 (`DUE#<minute>` / `<cid>#<segment>`, one per segment, each with an index row
    `DUEAT#<minute>#<segment>`) into entries of the new due list; returns how many old items it converted.

    One consistent scan finds them (a one-shot upgrade: which minutes hold old items is not known). Each customer's
    old minute becomes one entry (its segments', or an analytics retry), written with its index row first; only then
    are the old item and its index row deleted. Safe to run again, or after a crash midway: the new entries are
    idempotent puts, an old item is deleted only once its replacement is stored, and an old index row left alone
    (its item deleted) is deleted. A minute already past becomes a moment a minute from `now`: the sweep's cursor
    may be past it.
    """
    now = now or datetime.now(UTC)
    soonest = due_time(now + timedelta(minutes=1))
    items: list[dict[str, Any]] = []
    index_rows: dict[tuple[str, str], dict[str, str]] = {}
    for row in store._scan(
        FilterExpression="(#e = :due AND attribute_exists(#segment)) OR (#e = :index AND attribute_exists(#minute))",
        ExpressionAttributeNames={"#e": "entity", "#segment": "segment", "#minute": "minute"},
        ExpressionAttributeValues={":due": {"S": "due"}, ":index": {"S": "due_index"}},
    ):
        if row["entity"] == "due":
            items.append(row)
        else:
            index_rows[(row["PK"], row["SK"])] = {"PK": row["PK"], "SK": row["SK"]}
    dues: set[Due] = set()
    doomed: list[dict[str, str]] = []
    for row in items:
        minute = row["PK"].removeprefix("DUE#")  # the old items kept their minute in the key only
        at = max(datetime.fromisoformat(f"{minute}:00+00:00"), soonest)
        dues.add(Due(row["customer_id"], at, analytics=row["segment"] == OLD_ANALYTICS_SEGMENT))
        index = old_due_index_key(row["customer_id"], minute, row["segment"])
        index_rows.pop((index["PK"], index["SK"]), None)
        doomed += [{"PK": row["PK"], "SK": row["SK"]}, index]
    store.put_due(sorted(dues, key=lambda d: (d.at, d.customer_id, d.analytics)))
    doomed += index_rows.values()
    if doomed and store._batch_write(doomed, delete=True):
        raise ThrottledError("some old due items could not be deleted; run the upgrade again")
    return len(items)


def _shared_entries(dues: Sequence[Due]) -> list[dict[str, Any]]:
    """The entries of customers whose moments their items list: one per moment and kind, shared by the customers
    due then (a customer alone at its moment gets the entry of its own)."""
    groups: dict[tuple[datetime, bool], list[str]] = {}
    for due in dues:
        groups.setdefault((due.at, due.analytics), []).append(due.customer_id)
    entries = []
    for (at, analytics), customers in groups.items():
        if len(customers) == 1 or analytics:
            entries += [_due_entry(Due(customer, at, analytics)) for customer in customers]
            continue
        ordered = sorted(customers)
        for start in range(0, len(ordered), SHARED_DUE_CUSTOMERS):
            part = ordered[start : start + SHARED_DUE_CUSTOMERS]
            shared = {"customers": part, "at": due_stamp(at), "analytics": False, TTL_ATTRIBUTE: due_expiry(at)}
            entries.append({**due_group_key(part, at), "entity": "due", **shared})
    return entries


def _due_entry(due: Due) -> dict[str, Any]:
    return {
        **due_key(due.customer_id, due.at, analytics=due.analytics),
        "entity": "due",
        "customer_id": due.customer_id,  # read back from here, never from the key
        "at": due_stamp(due.at),
        "analytics": due.analytics,
        TTL_ATTRIBUTE: due_expiry(due.at),
    }


def _parse_stamp(stamp: str) -> datetime:
    return datetime.strptime(stamp, DUE_STAMP_FORMAT).replace(tzinfo=UTC)


def _members_pk(segment_id: str, shard: int) -> str:
    return f"MEMBERS#{segment_id}#{shard}"


def _member_key(segment_id: str, customer_id: str) -> dict[str, str]:
    """The key of a member item (a customer in a segment, for listing the segment)."""
    return {"PK": _members_pk(segment_id, keys.shard_of(customer_id, MEMBER_SHARDS)), "SK": customer_id}


def member_keys(customer_id: str, segment_ids: Iterable[str]) -> list[dict[str, str]]:
    """The keys of a customer's member items (`forget` deletes them)."""
    return [_member_key(segment_id, customer_id) for segment_id in segment_ids]


def _member_item(membership: Membership) -> dict[str, Any]:
    return {
        **_member_key(membership.segment_id, membership.customer_id),
        "entity": MEMBER_ENTITY,
        "segment": membership.segment_id,
        "customer_id": membership.customer_id,  # read back from here, never from the key
        "since": membership.since,
        "rule_version": membership.rule_version,
    }


def _history_entry(row: dict[str, Any]) -> tuple[str, str, bool]:
    # The customer id is an attribute of the item; entries written before `at`/`entered` were attributes have
    # them only in the key, whose first part (a timestamp) and last part (in/out) hold no "#".
    at = row.get("at") or row["SK"].split("#", 1)[0]
    entered = row["entered"] if "entered" in row else row["SK"].endswith("#in")
    return str(at), str(row["customer_id"]), bool(entered)


def _membership(row: dict[str, Any]) -> Membership:
    return Membership(
        segment_id=row["segment"],
        customer_id=row["customer_id"],
        since=row["since"],
        rule_version=int(row["rule_version"]),
        reason=row.get("reason", ""),
    )


def history_row(entry: HistoryEntry) -> dict[str, Any]:
    """A segment history item: keyed by the change itself, so writing it again writes the same item."""
    return {
        "PK": f"SEGHIST#{entry.segment_id}",
        "SK": f"{entry.at}#{entry.customer_id}#{'in' if entry.entered else 'out'}",
        "entity": "segment_history",
        "customer_id": entry.customer_id,  # read back from here, never from the key (ids may contain "#")
        "at": entry.at,
        "entered": entry.entered,
        "rule_version": entry.rule_version,
    }
