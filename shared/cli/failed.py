"""`footfall failed list|show|replay`: refused input and quarantined stream records."""

from __future__ import annotations

import argparse
from typing import Any

from shared.cli import render
from shared.cli.options import CliError, add_data_options
from shared.compose import open_store
from shared.domain.events import format_timestamp
from shared.domain.failures import FailedEvent


def failure_json(failure: FailedEvent) -> dict[str, Any]:
    """A failed event as listed (no raw input)."""
    return {
        "id": failure.id,
        "received_at": format_timestamp(failure.received_at),
        "route": failure.route,
        "status": failure.status,
        "source_id": failure.source_id,
        "message_id": failure.message_id,
        "reason": failure.reason,
    }


def cmd_failed_list(args: argparse.Namespace) -> int:
    store, _ = open_store(args)
    page = store.list_failed(limit=args.limit)
    render.emit(args, [failure_json(f) for f in page.items], render.failures)
    return 0


def cmd_failed_show(args: argparse.Namespace) -> int:
    store, _ = open_store(args)
    failure = store.get_failed(args.id)
    if failure is None:
        raise CliError(f"no failed event {args.id!r}")
    data = {
        **failure_json(failure),
        "truncated": failure.truncated,
        "raw": failure.raw.decode("utf-8", "replace"),
    }
    render.emit(args, data, render.failure)
    return 0


def cmd_failed_replay(args: argparse.Namespace) -> int:
    from shared.services.collect import Collector
    from shared.services.replay import ReplayError, change_from_record, replay

    store, _ = open_store(args)
    results, errors = [], []
    for failure_id in args.ids:
        failure = store.get_failed(failure_id)
        if failure is None:
            errors.append(f"{failure_id}: no such failed event")
            continue
        try:
            results.append(replay(store, Collector(store), failure, change_from_record))
        except ReplayError as exc:
            errors.append(f"{failure_id}: {exc}")
    render.emit(args, {"replayed": results, "errors": errors}, render.replayed)
    return 1 if errors else 0


def add_failed(commands: Any) -> None:
    """`footfall failed list|show|replay`."""
    failed = commands.add_parser("failed", help="inspect failed events")
    failed_commands = failed.add_subparsers(dest="failed_command", required=True)
    failed_list = failed_commands.add_parser("list", help="newest first")
    failed_list.add_argument("--limit", type=int, default=50)
    failed_list.set_defaults(func=cmd_failed_list)
    show = failed_commands.add_parser("show", help="one failed event with its raw input")
    show.add_argument("id")
    show.set_defaults(func=cmd_failed_show)
    replay = failed_commands.add_parser("replay", help="process failed events again after a fix")
    replay.add_argument("ids", nargs="+", metavar="ID")
    replay.set_defaults(func=cmd_failed_replay)
    for sub in (failed_list, show, replay):
        add_data_options(sub)
