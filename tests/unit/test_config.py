"""Settings from the environment: defaults, parsing, and every problem reported at once."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.config import Settings
from shared.domain.errors import ConfigurationError


def test_only_the_table_name_is_required_and_everything_else_has_a_default():
    settings = Settings.from_env({"FOOTFALL_TABLE_NAME": "footfall"})
    assert settings == Settings(
        table_name="footfall",
        dynamodb_endpoint=None,
        event_retention_days=400,
        failed_retention_days=30,
        source_cache_seconds=30.0,
        cors_origins=("*",),
    )
    assert (settings.event_retention, settings.failed_retention) == (timedelta(days=400), timedelta(days=30))


def test_every_setting_is_read_from_its_variable():
    # Given
    env = {
        "FOOTFALL_TABLE_NAME": "  footfall-prod  ",
        "FOOTFALL_DYNAMODB_ENDPOINT": "http://127.0.0.1:8000",
        "FOOTFALL_EVENT_RETENTION_DAYS": "30",
        "FOOTFALL_FAILED_RETENTION_DAYS": "7",
        "FOOTFALL_SOURCE_CACHE_SECONDS": "2.5",
        "FOOTFALL_CORS_ORIGINS": " https://shop.example , https://admin.example,",
    }
    # When
    settings = Settings.from_env(env)
    # Then
    assert settings == Settings(
        table_name="footfall-prod",
        dynamodb_endpoint="http://127.0.0.1:8000",
        event_retention_days=30,
        failed_retention_days=7,
        source_cache_seconds=2.5,
        cors_origins=("https://shop.example", "https://admin.example"),
    )


@pytest.mark.parametrize(
    "name",
    ["FOOTFALL_EVENT_RETENTION_DAYS", "FOOTFALL_FAILED_RETENTION_DAYS", "FOOTFALL_SOURCE_CACHE_SECONDS"],
)
def test_empty_number_variable_means_its_default(name):
    assert Settings.from_env({"FOOTFALL_TABLE_NAME": "t", name: ""}) == Settings(table_name="t")


@pytest.mark.parametrize("origins", ["", " , ,"])
def test_no_cors_origin_means_any_origin(origins):
    assert Settings.from_env({"FOOTFALL_TABLE_NAME": "t", "FOOTFALL_CORS_ORIGINS": origins}).cors_origins == ("*",)


def test_empty_endpoint_means_aws():
    settings = Settings.from_env({"FOOTFALL_TABLE_NAME": "t", "FOOTFALL_DYNAMODB_ENDPOINT": ""})
    assert settings.dynamodb_endpoint is None


def test_every_problem_is_reported_in_one_error():
    # Given an environment with four problems
    env = {
        "FOOTFALL_TABLE_NAME": "   ",
        "FOOTFALL_EVENT_RETENTION_DAYS": "a year",
        "FOOTFALL_FAILED_RETENTION_DAYS": "0",
        "FOOTFALL_SOURCE_CACHE_SECONDS": "-1",
    }
    # When
    with pytest.raises(ConfigurationError) as refused:
        Settings.from_env(env)
    # Then
    assert str(refused.value) == (
        "invalid settings: FOOTFALL_TABLE_NAME is required; "
        "FOOTFALL_EVENT_RETENTION_DAYS must be a number, not 'a year'; "
        "FOOTFALL_FAILED_RETENTION_DAYS must be at least 1; "
        "FOOTFALL_SOURCE_CACHE_SECONDS must be at least 0.0"
    )


@pytest.mark.parametrize("days", ["30", "3650"])
def test_event_retention_of_at_least_30_days_is_accepted(days):
    env = {"FOOTFALL_TABLE_NAME": "t", "FOOTFALL_EVENT_RETENTION_DAYS": days}
    assert Settings.from_env(env).event_retention == timedelta(days=int(days))


@pytest.mark.parametrize("days", ["29", "0", "-400"])
def test_event_retention_below_the_30_day_deduplication_window_is_refused(days):
    env = {"FOOTFALL_TABLE_NAME": "t", "FOOTFALL_EVENT_RETENTION_DAYS": days}
    with pytest.raises(ConfigurationError) as refused:
        Settings.from_env(env)
    assert str(refused.value) == "invalid settings: FOOTFALL_EVENT_RETENTION_DAYS must be at least 30"


@pytest.mark.parametrize("days", ["30.5", "thirty", "1e3"])
def test_retention_days_must_be_a_whole_number(days):
    env = {"FOOTFALL_TABLE_NAME": "t", "FOOTFALL_EVENT_RETENTION_DAYS": days}
    with pytest.raises(ConfigurationError) as refused:
        Settings.from_env(env)
    assert str(refused.value) == f"invalid settings: FOOTFALL_EVENT_RETENTION_DAYS must be a number, not {days!r}"


def test_settings_are_read_from_the_process_environment_by_default(monkeypatch):
    monkeypatch.setenv("FOOTFALL_TABLE_NAME", "from-os-environ")
    monkeypatch.setenv("FOOTFALL_FAILED_RETENTION_DAYS", "14")
    settings = Settings.from_env()
    assert (settings.table_name, settings.failed_retention_days) == ("from-os-environ", 14)
