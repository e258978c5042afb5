"""Erasure (`forget`): every item type that can hold an identifier, and how forget finds it. The one list.

| item (key)                                          | how forget finds it                           | then           |
|-----------------------------------------------------|-----------------------------------------------|----------------|
| event `ID#<u|a>#<id>` / `EVT#…` (body names ids)    | the identity's partition                      | deleted        |
| identity link `ID#…` / `CUSTOMER`                   | the identity's partition                      | deleted        |
| old tables' raw suppression mark `ID#…`/`FORGOTTEN` | the identity's partition                      | hashed, deleted|
| profile `CUSTOMER#<cid>` / `PROFILE`, merged ones   | the customer ids (merges: the profile's links)| deleted        |
| analytics cells `CUSTOMER#<cid>` / `ANALYTICS`      | the customer's partition                      | taken back, del|
| membership `CUSTOMER#<cid>` / `MEMBER#<segment>`    | the customer's partition                      | deleted        |
| due index `CUSTOMER#<cid>` / `DUEAT#<time>#<kind>`  | the customer's partition                      | deleted        |
| due entry `DUE#<hour>` / `<time>#<kind>#<cid>`      | its due index's `at`, `analytics` attributes  | deleted        |
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

Suppression marks are keyed by a salted SHA-256 of the identity (`keys.identity_hash_pk`). Marks written before
(`ID#…` / `FORGOTTEN`, raw id) are moved to the hashed key by `footfall migrate` (`move_legacy_marks`, step 1 of
`storage.migrate`), which then flags the erasure epoch item `marks = hashed`. Until that flag is there the table
may hold raw marks, and every suppression check reads both keys (see `SuppressionCache`); after it, the hashed
key only. A forget of an identity that still has a raw mark deletes it with the rest of its partition.

Every forget raises the erasure epoch (`ERASURE` / `EPOCH`) after writing its marks: readers keep, per warm
container, the identities they found not erased at an epoch, and skip their marks while the epoch is unchanged
(`SuppressionCache` says why that is safe and why the order matters).

With the epoch goes a digest of every erased identity (`ERASURE` / `DIGEST#<epoch>`: the sorted 4-byte prefixes of
their hashes), written in the same transaction that raises the epoch, so that a reader knows an identity it has
never seen is not erased without reading its mark: a prefix absent from the digest of the epoch it reads. Only a
prefix found in it (an erased identity, or one in 2^32 / erased others by chance) costs a mark read. The digest
holds up to `DIGEST_LIMIT` identities (beyond, forgets raise the epoch alone and every mark is read, as before the
digest); a table written before it gets its first digest from `footfall migrate` (`build_erasure_digest`), and an
import rebuilds it (the items imported bring marks of their own).
"""

from __future__ import annotations

import json
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Set
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.domain.events import TrackingEvent
from shared.domain.failures import FailedEvent, identities_in
from shared.domain.identity import named_identities, split_identity
from shared.ports import ConditionFailedError, CorruptItemError
from shared.storage import items, keys
from shared.storage.errors import StorageError, ThrottledError
from shared.storage.schema import TTL_ATTRIBUTE

FAILED_LOOKBACK_DAYS = 31
NAMED_ENTITY = "named"
CONFLICT_FLAGS = ("shared_device", "identity_conflict")
DUE_INDEX_PREFIX = "DUEAT#"
DUE_STAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
DUE_KEPT = timedelta(days=2)
"""How long a due entry (and its index row) outlives its moment before TTL removes it: longer than the scheduler's
catch-up (a day), so a sweep that was down still finds it. Entries are never deleted otherwise (deletes are billed)."""
_FLAG_ATTEMPTS = 4


EPOCH_KEY = (keys.ERASURE_PK, keys.EPOCH_SK)
DIGEST_SK_PREFIX = "DIGEST#"
PREFIX_BYTES = 4
DIGEST_LIMIT = 90_000
"""Erased identities a digest holds at most (360 KB: under DynamoDB's 400 KB item limit)."""
DIGEST_ATTEMPTS = 5
OLD_DIGEST_SECONDS = 24 * 3600
"""How long a digest outlives its epoch (for readers that read the epoch just before it was raised; TTL)."""
HASHED_MARKS = "hashed"
"""The epoch item's `marks` once no raw mark is left (set by the migration, or at a new table's creation)."""
SUPPRESSION_CACHE_LIMIT = 100_000
"""Identities a warm container remembers as not erased; past this the memory is dropped and rebuilt."""


