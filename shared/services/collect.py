"""The collect service: authenticate, validate, store once, and record everything refused."""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from shared.domain.errors import AuthenticationError, InvalidEventError, PayloadTooLargeError, TrackingError
from shared.domain.events import BatchEnvelope, CallType, TrackingEvent, parse_event
from shared.domain.failures import FailedEvent, failed_event, new_failure_id
from shared.domain.pixel import strict_json
from shared.domain.privacy import hash_email_values, hash_emails
from shared.domain.results import EventResult, Outcome
from shared.domain.sources import SERVER_TRUST, Source, is_reserved, matches_write_key
from shared.ports import StorageError, TrackingStore
from shared.services.requests import Calls

logger = logging.getLogger(__name__)


def utcnow() -> datetime:
    """The current time, UTC (services and handlers are the only callers of the clock)."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class IngestReport:
    """What happened to each event of one request."""

    results: tuple[EventResult, ...]

    @property
    def accepted(self) -> int:
        """Events stored by this request."""
        return sum(r.outcome is Outcome.ACCEPTED for r in self.results)

    @property
    def not_stored(self) -> bool:
        """Some valid event could not be stored: the client must retry."""
        return any(r.outcome is Outcome.NOT_STORED for r in self.results)

    @property
    def all_too_large(self) -> bool:
        """Every event was refused for its size."""
        return bool(self.results) and all(r.too_large for r in self.results)

    @property
    def all_rejected(self) -> bool:
        """Nothing in the request was valid."""
        return bool(self.results) and all(r.outcome is Outcome.REJECTED for r in self.results)


@dataclass
class Collector:
    """Turns authenticated requests into stored events and failed-event records."""

    store: TrackingStore
    clock: Callable[[], datetime] = utcnow
    new_id: Callable[[], str] = field(default_factory=lambda: lambda: str(uuid.uuid4()))
    source_cache_seconds: float = 30.0
    _cache: dict[str, tuple[float, Source]] = field(default_factory=dict, repr=False)

    # --- who is calling ---------------------------------------------------------------------------------------

    def authenticate(self, write_key: str | None) -> Source:
        """The source a write key belongs to.

        Raises:
            AuthenticationError: missing, unknown or revoked key, or the key of a source with a reserved id.
        """
        if not write_key:
            raise AuthenticationError("missing write key: send it as the Basic-auth user or as writeKey")
        source = self._cached(f"key:{write_key}", lambda: self.store.find_source_by_write_key(write_key))
        if source is None or is_reserved(source.id) or not matches_write_key(source, write_key, now=self.clock()):
            raise AuthenticationError("invalid write key")
        return source

    def source(self, source_id: str, *, fresh: bool = False) -> Source | None:
        """A source by id (cached like write keys; `fresh` reads through the cache); never a reserved id's."""
        if is_reserved(source_id):
            return None
        return self._cached(f"id:{source_id}", lambda: self.store.get_source(source_id), fresh=fresh)

    def _cached(self, key: str, load: Callable[[], Source | None], *, fresh: bool = False) -> Source | None:
        # Sources change rarely and every request needs one: a short cache saves a read per request. Only hits
        # are cached, so a new source or key works at once; a revoked key keeps working for at most
        # `source_cache_seconds` on a warm container.
        now = self.clock().timestamp()
        hit = self._cache.get(key)
        if hit and not fresh and now - hit[0] < self.source_cache_seconds:
            return hit[1]
        value = load()
        if len(self._cache) > 10_000:
            self._cache.clear()
        if value is None:
            self._cache.pop(key, None)
        else:
            self._cache[key] = (now, value)
        return value

    # --- events -----------------------------------------------------------------------------------------------

    def ingest(
        self,
        source: Source,
        raws: Sequence[Any],
        *,
        route: str,
        received_at: datetime,
        call_type: CallType | None = None,
        envelope: BatchEnvelope | None = None,
        failure_status: int = 400,
    ) -> IngestReport:
        """Validate and store the events of one request.

        Invalid events are recorded in the failed-events store and answered as rejected; valid ones are stored
        once per (identity, source, messageId).

        Raises:
            StorageError: the store failed in a way retries did not fix (the client must retry the request).
        """
        results: list[EventResult | None] = [None] * len(raws)
        valid: list[tuple[int, TrackingEvent]] = []
        failures: list[FailedEvent] = []
        for index, raw in enumerate(raws):
            try:
                event = parse_event(
                    raw,
                    source_id=source.id,
                    received_at=received_at,
                    new_id=self.new_id,
                    call_type=call_type,
                    envelope=envelope,
                )
            except InvalidEventError as exc:
                message_id = raw.get("messageId") if isinstance(raw, dict) else None
                message_id = message_id if isinstance(message_id, str) else None
                too_large = isinstance(exc, PayloadTooLargeError)
                kept = hash_email_values(raw) if source.hash_emails else raw  # refused input too
                results[index] = EventResult(index, Outcome.REJECTED, message_id, exc.reason, too_large)
                status = 413 if too_large else failure_status
                failures.append(
                    self._failure(route, exc.reason, status, _raw_bytes(kept), source.id, message_id, received_at)
                )
                continue
            event = replace(event, trusted=source.trust == SERVER_TRUST)
            valid.append((index, hash_emails(event) if source.hash_emails else event))
        if valid:
            outcomes = self.store.put_events([event for _, event in valid])
            for (index, event), outcome in zip(valid, outcomes, strict=True):
                results[index] = EventResult(index, outcome, event.message_id)
        if failures:
            self._store_failures(failures)
        return IngestReport(tuple(r for r in results if r is not None))

    def ingest_calls(
        self, source: Source, calls: Calls, *, route: str, received_at: datetime, failure_status: int = 400
    ) -> IngestReport:
        """`ingest` the calls of one request, as its route's decoder (`shared.services.requests`) read them."""
        return self.ingest(
            source,
            calls.raws,
            route=route,
            received_at=received_at,
            call_type=calls.call_type,
            envelope=calls.envelope,
            failure_status=failure_status,
        )

    # --- refusals ---------------------------------------------------------------------------------------------

    def record_failure(
        self,
        *,
        route: str,
        reason: str,
        status: int,
        raw: bytes | str,
        received_at: datetime,
        source_id: str | None = None,
    ) -> None:
        """Keep a refused request (bad JSON, bad key, bad signature, oversize…) with its reason.

        For a source that hashes e-mail addresses, addresses in a JSON body are hashed in the record too (a body
        that is not JSON is kept as received).
        """
        source = self.source(source_id) if source_id else None
        if source is not None and source.hash_emails:
            with contextlib.suppress(TrackingError):
                raw = _raw_bytes(hash_email_values(strict_json(raw)))
        self._store_failures([self._failure(route, reason, status, raw, source_id, None, received_at)])

    def _failure(
        self,
        route: str,
        reason: str,
        status: int,
        raw: bytes | str,
        source_id: str | None,
        message_id: str | None,
        received_at: datetime,
    ) -> FailedEvent:
        return failed_event(
            failure_id=new_failure_id(received_at, secrets.token_hex(6)),
            received_at=received_at,
            route=route,
            reason=reason,
            status=status,
            raw=raw,
            source_id=source_id,
            message_id=message_id,
        )

    def _store_failures(self, failures: list[FailedEvent]) -> None:
        try:
            self.store.put_failed(failures)
        except StorageError:
            # The client already gets a 4xx with the reason; losing the audit copy must not turn that into a 5xx.
            logger.exception("failed-event records could not be stored", extra={"count": len(failures)})


def _raw_bytes(raw: Any) -> bytes:
    try:
        return json.dumps(raw, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")
    except (TypeError, ValueError):
        return repr(raw).encode("utf-8", "replace")


def first_header(headers: Mapping[str, str] | None, name: str) -> str | None:
    """Case-insensitive header lookup."""
    if not headers:
        return None
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None
