"""`footfall segments apply|plan|list|members|history|explain`: behavioural segments."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from shared.cli import render
from shared.cli.options import CliError, add_data_options, rule_document
from shared.compose import open_store
from shared.domain.errors import TrackingError
from shared.domain.events import format_timestamp
from shared.storage.dynamo import DynamoTrackingStore


def _all_customer_ids(store: DynamoTrackingStore) -> list[str]:
    from shared.services.analytics import all_customer_ids

    return list(all_customer_ids(store))


def cmd_segments_apply(args: argparse.Namespace) -> int:
    from shared.services.segments import apply_segments

    store, _ = open_store(args)
    try:
        document = rule_document(args.file)
        data = apply_segments(
            store, document, source=args.file, now=datetime.now(UTC), customers=_all_customer_ids(store)
        )
    except (OSError, ValueError, TrackingError) as exc:
        raise CliError(str(exc)) from exc
    render.emit(args, data, render.applied_segments)
    return 0


def cmd_segments_plan(args: argparse.Namespace) -> int:
    from shared.services.segments import plan_segments

    store, _ = open_store(args)
    try:
        data = plan_segments(
            store,
            rule_document(args.file),
            source=args.file,
            now=datetime.now(UTC),
            customers=_all_customer_ids(store),
            members=lambda sid: store.segment_members(sid),
        )
    except (OSError, ValueError, TrackingError) as exc:
        raise CliError(str(exc)) from exc
    render.emit(args, data, render.segment_plan)
    return 0


def cmd_segments_list(args: argparse.Namespace) -> int:
    store, _ = open_store(args)
    data = [
        {
            "id": s.id,
            "name": s.name,
            "version": s.version,
            "size": sum(1 for _ in store.segment_members(s.id)),
            "applied_at": s.applied_at,
        }
        for s in store.list_segments()
    ]
    render.emit(args, data, render.segments)
    return 0


def cmd_segments_members(args: argparse.Namespace) -> int:
    store, _ = open_store(args)
    if args.at:
        moment = _moment(args.at)
        members: set[str] = set()
        for _at, customer_id, entered in store.segment_history(args.segment, until=format_timestamp(moment)):
            (members.add if entered else members.discard)(customer_id)
        data = sorted(members)
    else:
        data = sorted(store.segment_members(args.segment))
    render.emit(args, data, render.members)
    return 0


def _moment(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise CliError(f"--at wants an ISO time, not {text!r}") from exc


def cmd_segments_history(args: argparse.Namespace) -> int:
    store, _ = open_store(args)
    # `--last N` reads only the N latest (one newest-first Query); the whole history only when asked for it.
    rows = (
        store.recent_segment_history(args.segment, limit=args.last)
        if args.last is not None
        else store.segment_history(args.segment)
    )
    data = [{"at": at, "customer_id": cid, "change": "entered" if entered else "exited"} for at, cid, entered in rows]
    render.emit(args, data, render.segment_history)
    return 0


def cmd_segments_explain(args: argparse.Namespace) -> int:
    from shared.services.customers import find_customer
    from shared.services.segments import explain, rules_of

    store, _ = open_store(args)
    rules = {rule.id: rule for rule in rules_of(store.list_segments())}
    if args.segment not in rules:
        raise CliError(f"no segment {args.segment!r}")
    stored = find_customer(store, args.customer)
    if stored is None:
        raise CliError(f"no customer {args.customer!r}")
    render.emit(args, explain(store, rules[args.segment], stored, now=datetime.now(UTC)), render.explanation)
    return 0


def add_segments(commands: Any) -> None:
    """`footfall segments …`."""
    segments = commands.add_parser("segments", help="behavioral segments: rules, members, history")
    segment_commands = segments.add_subparsers(dest="segments_command", required=True)
    seg_apply = segment_commands.add_parser("apply", help="store a rule file (JSON/YAML) and backfill memberships")
    seg_apply.add_argument("file")
    seg_apply.set_defaults(func=cmd_segments_apply)
    seg_plan = segment_commands.add_parser("plan", help="the membership diff a rule file would make; changes nothing")
    seg_plan.add_argument("file")
    seg_plan.set_defaults(func=cmd_segments_plan)
    seg_list = segment_commands.add_parser("list", help="segments with their size and rule version")
    seg_list.set_defaults(func=cmd_segments_list)
    seg_members = segment_commands.add_parser("members", help="who is in a segment (now, or --at a time)")
    seg_members.add_argument("segment")
    seg_members.add_argument("--at", help="ISO time, e.g. 2026-03-03T12:00Z")
    seg_members.set_defaults(func=cmd_segments_members)
    seg_history = segment_commands.add_parser("history", help="entries and exits, oldest first")
    seg_history.add_argument("segment")
    seg_history.add_argument("--last", type=int, metavar="N", help="only the N latest, newest first")
    seg_history.set_defaults(func=cmd_segments_history)
    seg_explain = segment_commands.add_parser("explain", help="why a customer is in or out, and when that changes")
    seg_explain.add_argument("segment")
    seg_explain.add_argument("customer")
    seg_explain.set_defaults(func=cmd_segments_explain)
    for sub in (seg_apply, seg_plan, seg_list, seg_members, seg_history, seg_explain):
        add_data_options(sub)
