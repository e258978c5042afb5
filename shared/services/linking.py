"""Identity linking, steps 1 and 2 of processing (`shared.services.process`): read what a batch needs, then give
every identity a customer in stream order (attach a new identity, merge two customers, or flag a shared device).

Links are decided in memory, then written in parallel, each only if its identity is still unlinked
(`write_pending_links`); merges of stored customers are transactions (`merge_customers`). An identity's slot is
its own customer item key: an identity that is its own customer is linked by that item, which processing writes
only if the slot is free; one attached elsewhere gets a pointer there (README, "Where a link is kept").
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Protocol

from shared.domain.events import CallType, TrackingEvent, format_timestamp
from shared.domain.identity import (
    Customer,
    LinkAction,
    identity_key,
    linked_identity,
    named_identities,
    plan_link,
    primary_identity,
)
from shared.domain.profiles import CustomerProfile, merge_profiles
from shared.domain.segments import Memberships
from shared.ports import ConditionFailedError, Link, StorageError, StoredProfile

SAVE_ATTEMPTS = 4
PARALLEL_WRITES = 8


@dataclass(frozen=True, slots=True)
class StreamChange:
    """One stream record that brought a new event."""

    sequence: str
    event: TrackingEvent
    clear_epoch: int | None = None
    """The erasure epoch at which the collector found every identity the event names not erased (None: unknown),
    so processing need not read their suppression marks again while the epoch is unchanged."""


class ProfileStore(Protocol):
    """What processing needs from storage."""

    def get_links(self, identities: Sequence[str]) -> dict[str, Link]: ...

    def link_identity(self, link: Link) -> Link: ...

    def claim_customer(self, customer_id: str) -> StoredProfile: ...

    def forgotten_identities(
        self, identities: Sequence[str], *, clear_at: Mapping[str, int] | None = None
    ) -> set[str]: ...

    def get_profiles(self, customer_ids: Sequence[str]) -> dict[str, StoredProfile]: ...

    def save_profile(self, stored: StoredProfile) -> StoredProfile: ...

    def merge_customers(self, *, into: StoredProfile, away: StoredProfile, links: Sequence[Link]) -> StoredProfile: ...

    def memberships_of(self, customer_id: str) -> Memberships: ...

    def note_conflict(self, identity: str, customer_id: str, event: TrackingEvent) -> None: ...


class LinkRaceError(Exception):
    """Another writer linked an identity differently meanwhile: the batch is retried with fresh links."""


class Prepare(Protocol):
    """Completes customer items before they are written (`services.prepare.CustomerItems`)."""

    def __call__(
        self, stored: StoredProfile, new_events: Sequence[TrackingEvent], *, first: bool = False
    ) -> StoredProfile:
        """The item to write, from the folded profile and the events this write folds in (`first`: the item had
        folded nothing before; never raises)."""
        ...

    def write_deadlines(self, customer_ids: Collection[str]) -> None:
        """Write the due-list entries the items just completed for these customers list (before those items).

        Raises:
            StorageError: they could not all be written (those items must not be written then).
        """
        ...


@dataclass
class Batch:
    """What one batch knows while it runs: links and profiles read, decided, pending and saved."""

    store: ProfileStore
    links: dict[str, str] = field(default_factory=dict)
    """identity → customer id, as known so far in this batch."""
    stored_links: set[str] = field(default_factory=set)
    """Identities whose link is in the table (the others are pending in `pending`)."""
    pending: dict[str, Link] = field(default_factory=dict)
    profiles: dict[str, StoredProfile] = field(default_factory=dict)
    """Profiles read at the start of the batch (or written by a merge during it)."""
    users: dict[str, str | None] = field(default_factory=dict)
    """customer id → its user id, as known so far in this batch."""
    conflicts: dict[str, list[dict[str, str]]] = field(default_factory=lambda: defaultdict(list))
    conflict_events: list[tuple[str, str, TrackingEvent]] = field(default_factory=list)
    """(identity named, customer flagged, event): indexed before the flags are saved, so forget finds them."""
    merges: dict[str, list[dict[str, str]]] = field(default_factory=lambda: defaultdict(list))
    forgotten: set[str] = field(default_factory=set)
    """Identities erased on request."""
    merged_away: set[str] = field(default_factory=set)
    """Stored customers merged into another in this batch (their analytics contribution moves)."""
    on_poison: Callable[[StreamChange, str], None] | None = None
    """Told of each event that cannot be folded (it is skipped); without it such an event fails its record."""
    saved: dict[str, StoredProfile] = field(default_factory=dict)
    """customer id → the profile as this batch left it (written, or read and found already up to date)."""
    created: set[str] = field(default_factory=set)
    """Customers whose profile this batch's write created: nothing else of theirs can be stored yet."""
    emptied: set[str] = field(default_factory=set)
    """New customers whose empty item this batch's linking wrote (to attach an identity to it): they have folded
    nothing yet, as a customer not stored."""
    prepare: Prepare | None = None
    """Completes a customer item about to be written (segments, cells, due moments, derived state), so one write
    holds it all."""


