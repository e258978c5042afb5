"""When the simulated people act, and the two generators: `generate` (days of history) and `live` (now).

History follows a daily and weekly rhythm and keeps everything before `now`; only timestamps depend on `now` and
`days` (drawn from `Random(f"time/{seed}/{index}")`), what people do comes from `shoppers` and the seed alone.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from random import Random

from shared.domain.events import format_timestamp
from shared.simulate.calls import SimEvent
from shared.simulate.shoppers import Ids, Person, Step, person_visits, return_visit

HOUR_WEIGHTS = (
    0.25, 0.15, 0.10, 0.08, 0.08, 0.12, 0.25, 0.45, 0.65, 0.80, 0.90, 0.95,
    1.00, 0.95, 0.90, 0.90, 0.95, 1.05, 1.20, 1.35, 1.40, 1.25, 0.90, 0.50,
)  # fmt: skip
WEEKDAY_WEIGHTS = (1.0, 0.95, 0.95, 1.0, 1.05, 1.25, 1.3)
"""Monday … Sunday."""
PAUSES = {"now": (0.4, 3.0), "read": (5.0, 90.0), "email": (60.0, 2400.0), "redirect": (0.3, 1.5)}
RESERVE = 3600.0
"""Seconds kept free before `now` for each visit still to come, so that every visit fits in the history."""


def _rhythm(ts: float) -> float:
    moment = datetime.fromtimestamp(ts, UTC)
    return HOUR_WEIGHTS[moment.hour] * WEEKDAY_WEIGHTS[moment.weekday()]


def _pick_time(rng: Random, low: float, high: float, weight: Callable[[float], float], peak: float) -> float:
    """A time in [low, high] drawn by thinning: busy hours and weekend days come out more often."""
    candidate = low
    for _ in range(64):
        candidate = rng.uniform(low, high)
        if rng.random() * peak <= weight(candidate):
            break
    return candidate


def _arrival(rng: Random, now: float, horizon: float) -> float:
    youngest = min(2 * 3600.0, horizon / 2)

    def growing(ts: float) -> float:  # the shop grows: recent days bring a few more new people
        return _rhythm(ts) * (0.7 + 0.3 * (1 - (now - ts) / horizon))

    return _pick_time(rng, now - horizon, now - youngest, growing, 1.82)


def _gap(rng: Random, kind: str) -> float:
    if kind == "soon":
        return rng.uniform(2 * 3600, 26 * 3600)
    return min(max(rng.lognormvariate(12.05, 0.9), 3 * 3600), 21 * 86400)  # median ≈ 2 days


def _history_person(seed: int, index: int, days: float, now: float) -> Iterator[SimEvent]:
    key = f"{seed}/{index}"
    timing = Random(f"time/{key}")
    horizon = days * 86400
    end = now - 1
    arrival = _arrival(timing, now, horizon)
    person, visits = person_visits(key)
    last = arrival
    for number, (gap, steps) in enumerate(visits):
        pauses = [0.0] + [timing.uniform(*PAUSES[step.pause]) for step in steps[1:]]
        latest = end - sum(pauses) - (person.returns - number) * RESERVE
        start = arrival
        if number > 0:
            wanted = _gap(timing, gap)
            start = _pick_time(timing, last + 0.6 * wanted, last + 1.4 * wanted, _rhythm, 1.82)
            if start > latest:  # no room left for the wanted gap: somewhere between the last visit and `latest`
                start = _pick_time(timing, last + 1, max(latest, last + 1), _rhythm, 1.82)
            start = max(start, last + 1)
        moment = start
        for pause, step in zip(pauses, steps, strict=True):
            moment += pause
            last = max(last, min(moment, end))
            yield _stamped(step, last, person.key)


def _stamped(step: Step, ts: float, person: str) -> SimEvent:
    at = datetime.fromtimestamp(round(ts, 3), UTC)
    return SimEvent(at, step.route, {**step.payload, "timestamp": format_timestamp(at)}, person, step.target)


def generate(customers: int, days: float, seed: int, now: datetime) -> Iterator[SimEvent]:
    """The history: `customers` people arriving over the `days` before `now`, their events in time order.

    Deterministic: the same arguments give the same events; the same seed gives the same people, calls and
    message ids whatever `now` and `days` are (only the timestamps move).
    """
    if customers < 0 or days <= 0:
        raise ValueError("customers must be >= 0 and days > 0")
    end = now.timestamp()
    horizon = days * 86400
    arrivals = sorted((_arrival(Random(f"time/{seed}/{i}"), end, horizon), i) for i in range(customers))
    heap: list[tuple[float, int, int, SimEvent, Iterator[SimEvent]]] = []
    order = itertools.count()
    position = 0
    while heap or position < len(arrivals):
        # People are started only when their first event is due, so memory stays bounded by who is active.
        while position < len(arrivals) and (not heap or arrivals[position][0] <= heap[0][0]):
            index = arrivals[position][1]
            position += 1
            events = _history_person(seed, index, days, end)
            first = next(events, None)
            if first is not None:
                heapq.heappush(heap, (first.at.timestamp(), index, next(order), first, events))
        _, index, _, event, events = heapq.heappop(heap)
        yield event
        following = next(events, None)
        if following is not None:
            heapq.heappush(heap, (following.at.timestamp(), index, next(order), following, events))


def live(
    seed: int,
    *,
    customers: int,
    clock: Callable[[], datetime],
    run: str,
    concurrent: int = 6,
) -> Iterator[SimEvent]:
    """Endless "now" traffic: several visits at once, each event stamped by `clock()` when it is taken.

    Most visits are new people; some are people of the history (`customers` of `seed`) or earlier live visitors
    coming back. Message ids are unique per `run` (pass something new per run, e.g. the start time), so a
    restarted demo keeps adding live events.
    """
    rng = Random(f"live/{seed}/{run}")
    active: list[tuple[str, Iterator[Step]]] = []
    seen: list[Person] = []
    journeys = itertools.count(1)
    while True:
        while len(active) < concurrent:
            number = next(journeys)
            ids = Ids(f"live/{seed}/{run}/{number}")
            returning = rng.random() < 0.35 and bool(customers or seen)
            if returning:
                person = _returning_person(seed, customers, seen, rng)
                _, planned = return_visit(person, rng, ids)
            else:
                person, visits = person_visits(f"live/{seed}/{run}/{number}")
                _, planned = next(visits)
                seen.append(person)
                del seen[:-200]
            active.append((person.key, iter(planned)))
        slot = rng.randrange(len(active))
        key, steps = active[slot]
        step = next(steps, None)
        if step is None:
            del active[slot]
            continue
        yield _stamped(step, clock().timestamp(), key)


def _returning_person(seed: int, customers: int, seen: list[Person], rng: Random) -> Person:
    if seen and (not customers or rng.random() < 0.4):
        return rng.choice(seen)
    person, visits = person_visits(f"{seed}/{rng.randrange(customers)}")
    for _ in visits:  # replay the history's visits to know where the person stands (identified, cart)
        pass
    return person
