"""`footfall`: run the local stack and manage sources, links and failed events.

Query commands take `--json`; errors go to stderr with a non-zero exit code. Commands find the local
stack through `--data-dir` (its `serve.json`), or take `--endpoint-url/--table/--region/--profile`.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from shared.domain import links
from shared.domain.errors import TrackingError
from shared.domain.events import format_timestamp
from shared.domain.sources import Source, new_source, rotate_secret
from shared.domain.webhooks import mapping_from_dict
from shared.ports import StorageError
from shared.storage.dynamo import DynamoTrackingStore, make_client

DEFAULT_DATA_DIR = Path(".footfall")
_SOURCE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class CliError(Exception):
    """A problem the user can fix; printed without a traceback."""


def _connection(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("where the data is")
    group.add_argument(
        "--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="local stack data directory (default .footfall)"
    )
    group.add_argument("--endpoint-url", help="DynamoDB-compatible endpoint (instead of the local stack)")
    group.add_argument("--table", help="table name")
    group.add_argument("--region", help="AWS region")
    group.add_argument("--profile", help="AWS profile (for AWS)")


def _store(args: argparse.Namespace) -> tuple[DynamoTrackingStore, dict[str, Any]]:
    from shared.local.stack import DEFAULT_REGION, DEFAULT_TABLE, read_info

    info = read_info(args.data_dir)
    endpoint = args.endpoint_url
    if endpoint is None and args.profile is None and args.table is None:
        if info is None:
            raise CliError(
                f"no local stack found in {args.data_dir} (start one with `footfall serve`), "
                "or pass --endpoint-url / --table / --profile"
            )
        endpoint = info.dynamodb_endpoint
    table = args.table or (info.table if info else DEFAULT_TABLE)
    region = args.region or (info.region if info and endpoint == info.dynamodb_endpoint else None)
    if endpoint:
        region = region or DEFAULT_REGION
    client = make_client(endpoint_url=endpoint, region=region, profile=args.profile)
    return DynamoTrackingStore(table, client=client), {"info": info}


def _print(args: argparse.Namespace, data: Any, text: Callable[[Any], str]) -> None:
    print(json.dumps(data, indent=2) if getattr(args, "json", False) else text(data))


def _source_json(source: Source, *, with_secrets: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": source.id,
        "name": source.name,
        "created_at": format_timestamp(source.created_at),
        "write_key_prefix": source.write_key_prefix,
        "hash_emails": source.hash_emails,
        "webhook_mapping": source.webhook_mapping is not None,
    }
    if with_secrets:
        data.update(link_secret=source.link_secrets[0], webhook_secret=source.webhook_secrets[0])
    return data


# --- commands ---------------------------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from shared.local import stack

    try:
        running = stack.start(
            data_dir=args.data_dir,
            host=args.host,
            port=args.port,
            endpoint_url=args.endpoint_url,
            table=args.table or stack.DEFAULT_TABLE,
            region=args.region or stack.DEFAULT_REGION,
            workers=args.workers,
        )
    except RuntimeError as exc:
        raise CliError(str(exc)) from exc
    return stack.run(running)


def cmd_sources_add(args: argparse.Namespace) -> int:
    if not _SOURCE_ID.match(args.id or _slug(args.name)):
        raise CliError("source id must be 1-63 of a-z, 0-9, '_' and '-' (use --id)")
    store, _ = _store(args)
    source_id = args.id or _slug(args.name)
    if store.get_source(source_id) is not None:
        raise CliError(f"source {source_id!r} exists already")
    source, write_key = new_source(
        source_id=source_id, name=args.name, created_at=datetime.now(UTC), token=secrets.token_urlsafe
    )
    mapping = None
    if args.webhook_mapping:
        try:
            mapping = mapping_from_dict(json.loads(Path(args.webhook_mapping).read_text()))
        except (OSError, ValueError, TypeError, TrackingError) as exc:
            raise CliError(f"{args.webhook_mapping}: {exc}") from exc
    source = replace(source, hash_emails=args.hash_emails, webhook_mapping=mapping)
    store.put_source(source, write_keys=[write_key])
    data = {**_source_json(source, with_secrets=True), "write_key": write_key}
    _print(
        args,
        data,
        lambda d: "\n".join(f"{k:16} {v}" for k, v in d.items()) + "\n(the write key is shown only now; keep it)",
    )
    return 0


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-")[:63]


def cmd_sources_list(args: argparse.Namespace) -> int:
    store, _ = _store(args)
    data = [_source_json(source) for source in store.list_sources()]
    _print(
        args,
        data,
        lambda rows: (
            "\n".join(
                f"{r['id']:20} {r['name']:24} key {r['write_key_prefix']}…  created {r['created_at']}" for r in rows
            )
            or "no sources"
        ),
    )
    return 0


def cmd_sources_rotate(args: argparse.Namespace) -> int:
    store, _ = _store(args)
    source = store.get_source(args.source)
    if source is None:
        raise CliError(f"no source {args.source!r}")
    rotated = rotate_secret(source, args.kind, "ffs_" + secrets.token_urlsafe(32))
    store.put_source(rotated)
    data = {
        "id": rotated.id,
        "kind": args.kind,
        "secret": getattr(rotated, f"{args.kind}_secrets")[0],
        "still_valid": len(getattr(rotated, f"{args.kind}_secrets")) - 1,
    }
    _print(
        args,
        data,
        lambda d: (
            f"new {d['kind']} secret for {d['id']}: {d['secret']}\n"
            f"(the previous one keeps working until the next rotation)"
        ),
    )
    return 0


def cmd_links_sign(args: argparse.Namespace) -> int:
    store, extra = _store(args)
    source = store.get_source(args.source)
    if source is None:
        raise CliError(f"no source {args.source!r}")
    if not (args.user_id or args.anonymous_id):
        raise CliError("a click must be attributable: pass --user-id or --anonymous-id")
    properties = dict(_pair(p) for p in args.property)
    expires = datetime.now(UTC) + _duration(args.expires_in) if args.expires_in else None
    base = args.base_url or (extra["info"].collector_url if extra["info"] else None)
    if not base:
        raise CliError("pass --base-url (the collector's public URL)")
    try:
        params = links.click_params(
            source_id=source.id,
            target=args.url,
            secret=source.link_secrets[0],
            event=args.event,
            user_id=args.user_id,
            anonymous_id=args.anonymous_id,
            properties=properties,
            expires_at=expires,
        )
    except TrackingError as exc:
        raise CliError(str(exc)) from exc
    url = links.click_url(base, params)
    _print(args, {"url": url}, lambda d: d["url"])
    return 0


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise CliError(f"--property wants key=value, not {text!r}")
    return key, value


def _duration(text: str) -> timedelta:
    match = re.fullmatch(r"(\d+)([smhd])", text.strip())
    if not match:
        raise CliError(f"duration like 30m, 12h or 7d expected, not {text!r}")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
    return timedelta(**{unit: int(match.group(1))})


def cmd_failed_list(args: argparse.Namespace) -> int:
    store, _ = _store(args)
    page = store.list_failed(limit=args.limit)
    data = [
        {
            "id": f.id,
            "received_at": format_timestamp(f.received_at),
            "route": f.route,
            "status": f.status,
            "source_id": f.source_id,
            "message_id": f.message_id,
            "reason": f.reason,
        }
        for f in page.items
    ]
    _print(
        args,
        data,
        lambda rows: (
            "\n".join(f"{r['id']:34} {r['status']:>3} {r['route']:22} {r['reason']}" for r in rows)
            or "no failed events"
        ),
    )
    return 0


def cmd_failed_show(args: argparse.Namespace) -> int:
    store, _ = _store(args)
    failure = store.get_failed(args.id)
    if failure is None:
        raise CliError(f"no failed event {args.id!r}")
    data = {
        "id": failure.id,
        "received_at": format_timestamp(failure.received_at),
        "route": failure.route,
        "status": failure.status,
        "source_id": failure.source_id,
        "message_id": failure.message_id,
        "reason": failure.reason,
        "truncated": failure.truncated,
        "raw": failure.raw.decode("utf-8", "replace"),
    }
    _print(args, data, lambda d: "\n".join(f"{k:12} {v}" for k, v in d.items()))
    return 0


def cmd_customers_list(args: argparse.Namespace) -> int:
    from shared.services.customers import customer_summary

    store, _ = _store(args)
    page = store.list_customers(limit=args.limit, next_token=args.next)
    rows = [customer_summary(stored.profile) for stored in page.items]
    data = {"customers": rows, "next": page.next_token}
    _print(
        args,
        data,
        lambda d: (
            "\n".join(
                f"{r['customer_id']:40} {r['user_id'] or '-':20} {r['events']:>6} events {r['orders']:>3} orders "
                f"last seen {r['last_seen']}"
                for r in d["customers"]
            )
            or "no customers yet"
        ),
    )
    return 0


def cmd_customers_show(args: argparse.Namespace) -> int:
    from shared.services.customers import customer_detail, find_customer

    store, _ = _store(args)
    stored = find_customer(store, args.id)
    if stored is None:
        raise CliError(f"no customer {args.id!r}")
    data = customer_detail(store, stored, now=datetime.now(UTC), recent=args.events)
    _print(args, data, _customer_text)
    return 0


def _customer_text(d: dict[str, Any]) -> str:
    computed = d["computed"]
    lines = [
        f"customer   {d['customer_id']}",
        f"user id    {d['user_id'] or '-'}",
        f"identities {', '.join(d['identities'])}",
        f"seen       {d['first_seen']} .. {d['last_seen']}",
        f"orders     {d['orders']}  revenue {d['revenue']}  aov {computed['average_order_value']}",
        f"traits     {json.dumps(d['traits'])}",
        f"30 days    {json.dumps(computed['rolling']['30d'])}",
        f"open cart  {json.dumps(computed['open_cart'])}",
    ]
    if d["flags"]:
        lines.append(f"flags      {json.dumps(d['flags'])}")
    lines.append("recent events:")
    lines += [f"  {e['at']}  {e['type']:9} {e['event'] or ''}" for e in d["recent_events"]]
    return "\n".join(lines)


def cmd_failed_replay(args: argparse.Namespace) -> int:
    from shared.services.collect import Collector
    from shared.services.replay import ReplayError, replay

    store, _ = _store(args)
    results, errors = [], []
    for failure_id in args.ids:
        failure = store.get_failed(failure_id)
        if failure is None:
            errors.append(f"{failure_id}: no such failed event")
            continue
        try:
            results.append(replay(store, Collector(store), failure, _change_from_record))
        except ReplayError as exc:
            errors.append(f"{failure_id}: {exc}")
    _print(
        args,
        {"replayed": results, "errors": errors},
        lambda d: "\n".join([f"replayed {r['replayed']} ({r['events']} events)" for r in d["replayed"]] + d["errors"]),
    )
    return 1 if errors else 0


def _change_from_record(record: dict[str, Any]) -> Any:
    from shared.services.process import StreamChange
    from shared.storage import items
    from shared.storage.dynamo import deserialize_wire

    data = record["dynamodb"]
    event = items.decode_change(
        old=deserialize_wire(data["OldImage"]) if "OldImage" in data else None,
        new=deserialize_wire(data["NewImage"]) if "NewImage" in data else None,
    )
    return None if event is None else StreamChange(data["SequenceNumber"], event)


def _rule_document(path: str) -> Any:
    text = Path(path).read_text()
    if path.endswith((".yaml", ".yml")):
        try:
            import yaml
        except ImportError as exc:
            raise CliError("YAML rule files need PyYAML (pip install pyyaml), or use JSON") from exc
        return yaml.safe_load(text)
    return json.loads(text)


def _all_customer_ids(store: DynamoTrackingStore) -> list[str]:
    ids: list[str] = []
    token = None
    while True:
        page = store.list_customers(limit=500, next_token=token)
        ids += [stored.profile.customer_id for stored in page.items]
        token = page.next_token
        if not token:
            return ids


def cmd_segments_apply(args: argparse.Namespace) -> int:
    from shared.services.segments import apply_segments

    store, _ = _store(args)
    try:
        document = _rule_document(args.file)
        data = apply_segments(
            store, document, source=args.file, now=datetime.now(UTC), customers=_all_customer_ids(store)
        )
    except (OSError, ValueError, TrackingError) as exc:
        raise CliError(str(exc)) from exc
    _print(
        args,
        data,
        lambda d: (
            "applied "
            + ", ".join(f"{s['id']} v{s['version']}" for s in d["segments"])
            + f"; backfill: {d['entered']} entered, {d['exited']} exited"
        ),
    )
    return 0


def cmd_segments_plan(args: argparse.Namespace) -> int:
    from shared.services.segments import plan_segments

    store, _ = _store(args)
    try:
        data = plan_segments(
            store,
            _rule_document(args.file),
            source=args.file,
            now=datetime.now(UTC),
            customers=_all_customer_ids(store),
            members=lambda sid: store.segment_members(sid),
        )
    except (OSError, ValueError, TrackingError) as exc:
        raise CliError(str(exc)) from exc
    _print(
        args,
        data,
        lambda d: "\n".join(
            f"{sid:20} +{p['enter']} -{p['exit']} (size {p['size']}) {' '.join(p['sample_enter'])}"
            for sid, p in d.items()
        ),
    )
    return 0


def cmd_segments_list(args: argparse.Namespace) -> int:
    store, _ = _store(args)
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
    _print(
        args,
        data,
        lambda rows: (
            "\n".join(f"{r['id']:20} {r['size']:>7} members  v{r['version']}  {r['name']}" for r in rows)
            or "no segments"
        ),
    )
    return 0


def cmd_segments_members(args: argparse.Namespace) -> int:
    store, _ = _store(args)
    if args.at:
        until = args.at.replace("Z", "+00:00")
        try:
            moment = datetime.fromisoformat(until)
        except ValueError as exc:
            raise CliError(f"--at wants an ISO time, not {args.at!r}") from exc
        members: set[str] = set()
        for _at, customer_id, entered in store.segment_history(args.segment, until=format_timestamp(moment)):
            (members.add if entered else members.discard)(customer_id)
        data = sorted(members)
    else:
        data = sorted(store.segment_members(args.segment))
    _print(args, data, lambda rows: "\n".join(rows) or "no members")
    return 0


def cmd_segments_history(args: argparse.Namespace) -> int:
    store, _ = _store(args)
    data = [
        {"at": at, "customer_id": cid, "change": "entered" if entered else "exited"}
        for at, cid, entered in store.segment_history(args.segment)
    ]
    _print(
        args,
        data,
        lambda rows: "\n".join(f"{r['at']}  {r['change']:8} {r['customer_id']}" for r in rows) or "no history",
    )
    return 0


def cmd_segments_explain(args: argparse.Namespace) -> int:
    from shared.services.customers import find_customer
    from shared.services.segments import explain, rules_of

    store, _ = _store(args)
    rules = {rule.id: rule for rule in rules_of(store.list_segments())}
    if args.segment not in rules:
        raise CliError(f"no segment {args.segment!r}")
    stored = find_customer(store, args.customer)
    if stored is None:
        raise CliError(f"no customer {args.customer!r}")
    data = explain(store, rules[args.segment], stored, now=datetime.now(UTC))
    _print(
        args,
        data,
        lambda d: "\n".join(
            [
                f"{d['customer_id']} is {'in' if d['member'] else 'not in'} {d['segment']}",
                *(f"  - {r}" for r in d["reasons"]),
                f"next change: {d['next_change'] or 'only with a new event'}",
            ]
        ),
    )
    return 0


def cmd_forget(args: argparse.Namespace) -> int:
    from shared.services.customers import forget_customer

    if not args.yes:
        raise CliError(
            f"this erases every event, identity and profile of {args.id!r} and refuses its future "
            "events; run again with --yes"
        )
    store, _ = _store(args)
    data = forget_customer(store, args.id, now=datetime.now(UTC))
    _print(
        args,
        data,
        lambda d: (
            f"forgot {d['customer_id'] or args.id}: {d['deleted_items']} items deleted; "
            f"identities {', '.join(d['identities'])} will not be stored again"
        ),
    )
    return 0


# --- parser -----------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="footfall", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    for name, helptext in (
        ("serve", "run the local stack"),
        ("demo", "run the local stack (the traffic simulator and TUI come with later releases)"),
    ):
        serve = commands.add_parser(name, help=helptext)
        serve.add_argument("--host", default="127.0.0.1")
        serve.add_argument("--port", type=int, default=8788)
        serve.add_argument("--workers", type=int, default=2, help="collector worker processes (default 2)")
        _connection(serve)
        serve.set_defaults(func=cmd_serve)

    sources = commands.add_parser("sources", help="manage sources (write keys, link and webhook secrets)")
    source_commands = sources.add_subparsers(dest="sources_command", required=True)
    add = source_commands.add_parser("add", help="create a source and print its write key once")
    add.add_argument("name")
    add.add_argument("--id", help="source id (default: from the name)")
    add.add_argument("--hash-emails", action="store_true", help="store e-mail addresses only as SHA-256")
    add.add_argument("--webhook-mapping", help="JSON file mapping this source's webhook payloads to events")
    add.set_defaults(func=cmd_sources_add)
    listing = source_commands.add_parser("list", help="list sources")
    listing.set_defaults(func=cmd_sources_list)
    rotate = source_commands.add_parser("rotate-secret", help="new link or webhook secret; the previous stays valid")
    rotate.add_argument("source")
    rotate.add_argument("--kind", choices=("link", "webhook"), required=True)
    rotate.set_defaults(func=cmd_sources_rotate)

    link_parser = commands.add_parser("links", help="signed click-redirect links")
    link_commands = link_parser.add_subparsers(dest="links_command", required=True)
    sign = link_commands.add_parser("sign", help="make a signed /v1/r link")
    sign.add_argument("--source", required=True)
    sign.add_argument("--url", required=True, help="where the click goes")
    sign.add_argument("--event", default=links.DEFAULT_CLICK_EVENT)
    sign.add_argument("--user-id")
    sign.add_argument("--anonymous-id")
    sign.add_argument("--property", action="append", default=[], metavar="KEY=VALUE")
    sign.add_argument("--expires-in", metavar="DURATION", help="e.g. 30d")
    sign.add_argument("--base-url", help="collector URL (default: the local stack's)")
    sign.set_defaults(func=cmd_links_sign)

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

    customers = commands.add_parser("customers", help="customer profiles")
    customer_commands = customers.add_subparsers(dest="customers_command", required=True)
    customers_list = customer_commands.add_parser("list", help="a page of customers")
    customers_list.add_argument("--limit", type=int, default=50)
    customers_list.add_argument("--next", help="page token from the previous page")
    customers_list.set_defaults(func=cmd_customers_list)
    customers_show = customer_commands.add_parser("show", help="one customer: profile, traits, events")
    customers_show.add_argument("id", help="customer id, userId, anonymousId, or u:/a: identity")
    customers_show.add_argument("--events", type=int, default=20, help="recent events to show")
    customers_show.set_defaults(func=cmd_customers_show)

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
    seg_history.set_defaults(func=cmd_segments_history)
    seg_explain = segment_commands.add_parser("explain", help="why a customer is in or out, and when that changes")
    seg_explain.add_argument("segment")
    seg_explain.add_argument("customer")
    seg_explain.set_defaults(func=cmd_segments_explain)

    forget = commands.add_parser("forget", help="erase a customer (GDPR) and refuse their future events")
    forget.add_argument("id", help="customer id, userId, anonymousId, or u:/a: identity")
    forget.add_argument("--yes", action="store_true", help="really erase")
    forget.set_defaults(func=cmd_forget)

    from shared.deploy import add_parser as add_deploy_parser  # `footfall deploy` owns its options and errors

    add_deploy_parser(commands)

    for sub in (
        add,
        listing,
        rotate,
        sign,
        failed_list,
        show,
        replay,
        customers_list,
        customers_show,
        forget,
        seg_apply,
        seg_plan,
        seg_list,
        seg_members,
        seg_history,
        seg_explain,
    ):
        _connection(sub)
        sub.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `footfall` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CliError as exc:
        print(f"footfall: {exc}", file=sys.stderr)
        return 2
    except StorageError as exc:
        print(f"footfall: storage error: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
