"""Analytics storage: definitions, per-customer cells, counters folded from the stream, the live feed (mixed into
the store).

| access pattern                                   | key condition                                             |
|--------------------------------------------------|-----------------------------------------------------------|
| funnel and retention definitions                 | PK = `ANALYTICS`, SK = `DEFINITIONS`                      |
| what a customer adds to the counters             | its customer item (`CUSTOMER#<cid>` / `PROFILE`, `cells`) |
| a funnel's counters over a range of entry days   | PK = `FUNNEL#<id>`, SK between `DAY#<from>` and `DAY#<to>~` |
| retention cohorts                                | PK = `RETENTION#<day|week>`, SK between cohorts           |
| engagement by channel and hour of week           | PK = `TIMING`                                             |
| one day's event counts (per minute, per name)    | PK = `STATS#<yyyy-mm-dd>`                                 |
| segment size changes per day                     | PK = `SEGSIZE#<segment>`, SK = `DAY#<day>#<shard>`        |
| when a stream shard was last folded              | PK = `FOLD`, SK = `<stream shard id>`                     |
| the live feed (one item per processed batch)     | PK = `LIVE`, SK = `<time>#<first sequence>` (TTL 1 h)     |
| processing status (lag)                          | PK = `STATUS`, SK = `PROCESS`                             |

Counters are exact, and no customer writes them. Processing writes a customer's cells in its customer item (one
put per customer-batch, conditional on the version it read); the item's stream record carries its old and new
cells, and the fold (a second reader of the stream) adds the differences of a whole batch to the counters: one
update per counter item per batch, whatever the number of customers (`fold_item`). A counter therefore equals the
sum of every customer's stored cells (a merged customer's tombstone holds no cells, an erased one's item is gone:
both records take them back).

The fold is idempotent under redelivery without transactions: each counter item keeps, per stream shard, a mark
(`~<shard hash>`: the last record added to it), and an update adds its counts only if that mark is below the
first record it holds. Records of one shard come in order, so a retried batch adds nothing an item already has;
an item found ahead is read and given only what is after its mark. Marks of shards closed for a day are dropped
as the items are next written (`FOLD` / shard id remembers when each shard was last folded).
"""

from __future__ import annotations

import json
import re
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any

from shared.domain.cells import (
    NET,
    TOTAL,
    Cell,
    Cells,
    FunnelCell,
    HourOfWeek,
    LastReturn,
    Minute,
    Named,
    Net,
    Reached,
    ReachedBy,
    RetentionCell,
    ReturnedOn,
    SizeCell,
    StatsCell,
    StepTime,
    TimingCell,
    Total,
)
from shared.ports import CellsChange, CellsRecord, CounterRecord, CustomerRecord, SizeStep, StoredCells
from shared.storage import customer_segments, keys
from shared.storage.blobs import binary, compress_cells, decompress_cells
from shared.storage.codec import deserialize, serialize
from shared.storage.errors import ConditionFailedError, ThrottledError
from shared.storage.segments import SIZES_PK, size_change
from shared.storage.table import Table

DEFINITIONS_KEY = {"PK": "ANALYTICS", "SK": "DEFINITIONS"}
ANALYTICS_SK = "ANALYTICS"
CELLS_ENTITY = "analytics_cells"
PARALLEL_PUTS = 8
LIVE_TTL_SECONDS = 3600
LIVE_EVENTS_PER_ITEM = 50
LIVE_BLOB_BYTES = 900
"""A live item's compressed events at most (with its key and attributes, within one write unit); the feed reads
several items, so fewer events an item still fill the screen."""
COUNTER_KEYS = ("PK", "SK", "entity")
"""The attributes of a counter item that are not counts (nor the fold's marks: `MARK_PREFIX`)."""


def is_count(name: str) -> bool:
    """Whether a counter item's attribute is a count (not its key, entity or a fold mark: `storage.fold`)."""
    return name not in COUNTER_KEYS and not name.startswith(MARK_PREFIX)


MARK_PREFIX = "~"
"""A counter item's attributes named `~<shard hash>` are the fold's marks (`shared.storage.fold`)."""


