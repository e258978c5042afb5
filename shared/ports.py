"""The storage port: what services need from a tracking store (DynamoDB in production, in-memory in tests)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from shared.domain.events import TrackingEvent
from shared.domain.failures import FailedEvent
from shared.domain.profiles import CustomerProfile
from shared.domain.results import Outcome
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


class StreamItems(Protocol):
    """Storage's reading of the items its change stream carries: services decode no stored item themselves.

    Images are plain values (as a resource read or Powertools' stream record gives them), or DynamoDB JSON with
    binary values as base64 text (as a Lambda stream event, or a quarantined record, keeps them: `from_wire`).
    """

    def from_wire(self, image: Mapping[str, object]) -> dict[str, object]:
        """A wire-format image → plain values."""
        ...

    def new_event(
        self, *, old: Mapping[str, object] | None, new: Mapping[str, object] | None
    ) -> tuple[TrackingEvent, int | None] | None:
        """The event a record brings (its first write only) and the erasure epoch the collector stamped it with;
        None for any other record."""
        ...

    def membership_change(
        self, *, old: Mapping[str, object] | None, new: Mapping[str, object] | None
    ) -> Mapping[str, object] | None:
        """A segment entry or exit (`segment_id`, `customer_id`, `entered`, `at`, `rule_version`, `reason`,
        `identity`), or None when the record is not one."""
        ...

    def is_cells(self, image: Mapping[str, object] | None) -> bool:
        """Whether an image is a customer's analytics cells (counted by the fold, not processing)."""
        ...
