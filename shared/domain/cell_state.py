"""Incremental analytics cells: a customer's new cells from their stored cells, a small state and the new events only.

`customer_cells` reads a customer's whole history. In the common case a batch's new events all come after every
event already folded (in `ordered` order: time, then message id), and then the cells are a sum that can be carried
on: timing and the overview add each new event's share; retention's cohort (the first event's day) stays, a new
event adds its offset if it is new, and the last return moves to the latest offset; each funnel's journey still open
after the last event is taken back and continued over the new behaviour events, exactly as `journeys` would have
had it. `CellState` holds what the cells alone do not say: the last event folded, the first event's moment and
channel, the open journeys, and a signature of the definitions (and of this rule set) the cells were made with.

`advance` returns None whenever it cannot be exact (an event at or before the last one folded, other definitions,
a `now` whose overview horizon is earlier than the stored cells', stored cells without the cohort or the open
journeys the state names): the caller then reads the whole history (`build`). Otherwise its cells equal
`kept(customer_cells(every event, now=now), now=now)` and its state is the one `build` of every event gives.
It knows nothing of identities: when a customer's history changes otherwise (profiles merged), call `build`.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from shared.domain.analytics import (
    BEHAVIOUR,
    STATS_DAYS,
    Cells,
    Definitions,
    Funnel,
    Journey,
    cells_and_journeys,
    event_cells,
    funnel_cells,
    journey_cells,
    kept,
    ordered,
    retention_cells,
)
from shared.domain.events import TrackingEvent
from shared.domain.profiles import channel_of

RULES = 1
"""The version of the rules that make cells: bump it when one changes, so no state made by the old rules is resumed."""
COMPACT = 1
"""The version of `to_compact`'s form."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class OpenJourney:
    """A funnel journey still open after the last event folded (`Journey`, frozen)."""

    entry: datetime
    times: tuple[datetime, ...]
    breakdown: str


@dataclass(frozen=True, slots=True)
class CellState:
    """What a customer's stored cells need beside them to be carried on by `advance`."""

    signature: str
    """`signature` of the definitions the cells were made with."""
    last: tuple[datetime, str]
    """The latest event folded (timestamp, message id), in `ordered` order."""
    first: datetime
    """The customer's first event's moment (their retention cohorts)."""
    first_channel: str
    """The customer's first event's channel (a funnel's `channel` breakdown)."""
    horizon: date
    """The overview horizon of the `now` the cells were kept at (older overview cells are not in them)."""
    journeys: Mapping[str, OpenJourney] = field(default_factory=dict)
    """By funnel id: the journey each funnel has open (funnels without one are absent)."""


def signature(definitions: Definitions) -> str:
    """A stable hash of everything in `definitions` that makes cells, and of the rule set (`RULES`)."""
    try:
        return _remembered(definitions)
    except TypeError:  # a filter value that cannot be hashed: computed each time
        return _signature(definitions)


@functools.lru_cache(maxsize=8)
def _remembered(definitions: Definitions) -> str:
    """Processing asks once per customer of a batch, always with the same definitions."""
    return _signature(definitions)


def _signature(definitions: Definitions) -> str:
    document = {
        "rules": RULES,
        "funnels": [_funnel(funnel) for funnel in definitions.funnels],
        "return_events": list(definitions.return_events),
        "overview_events": list(definitions.overview_events),
        "catalogued": sorted(definitions.catalogued()),
    }
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _funnel(funnel: Funnel) -> dict[str, Any]:
    """A funnel as plain values, exact (the file form rounds durations to seconds and merges a path's tests)."""
    return {
        **funnel.definition(),
        "window": repr(funnel.window.total_seconds()),
        "steps": [
            [
                step.event,
                [[test.path, test.op, repr(test.value)] for test in step.where.tests],
                repr(step.within.total_seconds()) if step.within is not None else None,
            ]
            for step in funnel.steps
        ],
    }


def build(
    customer_id: str, events: Iterable[TrackingEvent], definitions: Definitions, *, now: datetime
) -> tuple[Cells, CellState | None]:
    """`customer_cells` from the whole history, and the state to carry them on from (None: no events)."""
    del customer_id  # the cells are a function of the events (as `customer_cells`)
    everything = ordered(events)
    cells, still_open = cells_and_journeys(everything, definitions, now=now)
    if not everything:
        return cells, None
    first, last = everything[0], everything[-1]
    state = CellState(
        signature=signature(definitions),
        last=(last.timestamp, last.message_id),
        first=first.timestamp,
        first_channel=channel_of(first),
        horizon=_horizon(now),
        journeys=_frozen(still_open),
    )
    return cells, state