def read_batch(batch: Batch, changes: Sequence[StreamChange]) -> None:
    """Step 1: the links of every identity the batch names, their profiles, and which identities were erased."""
    wanted: list[str] = []
    for change in changes:
        wanted.append(primary_identity(change.event))
        if change.event.type is CallType.ALIAS and change.event.previous_id:
            wanted += [identity_key("u", change.event.previous_id), identity_key("a", change.event.previous_id)]
        elif (other := linked_identity(change.event)) is not None:
            wanted.append(other)
    # The collector stamps an event with the erasure epoch at which it found the event's identities not erased:
    # while the epoch is unchanged, their marks need no second read.
    clear_at: dict[str, int] = {}
    for change in changes:
        if change.clear_epoch is not None:
            for identity in named_identities(change.event):
                clear_at[identity] = max(change.clear_epoch, clear_at.get(identity, change.clear_epoch))
    batch.forgotten = batch.store.forgotten_identities(
        [i for change in changes for i in named_identities(change.event)], clear_at=clear_at
    )
    found = batch.store.get_links(wanted)
    batch.links.update({identity: link.customer_id for identity, link in found.items()})
    batch.stored_links.update(found)
    batch.profiles.update(batch.store.get_profiles(sorted(set(batch.links.values()))))
    _follow_moved(batch)


def _follow_moved(batch: Batch, *, hops: int = 4) -> None:
    """Links that lead to a customer item that is no customer's (a merge's tombstone, an attached identity's
    pointer) lead on to where it points. A link read just before a merge committed does; so does one an older
    version wrote during an upgrade for an identity the new version had attached (it read no pointer)."""
    for _ in range(hops):
        moved = {cid: p.profile.merged_into for cid, p in batch.profiles.items() if p.profile.merged_into}
        stale = {identity: moved[cid] for identity, cid in batch.links.items() if cid in moved}
        if not stale:
            return
        batch.links.update({identity: str(target) for identity, target in stale.items()})
        missing = sorted(set(stale.values()) - batch.profiles.keys())
        if missing:
            batch.profiles.update(batch.store.get_profiles([str(cid) for cid in missing]))


def _new_link(batch: Batch, link: Link) -> None:
    batch.links[link.identity] = link.customer_id
    batch.pending[link.identity] = link


def link_event(batch: Batch, event: TrackingEvent) -> None:
    """Step 2, one event: give its identity a customer; link the other identity it names (attach, merge, flag)."""
    primary = primary_identity(event)
    other = other_identity(batch, event)
    at = format_timestamp(event.timestamp)
    if primary not in batch.links:
        # A new identity joins the customer of the identity it arrived with, when that is compatible.
        owner = batch.links.get(other) if other else None
        customer = owner if owner and _compatible(batch, owner, event) else primary
        _new_link(batch, Link(primary, customer, event.message_id, at))
        if event.user_id and batch.users.get(customer) is None:
            batch.users[customer] = event.user_id
    if other is None:
        return
    target = batch.links[primary]
    owner = batch.links.get(other)
    action = plan_link(
        target=Customer(target, _user_id(batch, target, event)),
        other=Customer(owner, _user_id(batch, owner)) if owner else None,
        explicit=event.type is CallType.ALIAS,
        trusted=event.trusted,
    )
    if action is LinkAction.ATTACH:
        _new_link(batch, Link(other, target, event.message_id, at))
    elif action is LinkAction.MERGE and owner is not None:
        _merge(batch, into=target, away=owner, event=event)
    elif action is LinkAction.CONFLICT:
        kind = "alias_refused" if event.type is CallType.ALIAS else "shared_device"
        batch.conflicts[target].append({"identity": other, "via": event.message_id, "at": at, "kind": kind})
        batch.conflict_events.append((other, target, event))


def other_identity(batch: Batch, event: TrackingEvent) -> str | None:
    """The second identity an event names (an alias's previous id, an identify's anonymous id), if any."""
    if event.type is CallType.ALIAS and event.previous_id:
        as_user = identity_key("u", event.previous_id)
        return as_user if as_user in batch.links else identity_key("a", event.previous_id)
    return linked_identity(event)


def _user_id(batch: Batch, customer_id: str, event: TrackingEvent | None = None) -> str | None:
    if customer_id not in batch.users:
        stored = batch.profiles.get(customer_id)
        known = stored.profile.user_id if stored is not None else None
        if known is None and customer_id.startswith("u:"):
            known = customer_id[2:]
        batch.users[customer_id] = known
    return batch.users[customer_id] or (event.user_id if event is not None else None)


