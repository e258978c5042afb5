"""SDK settings answers, write-key redaction, and hints for unknown routes (pure)."""

from __future__ import annotations

import pytest

from shared.domain.trackers import (
    ABBREVIATED_CALLS,
    route_hint,
    rudder_source_config,
    segment_settings,
)

COLLECTOR = "https://collect.shop.example"


def test_abbreviations_are_analytics_js_paths():
    assert ABBREVIATED_CALLS == {
        "t": "track",
        "i": "identify",
        "p": "page",
        "s": "screen",
        "g": "group",
        "a": "alias",
        "b": "batch",
    }


def test_segment_settings_send_only_to_this_collector():
    settings = segment_settings("ffk_abc", api_host="collect.shop.example/v1", protocol="https")
    assert list(settings["integrations"]) == ["Segment.io"]  # one integration: no legacy destinations to load
    segment = settings["integrations"]["Segment.io"]
    assert (segment["apiKey"], segment["apiHost"], segment["protocol"]) == (
        "ffk_abc",
        "collect.shop.example/v1",
        "https",
    )
    assert settings["remotePlugins"] == [] and settings["enabledMiddleware"] == {}
    assert settings["metrics"]["sampleRate"] == 0  # no metrics to Segment's API


def test_rudder_source_config_has_no_destinations():
    config = rudder_source_config("web", "Website")
    assert config["source"]["destinations"] == [] and config["source"]["enabled"] is True
    assert config["source"]["id"] == "web" and isinstance(config["source"]["config"], dict)


@pytest.mark.parametrize(
    ("path", "hint"),
    [
        ("/track", "did you mean POST /v1/track? set apiHost to collect.shop.example/v1"),
        ("/v2/t", "did you mean POST /v1/track?"),
        ("/v1/v1/b", "did you mean POST /v1/batch?"),
        ("/api/sourceConfig/", "set configUrl to https://collect.shop.example"),
        ("/analytics/v1/projects/{writeKey}/settings", "set cdnURL to https://collect.shop.example"),
        ("/collector/com.snowplowanalytics.snowplow/tp2", "collector URL to https://collect.shop.example/snowplow/"),
        ("/wp-login.php", "known routes: POST /v1/{track"),
    ],
)
def test_route_hints_name_the_setting(path, hint):
    assert hint in route_hint("POST", path, COLLECTOR)
