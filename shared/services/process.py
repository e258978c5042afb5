"""The process service: stored events → identity links → customer profiles, once per event however delivered.

A batch of stream records is processed in three steps, with a handful of requests whatever its size:

1. **Read**: the links of every identity the batch names, and the profiles of their customers (two batch reads).
2. **Identity** (in stream order, in memory): every identity gets a customer; calls naming two identities link
   them (attach a new identity, merge two customers, or flag a shared device). New links are then written in
   parallel, each only if the identity is still unlinked; merges of stored customers are transactions.
3. **Profiles** (coalesced): records are grouped by customer and folded into each profile, which is written once
   per customer per batch, conditionally on the version read (optimistic locking; on a conflict it is read
   again and folded again).

Redelivery is harmless: each profile keeps, per identity, the highest stream sequence number folded in, and
records at or below it are skipped (stream records of one item key arrive in order).

Failures are contained to one customer. A transient storage failure reports the records involved failed (the
stream retries them). A permanent one (an event that cannot be folded, a stored profile that cannot be decoded,
a write the store refuses for good) never stops the batch: `process_isolated` hands those records to a
quarantine (replayable once fixed) and processes everyone else.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
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
from shared.domain.profiles import CustomerProfile, apply_events, merge_profiles
from shared.ports import ConditionFailedError, Link, RejectedWriteError, StorageError, StoredProfile
from shared.services.quarantine import failure_reason

logger = logging.getLogger(__name__)
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

    def forgotten_identities(
        self, identities: Sequence[str], *, clear_at: Mapping[str, int] | None = None
    ) -> set[str]: ...

    def get_profiles(self, customer_ids: Sequence[str]) -> dict[str, StoredProfile]: ...

    def save_profile(self, stored: StoredProfile) -> StoredProfile: ...

    def merge_customers(self, *, into: StoredProfile, away: StoredProfile, links: Sequence[Link]) -> StoredProfile: ...

    def note_conflict(self, identity: str, customer_id: str, event: TrackingEvent) -> None: ...


class _LinkRaceError(Exception):
    """Another writer linked an identity differently meanwhile: the batch is retried with fresh links."""


@dataclass
class _Batch:
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


def process_changes(
    store: ProfileStore,
    changes: Sequence[StreamChange],
    *,
    force: bool = False,
    on_saved: Callable[[str], None] | None = None,
    on_poison: Callable[[StreamChange, str], None] | None = None,
    on_erased: Callable[[StreamChange], None] | None = None,
    on_stored: Callable[[StoredProfile, bool], None] | None = None,
) -> list[str]:
    """Fold a batch of new events into identities and profiles.

    Args:
        force: fold records even if their sequence number is not above the mark (replay of a record that was
            quarantined, hence never folded in).
        on_saved: told the id of every customer whose profile this batch changed (segments are evaluated then).
        on_poison: told of each event that cannot be folded into its profile, which is then skipped.
        on_erased: told of each event skipped because it names an identity erased since it was stored.
        on_stored: told the profile as this batch left it, for customers reported to `on_saved` (saves the
            evaluation a read of what was just written), and whether this batch's write created it (then the
            customer has nothing else stored yet: no memberships, no cells, no deadlines).

    Returns:
        The sequence numbers of the records that failed for now (to report as `batchItemFailures`).

    Raises:
        Exception: anything permanent (a profile that cannot be decoded, a write refused for good, a bug): use
            `process_isolated` to contain it to the customer it belongs to.
    """
    ordered = sorted(changes, key=lambda change: int(change.sequence))
    batch = _Batch(store, on_poison=on_poison)
    everything = [change.sequence for change in ordered]
    try:
        _read(batch, ordered)
    except StorageError:
        logger.warning("identity or profile read failed; the whole batch will be retried")
        return everything
    failed: list[str] = []
    # Events of an identity erased meanwhile (stored before `forget` ran) are not folded back into anything.
    # An alias naming an erased id as its previousId is skipped too: it would link the erased id again.
    ordered = _without_erased(batch, ordered, on_erased)
    linked: list[StreamChange] = []
    for position, change in enumerate(ordered):
        try:
            _link(batch, change.event)
        except StorageError as exc:
            if isinstance(exc, RejectedWriteError):
                raise
            # Links are decided in stream order: once one fails, the rest of the batch must wait for it.
            logger.exception("identity linking failed", extra={"sequence": change.sequence})
            failed += [later.sequence for later in ordered[position:]]
            break
        linked.append(change)
    try:
        _write_pending_links(batch)
    except RejectedWriteError:
        raise
    except (StorageError, _LinkRaceError):
        logger.warning("identity links could not be written; the whole batch will be retried")
        return everything
    groups: dict[str, list[StreamChange]] = defaultdict(list)
    for change in linked:
        groups[batch.links[primary_identity(change.event)]].append(change)
    with ThreadPoolExecutor(max_workers=PARALLEL_WRITES) as pool:
        for customer_id, result in zip(
            groups, pool.map(lambda item: _fold_customer(batch, item[0], item[1], force), groups.items()), strict=True
        ):
            failed += result
            if len(result) < len(groups[customer_id]):
                _report(batch, customer_id, on_saved, on_stored)
    for customer_id in sorted(batch.merged_away):
        if on_saved is not None:
            on_saved(customer_id)
    return sorted(failed, key=int)


def _report(
    batch: _Batch,
    customer_id: str,
    on_saved: Callable[[str], None] | None,
    on_stored: Callable[[StoredProfile, bool], None] | None,
) -> None:
    if on_saved is not None:
        on_saved(customer_id)
        if on_stored is not None and customer_id in batch.saved:
            on_stored(batch.saved[customer_id], customer_id in batch.created)


def process_isolated(
    store: ProfileStore,
    changes: Sequence[StreamChange],
    *,
    on_saved: Callable[[str], None] | None = None,
    quarantine: Callable[[Sequence[StreamChange], str], None],
    on_erased: Callable[[StreamChange], None] | None = None,
    on_stored: Callable[[StoredProfile, bool], None] | None = None,
) -> list[str]:
    """`process_changes`, with any permanent failure contained to the identity whose records caused it.

    The batch is first processed whole (the cheap path). If that raises, each identity's records are processed
    on their own, and the records of an identity that still fails go to `quarantine` with the reason: they are
    consumed, so neither the stream nor the other customers wait for them. Re-processing is safe: records
    already folded are skipped by their sequence marks.

    Returns:
        The sequence numbers to retry (transient failures only).
    """

    def poisoned(change: StreamChange, reason: str) -> None:
        quarantine([change], reason)

    try:
        return process_changes(
            store, changes, on_saved=on_saved, on_poison=poisoned, on_erased=on_erased, on_stored=on_stored
        )
    except Exception:
        logger.exception("a batch failed for good; processing it one identity at a time")
    groups: dict[str, list[StreamChange]] = defaultdict(list)
    for change in changes:
        groups[primary_identity(change.event)].append(change)
    failed: list[str] = []
    for group in groups.values():
        try:
            failed += process_changes(
                store, group, on_saved=on_saved, on_poison=poisoned, on_erased=on_erased, on_stored=on_stored
            )
        except Exception as exc:
            logger.exception("records quarantined", extra={"records": len(group)})
            quarantine(group, failure_reason(exc))
    return sorted(failed, key=int)


def _without_erased(
    batch: _Batch, ordered: list[StreamChange], on_erased: Callable[[StreamChange], None] | None
) -> list[StreamChange]:
    kept: list[StreamChange] = []
    for change in ordered:
        if not batch.forgotten.intersection(named_identities(change.event)):
            kept.append(change)
        elif on_erased is not None:
            on_erased(change)
    return kept


def _read(batch: _Batch, changes: Sequence[StreamChange]) -> None:
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


def _new_link(batch: _Batch, link: Link) -> None:
    batch.links[link.identity] = link.customer_id
    batch.pending[link.identity] = link


def _link(batch: _Batch, event: TrackingEvent) -> None:
    primary = primary_identity(event)
    other = _other_identity(batch, event)
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


def _other_identity(batch: _Batch, event: TrackingEvent) -> str | None:
    if event.type is CallType.ALIAS and event.previous_id:
        as_user = identity_key("u", event.previous_id)
        return as_user if as_user in batch.links else identity_key("a", event.previous_id)
    return linked_identity(event)


def _user_id(batch: _Batch, customer_id: str, event: TrackingEvent | None = None) -> str | None:
    if customer_id not in batch.users:
        stored = batch.profiles.get(customer_id)
        known = stored.profile.user_id if stored is not None else None
        if known is None and customer_id.startswith("u:"):
            known = customer_id[2:]
        batch.users[customer_id] = known
    return batch.users[customer_id] or (event.user_id if event is not None else None)


def _compatible(batch: _Batch, owner: str, event: TrackingEvent) -> bool:
    known = _user_id(batch, owner)
    return known is None or event.user_id is None or known == event.user_id


def _merge(batch: _Batch, *, into: str, away: str, event: TrackingEvent) -> None:
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


def _merge_stored(batch: _Batch, *, into: str, away: str, event: TrackingEvent, provenance: dict[str, str]) -> None:
    moved_in_table = {i for i, c in batch.links.items() if c == away and i in batch.stored_links}
    for _ in range(SAVE_ATTEMPTS):
        profiles = batch.store.get_profiles([into, away])
        target = profiles.get(into) or StoredProfile(CustomerProfile(customer_id=into, identities=(into,)))
        source = profiles.get(away) or StoredProfile(CustomerProfile(customer_id=away, identities=(away,)))
        if source.profile.merged_into == into:
            batch.profiles[into] = target
            return  # already merged (a redelivered record)
        merged = replace(
            target,
            profile=merge_profiles(target.profile, source.profile, link=provenance),
            applied=_max_marks(target.applied, source.applied),
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


def _write_pending_links(batch: _Batch) -> None:
    for identity, customer_id, event in batch.conflict_events:
        batch.store.note_conflict(identity, customer_id, event)
    links = list(batch.pending.values())
    if not links:
        return
    with ThreadPoolExecutor(max_workers=PARALLEL_WRITES) as pool:
        written = list(pool.map(batch.store.link_identity, links))
    for wanted, actual in zip(links, written, strict=True):
        if actual.customer_id != wanted.customer_id:
            raise _LinkRaceError(wanted.identity)


def _max_marks(first: Mapping[str, str], second: Mapping[str, str]) -> dict[str, str]:
    marks = dict(first)
    for identity, sequence in second.items():
        if int(sequence) > int(marks.get(identity, "0")):
            marks[identity] = sequence
    return marks


def _fold_customer(batch: _Batch, customer_id: str, changes: list[StreamChange], force: bool) -> list[str]:
    """Fold one customer's records and save once; returns the sequence numbers that failed."""
    everything = [change.sequence for change in changes]
    stored = batch.profiles.get(customer_id)
    for _ in range(SAVE_ATTEMPTS):
        if stored is not None and stored.profile.merged_into:
            # Merged away while this batch ran: the stream's retry will find the new customer.
            return everything
        stored = stored or StoredProfile(CustomerProfile(customer_id=customer_id))
        fresh = [
            c for c in changes if force or int(c.sequence) > int(stored.applied.get(primary_identity(c.event), "0"))
        ]
        profile, done, failed = _apply(stored.profile, fresh, batch.on_poison)
        if not done and not batch.conflicts.get(customer_id) and not batch.merges.get(customer_id):
            if stored.version:
                batch.saved[customer_id] = stored
            return [c.sequence for c in failed]
        profile = _with_identities(profile, batch, customer_id, done)
        marks = _max_marks(stored.applied, {primary_identity(c.event): c.sequence for c in done})
        try:
            batch.saved[customer_id] = batch.store.save_profile(replace(stored, profile=profile, applied=marks))
            if not stored.version:
                batch.created.add(customer_id)
        except ConditionFailedError:
            # Someone else wrote it: read it again and fold again (the marks prevent double counting).
            try:
                stored = batch.store.get_profiles([customer_id]).get(customer_id)
            except StorageError:
                return everything
            continue
        except RejectedWriteError:
            raise  # permanent: the caller quarantines this customer's records
        except StorageError:
            return everything
        return [c.sequence for c in failed]
    return everything


