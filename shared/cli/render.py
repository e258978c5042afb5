"""The one renderer of the `footfall` command: a command's result as text, or with `--json` as JSON.

A command computes its result (a service's read model, or plain data) and hands it to `emit` with the text view
below that fits it; `plain` is the one serialisation `--json` prints.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping
from dataclasses import fields, is_dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the commands import the services when they run: `footfall --help` stays quick
    from shared.services.customers import CustomerDetail, CustomerSummary, Forgotten
    from shared.services.segments import SegmentExplanation, SegmentPlan, SegmentsApplied

DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


def plain(value: Any) -> Any:
    """A read model as JSON-ready data: a dataclass becomes an object of its fields in their order, a mapping an
    object, a tuple a list; everything else is left to `json.dumps` (which prints what it does not know with
    `str`)."""
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if is_dataclass(value) and not isinstance(value, type):
        return {field.name: plain(getattr(value, field.name)) for field in fields(value)}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def emit(args: argparse.Namespace, data: Any, text: Callable[[Any], str]) -> None:
    """Print `data`: as JSON with `--json`, else as `text(data)`."""
    print(json.dumps(plain(data), indent=2, default=str) if getattr(args, "json", False) else text(data))


def pairs(data: Mapping[str, Any], width: int) -> str:
    """One `key value` line per item."""
    return "\n".join(f"{k:{width}} {v}" for k, v in data.items())


# --- sources and links ------------------------------------------------------------------------------------------


def new_source(d: Mapping[str, Any]) -> str:
    return pairs(d, 16) + "\n(the write key is shown only now; keep it)"


def sources(rows: list[Mapping[str, Any]]) -> str:
    return (
        "\n".join(f"{r['id']:20} {r['name']:24} key {r['write_key_prefix']}…  created {r['created_at']}" for r in rows)
        or "no sources"
    )


def rotated_secret(d: Mapping[str, Any]) -> str:
    return (
        f"new {d['kind']} secret for {d['id']}: {d['secret']}\n(the previous one keeps working until the next rotation)"
    )


def rotated_key(d: Mapping[str, Any]) -> str:
    return (
        f"new write key for {d['id']}: {d['write_key']}\n(shown only now; the previous keys work until "
        f"{d['previous_keys_valid_until']}, plus up to 30 s in a warm collector's cache)"
    )


def removed_source(d: Mapping[str, Any]) -> str:
    return f"removed {d['id']}: its key, link and webhook secrets no longer work; its stored events stay"


def link(d: Mapping[str, Any]) -> str:
    return str(d["url"])


# --- failed events ----------------------------------------------------------------------------------------------


def failures(rows: list[Mapping[str, Any]]) -> str:
    return "\n".join(f"{r['id']:34} {r['status']:>3} {r['route']:22} {r['reason']}" for r in rows) or "no failed events"


def failure(d: Mapping[str, Any]) -> str:
    return pairs(d, 12)


def replayed(d: Mapping[str, Any]) -> str:
    return "\n".join([f"replayed {r['replayed']} ({r['events']} events)" for r in d["replayed"]] + d["errors"])


# --- customers --------------------------------------------------------------------------------------------------


def customers(d: Mapping[str, Any]) -> str:
    rows: list[CustomerSummary] = d["customers"]
    return (
        "\n".join(
            f"{r.customer_id:40} {r.user_id or '-':20} {r.events:>6} events {r.orders:>3} orders "
            f"last seen {r.last_seen}"
            for r in rows
        )
        or "no customers yet"
    )


def customer(d: CustomerDetail) -> str:
    computed = d.computed
    lines = [
        f"customer   {d.customer_id}",
        f"user id    {d.user_id or '-'}",
        f"identities {', '.join(d.identities)}",
        f"seen       {d.first_seen} .. {d.last_seen}",
        f"orders     {d.orders}  revenue {d.revenue}  aov {computed['average_order_value']}",
        f"traits     {json.dumps(d.traits)}",
        f"30 days    {json.dumps(computed['rolling']['30d'])}",
        f"open cart  {json.dumps(computed['open_cart'])}",
    ]
    if d.flags:
        lines.append(f"flags      {json.dumps(d.flags)}")
    lines.append("recent events:")
    lines += [f"  {e.at}  {e.type:9} {e.event or ''}" for e in d.recent_events]
    return "\n".join(lines)


def forgotten(reference: str) -> Callable[[Forgotten], str]:
    def text(d: Forgotten) -> str:
        return (
            f"forgot {d.customer_id or reference}: {d.deleted_items} items deleted; "
            f"identities {', '.join(d.identities)} will not be stored again"
        )

    return text


# --- segments ---------------------------------------------------------------------------------------------------


def applied_segments(d: SegmentsApplied) -> str:
    return (
        "applied "
        + ", ".join(f"{s.id} v{s.version}" for s in d.segments)
        + f"; backfill: {d.entered} entered, {d.exited} exited"
    )


def segment_plan(plan: SegmentPlan) -> str:
    return "\n".join(
        f"{sid:20} +{p.enter} -{p.exit} (size {p.size}) {' '.join(p.sample_enter)}" for sid, p in plan.items()
    )


def segments(rows: list[Mapping[str, Any]]) -> str:
    return (
        "\n".join(f"{r['id']:20} {r['size']:>7} members  v{r['version']}  {r['name']}" for r in rows) or "no segments"
    )


def members(rows: list[str]) -> str:
    return "\n".join(rows) or "no members"


def segment_history(rows: list[Mapping[str, Any]]) -> str:
    return "\n".join(f"{r['at']}  {r['change']:8} {r['customer_id']}" for r in rows) or "no history"


def explanation(d: SegmentExplanation) -> str:
    return "\n".join(
        [
            f"{d.customer_id} is {'in' if d.member else 'not in'} {d.segment}",
            *(f"  - {r}" for r in d.reasons),
            f"next change: {d.next_change or 'only with a new event'}",
        ]
    )


# --- analytics --------------------------------------------------------------------------------------------------


def applied_definitions(d: Mapping[str, Any]) -> str:
    return (
        f"applied funnels {', '.join(d['funnels']) or '(none)'}; retention events "
        f"{', '.join(d['return_events'])}; recomputed {d['customers']} customers"
    )


def funnels(d: list[Mapping[str, Any]]) -> str:
    return (
        "\n".join(f"{f['id']:16} {f['name']:24} {' → '.join(s['label'] for s in f['steps'])}" for f in d)
        or "no funnels (apply some with `footfall funnels apply FILE`)"
    )


def funnel(data: Mapping[str, Any]) -> str:
    lines = [f"{data['name']} ({data['start']} → {data['end']}, journeys by entry day)"]
    first = data["steps"][0]["customers"] or 1
    lines += [_funnel_step(index, step, first) for index, step in enumerate(data["steps"], start=1)]
    for value, steps in sorted(data.get("breakdown", {}).items()):
        lines.append(f"   {value:20} " + " → ".join(str(s["customers"]) for s in steps))
    return "\n".join([*lines, *check_line(data)])


def _funnel_step(index: int, step: Mapping[str, Any], first: int) -> str:
    bar = "█" * round(30 * step["customers"] / first)
    conversion = f"{step['from_previous']:.0%} of previous" if step["from_previous"] is not None else ""
    took = (
        f"median {took_text(step['median_seconds'])}, p90 {took_text(step['p90_seconds'])}"
        if step["median_seconds"]
        else ""
    )
    return f"{index}. {step['label']:22} {step['customers']:>7} {bar:30} {conversion:16} {took}"


def took_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def check_line(data: Mapping[str, Any]) -> list[str]:
    if "check" not in data:
        return []
    agree = "equal to" if data["check"]["equal"] else "DIFFERS from"
    return [f"check: {agree} a recomputation from every stored event"]


def retention(d: Mapping[str, Any]) -> str:
    head = f"{'cohort':10} {'size':>6} " + " ".join(
        f"{o:>4}" for o in range(len(d["rows"][0]["percentages"]) if d["rows"] else 0)
    )
    rows = [
        f"{r['cohort']!s:10} {r['size']:>6} "
        + " ".join("    " if p is None else f"{p:>4.0%}" for p in r["percentages"])
        for r in d["rows"]
    ]
    mode = "on or after" if d["cumulative"] else "on"
    return "\n".join([f"returned ({d['event']}) {mode} each {d['by']}", head, *rows, *check_line(d)])


def timing(d: Mapping[str, Any]) -> str:
    lines = ["engagement by channel (all customers):"]
    for channel, hours in sorted(d["population"].items()):
        best = max(hours.items(), key=lambda kv: kv[1])
        lines.append(
            f"  {channel:8} {sum(hours.values()):>7} events, "
            f"busiest {DAYS[int(best[0]) // 24]} {int(best[0]) % 24:02d}h"
        )
    if d["recommendation"]:
        r = d["recommendation"]
        lines.append(
            f"{d['customer_id']}: best {r['channel']} on {DAYS[r['hour_of_week'] // 24]} "
            f"at {r['hour_of_week'] % 24:02d}:00 "
            f"(confidence {r['confidence']:.0%}, from {r['events']} of their events)"
        )
    return "\n".join([*lines, *check_line(d)])


# --- the table --------------------------------------------------------------------------------------------------


def migrated(d: Mapping[str, Any]) -> str:
    return "\n".join(
        [f"{s['name']}: {s['changed']} items changed" for s in d["steps"]]
        + [f"{d['table']} is at schema version {d['version']}" + ("" if d["steps"] else " (nothing to do)")]
    )


def imported(d: Mapping[str, Any]) -> str:
    return f"imported {d['imported']} items"
