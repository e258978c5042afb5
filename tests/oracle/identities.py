"""Who is who, from the README: calls naming a userId and an anonymousId link them, so does `alias`; a new
identity joins the customer it arrived with; two customers found to be one person merge; an anonymous id
already linked to one known user never merges a second known user into it (a shared device)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.oracle.raw import AUDIENCE_SOURCE, Event


def may_merge_known_users(event: Event, source: Mapping[str, Any] | None) -> bool:
    """THE TRUST RULE (one place): may this call merge two customers who each have a different known userId?

    From the README: only an `alias` sent with the key of a source whose `trust` is `server`. A source without the
    attribute is a client source (its key is public). An identify linking a device another known user owns never
    merges (a shared device), whatever the source.
    """
    return event.type == "alias" and (source or {}).get("trust", "client") == "server"


@dataclass
class Group:
    identities: set[str] = field(default_factory=set)
    user: str | None = None
    conflicts: int = 0


@dataclass
class Identities:
    groups: list[Group]
    owner: dict[str, int]
    """identity (`u:x` / `a:y`) → index into `groups` (merged groups point at the survivor)."""

    def group_of(self, identity: str) -> Group:
        return self.groups[self.owner[identity]]

    def partition(self) -> set[frozenset[str]]:
        """The identities of each customer."""
        return {frozenset(self.groups[index].identities) for index in set(self.owner.values())}


def _primary(event: Event) -> str:
    return f"u:{event.user_id}" if event.user_id else f"a:{event.anonymous_id}"


def _other(event: Event, known: Mapping[str, int]) -> str | None:
    """The second identity a call names: an alias's previous id (a known user id, else an anonymous id), or the
    anonymousId beside a userId."""
    if event.type == "alias" and event.payload.get("previousId"):
        previous = event.payload["previousId"]
        return f"u:{previous}" if f"u:{previous}" in known else f"a:{previous}"
    if event.user_id and event.anonymous_id:
        return f"a:{event.anonymous_id}"
    return None


def resolve(events: Sequence[Event], sources: Mapping[str, Mapping[str, Any]]) -> Identities:
    """Every identity's customer, deciding links in arrival order (received time, then event time)."""
    identities = Identities(groups=[], owner={})
    ordered = sorted((e for e in events if e.source != AUDIENCE_SOURCE), key=lambda e: (e.received, *e.order_key()))
    for event in ordered:
        primary, other = _primary(event), _other(event, identities.owner)
        if primary not in identities.owner:
            _place(identities, primary, other, event.user_id)
        if other is not None:
            _link(identities, event, primary, other, sources.get(event.source))
    return identities


def _place(identities: Identities, primary: str, other: str | None, user_id: str | None) -> None:
    """A new identity joins the customer of the identity it arrived with, unless that customer is a different known
    user; otherwise it starts a customer of its own."""
    groups, owner = identities.groups, identities.owner
    host = owner.get(other) if other else None
    if host is not None and (groups[host].user in (None, user_id) or user_id is None):
        owner[primary] = host
        groups[host].identities.add(primary)
        groups[host].user = groups[host].user or user_id
    else:
        groups.append(Group({primary}, user_id))
        owner[primary] = len(groups) - 1


def _link(identities: Identities, event: Event, primary: str, other: str, source: Mapping[str, Any] | None) -> None:
    """The second identity a call names joins the primary's customer, or merges its customer into it, unless that
    would merge two different known users without the trust rule's leave (then a conflict is counted)."""
    groups, owner = identities.groups, identities.owner
    target = owner[primary]
    if other not in owner:
        owner[other] = target
        groups[target].identities.add(other)
        return
    away = owner[other]
    if away == target:
        return
    mine, theirs = groups[target].user or event.user_id, groups[away].user
    if mine and theirs and mine != theirs and not may_merge_known_users(event, source):
        groups[target].conflicts += 1
        return
    for identity in groups[away].identities:
        owner[identity] = target
    groups[target].identities |= groups[away].identities
    groups[target].user = groups[target].user or groups[away].user
    groups[away] = Group()
