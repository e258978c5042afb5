"""The benchmark's report (`bench.py`): rows, the machine, the markdown table written to RESULTS.md."""

from __future__ import annotations

import contextlib
import math
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import analytics_bench
import cost_bench
import tui_bench

# --- report -----------------------------------------------------------------------------------------------------


@dataclass
class Row:
    what: str
    measured: str
    baseline: str
    ratio: str
    target: str
    met: str


def machine() -> dict[str, str]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return {
        "nproc": str(cores),
        "cpu": model,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "load": load,
    }


def render(
    rows: list[Row],
    header: dict[str, str],
    notes: list[str],
    ledgers: Sequence[str] = (),
    *,
    title: str = "# Footfall benchmark results",
) -> str:
    """A results page: the header, the table of rows, the notes, and the per-entity ledgers when there are any."""
    lines = [
        title,
        "",
        f"- date: {header['date']}",
        f"- machine: nproc {header['nproc']}, {header['cpu']}, {header['python']} "
        f"(load average at start: {header['load']})",
        f"- run time: {header['elapsed']}",
        f"- scale: {header['scale']}",
        "",
        "| what | measured | baseline (same run) | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {r.what} | {r.measured} | {r.baseline} | {r.ratio} | {r.target} | {r.met} |" for r in rows]
    lines += ["", "Notes:", ""] + [f"- {note}" for note in notes]
    if ledgers:
        lines += ["", "### Per-entity ledgers (write and read units, billed as AWS bills them)", "", *ledgers]
    return "\n".join(lines).rstrip("\n") + "\n"


def print_table(rows: list[Row]) -> None:
    columns = ["what", "measured", "baseline", "ratio", "target", "met"]
    cells = [columns] + [[r.what, r.measured, r.baseline, r.ratio, r.target, r.met] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    for number, row in enumerate(cells):
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if number == 0:
            print("  ".join("-" * w for w in widths))


def yes(flag: bool) -> str:
    return "yes" if flag else "no"


KEPT_SECTIONS = ("## Steady load", "## Mutation testing")
"""Sections of RESULTS.md written by other tools (`make load`, `make mutate`): a new `make bench` keeps them."""


def kept_sections(path: Path) -> str:
    """The sections of an existing results file that this run does not measure, from the first one on."""
    try:
        text = path.read_text()
    except OSError:
        return ""
    starts = [text.find(f"\n{title}") for title in KEPT_SECTIONS if f"\n{title}" in text]
    return "\n" + text[min(starts) + 1 :] if starts else ""


def tui_rows(screens: list[tui_bench.ScreenFigure], info: dict[str, Any]) -> list[Row]:
    check = info["check"]
    scale = f"{check.customers:,} customers, {check.events:,} events"
    rows = [
        Row(
            f"TUI screen `{f.screen}` ({f.path}): reads at {scale}",
            f"{f.requests} requests, {f.ms:.0f} ms, {f.ru:.1f} RU",
            "—",
            "—",
            f"≤ {tui_bench.SCREEN_REQUEST_TARGET} requests, < {tui_bench.SCREEN_MS_TARGET:g} ms",
            yes(f.requests <= tui_bench.SCREEN_REQUEST_TARGET and f.ms < tui_bench.SCREEN_MS_TARGET),
        )
        for f in screens
    ]
    rows.append(
        Row(
            f"check path (`--check`: services.analytics.recompute) at {scale}",
            f"{check.seconds:.1f} s, {check.requests:,} requests",
            f"{check.baseline_seconds:.2f} s (domain recompute, events in memory)",
            f"{check.seconds / check.baseline_seconds:.1f}",
            f"≤ {tui_bench.CHECK_TARGET_SECONDS:g} s",
            yes(check.seconds <= tui_bench.CHECK_TARGET_SECONDS),
        )
    )
    return rows


def seconds_or_failed(seconds: float) -> str:
    return "FAILED (did not catch up)" if math.isinf(seconds) else f"{seconds:.1f} s"


def cost_rows(workloads: list[cost_bench.Workload]) -> list[Row]:
    """Write and read units per event of each workload, against the design's targets; FAILED when not caught up."""
    rows = []
    for workload in workloads:
        events = f"{workload.events:,} events"
        naive = _naive(workload)
        target = cost_bench.TARGETS[workload.name]
        if not workload.caught_up:
            rows.append(Row(f"WU per event, {workload.name} ({events})", "FAILED", "—", "—", f"≤ {target:g}", "no"))
            continue
        rows.append(
            Row(
                f"WU per event end-to-end, {workload.name} ({events}, caught up {workload.lag:.1f} s after)",
                f"{workload.wu:.2f} WU",
                f"{naive:.2f} WU (naive 3)",
                f"{workload.wu / naive:.2f}",
                f"≤ {target:g} WU",
                yes(workload.wu <= target),
            )
        )
        rows.append(
            Row(
                f"WU per accepted event, collect path, {workload.name}",
                f"{workload.collect_wu:.2f} WU",
                f"{naive:.2f} WU (naive 3)",
                f"{workload.collect_wu / naive:.2f}",
                f"≤ {cost_bench.TARGETS['collect']:g} WU",
                yes(workload.collect_wu <= cost_bench.TARGETS["collect"]),
            )
        )
        rows.append(
            Row(
                f"RU per accepted event, collect path (at most: shared entities), {workload.name}",
                f"{workload.collect_ru:.2f} RU",
                "—",
                "—",
                "—",
                "—",
            )
        )
        rows.append(
            Row(
                f"round trips per customer-batch (processing's requests / profile writes), {workload.name}",
                f"{workload.round_trips:.2f}",
                "—",
                "—",
                f"≤ {cost_bench.TARGETS['round_trips']:g}",
                yes(workload.round_trips <= cost_bench.TARGETS["round_trips"]),
            )
        )
        rows.append(
            Row(
                f"RU per event end-to-end, {workload.name}",
                f"{workload.ru:.2f} RU",
                "—",
                "—",
                f"≤ {cost_bench.TARGETS['reads']:g} RU",
                yes(workload.ru <= cost_bench.TARGETS["reads"]),
            )
        )
    return rows


def _naive(workload: cost_bench.Workload) -> float:
    """Naive 3 for the same events: their own event-item units, a de-duplication marker and a profile update each."""
    events = sum(
        line.total_wu
        for name, line in workload.ledger.entities.items()
        if name.startswith("event/") and name != cost_bench.PROCESSING_EVENTS
    )
    return events / max(workload.events, 1) + 2


def analytics_rows(figures: analytics_bench.Figures) -> list[Row]:
    smallest = min(figures.reads)
    rows = [
        Row(
            f"funnel report read, 30 days, {events:,} events ({items} counter items)",
            f"{requests} requests, {ms:.0f} ms",
            f"{figures.reads[smallest][0]} requests at {smallest:,} events",
            f"{requests / figures.reads[smallest][0]:.2f}",
            f"≤ {analytics_bench.READ_REQUEST_TARGET} requests, flat",
            yes(requests <= analytics_bench.READ_REQUEST_TARGET and requests == figures.reads[smallest][0]),
        )
        for events, (requests, ms, items) in sorted(figures.reads.items())
    ]
    return rows