def _apply(
    profile: CustomerProfile,
    changes: list[StreamChange],
    on_poison: Callable[[StreamChange, str], None] | None,
) -> tuple[CustomerProfile, list[StreamChange], list[StreamChange]]:
    """Fold events. Returns (profile, folded, failed).

    An event that cannot be folded is a poison event: with `on_poison` it is handed over and skipped (the order
    of folding does not change a profile); without, it and the events after it fail.
    """
    try:
        return apply_events(profile, [c.event for c in changes]), list(changes), []
    except Exception:  # a poison event somewhere: fold one at a time to find it
        logger.warning("an event cannot be folded into a profile; folding one at a time")
    done: list[StreamChange] = []
    for position, change in enumerate(changes):
        try:
            folded = apply_events(profile, [change.event])
        except Exception as exc:
            logger.exception("event cannot be folded into a profile", extra={"sequence": change.sequence})
            if on_poison is None:
                return profile, done, list(changes[position:])
            on_poison(change, failure_reason(exc))
            continue
        profile = folded
        done.append(change)
    return profile, done, []


def _with_identities(
    profile: CustomerProfile, batch: _Batch, customer_id: str, done: Iterable[StreamChange]
) -> CustomerProfile:
    identities = set(profile.identities) | {customer_id}
    links = list(profile.links)
    for merge in batch.merges.get(customer_id, []):
        if merge not in links:
            links.append(merge)
    for change in done:
        for identity in (primary_identity(change.event), _other_identity(batch, change.event)):
            if identity and batch.links.get(identity) == customer_id and identity not in identities:
                identities.add(identity)
                links.append(
                    {
                        "attached": identity,
                        "via": change.event.message_id,
                        "type": str(change.event.type),
                        "at": format_timestamp(change.event.timestamp),
                    }
                )
    identities |= {identity for identity, customer in batch.links.items() if customer == customer_id}
    flags = dict(profile.flags)
    for conflict in batch.conflicts.get(customer_id, []):
        # `shared_device`: an identify linking a device another known user owns; `identity_conflict`: an alias of
        # two known users from a client source (refused: it could be anyone holding the public key).
        flag = "shared_device" if conflict["kind"] == "shared_device" else "identity_conflict"
        recorded = {key: value for key, value in conflict.items() if key != "kind"}
        shared = list(flags.get(flag, []))
        if recorded not in shared:
            shared.append(recorded)
        flags[flag] = shared
    return replace(profile, identities=tuple(sorted(identities)), links=tuple(links), flags=flags)