def _compatible(batch: Batch, owner: str, event: TrackingEvent) -> bool:
    known = _user_id(batch, owner)
    return known is None or event.user_id is None or known == event.user_id


def _merge(batch: Batch, *, into: str, away: str, event: TrackingEvent) -> None:
    provenance = {
        "merged": away,
        "via": event.message_id,
        "type": str(event.type),
        "at": format_timestamp(event.timestamp),
    }
    stored_identities = {i for i, c in batch.links.items() if c == away and i in batch.stored_links}
    if away in batch.profiles or stored_identities:
        _merge_stored(batch, into=into, away=away, event=event, provenance=provenance)
    else:  # the customer merged away exists only in this batch: nothing stored to move
        batch.merges[into].append(provenance)
    for identity, customer in list(batch.links.items()):
        if customer == away:
            batch.links[identity] = into
            if identity in batch.pending:
                batch.pending[identity] = replace(batch.pending[identity], customer_id=into)
    batch.users[into] = batch.users.get(into) or batch.users.get(away)


def _merge_stored(batch: Batch, *, into: str, away: str, event: TrackingEvent, provenance: dict[str, str]) -> None:
    moved_in_table = {i for i, c in batch.links.items() if c == away and i in batch.stored_links}
    for _ in range(SAVE_ATTEMPTS):
        profiles = batch.store.get_profiles([into, away])
        # (a customer not stored yet is new: its customer item holds its segments from the start)
        target = profiles.get(into) or StoredProfile(CustomerProfile(customer_id=into, identities=(into,)), segments={})
        source = profiles.get(away) or StoredProfile(CustomerProfile(customer_id=away, identities=(away,)), segments={})
        if source.profile.merged_into == into:
            batch.profiles[into] = target
            return  # already merged (a redelivered record)
        if source.segments is None:  # an older customer's: the tombstone leaves the segments its items hold
            source = source.adopting(batch.store.memberships_of(away))
        merged = replace(
            target,
            profile=merge_profiles(target.profile, source.profile, link=provenance),
            applied=max_marks(target.applied, source.applied),
        )
        tombstone = replace(source, profile=replace(source.profile, merged_into=into))
        identities = sorted(({*source.profile.identities} | moved_in_table) - {into} - set(batch.pending))
        moved = [Link(identity, into, event.message_id, provenance["at"]) for identity in identities]
        try:
            batch.profiles[into] = batch.store.merge_customers(into=merged, away=tombstone, links=moved)
        except ConditionFailedError:
            continue
        batch.profiles[away] = replace(tombstone, version=tombstone.version + 1)
        batch.stored_links.update(identities)
        batch.merged_away.add(away)
        return
    raise StorageError(f"could not merge {away} into {into}")


def write_pending_links(batch: Batch) -> None:
    """Write the conflict index, then the batch's new links to other customers (in parallel, each only if its
    identity is still unlinked).

    Raises:
        LinkRaceError: another writer linked one of them differently meanwhile.
    """
    for identity, customer_id, event in batch.conflict_events:
        batch.store.note_conflict(identity, customer_id, event)
    # An identity that is its own customer is linked by that customer's item (step 3 creates it, only if its slot is
    # still free: a concurrent attach elsewhere makes that write fail, and the batch is retried).
    links = [link for link in batch.pending.values() if link.customer_id != link.identity]
    if not links:
        return
    # An identity is attached only to a customer whose item is stored: one this batch creates gets its item first
    # (empty; only if its slot is still free), so no link ever points at a slot that another write claims after.
    new = sorted({link.customer_id for link in links} - set(batch.profiles))
    with ThreadPoolExecutor(max_workers=PARALLEL_WRITES) as pool:
        for customer_id, created in zip(new, pool.map(lambda c: _create(batch, c), new), strict=True):
            batch.profiles[customer_id] = created
            batch.emptied.add(customer_id)
        written = list(pool.map(batch.store.link_identity, links))
    for wanted, actual in zip(links, written, strict=True):
        if actual.customer_id != wanted.customer_id:
            raise LinkRaceError(wanted.identity)


def _create(batch: Batch, customer_id: str) -> StoredProfile:
    """A new customer's item, empty (processing folds its events into it after), written only if its slot is free.

    Raises:
        LinkRaceError: the slot was taken meanwhile (a customer of that id, or that identity attached elsewhere).
    """
    try:
        return batch.store.claim_customer(customer_id)
    except ConditionFailedError as exc:
        raise LinkRaceError(customer_id) from exc


def max_marks(first: Mapping[str, str], second: Mapping[str, str]) -> dict[str, str]:
    """Per identity, the higher of two stream sequence marks."""
    marks = dict(first)
    for identity, sequence in second.items():
        if int(sequence) > int(marks.get(identity, "0")):
            marks[identity] = sequence
    return marks
