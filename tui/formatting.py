"""Pure formatting for the TUI: counts, percentages, durations, relative times, bars, sparklines, heat colours."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

_BLOCKS = " ▏▎▍▌▋▊▉█"
_SPARKS = "▁▂▃▄▅▆▇█"
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
DASH = "\u2013"  # an en dash: "unknown"


def count(value: int | None) -> str:
    """`1,234` (a dash for unknown)."""
    return DASH if value is None else f"{value:,}"


def money(value: float | None) -> str:
    """`1,234.50` (a dash for unknown)."""
    return DASH if value is None else f"{value:,.2f}"


def percent(share: float | None, *, digits: int = 1) -> str:
    """A 0-1 share as `42.0%` (a dash for unknown)."""
    return DASH if share is None else f"{share * 100:.{digits}f}%"


def duration(seconds: float | None) -> str:
    """A short human duration: `0.4s`, `45s`, `12m`, `3h 05m`, `2d 4h` (a dash for unknown)."""
    if seconds is None:
        return DASH
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def parse_time(value: str | None) -> datetime | None:
    """An ISO-8601 time as stored (`Z` or an offset; naive is taken as UTC); None when absent or unreadable."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def relative(value: str | None, now: datetime) -> str:
    """How long ago (or ahead) an ISO time is: `just now`, `5m ago`, `in 2h 00m`."""
    moment = parse_time(value)
    if moment is None:
        return DASH
    seconds = (now - moment).total_seconds()
    if abs(seconds) < 5:
        return "just now"
    return f"{duration(seconds)} ago" if seconds > 0 else f"in {duration(-seconds)}"


def clock_time(value: str | None) -> str:
    """`HH:MM:SS` of an ISO time (UTC), for the live tail."""
    moment = parse_time(value)
    return DASH if moment is None else moment.astimezone(UTC).strftime("%H:%M:%S")


def short_time(value: str | None) -> str:
    """`YYYY-MM-DD HH:MM` of an ISO time (UTC)."""
    moment = parse_time(value)
    return DASH if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def bar(share: float, width: int) -> str:
    """A horizontal bar `width` cells wide at 100%, with eighth-cell resolution."""
    share = min(max(share, 0.0), 1.0)
    eighths = round(share * width * 8)
    full, part = divmod(eighths, 8)
    return ("█" * full + (_BLOCKS[part] if part else "")).ljust(width)


def spark(values: Sequence[int | float]) -> str:
    """A one-line sparkline (`▁▃▅█`) from the smallest value to the largest (flat for no change; low for zeros)."""
    if not values:
        return ""
    low, top = min(values), max(values)
    if top == low:
        return (_SPARKS[3] if top else _SPARKS[0]) * len(values)
    scale = (len(_SPARKS) - 1) / (top - low)
    return "".join(_SPARKS[round((value - low) * scale)] for value in values)


def delta(values: Sequence[int]) -> str:
    """Change from the first to the last value: `+12`, `-3`, `±0`."""
    if len(values) < 2:
        return DASH
    change = values[-1] - values[0]
    return "±0" if change == 0 else f"{change:+,}"


def hour_of_week(hour: int) -> str:
    """0 → `Mon 00:00`, 167 → `Sun 23:00`."""
    day, hour = divmod(hour % 168, 24)
    return f"{_DAYS[day]} {hour:02d}:00"


def lag_level(seconds: float | None) -> str:
    """`ok` (< 5 s, the target), `warn` (< 1 min) or `bad`; `none` when nothing was processed yet."""
    if seconds is None:
        return "none"
    return "ok" if seconds < 5 else "warn" if seconds < 60 else "bad"


def heat(share: float | None) -> str:
    """A Rich style for a retention cell: deeper blue for a larger share (dim for not yet observable)."""
    if share is None:
        return "dim"
    level = min(max(share, 0.0), 1.0)
    # From the background's dark blue (0%) to a bright blue (100%): readable on dark and light themes.
    red, green, blue = round(20 + 10 * level), round(40 + 110 * level), round(70 + 185 * level)
    text = "black" if level > 0.55 else "white"
    return f"{text} on #{red:02x}{green:02x}{blue:02x}"


def clip(text: str, width: int) -> str:
    """Cut text to `width` cells with an ellipsis."""
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def error_text(error: BaseException) -> str:
    """One line for a failed read: what went wrong, never a traceback."""
    code = getattr(error, "response", {}).get("Error", {}).get("Code") if hasattr(error, "response") else None
    if code:
        message = error.response.get("Error", {}).get("Message", "")  # type: ignore[attr-defined]
        return f"{code}: {message}" if message else str(code)
    name = type(error).__name__
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError"):
        return f"the table does not answer ({error})"
    text = str(error) or name
    return text if name in ("StorageError", "ThrottledError", "NotFound", "ReplayRefused") else f"{name}: {text}"


def compact_json(value: Any, width: int = 60, indent: int = 0, lead: int = 0) -> str:
    """JSON with every part that fits in `width` on one line (rules and payloads stay short and readable).

    `indent` is the nesting of `value`, `lead` the cells before it on its first line (its key).
    """
    flat = json.dumps(value, ensure_ascii=False, default=str)
    if indent + lead + len(flat) <= width or not isinstance(value, (dict, list)) or not value:
        return flat
    pad = " " * (indent + 2)
    if isinstance(value, dict):
        parts = [
            f"{pad}{json.dumps(key)}: {compact_json(item, width, indent + 2, len(key) + 4)}"
            for key, item in value.items()
        ]
        return "{\n" + ",\n".join(parts) + "\n" + " " * indent + "}"
    parts = [pad + compact_json(item, width, indent + 2) for item in value]
    return "[\n" + ",\n".join(parts) + "\n" + " " * indent + "]"


def pairs(value: Any) -> str:
    """`{"events": 3, "orders": 1}` as `events 3 · orders 1` (anything else as compact JSON)."""
    if isinstance(value, dict) and all(not isinstance(item, (dict, list)) for item in value.values()):
        return " · ".join(f"{key} {item}" for key, item in value.items()) or DASH
    return DASH if value is None else value if isinstance(value, str) else json.dumps(value, default=str)