# --- cells ↔ keys and attribute names ------------------------------------------------------------------------------
#
# | cell                               | PK                 | SK                          |
# |------------------------------------|--------------------|-----------------------------|
# | FunnelCell(id, day, shard)         | `FUNNEL#<id>`      | `DAY#<day>#<shard>`         |
# | RetentionCell(by, cohort, shard)   | `RETENTION#<by>`   | `<cohort>#<shard>`          |
# | TimingCell(channel, shard)         | `TIMING`           | `<channel>#<shard>`         |
# | StatsCell(day, hour, shard)        | `STATS#<day>`      | `H<hh>#<shard>`, `E#<shard>` (hour None) |
# | SizeCell(segment, day, shard)      | `SEGSIZE[#<day>]`  | `<segment>#<shard>`         |
#
# Counter names: Total `n`, Net `net`, Reached `s|<step>`, ReachedBy `b|<value>|<step>`, StepTime
# `t|<step>|<bucket>`, ReturnedOn `on|<event>|<offset>`, LastReturn `last|<event>|<offset>`, HourOfWeek
# `h|<channel>|<hour>`, Minute `m|<hhmm>`, Named `e|<event>`. Values that may hold `|` or `#` (names, breakdown
# values, channels, segment ids) are read back from the other end, so every mapping is exact both ways.


@dataclass(frozen=True, slots=True)
class RawCell:
    """A stored cell of no kind this version knows (kept and written back as it was)."""

    pk: str
    sk: str


@dataclass(frozen=True, slots=True)
class RawCounter:
    """A stored counter name of no kind this version knows (kept and written back as it was)."""

    name: str


@lru_cache(maxsize=65536)
def cell_key(cell: Any) -> tuple[str, str]:
    """(PK, SK) of a cell's counter item."""
    match cell:
        case FunnelCell(funnel_id=funnel, day=day, shard=shard):
            return f"FUNNEL#{funnel}", f"DAY#{day}#{shard}"
        case RetentionCell(by=by, cohort=cohort, shard=shard):
            return f"RETENTION#{by}", f"{cohort}#{shard}"
        case TimingCell(channel=channel, shard=shard):
            return "TIMING", f"{channel}#{shard}"
        case StatsCell(day=day, hour=hour, shard=shard):
            return f"STATS#{day}", (f"E#{shard}" if hour is None else f"H{hour:02d}#{shard}")
        case SizeCell(segment_id=segment, day=day, shard=shard):
            return (SIZES_PK if day is None else f"{SIZES_PK}#{day}"), f"{segment}#{shard}"
        case RawCell(pk=pk, sk=sk):
            return pk, sk
    raise TypeError(f"not a counter cell: {cell!r}")


@lru_cache(maxsize=65536)
def cell_of(pk: str, sk: str) -> Any:
    """The cell a counter item holds (a `RawCell` for a key of no known kind, or not spelled as this version
    spells it: the mapping is exact both ways, but for `LEGACY_STEP_TIMES`)."""
    try:
        cell = _parse_cell(pk, sk)
    except ValueError:
        return RawCell(pk, sk)
    if isinstance(cell, FunnelCell) and LEGACY_STEP_TIMES.fullmatch(sk):
        return cell
    return cell if cell_key(cell) == (pk, sk) else RawCell(pk, sk)


LEGACY_STEP_TIMES = re.compile(r"DAY#[^#]+#T[0-9]+#[^#]+")
"""How versions before 2026-12 keyed a funnel day's times to reach one step: an item (and a customer's cell) of
their own, `DAY#<day>#T<step>#<shard>`. Read as the day's cell (`from_items` sums them in), so reports and a
customer's cells see one cell; the fold then moves a rewritten customer's share of them into the day's item by
the difference of its cells, while the old item keeps what was added to it: the sums stay exact, nothing to
migrate."""


def _parse_cell(pk: str, sk: str) -> Any:
    kind, _, rest = pk.partition("#")
    head, _, shard = sk.rpartition("#")
    match kind:
        case "FUNNEL" if sk.startswith("DAY#"):
            return FunnelCell(rest, head[4:].partition("#T")[0], shard)
        case "RETENTION":
            return RetentionCell(rest, head, shard)
        case "TIMING" if not rest:
            return TimingCell(head, shard)
        case "STATS" if head == "E":
            return StatsCell(rest, None, shard)
        case "STATS" if head[:1] == "H":
            return StatsCell(rest, int(head[1:]), shard)
        case "SEGSIZE":
            return SizeCell(head, rest or None, shard)
    return RawCell(pk, sk)


