"""The benchmarks' request bodies (benchmarks/bench_corpus.py): the simulator's calls as `/v1/batch` templates that
the collector's parser accepts, with fresh message ids per request and the same bytes for the same seed."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from benchmarks.bench_corpus import EVENTS_PER_REQUEST, TAG, Corpus, build_corpus, fresh_body
from shared.domain.events import TrackingEvent, batch_items, parse_envelope, parse_event

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
TEMPLATES = 6


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return build_corpus("wk_test", templates=TEMPLATES, seed=7, now=NOW)


def _parsed(body: bytes) -> list[TrackingEvent]:
    decoded = json.loads(body)
    envelope = parse_envelope(decoded)

    def no_id() -> str:
        raise AssertionError("every event of the corpus carries its messageId")

    return [
        parse_event(raw, source_id="default", received_at=NOW, new_id=no_id, envelope=envelope)
        for raw in batch_items(decoded)
    ]


def test_each_fresh_body_is_a_batch_of_100_valid_calls_with_unique_message_ids(corpus: Corpus) -> None:
    assert len(corpus.bodies) == len(corpus.decoded) == len(corpus.sdk) == TEMPLATES
    for template in corpus.bodies:
        events = _parsed(fresh_body(template))
        ids = [e.message_id for e in events]
        assert len(events) == EVENTS_PER_REQUEST
        assert len(set(ids)) == EVENTS_PER_REQUEST
        assert all(len(i) == 36 and TAG not in i for i in ids)
    assert set(corpus.sdk) == {"footfall-simulator"}


def test_two_requests_of_one_template_carry_different_message_ids(corpus: Corpus) -> None:
    first, second = (_parsed(fresh_body(corpus.bodies[0])) for _ in range(2))
    assert {e.message_id for e in first}.isdisjoint(e.message_id for e in second)
    assert [e.anonymous_id for e in first] == [e.anonymous_id for e in second]


def test_templates_hold_the_write_key_and_the_simulated_shop_calls(corpus: Corpus) -> None:
    items = [item for body in corpus.decoded for item in body["batch"]]
    assert {item["writeKey"] for item in items} == {"wk_test"}
    assert all(item["messageId"].startswith(TAG) for item in items)
    kinds = {item.get("event") or item["type"] for item in items}
    assert {"page", "identify", "Product Viewed", "Product Added", "Order Completed"} <= kinds


def test_many_visits_at_once_so_many_events_bring_a_new_identity(corpus: Corpus) -> None:
    seen: set[str] = set()
    bringing_new = 0
    for item in (item for body in corpus.decoded for item in body["batch"]):
        identities = {item.get("anonymousId"), item.get("userId")} - {None}
        bringing_new += not identities <= seen
        seen |= identities
    assert bringing_new >= TEMPLATES * EVENTS_PER_REQUEST / 8


def test_the_same_seed_and_time_give_the_same_bytes(corpus: Corpus) -> None:
    again = build_corpus("wk_test", templates=TEMPLATES, seed=7, now=NOW)
    assert again.bodies == corpus.bodies
    assert len(set(corpus.bodies)) == TEMPLATES
