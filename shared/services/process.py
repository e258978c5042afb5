"""The process service: stored events → identity links → customer profiles, once per event however delivered.

A batch of stream records is processed in three steps, with a handful of requests whatever its size:

1. **Read**: the links of every identity the batch names, and the profiles of their customers (two batch reads).
2. **Identity** (in stream order, in memory): every identity gets a customer; calls naming two identities link
   them (attach a new identity, merge two customers, or flag a shared device). New links to other customers
   are then written in parallel, each only if the identity is still unlinked (a new identity that is its own
   customer is linked by its customer item in step 3); merges of stored customers are transactions.
3. **Profiles** (coalesced): records are grouped by customer and folded into each profile, and each customer
   item completed (`Batch.prepare`); the due-list entries those items list are written at once (one batch
   write), then each item once per customer per batch, conditionally on the version read (optimistic locking;
   on a conflict it is read again and folded again).

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
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from shared.domain.events import format_timestamp
from shared.domain.identity import named_identities, primary_identity
from shared.domain.profiles import CustomerProfile, apply_events
from shared.ports import ConditionFailedError, RejectedWriteError, StorageError, StoredProfile
from shared.services.linking import (
    PARALLEL_WRITES,
    SAVE_ATTEMPTS,
    Batch,
    LinkRaceError,
    Prepare,
    ProfileStore,
    StreamChange,
    link_event,
    max_marks,
    other_identity,
    read_batch,
    write_pending_links,
)
from shared.services.quarantine import failure_reason

__all__ = ["ProfileStore", "StreamChange", "process_changes", "process_isolated"]

logger = logging.getLogger(__name__)


def process_changes(
    store: ProfileStore,
    changes: Sequence[StreamChange],
    *,
    force: bool = False,
    on_saved: Callable[[str], None] | None = None,
    on_poison: Callable[[StreamChange, str], None] | None = None,
    on_erased: Callable[[StreamChange], None] | None = None,
    on_stored: Callable[[StoredProfile, bool], None] | None = None,
    prepare: Prepare | None = None,
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
        prepare: completes each customer item before it is written (its segments, analytics cells and due
            moments, from the folded profile and the events folded into it), so the customer-batch is one write;
            it must not raise.

    Returns:
        The sequence numbers of the records that failed for now (to report as `batchItemFailures`).

    Raises:
        Exception: anything permanent (a profile that cannot be decoded, a write refused for good, a bug): use
            `process_isolated` to contain it to the customer it belongs to.
    """
    ordered = sorted(changes, key=lambda change: int(change.sequence))
    batch = Batch(store, on_poison=on_poison, prepare=prepare)
    everything = [change.sequence for change in ordered]
    try:
        read_batch(batch, ordered)
    except StorageError:
        logger.warning("identity or profile read failed; the whole batch will be retried")
        return everything
    # Events of an identity erased meanwhile (stored before `forget` ran) are not folded back into anything.
    # An alias naming an erased id as its previousId is skipped too: it would link the erased id again.
    ordered = _without_erased(batch, ordered, on_erased)
    linked, failed = _link_in_order(batch, ordered)
    try:
        write_pending_links(batch)
    except RejectedWriteError:
        raise
    except (StorageError, LinkRaceError):
        logger.warning("identity links could not be written; the whole batch will be retried")
        return everything
    failed += _fold_customers(batch, linked, force=force, on_saved=on_saved, on_stored=on_stored)
    for customer_id in sorted(batch.merged_away):
        if on_saved is not None:
            on_saved(customer_id)
    return sorted(failed, key=int)


def _link_in_order(batch: Batch, ordered: list[StreamChange]) -> tuple[list[StreamChange], list[str]]:
    """Step 2 over the batch: (the changes linked, the sequence numbers to retry)."""
    for position, change in enumerate(ordered):
        try:
            link_event(batch, change.event)
        except StorageError as exc:
            if isinstance(exc, RejectedWriteError):
                raise
            # Links are decided in stream order: once one fails, the rest of the batch must wait for it.
            logger.exception("identity linking failed", extra={"sequence": change.sequence})
            return ordered[:position], [later.sequence for later in ordered[position:]]
    return ordered, []


def _fold_customers(
    batch: Batch,
    linked: list[StreamChange],
    *,
    force: bool,
    on_saved: Callable[[str], None] | None,
    on_stored: Callable[[StoredProfile, bool], None] | None,
) -> list[str]:
    """Step 3: each customer's records folded and its item completed (customers in parallel), the due-list entries
    those items list written at once, then the items saved (in parallel); returns the sequences that failed."""
    groups: dict[str, list[StreamChange]] = defaultdict(list)
    for change in linked:
        groups[batch.links[primary_identity(change.event)]].append(change)
    failed: list[str] = []
    with ThreadPoolExecutor(max_workers=PARALLEL_WRITES) as pool:
        drafts = list(
            pool.map(lambda item: _draft(batch, item[0], item[1], batch.profiles.get(item[0]), force), groups.items())
        )
        unlisted = _write_deadlines(batch, [draft.customer_id for draft in drafts if draft.item is not None])
        for customer_id, result in zip(
            groups, pool.map(lambda draft: _save(batch, draft, force, unlisted), drafts), strict=True
        ):
            failed += result
            if len(result) < len(groups[customer_id]):
                _report(batch, customer_id, on_saved, on_stored)
    return failed


