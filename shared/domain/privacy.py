"""Personal data handling: e-mail hashing."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from shared.domain.events import TrackingEvent

EMAIL_KEYS = frozenset({"email", "Email", "e-mail"})


def hash_email(address: str) -> str:
    """SHA-256 (hex) of a trimmed, lower-cased e-mail address: joinable, not readable."""
    return hashlib.sha256(address.strip().lower().encode("utf-8")).hexdigest()


def _hash_in(values: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: hash_email(value) if key in EMAIL_KEYS and isinstance(value, str) and "@" in value else value
        for key, value in values.items()
    }


def hash_emails(event: TrackingEvent) -> TrackingEvent:
    """Business rule: for sources configured so, store e-mail addresses only as hashes."""
    context = dict(event.context)
    if isinstance(context.get("traits"), Mapping):
        context["traits"] = _hash_in(context["traits"])
    return replace(event, traits=_hash_in(event.traits), properties=_hash_in(event.properties), context=context)