_NAMES: dict[type, Callable[[Any], str]] = {
    Total: lambda _: "n",
    Net: lambda _: "net",
    Reached: lambda c: f"s|{c.step}",
    ReachedBy: lambda c: f"b|{c.value}|{c.step}",
    StepTime: lambda c: f"t|{c.step}|{c.bucket}",
    ReturnedOn: lambda c: f"on|{c.event}|{c.offset}",
    LastReturn: lambda c: f"last|{c.event}|{c.offset}",
    HourOfWeek: lambda c: f"h|{c.channel}|{c.hour}",
    Minute: lambda c: f"m|{c.hour:02d}{c.minute:02d}",
    Named: lambda c: f"e|{c.event}",
    RawCounter: lambda c: c.name,
}


@lru_cache(maxsize=65536)
def counter_name(counter: Any) -> str:
    """The attribute name of a counter in its item."""
    spell = _NAMES.get(type(counter))
    if spell is None:
        raise TypeError(f"not a counter name: {counter!r}")
    return spell(counter)


_PAIRS: dict[str, Any] = {"b": ReachedBy, "on": ReturnedOn, "last": LastReturn, "h": HourOfWeek}
"""Counter names `<kind>|<text>|<number>` (the text may hold `|`: the number is the last part)."""


@lru_cache(maxsize=65536)
def counter_of(name: str) -> Any:
    """The counter an attribute name holds (a `RawCounter` for a name of no known kind, or not spelled as this
    version spells it)."""
    try:
        counter = _parse_counter(name)
    except ValueError:
        return RawCounter(name)
    return counter if counter is not None and counter_name(counter) == name else RawCounter(name)


def _parse_counter(name: str) -> Any:
    kind, _, rest = name.partition("|")
    text, _, number = rest.rpartition("|")
    if name in ("n", "net"):
        return TOTAL if name == "n" else NET
    if kind in _PAIRS and text:
        return _PAIRS[kind](text, int(number))
    simple: dict[str, Callable[[], Any]] = {
        "s": lambda: Reached(int(rest)),
        "t": lambda: StepTime(int(text), int(number)),
    }
    simple |= {"m": lambda: Minute(int(rest[:2]), int(rest[2:])), "e": lambda: Named(rest)}
    return simple[kind]() if kind in simple else None


def to_items(cells: Cells) -> dict[tuple[str, str], dict[str, int]]:
    """Cells as counter items: (PK, SK) → attribute → count."""
    return {cell_key(cell): {counter_name(c): n for c, n in counts.items()} for cell, counts in cells.items()}


def from_items(items: Iterable[tuple[str, str, Mapping[str, Any]]]) -> Cells:
    """Counter items `(PK, SK, attributes)` as cells (items of one cell are summed: shards are separate cells)."""
    cells: Cells = {}
    for pk, sk, attributes in items:
        counts = cells.setdefault(cell_of(pk, sk), {})
        for name, value in attributes.items():
            if is_count(name):
                counter = counter_of(name)
                counts[counter] = counts.get(counter, 0) + int(value)
    return cells