def _report(
    batch: Batch,
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
    prepare: Prepare | None = None,
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
            store,
            changes,
            on_saved=on_saved,
            on_poison=poisoned,
            on_erased=on_erased,
            on_stored=on_stored,
            prepare=prepare,
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
                store,
                group,
                on_saved=on_saved,
                on_poison=poisoned,
                on_erased=on_erased,
                on_stored=on_stored,
                prepare=prepare,
            )
        except Exception as exc:
            logger.exception("records quarantined", extra={"records": len(group)})
            quarantine(group, failure_reason(exc))
    return sorted(failed, key=int)


def _without_erased(
    batch: Batch, ordered: list[StreamChange], on_erased: Callable[[StreamChange], None] | None
) -> list[StreamChange]:
    kept: list[StreamChange] = []
    for change in ordered:
        if not batch.forgotten.intersection(named_identities(change.event)):
            kept.append(change)
        elif on_erased is not None:
            on_erased(change)
    return kept


@dataclass(frozen=True, slots=True)
class _Draft:
    """One customer's records folded into its item, before the write: the item to write (None: nothing to write),
    and the sequence numbers that failed (all of them, when there is nothing to write and that is a failure)."""

    customer_id: str
    changes: list[StreamChange]
    stored: StoredProfile
    item: StoredProfile | None
    failed: list[str]


def _draft(
    batch: Batch, customer_id: str, changes: list[StreamChange], stored: StoredProfile | None, force: bool
) -> _Draft:
    """Fold one customer's records into its item as read (`stored`) and complete it (`Batch.prepare`)."""
    if stored is not None and stored.profile.merged_into:
        # Merged away while this batch ran: the stream's retry will find the new customer.
        return _Draft(customer_id, changes, stored, None, [change.sequence for change in changes])
    stored = stored or StoredProfile(CustomerProfile(customer_id=customer_id), segments={})
    fresh = [c for c in changes if force or int(c.sequence) > int(stored.applied.get(primary_identity(c.event), "0"))]
    profile, done, failed = _apply(stored.profile, fresh, batch.on_poison)
    if not done and not batch.conflicts.get(customer_id) and not batch.merges.get(customer_id):
        if stored.version:
            batch.saved[customer_id] = stored
        return _Draft(customer_id, changes, stored, None, [c.sequence for c in failed])
    profile = _with_identities(profile, batch, customer_id, done)
    marks = max_marks(stored.applied, {primary_identity(c.event): c.sequence for c in done})
    item = replace(stored, profile=profile, applied=marks)
    if batch.prepare is not None:
        item = batch.prepare(item, [c.event for c in done], first=_first(batch, stored))
    return _Draft(customer_id, changes, stored, item, [c.sequence for c in failed])


def _first(batch: Batch, stored: StoredProfile) -> bool:
    """Whether a customer item had folded nothing before this batch: not stored, or stored empty by its linking and
    not written since (version 1). Not "has no sequence marks": an imported item has none (another stream's)."""
    return not stored.version or (stored.version == 1 and stored.profile.customer_id in batch.emptied)


def _write_deadlines(batch: Batch, customer_ids: list[str]) -> set[str]:
    """The due-list entries these customers' completed items list, written before the items; returns the customers
    whose items must not be written now (their entries could not be: their records are retried)."""
    if batch.prepare is None or not customer_ids:
        return set()
    try:
        batch.prepare.write_deadlines(customer_ids)
    except RejectedWriteError:
        raise  # permanent: the caller quarantines
    except StorageError:
        logger.warning("due-list entries could not be written; their customers' records will be retried")
        return set(customer_ids)
    return set()


def _save(batch: Batch, draft: _Draft, force: bool, unlisted: set[str]) -> list[str]:
    """Write one customer's item; on a conflict, read it again and fold again. Returns the sequence numbers that
    failed."""
    everything = [change.sequence for change in draft.changes]
    if draft.item is None:
        return draft.failed
    if draft.customer_id in unlisted:
        return everything
    for _ in range(SAVE_ATTEMPTS):
        try:
            batch.saved[draft.customer_id] = batch.store.save_profile(draft.item)
            if _first(batch, draft.stored):
                batch.created.add(draft.customer_id)
            return draft.failed
        except ConditionFailedError:
            pass  # someone else wrote it: read it again and fold again (the marks prevent double counting)
        except RejectedWriteError:
            raise  # permanent: the caller quarantines this customer's records
        except StorageError:
            return everything
        again = _folded_again(batch, draft, force)
        if again is None:
            return everything
        if again.item is None:
            return again.failed
        draft = again
    return everything


def _folded_again(batch: Batch, draft: _Draft, force: bool) -> _Draft | None:
    """A customer's records folded into its item as it is stored now, its due-list entry written; None: failed for
    now (the read or the entry)."""
    try:
        stored = batch.store.get_profiles([draft.customer_id]).get(draft.customer_id)
    except StorageError:
        return None
    again = _draft(batch, draft.customer_id, draft.changes, stored, force)
    if again.item is not None and _write_deadlines(batch, [draft.customer_id]):
        return None
    return again


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
    profile: CustomerProfile, batch: Batch, customer_id: str, done: Iterable[StreamChange]
) -> CustomerProfile:
    identities = set(profile.identities) | {customer_id}
    links = list(profile.links)
    for merge in batch.merges.get(customer_id, []):
        if merge not in links:
            links.append(merge)
    for change in done:
        for identity in (primary_identity(change.event), other_identity(batch, change.event)):
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
