"""Completing a customer item before processing writes it: one write per customer and batch holds it all.

Processing folds a batch's events into each customer's profile (`services.process`); before that profile is
written, `CustomerItems` adds what else the customer item keeps:

- **analytics cells** (what the customer adds to the counters): the fold sums the changes of this item's cells from
  the stream, so no second item and no second write;
- **its segments**: the entries and exits are decided here and written with the item (an older customer's
  membership items are adopted in the same write: `StoredProfile.adopting`); its stream record then writes the
  member items, announcements and history, and the fold the sizes;
- **the earliest segment deadline** on the due list: its entry is written first (`write_deadlines`: one batch
  write for every item of a stream batch; a crash before the items' writes leaves entries that fire once,
  harmlessly), then the item lists the moment, so an unchanged deadline is never written again and `forget`
  finds the entry. A deadline that moved later is not written while an entry listed before it is still to come:
  that entry's evaluation finds it then (`decisions.covered`);
- **the state that spares the next batch reading the customer's history** (`Derived`), when it is cheaper than
  that read: the segment rules' projected events (`domain.rule_state`) and the cells' state
  (`domain.cell_state`). A batch advances them with the events it folds, and reads nothing; the history is read
  (once per batch, every identity's events) and the state rebuilt when it cannot be advanced exactly: an identity
  attached or merged, other rules or definitions, an event at or before the last one the cells counted, an
  evaluation at an earlier moment than the state's, or the oldest event counted expiring from the table.
  The customer item is written at every batch and billed by the kilobyte; the read is billed half a read unit
  per 4 KB, and a read unit costs a fifth of a write unit: a state costs what it pushes the item over a
  kilobyte. `benchmarks/state_breakeven.py` measures both on simulated histories: under 10 events the item is
  small and the state nearly free; from 10 to 49 events the state costs more than the read it saves (keeping
  it for everyone added 0.10 write units an event to live traffic and saved 0.13 read units: four times the
  dollars); from about 55 on, the read costs more, and grows with every event (a 3,000-event customer: four
  times). So the state is kept outside 10-49 events (`keeps_state`), and within them wherever it costs nothing:
  when the item takes as many kilobytes started with it as without (`Derived.spare`, decided by storage as it
  builds the item; about 45 % of the simulated 10-49-event customers, fewer the longer the history).

Anything that goes wrong here leaves the item as it was read (its cells and moments unchanged) and the customer to
the pipeline's slower path, which reads, retries and quarantines as before: completing an item never fails a record.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

from shared.domain import analytics, cell_state, rule_state
from shared.domain.analytics import Definitions
from shared.domain.cells import Cells
from shared.domain.events import TrackingEvent, format_timestamp
from shared.domain.segments import Due, Facts, Memberships, SegmentRule, due_time
from shared.domain.sources import AUDIENCE_SOURCE
from shared.ports import Derived, IdentityEventReader, StoredProfile
from shared.services.decisions import covered, decide, decided
from shared.services.segments import customer_events, known_facts

logger = logging.getLogger(__name__)

STATE_COSTLIER = range(10, 50)
"""History lengths (events) for which the derived state costs more to write than the read it saves (see above)."""


def keeps_state(events: int) -> bool:
    """Whether a customer item keeps the derived state for a history of this many events."""
    return events not in STATE_COSTLIER


class DueWriter(IdentityEventReader, Protocol):
    """What completing a customer item needs of storage: its events, the due list, and an older customer's
    memberships (to adopt them)."""

    event_retention: timedelta | None

    def put_due(self, dues: Sequence[Due], *, indexed: bool = False) -> None: ...
    def memberships_of(self, customer_id: str) -> Memberships: ...


@dataclass(frozen=True, slots=True)
class Known:
    """What a customer item's decisions are made on this batch: the facts its rules see, its cells, the state."""

    facts: Facts
    cells: Cells
    derived: Derived | None
    read: bool
    """Whether the customer's history was read for them (the state was rebuilt from a stored customer's history)."""


