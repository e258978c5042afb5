"""The collect service on an in-memory store: outcomes, de-duplication, e-mail hashing, keys and refusals."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.domain.errors import AuthenticationError, ConfigurationError
from shared.domain.events import CallType
from shared.domain.results import Outcome
from shared.domain.sources import AUDIENCE_SOURCE, Source, hash_write_key
from shared.ports import StorageError, ThrottledError
from shared.services.collect import Collector
from tests.builders import a_source, a_track
from tests.fakes import InMemoryTrackingStore

NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def store() -> InMemoryTrackingStore:
    return InMemoryTrackingStore()


@pytest.fixture
def web(store: InMemoryTrackingStore) -> tuple[Source, str]:
    source, write_key = a_source("web")
    store.put_source(source, write_keys=[write_key])
    return source, write_key


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def collector(store: InMemoryTrackingStore, clock: Clock) -> Collector:
    ids = iter(f"generated-{n}" for n in range(1_000_000))
    return Collector(store, clock=clock, new_id=lambda: next(ids), source_cache_seconds=0)


def ingest(collector: Collector, source: Source, raws: list[Any], **kwargs: Any):
    kwargs.setdefault("route", "/v1/batch")
    return collector.ingest(source, raws, received_at=NOW, **kwargs)


def outcomes(report) -> list[Outcome]:
    return [result.outcome for result in report.results]


# --- outcomes -----------------------------------------------------------------------------------------------------


def test_each_event_of_a_request_gets_its_own_outcome_and_valid_neighbours_of_a_bad_one_are_stored(
    collector, store, web
):
    # Given
    source, _ = web
    good, bad, also_good = a_track(), {"type": "track", "userId": "u-bad"}, a_track(type="page", name="Home")
    # When
    report = ingest(collector, source, [good, bad, also_good])
    # Then
    assert outcomes(report) == [Outcome.ACCEPTED, Outcome.REJECTED, Outcome.ACCEPTED]
    assert [r.message_id for r in report.results] == [good["messageId"], None, also_good["messageId"]]
    assert report.results[1].reason == "event is required for track"
    assert report.accepted == 2
    assert not report.all_rejected
    assert [e.message_id for e in store.list_identity_events("u", good["userId"])] == [good["messageId"]]
    assert [e.message_id for e in store.list_identity_events("u", also_good["userId"])] == [also_good["messageId"]]
    assert store.list_identity_events("u", "u-bad") == []


def test_a_retried_request_is_answered_duplicate_and_stored_once(collector, store, web):
    source, _ = web
    call = a_track()
    first = ingest(collector, source, [call])
    retry = ingest(collector, source, [call])
    assert (outcomes(first), outcomes(retry)) == ([Outcome.ACCEPTED], [Outcome.DUPLICATE])
    assert len(store.list_identity_events("u", call["userId"])) == 1


def test_the_same_event_twice_in_one_request_is_stored_once(collector, store, web):
    source, _ = web
    call = a_track()
    report = ingest(collector, source, [call, dict(call), a_track(userId=call["userId"])])
    assert outcomes(report) == [Outcome.ACCEPTED, Outcome.DUPLICATE, Outcome.ACCEPTED]
    assert len(store.list_identity_events("u", call["userId"])) == 2


def test_the_same_message_id_from_two_sources_is_two_events(collector, store, web):
    # Given two sources that happen to use the same message id for the same user
    source, _ = web
    other, other_key = a_source("app")
    store.put_source(other, write_keys=[other_key])
    call = a_track()
    # When
    reports = [ingest(collector, source, [call]), ingest(collector, other, [call])]
    # Then
    assert [outcomes(report) for report in reports] == [[Outcome.ACCEPTED], [Outcome.ACCEPTED]]
    assert {e.source_id for e in store.list_identity_events("u", call["userId"])} == {"web", "app"}


def test_events_without_message_id_get_a_generated_one_that_the_answer_reports(collector, store, web):
    source, _ = web
    call = {k: v for k, v in a_track().items() if k != "messageId"}
    report = ingest(collector, source, [call])
    assert report.results[0].message_id == "generated-0"
    assert [e.message_id for e in store.list_identity_events("u", call["userId"])] == ["generated-0"]


def test_route_call_type_applies_to_a_single_call(collector, store, web):
    source, _ = web
    report = ingest(collector, source, [{"userId": "u-1", "traits": {"plan": "pro"}}], call_type=CallType.IDENTIFY)
    assert outcomes(report) == [Outcome.ACCEPTED]
    assert store.list_identity_events("u", "u-1")[0].type is CallType.IDENTIFY


def test_a_request_where_nothing_is_valid_is_all_rejected(collector, store, web):
    source, _ = web
    report = ingest(collector, source, [{"type": "track"}, "junk", 42])
    assert outcomes(report) == [Outcome.REJECTED] * 3
    assert report.all_rejected
    assert not report.all_too_large
    assert store.put_events_calls == 0


def test_a_request_where_every_event_is_too_large_says_so(collector, web):
    source, _ = web
    big = a_track(properties={"blob": "x" * 40_000})
    report = ingest(collector, source, [big, dict(big)])
    assert report.all_too_large
    assert [r.reason for r in report.results] == ["event is larger than 32 KB"] * 2


def test_a_rejected_event_reports_its_message_id_only_when_it_is_a_string(collector, web):
    source, _ = web
    report = ingest(collector, source, [{"type": "track", "messageId": "m-1"}, {"type": "track", "messageId": 7}])
    assert [r.message_id for r in report.results] == ["m-1", None]


# --- e-mail hashing -----------------------------------------------------------------------------------------------


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_a_source_configured_for_it_stores_email_addresses_only_as_hashes(collector, store):
    # Given a source that hashes e-mails, and a call carrying an address in every place it is looked for
    source, write_key = a_source("crm", hash_emails=True)
    store.put_source(source, write_keys=[write_key])
    address = "  Jane.Doe@Example.COM "
    call = {
        "type": "identify",
        "userId": "u-jane",
        "traits": {"email": address, "plan": "pro"},
        "properties": {"Email": address},
        "context": {"traits": {"e-mail": address}, "ip": "203.0.113.9"},
    }
    # When
    report = ingest(collector, source, [call])
    # Then
    (event,) = store.list_identity_events("u", "u-jane")
    hashed = sha256("jane.doe@example.com")
    assert outcomes(report) == [Outcome.ACCEPTED]
    assert (event.traits["email"], event.properties["Email"], event.context["traits"]["e-mail"]) == (hashed,) * 3
    assert (event.traits["plan"], event.context["ip"]) == ("pro", "203.0.113.9")
    assert "jane.doe" not in json.dumps(event.to_payload()).lower()


def test_hashed_email_is_the_same_whatever_the_case_and_spacing_so_it_still_joins(collector, store):
    source, write_key = a_source("crm", hash_emails=True)
    store.put_source(source, write_keys=[write_key])
    calls = [a_track(userId="u-1", properties={"email": e}) for e in ("jane@example.com", " JANE@Example.com\t")]
    ingest(collector, source, calls)
    assert {e.properties["email"] for e in store.list_identity_events("u", "u-1")} == {sha256("jane@example.com")}


def test_values_under_email_keys_that_are_not_addresses_are_kept(collector, store):
    source, write_key = a_source("crm", hash_emails=True)
    store.put_source(source, write_keys=[write_key])
    ingest(collector, source, [a_track(userId="u-1", traits={"email": "unknown"}, properties={"email": 5})])
    (event,) = store.list_identity_events("u", "u-1")
    assert (event.traits["email"], event.properties["email"]) == ("unknown", 5)


def test_a_source_not_configured_for_it_keeps_email_addresses(collector, store, web):
    source, _ = web
    ingest(collector, source, [a_track(userId="u-1", properties={"email": "jane@example.com"})])
    assert store.list_identity_events("u", "u-1")[0].properties["email"] == "jane@example.com"


# --- authentication -----------------------------------------------------------------------------------------------


def test_the_write_key_authenticates_its_source(collector, web):
    source, write_key = web
    assert collector.authenticate(write_key) == source


@pytest.mark.parametrize(
    ("write_key", "reason"),
    [
        (None, "missing write key: send it as the Basic-auth user or as writeKey"),
        ("", "missing write key: send it as the Basic-auth user or as writeKey"),
        ("ffk_wrong", "invalid write key"),
    ],
)
def test_missing_or_wrong_write_key_is_refused(collector, web, write_key, reason):
    with pytest.raises(AuthenticationError) as refused:
        collector.authenticate(write_key)
    assert str(refused.value) == reason


def test_a_revoked_write_key_is_refused_and_its_replacement_accepted(collector, store, web):
    # Given the source's key is replaced (the old lookup item is left behind)
    source, old_key = web
    new_key = "ffk_replacement"
    store.put_source(replace(source, write_key_hashes=(hash_write_key(new_key),)), write_keys=[new_key])
    # When / Then
    with pytest.raises(AuthenticationError, match="invalid write key"):
        collector.authenticate(old_key)
    assert collector.authenticate(new_key).id == "web"


def test_a_revoked_key_keeps_working_only_as_long_as_the_source_cache(store, web):
    # Given a collector that caches sources for 30 s, and a key it has just seen
    source, write_key = web
    clock = Clock()
    collector = Collector(store, clock=clock, source_cache_seconds=30)
    collector.authenticate(write_key)
    # When the key is revoked
    store.put_source(replace(source, write_key_hashes=()))
    # Then it works for the rest of the cache window, and not after
    clock.now = NOW + timedelta(seconds=29)
    assert collector.authenticate(write_key).id == "web"
    clock.now = NOW + timedelta(seconds=30)
    with pytest.raises(AuthenticationError, match="invalid write key"):
        collector.authenticate(write_key)


def test_a_source_is_found_by_id(collector, web):
    source, _ = web
    assert collector.source("web") == source
    assert collector.source("nope") is None


# --- refusals -----------------------------------------------------------------------------------------------------


def test_each_rejected_event_is_recorded_with_route_status_source_reason_and_raw_input(collector, store, web):
    # Given
    source, _ = web
    bad = {"type": "track", "userId": "u-1", "messageId": "m-bad", "properties": {"note": "é"}}
    # When
    ingest(collector, source, [a_track(), bad], route="/v1/batch")
    # Then
    (failure,) = store.failed
    assert (failure.route, failure.status, failure.source_id, failure.message_id, failure.reason) == (
        "/v1/batch",
        400,
        "web",
        "m-bad",
        "event is required for track",
    )
    assert json.loads(failure.raw) == bad
    assert failure.received_at == NOW
    assert failure.id.startswith("2026-11-29.120000000000.")


def test_an_oversize_event_is_recorded_as_413(collector, store, web):
    source, _ = web
    ingest(collector, source, [a_track(properties={"blob": "x" * 40_000})])
    assert [(f.status, f.reason) for f in store.failed] == [(413, "event is larger than 32 KB")]


def test_a_pixel_event_is_recorded_with_the_200_its_client_was_given(collector, store, web):
    source, _ = web
    ingest(collector, source, [{"event": "Email Opened"}], route="/v1/pixel/track", failure_status=200)
    assert [(f.route, f.status) for f in store.failed] == [("/v1/pixel/track", 200)]


def test_a_refused_request_is_recorded(collector, store):
    collector.record_failure(route="/v1/track", reason="invalid write key", status=401, raw=b"{}", received_at=NOW)
    (failure,) = store.failed
    assert (failure.route, failure.reason, failure.status, failure.source_id, failure.raw) == (
        "/v1/track",
        "invalid write key",
        401,
        None,
        b"{}",
    )


def test_failure_ids_are_unique(collector, store, web):
    source, _ = web
    ingest(collector, source, [{"type": "track"}] * 50)
    assert len({f.id for f in store.failed}) == 50


def test_losing_the_failed_event_record_does_not_fail_the_request(collector, store, web, caplog):
    # Given a store that cannot write failed-event records
    source, _ = web
    store.fail_failed_writes = True
    good = a_track()
    # When
    with caplog.at_level(logging.ERROR, logger="shared.services.collect"):
        report = ingest(collector, source, [good, {"type": "track"}])
        collector.record_failure(route="/v1/track", reason="r", status=400, raw=b"x", received_at=NOW)
    # Then the client still gets its answer, the valid event is stored, and the loss is logged
    assert outcomes(report) == [Outcome.ACCEPTED, Outcome.REJECTED]
    assert len(store.list_identity_events("u", good["userId"])) == 1
    assert [r.getMessage() for r in caplog.records] == ["failed-event records could not be stored"] * 2


# --- storage trouble ----------------------------------------------------------------------------------------------


def test_events_the_store_could_not_write_are_answered_not_stored(collector, store, web):
    source, _ = web
    store.throttle_events = True
    report = ingest(collector, source, [a_track(), {"type": "track"}])
    assert outcomes(report) == [Outcome.NOT_STORED, Outcome.REJECTED]
    assert report.not_stored
    assert store.events == {}


def test_a_not_stored_event_is_accepted_when_the_client_retries(collector, store, web):
    source, _ = web
    call = a_track()
    store.throttle_events = True
    ingest(collector, source, [call])
    store.throttle_events = False
    assert outcomes(ingest(collector, source, [call])) == [Outcome.ACCEPTED]


@pytest.mark.parametrize("error", [ThrottledError("read throttled"), StorageError("table missing")])
def test_a_store_failure_on_events_reaches_the_caller_so_the_client_retries(collector, store, web, error):
    source, _ = web
    store.fail_event_writes = error
    with pytest.raises(type(error)):
        ingest(collector, source, [a_track()])


def test_a_hashing_source_keeps_no_raw_address_even_nested_or_in_refused_input():
    # Given a source that hashes e-mail addresses
    from shared.domain.privacy import hash_email

    store = InMemoryTrackingStore()
    source, key = a_source("crm")
    source = replace(source, hash_emails=True)
    store.put_source(source, write_keys=[key])
    collector = Collector(store)
    now = datetime(2026, 5, 1, tzinfo=UTC)
    good = {
        "type": "track",
        "userId": "u",
        "event": "Signed Up",
        "properties": {"customer": {"Email": " Ann@Example.com "}, "list": [{"email": "b@x.io"}]},
    }
    bad = {"type": "track", "userId": "u", "traits": {"email": "c@x.io"}}  # no event name: refused
    # When
    collector.ingest(source, [good, bad], route="/v1/batch", received_at=now)
    collector.record_failure(
        route="/v1/batch",
        reason="too large",
        status=413,
        received_at=now,
        source_id="crm",
        raw=b'{"batch":[{"traits":{"email":"d@x.io"}}]}',
    )
    # Then
    (stored,) = store.list_identity_events("u", "u")
    assert stored.properties["customer"]["Email"] == hash_email("ann@example.com")
    assert stored.properties["list"][0]["email"] == hash_email("b@x.io")
    everything = repr(stored.to_payload()) + "".join(f.raw.decode() for f in store.failed)
    assert len(store.failed) == 2
    assert "@" not in everything


@pytest.mark.parametrize("source_id", ["footfall", "Footfall", " footfall "])
def test_the_reserved_audience_source_id_cannot_be_created(source_id: str):
    with pytest.raises(ConfigurationError, match="reserved"):
        a_source(source_id)


def test_a_stored_source_with_the_reserved_id_is_refused_by_every_request(collector, store):
    # Given a source stored under the audience source's id (made before ids were checked, or by hand)
    source, write_key = a_source("web")
    store.put_source(replace(source, id=AUDIENCE_SOURCE), write_keys=[write_key])
    # Then its write key authenticates nothing, and webhooks and links cannot find it
    with pytest.raises(AuthenticationError):
        collector.authenticate(write_key)
    assert collector.source(AUDIENCE_SOURCE) is None


def test_footfall_sources_add_refuses_the_reserved_id(tmp_path, capsys):
    from shared.cli import main

    code = main(["sources", "add", "Footfall", "--data-dir", str(tmp_path)])
    assert code == 2
    assert "reserved" in capsys.readouterr().err


def test_rotating_a_write_key_keeps_the_old_one_valid_for_the_grace_only():
    from shared.domain.sources import matches_write_key, rotate_write_key

    source, old_key = a_source("web")
    rotated = rotate_write_key(source, "ffk_" + "n" * 32, now=NOW, grace=timedelta(hours=24))
    assert matches_write_key(rotated, "ffk_" + "n" * 32, now=NOW + timedelta(days=30))
    assert matches_write_key(rotated, old_key, now=NOW + timedelta(hours=23))
    assert not matches_write_key(rotated, old_key, now=NOW + timedelta(hours=24))
    # A second rotation with no grace revokes every older key at once
    again = rotate_write_key(rotated, "ffk_" + "m" * 32, now=NOW, grace=timedelta(0))
    assert not matches_write_key(again, old_key, now=NOW)
    assert not matches_write_key(again, "ffk_" + "n" * 32, now=NOW)
    assert again.write_key_hashes == (hash_write_key("ffk_" + "m" * 32),)
