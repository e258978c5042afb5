"""The overview and the live feed: what is happening now, from pre-aggregated items only (≤ 10 requests)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from shared.domain.cells import Minute, Named, StatsCell, Total
from shared.domain.events import TrackingEvent, format_timestamp
from shared.domain.profiles import channel_of, event_key
from shared.domain.reports import LiveEvent, Overview, SegmentSize
from shared.ports import OverviewStore, StorageError

TREND_DAYS = 7
TOP_EVENTS = 8


def live_event(event: TrackingEvent) -> dict[str, Any]:
    """What the live feed keeps of an event (no traits, no properties: nothing personal beyond the id)."""
    kind, identifier = event.identity
    return asdict(
        LiveEvent(
            at=format_timestamp(event.timestamp),
            event=event_key(event),
            customer=f"{kind}:{identifier}",
            source=event.source_id,
            channel=channel_of(event),
            message_id=event.message_id,
        )
    )


def recent_events(store: OverviewStore, *, limit: int = 50) -> list[LiveEvent]:
    """The newest processed events, newest first (one request)."""
    seen: set[str] = set()
    found: list[LiveEvent] = []
    for events in store.live_items(limit=max(1, limit // 10)):
        for data in reversed(events):
            if data.get("message_id") not in seen:
                seen.add(data.get("message_id"))
                found.append(LiveEvent(**data))
    found.sort(key=lambda e: e.at, reverse=True)
    return found[:limit]


def overview(store: OverviewStore, *, now: datetime) -> Overview:
    """Events per minute (last hour), today's totals and top events, segment sizes with trend, lag, failures."""
    today = now.date()
    days = sorted({today, (now - timedelta(minutes=59)).date()})
    per_minute: dict[str, int] = defaultdict(int)
    names: dict[str, int] = defaultdict(int)
    total = 0
    for day in days:
        for cell, counts in store.stats_counters(day).items():
            for name, count in counts.items():
                match name:
                    case Minute(hour=hour, minute=minute):
                        per_minute[f"{day.isoformat()}T{hour:02d}:{minute:02d}"] += count
                    case Named(event=event) if day == today:
                        names[event] += count
                    case Total() if day == today and isinstance(cell, StatsCell) and cell.hour is not None:
                        total += count
    minutes = [(now - timedelta(minutes=59 - i)).strftime("%Y-%m-%dT%H:%M") for i in range(60)]
    status = store.get_status()
    return Overview(
        events_per_minute=[per_minute.get(minute, 0) for minute in minutes],
        events_today=total,
        top_events=sorted(names.items(), key=lambda item: (-item[1], item[0]))[:TOP_EVENTS],
        segments=segment_sizes(store, now=now),
        lag_seconds=status.get("lag_seconds"),
        failed_today=_failed_today(store, now),
    )


def segment_sizes(store: OverviewStore, *, now: datetime) -> list[SegmentSize]:
    """Every segment's size now and at the end of each of the last 7 days (two requests)."""
    segments = [s.id for s in store.list_segments()]
    totals = store.segment_size_items(segments, days=[(now - timedelta(days=d)).date() for d in range(TREND_DAYS - 1)])
    sizes = []
    for segment_id in segments:
        size = totals.get((segment_id, None), 0)
        trend = [size]  # [today (so far), end of yesterday, …]: yesterday's end = today's minus today's net
        for back in range(TREND_DAYS - 1):
            day = (now - timedelta(days=back)).date()
            trend.append(trend[-1] - totals.get((segment_id, day.isoformat()), 0))
        sizes.append(SegmentSize(segment_id, size, list(reversed(trend))))
    return sizes


def _failed_today(store: OverviewStore, now: datetime) -> int:
    try:
        return int(store.count_failed(now.date().isoformat()))
    except StorageError:
        return 0
