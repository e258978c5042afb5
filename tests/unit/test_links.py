"""Signed click links: only a link Footfall signed, untampered and unexpired, may redirect."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest

from shared.domain import links
from shared.domain.errors import AuthenticationError, InvalidEventError
from shared.domain.links import click_params, click_url, flatten, unique_query, verify_click
from shared.domain.sources import rotate_secret
from tests.builders import a_source

NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
TARGET = "https://shop.example/deals?utm_source=mail&q=a+b%20c#top"
SECRET = "ffs_link_secret"


def signed(**overrides: object) -> dict[str, str]:
    arguments: dict[str, object] = {
        "source_id": "mail",
        "target": TARGET,
        "secret": SECRET,
        "user_id": "u-1",
        "properties": {"campaign": {"name": "black-friday", "id": 42}},
        "context": {"locale": "fr-FR"},
        "expires_at": NOW + timedelta(days=7),
    }
    arguments.update(overrides)
    return click_params(**arguments)  # type: ignore[arg-type]


def refusal(params: dict[str, str], secrets: tuple[str, ...] = (SECRET,), now: datetime = NOW) -> str:
    with pytest.raises(AuthenticationError) as refused:
        verify_click(params, secrets, now=now)
    return str(refused.value)


def test_signed_link_verifies_and_gives_its_target():
    assert verify_click(signed(), [SECRET], now=NOW) == TARGET


def test_signed_link_survives_the_trip_through_a_url():
    # Given the full link as it is put in an e-mail
    url = click_url("https://collect.example/", signed())
    # When the collector reads its query string back
    params = unique_query(urlsplit(url).query)
    # Then
    assert url.startswith("https://collect.example/v1/r?")
    assert verify_click(params, [SECRET], now=NOW) == TARGET
    assert params["properties.campaign.name"] == "black-friday"


def test_link_carries_its_event_and_dot_notation_properties():
    params = signed(anonymous_id="a-1", event="Promo Clicked")
    assert {key: value for key, value in params.items() if key not in ("sig", "exp")} == {
        "src": "mail",
        "url": TARGET,
        "event": "Promo Clicked",
        "userId": "u-1",
        "anonymousId": "a-1",
        "properties.campaign.name": "black-friday",
        "properties.campaign.id": "42",
        "context.locale": "fr-FR",
    }


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("url", "https://evil.example/phish"),
        ("url", TARGET + "&extra=1"),
        ("src", "other-source"),
        ("userId", "someone-else"),
        ("anonymousId", "added"),
        ("properties.campaign.name", "cyber-monday"),
        ("properties.injected", "x"),
        ("exp", str(int((NOW + timedelta(days=3650)).timestamp()))),
        ("event", "Order Completed"),
    ],
)
def test_tampered_or_added_parameter_is_refused(key, value):
    params = {**signed(), key: value}
    assert refusal(params) == "link signature does not match"


@pytest.mark.parametrize("key", ["exp", "userId", "properties.campaign.id", "url"])
def test_removed_parameter_is_refused(key):
    params = signed()
    del params[key]
    assert refusal(params) == "link signature does not match"


@pytest.mark.parametrize("signature", [{}, {"sig": ""}], ids=["no-sig", "empty-sig"])
def test_unsigned_link_is_refused(signature):
    params = {key: value for key, value in signed().items() if key != "sig"} | signature
    assert refusal(params) == "link is not signed"


@pytest.mark.parametrize("signature", ["é", "signé", "\u2603" * 43])
def test_non_ascii_signature_is_refused_as_not_matching(signature):
    assert refusal({**signed(), "sig": signature}) == "link signature does not match"


def test_link_signed_with_another_secret_is_refused():
    assert refusal(signed(secret="ffs_someone_else")) == "link signature does not match"


@pytest.mark.parametrize("now", [NOW - timedelta(days=6), NOW], ids=["before", "at-expiry-second"])
def test_link_works_until_its_expiry_second(now):
    assert verify_click(signed(expires_at=NOW), [SECRET], now=now) == TARGET


def test_link_is_refused_one_second_after_its_expiry():
    assert refusal(signed(expires_at=NOW), now=NOW + timedelta(seconds=1)) == "link has expired"


@pytest.mark.parametrize("expiry", ["²", "soon", "-1", "1e12"])
def test_link_whose_signed_expiry_is_not_unix_seconds_is_refused_as_expired(expiry):
    # Given a correctly signed link whose exp is not a number (click_params never makes one; signed by hand here)
    params = {key: value for key, value in signed().items() if key != "sig"} | {"exp": expiry}
    params["sig"] = links._signature(params, SECRET)
    # When / Then
    assert refusal(params) == "link has expired"


def test_link_without_expiry_never_expires():
    params = signed(expires_at=None)
    assert "exp" not in params
    assert verify_click(params, [SECRET], now=NOW + timedelta(days=10_000)) == TARGET


def test_link_signed_with_the_previous_secret_keeps_working_for_one_rotation():
    # Given a link signed with the source's current secret
    source, _ = a_source("mail")
    old_link = signed(secret=source.link_secrets[0])
    # When the secret is rotated once, then twice
    rotated = rotate_secret(source, "link", "ffs_second")
    rotated_twice = rotate_secret(rotated, "link", "ffs_third")
    # Then the old link verifies after one rotation, new links use the new secret, and two rotations retire it
    assert verify_click(old_link, rotated.link_secrets, now=NOW) == TARGET
    assert verify_click(signed(secret=rotated.link_secrets[0]), rotated.link_secrets, now=NOW) == TARGET
    assert rotated.link_secrets[0] == "ffs_second"
    assert refusal(old_link, rotated_twice.link_secrets) == "link signature does not match"


HOSTILE_TARGETS = [
    "javascript:alert(document.cookie)",
    "JavaScript:alert(1)",
    "//evil.example/phish",
    "ftp://files.example/x",
    "data:text/html,<script>alert(1)</script>",
    "/relative/path",
    "relative/path",
    "https:///no-host",
    "https://shop.example/\r\nSet-Cookie: a=b",
    "https://shop.example/\x00",
    "",
]
DECEPTIVE_TARGETS = [
    "https:\\\\evil.example/",  # browsers read a backslash as a slash
    "https://shop.example\\@evil.example/",
    "https://shop.example@evil.example/",  # user info: the host is evil.example
    "https://user:pass@shop.example/",
    "https://shop.example/\u2028next",
    "https://\uff45\uff56\uff49\uff4c.example/",  # fullwidth "evil"
    "https://\u0430pple.com/",  # Cyrillic a
    "https://shop.example:99999/",
    "https://shop.example:80x/",
    "https://shop%2eexample/",
    "https://shop_example.com/",
    "https:/evil.example/",
    "http:evil.example",
    "wss://shop.example/",
]


@pytest.mark.parametrize("target", HOSTILE_TARGETS)
def test_non_http_target_cannot_be_signed(target):
    with pytest.raises(InvalidEventError) as refused:
        signed(target=target)
    assert (refused.value.reason, refused.value.field) == (links.TARGET_REFUSED, "url")


@pytest.mark.parametrize("target", HOSTILE_TARGETS)
def test_non_http_target_is_refused_even_with_a_valid_signature(target, monkeypatch):
    # Given a link to a hostile target signed with the source's secret (e.g. by an older, laxer version)
    monkeypatch.setattr(links, "validate_target", lambda target: target)
    params = signed(target=target)
    monkeypatch.undo()
    # When / Then
    with pytest.raises(InvalidEventError) as refused:
        verify_click(params, [SECRET], now=NOW)
    assert refused.value.reason == links.TARGET_REFUSED


@pytest.mark.parametrize("target", DECEPTIVE_TARGETS)
def test_a_deceptive_target_is_refused_even_with_a_valid_signature(target, monkeypatch):
    # Given a link to a look-alike or smuggled host, signed with the source's secret
    monkeypatch.setattr(links, "validate_target", lambda target: target)
    params = signed(target=target)
    monkeypatch.undo()
    # When / Then: neither signed now nor redirected
    with pytest.raises(InvalidEventError):
        signed(target=target)
    with pytest.raises(InvalidEventError) as refused:
        verify_click(params, [SECRET], now=NOW)
    assert refused.value.reason == links.TARGET_REFUSED


@pytest.mark.parametrize(
    ("properties", "reason"),
    [
        ({"": "x"}, "parameter name 'properties.' is not valid dot-notation"),
        ({"plan.": "pro"}, "parameter name 'properties.plan.' is not valid dot-notation"),
        ({"a..b": 1}, "parameter name 'properties.a..b' is not valid dot-notation"),
        ({"campaign": "bf", "campaign.name": "x"}, "parameter 'properties.campaign.name' conflicts with 'campaign'"),
    ],
)
def test_link_whose_properties_the_redirect_could_not_read_back_is_not_signed(properties, reason):
    with pytest.raises(InvalidEventError) as refused:
        signed(properties=properties)
    assert refused.value.reason == reason


def test_dotted_property_keys_are_signed_as_nesting():
    params = signed(properties={"utm.source": "newsletter"})
    assert params["properties.utm.source"] == "newsletter"
    assert verify_click(params, [SECRET], now=NOW) == TARGET


@pytest.mark.parametrize(
    "target",
    [
        "http://shop.example",
        "HTTPS://Shop.Example/a?b=c",
        "https://[2001:db8::1]:8443/",
        "https://xn--80ak6aa92e.com/",
        "https://shop.example./a%20b?q=%E2%9C%93#top",
        "http://127.0.0.1:8080/",
    ],
)
def test_absolute_http_targets_can_be_signed(target):
    assert verify_click(signed(target=target), [SECRET], now=NOW) == target


@pytest.mark.parametrize(
    "query",
    ["url=https%3A%2F%2Fa.example&url=https%3A%2F%2Fb.example", "sig=a&sig=b", "a=1&b=2&a=1", "x&x"],
)
def test_query_with_a_repeated_key_is_refused(query):
    with pytest.raises(InvalidEventError, match=r"query parameter '.+' is repeated"):
        unique_query(query)


def test_query_is_parsed_with_blank_values_and_percent_decoding():
    assert unique_query("a=&b=1&c=x%20y+z&d=%F0%9F%8E%89") == {"a": "", "b": "1", "c": "x y z", "d": "🎉"}


def test_over_long_query_is_refused():
    with pytest.raises(InvalidEventError) as refused:
        unique_query("a=" + "x" * 8191)
    assert refused.value.reason == "query string is longer than 8192 characters"


def test_nested_values_are_flattened_to_dot_notation_strings():
    flat = flatten({"campaign": {"name": "bf", "meta": {"wave": 2}}, "vip": True}, "properties")
    assert flat == {"properties.campaign.name": "bf", "properties.campaign.meta.wave": "2", "properties.vip": "True"}
