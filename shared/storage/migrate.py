"""`footfall migrate`: bring a table written by an older version up to the items this version reads.

The table keeps its schema version in one item (`META` / `SCHEMA`, attribute `version`; absent: 0). `STEPS` is
the ordered list of changes; `migrate` runs those above the stored version, in order, and records each step's
version as soon as it has completed. So a run that stops midway (a crash, throttling past the retries) resumes
at the step that did not finish, which runs again from the start: every step must be idempotent (converge when
run again over its own partial work). A table the product creates is stamped with the newest version at once
(`stamp_new_table`), with what each step would have left behind (`Step.on_new_table`), so nothing runs on it.

`footfall serve` runs it before starting the pipeline, `footfall deploy` after the stack is up, and it can be run
by hand (`footfall migrate`). To add a change, append a `Step` with the next version.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.domain import analytics
from shared.domain.events import format_timestamp
from shared.ports import CorruptItemError, StoredProfile
from shared.storage import keys
from shared.storage.analytics import CELLS_ENTITY, decode_cells
from shared.storage.blobs import binary
from shared.storage.errors import StorageError
from shared.storage.items import item_to_profile
from shared.storage.segments import upgrade_due_items

if TYPE_CHECKING:
    from shared.storage.dynamo import DynamoTrackingStore

logger = logging.getLogger(__name__)

MOVE_ATTEMPTS = 5


@dataclass(frozen=True)
class Step:
    """One change of the stored items."""

    version: int
    """The schema version a table has once this step has run (steps are numbered 1, 2, 3…)."""
    name: str
    run: Callable[[DynamoTrackingStore], int]
    """Does the change and returns how many items it changed; idempotent (it may run again after a crash)."""
    on_new_table: Callable[[DynamoTrackingStore], None] | None = None
    """What a new, empty table needs so that it is as if this step had run (None: nothing)."""


def move_legacy_marks(store: DynamoTrackingStore) -> int:
    """Raw suppression marks (`ID#<kind>#<id>` / `FORGOTTEN`) to the hashed key; see `SuppressionStorage`."""
    return store.move_legacy_marks()


def one_entry_per_deadline(store: DynamoTrackingStore) -> int:
    """Old due items (`DUE#<minute>`, one per customer and rule) to one entry per customer and moment, with TTL;
    see `shared.storage.segments.upgrade_due_items`."""
    return upgrade_due_items(store)


def erasure_digest(store: DynamoTrackingStore) -> int:
    """The first digest of the erased identities, from the marks (see `shared.storage.suppression`)."""
    return store.build_erasure_digest()


def cells_into_customer_items(store: DynamoTrackingStore) -> int:
    """Each customer's cells item (`CUSTOMER#<cid>` / `ANALYTICS`) into its customer item, then deleted; returns how
    many cells items it removed.

    The counters do not move: the fold adds the cells the customer item gains and takes back those of the removed
    item (both cut at the overview horizon of now). A customer item that already holds cells (written by this
    version since) keeps them, and one merged away or gone gets none: in every case the old item only goes. Safe
    to run again: a moved customer item holds cells, so a second run only deletes what is left.
    """
    now = datetime.now(UTC)
    moved = 0
    for row in store._scan(
        FilterExpression="#e = :cells",
        ExpressionAttributeNames={"#e": "entity"},
        ExpressionAttributeValues={":cells": {"S": CELLS_ENTITY}},
    ):
        customer_id = row["PK"].removeprefix("CUSTOMER#")
        cells = analytics.kept(decode_cells(binary(row["cells"])), now=now) if "cells" in row else {}
        _move_cells(store, customer_id, cells, format_timestamp(now))
        store._call(
            store.client.delete_item, TableName=store.table_name, Key={"PK": {"S": row["PK"]}, "SK": {"S": row["SK"]}}
        )
        moved += 1
    return moved


def _move_cells(store: DynamoTrackingStore, customer_id: str, cells: Any, at: str) -> None:
    from shared.storage.errors import ConditionFailedError

    for _ in range(MOVE_ATTEMPTS):
        stored = store.get_profiles([customer_id]).get(customer_id)
        if stored is None or stored.profile.merged_into or stored.cells or not cells:
            return
        try:
            store.save_profile(replace(stored, cells=cells, cells_at=at))
            return
        except ConditionFailedError:
            continue  # processing wrote it meanwhile: read it again
    raise StorageError("a customer item kept changing while its cells were moved into it: run migrate again")


def memberships_into_customer_items(store: DynamoTrackingStore) -> int:
    """Each older customer's memberships (its `MEMBER#<segment>` items, the authority until now) adopted by its
    customer item, in one conditional write of that item (`StoredProfile.adopting`); returns how many customer
    items adopted theirs. A customer merged away by an older version (which left its memberships in) leaves them
    in that write, announced as exits of the merge.

    The write's record does the rest, as it does when processing adopts a customer it meets first: the member items
    of the segments held, and the membership items retired (out of the members index and the stream readers'
    view), with no announcement and no size change (the membership items were counted). A customer item that holds
    its segments already (written by this version since, or adopted by a run before) is left alone: safe to run
    again.
    """
    from shared.storage.errors import ConditionFailedError

    adopted = 0
    for row in store._scan(
        FilterExpression="#e = :profile",
        ExpressionAttributeNames={"#e": "entity"},
        ExpressionAttributeValues={":profile": {"S": keys.PROFILE_ENTITY}},
    ):
        try:
            stored: StoredProfile | None = item_to_profile(row)
        except CorruptItemError:  # processing sets its records aside (quarantine); its next good write adopts
            logger.warning("a customer item that cannot be decoded was left as it is")  # (its key names the id)
            continue
        for _ in range(MOVE_ATTEMPTS):
            if stored is None or stored.segments is not None:
                break
            customer_id = stored.profile.customer_id
            memberships = store.memberships_of(customer_id)
            if stored.profile.merged_into and not memberships:
                break  # a tombstone in no segment: nothing to leave
            try:
                store.save_profile(stored.adopting(memberships))
                adopted += 1
                break
            except ConditionFailedError:  # processing wrote it meanwhile (and may have adopted them): read again
                stored = store.get_profiles([customer_id]).get(customer_id)
        else:
            raise StorageError("a customer item kept changing while its memberships were adopted: run migrate again")
    return adopted


STEPS: list[Step] = [
    Step(1, "hashed suppression marks", move_legacy_marks, on_new_table=lambda store: store.flag_marks_hashed()),
    Step(2, "one due entry per customer deadline", one_entry_per_deadline),
    Step(3, "digest of the erased identities", erasure_digest, on_new_table=lambda store: store.put_first_digest()),
    Step(4, "analytics cells in the customer item", cells_into_customer_items),
    Step(5, "segments in the customer item", memberships_into_customer_items),
]
"""Counters folded from the stream need no step: a table's old per-customer shards keep summing correctly (reports
add every shard of a key) and each customer's next cells write moves its counts to the fold's shard."""


def latest_version() -> int:
    """The schema version this code writes."""
    return max((step.version for step in STEPS), default=0)


def stored_version(store: DynamoTrackingStore) -> int:
    """The table's schema version (0: a table from before versions were recorded)."""
    item = store._get({"PK": keys.META_PK, "SK": keys.SCHEMA_SK}, consistent=True)
    return int(item.get("version", 0)) if item else 0


