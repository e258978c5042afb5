"""The stream pipeline: one batch of decoded stream records through every step processing takes, in order.

1. **Memberships**: segment entries and exits become audience events and history items (both keyed by the change).
2. **Audience events** are handed to the campaign tools (publishers).
3. **Events** are folded into identities and profiles (`services.process`, contained per identity: what fails for
   good is quarantined, the rest proceeds).
4. **Customers** the batch changed are evaluated: segments and analytics cells, on one read of their events.
5. **The live feed** and the processing status (views, best effort).

Counters are not this pipeline's: a second reader of the stream (`fold_batch`, the fold Lambda) sums the cells
and size changes of a longer window into them, so their writes do not grow with the number of batches.

The Lambda handlers (`functions/process/handler.py`, `functions/fold/handler.py`) decode records and map the
answer; the local stream runner hands them Lambda-shaped batches, so this is the one place the order of the steps
is written down.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence, Set
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from shared.domain.analytics import Definitions
from shared.domain.segments import Memberships, SegmentRule
from shared.domain.sources import AUDIENCE_SOURCE
from shared.ports import (
    Adoption,
    AnalyticsStore,
    AudienceWriter,
    FoldStore,
    RejectedWriteError,
    SegmentStore,
    StorageError,
    StoredProfile,
    StreamItems,
)
from shared.publishers import Publishers
from shared.services.analytics import CounterChange, definitions_of, fold, update_customers
from shared.services.audiences import (
    MembershipChange,
    follow_customer_items,
    record_membership_changes,
)
from shared.services.collect import utcnow
from shared.services.linking import ProfileStore
from shared.services.overview import live_event
from shared.services.prepare import CustomerItems
from shared.services.process import StreamChange, process_isolated
from shared.services.quarantine import (
    FOLD_ROUTE,
    STREAM_ROUTE,
    QuarantineStore,
    failure_reason,
    quarantine_customer,
    record_failures,
)
from shared.services.segments import customer_events, evaluate_customers, retry_later, rules_of

logger = logging.getLogger(__name__)
RULES_CACHE_SECONDS = 30.0
STATUS_SECONDS = 10.0
"""How often (at most) a process instance writes the processing status the TUI shows: when it last ran, its lag."""
PARALLEL_READS = 8


@dataclass(frozen=True)
class Undecodable:
    """A stream record whose item cannot be decoded: quarantined (retrying cannot help)."""

    sequence: str
    reason: str


@dataclass(frozen=True)
class Membership:
    """A membership item's stream record: someone entered or left a segment."""

    sequence: str
    change: MembershipChange


@dataclass(frozen=True)
class Counted:
    """A record that moves counters (a customer's cells, a segment's size): the fold's, not processing's."""

    change: CounterChange


@dataclass(frozen=True)
class Followed:
    """A customer item's stream record with segment entries or exits (its customer item is their authority), or
    that adopted an older customer's memberships: member items, audience events and history follow from it."""

    sequence: str
    changes: tuple[MembershipChange, ...]
    adoption: Adoption | None = None


Decoded = StreamChange | Membership | Followed | Counted | Undecodable


def decode_images(
    sequence: str, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None, stream_items: StreamItems
) -> Decoded | None:
    """What one of processing's stream records brings, from its item images (plain Python values) as storage reads
    them (`stream_items`): a segment entry or exit, a new event (with the erasure epoch the collector stamped it
    with), or None for anything else. The one decoder of processing's records: the process function's and
    `footfall failed replay`'s.

    Raises:
        Exception: an item that cannot be decoded (the caller quarantines the record).
    """
    before, after = (dict(image) if image else None for image in (old, new))
    membership = stream_items.membership_change(old=before, new=after)
    if membership is not None:
        return Membership(sequence, MembershipChange(**membership))
    steps = stream_items.customer_steps(old=before, new=after)
    adoption = stream_items.adoption(old=before, new=after)
    if steps or adoption:
        return Followed(sequence, tuple(MembershipChange(**step) for step in steps), adoption)
    found = stream_items.new_event(old=before, new=after)
    return None if found is None else StreamChange(sequence, *found)


