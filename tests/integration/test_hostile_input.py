"""Hostile and random input through the collect Lambda (moto): never a 5xx, never an open redirect, nothing lost.

Property-based (hypothesis). Function-scoped fixtures are shared by all examples of one test, so the store
accumulates across examples: every check below looks only at what one example stored.
"""

from __future__ import annotations

import base64
import gzip
import json
import time
import zlib
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.domain.errors import InvalidEventError
from shared.domain.events import MONEY_KEYS, CallType
from shared.domain.links import click_params
from shared.domain.pixel import TRANSPARENT_GIF
from shared.domain.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_webhook
from tests.builders import a_track

pytestmark = pytest.mark.integration


def fuzz(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# --- strategies ---------------------------------------------------------------------------------------------------

LONE_SURROGATES = st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff"])
texts = st.text(st.characters() | LONE_SURROGATES, max_size=20)
json_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts
)
json_values = st.recursive(
    json_leaves,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=15,
)
json_objects = st.dictionaries(texts, json_values, max_size=5)
CALL_TYPES = [t.value for t in CallType]

# Bodies that look like Segment calls, with every field possibly of the wrong type: they get deep into validation.
segment_like = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(CALL_TYPES) | json_values,
        "userId": texts | st.integers() | json_values,
        "anonymousId": texts | json_values,
        "messageId": texts | json_values,
        "event": texts | json_values,
        "name": texts,
        "groupId": texts | st.integers(),
        "previousId": texts,
        "timestamp": st.datetimes().map(lambda d: d.isoformat()) | texts | json_values,
        "sentAt": st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()) | texts,
        "properties": json_objects | json_values,
        "traits": json_objects | json_values,
        "context": json_objects | json_values,
        "integrations": json_objects | json_values,
        "batch": st.lists(json_values | json_objects, max_size=5),
        "writeKey": texts,
    },
)


def _nested(depth: int, kind: str) -> bytes:
    if kind == "array":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


# Nearly valid SDK calls: a real track call with a few fields replaced by anything at all.
near_valid = st.builds(lambda overrides: {**a_track(), **overrides}, segment_like)
bodies = st.one_of(
    st.binary(max_size=2000),
    json_values.map(lambda v: json.dumps(v).encode()),
    segment_like.map(lambda v: json.dumps(v, ensure_ascii=False).encode("utf-8", "surrogatepass")),
    near_valid.map(lambda v: json.dumps(v).encode()),
    near_valid.map(lambda v: json.dumps({"batch": [v, a_track()], "context": {"ip": "198.51.100.7"}}).encode()),
    st.builds(_nested, st.integers(min_value=1, max_value=5000), st.sampled_from(["array", "object"])),
    st.builds(
        lambda head, junk: head + junk, segment_like.map(lambda v: json.dumps(v).encode()), st.binary(max_size=8)
    ),
    st.binary(min_size=1, max_size=200).map(lambda b: b"\xff" + b),  # never valid UTF-8
    st.just(b""),
)
header_texts = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=30)
encodings = st.sampled_from([None, None, None, "gzip", "deflate", "identity", " GZIP ", "br", "x-gzip", "", "gzip, br"])
any_encoding = st.integers(0, 9).flatmap(lambda n: header_texts if n == 0 else encodings)
content_types = (
    st.sampled_from(
        [
            None,
            "application/json",
            "text/plain;charset=UTF-8",
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ]
    )
    | header_texts
)


def _compress(data: bytes, encoding: str | None) -> bytes:
    kind = (encoding or "").strip().lower()
    return gzip.compress(data) if kind == "gzip" else zlib.compress(data) if kind == "deflate" else data


def assert_json_answer_below_500(answer: Any) -> None:
    assert answer.status < 500, (answer.status, answer.body[:300])
    assert answer.json is not None, answer.body[:300]
    assert answer.json["success"] is (answer.status == 200), answer.json


# --- (a) random bodies to every POST route ------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["/v1/track", "/v1/batch", "/v1/identify"])
@fuzz(max_examples=70)
@given(
    body=bodies,
    encoding=any_encoding,
    compress=st.booleans(),
    content_type=content_types,
    authenticated=st.integers(0, 4).map(bool),
)
def test_any_body_to_a_segment_route_gets_a_json_answer_below_500(
    http, source, route, body, encoding, compress, content_type, authenticated
):
    # Given
    _, write_key = source
    headers = {}
    if encoding is not None:
        headers["Content-Encoding"] = encoding
    if content_type is not None:
        headers["Content-Type"] = content_type
    data = _compress(body, encoding) if compress else body
    # When
    answer = http("POST", route, body=data, headers=headers, write_key=write_key if authenticated else None)
    # Then
    assert_json_answer_below_500(answer)


forged_signatures = st.fixed_dictionaries(
    {
        TIMESTAMP_HEADER: header_texts | st.builds(lambda: str(int(time.time()))),
        SIGNATURE_HEADER: header_texts | header_texts.map(lambda text: "v1=" + text),
    }
)


