"""Moving a table's items between backends, as JSON lines in DynamoDB's export format (`{"Item": {...}}`, binary
values base64), so a local data directory can go to AWS and an AWS table can come home for investigation.

An import is a restore, like DynamoDB's ImportTable: the items are copied as they are (profiles, counters,
memberships), never processed again. Only the profiles' applied stream positions are dropped: they are sequence
numbers of the old table's stream, meaningless (and higher or lower at random) in the new one's, where every
change is new; so are the events' erasure epochs, for the same reason, and the old table's erasure epoch and digests
(`ERASURE` partition): the import raises the new table's epoch with the imported marks in its digest instead
(marks of a table written before hashed marks are imported hashed). Into the embedded database it writes no change
records; into DynamoDB it writes through BatchWriteItem, so import into a table whose stream has no consumer yet
(before `footfall deploy` maps the process function to it), or the events would be folded in a second time.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import Any

from shared.ports import CorruptItemError
from shared.storage import items, keys
from shared.storage.codec import deserialize, serialize
from shared.storage.dynamo import DynamoTrackingStore
from shared.storage.errors import StorageError, ThrottledError
from shared.storage.sqlite.codec import decode_value
from shared.storage.suppression import PREFIX_BYTES

RESTORE_BATCH = 500


def export_lines(store: DynamoTrackingStore) -> Iterator[str]:
    """Every item of the store's table, one JSON line each (a strongly consistent, paged Scan)."""
    start: dict[str, Any] | None = None
    while True:
        page = store._call(
            store.client.scan,
            TableName=store.table_name,
            ConsistentRead=True,
            **({"ExclusiveStartKey": start} if start else {}),
        )
        for item in page.get("Items", []):
            yield json.dumps({"Item": item}, separators=(",", ":"), default=_base64)
        start = page.get("LastEvaluatedKey")
        if not start:
            return


def import_lines(store: DynamoTrackingStore, lines: Iterable[str]) -> int:
    """Write the items of export lines into the store's table; returns how many.

    Raises:
        StorageError: a line is not an exported item (nothing after it is written).
        ThrottledError: some items could not be written after the retries.
    """
    restore = getattr(store.client, "restore_items", None)  # the embedded database: no change records
    batch: list[dict[str, Any]] = []
    count = 0
    erased: set[bytes] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        item = _item(line, number)
        if item["PK"].get("S") == keys.ERASURE_PK:
            continue  # the old table's epoch and digests: this table has its own
        if item["SK"].get("S") == keys.FORGOTTEN_SK:
            item = _hashed_mark(item)
            erased.add(bytes.fromhex(item["PK"]["S"].removeprefix("IDH#")[: 2 * PREFIX_BYTES]))
        batch.append(item)
        if len(batch) >= RESTORE_BATCH:
            count += _write(store, restore, batch)
            batch = []
    count += _write(store, restore, batch) if batch else 0
    if erased:
        store.raise_erasure_epoch_with(erased)  # readers here read these marks, the new ones among them
    return count


def _hashed_mark(item: dict[str, Any]) -> dict[str, Any]:
    """A suppression mark as this version keeps it (`IDH#<hash>`; raw `ID#<kind>#<id>` before)."""
    pk = item["PK"]["S"]
    if pk.startswith("IDH#"):
        return item
    return {**item, "PK": {"S": keys.identity_hash_pk(":".join(keys.parse_identity_pk(pk)))}}


def _write(store: DynamoTrackingStore, restore: Any, batch: list[dict[str, Any]]) -> int:
    batch = [_restored(item) for item in batch]
    if restore is not None:
        restore(TableName=store.table_name, Items=batch)
    elif store._batch_write([deserialize(item) for item in batch]):
        raise ThrottledError("some items could not be imported; import the file again (puts are idempotent)")
    return len(batch)


def _restored(item: dict[str, Any]) -> dict[str, Any]:
    """The item as the new table keeps it: a profile without the old stream's positions, an event without the old
    table's erasure epoch (`items.CLEAR_EPOCH_ATTRIBUTE`: the new table's epochs count other forgets)."""
    if item.get("entity", {}).get("S") == items.EVENT_ENTITY:
        return {name: value for name, value in item.items() if name != items.CLEAR_EPOCH_ATTRIBUTE}
    if item.get("entity", {}).get("S") != items.PROFILE_ENTITY:
        return item
    try:
        stored = items.item_to_profile(deserialize(item))
    except CorruptItemError:
        return item  # kept as it is: processing quarantines it as it would have on the old table
    return serialize(items.profile_to_item(replace(stored, applied={})))


def _item(line: str, number: int) -> dict[str, Any]:
    try:
        item = json.loads(line)["Item"]
        return {name: decode_value(value) for name, value in item.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StorageError(f"line {number} is not an exported item: {exc}") from exc


def _base64(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"not an item value: {type(value).__name__}")