@dataclass
class Outcome:
    """What a batch came to: the records to retry, and figures for the metrics."""

    failed: set[str] = field(default_factory=set)
    events_folded: int = 0
    quarantined: int = 0


class PipelineStore(ProfileStore, SegmentStore, AnalyticsStore, AudienceWriter, QuarantineStore, Protocol):
    """What a stream batch's steps need of storage: each step's port, and the live feed and status items."""

    def put_live(
        self,
        first_sequence: str,
        events: Sequence[Mapping[str, Any]],
        *,
        now: float | None = None,
        status: Mapping[str, Any] | None = None,
    ) -> None: ...

    event_retention: timedelta | None
    """How long event items are kept (their TTL), or None: a customer item's derived state expires with them."""


class FoldBatchStore(FoldStore, QuarantineStore, Protocol):
    """What the fold's batch needs of storage: the counters, and quarantine for what it cannot decode."""


class StreamPipeline:
    """The steps of one stream batch, over a store and the campaign tools' publishers (built once per process)."""

    def __init__(self, store: PipelineStore, publisher: Publishers | None = None) -> None:
        self.store = store
        self.publisher = publisher
        self._rules: dict[str, Any] = {"at": -RULES_CACHE_SECONDS, "rules": [], "definitions": Definitions()}
        self._status_written = -STATUS_SECONDS

    def run(self, decoded: Sequence[tuple[Decoded, Mapping[str, Any]]], *, failed: Iterable[str] = ()) -> Outcome:
        """Process a batch; `decoded` pairs each record's meaning with the record (Lambda-shaped), in stream order,
        and `failed` are records already failed (they are retried)."""
        outcome = Outcome(failed=set(failed))
        changes = [result for result, _ in decoded if isinstance(result, StreamChange)]
        memberships = [result for result, _ in decoded if isinstance(result, Membership)]
        try:
            record_membership_changes(self.store, [m.change for m in memberships])
        except StorageError:
            outcome.failed.update(m.sequence for m in memberships)
        followed = [result for result, _ in decoded if isinstance(result, Followed)]
        try:
            follow_customer_items(self.store, [(f.changes, f.adoption) for f in followed])
        except StorageError:
            outcome.failed.update(f.sequence for f in followed)
        audience = [change for change in changes if change.event.source_id == AUDIENCE_SOURCE]
        outcome.failed.update(self.publish(audience))
        saved: list[str] = []
        written: dict[str, StoredProfile] = {}
        created: set[str] = set()

        def stored(profile: StoredProfile, new: bool) -> None:
            written[profile.profile.customer_id] = profile
            if new:
                created.add(profile.profile.customer_id)

        quarantined: list[tuple[StreamChange, str]] = []
        erased: list[StreamChange] = []
        events = [c for c in changes if c not in audience]
        items = CustomerItems(self.store, self.segment_rules(), self.analytics_definitions(), now=utcnow())
        outcome.failed.update(
            process_isolated(
                self.store,
                events,
                on_saved=saved.append,
                quarantine=lambda group, reason: quarantined.extend((change, reason) for change in group),
                on_erased=erased.append,
                on_stored=stored,
                prepare=items,
            )
        )
        undecodable = [result for result, _ in decoded if isinstance(result, Undecodable)]
        records = {str(record["dynamodb"]["SequenceNumber"]): record for _, record in decoded}
        outcome.failed.update(quarantine(self.store, quarantined, records, undecodable))
        outcome.quarantined = len(quarantined) + len(undecodable)
        # The isolation fallback may report one twice.
        self.evaluate(list(dict.fromkeys(saved)), written, created, items=items)
        # The live feed never shows an identity erased since its events were stored.
        self.record_feed([c for c in events if c not in erased], [record for _, record in decoded])
        outcome.events_folded = len(events)
        return outcome

    # --- rules and definitions ---------------------------------------------------------------------------------

    def segment_rules(self) -> list[SegmentRule]:
        # Rules and analytics definitions change rarely: read them at most every 30 s per warm container.
        if time.monotonic() - self._rules["at"] > RULES_CACHE_SECONDS:
            self._rules.update(
                at=time.monotonic(),
                rules=rules_of(self.store.list_segments()),
                definitions=definitions_of(self.store),
            )
        return list(self._rules["rules"])

    def analytics_definitions(self) -> Definitions:
        self.segment_rules()
        definitions: Definitions = self._rules["definitions"]
        return definitions

    def forget_rules(self) -> None:
        """Read rules and definitions again at the next batch (they were just applied)."""
        self._rules["at"] = -RULES_CACHE_SECONDS

    # --- the steps ---------------------------------------------------------------------------------------------

    def publish(self, audience: list[StreamChange]) -> set[str]:
        """Hand audience events to the campaign tools; their records fail (and come again) if that fails."""
        if not audience or self.publisher is None:
            return set()
        try:
            self.publisher.publish([change.event for change in audience])
        except Exception:
            logger.exception("audience events could not be published")
            return {change.sequence for change in audience}
        return set()

    def evaluate(
        self,
        customer_ids: list[str],
        known: Mapping[str, StoredProfile] | None = None,
        created: Set[str] = frozenset(),
        *,
        items: CustomerItems | None = None,
    ) -> None:
        """Segments and analytics of the customers a batch changed, on one read of their events.

        The profiles are saved by then: when this fails for now, the customers go on the due list and the sweep
        evaluates them again (the batch is not retried: its records are folded). When it fails for good, the
        customers are evaluated one at a time and the one that still fails is quarantined, not the others.

        `known` are profiles as this batch wrote them (a read would return them, unless another writer saved one
        since: that writer evaluates it again after its own save); the others are read. `created` are customers
        whose profile this batch created: they have no memberships, deadlines or cells yet, which are not read.
        (A writer racing this one for a new customer found it created and evaluates it after; the transitions and
        cells written here are conditional, so a stale guess writes nothing.) `items`: what completed the customer
        items this batch wrote: their events were read then, and their cells and deadline are written already.
        """
        if not customer_ids:
            return
        try:
            self._evaluate(customer_ids, known or {}, created, items)
        except Exception:
            logger.exception("evaluation failed for good; evaluating one customer at a time")
            for customer_id in customer_ids:
                try:
                    self._evaluate([customer_id], {})
                except Exception as exc:
                    quarantine_customer(self.store, customer_id, failure_reason(exc), now=utcnow())

    def _evaluate(
        self,
        customer_ids: list[str],
        known: Mapping[str, StoredProfile],
        created: Set[str] = frozenset(),
        items: CustomerItems | None = None,
    ) -> None:
        store = self.store
        rules, definitions, now = self.segment_rules(), self.analytics_definitions(), utcnow()
        completed = {cid for cid in customer_ids if cid in known and items is not None and items.completed(cid)}
        try:
            profiles = {cid: known[cid] for cid in customer_ids if cid in known}
            missing = sorted(set(customer_ids) - profiles.keys())
            profiles |= store.get_profiles(missing) if missing else {}
            active = [p for p in profiles.values() if not p.profile.merged_into]
            ids = [p.profile.customer_id for p in active]
            unread = [p for p in active if p.profile.customer_id not in completed]
            with ThreadPoolExecutor(max_workers=PARALLEL_READS) as pool:  # every customer's reads at once
                found = pool.map(lambda p: customer_events(store, p), unread)
                events = dict(zip((p.profile.customer_id for p in unread), found, strict=True))
                memberships: dict[str, Memberships] = {}
                if rules:  # (a customer item that holds its segments needs no read of them)
                    read = [i for i in ids if i not in created and profiles[i].segments is None]
                    memberships = {i: Memberships() for i in ids if i in created}
                    memberships |= dict(zip(read, pool.map(store.memberships_of, read), strict=True))
        except StorageError as exc:
            if isinstance(exc, RejectedWriteError):
                raise
            logger.warning("customers could not be read; scheduled for the next sweep")
            segments = retry_later(customer_ids, now=now) if rules else []
            store.put_due([*retry_later(customer_ids, now=now, analytics=True), *segments])
            return
        # A completed item that holds its segments had them decided before its write.
        undecided = [c for c in customer_ids if c not in completed or profiles[c].segments is None]
        if rules:
            try:
                evaluate_customers(
                    store, undecided, rules, now=now, profiles=profiles, events=events, memberships=memberships
                )
            except StorageError as exc:
                if isinstance(exc, RejectedWriteError):
                    raise
                logger.warning("segment evaluation failed; scheduled for the next sweep")
                store.put_due(retry_later(customer_ids, now=now))
        pending = [cid for cid in customer_ids if cid not in completed]  # the others' cells are written
        try:
            update_customers(store, pending, definitions, now=now, events=events, profiles=profiles, created=created)
        except StorageError as exc:
            if isinstance(exc, RejectedWriteError):
                raise
            logger.warning("analytics update failed; scheduled for the next sweep")
            store.put_due(retry_later(pending, now=now, analytics=True))

    def record_feed(self, changes: list[StreamChange], records: Sequence[Mapping[str, Any]]) -> None:
        """The live feed, and the processing status at most every `STATUS_SECONDS` (best effort: they are views,
        not data; a status item written at every batch cost a write unit a batch)."""
        if not changes:
            return
        try:
            newest = max(float(r["dynamodb"].get("ApproximateCreationDateTime", 0)) for r in records)
            status = None
            if time.monotonic() - self._status_written >= STATUS_SECONDS:
                lag = max(0.0, time.time() - newest) if newest else None
                status = {"processed_at": time.time(), "lag_seconds": lag}
            self.store.put_live(
                min((c.sequence for c in changes), key=int),
                [live_event(change.event) for change in sorted(changes, key=lambda c: c.event.timestamp)],
                status=status,
            )
            if status is not None:
                self._status_written = time.monotonic()
        except (StorageError, ValueError, TypeError):
            logger.warning("live feed not updated")