def decode_counter_record(*, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> CounterRecord | None:
    """A stream record that moves counters, decoded: a customer's cells item (old and new cells, and when the new
    ones were computed), a membership entering or leaving (its segment's size step); None for any other record.

    A REMOVE of a cells item (the customer erased) has no new cells: it takes back all of the old ones.
    """
    image = new or old
    if image and image.get("entity") == keys.PROFILE_ENTITY:
        cells = _customer_cells_record(old, new)
        steps = tuple(
            SizeStep(step.segment_id, 1 if step.entered else -1, step.at[:10] if step.at else None)
            for step in customer_segments.steps(old=old, new=new)
        )
        return CustomerRecord(cells, steps) if cells is not None or steps else None
    if image and image.get("entity") == CELLS_ENTITY:
        before = decode_cells(binary(old["cells"])) if old and "cells" in old else {}
        after = decode_cells(binary(new["cells"])) if new and "cells" in new else {}
        return CellsRecord(before, after, str((new or {}).get("at") or ""), removed=not new)
    size = size_change(old=old, new=new)
    return None if size is None else SizeStep(*size)


def _customer_cells_record(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> CellsRecord | None:
    """A customer item's record as a cells change: None when neither image holds cells (or they are the same
    bytes, computed at the same moment: a profile write that left the cells alone). A new image without cells (a
    merge's tombstone, or the item gone: the customer erased) takes the old ones back."""
    had, has = bool(old and "cells" in old), bool(new and "cells" in new)
    if not had and not has:
        return None
    if had and has and old and new and old["cells"] == new["cells"] and old.get("cells_at") == new.get("cells_at"):
        return None
    before = decode_cells(binary(old["cells"])) if old and had else {}
    if not (new and has):
        return CellsRecord(before, {}, "", removed=True)
    return CellsRecord(before, decode_cells(binary(new["cells"])), str(new.get("cells_at") or ""))


def encode_cells(cells: Cells) -> bytes:
    plain = {f"{pk}\x1f{sk}": attributes for (pk, sk), attributes in sorted(to_items(cells).items())}
    return compress_cells(json.dumps(plain, separators=(",", ":"), sort_keys=True).encode())


def decode_cells(data: bytes) -> Cells:
    plain = json.loads(decompress_cells(bytes(data)))
    return from_items((*key.split("\x1f", 1), value) for key, value in plain.items())


class AnalyticsStorage(Table):
    """Analytics access patterns; mixed into `DynamoTrackingStore`."""

    # --- definitions ---------------------------------------------------------------------------------------------

    def get_analytics_definitions(self) -> dict[str, Any] | None:
        item = self._get(DEFINITIONS_KEY, consistent=True)
        return json.loads(item["document"]) if item else None

    def put_analytics_definitions(self, document: Mapping[str, Any]) -> None:

        row = {**DEFINITIONS_KEY, "entity": "analytics_definitions", "document": json.dumps(document, sort_keys=True)}
        self._call(self.client.put_item, TableName=self.table_name, Item=serialize(row))

    # --- per-customer cells ----------------------------------------------------------------------------------------

    def get_cells(self, customer_ids: Sequence[str]) -> dict[str, StoredCells]:
        """Customers' cells, from their customer items (version 0 and no cells: no such customer)."""
        wanted = [{"PK": keys.customer_pk(cid), "SK": keys.PROFILE_SK} for cid in dict.fromkeys(customer_ids)]
        found = {
            item["customer_id"]: item
            for item in self._batch_get(wanted, consistent=True, projection="PK, SK, customer_id, version, cells")
        }
        return {
            cid: StoredCells(cid, int(found[cid]["version"]), decode_cells(binary(found[cid]["cells"])))
            if cid in found and "cells" in found[cid]
            else StoredCells(cid, int(found[cid]["version"]) if cid in found else 0, {})
            for cid in dict.fromkeys(customer_ids)
        }

    def save_cells(self, changes: Sequence[CellsChange]) -> list[str]:
        """Write each customer's new cells into its customer item: one update each, conditional on the version
        that was read (a customer without an item has nothing to write: its cells are none).

        Returns:
            The customers whose item changed since it was read (nothing of theirs was written: read them again
            and retry).
        """
        with ThreadPoolExecutor(max_workers=PARALLEL_PUTS) as pool:
            saved = list(pool.map(self._put_cells, changes))
        return [change.previous.customer_id for change, ok in zip(changes, saved, strict=True) if not ok]

    def _put_cells(self, change: CellsChange) -> bool:
        previous = change.previous
        if not previous.version:
            return not change.cells
        values: dict[str, Any] = {":v": {"N": str(previous.version)}, ":next": {"N": str(previous.version + 1)}}
        if change.cells:
            expression = "SET cells = :cells, cells_at = :at, version = :next"
            values |= {":cells": {"B": encode_cells(change.cells)}, ":at": {"S": change.at}}
        else:
            expression = "SET version = :next REMOVE cells, cells_at"
        try:
            self._call(
                self.client.update_item,
                TableName=self.table_name,
                Key={"PK": {"S": keys.customer_pk(previous.customer_id)}, "SK": {"S": keys.PROFILE_SK}},
                UpdateExpression=expression,
                ConditionExpression="version = :v",
                ExpressionAttributeValues=values,
            )
        except ConditionFailedError:
            return False
        return True

    # --- counters ----------------------------------------------------------------------------------------------------

    def counter_items(
        self, pk: str, *, start: str | None = None, end: str | None = None
    ) -> list[tuple[str, dict[str, int]]]:
        """`(SK, counts)` of one counter partition, optionally for SKs between `start` and `end` (inclusive)."""
        query: dict[str, Any] = {"ExpressionAttributeNames": {"#pk": "PK"}}
        if start is not None and end is not None:
            query["KeyConditionExpression"] = "#pk = :pk AND SK BETWEEN :a AND :b"
            query["ExpressionAttributeValues"] = {":pk": {"S": pk}, ":a": {"S": start}, ":b": {"S": end}}
        else:
            query["KeyConditionExpression"] = "#pk = :pk"
            query["ExpressionAttributeValues"] = {":pk": {"S": pk}}
        return [
            (item["SK"], {name: int(value) for name, value in item.items() if is_count(name)})
            for item in self._query(**query)
        ]

    def funnel_counters(self, funnel_id: str, *, start: date, end: date) -> Cells:
        """A funnel's cells for journeys that entered between `start` and `end` (inclusive): one query."""
        pk = cell_key(FunnelCell(funnel_id, start.isoformat()))[0]
        return self._cells(pk, start=f"DAY#{start.isoformat()}", end=f"DAY#{end.isoformat()}~")

    def retention_counters(self, by: str, *, start: date, end: date) -> Cells:
        """The `by` (day or week) cohorts starting between `start` and `end` (inclusive): one query."""
        pk = cell_key(RetentionCell(by, start.isoformat()))[0]
        return self._cells(pk, start=start.isoformat(), end=f"{end.isoformat()}~")

    def timing_counters(self) -> Cells:
        """Engagement by channel and hour of week: one query."""
        return self._cells(cell_key(TimingCell(""))[0])

    def stats_counters(self, day: date) -> Cells:
        """One day's event counters (per hour and minute, per name): one query."""
        return self._cells(cell_key(StatsCell(day.isoformat()))[0])

    def counters_beside(self, cells: Iterable[Cell]) -> Cells:
        """Every counter (non-zero) stored beside the given cells: in the same items' partitions."""
        partitions = sorted({cell_key(cell)[0] for cell in cells})
        found = {cell: counts for pk in partitions for cell, counts in self._cells(pk).items()}
        nonzero = {cell: {name: n for name, n in counts.items() if n} for cell, counts in found.items()}
        return {cell: counts for cell, counts in nonzero.items() if counts}

    def _cells(self, pk: str, *, start: str | None = None, end: str | None = None) -> Cells:
        return from_items((pk, sk, counts) for sk, counts in self.counter_items(pk, start=start, end=end))

    # --- live feed and status ---------------------------------------------------------------------------------

    def put_live(
        self,
        first_sequence: str,
        events: Sequence[Mapping[str, Any]],
        *,
        now: float | None = None,
        status: Mapping[str, Any] | None = None,
    ) -> None:
        """The newest events of a processed batch (idempotent per batch: keyed by its first record), and with
        `status` the processing status the TUI shows (when processing last ran, its lag; `get_status`), both in one
        request.

        Raises:
            ThrottledError: not stored (they are views: the caller goes on).
        """
        moment = time.time() if now is None else now
        kept = list(events[-LIVE_EVENTS_PER_ITEM:])
        blob = zlib.compress(json.dumps(kept).encode())
        while len(blob) > LIVE_BLOB_BYTES and len(kept) > 1:  # one write unit: the oldest go first
            kept = kept[len(kept) // 4 or 1 :]
            blob = zlib.compress(json.dumps(kept).encode())
        row = {
            "PK": "LIVE",
            "SK": f"{moment:017.6f}#{first_sequence}",
            "entity": "live",
            "events": blob,
            "expires_at": int(moment) + LIVE_TTL_SECONDS,
        }
        if status is None:
            self._call(self.client.put_item, TableName=self.table_name, Item=serialize(row))
        elif self._batch_write(
            [row, {"PK": "STATUS", "SK": "PROCESS", "entity": "status", "status": json.dumps(status)}]
        ):
            raise ThrottledError("the live feed and the processing status could not be stored")

    def live_items(self, *, limit: int) -> Iterator[list[dict[str, Any]]]:
        """Event lists of the newest live items first."""
        response = self._call(
            self.client.query,
            TableName=self.table_name,
            KeyConditionExpression="PK = :pk",
            ExpressionAttributeValues={":pk": {"S": "LIVE"}},
            ScanIndexForward=False,
            Limit=limit,
        )

        for raw in response.get("Items", []):
            yield json.loads(zlib.decompress(bytes(deserialize(raw)["events"])))

    def get_status(self) -> dict[str, Any]:
        item = self._get({"PK": "STATUS", "SK": "PROCESS"})
        return json.loads(item["status"]) if item else {}
