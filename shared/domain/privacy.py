"""Personal data handling: e-mail hashing."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

from shared.domain.events import MAX_DEPTH, TrackingEvent

EMAIL_KEYS = frozenset({"email", "e-mail", "email_address", "emailaddress", "mail"})


def hash_email(address: str) -> str:
    """SHA-256 (hex) of a trimmed, lower-cased e-mail address: joinable, not readable."""
    return hashlib.sha256(address.strip().lower().encode("utf-8", "surrogatepass")).hexdigest()


TOO_DEEP = "(nested too deep: dropped)"


def hash_email_values(value: Any, *, depth: int = 0) -> Any:
    """A JSON value with every e-mail address under an e-mail key, at any depth, replaced by its hash.

    Refused input reaches here before validation, so the walk is bounded: below `MAX_DEPTH` levels a value is
    replaced by a marker (a failed-event record must never keep an address it could not look into).
    """
    if depth > MAX_DEPTH and isinstance(value, (dict, list)):
        return TOO_DEEP
    if isinstance(value, dict):
        return {
            key: hash_email(item) if _is_email(key, item) else hash_email_values(item, depth=depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [hash_email_values(item, depth=depth + 1) for item in value]
    return value


def _is_email(key: Any, value: Any) -> bool:
    return isinstance(key, str) and key.lower() in EMAIL_KEYS and isinstance(value, str) and "@" in value


def hash_emails(event: TrackingEvent) -> TrackingEvent:
    """Business rule: for sources configured so, store e-mail addresses only as hashes."""
    return replace(
        event,
        traits=hash_email_values(dict(event.traits)),
        properties=hash_email_values(dict(event.properties)),
        context=hash_email_values(dict(event.context)),
    )