def quarantine(
    store: QuarantineStore,
    quarantined: list[tuple[StreamChange, str]],
    records: Mapping[str, Mapping[str, Any]],
    undecodable: list[Undecodable],
    *,
    route: str = STREAM_ROUTE,
) -> set[str]:
    """Store the quarantined records; returns those that could not be stored (they are retried instead)."""
    now = utcnow()
    reasons = [(change.sequence, reason) for change, reason in quarantined]
    reasons += [(bad.sequence, f"cannot be decoded: {bad.reason}") for bad in undecodable]
    failures = [
        f for sequence, reason in reasons for f in record_failures([records[sequence]], reason, now=now, route=route)
    ]
    try:
        if failures:
            store.put_failed(failures)
    except StorageError:
        logger.warning("quarantine records could not be stored; their records will be retried")
        return {sequence for sequence, _ in reasons}
    return set()


def fold_batch(
    store: FoldBatchStore,
    decoded: Sequence[tuple[Decoded, Mapping[str, Any]]],
    lane: str,
    *,
    failed: Iterable[str] = (),
) -> Outcome:
    """The fold's batch (a second reader of the stream): the counter changes summed into the counters.

    `lane` names the stream shard the records come from (the fold keeps one mark per shard). Only the records
    below the first failure are folded, so a retry (which starts there) never brings a folded record back; a
    record that cannot be decoded is quarantined.
    """
    outcome = Outcome(failed=set(failed))
    undecodable = [result for result, _ in decoded if isinstance(result, Undecodable)]
    records = {str(record["dynamodb"]["SequenceNumber"]): record for _, record in decoded}
    outcome.failed.update(quarantine(store, [], records, undecodable, route=FOLD_ROUTE))
    outcome.quarantined = len(undecodable)
    first_failure = min((int(sequence) for sequence in outcome.failed), default=None)
    counted = [r.change for r, _ in decoded if isinstance(r, Counted)]
    foldable = [c for c in counted if first_failure is None or int(c.sequence) < first_failure]
    outcome.failed.update(fold(store, lane, foldable))
    outcome.events_folded = len(foldable)
    return outcome
