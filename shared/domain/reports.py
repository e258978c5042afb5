"""What the read side answers: the figures the CLI prints and the TUI draws (plain values, no storage)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date


@dataclass(frozen=True, slots=True)
class StepFigures:
    """One funnel step over a range of entry days."""

    label: str
    customers: int
    """Journeys that reached this step (a customer who comes back after converting or after the window starts
    a new journey)."""
    from_previous: float | None
    """Share of the previous step's journeys that reached this one (None for the first step or an empty one)."""
    from_first: float | None
    drop_off: int
    """Journeys that reached the previous step and not this one (0 for the first step)."""
    median_seconds: float | None
    """Time from the previous step to this one (None for the first step or when nobody reached it)."""
    p90_seconds: float | None


@dataclass(frozen=True, slots=True)
class FunnelReport:
    funnel_id: str
    name: str
    start: date
    end: date
    steps: list[StepFigures]
    breakdown: dict[str, list[StepFigures]] = field(default_factory=dict)
    """Breakdown value (channel, or the step-1 property the funnel names) → the same figures."""


@dataclass(frozen=True, slots=True)
class CohortRow:
    cohort: date
    """First day (or the Monday of the first week) the cohort's customers were seen."""
    size: int
    percentages: list[float | None]
    """Offset 0, 1, … (days or weeks): share of the cohort that came back; None = not yet observable."""


@dataclass(frozen=True, slots=True)
class RetentionReport:
    by: str
    """`day` or `week`."""
    event: str
    """The return event (`*` = any event)."""
    cumulative: bool
    """True: came back on *or after* the offset; False: on the offset."""
    rows: list[CohortRow]


@dataclass(frozen=True, slots=True)
class Recommendation:
    channel: str
    hour_of_week: int
    """0 = Monday 00:00-00:59 … 167 = Sunday 23:00 (the customer's local time when known, else UTC)."""
    confidence: float
    """0-1: the share of the recommendation that rests on the customer's own engagement (the rest is the prior)."""
    events: int
    """Engagement events of this customer behind it."""


@dataclass(frozen=True, slots=True)
class TimingReport:
    population: dict[str, dict[int, int]]
    """Channel → hour of week → engagement events, all customers."""
    customer_id: str | None = None
    recommendation: Recommendation | None = None


@dataclass(frozen=True, slots=True)
class SegmentSize:
    segment_id: str
    size: int
    trend: list[int]
    """Size at the end of each of the last 7 days, oldest first (the last is today, so far)."""


@dataclass(frozen=True, slots=True)
class Overview:
    events_per_minute: list[int]
    """The last 60 minutes, oldest first (by the events' corrected time)."""
    events_today: int
    top_events: list[tuple[str, int]]
    """Today's most frequent event names (track names; `page`, `identify`, … for other calls), most first."""
    segments: list[SegmentSize]
    lag_seconds: float | None
    """How far processing is behind the newest stored event (None: nothing processed yet)."""
    failed_today: int


@dataclass(frozen=True, slots=True)
class LiveEvent:
    at: str
    """The event's corrected time (ISO 8601)."""
    event: str
    customer: str
    """The identity the event names (`u:…` user, `a:…` anonymous)."""
    source: str
    channel: str | None
    message_id: str
