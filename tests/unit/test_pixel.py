"""Events carried in a URL: the pixel's `data=` base64 JSON, dot-notation parameters, and the GIF itself."""

from __future__ import annotations

import base64
import json

import pytest

from shared.domain.errors import InvalidEventError
from shared.domain.pixel import TRANSPARENT_GIF, pixel_payload, strict_json, unflatten

# Its base64 holds both "+" and "/" and ends with "==" padding: every alphabet quirk shows.
EVENT = {"event": "Email Opened", "userId": "u-0", "properties": {"subject": "Soldes ¿ été ? ~~>"}}
STANDARD = base64.b64encode(json.dumps(EVENT, ensure_ascii=False).encode()).decode()
assert "+" in STANDARD and "/" in STANDARD and STANDARD.endswith("=="), "the example must show every quirk"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(STANDARD, id="standard"),
        pytest.param(STANDARD.replace("+", "-").replace("/", "_"), id="urlsafe"),
        pytest.param(STANDARD.rstrip("="), id="standard-unpadded"),
        pytest.param(STANDARD.replace("+", "-").replace("/", "_").rstrip("="), id="urlsafe-unpadded"),
        pytest.param(STANDARD.replace("+", " "), id="plus-turned-into-space-by-the-url"),
        pytest.param(f"  {STANDARD}\n", id="surrounding-whitespace"),
    ],
)
def test_pixel_data_is_read_in_any_base64_form_a_url_delivers(data):
    assert pixel_payload({"data": data}) == EVENT


def test_pixel_data_wins_over_dot_notation_parameters():
    payload = pixel_payload({"data": STANDARD, "event": "Other", "properties.subject": "ignored"})
    assert payload == EVENT


@pytest.mark.parametrize("data", ["!!!!", "a", "abc$def", "eyJ*In0="])
def test_pixel_data_that_is_not_base64_is_refused(data):
    with pytest.raises(InvalidEventError) as refused:
        pixel_payload({"data": data})
    assert (refused.value.reason, refused.value.field) == ("data is not valid base64", "data")


@pytest.mark.parametrize("value", ["[1, 2]", '"Email Opened"', "42", "null", "true"])
def test_pixel_data_must_encode_a_json_object(value):
    with pytest.raises(InvalidEventError) as refused:
        pixel_payload({"data": base64.b64encode(value.encode()).decode()})
    assert (refused.value.reason, refused.value.field) == ("data must encode a JSON object", "data")


@pytest.mark.parametrize("text", ["{not json", "\xff\xfe{}", '{"a": 1} trailing'])
def test_pixel_data_that_is_not_json_is_refused(text):
    with pytest.raises(InvalidEventError) as refused:
        pixel_payload({"data": base64.b64encode(text.encode("latin-1")).decode()})
    assert refused.value.reason == "body is not valid JSON"


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_refused_because_they_are_not_json(constant):
    text = '{"event": "x", "properties": {"v": ' + constant + "}}"
    with pytest.raises(InvalidEventError) as refused:
        pixel_payload({"data": base64.b64encode(text.encode()).decode()})
    assert refused.value.reason == f"body is not valid JSON: {constant} is not a JSON value"


def test_json_nested_deeper_than_the_stack_is_refused_not_crashing():
    with pytest.raises(InvalidEventError) as refused:
        strict_json("[" * 100_000 + "]" * 100_000)
    assert refused.value.reason == "body is not valid JSON"


def test_dot_notation_parameters_become_a_nested_event_without_control_parameters():
    # Given
    params = {
        "event": "Email Opened",
        "userId": "u-1",
        "properties.campaign.name": "black-friday",
        "properties.campaign.id": "42",
        "properties.plan": "pro",
        "context.locale": "fr-FR",
        "writeKey": "ffk_secret",
        "sig": "abc",
        "url": "https://shop.example",
        "src": "mail",
        "exp": "1",
    }
    # When
    payload = pixel_payload(params)
    # Then
    assert payload == {
        "event": "Email Opened",
        "userId": "u-1",
        "properties": {"campaign": {"name": "black-friday", "id": "42"}, "plan": "pro"},
        "context": {"locale": "fr-FR"},
    }


@pytest.mark.parametrize(
    "params",
    [
        {"properties": "x", "properties.plan": "pro"},
        {"properties.plan": "pro", "properties": "x"},
    ],
    ids=["value-first", "nested-first"],
)
def test_a_name_used_both_as_value_and_as_object_is_refused_whatever_the_order(params):
    with pytest.raises(InvalidEventError) as refused:
        unflatten(params)
    assert refused.value.reason == "parameter 'properties.plan' conflicts with 'properties'"


def test_a_deep_conflict_is_refused():
    with pytest.raises(InvalidEventError) as refused:
        unflatten({"properties.campaign": "bf", "properties.campaign.name.first": "x"})
    assert refused.value.reason == "parameter 'properties.campaign.name.first' conflicts with 'campaign'"


@pytest.mark.parametrize("name", [".plan", "properties.", "properties..plan", ""])
def test_malformed_dot_notation_is_refused(name):
    with pytest.raises(InvalidEventError) as refused:
        unflatten({name: "x"})
    assert refused.value.reason == f"parameter name {name!r} is not valid dot-notation"


def test_pixel_without_parameters_describes_an_empty_event():
    assert pixel_payload({}) == {}


def test_transparent_gif_is_the_43_byte_gif89a():
    assert len(TRANSPARENT_GIF) == 43
    assert TRANSPARENT_GIF.startswith(b"GIF89a")
    assert TRANSPARENT_GIF[6:10] == b"\x01\x00\x01\x00"  # 1 x 1 pixel
    assert TRANSPARENT_GIF.endswith(b";")  # GIF trailer
