"""The simulator's runs, as `footfall simulate` and `footfall demo` start them: history, then live traffic, to a
target found in the local stack's data directory (or given)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.simulate.calls import SimulatorError
from shared.simulate.rhythm import generate, live
from shared.simulate.sender import Stats, Target, send

DEFAULT_LIVE_RATE = 5.0
"""Live events per second when no rate is given."""


def run(
    target: Target,
    *,
    customers: int,
    days: float,
    seed: int,
    rate: float = 0.0,
    live_rate: float | None = None,
    connections: int = 2,
    stop: threading.Event | None = None,
    out: Callable[[str], None] = print,
    progress_every: float = 5.0,
) -> Stats:
    """The history (`customers` over `days`, sent at `rate`), then, with `live_rate`, live traffic until `stop`.

    Progress and each new rejection reason go to `out`.
    """
    stop = stop or threading.Event()
    stats = Stats()
    common: dict[str, Any] = {
        "connections": connections,
        "stop": stop,
        "stats": stats,
        "on_progress": lambda s: out(f"simulate: {s.line(recent=True)}"),
        "progress_every": progress_every,
        "on_rejection": lambda reason: out(f"simulate: rejected: {reason}"),
    }
    out(f"simulate: history of {customers} customers over {days:g} days (seed {seed}) to {target.url}")
    send(generate(customers, days, seed, datetime.now(UTC)), target, rate=rate, **common)
    out(f"simulate: history done: {stats.line()}")
    if live_rate is not None and not stop.is_set():
        out(f"simulate: live traffic at {live_rate:g} events/s (Ctrl-C to stop)")
        events = live(seed, customers=customers, clock=lambda: datetime.now(UTC), run=str(int(time.time())))
        send(events, target, rate=live_rate, **common)
    return stats


def local_target(
    data_dir: Path,
    *,
    find_source: Callable[[str], Any] | None = None,
    url: str | None = None,
    write_key: str | None = None,
    source_id: str | None = None,
    link_secret: str | None = None,
) -> Target:
    """The target of the local stack in `data_dir` (`serve.json`, `default-source.json`); arguments override.

    Args:
        find_source: reads a source by id from the table, for its link secret (unless `link_secret` is given).

    Raises:
        SimulatorError: something needed is neither given nor found.
    """
    from shared.local.stack import DEFAULT_SOURCE_FILE, read_info

    info = read_info(data_dir)
    saved: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        saved = json.loads((data_dir / DEFAULT_SOURCE_FILE).read_text())
    url = url or (info.collector_url if info else None)
    write_key = write_key or (info.write_key if info else None) or saved.get("write_key")
    source_id = source_id or saved.get("source_id") or "default"
    if not url:
        raise SimulatorError(f"no local stack found in {data_dir} (start one with `footfall serve`), or pass --url")
    if not write_key:
        raise SimulatorError("no write key: pass --write-key (or run against a local stack that made one)")
    if link_secret is None and find_source is not None:
        source = find_source(source_id)
        if source is None:
            raise SimulatorError(f"no source {source_id!r} in the table (pass --source)")
        link_secret = source.link_secrets[0]
    if not link_secret:
        raise SimulatorError("clicks need the source's link secret: pass --link-secret")
    return Target(url=url.rstrip("/"), write_key=write_key, source_id=source_id, link_secret=link_secret)
