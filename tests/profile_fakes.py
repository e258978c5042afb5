"""An in-memory profile store with DynamoDB's semantics (conditional puts, atomic merges), for fast tests.

Profiles go through the real item codec on the way in and out, so codec bugs cannot hide here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from shared.ports import ConditionFailedError, Link, StoredProfile, ThrottledError
from shared.storage import items


class InMemoryProfileStore:
    def __init__(self) -> None:
        self.conflicts_noted: list[tuple[str, str, str]] = []
        self.links: dict[str, Link] = {}
        self.profiles: dict[str, dict[str, Any]] = {}
        self.writes = 0
        self.fail_saves_for: set[str] = set()
        """Customer ids whose profile saves are throttled."""

    def get_links(self, identities: Sequence[str]) -> dict[str, Link]:
        """As DynamoDB's store: the identity's link item first, else its slot (its own customer item, or a
        pointer)."""
        found = {identity: self.links[identity] for identity in identities if identity in self.links}
        for identity in identities:
            if identity not in found and identity in self.profiles:
                found[identity] = items.slot_link(identity, self.profiles[identity])
        return found

    def forgotten_identities(self, identities: Sequence[str], *, clear_at: object = None) -> set[str]:
        return set()

    def link_identity(self, link: Link) -> Link:
        if link.identity in self.links or link.identity in self.profiles:  # (the slot is taken)
            return self.get_links([link.identity])[link.identity]
        self.profiles[link.identity] = items.pointer_item(link)
        self.writes += 1
        return link

    def claim_customer(self, customer_id: str) -> StoredProfile:
        if customer_id in self.profiles:
            raise ConditionFailedError("slot taken")
        empty, item = items.claimed_item(customer_id)
        self.profiles[customer_id] = item
        self.writes += 1
        return empty

    def get_profiles(self, customer_ids: Sequence[str]) -> dict[str, StoredProfile]:
        return {cid: items.item_to_profile(self.profiles[cid]) for cid in customer_ids if cid in self.profiles}

    def _check(self, stored: StoredProfile) -> None:
        current = self.profiles.get(stored.profile.customer_id)
        if (current["version"] if current else 0) != stored.version:
            raise ConditionFailedError("version moved")

    def save_profile(self, stored: StoredProfile) -> StoredProfile:
        if stored.profile.customer_id in self.fail_saves_for:
            raise ThrottledError("injected")
        self._check(stored)
        saved = replace(stored, version=stored.version + 1)
        self.profiles[stored.profile.customer_id] = items.profile_to_item(saved)
        self.writes += 1
        return saved

    def note_conflict(self, identity: str, customer_id: str, event: Any) -> None:
        self.conflicts_noted.append((identity, customer_id, event.message_id))

    def merge_customers(self, *, into: StoredProfile, away: StoredProfile, links: Sequence[Link]) -> StoredProfile:
        self._check(into)
        self._check(away)
        saved_into, saved_away = replace(into, version=into.version + 1), replace(away, version=away.version + 1)
        self.profiles[into.profile.customer_id] = items.profile_to_item(saved_into)
        self.profiles[away.profile.customer_id] = items.profile_to_item(saved_away)
        for link in links:
            self.links[link.identity] = link
        self.writes += 2 + len(links)
        return saved_into

    def live_profiles(self) -> list[StoredProfile]:
        return [p for p in map(items.item_to_profile, self.profiles.values()) if not p.profile.merged_into]
