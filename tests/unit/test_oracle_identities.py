"""The oracle's identity rules on hand-made raw events, the trust rule included."""

from __future__ import annotations

from typing import Any

import pytest

from tests.oracle.identities import resolve
from tests.oracle.raw import Event


def raw(n: int, source: str = "web", **payload: Any) -> Event:
    at = f"2026-11-29T10:00:{n:02d}.000Z"
    user = payload.get("userId")
    pk = f"ID#u#{user}" if user else f"ID#a#{payload['anonymousId']}"
    body = {"type": "identify", "messageId": f"m{n}", "timestamp": at, "receivedAt": at, **payload}
    return Event(pk, f"EVT#{source}#m{n}", source, body)


def test_an_anonymous_visitor_who_identifies_is_one_customer():
    events = [raw(1, type="track", event="Viewed", anonymousId="d1"), raw(2, userId="ann", anonymousId="d1")]
    assert resolve(events, {}).partition() == {frozenset({"u:ann", "a:d1"})}


@pytest.mark.parametrize(
    ("trust", "expected"),
    [
        (None, {frozenset({"u:ann", "a:d1"}), frozenset({"u:bob"})}),  # a shared device, no merge
        ("client", {frozenset({"u:ann", "a:d1"}), frozenset({"u:bob"})}),
        ("server", {frozenset({"u:ann", "a:d1"}), frozenset({"u:bob"})}),
    ],
)
def test_a_second_known_user_on_a_device_never_merges(trust, expected):
    sources = {"web": {"id": "web", **({"trust": trust} if trust else {})}}
    events = [raw(1, userId="ann", anonymousId="d1"), raw(2, userId="bob", anonymousId="d1")]
    assert resolve(events, sources).partition() == expected


@pytest.mark.parametrize(
    ("trust", "merged"),
    [(None, False), ("client", False), ("server", True)],  # None: a source from before trust levels is a client
)
def test_an_alias_of_two_known_users(trust, merged):
    sources = {"web": {"id": "web", **({"trust": trust} if trust else {})}}
    events = [raw(1, userId="ann"), raw(2, userId="bob"), raw(3, type="alias", userId="bob", previousId="ann")]
    groups = resolve(events, sources).partition()
    assert (groups == {frozenset({"u:ann", "u:bob"})}) is merged
