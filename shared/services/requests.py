"""What a request to each collector route carries, decoded in one place.

The collector's routes decode a request with these functions once they know its source (and have checked its
signature, for a click or a webhook); failed-event replay decodes the input a record kept with the same ones,
chosen by the record's route (`decode_failed`). So a replayed request is stored as its route would have stored it:
a mapped webhook's body goes through the mapping, a batch is split, a pixel's query is read as a pixel's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.domain import links, snowplow, webhooks
from shared.domain.errors import InvalidEventError
from shared.domain.events import BatchEnvelope, CallType, batch_items, parse_envelope
from shared.domain.failures import FailedEvent
from shared.domain.pixel import pixel_payload, strict_json
from shared.domain.sources import Source
from shared.domain.trackers import ABBREVIATED_CALLS

SEGMENT_PREFIX = "/v1/"
PIXEL_PREFIX = "/v1/pixel/"
WEBHOOK_PREFIX = "/v1/webhooks/"
CLICK_ROUTE = "/v1/r"
BEACON_ROUTE = "/beacon/v1/batch"
SNOWPLOW_PIXEL_ROUTES = ("/snowplow/{writeKey}/i", "/i")
SNOWPLOW_POST_ROUTE = "/snowplow/{writeKey}/com.snowplowanalytics.snowplow/tp2"


@dataclass(frozen=True, slots=True)
class Calls:
    """The raw calls of one request, as `Collector.ingest` takes them."""

    raws: list[Any]
    call_type: CallType | None = None
    """What every raw call is (the body of `/v1/track`), or None: each carries its own `type`."""
    envelope: BatchEnvelope | None = None
    """A batch's shared fields (`context`, `sentAt`…)."""


def segment_calls(call: str, body: Any) -> Calls:
    """`POST /v1/<call>` (`call` already resolved from analytics.js's abbreviations) and RudderStack's beacon
    (`batch`): one call, or a batch's items with its envelope."""
    if call == "batch":
        return Calls(batch_items(body), envelope=parse_envelope(body))
    return Calls([body], CallType(call))


def pixel_calls(call: str, raw_query: str) -> tuple[Calls, Any]:
    """`GET /v1/pixel/{track,page}`: the event a pixel's query describes, and the write key it carries (the
    query's `writeKey`, else the one inside `data`, which is taken out of the event)."""
    if call not in ("track", "page"):
        raise InvalidEventError(f"unknown pixel /v1/pixel/{call[:40]}: use track or page")
    params = links.unique_query(raw_query)
    payload = pixel_payload(params)
    key = params.get("writeKey") or payload.pop("writeKey", None)
    return Calls([payload], CallType(call)), key


def click_calls(params: Mapping[str, str], target: str) -> Calls:
    """`GET /v1/r`, its signature checked (`target`: where the link goes): the click as a track call."""
    payload = pixel_payload(params)
    payload.setdefault("event", links.DEFAULT_CLICK_EVENT)
    payload.setdefault("properties", {})
    if isinstance(payload["properties"], dict):
        payload["properties"].setdefault("url", target)
    return Calls([payload], CallType.TRACK)


def webhook_calls(source: Source, payload: Any, body: bytes, headers: Mapping[str, str]) -> Calls:
    """`POST /v1/webhooks/<source>`, its signature checked: the source's webhook mapping applied to the payload,
    or without a mapping the payload as one Segment call or a Segment batch (ids derived from what was signed)."""
    mapping = source.webhook_mapping
    if mapping is not None:
        return Calls(webhooks.map_webhook(payload, headers, mapping, source_id=source.id))
    batch = isinstance(payload, dict) and "batch" in payload
    raws = webhooks.with_derived_message_ids(batch_items(payload) if batch else [payload], body, headers)
    return Calls(raws, envelope=parse_envelope(payload) if batch else None)


def decode_failed(failure: FailedEvent, source: Source) -> Calls:
    """The calls a failed-event record's input makes, decoded by its route's decoder.

    A record holds either a whole request (refused, or failed on a bug) or one event the collector's validation
    refused; the latter is already a Segment call carrying its own type (for a webhook: already mapped, which is
    why it has a message id: a mapping always gives one, and a whole request is recorded without). Headers are not
    kept: a webhook mapping's `$headers.` paths find nothing, a Snowplow event has no user agent, and a click's
    signature is checked as of the moment it was received.

    Raises:
        TrackingError: the input is still invalid (or a click's signature does not match).
    """
    if failure.route.startswith(PIXEL_PREFIX) or failure.route in (CLICK_ROUTE, *SNOWPLOW_PIXEL_ROUTES):
        return _query_calls(failure, source)
    return _body_calls(failure, source, strict_json(failure.raw))


def _query_calls(failure: FailedEvent, source: Source) -> Calls:
    """A record of a GET route: its input is the query string."""
    route, text = failure.route, failure.raw.decode("utf-8", "replace")
    if route.startswith(PIXEL_PREFIX):
        return pixel_calls(route.removeprefix(PIXEL_PREFIX), text)[0]
    params = links.unique_query(text)
    if route == CLICK_ROUTE:
        return click_calls(params, links.verify_click(params, source.link_secrets, now=failure.received_at))
    return Calls([snowplow.segment_call(params)])


def _body_calls(failure: FailedEvent, source: Source, body: Any) -> Calls:
    """A record of a POST route: its input is the JSON body (or one event of it)."""
    route = failure.route
    if route.startswith(WEBHOOK_PREFIX):
        return Calls([body]) if failure.message_id is not None else webhook_calls(source, body, failure.raw, {})
    if route == SNOWPLOW_POST_ROUTE:
        whole = isinstance(body, dict) and "schema" in body  # a payload_data envelope; else one event's fields
        return Calls([snowplow.segment_call(fields) for fields in (snowplow.payload_events(body) if whole else [body])])
    name = route.removeprefix(SEGMENT_PREFIX)
    call = "batch" if route == BEACON_ROUTE else ABBREVIATED_CALLS.get(name, name)
    if call == "batch":
        # A whole batch, or one of its events recorded alone.
        return segment_calls(call, body) if isinstance(body, dict) and "batch" in body else Calls([body])
    if call in CallType.__members__.values():
        return segment_calls(call, body)
    return Calls([body])
