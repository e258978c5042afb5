"""Identity stitching rules: which identities belong to the same customer."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from shared.domain.events import CallType, TrackingEvent


def identity_key(kind: str, value: str) -> str:
    """`u:<userId>` or `a:<anonymousId>`."""
    return f"{kind}:{value}"


def split_identity(key: str) -> tuple[str, str]:
    """Inverse of `identity_key`."""
    kind, _, value = key.partition(":")
    return kind, value


def event_identities(event: TrackingEvent) -> list[str]:
    """Every identity an event names (its userId and its anonymousId)."""
    found = [identity_key("u", event.user_id)] if event.user_id else []
    return found + ([identity_key("a", event.anonymous_id)] if event.anonymous_id else [])


def named_identities(event: TrackingEvent) -> list[str]:
    """Every identity an event names or would link: its own, and an alias's `previousId` as either kind."""
    found = event_identities(event)
    if event.type is CallType.ALIAS and event.previous_id:
        found += [identity_key("u", event.previous_id), identity_key("a", event.previous_id)]
    return found


def primary_identity(event: TrackingEvent) -> str:
    """The identity an event is stored under (its userId when known)."""
    return identity_key(*event.identity)


class LinkAction(StrEnum):
    """What a call that names two identities does to customers."""

    NONE = "none"
    """Already the same customer."""
    ATTACH = "attach"
    """The other identity is new: it joins the customer."""
    MERGE = "merge"
    """Two customers are the same person: the other one is folded in."""
    CONFLICT = "conflict"
    """The other identity belongs to a different known user (a shared device): no merge, a flag."""


@dataclass(frozen=True, slots=True)
class Customer:
    """What linking needs to know of a customer."""

    customer_id: str
    user_id: str | None


def linked_identity(event: TrackingEvent) -> str | None:
    """The second identity a call names, if any: `previousId` of an alias, else the anonymousId next to a userId."""
    if event.type is CallType.ALIAS and event.previous_id:
        return event.previous_id  # kind resolved by the caller (a previous id may be a user or an anonymous id)
    if event.user_id and event.anonymous_id:
        return identity_key("a", event.anonymous_id)
    return None


def plan_link(*, target: Customer, other: Customer | None, explicit: bool, trusted: bool = False) -> LinkAction:
    """Business rule: link two identities unless that would merge two different known users.

    Two different known users are merged only by an `alias` sent with a server source's key: a browser's write
    key is public, so anyone could otherwise take over a victim's profile with one request. Otherwise the link
    is refused and recorded as a conflict (an `identify` doing so is a shared device).

    Args:
        target: the customer of the call's userId.
        other: the customer the second identity belongs to, if it is known.
        explicit: an `alias` call, which merges known users on purpose.
        trusted: the call came with the key of a `server` source.
    """
    if other is None:
        return LinkAction.ATTACH
    if other.customer_id == target.customer_id:
        return LinkAction.NONE
    if other.user_id and target.user_id and other.user_id != target.user_id and not (explicit and trusted):
        return LinkAction.CONFLICT
    return LinkAction.MERGE
