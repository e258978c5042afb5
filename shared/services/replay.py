"""Replaying failed events after a fix: refused collector input and quarantined stream records."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from shared.domain.errors import TrackingError
from shared.domain.failures import FailedEvent
from shared.domain.segments import Due
from shared.ports import AudienceWriter, FoldStore, StorageError, StoredSegment, StreamItems
from shared.services.analytics import CounterChange, counter_change, fold
from shared.services.audiences import (
    MembershipChange,
    follow_customer_items,
    record_membership_changes,
)
from shared.services.collect import Collector, utcnow
from shared.services.pipeline import Followed, Membership, decode_images
from shared.services.process import ProfileStore, process_changes
from shared.services.quarantine import CUSTOMER_ROUTE, FOLD_ROUTE, STREAM_ROUTE
from shared.services.requests import decode_failed
from shared.services.segments import retry_later, rules_of


class ReplayError(Exception):
    """This failed event cannot be replayed (and why)."""


class ReplayStore(ProfileStore, AudienceWriter, FoldStore, Protocol):
    """What replay needs from storage."""

    def delete_failed(self, failure_id: str) -> None: ...
    def list_segments(self) -> list[StoredSegment]: ...
    def put_due(self, dues: Sequence[Due], *, indexed: bool = False) -> None: ...

    @property
    def stream_items(self) -> StreamItems: ...


def change_from_record(record: dict[str, Any], route: str, stream_items: StreamItems) -> Any:
    """A quarantined Lambda-shaped stream record (wire-format images, read by `stream_items`) → what replaying it
    does, as the reader that set it aside (`route`) would have: the fold's → a `CounterChange`; processing's → a
    `MembershipChange` (its audience event and history; the fold counted its size), a customer item's `Followed`
    entries and exits (member items too), or a `StreamChange` (an event);
    None when it carries neither. A customer's cells record under processing's route was set aside before the fold
    had a reader of its own (then processing folded it): it is folded."""
    data = record["dynamodb"]
    old = stream_items.from_wire(data["OldImage"]) if "OldImage" in data else None
    new = stream_items.from_wire(data["NewImage"]) if "NewImage" in data else None
    created = data.get("ApproximateCreationDateTime")
    received = datetime.fromtimestamp(float(created), UTC) if created else datetime.now(UTC)
    if route == FOLD_ROUTE or stream_items.is_cells(new or old):
        return counter_change(data["SequenceNumber"], stream_items.counter_record(old=old, new=new), received=received)
    decoded = decode_images(data["SequenceNumber"], old, new, stream_items)
    return decoded.change if isinstance(decoded, Membership) else decoded


def replay(store: ReplayStore, collector: Collector, failure: FailedEvent, decode_record: Any) -> dict[str, Any]:
    """Process a failed event again; on success it leaves the failed-events store.

    Args:
        decode_record: (Lambda-shaped stream record, route, the store's `stream_items`) → what to replay
            (`change_from_record`).

    Raises:
        ReplayError: it cannot be replayed (authentication failures never are), or it fails again.
    """
    if failure.route == CUSTOMER_ROUTE:
        # The next sweep evaluates the customer again (segments and analytics); if it fails again, it is back here.
        customer_id = str(json.loads(failure.raw)["customer_id"])
        now = utcnow()
        segments = retry_later([customer_id], now=now) if rules_of(store.list_segments()) else []
        store.put_due([*retry_later([customer_id], now=now, analytics=True), *segments])
        store.delete_failed(failure.id)
        return {"replayed": failure.id, "scheduled": customer_id}
    if failure.route in (STREAM_ROUTE, FOLD_ROUTE):
        return _replay_stream_record(
            store, failure, decode_record(json.loads(failure.raw), failure.route, store.stream_items)
        )
    if failure.status == 401 or failure.source_id is None:
        raise ReplayError("refused for authentication: it cannot be replayed")
    source = collector.source(failure.source_id, fresh=True)
    if source is None:
        raise ReplayError(f"source {failure.source_id} no longer exists")
    try:
        calls = decode_failed(failure, source)
    except TrackingError as exc:
        raise ReplayError(f"still invalid: {exc}") from exc
    report = collector.ingest_calls(source, calls, route=failure.route, received_at=failure.received_at)
    if report.not_stored:
        raise ReplayError("storage did not take it; try again")
    if report.all_rejected:
        raise ReplayError(f"still invalid: {report.results[0].reason}")
    store.delete_failed(failure.id)
    return {
        "replayed": failure.id,
        "events": len(report.results),
        "results": [result.to_json() for result in report.results],
    }


def _replay_stream_record(store: ReplayStore, failure: FailedEvent, change: Any) -> dict[str, Any]:
    """Do again what the reader that set a stream record aside does with it."""
    if isinstance(change, MembershipChange | Followed):
        changes = list(change.changes) if isinstance(change, Followed) else [change]
        adoption = change.adoption if isinstance(change, Followed) else None
        try:
            if isinstance(change, Followed):  # a customer item's entries and exits (member items too), an adoption
                follow_customer_items(store, [(changes, adoption)])
            else:
                record_membership_changes(store, changes)
        except StorageError as exc:
            raise ReplayError("the audience event could not be stored; try again") from exc
        store.delete_failed(failure.id)
        segment = changes[0].segment_id if changes else ", ".join(adoption.retired if adoption else ())
        return {"replayed": failure.id, "membership": segment}
    if isinstance(change, CounterChange):
        # Counters are sums, so a late fold is as good as an on-time one; its own mark makes it count once.
        if fold(store, f"replay#{failure.id}", [change]):
            raise ReplayError("the counters could not be updated; try again")
        store.delete_failed(failure.id)
        return {"replayed": failure.id, "counters": len(change.delta)}
    if change is None:
        raise ReplayError("the stream record carries no event")
    if process_changes(store, [change], force=True):
        raise ReplayError("the stream record failed again")
    store.delete_failed(failure.id)
    return {"replayed": failure.id, "events": 1}