def suppression_keys(identity: str, *, legacy: bool = True) -> list[tuple[str, str]]:
    """The keys of an identity's suppression mark: hashed (written now) and, with `legacy`, raw (written by
    older versions, until `footfall migrate` moves them)."""
    hashed = (keys.identity_hash_pk(identity), keys.FORGOTTEN_SK)
    return [hashed, (keys.identity_pk(*split_identity(identity)), keys.FORGOTTEN_SK)] if legacy else [hashed]


def legacy_mark_key(identity: str) -> tuple[str, str]:
    """The raw key older versions wrote an identity's suppression mark under."""
    return keys.identity_pk(*split_identity(identity)), keys.FORGOTTEN_SK


@dataclass
class SuppressionCache:
    """What a warm container knows about erasures: identities seen NOT erased, valid while the epoch is unchanged.

    Protocol. A forget writes its suppression marks, then raises the epoch (one item, `ADD epoch 1`), then deletes.
    A reader (`ErasureStorage.forgotten_identities`) reads, in one strongly consistent BatchGetItem, the epoch item
    and the marks of the identities it does not know to be clear. If the epoch it reads is the one the cache was
    built at, the skipped identities are still clear; if it changed, the cache is dropped and the skipped marks are
    read in a second batch.

    Why it is safe. Marks are kept for ever and the epoch only grows. An identity is remembered as clear at epoch E
    only when its mark was read absent at a time the epoch was already E: either its mark read was in a request
    that began after another read had seen E, and this read saw E too (the epoch was E throughout), or it was read
    in a second batch that began after a read saw E. Items of one BatchGetItem are not read at one instant, so an
    identity read in the same batch that first sees a new epoch is not remembered (its mark may have been read
    before the epoch was). Now suppose the identity is erased later. Its forget writes the mark after that absent
    read, then raises the epoch past E. So a reader that still sees E has read the epoch before the forget raised
    it: that forget had not returned, and the reader is in the same race as one without a cache (an event accepted
    while its identity's forget runs; forget deletes the identity's partition after raising the epoch, so such an
    event is deleted unless it lands after that query: the window that existed before the cache). A reader that
    begins after the forget returned sees a higher epoch, drops the cache and reads the mark: refused.

    Why marks before the epoch. With the other order, a reader could see the new epoch before the mark exists,
    read the mark absent, remember the identity as clear at the new epoch, and skip the mark on every later
    request until the next forget or a cold start: the erased identity would be stored again.

    Tables whose raw marks are not migrated yet (`marks` not `hashed` on the epoch item, or no epoch item): both
    keys are read, and nothing is remembered.
    """

    limit: int = SUPPRESSION_CACHE_LIMIT
    epoch: int | None = None
    """The epoch the cache was built at (None: nothing read yet)."""
    hashed_only: bool = True
    """What the last read said of the table: no raw mark left (a guess until then; a read always checks)."""
    clear: set[str] = field(default_factory=set)
    digest: frozenset[bytes] | None = None
    """The prefixes of the identities erased as of `digest_epoch` (None: no digest known)."""
    digest_epoch: int | None = None
    """The epoch `digest` was read at (or found missing at: then it is not read again until the epoch moves)."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def plan(self, identities: Sequence[str]) -> tuple[int | None, bool, set[str]]:
        """`(epoch, hashed_only, identities whose marks may be skipped)` as of now: what a read builds on.

        Skipped: those remembered clear, and those whose prefix the digest of the same epoch does not hold (the
        digest was read after that epoch was, so it is as good a witness as a mark read absent then)."""
        with self._lock:
            if self.epoch is None:
                return None, self.hashed_only, set()
            skipped = self.clear.intersection(identities)
            if self.digest is not None and self.digest_epoch == self.epoch and self.hashed_only:
                skipped |= {i for i in identities if digest_prefix(i) not in self.digest}
            return self.epoch, self.hashed_only, skipped

    def wants_digest(self, epoch: int) -> bool:
        """Whether the digest of this epoch (just read) is still to be read."""
        with self._lock:
            return self.epoch == epoch and self.hashed_only and self.digest_epoch != epoch

    def learn_digest(self, epoch: int, digest: frozenset[bytes] | None) -> None:
        """Record the digest read at `epoch` (None: there is none), unless the cache moved on meanwhile."""
        with self._lock:
            if self.epoch == epoch:
                self.digest, self.digest_epoch = digest, epoch

    def learn(
        self, *, planned: int | None, epoch: int, hashed_only: bool, after: set[str], alongside: set[str]
    ) -> None:
        """Record a read that saw `epoch`.

        Args:
            planned: the epoch the read was planned at (`plan`).
            after: identities found not erased by a read that began after `epoch` had been read.
            alongside: identities found not erased by the same batch that read `epoch`.
        """
        with self._lock:
            if self.epoch != epoch or not hashed_only:
                if self.epoch is not None and epoch < self.epoch:
                    return  # an older read finishing late: what it saw is no news
                self.clear = set()
            self.epoch, self.hashed_only = epoch, hashed_only
            if not hashed_only:
                return
            remembered = after | (alongside if planned == epoch else set())
            if len(self.clear) + len(remembered) > self.limit:
                self.clear = set()
            self.clear |= remembered


def digest_prefix(identity: str) -> bytes:
    """What the digest keeps of an erased identity: the first bytes of its hash (`keys.identity_hash`)."""
    return bytes.fromhex(keys.identity_hash(identity)[: 2 * PREFIX_BYTES])


def digest_key(epoch: int) -> tuple[str, str]:
    return keys.ERASURE_PK, f"{DIGEST_SK_PREFIX}{epoch:020d}"


def encode_digest(prefixes: Iterable[bytes]) -> bytes:
    return b"".join(sorted(set(prefixes)))


def decode_digest(data: bytes) -> frozenset[bytes]:
    return frozenset(data[at : at + PREFIX_BYTES] for at in range(0, len(data), PREFIX_BYTES))


def _with_witnesses(
    planned: int | None, skipped: set[str], identities: Sequence[str], clear_at: Mapping[str, int]
) -> tuple[int | None, set[str]]:
    """Add identities other readers found not erased at an epoch to those a read may skip (`forgotten_identities`):
    those of the newest such epoch, which the read then plans at (the cache's entries, at an older epoch, go)."""
    witnessed = [clear_at[i] for i in identities if i in clear_at]
    if not witnessed:
        return planned, skipped
    newest = max(witnessed)
    vouched = {i for i in identities if clear_at.get(i) == newest}
    if planned is None or newest > planned:
        return newest, vouched
    return planned, skipped | vouched if newest == planned else skipped


def failed_index_rows(failure: FailedEvent, record: dict[str, Any]) -> list[dict[str, Any]]:
    """Index items of a failed record: one per identity its input names (decoded whatever the encoding)."""
    return [
        {
            "PK": keys.identity_hash_pk(identity),
            "SK": f"{keys.NAMED_SK_PREFIX}FAILED#{failure.id}",
            "entity": NAMED_ENTITY,
            "kind": "failed",
            "target_pk": record["PK"],
            "target_sk": record["SK"],
            TTL_ATTRIBUTE: record[TTL_ATTRIBUTE],
        }
        for identity in sorted(identities_in(failure.raw, decode_more=_stream_identities))
        if identity.partition(":")[2]
    ]


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


def _due_target(row: dict[str, Any], customer_id: str) -> dict[str, str]:
    if "minute" in row:  # an index row written before #15
        return old_due_key(customer_id, row["minute"], row["segment"])
    at = datetime.strptime(row["at"], DUE_STAMP_FORMAT).replace(tzinfo=UTC)
    return due_key(customer_id, at, analytics=bool(row.get("analytics")))


def _stream_identities(parsed: Any) -> Iterator[str]:
    """Identities of the event inside a quarantined stream record (its image is a stored, compressed item)."""
    from shared.storage.dynamo import deserialize_wire

    image = parsed.get("dynamodb", {}).get("NewImage") if isinstance(parsed, dict) else None
    if not isinstance(image, dict):
        return
    try:
        item = deserialize_wire(image)
        if item.get("entity") == items.EVENT_ENTITY:
            yield from named_identities(items.item_to_event(item))
    except Exception:
        return


class ErasureStorage:
    """Suppression and erasure; mixed into `DynamoTrackingStore` (uses its `_query`, `_batch_get`, …)."""

    table_name: str
    client: Any

    suppression: SuppressionCache

    def forgotten_identities(self, identities: Sequence[str], *, clear_at: Mapping[str, int] | None = None) -> set[str]:
        """Which of these identities were erased (`forget`): one strongly consistent batch read of the erasure epoch
        and the marks this store does not know to be clear (a second one only when the epoch changed, or on a table
        that may still hold raw marks).

        Args:
            clear_at: identity → an epoch at which another reader found it not erased, as its `SuppressionCache`
                would remember it (the collector stamps each event it stores with it: `clear_epoch`). Such an
                identity is as good as one in this store's cache at that epoch: its mark is skipped while the epoch
                read now is that one. (The reader saw that epoch before this read began, so if this read sees it
                too, it held throughout.)

        Raises:
            ThrottledError: a read could not complete.
        """
        identities = list(dict.fromkeys(identities))
        if not identities:
            return set()
        planned, hashed_only, skipped = self.suppression.plan(identities)
        planned, skipped = _with_witnesses(planned, skipped, identities, clear_at or {})
        first = [i for i in identities if i not in skipped]
        marks = {key: i for i in first for key in suppression_keys(i, legacy=not hashed_only)}
        found = self._existing([EPOCH_KEY, *marks])
        epoch_item = found.pop(EPOCH_KEY, None)
        epoch = int(epoch_item.get("epoch", 0)) if epoch_item else 0
        now_hashed_only = bool(epoch_item) and epoch_item.get("marks") == HASHED_MARKS
        again = skipped if epoch != planned or not now_hashed_only else set()
        more = {key: i for i in again for key in suppression_keys(i, legacy=not now_hashed_only)}
        if not now_hashed_only and hashed_only:  # raw marks of the first batch's identities were not read
            more |= {legacy_mark_key(i): i for i in first}
        if more:
            found |= self._existing(list(more))
        marks |= more
        forgotten = {marks[key] for key in found if key in marks}
        self.suppression.learn(
            planned=planned,
            epoch=epoch,
            hashed_only=now_hashed_only,
            after=set(again) - forgotten,
            alongside=set(first) - forgotten,
        )
        if self.suppression.wants_digest(epoch):  # once per epoch and container: a GetItem after the epoch's read
            self.suppression.learn_digest(epoch, self.erasure_digest(epoch))
        return forgotten

    def erasure_digest(self, epoch: int) -> frozenset[bytes] | None:
        """The digest of the identities erased as of `epoch` (None: there is none)."""
        pk, sk = digest_key(epoch)
        item = self._get({"PK": pk, "SK": sk}, consistent=True)  # type: ignore[attr-defined]
        return decode_digest(bytes(item["prefixes"])) if item and "prefixes" in item else None

    def clear_epoch(self, identities: Iterable[str]) -> int | None:
        """The epoch at which this store's cache knows all these identities not erased (None: it does not).

        What the collector stamps on an event it stores, for processing (`forgotten_identities(clear_at=…)`)."""
        epoch, hashed_only, clear = self.suppression.plan(list(identities))
        wanted = set(identities)
        return epoch if epoch is not None and hashed_only and wanted and wanted <= clear else None

    def _existing(self, wanted: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
        # Strongly consistent: a forget that returned must be seen by the next request.
        found = self._batch_get(  # type: ignore[attr-defined]
            [{"PK": pk, "SK": sk} for pk, sk in wanted],
            consistent=True,
            projection="PK, SK, #epoch, #marks",
            names={"#epoch": "epoch", "#marks": "marks"},
        )
        return {(item["PK"], item["SK"]): item for item in found}

    def raise_erasure_epoch(self, erased: Sequence[str] = ()) -> None:
        """`raise_erasure_epoch_with` the prefixes of these identities."""
        self.raise_erasure_epoch_with({digest_prefix(identity) for identity in erased})

    def raise_erasure_epoch_with(self, prefixes: Set[bytes]) -> None:
        """Tell every reader's `SuppressionCache` that identities were erased (after their marks are written): the
        epoch goes up by one, with the digest of the new epoch (the last one's plus `prefixes`) in the same
        transaction. Without a digest at the current epoch (a table not migrated yet, or past `DIGEST_LIMIT`), the
        epoch goes up alone.

        Raises:
            StorageError: other forgets kept raising the epoch meanwhile (`DIGEST_ATTEMPTS` times): run it again.
        """
        for _ in range(DIGEST_ATTEMPTS):
            item = self._get({"PK": keys.ERASURE_PK, "SK": keys.EPOCH_SK}, consistent=True)  # type: ignore[attr-defined]
            epoch = int(item.get("epoch", 0)) if item else 0
            digest = self.erasure_digest(epoch)
            new = (digest or frozenset()) | prefixes
            if digest is None or len(new) > DIGEST_LIMIT:
                break
            if self._put_digest(epoch, new):
                return
        else:
            raise StorageError("the erasure epoch kept moving; run forget again (it is idempotent)")
        self._call(  # type: ignore[attr-defined]
            self.client.update_item,
            TableName=self.table_name,
            Key={"PK": {"S": keys.ERASURE_PK}, "SK": {"S": keys.EPOCH_SK}},
            UpdateExpression="ADD #epoch :one SET #entity = :entity",
            ExpressionAttributeNames={"#epoch": "epoch", "#entity": "entity"},
            ExpressionAttributeValues={":one": {"N": "1"}, ":entity": {"S": "erasure_epoch"}},
        )

    def build_erasure_digest(self) -> int:
        """Give a table written before digests its first one: every hashed mark (one filtered Scan, a one-shot
        migration) goes into the digest of the next epoch, raised with it. Returns how many marks it holds (none
        written past `DIGEST_LIMIT`). A forget racing it writes its marks first, so either the scan finds them or
        that forget's own raise (which builds on this digest, or fails its condition and builds on the next one)
        adds them. Idempotent: run again, it writes the digest of one more epoch.
        """
        from shared.storage.segments import _scan

        for _ in range(DIGEST_ATTEMPTS):
            item = self._get({"PK": keys.ERASURE_PK, "SK": keys.EPOCH_SK}, consistent=True)  # type: ignore[attr-defined]
            epoch = int(item.get("epoch", 0)) if item else 0
            prefixes = {
                bytes.fromhex(row["PK"].removeprefix("IDH#")[: 2 * PREFIX_BYTES])
                for row in _scan(
                    self,
                    FilterExpression="SK = :forgotten AND begins_with(PK, :hashed)",
                    ExpressionAttributeValues={":forgotten": {"S": keys.FORGOTTEN_SK}, ":hashed": {"S": "IDH#"}},
                    ProjectionExpression="PK",
                )
            }
            if len(prefixes) > DIGEST_LIMIT:
                return len(prefixes)
            if self._put_digest(epoch, prefixes, expire_old=self.erasure_digest(epoch) is not None):
                return len(prefixes)
        raise StorageError("the erasure epoch kept moving; run migrate again")

    def _put_digest(self, epoch: int, prefixes: Set[bytes], *, expire_old: bool = True) -> bool:
        """One transaction: the digest of epoch + 1, the epoch raised to it if it is still `epoch`, and (with
        `expire_old`) the old digest's expiry. False when the epoch had moved (nothing written)."""
        from shared.storage.dynamo import serialize

        pk, sk = digest_key(epoch + 1)
        old_pk, old_sk = digest_key(epoch)
        row = {"PK": pk, "SK": sk, "entity": "erasure_digest", "epoch": epoch + 1, "prefixes": encode_digest(prefixes)}
        expiry = {":ttl": {"N": str(int(time.time()) + OLD_DIGEST_SECONDS)}}
        condition = "#epoch = :epoch" + (" OR attribute_not_exists(#epoch)" if epoch == 0 else "")
        expire = {
            "Update": {
                "TableName": self.table_name,
                "Key": {"PK": {"S": old_pk}, "SK": {"S": old_sk}},
                "UpdateExpression": "SET #ttl = :ttl",
                "ExpressionAttributeNames": {"#ttl": TTL_ATTRIBUTE},
                "ExpressionAttributeValues": expiry,
            }
        }
        try:
            self._call(  # type: ignore[attr-defined]
                self.client.transact_write_items,
                TransactItems=[
                    {"Put": {"TableName": self.table_name, "Item": serialize(row)}},
                    {
                        "Update": {
                            "TableName": self.table_name,
                            "Key": {"PK": {"S": keys.ERASURE_PK}, "SK": {"S": keys.EPOCH_SK}},
                            "UpdateExpression": "SET #epoch = :next, #entity = :entity",
                            "ConditionExpression": condition,
                            "ExpressionAttributeNames": {"#epoch": "epoch", "#entity": "entity"},
                            "ExpressionAttributeValues": {
                                ":epoch": {"N": str(epoch)},
                                ":next": {"N": str(epoch + 1)},
                                ":entity": {"S": "erasure_epoch"},
                            },
                        }
                    },
                    *([expire] if expire_old else []),
                ],
            )
        except ConditionFailedError:
            return False  # another forget raised it first
        return True

    def put_first_digest(self) -> None:
        """A new, empty table: the (empty) digest of epoch 0."""
        from shared.storage.dynamo import serialize

        pk, sk = digest_key(0)
        row = {"PK": pk, "SK": sk, "entity": "erasure_digest", "epoch": 0, "prefixes": b""}
        self._call(self.client.put_item, TableName=self.table_name, Item=serialize(row))  # type: ignore[attr-defined]

    def flag_marks_hashed(self) -> None:
        """Record that no raw suppression mark is left: readers read the hashed key only from now on."""
        self._call(  # type: ignore[attr-defined]
            self.client.update_item,
            TableName=self.table_name,
            Key={"PK": {"S": keys.ERASURE_PK}, "SK": {"S": keys.EPOCH_SK}},
            UpdateExpression="SET #marks = :hashed, #entity = :entity",
            ExpressionAttributeNames={"#marks": "marks", "#entity": "entity"},
            ExpressionAttributeValues={":hashed": {"S": HASHED_MARKS}, ":entity": {"S": "erasure_epoch"}},
        )

    def move_legacy_marks(
        self, *, page_size: int | None = None, after_page: Callable[[int], None] | None = None
    ) -> int:
        """Move raw suppression marks (`ID#<kind>#<id>` / `FORGOTTEN`) to the hashed key and delete them, then flag
        the table `marks = hashed`; returns the marks moved. Idempotent and resumable: each mark's hashed copy is
        written before its raw one is deleted, so at every moment one of them is there and read.

        The raw marks live in identity partitions, which no index lists: a paged Scan filtered on SK = FORGOTTEN
        finds them. A Scan reads (and bills) the whole table once; acceptable for a one-shot migration.

        Args:
            page_size: items scanned per page (None: DynamoDB's 1 MB pages).
            after_page: called with the running count after each page (tests use it to stop midway).
        """
        from shared.storage.dynamo import deserialize

        moved, start_key = 0, None
        while True:
            kwargs: dict[str, Any] = {
                "TableName": self.table_name,
                "FilterExpression": "SK = :forgotten AND begins_with(PK, :raw)",
                "ExpressionAttributeValues": {":forgotten": {"S": keys.FORGOTTEN_SK}, ":raw": {"S": "ID#"}},
            }
            if page_size:
                kwargs["Limit"] = page_size
            if start_key:
                kwargs["ExclusiveStartKey"] = start_key
            response = self._call(self.client.scan, **kwargs)  # type: ignore[attr-defined]
            raw = [deserialize(item) for item in response.get("Items", [])]
            hashed = [
                {
                    "PK": keys.identity_hash_pk(":".join(keys.parse_identity_pk(item["PK"]))),
                    "SK": keys.FORGOTTEN_SK,
                    "entity": "forgotten",
                    **({"at": item["at"]} if "at" in item else {}),
                }
                for item in raw
            ]
            if self._batch_write(hashed):  # type: ignore[attr-defined]
                raise ThrottledError("hashed suppression marks could not be written; run migrate again")
            if self._batch_write(raw, delete=True):  # type: ignore[attr-defined]
                raise ThrottledError("raw suppression marks could not be deleted; run migrate again")
            moved += len(raw)
            if after_page is not None:
                after_page(moved)
            start_key = response.get("LastEvaluatedKey")
            if not start_key:
                break
        self.flag_marks_hashed()
        return moved

    def note_conflict(self, identity: str, customer_id: str, event: TrackingEvent) -> None:
        """Index a conflict flag about to be saved on `customer_id`'s profile naming `identity` (written first, so
        a forget of `identity` always finds the flag and the event that caused it)."""
        key = items.event_key(event)
        row = {
            "PK": keys.identity_hash_pk(identity),
            "SK": f"{keys.NAMED_SK_PREFIX}FLAG#{customer_id}#{event.message_id}",
            "entity": NAMED_ENTITY,
            "kind": "flag",
            "customer_id": customer_id,
            "target_pk": key["PK"],
            "target_sk": key["SK"],
        }
        if self._batch_write([row]):  # type: ignore[attr-defined]
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
        if self._batch_write(marks):  # type: ignore[attr-defined]
            raise ThrottledError("suppression marks could not be written")
        self.raise_erasure_epoch(identities)  # after the marks, never before: `SuppressionCache` says why
        doomed: list[dict[str, Any]] = []
        for identity in identities:
            doomed += self._keys_of(keys.identity_pk(*split_identity(identity)))
            doomed += self._named(identity, gone, set(customer_ids))
        for cid in customer_ids:
            doomed += self._customer_items(cid)
        doomed += self._history_of(set(customer_ids))
        doomed += self._unindexed_failed(gone)
        emptied = self._rewrite_live(gone)
        unique = list({(d["PK"], d["SK"]): d for d in doomed}.values())
        if self._batch_write(unique, delete=True):  # type: ignore[attr-defined]
            raise ThrottledError("some items could not be deleted; run forget again")
        return len(unique) + emptied

    # --- finders ---------------------------------------------------------------------------------------------

    def _keys_of(self, pk: str, *, prefix: str | None = None) -> list[dict[str, Any]]:
        condition = "PK = :pk" + (" AND begins_with(SK, :sk)" if prefix else "")
        values = {":pk": {"S": pk}} | ({":sk": {"S": prefix}} if prefix else {})
        return [
            {"PK": item["PK"], "SK": item["SK"]}
            for item in self._query(  # type: ignore[attr-defined]
                KeyConditionExpression=condition, ExpressionAttributeValues=values, ProjectionExpression="PK, SK"
            )
        ]

    def _named(self, identity: str, gone: set[str], customers: set[str]) -> list[dict[str, Any]]:
        """The index items naming an identity, and what they point at (failed records; flags and events)."""
        doomed: list[dict[str, Any]] = []
        for row in self._query(  # type: ignore[attr-defined]
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
        for row in self._query(  # type: ignore[attr-defined]
            KeyConditionExpression="PK = :pk", ExpressionAttributeValues={":pk": {"S": keys.customer_pk(customer_id)}}
        ):
            doomed.append({"PK": row["PK"], "SK": row["SK"]})
            if row.get("entity") == "due_index":
                doomed.append(_due_target(row, customer_id))
            elif row.get("entity") == items.PROFILE_ENTITY:
                doomed += self._flag_index_of(row, customer_id)
        return doomed

    def _flag_index_of(self, row: dict[str, Any], customer_id: str) -> list[dict[str, Any]]:
        try:
            flags = items.item_to_profile(row).profile.flags
        except CorruptItemError:
            return []  # nothing readable to follow; the index items expire with nothing to point at
        named = {entry.get("identity") for flag in CONFLICT_FLAGS for entry in flags.get(flag, [])}
        return [
            {"PK": index["PK"], "SK": index["SK"]}
            for identity in named
            if isinstance(identity, str)
            for index in self._keys_of(
                keys.identity_hash_pk(identity), prefix=f"{keys.NAMED_SK_PREFIX}FLAG#{customer_id}#"
            )
        ]

    def _history_of(self, customers: set[str]) -> list[dict[str, Any]]:
        doomed: list[dict[str, Any]] = []
        for segment in self.list_segments():  # type: ignore[attr-defined]
            doomed += [
                {"PK": item["PK"], "SK": item["SK"]}
                for item in self._query(  # type: ignore[attr-defined]
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
            for item in self._query(  # type: ignore[attr-defined]
                KeyConditionExpression="PK = :pk", ExpressionAttributeValues={":pk": {"S": pk}}
            ):
                if item.get("indexed"):
                    continue
                failure = items.item_to_failed(item)
                named = identities_in(failure.raw, decode_more=_stream_identities)
                if named & gone or any(n in failure.raw for n in needles) or failure.message_id in values:
                    found.append({"PK": item["PK"], "SK": item["SK"]})
        return found

    # --- rewriting what is shared with others ------------------------------------------------------------------

    def _remove_flags(self, customer_id: str, gone: set[str]) -> None:
        for _ in range(_FLAG_ATTEMPTS):
            try:
                stored = self.get_profiles([customer_id]).get(customer_id)  # type: ignore[attr-defined]
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
            from dataclasses import replace

            try:
                self.save_profile(replace(stored, profile=replace(stored.profile, flags=flags)))  # type: ignore[attr-defined]
            except ConditionFailedError:
                continue
            return
        raise ThrottledError(f"flags of {customer_id} kept changing; run forget again")

    def _strip_event(self, pk: str, sk: str, gone: set[str]) -> None:
        """Rewrite another identity's event without the erased ids (the stream ignores the MODIFY)."""
        item = self._get({"PK": pk, "SK": sk}, consistent=True)  # type: ignore[attr-defined]
        if item is None:
            return
        values = {split_identity(i)[1] for i in gone}
        body = _without(items.decode_json(item["body"]), values)
        from shared.storage.dynamo import serialize

        item["body"] = items.encode_json(body)
        self._call(self.client.put_item, TableName=self.table_name, Item=serialize(item))  # type: ignore[attr-defined]

    def _rewrite_live(self, gone: set[str]) -> int:
        """Live-feed items without the erased identities' events; returns how many were left empty (deleted)."""
        from shared.storage.dynamo import serialize

        emptied = 0
        for row in self._query(  # type: ignore[attr-defined]
            KeyConditionExpression="PK = :pk", ExpressionAttributeValues={":pk": {"S": "LIVE"}}
        ):
            events = json.loads(zlib.decompress(bytes(row["events"])))
            kept = [e for e in events if e.get("customer") not in gone]
            if len(kept) == len(events):
                continue
            if not kept:
                if self._batch_write([row], delete=True):  # type: ignore[attr-defined]
                    raise ThrottledError("a live-feed item could not be deleted; run forget again")
                emptied += 1
                continue
            row["events"] = zlib.compress(json.dumps(kept).encode())
            self._call(self.client.put_item, TableName=self.table_name, Item=serialize(row))  # type: ignore[attr-defined]
        return emptied


def _without(value: Any, values: set[str]) -> Any:
    """A JSON value with every member and element equal to one of `values` left out."""
    if isinstance(value, dict):
        return {k: _without(v, values) for k, v in value.items() if not (isinstance(v, str) and v in values)}
    if isinstance(value, list):
        return [_without(v, values) for v in value if not (isinstance(v, str) and v in values)]
    return value