class CustomerItems:
    """`prepare` for `process_changes`: segments, cells, the earliest deadline and the derived state of each
    customer item, for one batch."""

    def __init__(
        self, store: DueWriter, rules: Sequence[SegmentRule], definitions: Definitions, *, now: datetime
    ) -> None:
        self.store = store
        self.rules = list(rules)
        self.definitions = definitions
        self.now = now
        self.read = 0
        """How many customer items this batch completed from their whole history (the others from their state)."""
        self._lock = threading.Lock()  # (processing completes customers' items in parallel threads)
        self._completed: set[str] = set()
        self._due: dict[str, Due] = {}
        """The due-list entry each customer item completed last lists and is not written yet."""
        self._history: dict[tuple[str, ...], list[TrackingEvent]] = {}

    def __call__(
        self, stored: StoredProfile, new_events: Sequence[TrackingEvent], *, first: bool = False
    ) -> StoredProfile:
        customer_id = stored.profile.customer_id
        try:
            return self._complete(stored, new_events, first=first)
        except Exception:
            logger.exception("a customer item could not be completed; its customer is evaluated after the write")
            with self._lock:
                self._completed.discard(customer_id)
                self._due.pop(customer_id, None)
            return stored

    def write_deadlines(self, customer_ids: Collection[str]) -> None:
        """Write the due-list entries that the items just completed for these customers list, in one batch write
        per 25 (processing writes those items after: an entry whose item is never written fires once, harmlessly).

        Raises:
            StorageError: they could not all be written; those customers' items must not be written.
        """
        with self._lock:
            dues = [self._due.pop(customer_id) for customer_id in customer_ids if customer_id in self._due]
        if dues:
            self.store.put_due(dues, indexed=True)

    def completed(self, customer_id: str) -> bool:
        """Whether the item this batch wrote for the customer holds its segments, cells and deadline."""
        return customer_id in self._completed

    def _complete(self, stored: StoredProfile, new_events: Sequence[TrackingEvent], *, first: bool) -> StoredProfile:
        profile = stored.profile
        known = self._advanced(stored, new_events) or self._rebuilt(stored, new_events if first else None)
        with self._lock:
            self.read += known.read
        if stored.segments is None:  # an older customer's: its membership items are adopted in this write
            stored = stored.adopting(self.store.memberships_of(profile.customer_id))
        decision = decide(stored, self.rules, known.facts, now=self.now)
        # (this write happens anyway: the reasons of an earlier write's entries and exits go with it)
        stored = decided(replace(stored, why={}, derived=known.derived), decision, now=self.now)
        scheduled = stored.scheduled
        with self._lock:
            self._due.pop(profile.customer_id, None)  # (a write that met a conflict is completed again)
        if decision.earliest is not None:
            at = due_time(decision.earliest)
            if at not in scheduled and not covered(at, scheduled, now=self.now):
                with self._lock:  # its entry is written before the item (`write_deadlines`)
                    self._due[profile.customer_id] = Due(profile.customer_id, at)
                scheduled = (*scheduled, at)
        self._completed.add(profile.customer_id)
        if known.cells == stored.cells:
            return replace(stored, scheduled=scheduled)
        return replace(stored, cells=known.cells, cells_at=format_timestamp(self.now), scheduled=scheduled)

    def _advanced(self, stored: StoredProfile, new_events: Sequence[TrackingEvent]) -> Known | None:
        """The state carried on over this write's events alone, or None when it cannot be (exactly)."""
        derived, profile = stored.derived, stored.profile
        if known_facts(stored, self.rules, now=self.now) is None:  # another identity, other rules, expired…
            return None
        if derived is None or derived.rules is None or derived.cells is None:
            return None
        events = [e for e in new_events if e.source_id != AUDIENCE_SOURCE]
        carried = cell_state.advance(stored.cells, derived.cells, events, self.definitions, now=self.now)
        if carried is None:
            return None
        cells, state = carried
        rules = rule_state.advance(derived.rules, self.rules, events, self.now)
        expires = _expiry([derived.expires, *(self._expires(e) for e in events)])
        count = derived.events + len(events)
        advanced = replace(
            derived, at=self.now, rules=rules, cells=state, expires=expires, events=count, spare=not keeps_state(count)
        )
        return Known(rule_state.facts(rules, profile.traits), cells, advanced, read=False)

    def _rebuilt(self, stored: StoredProfile, first_events: Sequence[TrackingEvent] | None) -> Known:
        """The state built from the customer's whole history: every identity's events, read once per batch; for a
        customer item not stored yet, the events this write folds (see `_history_of`)."""
        profile = stored.profile
        identities = profile.identities or (profile.customer_id,)
        events = self._history_of(stored, first_events)
        cells, state = cell_state.build(profile.customer_id, events, self.definitions, now=self.now)
        rules = rule_state.build(self.rules, events, self.now)
        expires = _expiry([self._expires(e) for e in events])
        spare = not keeps_state(len(events))  # kept only where it costs no write unit (`Derived.spare`)
        derived = Derived(tuple(sorted(identities)), self.now, rules, state, expires, len(events), spare)
        return Known(
            Facts(profile.traits, events), analytics.kept(cells, now=self.now), derived, read=first_events is None
        )

    def _history_of(self, stored: StoredProfile, first_events: Sequence[TrackingEvent] | None) -> list[TrackingEvent]:
        """The events a rebuilt state is built from.

        A customer item that had folded nothing before this write (`first`: not stored, or stored empty by this
        batch's linking) has as its history the events this write folds (`first_events`), so nothing is read. (On
        a multi-shard stream, events of its identities may be stored but not folded yet; their own batch folds them
        later, and the state advances with them, or is rebuilt from the history when one is at or before the last
        event counted: the state stays what the events folded so far make.) A customer merged in this batch with
        one that was stored is not new: the merge wrote its item, with the marks of both.
        """
        if first_events is not None:
            return [e for e in first_events if e.source_id != AUDIENCE_SOURCE]
        identities = stored.profile.identities or (stored.profile.customer_id,)
        if identities not in self._history:  # a write that met a conflict completes the item again: read once
            self._history[identities] = customer_events(self.store, stored)
        return self._history[identities]

    def _expires(self, event: TrackingEvent) -> datetime | None:
        retention = self.store.event_retention
        return None if retention is None else event.received_at + retention


def _expiry(moments: Sequence[datetime | None]) -> datetime | None:
    known = [moment for moment in moments if moment is not None]
    return min(known, default=None)
