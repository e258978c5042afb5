"""Quarantine: what processing cannot handle is set aside with the reason, so everyone else proceeds.

Two kinds of record, both in the failed-events store (`footfall failed`, the TUI's Failed screen), both
replayable once the cause is fixed:
- `stream:process`: a Lambda-shaped stream record whose event cannot be processed (replay processes it again);
- `customer:evaluate`: a customer whose segments or analytics cannot be evaluated (replay schedules the
  customer for the next sweep).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from shared.domain.failures import FailedEvent, failed_event, new_failure_id

STREAM_ROUTE = "stream:process"
"""A stream record processing set aside (an event, or a membership change whose audience event and history)."""
FOLD_ROUTE = "stream:fold"
"""A stream record the fold set aside (a customer's cells or a membership: what it adds to the counters)."""
CUSTOMER_ROUTE = "customer:evaluate"


def failure_reason(exc: BaseException) -> str:
    """What a quarantine record says about an exception: its kind and a short message (no user data beyond it)."""
    message = str(exc).splitlines()[0][:160] if str(exc) else ""
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


class QuarantineStore(Protocol):
    def put_failed(self, failures: Sequence[FailedEvent]) -> None: ...


def _record(route: str, reason: str, raw: str, now: datetime) -> FailedEvent:
    return failed_event(
        failure_id=new_failure_id(now, secrets.token_hex(6)),
        received_at=now,
        route=route,
        reason=reason,
        status=0,
        raw=raw,
    )


def record_failures(
    records: Iterable[Mapping[str, Any]], reason: str, *, now: datetime, route: str = STREAM_ROUTE
) -> list[FailedEvent]:
    """Failed-event records holding Lambda-shaped stream records (`route`: which reader set them aside)."""
    return [_record(route, reason, json.dumps(record), now) for record in records]


def quarantine_records(
    store: QuarantineStore, records: Iterable[dict[str, Any]], reason: str, *, now: datetime, route: str = STREAM_ROUTE
) -> None:
    """Set stream records aside (raises `StorageError` when that could not be stored: then retry them)."""
    failures = record_failures(records, reason, now=now, route=route)
    if failures:
        store.put_failed(failures)


def quarantine_customer(store: QuarantineStore, customer_id: str, reason: str, *, now: datetime) -> None:
    """Set a customer's evaluation aside (raises `StorageError` when that could not be stored)."""
    store.put_failed([_record(CUSTOMER_ROUTE, reason, json.dumps({"customer_id": customer_id}), now)])
