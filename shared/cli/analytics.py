"""`footfall funnels apply|list|show`, `footfall retention`, `footfall timing`: the analytics reports."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

from shared.cli import render
from shared.cli.options import CliError, add_connection, day, rule_document
from shared.compose import open_store
from shared.domain.errors import TrackingError


def cmd_funnels_apply(args: argparse.Namespace) -> int:
    from shared.services.analytics import apply_definitions

    store, _ = open_store(args)
    try:
        data = apply_definitions(store, rule_document(args.file), source=args.file, now=datetime.now(UTC))
    except (OSError, ValueError, TrackingError) as exc:
        raise CliError(str(exc)) from exc
    render.emit(args, data, render.applied_definitions)
    return 0


def cmd_funnels_list(args: argparse.Namespace) -> int:
    from shared.services.analytics import list_funnels

    store, _ = open_store(args)
    render.emit(args, [funnel.definition() for funnel in list_funnels(store)], render.funnels)
    return 0


def cmd_funnels_show(args: argparse.Namespace) -> int:
    from shared.services import analytics

    store, _ = open_store(args)
    today = datetime.now(UTC).date()
    end = day(args.to, today)
    start = day(getattr(args, "from"), end - timedelta(days=29))
    try:
        report = analytics.funnel_report(store, args.name, start=start, end=end, breakdown=args.breakdown is not None)
    except KeyError as exc:
        raise CliError(f"no funnel {args.name!r} (see `footfall funnels list`)") from exc
    data = asdict(report)
    if args.check:
        data["check"] = _funnel_check(store, report, start, end)
    render.emit(args, data, render.funnel)
    return 0 if not args.check or data["check"]["equal"] else 1


def _funnel_check(store: Any, report: Any, start: date, end: date) -> dict[str, Any]:
    """The report recomputed from every stored event (the brute-force path), and whether they agree."""
    from shared.domain import analytics as rules
    from shared.services import analytics

    cells = analytics.recompute(store, now=datetime.now(UTC))
    funnel = analytics.find_funnel(store, report.funnel_id)
    brute = rules.funnel_report(funnel, cells, start, end)
    equal = brute.steps == report.steps and (not report.breakdown or brute.breakdown == report.breakdown)
    return {"equal": equal, "recomputed": asdict(brute)["steps"]}


def cmd_retention(args: argparse.Namespace) -> int:
    from shared.services import analytics

    store, _ = open_store(args)
    try:
        report_day = datetime.now(UTC).date()
        report = analytics.retention_report(
            store, by=args.by, event=args.event, cumulative=args.cumulative, cohorts=args.cohorts, today=report_day
        )
    except KeyError as exc:
        raise CliError(
            f"{args.event!r} is not a tracked return event (add it to the retention events and apply)"
        ) from exc
    data = asdict(report)
    if args.check:
        data["check"] = _retention_check(store, args, report, report_day)
    render.emit(args, data, render.retention)
    return 0 if not args.check or data["check"]["equal"] else 1


def _retention_check(store: Any, args: argparse.Namespace, report: Any, report_day: date) -> dict[str, Any]:
    from shared.domain import analytics as rules
    from shared.services import analytics

    cells = analytics.recompute(store, now=datetime.now(UTC))
    brute = rules.retention_report(
        cells,
        by=args.by,
        event=args.event,
        cumulative=args.cumulative,
        today=report_day,
        cohorts=args.cohorts,
    )
    return {"equal": brute == report, "recomputed": asdict(brute)["rows"]}


def cmd_timing(args: argparse.Namespace) -> int:
    from shared.services import analytics

    store, _ = open_store(args)
    customer_id = _customer_id(store, args.customer) if args.customer else None
    report = analytics.timing_report(store, customer_id)
    data: dict[str, Any] = {
        "population": {c: {str(h): n for h, n in sorted(hours.items())} for c, hours in report.population.items()},
        "customer_id": report.customer_id,
        "recommendation": asdict(report.recommendation) if report.recommendation else None,
    }
    if args.check:
        from shared.domain import analytics as rules

        cells = analytics.recompute(store, now=datetime.now(UTC))
        population = rules.population_from(cells)
        data["check"] = {"equal": population == report.population}
    render.emit(args, data, render.timing)
    return 0 if not args.check or data["check"]["equal"] else 1


def _customer_id(store: Any, reference: str) -> str:
    from shared.services.customers import find_customer

    found = find_customer(store, reference)
    if found is None:
        raise CliError(f"no customer {reference!r}")
    return found.profile.customer_id


def add_funnels(commands: Any) -> None:
    """`footfall funnels apply|list|show`."""
    funnels = commands.add_parser("funnels", help="funnels: definitions and reports (journeys by entry day)")
    funnel_commands = funnels.add_subparsers(dest="funnels_command", required=True)
    fun_apply = funnel_commands.add_parser("apply", help="store a funnels/retention file and recompute over history")
    fun_apply.add_argument("file")
    fun_list = funnel_commands.add_parser("list", help="defined funnels")
    fun_show = funnel_commands.add_parser("show", help="steps, conversion, drop-off, time to convert")
    fun_show.add_argument("name", help="funnel id")
    fun_show.add_argument("--from", help="first entry day (YYYY-MM-DD; default 29 days before --to)")
    fun_show.add_argument("--to", help="last entry day (default today, UTC)")
    fun_show.add_argument("--breakdown", choices=["channel"], help="by the funnel's breakdown (channel or property)")
    fun_show.add_argument("--check", action="store_true", help="also recompute from every stored event and compare")
    for sub, func in ((fun_apply, cmd_funnels_apply), (fun_list, cmd_funnels_list), (fun_show, cmd_funnels_show)):
        add_connection(sub)
        sub.add_argument("--json", action="store_true")
        sub.set_defaults(func=func)


def add_reports(commands: Any) -> None:
    """`footfall retention` and `footfall timing`."""
    retention = commands.add_parser("retention", help="cohort retention table")
    retention.add_argument("--by", choices=["day", "week"], default="day")
    retention.add_argument("--event", default="*", help="return event (default * = any; tracked events only)")
    retention.add_argument("--cumulative", action="store_true", help="came back on or after each offset")
    retention.add_argument("--cohorts", type=int, default=14, help="how many cohorts (default 14)")
    timing = commands.add_parser("timing", help="best time and channel: population table, or one customer's")
    timing.add_argument("--customer", help="customer id, userId, anonymousId or e-mail")
    for sub, func in ((retention, cmd_retention), (timing, cmd_timing)):
        add_connection(sub)
        sub.add_argument("--json", action="store_true")
        sub.add_argument("--check", action="store_true", help="also recompute from every stored event and compare")
        sub.set_defaults(func=func)
