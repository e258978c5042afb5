"""The storage port: what services need from a tracking store (DynamoDB in production, in-memory in tests)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any, Generic, Protocol, TypeVar

from shared.domain.cell_state import CellState
from shared.domain.cells import Cell, Cells, Counter
from shared.domain.events import TrackingEvent
from shared.domain.failures import FailedEvent
from shared.domain.profiles import CustomerProfile
from shared.domain.results import Outcome
from shared.domain.rule_state import RuleState
from shared.domain.segments import Due, Membership, Memberships
from shared.domain.sources import Source

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of results and the opaque token of the next page (`None` at the end)."""

    items: tuple[T, ...]
    next_token: str | None = None


@dataclass(frozen=True, slots=True)
class Derived:
    """What a customer item keeps so that a batch needs only its new events, not the customer's whole history: the
    segment rules' state (`domain.rule_state`) and the analytics cells' (`domain.cell_state`), for the events of
    `identities`, as of `at`; the history is read again (and these rebuilt) when that does not hold any more."""

    identities: tuple[str, ...]
    """The identities whose events they hold (a merge or a newly attached identity brings others: rebuilt)."""
    at: datetime
    """The latest moment they were advanced to (an evaluation at an earlier one reads the history)."""
    rules: RuleState | None
    cells: CellState | None
    """None: the customer had no events."""
    expires: datetime | None = None
    """When the oldest event they count expires from the table (then the history is read again, without it)."""
    events: int = 0
    """How many events of the customer's history they cover (whether keeping them pays: `services.prepare`)."""
    spare: bool = False
    """Keep them only where they cost no write unit (the item's kilobytes started are the same with them as without;
    storage decides as it builds the item). Not stored: each write says it again."""


@dataclass(frozen=True, slots=True)
class StoredProfile:
    """A profile as stored: with its optimistic-locking version and its stream positions."""

    profile: CustomerProfile
    version: int = 0
    """0 for a profile not stored yet; each save expects the version it read."""
    applied: Mapping[str, str] = field(default_factory=dict)
    """Identity key → highest stream sequence number already folded in (makes redelivery a no-op)."""
    cells: Cells = field(default_factory=dict)
    """What the customer adds to the analytics counters (the fold sums the changes of this item's cells)."""
    cells_at: str = ""
    """When `cells` were computed (the overview horizon they were cut at)."""
    scheduled: tuple[datetime, ...] = ()
    """The moments this customer is on the due list for (segment deadlines), so an unchanged one is not written
    again and `forget` finds the entries."""
    segments: Mapping[str, Membership] | None = None
    """The segments the customer is in, when the customer item holds them (customers created since it does): the
    item is then their authority, and the membership items, announcements, history and sizes follow from its
    stream record. None: an older customer, whose membership items are the authority."""
    why: Mapping[str, str] = field(default_factory=dict)
    """Segment id → the reason, for the entries and exits this write makes (what the announcements say)."""
    segments_at: str = ""
    """When the segments last changed (the moment of this write's entries and exits)."""
    derived: Derived | None = None
    """The state that spares a batch the customer's history (None: read it, and keep the state it gives)."""
    adopted: Mapping[str, Membership] | None = None
    """Set only on the write that adopts an older customer (`adopting`): the segments its membership items held,
    which this write's entries and exits are relative to (never read back)."""

    def adopting(self, memberships: Mapping[str, Membership]) -> StoredProfile:
        """An older customer's item holding the segments its membership items say it is in (`memberships_of`,
        strongly consistent), to be written before anything else is decided for it: the write that adopts them
        says so (`adopted`), so its record retires those items and writes the member items, and the entries and
        exits decided in the same write are relative to them. Sizes do not move: the membership items were
        counted. The due moments are not adopted (an index row may be there without its entry): a deadline is
        written again once, harmlessly. An item that holds its segments already is returned as it is."""
        if self.segments is not None:
            return self
        return replace(self, segments=dict(memberships), adopted=dict(memberships), why={})


@dataclass(frozen=True, slots=True)
class Adoption:
    """An older customer's segments, adopted by its customer item in one write: the member items to write for
    those it still holds after that write, and the membership items to retire (all it adopted)."""

    customer_id: str
    members: tuple[Membership, ...]
    retired: tuple[str, ...]


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
    """Where membership changes go: audience events (stored once each) with their segment history items, and the
    member items."""

    def put_announcements(self, announced: Sequence[tuple[TrackingEvent, HistoryEntry]]) -> list[bool]: ...
    def follow_members(self, steps: Sequence[tuple[Membership, bool]]) -> None: ...
    def retire_memberships(self, customer_id: str, segment_ids: Sequence[str]) -> None: ...
    def forgotten_identities(
        self, identities: Sequence[str], *, clear_at: Mapping[str, int] | None = None
    ) -> set[str]: ...


class SegmentStore(IdentityEventReader, Protocol):
    """What the segments service needs: definitions, profiles, memberships, the due list, quarantine."""

    def list_segments(self) -> list[StoredSegment]: ...
    def put_segments(self, segments: Sequence[StoredSegment]) -> None: ...
    def get_profiles(self, customer_ids: Sequence[str]) -> dict[str, StoredProfile]: ...
    def save_profile(self, stored: StoredProfile) -> StoredProfile: ...
    def get_links(self, identities: Sequence[str]) -> dict[str, Link]: ...
    def memberships_of(self, customer_id: str) -> Memberships: ...
    def put_due(self, dues: Sequence[Due], *, indexed: bool = False) -> None: ...
    def due_between(self, since: datetime, until: datetime) -> list[Due]: ...
    def sweep_cursor(self) -> datetime | None: ...
    def set_sweep_cursor(self, at: datetime) -> None: ...
    def put_failed(self, failures: Sequence[FailedEvent]) -> None: ...


