"""In-memory stand-ins for the ports, for fast service tests (no moto, no network)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from shared.domain.events import TrackingEvent
from shared.domain.failures import FailedEvent
from shared.domain.results import Outcome
from shared.domain.sources import Source, hash_write_key
from shared.ports import StorageError, ThrottledError

EventKey = tuple[str, str, str, str]
"""(identity kind, identity id, source id, messageId): the same de-duplication key as DynamoTrackingStore."""


@dataclass
class InMemoryTrackingStore:
    """A `shared.ports.TrackingStore` in dicts, with switches to make it misbehave like a throttled table.

    Attributes:
        throttle_events: `put_events` answers NOT_STORED for every new event and stores nothing (the batch
            write gave up after its retries).
        fail_event_writes: `put_events` raises this error (e.g. `ThrottledError` for a de-duplication read that
            could not complete); nothing is stored.
        fail_failed_writes: `put_failed` raises `ThrottledError` and records nothing.
    """

    throttle_events: bool = False
    fail_event_writes: StorageError | None = None
    fail_failed_writes: bool = False
    events: dict[EventKey, TrackingEvent] = field(default_factory=dict)
    failed: list[FailedEvent] = field(default_factory=list)
    sources: dict[str, Source] = field(default_factory=dict)
    write_keys: dict[str, str] = field(default_factory=dict)
    """sha256(write key) → source id, like the table's write-key lookup items (never deleted on rotation)."""
    put_events_calls: int = 0

    # --- TrackingStore ------------------------------------------------------------------------------------------

    def put_events(self, events: Sequence[TrackingEvent]) -> list[Outcome]:
        """Store each event once per (identity, source, messageId); duplicates within the call count too."""
        self.put_events_calls += 1
        if self.fail_event_writes is not None:
            raise self.fail_event_writes
        outcomes: list[Outcome] = []
        seen: set[EventKey] = set()
        for event in events:
            key = _key(event)
            if key in self.events or key in seen:
                outcomes.append(Outcome.DUPLICATE)
            elif self.throttle_events:
                outcomes.append(Outcome.NOT_STORED)
            else:
                outcomes.append(Outcome.ACCEPTED)
            seen.add(key)
        if not self.throttle_events:
            for event, outcome in zip(events, outcomes, strict=True):
                if outcome is Outcome.ACCEPTED:
                    self.events[_key(event)] = event
        return outcomes

    def put_failed(self, failures: Sequence[FailedEvent]) -> None:
        """Record refused inputs, or raise `ThrottledError` when `fail_failed_writes` is set."""
        if self.fail_failed_writes:
            raise ThrottledError(f"{len(failures)} failed-event records could not be stored")
        self.failed.extend(failures)

    def get_source(self, source_id: str) -> Source | None:
        """A source by id."""
        return self.sources.get(source_id)

    def remove_source(self, source: Source) -> None:
        """Delete a source and its write-key lookups."""
        self.sources.pop(source.id, None)
        for known in source.write_key_hashes:
            self.write_keys.pop(known, None)

    def find_source_by_write_key(self, write_key: str) -> Source | None:
        """The source a write key belongs to, if the key is still one of its keys."""
        hashed = hash_write_key(write_key)
        source = self.sources.get(self.write_keys.get(hashed, ""))
        if source is None or hashed not in source.write_key_hashes:
            return None
        return source

    # --- helpers the Dynamo store also has ----------------------------------------------------------------------

    def put_source(self, source: Source, *, write_keys: Sequence[str] = ()) -> None:
        """Create or replace a source, with lookups for its (new) write keys."""
        self.sources[source.id] = source
        for key in write_keys:
            self.write_keys[hash_write_key(key)] = source.id

    def list_identity_events(self, kind: str, identifier: str) -> list[TrackingEvent]:
        """Every stored event of one identity (`u`/`a`), oldest first."""
        found = [event for key, event in self.events.items() if key[:2] == (kind, identifier)]
        return sorted(found, key=lambda event: (event.timestamp, event.message_id))


def _key(event: TrackingEvent) -> EventKey:
    kind, identifier = event.identity
    return (kind, identifier, event.source_id, event.message_id)
