"""The fold's storage (mixed into the store): counter items updated once per stream batch, each idempotently.

| access pattern                                   | key condition                                             |
|--------------------------------------------------|-----------------------------------------------------------|
| a cell's counter item                            | `shared.storage.analytics.cell_key`                       |
| when a stream shard was last folded              | PK = `FOLD`, SK = `<stream shard id>`                     |

Each counter item keeps, per stream shard, a mark (`~<shard hash>`: the last record added to it); an update adds
its counts only if that mark is below the first record it holds (`fold_item`), so a redelivered batch adds nothing
twice, without a transaction. `FOLD` / shard id says when the shard was last folded (marks of shards closed a day
are dropped as their items are next written; the entry expires a week on) and, on tables folded before per-item
marks, how far that version's transactions went (`mark`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from shared.ports import FoldLane
from shared.storage.analytics import MARK_PREFIX, cell_key, counter_name, counter_of
from shared.storage.errors import ConditionFailedError
from shared.storage.schema import TTL_ATTRIBUTE
from shared.storage.table import Table

FOLD_PK = "FOLD"
LANE_TTL_SECONDS = 7 * 24 * 3600


def mark_attribute(lane: str) -> str:
    """The attribute of a counter item holding a shard's mark (a hash: shard ids are long)."""
    return MARK_PREFIX + hashlib.sha256(lane.encode()).hexdigest()[:12]


class FoldStorage(Table):
    """The fold's access patterns; mixed into `DynamoTrackingStore`."""

    def fold_lanes(self) -> dict[str, FoldLane]:
        """The stream shards the fold has seen (`FOLD` / shard id): one query of a small partition."""
        rows = self._query(KeyConditionExpression="PK = :pk", ExpressionAttributeValues={":pk": {"S": FOLD_PK}})
        return {
            str(row["SK"]): FoldLane(
                str(row["mark"]) if "mark" in row else None,
                datetime.fromtimestamp(int(row["seen"]), UTC) if "seen" in row else None,
            )
            for row in rows
        }

    def touch_lane(self, lane: str, at: datetime) -> None:
        """Remember that a shard was folded at `at` (its entry expires a week after: a closed shard is forgotten)."""
        self._call(
            self.client.update_item,
            TableName=self.table_name,
            Key={"PK": {"S": FOLD_PK}, "SK": {"S": lane}},
            UpdateExpression="SET #seen = :seen, #entity = :entity, #ttl = :ttl",
            ExpressionAttributeNames={"#seen": "seen", "#entity": "entity", "#ttl": TTL_ATTRIBUTE},
            ExpressionAttributeValues={
                ":seen": {"N": str(int(at.timestamp()))},
                ":entity": {"S": "fold"},
                ":ttl": {"N": str(int(at.timestamp()) + LANE_TTL_SECONDS)},
            },
        )

    def counter_order(self, counter: Any) -> str:
        """A counter name's place in the fold's order: its attribute name."""
        return counter_name(counter)

    def fold_item(
        self, lane: str, cell: Any, counts: Mapping[Any, int], *, first: str, upto: str, forget: Sequence[str] = ()
    ) -> bool:
        """Add `counts` to a cell's counter item and move the shard's mark on it to `upto`, if that mark is below
        `first` (the first record the counts hold); also drop the marks of closed shards (`forget`). False: the
        mark is at or past `first` (some of it was folded before): nothing was written.

        One update, no transaction: billed once, at the item's size.
        """
        pk, sk = cell_key(cell)
        present = sorted(counter_name(c) for c, n in counts.items() if n)
        names = {f"#{i}": name for i, name in enumerate(present)} | {"#m": mark_attribute(lane)}
        values = {f":{i}": {"N": str(counts[counter_of(name)])} for i, name in enumerate(present)}
        expression = ("ADD " + ", ".join(f"#{i} :{i}" for i in range(len(present))) + " ") if present else ""
        expression += "SET #m = :upto, entity = :entity"
        stale = [mark_attribute(other) for other in forget if other != lane]
        if stale:
            names |= {f"#s{i}": name for i, name in enumerate(stale)}
            expression += " REMOVE " + ", ".join(f"#s{i}" for i in range(len(stale)))
        try:
            self._call(
                self.client.update_item,
                TableName=self.table_name,
                Key={"PK": {"S": pk}, "SK": {"S": sk}},
                UpdateExpression=expression,
                ConditionExpression="attribute_not_exists(#m) OR #m < :first",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={
                    **values,
                    ":upto": {"S": upto},
                    ":first": {"S": first},
                    ":entity": {"S": "counter"},
                },
            )
        except ConditionFailedError:
            return False
        return True

    def item_mark(self, lane: str, cell: Any) -> str | None:
        """How far a shard has been folded into a cell's counter item (strongly consistent)."""
        pk, sk = cell_key(cell)
        item = self._get({"PK": pk, "SK": sk}, consistent=True)
        mark = (item or {}).get(mark_attribute(lane))
        return str(mark) if mark is not None else None
