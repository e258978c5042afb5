"""Signed click-redirect links: only links Footfall signed may redirect (no open redirect)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from shared.domain.errors import AuthenticationError, InvalidEventError
from shared.domain.pixel import CONTROL_PARAMS, unflatten

SIGNATURE_PARAM = "sig"
TARGET_PARAM = "url"
SOURCE_PARAM = "src"
EXPIRES_PARAM = "exp"
DEFAULT_CLICK_EVENT = "Email Link Clicked"
MAX_QUERY_CHARS = 8192


def _canonical(params: Mapping[str, str]) -> bytes:
    pairs = sorted((key, value) for key, value in params.items() if key != SIGNATURE_PARAM)
    return "&".join(f"{quote(key, safe='')}={quote(value, safe='')}" for key, value in pairs).encode("utf-8")


def _signature(params: Mapping[str, str], secret: str) -> str:
    digest = hmac.new(secret.encode("utf-8"), _canonical(params), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def click_params(
    *,
    source_id: str,
    target: str,
    secret: str,
    event: str = DEFAULT_CLICK_EVENT,
    user_id: str | None = None,
    anonymous_id: str | None = None,
    properties: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
    expires_at: datetime | None = None,
    message_id: str | None = None,
    timestamp: str | None = None,
) -> dict[str, str]:
    """The signed query parameters of a click link (dot-notation for properties and context).

    `message_id` (one per recipient and link: a second click is then the same message, counted once) and
    `timestamp` are signed like everything else.

    Raises:
        InvalidEventError: the target is not an absolute http(s) URL, or a property/context key cannot be
            carried in dot-notation (empty, starting or ending with ".", or clashing with another key).
    """
    validate_target(target)
    params = {SOURCE_PARAM: source_id, TARGET_PARAM: target, "event": event}
    if user_id:
        params["userId"] = user_id
    if anonymous_id:
        params["anonymousId"] = anonymous_id
    if message_id:
        params["messageId"] = message_id
    if timestamp:
        params["timestamp"] = timestamp
    for prefix, values in (("properties", properties or {}), ("context", context or {})):
        params.update(flatten(values, prefix))
    if expires_at is not None:
        params[EXPIRES_PARAM] = str(int(expires_at.timestamp()))
    # The redirect reads these back as dot-notation: a link it could not read would never redirect, so refuse it now.
    unflatten({key: value for key, value in params.items() if key not in CONTROL_PARAMS})
    params[SIGNATURE_PARAM] = _signature(params, secret)
    return params


def click_url(base_url: str, params: Mapping[str, str]) -> str:
    """The full link: `<collector>/v1/r?<signed params>`."""
    return f"{base_url.rstrip('/')}/v1/r?{urlencode(params)}"


def flatten(values: Mapping[str, Any], prefix: str) -> dict[str, str]:
    """Nested mapping → dot-notation query parameters (`properties.campaign.name=…`)."""
    flat: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}.{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name))
        else:
            flat[name] = str(value)
    return flat


def unique_query(raw_query: str) -> dict[str, str]:
    """Parse a query string, refusing repeated keys (a repeated key makes a signed link ambiguous).

    Raises:
        InvalidEventError: on a repeated key or an over-long query.
    """
    if len(raw_query) > MAX_QUERY_CHARS:
        raise InvalidEventError(f"query string is longer than {MAX_QUERY_CHARS} characters")
    params: dict[str, str] = {}
    for key, value in parse_qsl(raw_query, keep_blank_values=True):
        if key in params:
            raise InvalidEventError(f"query parameter {key!r} is repeated", field=key)
        params[key] = value
    return params


def verify_click(params: Mapping[str, str], secrets: Iterable[str], *, now: datetime) -> str:
    """Check a click link's signature and expiry, and return its target.

    Raises:
        AuthenticationError: unsigned, tampered, signed with an unknown secret, or expired.
        InvalidEventError: the target is not an absolute http(s) URL.
    """
    given = params.get(SIGNATURE_PARAM)
    if not given:
        raise AuthenticationError("link is not signed")
    # `compare_digest` raises TypeError on non-ASCII text; no signature Footfall makes is anything but ASCII.
    if not given.isascii() or not any(hmac.compare_digest(given, _signature(params, secret)) for secret in secrets):
        raise AuthenticationError("link signature does not match")
    expires = params.get(EXPIRES_PARAM)
    if expires is not None and (not (expires.isascii() and expires.isdigit()) or int(expires) < now.timestamp()):
        raise AuthenticationError("link has expired")
    return validate_target(params.get(TARGET_PARAM, ""))


def validate_target(target: str) -> str:
    """A redirect target must be an absolute http(s) URL with a host and no control characters."""
    parts = urlsplit(target)
    if parts.scheme not in ("http", "https") or not parts.netloc or any(ord(c) < 32 for c in target):
        raise InvalidEventError("url must be an absolute http(s) URL", field=TARGET_PARAM)
    return target
