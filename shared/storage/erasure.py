"""Erasure (`forget`): every item type that can hold an identifier, and how forget finds it. The one list.

| item (key)                                          | how forget finds it                           | then           |
|-----------------------------------------------------|-----------------------------------------------|----------------|
| event `ID#<u|a>#<id>` / `EVT#…` (body names ids)    | the identity's partition                      | deleted        |
| identity link `ID#…` / `CUSTOMER`                   | the identity's partition                      | deleted        |
| identity slot `CUSTOMER#<identity>` / `PROFILE` (an | the identities                                | deleted        |
|   attached identity's pointer to its customer)      |                                               |                |
| old tables' raw suppression mark `ID#…`/`FORGOTTEN` | the identity's partition                      | hashed, deleted|
| profile `CUSTOMER#<cid>` / `PROFILE`, merged ones   | the customer ids (merges: the profile's links)| deleted        |
| analytics cells: in the customer item (before: their| the customer's partition                      | taken back, del|
|   own `CUSTOMER#<cid>` / `ANALYTICS`)               |                                               |                |
| membership `CUSTOMER#<cid>` / `MEMBER#<segment>`    | the customer's partition                      | deleted        |
| member `MEMBERS#<segment>#<shard>` / `<cid>`        | the segments its customer item holds          | deleted        |
| due index `CUSTOMER#<cid>` / `DUEAT#<time>#<kind>`  | the customer's partition                      | deleted        |
| due entry `DUE#<hour>` / `<time>#<kind>#<cid>`      | the customer item's due moments, or its due   | deleted        |
|                                                     |   index's `at`, `analytics` attributes        |                |
| shared due entry `DUE#<hour>` / `<time>#segments#*…`| the customer item's due moments (`customers`) | id cut from it |
| (before #15: `DUEAT#<minute>#<seg>`, `DUE#<minute>`)| (the index's `minute`, `segment` attributes)  | deleted        |
| segment history `SEGHIST#<segment>` / `<t>#<cid>#…` | each history's `customer_id` attribute        | deleted        |
| live feed `LIVE` / `<time>#<seq>` (zlib, TTL 1 h)   | the `LIVE` partition, decoded                 | rewritten      |
| failed record `FAILED#<day>` (raw input: gzip,      | `IDH#<hash>` / `NAMED#FAILED#<id>`, written   | deleted, and   |
|   base64, pixel `data=`, %-escapes, stream records) |   with it from its decoded input              |   its index    |
| failed record kept from before the index            | the kept days' records, decoded and searched  | deleted        |
| conflict flag (`shared_device`,`identity_conflict`)| `IDH#<hash>` / `NAMED#FLAG#<cid>#<msg>`, which| entries removed|
|   on another profile, and that profile's event      |   processing writes before the flag           | id cut from it |
| suppression mark `IDH#<hash>` / `FORGOTTEN`         | written first                                 | kept (a hash)  |

Counter items (`STATS#…`, `FUNNEL#…`, `RETENTION#…`, `TIMING`, `SEGSIZE…`) hold counts, never an id.
Ids are read from attributes, never parsed out of keys. `tests/integration/test_forget.py` decodes every binary
attribute of every item left after a forget and looks for the ids in every encoding.

Suppression marks, the erasure epoch and its digest (what makes a forgotten identity stay forgotten, cheaply) are
`shared.storage.suppression`; failed records and their identity index are `shared.storage.failed`.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.domain.events import TrackingEvent
from shared.domain.failures import identities_in
from shared.domain.identity import split_identity
from shared.ports import ConditionFailedError, CorruptItemError
from shared.storage import blobs, items, keys
from shared.storage.codec import serialize
from shared.storage.due import due_group_prefix, due_key, due_pk, due_target
from shared.storage.errors import ThrottledError
from shared.storage.failed import FAILED_LOOKBACK_DAYS, stream_identities
from shared.storage.segments import member_keys
from shared.storage.suppression import SuppressionStorage

if TYPE_CHECKING:
    from shared.ports import StoredProfile, StoredSegment

CONFLICT_FLAGS = ("shared_device", "identity_conflict")
_FLAG_ATTEMPTS = 4


class ErasureStorage(SuppressionStorage):
    """Erasure (`forget`); mixed into `DynamoTrackingStore`, whose segment and profile access it uses."""

    if TYPE_CHECKING:  # provided by `SegmentStorage` and `DynamoTrackingStore`

        def list_segments(self) -> list[StoredSegment]: ...

        def get_profiles(self, customer_ids: Sequence[str]) -> dict[str, StoredProfile]: ...

        def save_profile(self, stored: StoredProfile) -> StoredProfile: ...

    def note_conflict(self, identity: str, customer_id: str, event: TrackingEvent) -> None:
        """Index a conflict flag about to be saved on `customer_id`'s profile naming `identity` (written first, so
        a forget of `identity` always finds the flag and the event that caused it)."""
        key = items.event_key(event)
        row = {
            "PK": keys.identity_hash_pk(identity),
            "SK": f"{keys.NAMED_SK_PREFIX}FLAG#{customer_id}#{event.message_id}",
            "entity": keys.NAMED_ENTITY,
            "kind": "flag",
            "customer_id": customer_id,
            "target_pk": key["PK"],
            "target_sk": key["SK"],
        }
        if self._batch_write([row]):
            raise ThrottledError("conflict index could not be written")

    def forget(self, *, identities: Sequence[str], customer_ids: Sequence[str], at: str) -> int:
        """Erase identities and customers: suppress the identities first (so nothing new is stored), then delete
        or rewrite every item that names them (the table in this module's docstring). Returns items deleted.

        Raises:
            ThrottledError: some items could not be written or deleted (run it again: it is idempotent).
        """
        gone = set(identities)
        marks = [
            {"PK": keys.identity_hash_pk(i), "SK": keys.FORGOTTEN_SK, "entity": "forgotten", "at": at}
            for i in identities
        ]
        if self._batch_write(marks):
            raise ThrottledError("suppression marks could not be written")
        self.raise_erasure_epoch(identities)  # after the marks, never before: `SuppressionCache` says why
        doomed: list[dict[str, Any]] = []
        for identity in identities:
            doomed += self._keys_of(keys.identity_pk(*split_identity(identity)))
            doomed += self._named(identity, gone, set(customer_ids))
            doomed.append({"PK": keys.customer_pk(identity), "SK": keys.PROFILE_SK})  # its slot (a pointer)
        for cid in customer_ids:
            doomed += self._customer_items(cid)
        doomed += self._history_of(set(customer_ids))
        doomed += self._unindexed_failed(gone)
        emptied = self._rewrite_live(gone)
        unique = list({(d["PK"], d["SK"]): d for d in doomed}.values())
        if self._batch_write(unique, delete=True):
            raise ThrottledError("some items could not be deleted; run forget again")
        return len(unique) + emptied

    # --- finders ---------------------------------------------------------------------------------------------

    def _keys_of(self, pk: str, *, prefix: str | None = None) -> list[dict[str, Any]]:
        condition = "PK = :pk" + (" AND begins_with(SK, :sk)" if prefix else "")
        values = {":pk": {"S": pk}} | ({":sk": {"S": prefix}} if prefix else {})
        return [
            {"PK": item["PK"], "SK": item["SK"]}
            for item in self._query(
                KeyConditionExpression=condition, ExpressionAttributeValues=values, ProjectionExpression="PK, SK"
            )
        ]

    def _named(self, identity: str, gone: set[str], customers: set[str]) -> list[dict[str, Any]]:
        """The index items naming an identity, and what they point at (failed records; flags and events)."""
        doomed: list[dict[str, Any]] = []
        for row in self._query(
            KeyConditionExpression="PK = :pk AND begins_with(SK, :sk)",
            ExpressionAttributeValues={
                ":pk": {"S": keys.identity_hash_pk(identity)},
                ":sk": {"S": keys.NAMED_SK_PREFIX},
            },
        ):
            doomed.append({"PK": row["PK"], "SK": row["SK"]})
            if row.get("kind") == "failed":
                doomed.append({"PK": row["target_pk"], "SK": row["target_sk"]})
            elif row.get("kind") == "flag" and row["customer_id"] not in customers:
                self._remove_flags(row["customer_id"], gone)
                self._strip_event(row["target_pk"], row["target_sk"], gone)
        return doomed

    def _customer_items(self, customer_id: str) -> list[dict[str, Any]]:
        """A customer's partition (profile, cells, memberships, due index), the due items it indexes, and the
        index items in other identities' partitions that the profile's own flags gave rise to."""
        doomed: list[dict[str, Any]] = []
        for row in self._query(
            KeyConditionExpression="PK = :pk", ExpressionAttributeValues={":pk": {"S": keys.customer_pk(customer_id)}}
        ):
            doomed.append({"PK": row["PK"], "SK": row["SK"]})
            if row.get("entity") == "due_index":
                doomed.append(due_target(row, customer_id))
            elif row.get("entity") == items.PROFILE_ENTITY:
                doomed += self._followed_from_profile(row, customer_id)
        return doomed

    def _followed_from_profile(self, row: dict[str, Any], customer_id: str) -> list[dict[str, Any]]:
        """The index items of the profile's conflict flags, and the due entries and member items its customer item
        lists."""
        try:
            stored = items.item_to_profile(row)
        except CorruptItemError:
            return []  # nothing readable to follow; the index items expire with nothing to point at
        flags = stored.profile.flags
        self._leave_shared_due(customer_id, stored.scheduled)
        due = [due_key(customer_id, at, analytics=False) for at in stored.scheduled]
        due += member_keys(customer_id, stored.segments or {})  # (and its member items, listed by segment)
        named = {entry.get("identity") for flag in CONFLICT_FLAGS for entry in flags.get(flag, [])}
        return due + [
            {"PK": index["PK"], "SK": index["SK"]}
            for identity in named
            if isinstance(identity, str)
            for index in self._keys_of(
                keys.identity_hash_pk(identity), prefix=f"{keys.NAMED_SK_PREFIX}FLAG#{customer_id}#"
            )
        ]

    def _history_of(self, customers: set[str]) -> list[dict[str, Any]]:
        doomed: list[dict[str, Any]] = []
        for segment in self.list_segments():
            doomed += [
                {"PK": item["PK"], "SK": item["SK"]}
                for item in self._query(
                    KeyConditionExpression="PK = :pk",
                    ExpressionAttributeValues={":pk": {"S": f"SEGHIST#{segment.id}"}},
                    ProjectionExpression="PK, SK, customer_id",
                )
                if item.get("customer_id") in customers
            ]
        return doomed

    def _unindexed_failed(self, gone: set[str]) -> list[dict[str, Any]]:
        """Failed records kept from before they were indexed by identity, whose decoded input names an id."""
        needles = [split_identity(i)[1].encode("utf-8", "surrogatepass") for i in gone if split_identity(i)[1]]
        values = {split_identity(i)[1] for i in gone}
        today = datetime.now(UTC).date()
        found: list[dict[str, Any]] = []
        for back in range(FAILED_LOOKBACK_DAYS + 1):
            pk = keys.failed_pk((today - timedelta(days=back)).isoformat())
            for item in self._query(KeyConditionExpression="PK = :pk", ExpressionAttributeValues={":pk": {"S": pk}}):
                if item.get("indexed"):
                    continue
                failure = items.item_to_failed(item)
                named = identities_in(failure.raw, decode_more=stream_identities)
                if named & gone or any(n in failure.raw for n in needles) or failure.message_id in values:
                    found.append({"PK": item["PK"], "SK": item["SK"]})
        return found

    # --- rewriting what is shared with others ------------------------------------------------------------------

    def _remove_flags(self, customer_id: str, gone: set[str]) -> None:
        for _ in range(_FLAG_ATTEMPTS):
            try:
                stored = self.get_profiles([customer_id]).get(customer_id)
            except CorruptItemError:
                return  # quarantined; its flags are erased with it if it is ever forgotten
            if stored is None:
                return
            flags = dict(stored.profile.flags)
            for flag in CONFLICT_FLAGS:
                if flag in flags:
                    flags[flag] = [entry for entry in flags[flag] if entry.get("identity") not in gone]
            if flags == stored.profile.flags:
                return
            try:
                self.save_profile(replace(stored, profile=replace(stored.profile, flags=flags)))
            except ConditionFailedError:
                continue
            return
        raise ThrottledError(f"flags of {customer_id} kept changing; run forget again")

    def _leave_shared_due(self, customer_id: str, moments: Sequence[datetime]) -> None:
        """Take the customer out of the due-list entries it shares with others (`due_group_key`) at the moments its
        item lists; an entry left with nobody is deleted."""
        for at in moments:
            for row in self._query(
                KeyConditionExpression="PK = :pk AND begins_with(SK, :sk)",
                ConsistentRead=True,
                ExpressionAttributeValues={":pk": {"S": due_pk(at)}, ":sk": {"S": due_group_prefix(at)}},
            ):
                if customer_id not in row.get("customers", []):
                    continue
                row["customers"] = [other for other in row["customers"] if other != customer_id]
                if not row["customers"]:
                    if self._batch_write([row], delete=True):
                        raise ThrottledError("a due-list entry could not be deleted; run forget again")
                    continue
                self._call(self.client.put_item, TableName=self.table_name, Item=serialize(row))

    def _strip_event(self, pk: str, sk: str, gone: set[str]) -> None:
        """Rewrite another identity's event without the erased ids (the stream ignores the MODIFY)."""
        item = self._get({"PK": pk, "SK": sk}, consistent=True)
        if item is None:
            return
        values = {split_identity(i)[1] for i in gone}
        body = _without(blobs.decode_json(item["body"]), values)
        item["body"] = blobs.encode_json(body)
        self._call(self.client.put_item, TableName=self.table_name, Item=serialize(item))

    def _rewrite_live(self, gone: set[str]) -> int:
        """Live-feed items without the erased identities' events; returns how many were left empty (deleted)."""
        emptied = 0
        for row in self._query(KeyConditionExpression="PK = :pk", ExpressionAttributeValues={":pk": {"S": "LIVE"}}):
            events = json.loads(zlib.decompress(bytes(row["events"])))
            kept = [e for e in events if e.get("customer") not in gone]
            if len(kept) == len(events):
                continue
            if not kept:
                if self._batch_write([row], delete=True):
                    raise ThrottledError("a live-feed item could not be deleted; run forget again")
                emptied += 1
                continue
            row["events"] = zlib.compress(json.dumps(kept).encode())
            self._call(self.client.put_item, TableName=self.table_name, Item=serialize(row))
        return emptied


def _without(value: Any, values: set[str]) -> Any:
    """A JSON value with every member and element equal to one of `values` left out."""
    if isinstance(value, dict):
        return {k: _without(v, values) for k, v in value.items() if not (isinstance(v, str) and v in values)}
    if isinstance(value, list):
        return [_without(v, values) for v in value if not (isinstance(v, str) and v in values)]
    return value
