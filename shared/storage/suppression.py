"""Suppression marks and the erasure epoch: how every writer knows an identity was forgotten, cheaply.

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

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import Any

from shared.domain.identity import split_identity
from shared.ports import ConditionFailedError
from shared.storage import keys
from shared.storage.codec import deserialize, serialize
from shared.storage.errors import StorageError, ThrottledError
from shared.storage.schema import TTL_ATTRIBUTE
from shared.storage.table import Table

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
    A reader (`SuppressionStorage.forgotten_identities`) reads, in one strongly consistent BatchGetItem, the epoch item
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


class SuppressionStorage(Table):
    """Suppression marks, the erasure epoch and its digest; mixed into `DynamoTrackingStore` (via `ErasureStorage`)."""

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
        now_hashed_only = epoch_item is not None and epoch_item.get("marks") == HASHED_MARKS
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
        item = self._get({"PK": pk, "SK": sk}, consistent=True)
        return decode_digest(bytes(item["prefixes"])) if item and "prefixes" in item else None

    def clear_epoch(self, identities: Iterable[str]) -> int | None:
        """The epoch at which this store's cache knows all these identities not erased (None: it does not).

        What the collector stamps on an event it stores, for processing (`forgotten_identities(clear_at=…)`)."""
        epoch, hashed_only, clear = self.suppression.plan(list(identities))
        wanted = set(identities)
        return epoch if epoch is not None and hashed_only and wanted and wanted <= clear else None

    def _existing(self, wanted: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
        # Strongly consistent: a forget that returned must be seen by the next request.
        found = self._batch_get(
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
            item = self._get({"PK": keys.ERASURE_PK, "SK": keys.EPOCH_SK}, consistent=True)
            epoch = int(item.get("epoch", 0)) if item else 0
            digest = self.erasure_digest(epoch)
            new = (digest or frozenset()) | prefixes
            if digest is None or len(new) > DIGEST_LIMIT:
                break
            if self._put_digest(epoch, new):
                return
        else:
            raise StorageError("the erasure epoch kept moving; run forget again (it is idempotent)")
        self._call(
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
        for _ in range(DIGEST_ATTEMPTS):
            item = self._get({"PK": keys.ERASURE_PK, "SK": keys.EPOCH_SK}, consistent=True)
            epoch = int(item.get("epoch", 0)) if item else 0
            prefixes = {
                bytes.fromhex(row["PK"].removeprefix("IDH#")[: 2 * PREFIX_BYTES])
                for row in self._scan(
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
            self._call(
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
        pk, sk = digest_key(0)
        row = {"PK": pk, "SK": sk, "entity": "erasure_digest", "epoch": 0, "prefixes": b""}
        self._call(self.client.put_item, TableName=self.table_name, Item=serialize(row))

    def flag_marks_hashed(self) -> None:
        """Record that no raw suppression mark is left: readers read the hashed key only from now on."""
        self._call(
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
            response = self._call(self.client.scan, **kwargs)
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
            if self._batch_write(hashed):
                raise ThrottledError("hashed suppression marks could not be written; run migrate again")
            if self._batch_write(raw, delete=True):
                raise ThrottledError("raw suppression marks could not be deleted; run migrate again")
            moved += len(raw)
            if after_page is not None:
                after_page(moved)
            start_key = response.get("LastEvaluatedKey")
            if not start_key:
                break
        self.flag_marks_hashed()
        return moved