@fuzz(max_examples=80)
@given(
    body=bodies,
    encoding=encodings,
    compress=st.booleans(),
    signing=st.sampled_from(["valid", "valid", "stale", "none", "forged"]),
    forged=forged_signatures,
)
def test_any_body_to_the_webhook_route_gets_a_json_answer_below_500_and_only_signed_ones_are_taken(
    http, source, body, encoding, compress, signing, forged
):
    # Given a webhook signed (over the decoded body, as a sender does) with the source's secret, or not
    created, _ = source
    headers = {} if encoding is None else {"Content-Encoding": encoding}
    stamp = int(time.time()) - (3600 if signing == "stale" else 0)
    if signing in ("valid", "stale"):
        headers |= {
            TIMESTAMP_HEADER: str(stamp),
            SIGNATURE_HEADER: sign_webhook(body, created.webhook_secrets[0], stamp),
        }
    elif signing == "forged":
        headers |= forged
    # When
    answer = http("POST", "/v1/webhooks/web", body=_compress(body, encoding) if compress else body, headers=headers)
    # Then
    assert_json_answer_below_500(answer)
    if signing != "valid":
        assert answer.status in (400, 401, 413)


# --- (b) random query strings to the pixel and the click redirect -------------------------------------------------

PARAM_NAMES = [
    "data",
    "writeKey",
    "userId",
    "anonymousId",
    "event",
    "name",
    "messageId",
    "timestamp",
    "type",
    "properties",
    "properties.plan",
    "properties.plan.tier",
    "context.ip",
    "traits.email",
    "src",
    "url",
    "sig",
    "exp",
    ".",
    "a..b",
    "a.",
    "",
]


def _b64_json(value: Any, urlsafe: bool) -> str:
    data = json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
    encoded = base64.urlsafe_b64encode(data) if urlsafe else base64.b64encode(data)
    return encoded.decode().rstrip("=")


def query_strings(write_key: str, **usual: str) -> st.SearchStrategy[str]:
    """Random query strings; most carry the `usual` parameters (a real write key, a real source) to get further."""
    values = (
        texts
        | st.just(write_key)
        | st.just("web")
        | st.builds(_b64_json, json_values | segment_like | near_valid, st.booleans())
        | st.sampled_from(["https://shop.example/", "javascript:alert(1)", "//evil.example", "9999999999", "-1"])
    )
    names = st.sampled_from(PARAM_NAMES) | st.text(max_size=10)
    unique = st.tuples(st.integers(0, 3).map(bool), st.dictionaries(names, values, max_size=8)).map(
        lambda drawn: list(({**drawn[1], **usual} if drawn[0] else drawn[1]).items())
    )
    repeated = st.lists(st.tuples(names, values), max_size=8)
    structured = (unique | repeated).map(
        lambda pairs: urlencode([(k, v.encode("utf-8", "surrogatepass")) for k, v in pairs])
    )
    return st.one_of(structured, structured, st.text(max_size=200), st.text("&=%+.a0_-", max_size=60))


@fuzz(max_examples=150)
@given(data=st.data(), call=st.sampled_from(["track", "track", "page", "identify"]))
def test_pixel_always_answers_its_gif(http, source, data, call):
    # Given
    _, write_key = source
    query = data.draw(query_strings(write_key, writeKey=write_key), label="query")
    # When
    answer = http("GET", f"/v1/pixel/{call}", query=query)
    # Then
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "image/gif"
    assert answer.body == TRANSPARENT_GIF
    assert len(answer.body) == 43
    assert "no-store" in answer.headers["Cache-Control"]


@fuzz(max_examples=150)
@given(data=st.data())
def test_unsigned_or_forged_link_never_redirects(http, source, data):
    # Given a random query, possibly naming the real source and carrying a made-up signature
    _, write_key = source
    query = data.draw(query_strings(write_key, src="web"), label="query")
    # When
    answer = http("GET", "/v1/r", query=query)
    # Then
    assert answer.status != 302
    assert "Location" not in answer.headers
    assert_json_answer_below_500(answer)


hosts = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z]{2,6}){1,2}", fullmatch=True)
# Targets Footfall signs are printable ASCII (non-ASCII is percent-encoded first): see links.validate_target.
paths = st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="#\\"), max_size=30)
targets = st.builds(
    lambda scheme, host, path: f"{scheme}://{host}/{path}", st.sampled_from(["http", "https"]), hosts, paths
)
link_properties = st.dictionaries(
    st.text(max_size=10),
    st.text(max_size=20) | st.integers() | st.booleans() | st.dictionaries(st.text(max_size=5), st.text(max_size=10)),
    max_size=4,
)


@fuzz(max_examples=100)
@given(target=targets, user_id=st.text(min_size=1, max_size=40), properties=link_properties, tamper=st.data())
def test_every_link_footfall_signs_redirects_to_its_target_and_any_tampering_stops_it(
    http, source, target, user_id, properties, tamper
):
    # Given a link the source signed (Footfall refuses up front to sign one the redirect could not read back)
    created, _ = source
    try:
        params = click_params(
            source_id="web", target=target, secret=created.link_secrets[0], user_id=user_id, properties=properties
        )
    except InvalidEventError as refused:
        assert "dot-notation" in refused.reason or "conflicts" in refused.reason
        return
    # When it is followed as signed
    answer = http("GET", "/v1/r", query=urlencode(params))
    # Then it redirects to its target
    assert (answer.status, answer.headers.get("Location")) == (302, target)
    # When one parameter is changed or added
    key = tamper.draw(st.sampled_from([*sorted(k for k in params if k not in ("sig", "src")), "properties.extra"]))
    value = tamper.draw(st.text(max_size=20).filter(lambda v: v != params.get(key)), label="value")
    tampered = http("GET", "/v1/r", query=urlencode({**params, key: value}))
    # Then it does not redirect
    assert tampered.status == 400
    assert "Location" not in tampered.headers


