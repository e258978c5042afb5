"""Sources: who may send events, with which keys and secrets, and how their webhooks map to events."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from shared.domain.errors import ConfigurationError

WRITE_KEY_PREFIX = "ffk_"
SECRET_PREFIX = "ffs_"
# Two secrets of a kind are valid at once: the newest signs, the older keeps verifying until it is rotated out.
ACTIVE_SECRETS = 2
AUDIENCE_SOURCE = "footfall"
"""The source of the stack's own Audience Entered/Exited events."""
RESERVED_SOURCE_IDS = frozenset({AUDIENCE_SOURCE})
"""Ids no source may have: an event from them would pass for one of Footfall's own."""


def is_reserved(source_id: str) -> bool:
    """Business rule: a reserved id (the audience source's) belongs to no sender, whatever the store holds."""
    return source_id.strip().lower() in RESERVED_SOURCE_IDS


CLIENT_TRUST = "client"
SERVER_TRUST = "server"
TRUST_LEVELS = (CLIENT_TRUST, SERVER_TRUST)


@dataclass(frozen=True, slots=True)
class Source:
    """A sender of events (a website, an app, an e-mail tool, a webhook provider)."""

    id: str
    name: str
    created_at: datetime
    write_key_hashes: tuple[str, ...]
    """SHA-256 of each accepted write key; the keys themselves are shown once and never stored."""
    link_secrets: tuple[str, ...]
    """HMAC secrets for click-redirect links, newest first."""
    webhook_secrets: tuple[str, ...]
    """HMAC secrets for inbound webhooks, newest first."""
    hash_emails: bool = False
    """Replace e-mail addresses in traits and properties by their SHA-256 before storing."""
    webhook_mapping: WebhookMapping | None = None
    write_key_prefix: str = ""
    """The first characters of the write key, enough for an operator to tell keys apart."""
    trust: str = CLIENT_TRUST
    """`client` (the default: its write key is public, in every page's source) or `server` (the key stays on
    servers the operator runs). Only a server source may merge two different known users (an `alias`)."""
    write_key_expiry: tuple[tuple[str, datetime], ...] = ()
    """(hash, valid until) of each rotated-out write key still in its grace period."""


@dataclass(frozen=True, slots=True)
class WebhookMapping:
    """How a provider's webhook payload becomes Segment-shaped events.

    Every value is either a path into the payload (`$.order.id`, `$.items[0].sku`, `$headers.x-topic`)
    or a literal string.
    """

    events: str | None = None
    """Path to an array of events in the payload; `None` means the payload is one event."""
    type: str = "track"
    event: str | None = None
    event_names: dict[str, str] = field(default_factory=dict)
    """Renames provider event names to Footfall's (e.g. `orders/create` → `Order Completed`)."""
    user_id: str | None = None
    anonymous_id: str | None = None
    message_id: str | None = None
    timestamp: str | None = None
    properties: dict[str, str] = field(default_factory=dict)
    traits: dict[str, str] = field(default_factory=dict)
    context: dict[str, str] = field(default_factory=dict)


def hash_write_key(write_key: str) -> str:
    """SHA-256 of a write key (keys are long random tokens, so a fast hash is the right one)."""
    return hashlib.sha256(write_key.encode("utf-8")).hexdigest()


def new_source(*, source_id: str, name: str, created_at: datetime, token: Any) -> tuple[Source, str]:
    """Make a source with a fresh write key and secrets.

    Args:
        token: `secrets.token_urlsafe`-like callable (randomness is a parameter).

    Returns:
        The source and its write key, which is shown once.
    """
    if not name.strip():
        raise ConfigurationError("source name must not be empty")
    if is_reserved(source_id):
        raise ConfigurationError(f"source id {source_id!r} is reserved for Footfall's own events")
    write_key = WRITE_KEY_PREFIX + token(24)
    source = Source(
        id=source_id,
        name=name.strip(),
        created_at=created_at,
        write_key_hashes=(hash_write_key(write_key),),
        link_secrets=(SECRET_PREFIX + token(32),),
        webhook_secrets=(SECRET_PREFIX + token(32),),
        write_key_prefix=write_key[:10],
    )
    return source, write_key


def rotate_secret(source: Source, kind: str, new_secret: str) -> Source:
    """Put `new_secret` first and keep the previous newest one valid; older ones stop working."""
    if kind not in ("link", "webhook"):
        raise ConfigurationError(f"unknown secret kind {kind!r}: use link or webhook")
    if kind == "link":
        return replace(source, link_secrets=(new_secret, *source.link_secrets)[:ACTIVE_SECRETS])
    return replace(source, webhook_secrets=(new_secret, *source.webhook_secrets)[:ACTIVE_SECRETS])


def matches_write_key(source: Source, write_key: str, *, now: datetime | None = None) -> bool:
    """Constant-time check of a write key against the source's hashes (a rotated-out key only until its expiry)."""
    candidate = hash_write_key(write_key)
    expired = {known for known, until in source.write_key_expiry if now is not None and until <= now}
    return any(hmac.compare_digest(candidate, known) for known in source.write_key_hashes if known not in expired)


DEFAULT_KEY_GRACE = timedelta(hours=24)
"""How long a rotated-out write key keeps working by default: a day to redeploy every site and app using it."""


def rotate_write_key(source: Source, new_write_key: str, *, now: datetime, grace: timedelta) -> Source:
    """Business rule: the new key works at once; every older key keeps working until `now + grace`, then never.

    A key already retiring keeps its earlier expiry; a zero grace revokes the older keys at once.
    """
    if grace < timedelta(0):
        raise ConfigurationError("grace must not be negative")
    if not new_write_key.startswith(WRITE_KEY_PREFIX):
        raise ConfigurationError(f"write keys start with {WRITE_KEY_PREFIX}")
    expiry = dict(source.write_key_expiry)
    for known in source.write_key_hashes:
        expiry[known] = min(expiry.get(known, now + grace), now + grace)
    retiring = tuple((known, until) for known, until in expiry.items() if until > now)
    return replace(
        source,
        write_key_hashes=(hash_write_key(new_write_key), *(known for known, _ in retiring)),
        write_key_expiry=retiring,
        write_key_prefix=new_write_key[:10],
    )
