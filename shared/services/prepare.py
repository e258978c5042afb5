"""Completing a customer item before processing writes it: one write per customer and batch holds it all.

Processing folds a batch's events into each customer's profile (`services.process`); before that profile is
written, `CustomerItems` adds what else the customer item keeps, from the customer's events:

- **analytics cells** (what the customer adds to the counters): the fold sums the changes of this item's cells from
  the stream, so no second item and no second write;
- **its segments**: the entries and exits are decided here and written with the item (an older customer's
  membership items are adopted in the same write: `decisions.adopt`); its stream record then writes the member
  items, announcements and history, and the fold the sizes;
- **the earliest segment deadline** on the due list: its entry is written first (a crash before the item's write
  leaves an entry that fires once, harmlessly), then the item lists the moment, so an unchanged deadline is never
  written again and `forget` finds the entry. A deadline that moved later is not written while an entry listed
  before it is still to come: that entry's evaluation finds it then (`segments.covered`).

The events read here are kept for the segment transitions that follow the write (`StreamPipeline.evaluate`), so
a customer's events are read once per batch. Anything that goes wrong here leaves the item as it was read (its
cells and moments unchanged) and the customer to the pipeline's slower path, which reads, retries and quarantines
as before: completing an item never fails a record.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Protocol

from shared.domain import analytics
from shared.domain.analytics import Definitions
from shared.domain.events import TrackingEvent, format_timestamp
from shared.domain.segments import Due, Facts, Memberships, SegmentRule, due_time
from shared.ports import IdentityEventReader, StoredProfile
from shared.services.decisions import covered, decide, decided
from shared.services.segments import customer_events

logger = logging.getLogger(__name__)


class DueWriter(IdentityEventReader, Protocol):
    """What completing a customer item needs of storage: its events, the due list, and an older customer's
    memberships (to adopt them)."""

    def put_due(self, dues: Sequence[Due], *, indexed: bool = False) -> None: ...
    def memberships_of(self, customer_id: str) -> Memberships: ...


class CustomerItems:
    """`prepare` for `process_changes`: cells and the earliest deadline of each customer item, for one batch."""

    def __init__(
        self, store: DueWriter, rules: Sequence[SegmentRule], definitions: Definitions, *, now: datetime
    ) -> None:
        self.store = store
        self.rules = list(rules)
        self.definitions = definitions
        self.now = now
        self.events: dict[str, list[TrackingEvent]] = {}
        """customer id → its events as read for the item this batch wrote (or tried to)."""
        self._read: dict[tuple[str, ...], list[TrackingEvent]] = {}

    def __call__(self, stored: StoredProfile) -> StoredProfile:
        customer_id = stored.profile.customer_id
        try:
            return self._complete(stored)
        except Exception:
            logger.exception("a customer item could not be completed; its customer is evaluated after the write")
            self.events.pop(customer_id, None)
            return stored

    def completed(self, customer_id: str) -> bool:
        """Whether the item this batch wrote for the customer holds its cells and deadline."""
        return customer_id in self.events

    def _complete(self, stored: StoredProfile) -> StoredProfile:
        profile = stored.profile
        identities = profile.identities or (profile.customer_id,)
        if identities not in self._read:  # a write that met a conflict completes the item again: read once
            self._read[identities] = customer_events(self.store, stored)
        events = self._read[identities]
        scheduled = stored.scheduled
        facts = Facts(profile.traits, events)
        if stored.segments is None:  # an older customer's: its membership items are adopted in this write
            stored = stored.adopting(self.store.memberships_of(profile.customer_id))
        decision = decide(stored, self.rules, facts, now=self.now)
        # (this write happens anyway: the reasons of an earlier write's entries and exits go with it)
        stored = decided(replace(stored, why={}), decision, now=self.now)
        if decision.earliest is not None:
            at = due_time(decision.earliest)
            if at not in scheduled and not covered(at, scheduled, now=self.now):
                self.store.put_due([Due(profile.customer_id, at)], indexed=True)  # the entry, before the item
                scheduled = (*scheduled, at)
        cells = analytics.kept(
            analytics.customer_cells(profile.customer_id, events, self.definitions, now=self.now), now=self.now
        )
        self.events[profile.customer_id] = events
        if cells == stored.cells:
            return replace(stored, scheduled=scheduled)
        return replace(stored, cells=cells, cells_at=format_timestamp(self.now), scheduled=scheduled)