# --- analytics (issue 17: the services see cells as domain values; storage owns their keys and attribute names) ---


@dataclass(frozen=True, slots=True)
class StoredCells:
    """What a customer adds to the counters, as stored: with the version its next write is conditional on."""

    customer_id: str
    version: int
    cells: Cells


@dataclass(frozen=True, slots=True)
class CellsChange:
    """A customer's new cells (replacing `previous`), computed at `at` (the overview horizon they were cut at)."""

    previous: StoredCells
    cells: Cells
    at: str


@dataclass(frozen=True, slots=True)
class CellsRecord:
    """A customer's cells item's stream record: its old and new cells, and when the new ones were computed ("" for
    a REMOVE, or for an item written by a version that counted in the same transaction)."""

    before: Cells
    after: Cells
    at: str
    removed: bool = False
    """The item is gone (the customer erased): the old cells are taken back."""


@dataclass(frozen=True, slots=True)
class SizeStep:
    """A membership item's stream record that moves its segment's size: +1 entered, -1 left, on `day` (None for a
    REMOVE: the customer was erased)."""

    segment_id: str
    step: int
    day: str | None


@dataclass(frozen=True, slots=True)
class CustomerRecord:
    """A customer item's stream record: its cells change (None: unchanged) and its segments' size steps."""

    cells: CellsRecord | None
    steps: tuple[SizeStep, ...] = ()


CounterRecord = CellsRecord | SizeStep | CustomerRecord
"""A stream record that moves counters, decoded by storage (`shared.storage.analytics.decode_counter_record`)."""


@dataclass(frozen=True, slots=True)
class FoldLane:
    """A stream shard the fold has seen: its mark from before per-item marks (records at or below it were folded
    by that version's transactions; None: none), and when it was last folded (None: not since)."""

    mark: str | None = None
    at: datetime | None = None


class FoldStore(Protocol):
    """What the fold needs: the shards it has seen, one conditional update per counter item (counts added, the
    shard's mark on the item moved), the item's mark, and the store's order of counter names (an opaque sort key:
    counts too many for one update are cut in that order)."""

    def fold_lanes(self) -> dict[str, FoldLane]: ...
    def fold_item(
        self, lane: str, cell: Cell, counts: Mapping[Counter, int], *, first: str, upto: str, forget: Sequence[str]
    ) -> bool: ...
    def item_mark(self, lane: str, cell: Cell) -> str | None: ...
    def touch_lane(self, lane: str, at: datetime) -> None: ...
    def counter_order(self, counter: Counter) -> Any: ...


class AnalyticsStore(FoldStore, Protocol):
    """What the analytics service needs: definitions, customers' cells, the fold, counters read as cells."""

    def get_analytics_definitions(self) -> dict[str, Any] | None: ...
    def put_analytics_definitions(self, document: Mapping[str, Any]) -> None: ...
    def get_cells(self, customer_ids: Sequence[str]) -> dict[str, StoredCells]: ...
    def save_cells(self, changes: Sequence[CellsChange]) -> list[str]: ...
    def funnel_counters(self, funnel_id: str, *, start: date, end: date) -> Cells: ...
    def retention_counters(self, by: str, *, start: date, end: date) -> Cells: ...
    def timing_counters(self) -> Cells: ...
    def counters_beside(self, cells: Iterable[Cell]) -> Cells: ...
    def get_profiles(self, customer_ids: Sequence[str]) -> dict[str, StoredProfile]: ...
    def list_identity_events(self, kind: str, identifier: str) -> list[TrackingEvent]: ...
    def list_customers(self, *, limit: int = 50, next_token: str | None = None) -> Page[StoredProfile]: ...


class OverviewStore(Protocol):
    """What the overview needs: a day's event counters, the live feed, status, segments and their sizes."""

    def stats_counters(self, day: date) -> Cells: ...
    def live_items(self, *, limit: int) -> Iterator[list[dict[str, Any]]]: ...
    def get_status(self) -> dict[str, Any]: ...
    def list_segments(self) -> list[StoredSegment]: ...
    def segment_size_items(
        self, segments: Sequence[str], *, days: Sequence[date]
    ) -> dict[tuple[str, str | None], int]: ...
    def count_failed(self, day: str) -> int: ...


WHOLE = 9999
"""The part number of a record folded completely (a record too big for one transaction is folded in parts)."""


def fold_position(sequence: str, part: int = WHOLE) -> str:
    """A fold mark (what `fold_item` moves on a counter item): stream sequence numbers (digits, up to 40)
    padded so that marks compare as strings in the order of the records, then the part folded."""
    return f"{int(sequence):040d}:{part:04d}"


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
    ) -> Mapping[str, Any] | None:
        """A segment entry or exit (`segment_id`, `customer_id`, `entered`, `at`, `rule_version`, `reason`,
        `identity`), or None when the record is not one."""
        ...

    def customer_steps(
        self, *, old: Mapping[str, object] | None, new: Mapping[str, object] | None
    ) -> list[dict[str, Any]]: ...
    def adoption(self, *, old: Mapping[str, object] | None, new: Mapping[str, object] | None) -> Adoption | None:
        """The memberships a customer item's record adopted from an older customer's membership items (None for
        any other record)."""
        ...

    def is_cells(self, image: Mapping[str, object] | None) -> bool:
        """Whether an image is a customer's analytics cells (counted by the fold, not processing)."""
        ...

    def counter_record(
        self, *, old: Mapping[str, object] | None, new: Mapping[str, object] | None
    ) -> CounterRecord | None:
        """What a record moves in the counters: a cells item's old and new cells, or a segment's size step; None
        for any other record."""
        ...
