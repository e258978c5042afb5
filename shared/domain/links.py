"""Signed click-redirect links: only links Footfall signed may redirect (no open redirect)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import re
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
TARGET_REFUSED = "url must be an absolute http(s) URL in printable ASCII with a plain host (no user info, no backslash)"
_HOST_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


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
    """Business rule: a redirect target is an absolute http(s) URL in printable ASCII with a plain host.

    Refused even when signed (defence in depth, so that a signed link can only go where it reads): any
    character outside printable ASCII (controls, spaces, U+2028, fullwidth or other look-alike letters: a
    non-ASCII host must be written in its `xn--` form, which shows what it is), a backslash (browsers read it
    as `/`), user info (`https://bank.example@evil.example`), a port that is not a number, and a host that
    is neither DNS labels nor an IP address.
    """
    refused = InvalidEventError(TARGET_REFUSED, field=TARGET_PARAM)
    if not target.isascii() or not target.isprintable() or " " in target or "\\" in target:
        raise refused
    parts = urlsplit(target)
    if parts.scheme not in ("http", "https") or not target.lower().startswith(parts.scheme + "://"):
        raise refused
    if "@" in parts.netloc or not parts.hostname or not _plain_host(parts.hostname):
        raise refused
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError:
        raise refused from None
    return target


def _plain_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        labels = host.removesuffix(".").split(".")
        return len(host) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in labels)
