"""When a customer item's derived state pays (issue #15): its write units against the history read it saves.

Processing keeps, in a customer item, a state that spares the next batch reading the customer's history
(`shared.ports.Derived`; `shared.services.prepare`). The item is written at every batch of the customer and billed
per kilobyte started; the history is one Query per identity, billed per 4 KB read (eventually consistent: half a
unit), and a write unit costs five read units (on-demand: $0.625 per million write units, $0.125 per million
read units). So per customer-batch the state costs what it pushes the item over a kilobyte, and saves the read.

For the same simulated histories as `item_size.py` (500 customers over 30 days, and a 3,000-event customer), each
customer's item is sized with and without the state, and its events as event items: the table gives, by history
length, the state's write units and the read's units in dollars per million customer-batches, which is cheaper,
and what processing does (`keeps_state`; "where free": only where the item takes no more kilobytes with it,
`Derived.spare`). Run: `python benchmarks/state_breakeven.py`.
"""

from __future__ import annotations

import json
import math
import sys
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script
    sys.path.insert(0, str(ROOT))

from benchmarks import item_size  # noqa: E402
from benchmarks.dynamo_meter.sizes import item_size as size_of  # noqa: E402
from shared.domain import analytics  # noqa: E402
from shared.services.prepare import keeps_state  # noqa: E402
from shared.storage.codec import serialize  # noqa: E402
from shared.storage.items import event_to_item  # noqa: E402

WRITE_DOLLARS, READ_DOLLARS = 0.625, 0.125
"""On-demand prices per million units (us-east-1), as the cost tables use."""


def main() -> None:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    definitions = analytics.parse_definitions(json.loads(item_size.STARTERS.read_text()))
    histories = item_size.people(item_size.CUSTOMERS, item_size.DAYS, item_size.SEED, now)
    histories.append(item_size.heavy_history(item_size.DAYS, item_size.SEED + 1, now))
    buckets: dict[int, list[tuple[int, float]]] = defaultdict(list)
    for events in histories:
        identities = item_size.identities_of(events)[: item_size.HEAVY_IDENTITIES]
        units = [
            math.ceil(
                size_of(serialize(item_size.customer_item(events, identities, definitions, now, with_state=s))) / 1024
            )
            for s in (True, False)
        ]
        history = sum(size_of(serialize(event_to_item(event))) for event in events)
        bucket = len(events) // 10 * 10 if len(events) < 500 else len(events)
        buckets[bucket].append((units[0] - units[1], math.ceil(history / 4096) * 0.5))
    print(
        "| events in the history | customers | state: write units, $ per M batches | read saved: read units, $ "
        "| cheaper | kept |"
    )
    print("|---|---|---|---|---|---|")
    for bucket, found in sorted(buckets.items()):
        state = sum(units for units, _ in found) / len(found)
        read = sum(units for _, units in found) / len(found)
        label = f"{bucket}-{bucket + 9}" if bucket < 500 else f"{bucket:,}"
        cheaper = "state" if state * WRITE_DOLLARS < read * READ_DOLLARS else "read"
        kept = "yes" if keeps_state(bucket) else "where free"
        print(
            f"| {label} | {len(found)} | {state:.2f} WU, ${state * WRITE_DOLLARS:.3f} | {read:.2f} RU, "
            f"${read * READ_DOLLARS:.3f} | {cheaper} | {kept} |"
        )


if __name__ == "__main__":
    main()