# --- (c) valid events mixed with junk in one batch ----------------------------------------------------------------

not_objects = json_values.filter(lambda v: not isinstance(v, dict))
without_identity = st.dictionaries(texts.filter(lambda k: k not in ("userId", "anonymousId")), json_values, max_size=5)
wrong_values = {
    "event": st.sampled_from(["", "   ", 5, [], {}, True]) | st.text(min_size=257, max_size=300),
    "userId": st.booleans()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.lists(json_leaves, max_size=2)
    | st.just("")
    | st.just({}),
    "properties": texts
    | st.integers()
    | st.lists(json_leaves, max_size=2)
    | st.booleans()
    # out of the documented ranges (#13): money past ±1e15, numbers past 1e38, nesting past 32 levels
    | st.sampled_from(
        [{"revenue": "1e999999"}, {"total": -2e15}, {"n": 1e300}, {"a": json.loads(_nested(40, "object"))}]
    ),
    "context": texts | st.integers() | st.lists(json_leaves, max_size=2),
    "timestamp": st.sampled_from(["yesterday", "2026-13-45T00:00:00Z", "0001-01-01T00:00:00+01:00", 1764417600, True]),
    "sentAt": st.sampled_from(["soon", "29/11/2026", 0]),
    "type": texts.filter(lambda t: t not in CALL_TYPES) | st.integers(),
    "messageId": st.sampled_from(["  ", 7, [], {"id": 1}, False]) | st.text(min_size=257, max_size=300),  # "" = none
}
broken_tracks = st.sampled_from(sorted(wrong_values)).flatmap(
    lambda key: wrong_values[key].map(lambda value: a_track(**{key: value}))
)
missing_required = st.sampled_from(
    [
        {"type": "track", "userId": "u-1"},
        {"type": "group", "userId": "u-1"},
        {"type": "alias", "userId": "u-1"},
        {"type": "alias", "anonymousId": "a-1", "previousId": "p-1"},
        {"type": "page", "name": "Home"},
    ]
)
junk_items = st.one_of(not_objects, without_identity, broken_tracks, missing_required)
# Valid values stay within the documented limits (numbers |x| < 1e38; money keys are left out: they have their own).
storable_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats(-1e37, 1e37) | texts,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=15,
)
valid_items = st.builds(
    lambda properties: a_track(properties=properties),
    st.dictionaries(texts.filter(lambda k: k not in MONEY_KEYS), storable_values, max_size=4),
)


@fuzz(max_examples=60)
@given(
    items=st.lists(
        st.one_of(valid_items.map(lambda v: (True, v)), junk_items.map(lambda j: (False, j))), min_size=1, max_size=8
    )
)
def test_every_valid_event_of_a_mixed_batch_is_stored_and_every_junk_item_is_answered_and_recorded(
    http, source, store, items
):
    # Given a batch mixing valid SDK events and junk, in random order
    _, write_key = source
    batch = [item for _, item in items]
    junk = [item for is_valid, item in items if not is_valid]
    started = datetime.now(UTC)
    started = started.replace(microsecond=started.microsecond // 1000 * 1000)  # failed records keep milliseconds
    # When
    answer = http("POST", "/v1/batch", body=json.dumps({"batch": batch}), write_key=write_key)
    # Then every valid event is answered accepted and stored as sent, every junk item answered rejected
    assert answer.status == (400 if len(junk) == len(batch) else 200), answer.json
    results = answer.json["results"]
    assert [r["index"] for r in results] == list(range(len(batch)))
    for (is_valid, item), result in zip(items, results, strict=True):
        if is_valid:
            assert (result["status"], result["messageId"]) == ("accepted", item["messageId"])
            (stored,) = store.list_identity_events("u", item["userId"])
            assert (stored.message_id, stored.properties) == (item["messageId"], item["properties"])
        else:
            assert result["status"] == "rejected"
            assert isinstance(result["reason"], str) and result["reason"]
    # And every junk item, and nothing else, is in the failed-event store with the reason it was answered
    recorded = [f for f in store.list_failed(limit=len(junk) + 1).items if f.received_at >= started]
    assert sorted(_canonical(json.loads(f.raw.decode("utf-8", "surrogatepass"))) for f in recorded) == sorted(
        _canonical(item) for item in junk
    )
    assert sorted(f.reason for f in recorded) == sorted(r["reason"] for r in results if r["status"] == "rejected")
    assert {(f.route, f.status, f.source_id) for f in recorded} <= {("/v1/batch", 400, "web")}


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=True)