def advance(
    cells: Cells, state: CellState, new_events: Iterable[TrackingEvent], definitions: Definitions, *, now: datetime
) -> tuple[Cells, CellState] | None:
    """The kept cells and the state once `new_events` are folded into `cells` (the stored, kept cells that go
    with `state`), or None when that cannot be done from them: read the whole history (`build`)."""
    batch = ordered(new_events)
    horizon = _horizon(now)
    if state.signature != signature(definitions) or horizon < state.horizon:
        return None
    if batch and (batch[0].timestamp, batch[0].message_id) <= state.last:
        return None
    opened = {funnel_id: Journey(j.entry, list(j.times), j.breakdown) for funnel_id, j in state.journeys.items()}
    if not _goes_with(cells, state.first, opened, definitions):
        return None
    work = _Touched(cells)
    behaviour = [e for e in batch if e.type in BEHAVIOUR]
    still_open = funnel_cells(work, definitions.funnels, behaviour, first_channel=state.first_channel, opened=opened)
    retention_cells(work, state.first, batch, definitions.return_events, cohort=False)
    event_cells(work, batch, definitions, now=now)
    touched = {key: {name: n for name, n in counts.items() if n} for key, counts in work.items()}
    result = {key: counts for key, counts in {**cells, **touched}.items() if counts}
    last = batch[-1] if batch else None
    moved = CellState(
        signature=state.signature,
        last=(last.timestamp, last.message_id) if last else state.last,
        first=state.first,
        first_channel=state.first_channel,
        horizon=horizon,
        journeys=_frozen(still_open),
    )
    return kept(result, now=now), moved


def _goes_with(cells: Cells, first: datetime, opened: Mapping[str, Journey], definitions: Definitions) -> bool:
    """Whether the stored cells hold what the state says they hold: the first event's cohorts and the open
    journeys (other cells, a state of another customer's, a write lost between them: read the whole history)."""
    held: Cells = defaultdict(lambda: defaultdict(int))
    retention_cells(held, first, (), (), cohort=True)
    for funnel in definitions.funnels:
        if funnel.id in opened:
            journey_cells(held, funnel, opened[funnel.id])
    return all(cells.get(key, {}).get(name, 0) >= n for key, counts in held.items() for name, n in counts.items())


class _Touched(dict[Any, dict[Any, int]]):
    """The cells a batch changes, each copied from the stored cells when first touched (the rest stay as stored)."""

    def __init__(self, stored: Cells) -> None:
        super().__init__()
        self.stored = stored

    def __missing__(self, key: Any) -> dict[Any, int]:
        counts = self[key] = defaultdict(int, self.stored.get(key, {}))
        return counts


def _horizon(now: datetime) -> date:
    return (now - timedelta(days=STATS_DAYS)).date()


def _frozen(journeys: Mapping[str, Journey]) -> dict[str, OpenJourney]:
    return {funnel_id: OpenJourney(j.entry, tuple(j.times), j.breakdown) for funnel_id, j in journeys.items()}


# --- compact form ----------------------------------------------------------------------------------------------------


def to_compact(state: CellState) -> dict[str, Any]:
    """A small JSON-able form: moments as epoch microseconds, a journey's times after its entry."""
    return {
        "v": COMPACT,
        "s": state.signature,
        "l": [_micros(state.last[0]), state.last[1]],
        "f": [_micros(state.first), state.first_channel],
        "h": state.horizon.toordinal(),
        "j": {
            funnel_id: [_micros(j.entry), [_micros(t) - _micros(j.entry) for t in j.times], j.breakdown]
            for funnel_id, j in state.journeys.items()
        },
    }


def from_compact(data: Mapping[str, Any]) -> CellState:
    """The state `to_compact` gave `data` for.

    Raises:
        ValueError: not a compact state of this version.
    """
    if data.get("v") != COMPACT:
        raise ValueError(f"not a compact cell state of version {COMPACT}: {data.get('v')!r}")
    (last, message_id), (first, channel) = data["l"], data["f"]
    journeys = {
        str(funnel_id): OpenJourney(_moment(entry), tuple(_moment(entry + t) for t in times), str(breakdown))
        for funnel_id, (entry, times, breakdown) in data["j"].items()
    }
    return CellState(
        signature=str(data["s"]),
        last=(_moment(last), str(message_id)),
        first=_moment(first),
        first_channel=str(channel),
        horizon=date.fromordinal(int(data["h"])),
        journeys=journeys,
    )


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _moment(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(micros))
