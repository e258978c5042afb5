"""Snowplow's tracker protocol mapped to Segment-shaped calls.

Snowplow trackers send each event as a flat map of short string fields: as the query string of `GET /i`
(the pixel), or as one element of `data` in the `payload_data` JSON of `POST /com.snowplowanalytics.snowplow/tp2`.
The fields used here (https://docs.snowplow.io/docs/sources/trackers/snowplow-tracker-protocol/):

| field | meaning | becomes |
|---|---|---|
| `e` | event kind: `pv` page view, `pp` page ping, `se` structured, `ue` self-describing | the call |
| `eid` | event id (UUID) | `messageId` |
| `duid` / `nuid` | domain (first-party cookie) / network user id | `anonymousId` (duid first) |
| `uid` | the user id the site set | `userId` |
| `dtm` / `ttm` / `stm` | device created / true / sent time, ms since epoch | `timestamp` (ttm first) / `sentAt` |
| `url`, `page`, `refr` | page URL, title, referrer | `context.page` (and a page call's properties) |
| `se_ca/ac/la/pr/va` | structured event category, action, label, property, value | track named by the action |
| `ue_pr` / `ue_px` | self-describing event, JSON / base64url JSON | track named `vendor/name` of its schema |
| `co` / `cx` | entities (contexts), JSON / base64url JSON | `context.snowplow.contexts` |
| `aid`, `p`, `tv`, `sid`, `vid`, `lang`, `res`, `tz` | app id, platform, tracker, session id and index… | `context` |
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from shared.domain.errors import InvalidEventError

PAYLOAD_DATA_SCHEMA_PREFIX = "iglu:com.snowplowanalytics.snowplow/payload_data/"
MAX_EVENTS_PER_POST = 2500
"""The same ceiling as a Segment batch."""


def payload_events(body: Any) -> list[Any]:
    """The events of a `tp2` POST body (`{"schema": "iglu:…/payload_data/…", "data": [{…}, …]}`).

    Raises:
        InvalidEventError: not a payload_data envelope.
    """
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise InvalidEventError("body must be Snowplow payload_data: {schema, data: [events]}")
    schema = body.get("schema")
    if not isinstance(schema, str) or not schema.startswith(PAYLOAD_DATA_SCHEMA_PREFIX):
        raise InvalidEventError(f"schema must be {PAYLOAD_DATA_SCHEMA_PREFIX}…")
    if len(body["data"]) > MAX_EVENTS_PER_POST:
        raise InvalidEventError(f"at most {MAX_EVENTS_PER_POST} events per request")
    return list(body["data"])


def segment_call(fields: Any, *, user_agent: str | None = None) -> dict[str, Any]:
    """One Snowplow event as a Segment call (a dict for the collector's own validation).

    Business rule: the Snowplow identities are kept as Segment's (`duid` is the browser, `uid` the person), so a
    customer tracked by a Snowplow tracker and by a Segment SDK is one customer once both carry the same user id.

    Raises:
        InvalidEventError: not a map of fields, unknown event kind, or an undecodable `ue_px`/`cx`.
    """
    if not isinstance(fields, Mapping):
        raise InvalidEventError("each Snowplow event must be an object of fields")
    kind = _text(fields, "e")
    call: dict[str, Any] = _identities(fields)
    call["context"] = _context(fields, user_agent)
    if kind == "pv":
        call["type"] = "page"
        page = call["context"].get("page", {})
        if "title" in page:
            call["name"] = page["title"]
        call["properties"] = dict(page)
    elif kind == "pp":
        call.update(type="track", event="Page Ping", properties=_page_ping(fields))
    elif kind == "se":
        call.update(type="track", **_structured(fields))
    elif kind == "ue":
        call.update(type="track", **_self_describing(fields))
    else:
        raise InvalidEventError(f"unsupported Snowplow event e={str(kind)[:10]!r}: use pv, pp, se or ue")
    return call


def _text(fields: Mapping[str, Any], name: str) -> str | None:
    value = fields.get(name)
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def _identities(fields: Mapping[str, Any]) -> dict[str, Any]:
    call: dict[str, Any] = {}
    if eid := _text(fields, "eid"):
        call["messageId"] = eid
    if anonymous := _text(fields, "duid") or _text(fields, "nuid"):
        call["anonymousId"] = anonymous
    if user := _text(fields, "uid"):
        call["userId"] = user
    if at := _millis(fields, "ttm") or _millis(fields, "dtm"):
        call["timestamp"] = at
    if sent := _millis(fields, "stm"):
        call["sentAt"] = sent
    return call


def _millis(fields: Mapping[str, Any], name: str) -> str | None:
    value = _text(fields, name)
    if value is None or not value.isdigit() or len(value) > 15:
        return None
    return datetime.fromtimestamp(int(value) / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _context(fields: Mapping[str, Any], user_agent: str | None) -> dict[str, Any]:
    context: dict[str, Any] = {"library": {"name": "snowplow", "version": _text(fields, "tv") or "unknown"}}
    if page := _page(fields):
        context["page"] = page
    if locale := _text(fields, "lang"):
        context["locale"] = locale
    if zone := _text(fields, "tz"):
        context["timezone"] = zone
    if user_agent:
        context["userAgent"] = user_agent
    width, _, height = (_text(fields, "res") or "").partition("x")
    if width.isdigit() and height.isdigit():
        context["screen"] = {"width": int(width), "height": int(height)}
    snowplow: dict[str, Any] = {
        name: value
        for name, value in (
            ("app_id", _text(fields, "aid")),
            ("platform", _text(fields, "p")),
            ("domain_sessionid", _text(fields, "sid")),
            ("domain_sessionidx", _text(fields, "vid")),
            ("network_userid", _text(fields, "nuid")),
        )
        if value is not None
    }
    entities = _json_field(fields, plain="co", encoded="cx")
    if entities is not None:
        data = entities.get("data") if isinstance(entities, dict) else None
        if not isinstance(data, list):
            raise InvalidEventError("co/cx must be a contexts object: {schema, data: [entities]}")
        snowplow["contexts"] = data
    context["snowplow"] = snowplow
    return context


def _page(fields: Mapping[str, Any]) -> dict[str, Any]:
    page: dict[str, Any] = {}
    if url := _text(fields, "url"):
        parts = urlsplit(url)
        page.update(url=url, path=parts.path or "/", search=f"?{parts.query}" if parts.query else "")
    if title := _text(fields, "page"):
        page["title"] = title
    if referrer := _text(fields, "refr"):
        page["referrer"] = referrer
    return page


def _page_ping(fields: Mapping[str, Any]) -> dict[str, Any]:
    offsets = {}
    for name in ("pp_mix", "pp_max", "pp_miy", "pp_may"):
        value = _text(fields, name)
        if value is not None and value.lstrip("-").isdigit():
            offsets[name] = int(value)
    return offsets


def _structured(fields: Mapping[str, Any]) -> dict[str, Any]:
    category, action = _text(fields, "se_ca"), _text(fields, "se_ac")
    if not category or not action:
        raise InvalidEventError("a structured event needs se_ca (category) and se_ac (action)")
    properties: dict[str, Any] = {"category": category, "action": action}
    if label := _text(fields, "se_la"):
        properties["label"] = label
    if prop := _text(fields, "se_pr"):
        properties["property"] = prop
    if (value := _text(fields, "se_va")) is not None:
        try:
            properties["value"] = float(value)
        except ValueError:
            raise InvalidEventError("se_va (value) must be a number") from None
    return {"event": action, "properties": properties}


def _self_describing(fields: Mapping[str, Any]) -> dict[str, Any]:
    envelope = _json_field(fields, plain="ue_pr", encoded="ue_px")
    inner = envelope.get("data") if isinstance(envelope, dict) else None
    schema = inner.get("schema") if isinstance(inner, dict) else None
    if not isinstance(schema, str):
        raise InvalidEventError("a self-describing event needs ue_pr or ue_px: {schema, data: {schema, data}}")
    data = inner.get("data") if isinstance(inner, dict) else None
    return {"event": schema_event_name(schema), "properties": data if isinstance(data, dict) else {"value": data}}


def schema_event_name(schema: str) -> str:
    """`iglu:com.acme/add_to_basket/jsonschema/1-0-0` → `com.acme/add_to_basket` (one name across versions).

    Raises:
        InvalidEventError: not an Iglu URI.
    """
    parts = schema.removeprefix("iglu:").split("/")
    if not schema.startswith("iglu:") or len(parts) != 4 or not parts[0] or not parts[1]:
        raise InvalidEventError("schema must be an Iglu URI: iglu:vendor/name/jsonschema/1-0-0")
    return f"{parts[0]}/{parts[1]}"


def _json_field(fields: Mapping[str, Any], *, plain: str, encoded: str) -> Any:
    text = _text(fields, plain)
    if text is None and (packed := _text(fields, encoded)) is not None:
        try:
            text = base64.b64decode(packed + "=" * (-len(packed) % 4), altchars=b"-_", validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise InvalidEventError(f"{encoded} is not base64url-encoded UTF-8 JSON") from None
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        raise InvalidEventError(f"{plain}/{encoded} is not JSON") from None
