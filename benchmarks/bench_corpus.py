"""Request bodies for the throughput and steady-lag benchmarks (`bench.py`, `load.py`): the simulator's shop
traffic (`shared.simulate`, what `footfall simulate` sends) as `/v1/batch` templates whose message ids are made
fresh per request.

The templates hold the first `/v1/batch` calls of a busy simulated history: `CUSTOMERS` people arriving within
`DAYS`, so that many visits are under way at once (landing pages, products viewed, carts, checkouts, orders,
identifies at sign-up, checkout or login) and about one event in six brings a new identity (a new browser's
anonymousId or a newly identified userId). E-mail opens and clicks, which go by the pixel and redirect routes,
are left out.
"""

from __future__ import annotations

import itertools
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.domain.events import format_timestamp
from shared.simulate import Route, generate

EVENTS_PER_REQUEST = 100

# Every messageId of a request body template carries this placeholder; each request replaces it with a fresh
# uuid4 hex (same length), which makes the ids unique at the cost of one bytes.replace per request.
TAG = "~" * 32
TAG_BYTES = TAG.encode()

CUSTOMERS = 2000
DAYS = 0.1
"""The history's people and span: dense enough that a template's 100 events come from many visits at once."""


@dataclass
class Corpus:
    """Request body templates (100 events each, ids carrying `TAG`) and their decoded form."""

    bodies: list[bytes]
    decoded: list[dict[str, Any]]
    sdk: list[str]
    """The library that sent each body (its events' `context.library.name`)."""


def build_corpus(write_key: str, templates: int = 24, seed: int = 7, *, now: datetime | None = None) -> Corpus:
    """`templates` bodies of the simulator's `/v1/batch` calls (seed `seed`, a history ending at `now`).

    The same seed and `now` (default: the current time) give the same bytes; another `now` moves the timestamps
    and, through the daily rhythm, which people's calls come first.
    Each messageId is `TAG` and the event's position in its body (36 characters, as the simulator's uuid ids);
    every event carries the write key, as analytics.js sends it.
    """
    now = now or datetime.now(UTC)
    calls = (event.payload for event in generate(CUSTOMERS, DAYS, seed, now) if event.route is Route.BATCH)
    wanted = templates * EVENTS_PER_REQUEST
    payloads = list(itertools.islice(calls, wanted))
    if len(payloads) < wanted:
        raise ValueError(f"the simulated history has {len(payloads)} batch calls; {wanted} are needed")
    bodies, decoded, sdks = [], [], []
    for start in range(0, wanted, EVENTS_PER_REQUEST):
        events = [
            {**payload, "messageId": f"{TAG}-{index:03x}", "writeKey": write_key}
            for index, payload in enumerate(payloads[start : start + EVENTS_PER_REQUEST])
        ]
        body: dict[str, Any] = {"batch": events, "sentAt": format_timestamp(now)}
        decoded.append(body)
        bodies.append(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode())
        sdks.append(str(events[0]["context"]["library"]["name"]))
    return Corpus(bodies, decoded, sdks)


def fresh_body(template: bytes) -> bytes:
    return template.replace(TAG_BYTES, uuid.uuid4().hex.encode())
