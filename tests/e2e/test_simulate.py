"""`footfall simulate` against `footfall serve`: every event accepted, opens and clicks recorded, one customer per
simulated person after processing, and a second run with the same seed adds nothing."""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.services.customers import find_customer
from shared.simulate import Route, SimEvent, generate
from tests.e2e.conftest import FOOTFALL, LocalStack

pytestmark = pytest.mark.e2e

CUSTOMERS, DAYS, SEED = 20, 3, 1


def _simulate(local_stack: LocalStack) -> dict[str, Any]:
    done = subprocess.run(
        [
            *FOOTFALL,
            "simulate",
            *("--customers", str(CUSTOMERS), "--days", str(DAYS), "--seed", str(SEED), "--rate", "0"),
            *("--json", "--data-dir", str(local_stack.data_dir)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _customers(local_stack: LocalStack) -> list[Any]:
    """Every customer (profiles), read from the table."""
    store, found, token = local_stack.store(), [], None
    while True:
        page = store.list_customers(limit=500, next_token=token)
        found += [stored.profile for stored in page.items]
        token = page.next_token
        if not token:
            return found


def _sent_ids(local_stack: LocalStack) -> list[str]:
    """Message ids of the events the simulator's source stored (not the stack's own segment announcements)."""
    store = local_stack.store()
    return sorted(
        event.message_id
        for customer in _customers(local_stack)
        for identity in customer.identities
        for event in store.list_identity_events(*identity.split(":", 1))
        if event.source_id != "footfall"
    )


def test_simulated_traffic_is_accepted_processed_into_one_customer_per_person_and_deduplicated(
    local_stack: LocalStack,
):
    # Given what the simulator sends for this seed (its people and message ids do not depend on the time)
    expected = list(generate(CUSTOMERS, DAYS, SEED, datetime.now(UTC)))
    routes = Counter(event.route for event in expected)
    people: dict[str, list[SimEvent]] = {}
    for event in expected:
        people.setdefault(event.person, []).append(event)

    # When it runs against the stack
    first = _simulate(local_stack)

    # Then every event is accepted, nothing rejected; opens went by pixel and clicks by signed redirect
    assert (first["rejected"], first["not_stored"], first["reasons"]) == (0, 0, {})
    assert (first["accepted"], first["duplicate"]) == (routes[Route.BATCH], 0)
    assert first["opens"] == routes[Route.PIXEL] > 0
    assert first["clicks"] == routes[Route.CLICK] > 0

    # And after processing there is exactly one customer per simulated person, with all their events
    deadline = time.monotonic() + 45
    while True:
        counts = [sum(customer.event_counts.values()) for customer in _customers(local_stack)]
        if (len(counts), sum(counts)) == (len(people), len(expected)):
            break
        assert time.monotonic() < deadline, (len(counts), sum(counts), len(people), len(expected))
        time.sleep(0.5)
    listed = local_stack.cli("customers", "list", "--limit", "500")["customers"]
    assert len(listed) == len(people)
    assert {c["email"] for c in listed if c["user_id"]} >= {
        e.payload["traits"]["email"] for e in expected if e.payload.get("type") == "identify"
    }
    store = local_stack.store()
    for person in people.values():
        users = {e.payload["userId"] for e in person if "userId" in e.payload}
        devices = {e.payload["anonymousId"] for e in person if "anonymousId" in e.payload}
        found = find_customer(store, next(iter(users or devices)))
        assert found is not None
        assert set(found.profile.identities) == {f"u:{u}" for u in users} | {f"a:{a}" for a in devices}

    # And the opens and clicks are stored at their simulated (past) time, the clicks with their landing page
    opened = next(e for e in expected if e.route is Route.PIXEL)
    clicks = [e for e in expected if e.route is Route.CLICK]
    stored = {
        e.message_id: e
        for sample in (opened, *clicks)
        for e in store.list_identity_events("u", sample.payload["userId"])
    }
    assert stored[opened.payload["messageId"]].event == "Email Opened"
    for click in clicks:
        event = stored[click.payload["messageId"]]
        assert (event.event, event.properties["url"]) == ("Email Link Clicked", click.target)
        assert event.received_at - timedelta(days=DAYS) <= event.timestamp <= event.received_at
    assert any(
        stored[c.payload["messageId"]].received_at - stored[c.payload["messageId"]].timestamp > timedelta(hours=1)
        for c in clicks
    )

    # When the same seed runs again
    before = _sent_ids(local_stack)
    second = _simulate(local_stack)

    # Then every event is answered duplicate and nothing new is stored
    assert (second["accepted"], second["duplicate"], second["rejected"]) == (0, routes[Route.BATCH], 0)
    assert sorted(e.payload["messageId"] for e in expected) == before == _sent_ids(local_stack)

    # And the funnel, retention and timing reports equal a recomputation from every stored event
    reports = {}
    for command in (("funnels", "show", "purchase"), ("retention",), ("timing",)):
        reports[command[0]] = _checked(local_stack, *command)
    assert reports["funnels"]["steps"][0]["customers"] > 0
    assert sum(row["size"] for row in reports["retention"]["rows"]) == len(people)
    assert sum(sum(hours.values()) for hours in reports["timing"]["population"].values()) == len(expected)


def _checked(local_stack: LocalStack, *command: str) -> dict[str, Any]:
    """`footfall <command> --check --json` until it agrees (processing may still be finishing its last batch)."""
    deadline = time.monotonic() + 30
    while True:
        done = subprocess.run(
            [*FOOTFALL, *command, "--check", "--json", "--data-dir", str(local_stack.data_dir)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        data = json.loads(done.stdout) if done.stdout else {}
        if done.returncode == 0 and data["check"]["equal"]:
            return data
        assert time.monotonic() < deadline, (command, done.returncode, done.stderr, data.get("check"))
        time.sleep(1)
