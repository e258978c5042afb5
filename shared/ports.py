"""The storage port: what services need from a tracking store (DynamoDB in production, in-memory in tests)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, Protocol, TypeVar

from shared.domain.events import TrackingEvent
from shared.domain.failures import FailedEvent
from shared.domain.profiles import CustomerProfile
from shared.domain.results import Outcome
from shared.domain.segments import Due, Membership, Memberships
from shared.domain.sources import Source

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of results and the opaque token of the next page (`None` at the end)."""

    items: tuple[T, ...]
    next_token: str | None = None


@dataclass(frozen=True, slots=True)
class StoredProfile:
    """A profile as stored: with its optimistic-locking version and its stream positions."""

    profile: CustomerProfile
    version: int = 0
    """0 for a profile not stored yet; each save expects the version it read."""
    applied: Mapping[str, str] = field(default_factory=dict)
    """Identity key → highest stream sequence number already folded in (makes redelivery a no-op)."""


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """Someone entering (or leaving) a segment, as its history keeps it."""

    segment_id: str
    customer_id: str
    at: str
    entered: bool
    rule_version: int


@dataclass(frozen=True, slots=True)
class Link:
    """An identity's membership of a customer, with where it came from."""

    identity: str
    customer_id: str
    via: str = ""
    """The message id of the call that made the link ("" for a customer's first identity)."""
    at: str = ""


@dataclass(frozen=True, slots=True)
class StoredSegment:
    """A segment definition as applied: its rule-file entry, version and when it was applied."""

    id: str
    name: str
    version: int
    definition: dict[str, object]
    applied_at: str


class StorageError(Exception):
    """The store could not do what was asked."""


class ThrottledError(StorageError):
    """The store is throttling (or briefly unavailable); the same request may succeed later."""


class ConditionFailedError(StorageError):
    """A conditional write found the item in another state."""


class RejectedWriteError(StorageError):
    """The store refused a write for good (an item or key over a limit): retrying the same write cannot help."""


class CorruptItemError(ValueError):
    """A stored item cannot be decoded (written by a bug, or by an older version with a looser codec).

    Not a `StorageError`: retrying cannot help, so processing quarantines the customer it belongs to.
    """

    def __init__(self, reason: str, *, customer_id: str | None = None) -> None:
        super().__init__(reason)
        self.customer_id = customer_id


class TrackingStore(Protocol):
    """Storage operations the services call."""

    def put_events(self, events: Sequence[TrackingEvent]) -> list[Outcome]:
        """Store events once per (identity, source, messageId); one outcome per event."""
        ...

    def put_failed(self, failures: Sequence[FailedEvent]) -> None:
        """Record refused inputs."""
        ...

    def get_source(self, source_id: str) -> Source | None:
        """A source by id."""
        ...

    def find_source_by_write_key(self, write_key: str) -> Source | None:
        """The source owning a write key."""
        ...


# --- the read and write sides the customer and segment services need (each names only what it calls) ------------


class IdentityEventReader(Protocol):
    """The events stored under one identity."""

    def list_identity_events(self, kind: str, identifier: str) -> list[TrackingEvent]: ...


class CustomerReader(IdentityEventReader, Protocol):
    """What the customer views read: links, profiles, the customer list, identities' events."""

    def get_links(self, identities: Sequence[str]) -> dict[str, Link]: ...
    def get_profiles(self, customer_ids: Sequence[str]) -> dict[str, StoredProfile]: ...
    def list_customers(self, *, limit: int = 50, next_token: str | None = None) -> Page[StoredProfile]: ...


class CustomerEraser(CustomerReader, Protocol):
    """What erasure needs: the customer views' reads, and the erasure itself."""

    def forget(self, *, identities: Sequence[str], customer_ids: Sequence[str], at: str) -> int: ...


class AudienceWriter(Protocol):
    """Where membership changes go: audience events (stored once each) and segment history."""

    def put_events(self, events: Sequence[TrackingEvent]) -> list[Outcome]: ...
    def put_history(self, entries: Sequence[HistoryEntry]) -> None: ...


class SegmentStore(IdentityEventReader, Protocol):
    """What the segments service needs: definitions, profiles, memberships, the due list, quarantine."""

    def list_segments(self) -> list[StoredSegment]: ...
    def put_segments(self, segments: Sequence[StoredSegment]) -> None: ...
    def get_profiles(self, customer_ids: Sequence[str]) -> dict[str, StoredProfile]: ...
    def get_links(self, identities: Sequence[str]) -> dict[str, Link]: ...
    def memberships_of(self, customer_id: str) -> Memberships: ...
    def change_membership(
        self, membership: Membership, *, entered: bool, at: str, identity: tuple[str, str]
    ) -> bool: ...
    def put_due(self, dues: Sequence[Due], *, indexed: bool = False) -> None: ...
    def due_between(self, since: datetime, until: datetime) -> list[Due]: ...
    def sweep_cursor(self) -> datetime | None: ...
    def set_sweep_cursor(self, at: datetime) -> None: ...
    def put_failed(self, failures: Sequence[FailedEvent]) -> None: ...
