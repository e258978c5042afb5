"""DynamoDB Streams → identity stitching and customer profiles, with partial-batch failure reporting.

Powertools' batch processor decodes each record (a record that cannot be decoded is quarantined on its own);
the decoded events are then folded in one coalesced pass (one profile write per customer per batch), whose
failures join the same `batchItemFailures` answer. Records of customers' cells items and of memberships are
summed into the counters last (`services.analytics.fold`: one update per counter item per batch).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.observability import logger, metrics
from shared.config import Settings
from shared.domain.analytics import Definitions
from shared.ports import RejectedWriteError, StorageError, StoredProfile
from shared.publishers import EventBridgePublisher, OutboxFile, Publishers, WebhookPublisher
from shared.services.analytics import CounterChange, counter_change, definitions_of, fold, update_customers
from shared.services.collect import utcnow
from shared.services.overview import live_event
from shared.services.process import StreamChange, process_isolated
from shared.services.quarantine import failure_reason, quarantine_customer, record_failures
from shared.services.segments import (
    AUDIENCE_SOURCE,
    MembershipChange,
    customer_events,
    evaluate_customers,
    record_membership_changes,
    retry_later,
    rules_of,
)
from shared.storage import items
from shared.storage.dynamo import DynamoTrackingStore, make_client

UNSHARDED = "unsharded"
"""The fold's lane when the event names no shard (a direct invocation; the template's tumbling window and the
local stream runner both name it)."""
RULES_CACHE_SECONDS = 30.0
PARALLEL_READS = 8
settings = Settings.from_env()
processor = BatchProcessor(event_type=EventType.DynamoDBStreams, raise_on_entire_batch_failure=False)
copy_config_to_registered_loggers(source_logger=logger, include={"shared", "functions"})


@cache
def store() -> DynamoTrackingStore:
    # Built on first use, not at import: reused while the container is warm, created after moto starts in tests.
    return DynamoTrackingStore(
        settings.table_name, client=make_client(endpoint_url=settings.dynamodb_endpoint, validate=False)
    )


@dataclass(frozen=True)
class Undecodable:
    """A stream record whose item cannot be decoded: quarantined (retrying cannot help)."""

    sequence: str
    reason: str


@dataclass(frozen=True)
class Counted:
    """A record that moves counters (a customer's cells, a segment's size), and the segment change it may bring."""

    change: CounterChange
    membership: MembershipChange | None = None


def decode(record: DynamoDBRecord) -> StreamChange | Counted | Undecodable | None:
    image = record.dynamodb
    assert image is not None and image.sequence_number is not None
    sequence = image.sequence_number
    try:
        old, new = image.old_image or None, image.new_image or None
        counted = counter_change(sequence, old, new, received=_created(record))
        if counted is not None:
            membership = items.decode_membership_change(old=old, new=new)
            return Counted(counted, MembershipChange(**membership) if membership else None)
        event = items.decode_change(old=old, new=new)
    except Exception as exc:
        return Undecodable(sequence, failure_reason(exc))
    return None if event is None else StreamChange(sequence, event)


def _created(record: DynamoDBRecord) -> datetime:
    seconds = (record.raw_event.get("dynamodb") or {}).get("ApproximateCreationDateTime")
    return datetime.fromtimestamp(float(seconds), UTC) if seconds else utcnow()


@cache
def publisher() -> Publishers | None:
    targets: list[OutboxFile | WebhookPublisher | EventBridgePublisher] = []
    if settings.outbox_path:
        targets.append(OutboxFile(settings.outbox_path))
    if settings.outbox_webhook_url and settings.outbox_webhook_secret:
        targets.append(WebhookPublisher(settings.outbox_webhook_url, settings.outbox_webhook_secret))
    if settings.event_bus:
        targets.append(EventBridgePublisher(settings.event_bus))
    return Publishers(*targets) if targets else None


_rules: dict[str, Any] = {"at": 0.0, "rules": [], "definitions": Definitions()}


def segment_rules() -> list[Any]:
    # Rules and analytics definitions change rarely: read them at most every 30 s per warm container.
    if time.monotonic() - _rules["at"] > RULES_CACHE_SECONDS:
        _rules.update(at=time.monotonic(), rules=rules_of(store().list_segments()), definitions=definitions_of(store()))
    return list(_rules["rules"])


def analytics_definitions() -> Definitions:
    segment_rules()
    return _rules["definitions"]


def publish(audience: list[StreamChange]) -> set[str]:
    """Hand audience events to the campaign tools; their records fail (and come again) if that fails."""
    target = publisher()
    if not audience or target is None:
        return set()
    try:
        target.publish([change.event for change in audience])
    except Exception:
        logger.exception("audience events could not be published")
        return {change.sequence for change in audience}
    return set()


def evaluate_customers_of_batch(customer_ids: list[str], known: Mapping[str, StoredProfile] | None = None) -> None:
    """Segments and analytics of the customers a batch changed, on one read of their events.

    The profiles are saved by then: when this fails for now, the customers go on the due list and the minute
    sweep evaluates them again (the batch is not retried: its records are folded). When it fails for good, the
    customers are evaluated one at a time and the one that still fails is quarantined, not the others.

    `known` are profiles as this batch wrote them (a read would return them, unless another writer saved one
    since: that writer evaluates it again after its own save); the others are read.
    """
    if not customer_ids:
        return
    try:
        _evaluate(customer_ids, known or {})
    except Exception:
        logger.exception("evaluation failed for good; evaluating one customer at a time")
        for customer_id in customer_ids:
            try:
                _evaluate([customer_id], {})
            except Exception as exc:
                quarantine_customer(store(), customer_id, failure_reason(exc), now=utcnow())


def _evaluate(customer_ids: list[str], known: Mapping[str, StoredProfile]) -> None:
    rules, definitions, now = segment_rules(), analytics_definitions(), utcnow()
    try:
        profiles = {cid: known[cid] for cid in customer_ids if cid in known}
        missing = sorted(set(customer_ids) - profiles.keys())
        profiles |= store().get_profiles(missing) if missing else {}
        active = [p for p in profiles.values() if not p.profile.merged_into]
        ids = [p.profile.customer_id for p in active]
        with ThreadPoolExecutor(max_workers=PARALLEL_READS) as pool:  # every customer's reads at once
            events = dict(zip(ids, pool.map(_events_of, active), strict=True))
            memberships = dict(zip(ids, pool.map(store().memberships_of, ids), strict=True)) if rules else {}
    except StorageError as exc:
        if isinstance(exc, RejectedWriteError):
            raise
        logger.warning("customers could not be read; scheduled for the next sweep")
        segments = retry_later(customer_ids, now=now) if rules else []
        store().put_due([*retry_later(customer_ids, now=now, analytics=True), *segments])
        return
    if rules:
        try:
            evaluate_customers(
                store(), customer_ids, rules, now=now, profiles=profiles, events=events, memberships=memberships
            )
        except StorageError as exc:
            if isinstance(exc, RejectedWriteError):
                raise
            logger.warning("segment evaluation failed; scheduled for the next sweep")
            store().put_due(retry_later(customer_ids, now=now))
    try:
        update_customers(store(), customer_ids, definitions, now=now, events=events, profiles=profiles)
    except StorageError as exc:
        if isinstance(exc, RejectedWriteError):
            raise
        logger.warning("analytics update failed; scheduled for the next sweep")
        store().put_due(retry_later(customer_ids, now=now, analytics=True))


def _events_of(profile: Any) -> list[Any]:
    return customer_events(store(), profile)


def _quarantine(
    quarantined: list[tuple[StreamChange, str]], by_sequence: dict[str, dict[str, Any]], undecodable: list[Undecodable]
) -> set[str]:
    """Store the quarantined records; returns those that could not be stored (they are retried instead)."""
    now = utcnow()
    reasons = [(change.sequence, reason) for change, reason in quarantined]
    reasons += [(bad.sequence, f"cannot be decoded: {bad.reason}") for bad in undecodable]
    failures = [f for sequence, reason in reasons for f in record_failures([by_sequence[sequence]], reason, now=now)]
    try:
        if failures:
            store().put_failed(failures)
    except StorageError:
        logger.warning("quarantine records could not be stored; their records will be retried")
        return {sequence for sequence, _ in reasons}
    metrics.add_metric(name="RecordsQuarantined", unit=MetricUnit.Count, value=len(reasons))
    return set()


def record_feed(changes: list[StreamChange], records: list[dict[str, Any]]) -> None:
    """The live feed and the processing status (best effort: they are views, not data)."""
    if not changes:
        return
    try:
        newest = max(float(r["dynamodb"].get("ApproximateCreationDateTime", 0)) for r in records)
        store().put_live(
            min((c.sequence for c in changes), key=int),
            [live_event(change.event) for change in sorted(changes, key=lambda c: c.event.timestamp)],
        )
        store().put_status(processed_at=time.time(), lag_seconds=max(0.0, time.time() - newest) if newest else None)
    except (StorageError, ValueError, TypeError):
        logger.warning("live feed not updated")


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    with processor(records=event["Records"], handler=decode, lambda_context=context):
        results = processor.process()
    decoded = [(result, record) for status, result, record in results if status == "success" and result is not None]
    changes = [result for result, _ in decoded if isinstance(result, StreamChange)]
    counted = [result for result, _ in decoded if isinstance(result, Counted)]
    failed = {f["itemIdentifier"] for f in processor.response()["batchItemFailures"]}
    memberships = [c for c in counted if c.membership is not None]
    try:
        record_membership_changes(store(), [c.membership for c in memberships if c.membership is not None])
    except StorageError:
        failed.update(c.change.sequence for c in memberships)
    audience = [change for change in changes if change.event.source_id == AUDIENCE_SOURCE]
    failed.update(publish(audience))
    saved: list[str] = []
    written: dict[str, StoredProfile] = {}
    by_sequence = {record["dynamodb"]["SequenceNumber"]: record for record in event["Records"]}
    quarantined: list[tuple[StreamChange, str]] = []
    erased: list[StreamChange] = []
    failed.update(
        process_isolated(
            store(),
            [c for c in changes if c not in audience],
            on_saved=saved.append,
            quarantine=lambda group, reason: quarantined.extend((change, reason) for change in group),
            on_erased=erased.append,
            on_stored=lambda stored: written.__setitem__(stored.profile.customer_id, stored),
        )
    )
    undecodable = [result for result, _ in decoded if isinstance(result, Undecodable)]
    failed.update(_quarantine(quarantined, by_sequence, undecodable))
    evaluate_customers_of_batch(list(dict.fromkeys(saved)), written)  # the fallback may report one twice
    # The live feed never shows an identity erased since its events were stored.
    record_feed([c for c in changes if c not in audience and c not in erased], event["Records"])
    # Counters last: only records below the first failure are folded, so a retry (which starts there) never
    # brings a folded record back; a crash or a timeout brings the whole batch back, and the shard's mark skips it.
    first_failure = min((int(sequence) for sequence in failed), default=None)
    foldable = [c.change for c in counted if first_failure is None or int(c.change.sequence) < first_failure]
    failed.update(fold(store(), event.get("shardId") or UNSHARDED, foldable))
    metrics.add_metric(name="EventsFolded", unit=MetricUnit.Count, value=len(changes) - len(audience))
    metrics.add_metric(name="RecordsFailed", unit=MetricUnit.Count, value=len(failed))
    # `state` answers Lambda's tumbling window (configured to learn the shard id; the handler keeps no state).
    return {"state": {}, "batchItemFailures": [{"itemIdentifier": sequence} for sequence in sorted(failed, key=int)]}
