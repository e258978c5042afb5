"""A DynamoDB meter that bills every request as AWS bills it, per entity: used by `make bench` and by the tests.

Not shipped (it lives beside the benchmarks). It sees requests in one of two ways, both feeding the same `Meter`:

- `Meter.attach(client)`: botocore's `before-call.dynamodb` / `after-call.dynamodb` events on one client (the
  serialized request body and the raw response body, exactly what goes over the wire). For in-process code that
  takes an injected client (tests, the TUI bench).
- `meter_this_process(directory)`: the same hook on every embedded-database client a process makes through
  `make_client`, its ledger dumped to `<directory>/<pid>.json` a few times a second. `footfall serve` runs its
  collector workers and stream runner as child processes that build their own clients; the cost bench starts it
  with `benchmarks/metered/` on `PYTHONPATH`, whose `sitecustomize` calls this in each of them when
  `FOOTFALL_METER_DIR` is set, and sums the dumps (`MeterDumps`). This is what the bench uses: the real local
  pipeline on the embedded database, nothing in between.
- `python benchmarks/meter.py proxy --upstream URL`: an HTTP proxy in front of a DynamoDB endpoint (any endpoint a
  `footfall serve --endpoint-url` can use; every call of its processes goes through it).

What is billed (Amazon DynamoDB Developer Guide; `search` docs corpus, pages cited):
- Item size ("Item sizes and formats", CapacityUnitCalculations.html): attribute name lengths (UTF-8) plus values;
  strings by UTF-8 length; binary by raw length; numbers 1 byte per two significant digits (leading and trailing
  zeros trimmed) + 1; null and boolean 1 byte; a list or map 3 bytes + 1 byte per element + its elements (a map's
  element includes its key's length); a set the sum of its elements.
- Writes (read-write-operations.md, "Capacity unit consumption for write operations"): one write unit per 1 KB,
  rounded up per item, minimum 1. PutItem and UpdateItem bill the larger of the item before and after; DeleteItem
  bills the deleted item (1 WU when there was none). BatchWriteItem bills each put and delete as if alone; requests
  returned in `UnprocessedItems` were not applied and are not billed. A write whose `ConditionExpression` is false
  still consumes write units: the size of the existing item, minimum 1 ("Conditional writes").
- Transactions (transaction-apis.html, "Capacity management for transactions"): two underlying writes per item
  (prepare and commit), so every TransactWriteItems action is billed 2x its item units, ConditionCheck included
  (2x the checked item's units, minimum 2); TransactGetItems 2x the read units of each item. A cancelled
  transaction is billed here like a failed conditional write of every action, at 2x (the guide does not give the
  figure; this is the conservative reading, stated).
- Global secondary indexes (GSI.html, "Writes to a global secondary index"): an index write per item write that
  changes the index: a new entry (put), an entry whose index key changes (delete + put: two writes), an entry
  removed (delete), an entry whose projected attributes change (one write); nothing when neither the keys nor the
  projection change. Entry size = the projected attributes (table keys + index keys for KEYS_ONLY), per 1 KB.
  Index writes are standard writes (index propagation is not transactional), billed 1x.
- Reads (read-write-operations.md, "Capacity unit consumption for read operations"): per 4 KB; eventually
  consistent half, strongly consistent full, transactional double. GetItem and each BatchGetItem key on the full
  item size (a projection does not reduce it; a missing item still costs the minimum); Query and Scan on the total
  size of the items *evaluated* per request (before any FilterExpression, whatever the projection), rounded up to
  4 KB, minimum one unit; a GSI read on the index entries. Unprocessed keys are not billed. Reads of the stream by
  the processing Lambda are free (DynamoDB Streams pricing for Lambda triggers), as are control-plane calls.
- Not billed: throttled and otherwise rejected requests (no capacity consumed). Any operation the meter does not
  know is counted in `Ledger.unknown`; the bench fails on a non-empty one rather than skipping it.

Before and after images: the meter reads them from the backend through a separate, unmetered client (`BackendReader`,
consistent BatchGetItem) just before a write goes out and, for updates, just after. A shadow of sizes would have to
re-implement UpdateExpression; a read of the real item cannot disagree with the backend. The proxy holds one lock from
the before-read to the after-read of every write (and of every read it must replay), so no other write can slip in
between; the client hook does not (exact for one writer per item at a time, which is how the tests use it; the
pipeline's functions seldom write one item at the same moment). Query/Scan with a filter, a projection or
`Select=COUNT`, and GetItem/BatchGetItem with a projection, are replayed unmetered without them to size what DynamoDB
evaluated.

Per-entity ledger: every item carries an `entity` attribute (after image, else before image, else the request's
item); an item without one is classed by its partition key prefix (`PK` up to the first `#`).

This module is the meter's door (`import meter` with `benchmarks/` on the path, `from benchmarks.meter import …`,
`python benchmarks/meter.py proxy …`); the code is in `benchmarks/dynamo_meter/`: `sizes` (sizes, units, billed
operations, the table's keys and index entries, entities), `ledger` (the bill), `reader` (unmetered images and
replays), `meter` (`Meter`, its botocore hook), `proxy` (the HTTP front-end), `process` (`meter_this_process`,
`MeterDumps`).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `import meter` and `python benchmarks/meter.py` find the package and `shared` here
    sys.path.insert(0, str(ROOT))

from benchmarks.dynamo_meter.ledger import Ledger, Line, ledger_rows  # noqa: E402
from benchmarks.dynamo_meter.meter import Meter, Pending  # noqa: E402
from benchmarks.dynamo_meter.process import DUMP_SECONDS, GENERATION_FILE, MeterDumps, meter_this_process  # noqa: E402
from benchmarks.dynamo_meter.proxy import CONTROL_PATH, MeteringProxy, fetch_ledger, main, start_proxy  # noqa: E402
from benchmarks.dynamo_meter.reader import BackendReader  # noqa: E402
from benchmarks.dynamo_meter.sizes import (  # noqa: E402
    FREE,
    READ_KB,
    READS,
    THROTTLED,
    WRITE_KB,
    WRITES,
    Index,
    Schema,
    entity_of,
    item_size,
    number_size,
    read_units,
    value_size,
    write_units,
)

__all__ = [
    "CONTROL_PATH",
    "DUMP_SECONDS",
    "FREE",
    "GENERATION_FILE",
    "READS",
    "READ_KB",
    "ROOT",
    "THROTTLED",
    "WRITES",
    "WRITE_KB",
    "BackendReader",
    "Index",
    "Ledger",
    "Line",
    "Meter",
    "MeterDumps",
    "MeteringProxy",
    "Pending",
    "Schema",
    "entity_of",
    "fetch_ledger",
    "item_size",
    "ledger_rows",
    "main",
    "meter_this_process",
    "number_size",
    "read_units",
    "start_proxy",
    "value_size",
    "write_units",
]

if __name__ == "__main__":
    main()