def needs_migration(store: DynamoTrackingStore) -> bool:
    """Whether some step has not run on this table."""
    return stored_version(store) < latest_version()


def migrate(store: DynamoTrackingStore) -> list[tuple[str, int]]:
    """Run the steps above the table's version, in order; returns `(step name, items changed)` of each step run.

    Raises:
        StorageError: a step failed; the steps before it are recorded, run it again to go on.
    """
    _check_order()
    done: list[tuple[str, int]] = []
    current = stored_version(store)
    for step in STEPS:
        if step.version <= current:
            continue
        changed = step.run(store)
        _record(store, step.version)
        done.append((step.name, changed))
    return done


def stamp_new_table(store: DynamoTrackingStore) -> None:
    """Mark a table just created (empty) as at the newest version, with what the steps would have left."""
    _check_order()
    for step in STEPS:
        if step.on_new_table is not None:
            step.on_new_table(store)
    _record(store, latest_version())


def _record(store: DynamoTrackingStore, version: int) -> None:
    # Only ever up: a slower, older run finishing late must not take the version back.
    from shared.storage.errors import ConditionFailedError

    with contextlib.suppress(ConditionFailedError):  # already at this version or above
        store._call(
            store.client.update_item,
            TableName=store.table_name,
            Key={"PK": {"S": keys.META_PK}, "SK": {"S": keys.SCHEMA_SK}},
            UpdateExpression="SET #version = :v, #entity = :entity",
            ConditionExpression="attribute_not_exists(#version) OR #version < :v",
            ExpressionAttributeNames={"#version": "version", "#entity": "entity"},
            ExpressionAttributeValues={":v": {"N": str(version)}, ":entity": {"S": "schema"}},
        )


def _check_order() -> None:
    versions = [step.version for step in STEPS]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migration steps must be numbered 1, 2, 3… in order, not {versions}")
