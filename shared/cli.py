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
from dataclasses import asdict, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from shared.compose import open_store
from shared.domain import links
from shared.domain.errors import TrackingError
from shared.domain.events import format_timestamp
from shared.domain.sources import (
    CLIENT_TRUST,
    DEFAULT_KEY_GRACE,
    TRUST_LEVELS,
    WRITE_KEY_PREFIX,
    Source,
    new_source,
    rotate_secret,
    rotate_write_key,
)
from shared.domain.webhooks import mapping_from_dict
from shared.errors import OperatorError
from shared.ports import StorageError
from shared.storage.dynamo import DynamoTrackingStore, make_client
from shared.storage.sqlite import DamagedDatabaseError

DEFAULT_DATA_DIR = Path(".footfall")
_SOURCE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


CliError = OperatorError
"""A problem the user can fix; printed without a traceback (the TUI raises the same, from `shared.errors`)."""


def _connection(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("where the data is")
    group.add_argument(
        "--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="local stack data directory (default .footfall)"
    )
    group.add_argument("--endpoint-url", help="DynamoDB-compatible endpoint (instead of the local stack)")
    group.add_argument("--table", help="table name")
    group.add_argument("--region", help="AWS region")
    group.add_argument("--profile", help="AWS profile (for AWS)")


def _print(args: argparse.Namespace, data: Any, text: Callable[[Any], str]) -> None:
    print(json.dumps(data, indent=2, default=str) if getattr(args, "json", False) else text(data))


def _source_json(source: Source, *, with_secrets: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": source.id,
        "name": source.name,
        "created_at": format_timestamp(source.created_at),
        "write_key_prefix": source.write_key_prefix,
        "hash_emails": source.hash_emails,
        "trust": source.trust,
        "webhook_mapping": source.webhook_mapping is not None,
    }
    if with_secrets:
        data.update(link_secret=source.link_secrets[0], webhook_secret=source.webhook_secrets[0])
    return data


# --- commands ---------------------------------------------------------------------------------------------------


def _start_stack(args: argparse.Namespace) -> Any:
    from shared.local import stack

    if args.durable and args.endpoint_url:
        raise CliError("--durable is for the embedded database; an --endpoint-url keeps its own durability")
    try:
        return stack.start(
            data_dir=args.data_dir,
            host=args.host,
            port=args.port,
            endpoint_url=args.endpoint_url,
            table=args.table or stack.DEFAULT_TABLE,
            region=args.region or stack.DEFAULT_REGION,
            workers=args.workers,
            durable=args.durable,
        )
    except RuntimeError as exc:
        raise CliError(str(exc)) from exc


def cmd_serve(args: argparse.Namespace) -> int:
    from shared.local import stack

    return stack.run(_start_stack(args))


def _tui_runner() -> Callable[[argparse.Namespace], int] | None:
    """`tui.app.run`, when the TUI and its dependencies are installed."""
    try:
        from tui import app
    except ImportError as exc:
        print(f"footfall demo: no TUI ({exc}); the stack stays in the foreground", file=sys.stderr)
        return None
    runner = getattr(app, "run", None)
    return runner if callable(runner) else None


def cmd_demo(args: argparse.Namespace) -> int:
    """The local stack, the traffic simulator in a background thread (history, then live), and the TUI."""
    import contextlib
    import threading

    from shared import simulate
    from shared.local import stack

    runner = None if args.no_tui else _tui_runner()
    running = _start_stack(args)
    try:
        info = running.info
        client = make_client(endpoint_url=info.dynamodb_endpoint, region=info.region)
        store = DynamoTrackingStore(info.table, client=client)
        target = simulate.local_target(args.data_dir, find_source=store.get_source)
    except (simulate.SimulatorError, StorageError) as exc:
        running.stop()
        raise CliError(str(exc)) from exc
    stop = threading.Event()

    def simulate_traffic(out: Callable[[str], None]) -> None:
        try:
            simulate.run(
                target,
                customers=args.customers,
                days=args.days,
                seed=args.seed,
                rate=0,
                live_rate=args.rate,
                stop=stop,
                out=out,
                progress_every=10,
            )
        except simulate.SimulatorError as exc:
            if not stop.is_set():  # a collector that goes away while stopping is expected
                out(f"simulate: stopped: {exc}")

    if runner is None:
        thread = threading.Thread(target=simulate_traffic, args=(print,), name="simulate", daemon=True)
        thread.start()
        try:
            return stack.run(running)
        finally:
            stop.set()
            thread.join(timeout=10)
    log_path = args.data_dir / "demo.log"
    # The TUI owns the terminal: the stack's and the simulator's output go to a log file meanwhile.
    with log_path.open("a") as log, contextlib.redirect_stdout(log):

        def to_log(line: str) -> None:
            log.write(line + "\n")
            log.flush()

        thread = threading.Thread(target=simulate_traffic, args=(to_log,), name="simulate", daemon=True)
        thread.start()
        try:
            code = runner(args)
        finally:
            stop.set()
            thread.join(timeout=10)
            running.stop()
    print(f"footfall demo: stopped (simulator and stack output in {log_path})")
    return int(code or 0)


def cmd_simulate(args: argparse.Namespace) -> int:
    """`footfall simulate`: realistic traffic through the collector (see shared/simulate/)."""
    import signal
    import threading

    from shared import simulate

    if args.customers < 0 or args.days <= 0 or args.rate < 0 or (args.live_rate or 0) < 0:
        raise CliError("--customers must be >= 0, --days > 0, --rate and --live-rate >= 0")

    def find_source(source_id: str) -> Source | None:
        store, _ = open_store(args)
        return store.get_source(source_id)

    try:
        target = simulate.local_target(
            args.data_dir,
            find_source=None if args.link_secret else find_source,
            url=args.url,
            write_key=args.write_key,
            source_id=args.source,
            link_secret=args.link_secret,
        )
    except simulate.SimulatorError as exc:
        raise CliError(str(exc)) from exc
    stop = threading.Event()

    def stopping(*_: Any) -> None:
        stop.set()  # finish the request in flight and print the figures; a second Ctrl-C interrupts at once
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, stopping)
    signal.signal(signal.SIGTERM, stopping)
    live_rate = (args.live_rate or args.rate or simulate.DEFAULT_LIVE_RATE) if args.live else None
    out = (lambda line: print(line, file=sys.stderr)) if args.json else print
    try:
        stats = simulate.run(
            target,
            customers=args.customers,
            days=args.days,
            seed=args.seed,
            rate=args.rate,
            live_rate=live_rate,
            stop=stop,
            out=out,
        )
    except simulate.SimulatorError as exc:
        raise CliError(str(exc)) from exc
    _print(args, stats.to_json(), lambda _: f"simulate: {'stopped' if stop.is_set() else 'done'}: {stats.line()}")
    return 1 if stats.rejected or stats.not_stored else 0


def _existing_source(store: DynamoTrackingStore, source_id: str) -> Source:
    source = store.get_source(source_id)
    if source is None:
        raise CliError(f"no source {source_id!r}")
    return source


def cmd_sources_add(args: argparse.Namespace) -> int:
    source_id = args.id or _slug(args.name)
    if not _SOURCE_ID.match(source_id):
        raise CliError("source id must be 1-63 of a-z, 0-9, '_' and '-' (use --id)")
    try:  # the domain refuses reserved ids before anything is read or written
        source, write_key = new_source(
            source_id=source_id, name=args.name, created_at=datetime.now(UTC), token=secrets.token_urlsafe
        )
    except TrackingError as exc:
        raise CliError(str(exc)) from exc
    store, _ = open_store(args)
    if store.get_source(source_id) is not None:
        raise CliError(f"source {source_id!r} exists already")
    mapping = None
    if args.webhook_mapping:
        try:
            mapping = mapping_from_dict(json.loads(Path(args.webhook_mapping).read_text()))
        except (OSError, ValueError, TypeError, TrackingError) as exc:
            raise CliError(f"{args.webhook_mapping}: {exc}") from exc
    source = replace(source, hash_emails=args.hash_emails, webhook_mapping=mapping, trust=args.trust)
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
    store, _ = open_store(args)
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
    store, _ = open_store(args)
    source = _existing_source(store, args.source)
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


def cmd_sources_rotate_key(args: argparse.Namespace) -> int:
    store, _ = open_store(args)
    source = _existing_source(store, args.source)
    grace = _duration(args.grace)
    write_key = WRITE_KEY_PREFIX + secrets.token_urlsafe(24)
    now = datetime.now(UTC)
    try:
        rotated = rotate_write_key(source, write_key, now=now, grace=grace)
    except TrackingError as exc:
        raise CliError(str(exc)) from exc
    store.put_source(rotated, write_keys=[write_key])
    data = {"id": rotated.id, "write_key": write_key, "previous_keys_valid_until": format_timestamp(now + grace)}
    _print(
        args,
        data,
        lambda d: (
            f"new write key for {d['id']}: {d['write_key']}\n(shown only now; the previous keys work until "
            f"{d['previous_keys_valid_until']}, plus up to 30 s in a warm collector's cache)"
        ),
    )
    return 0


def cmd_sources_remove(args: argparse.Namespace) -> int:
    store, _ = open_store(args)
    source = _existing_source(store, args.source)
    if not args.yes:
        raise CliError(f"removing {source.id!r} revokes its write key and secrets: pass --yes")
    store.remove_source(source)
    _print(
        args,
        {"id": source.id, "removed": True},
        lambda d: f"removed {d['id']}: its key, link and webhook secrets no longer work; its stored events stay",
    )
    return 0


def cmd_links_sign(args: argparse.Namespace) -> int:
    store, extra = open_store(args)
    source = _existing_source(store, args.source)
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
    store, _ = open_store(args)
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
    store, _ = open_store(args)
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

    store, _ = open_store(args)
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

    store, _ = open_store(args)
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
    _print(
        args,
        {"replayed": results, "errors": errors},
        lambda d: "\n".join([f"replayed {r['replayed']} ({r['events']} events)" for r in d["replayed"]] + d["errors"]),
    )
    return 1 if errors else 0


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
    from shared.services.analytics import all_customer_ids

    return list(all_customer_ids(store))


def cmd_segments_apply(args: argparse.Namespace) -> int:
    from shared.services.segments import apply_segments

    store, _ = open_store(args)
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

    store, _ = open_store(args)
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
    store, _ = open_store(args)
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
    store, _ = open_store(args)
    # `--last N` reads only the N latest (one newest-first Query); the whole history only when asked for it.
    rows = (
        store.recent_segment_history(args.segment, limit=args.last)
        if args.last is not None
        else store.segment_history(args.segment)
    )
    data = [{"at": at, "customer_id": cid, "change": "entered" if entered else "exited"} for at, cid, entered in rows]
    _print(
        args,
        data,
        lambda rows: "\n".join(f"{r['at']}  {r['change']:8} {r['customer_id']}" for r in rows) or "no history",
    )
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


def cmd_funnels_apply(args: argparse.Namespace) -> int:
    from shared.services.analytics import apply_definitions

    store, _ = open_store(args)
    try:
        data = apply_definitions(store, _rule_document(args.file), source=args.file, now=datetime.now(UTC))
    except (OSError, ValueError, TrackingError) as exc:
        raise CliError(str(exc)) from exc
    _print(
        args,
        data,
        lambda d: (
            f"applied funnels {', '.join(d['funnels']) or '(none)'}; retention events "
            f"{', '.join(d['return_events'])}; recomputed {d['customers']} customers"
        ),
    )
    return 0


def cmd_funnels_list(args: argparse.Namespace) -> int:
    from shared.services.analytics import list_funnels

    store, _ = open_store(args)
    data = [funnel.definition() for funnel in list_funnels(store)]
    _print(
        args,
        data,
        lambda d: (
            "\n".join(f"{f['id']:16} {f['name']:24} {' → '.join(s['label'] for s in f['steps'])}" for f in d)
            or "no funnels (apply some with `footfall funnels apply FILE`)"
        ),
    )
    return 0


def _day(text: str | None, default: date) -> date:
    try:
        return date.fromisoformat(text) if text else default
    except ValueError as exc:
        raise CliError(f"not a date (YYYY-MM-DD): {text!r}") from exc


def cmd_funnels_show(args: argparse.Namespace) -> int:
    from shared.services import analytics

    store, _ = open_store(args)
    today = datetime.now(UTC).date()
    end = _day(args.to, today)
    start = _day(getattr(args, "from"), end - timedelta(days=29))
    try:
        report = analytics.funnel_report(store, args.name, start=start, end=end, breakdown=args.breakdown is not None)
    except KeyError as exc:
        raise CliError(f"no funnel {args.name!r} (see `footfall funnels list`)") from exc
    data = asdict(report)
    if args.check:
        data["check"] = _check(store, report, start, end)
    _print(args, data, _funnel_text)
    return 0 if not args.check or data["check"]["equal"] else 1


def _check(store: Any, report: Any, start: date, end: date) -> dict[str, Any]:
    """The report recomputed from every stored event (the brute-force path), and whether they agree."""
    from shared.domain import analytics as rules
    from shared.services import analytics

    cells = analytics.recompute(store, now=datetime.now(UTC))
    funnel = analytics.find_funnel(store, report.funnel_id)
    brute = rules.funnel_report(funnel, cells, start, end)
    equal = brute.steps == report.steps and (not report.breakdown or brute.breakdown == report.breakdown)
    return {"equal": equal, "recomputed": asdict(brute)["steps"]}


def _funnel_text(data: dict[str, Any]) -> str:
    lines = [f"{data['name']} ({data['start']} → {data['end']}, journeys by entry day)"]
    first = data["steps"][0]["customers"] or 1
    for index, step in enumerate(data["steps"], start=1):
        bar = "█" * round(30 * step["customers"] / first)
        conversion = f"{step['from_previous']:.0%} of previous" if step["from_previous"] is not None else ""
        took = (
            f"median {_took(step['median_seconds'])}, p90 {_took(step['p90_seconds'])}"
            if step["median_seconds"]
            else ""
        )
        lines.append(f"{index}. {step['label']:22} {step['customers']:>7} {bar:30} {conversion:16} {took}")
    for value, steps in sorted(data.get("breakdown", {}).items()):
        lines.append(f"   {value:20} " + " → ".join(str(s["customers"]) for s in steps))
    if "check" in data:
        lines.append(
            "check: "
            + (
                "equal to a recomputation from every stored event"
                if data["check"]["equal"]
                else "DIFFERS from a recomputation from every stored event"
            )
        )
    return "\n".join(lines)


def _took(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


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
        from shared.domain import analytics as rules

        cells = analytics.recompute(store, now=datetime.now(UTC))
        brute = rules.retention_report(
            cells,
            by=args.by,
            event=args.event,
            cumulative=args.cumulative,
            today=report_day,
            cohorts=args.cohorts,
        )
        data["check"] = {"equal": brute == report, "recomputed": asdict(brute)["rows"]}

    def text(d: dict[str, Any]) -> str:
        head = f"{'cohort':10} {'size':>6} " + " ".join(
            f"{o:>4}" for o in range(len(d["rows"][0]["percentages"]) if d["rows"] else 0)
        )
        rows = [
            f"{r['cohort']!s:10} {r['size']:>6} "
            + " ".join("    " if p is None else f"{p:>4.0%}" for p in r["percentages"])
            for r in d["rows"]
        ]
        mode = "on or after" if d["cumulative"] else "on"
        return "\n".join([f"returned ({d['event']}) {mode} each {d['by']}", head, *rows, *_check_line(d)])

    _print(args, data, text)
    return 0 if not args.check or data["check"]["equal"] else 1


def _check_line(data: dict[str, Any]) -> list[str]:
    if "check" not in data:
        return []
    agree = "equal to" if data["check"]["equal"] else "DIFFERS from"
    return [f"check: {agree} a recomputation from every stored event"]


def cmd_timing(args: argparse.Namespace) -> int:
    from shared.services import analytics
    from shared.services.customers import find_customer

    store, _ = open_store(args)
    customer_id = None
    if args.customer:
        found = find_customer(store, args.customer)
        if found is None:
            raise CliError(f"no customer {args.customer!r}")
        customer_id = found.profile.customer_id
    report = analytics.timing_report(store, customer_id)
    data = {
        "population": {c: {str(h): n for h, n in sorted(hours.items())} for c, hours in report.population.items()},
        "customer_id": report.customer_id,
        "recommendation": asdict(report.recommendation) if report.recommendation else None,
    }
    if args.check:
        from shared.domain import analytics as rules

        cells = analytics.recompute(store, now=datetime.now(UTC))
        population = rules.population_from(cells)
        data["check"] = {"equal": population == report.population}

    def text(d: dict[str, Any]) -> str:
        days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
        lines = ["engagement by channel (all customers):"]
        for channel, hours in sorted(d["population"].items()):
            best = max(hours.items(), key=lambda kv: kv[1])
            lines.append(
                f"  {channel:8} {sum(hours.values()):>7} events, "
                f"busiest {days[int(best[0]) // 24]} {int(best[0]) % 24:02d}h"
            )
        if d["recommendation"]:
            r = d["recommendation"]
            lines.append(
                f"{d['customer_id']}: best {r['channel']} on {days[r['hour_of_week'] // 24]} "
                f"at {r['hour_of_week'] % 24:02d}:00 "
                f"(confidence {r['confidence']:.0%}, from {r['events']} of their events)"
            )
        return "\n".join([*lines, *_check_line(d)])

    _print(args, data, text)
    return 0 if not args.check or data["check"]["equal"] else 1


def cmd_forget(args: argparse.Namespace) -> int:
    from shared.services.customers import forget_customer

    if not args.yes:
        raise CliError(
            f"this erases every event, identity and profile of {args.id!r} and refuses its future "
            "events; run again with --yes"
        )
    store, _ = open_store(args)
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


def cmd_migrate(args: argparse.Namespace) -> int:
    from shared.storage.migrate import latest_version, migrate, stored_version

    store, _ = open_store(args)
    before = stored_version(store)
    steps = migrate(store)
    data = {
        "table": store.table_name,
        "from_version": before,
        "version": stored_version(store),
        "latest_version": latest_version(),
        "steps": [{"name": name, "changed": changed} for name, changed in steps],
    }
    _print(
        args,
        data,
        lambda d: "\n".join(
            [f"{s['name']}: {s['changed']} items changed" for s in d["steps"]]
            + [f"{d['table']} is at schema version {d['version']}" + ("" if d["steps"] else " (nothing to do)")]
        ),
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from shared.local.files import open_private
    from shared.storage.transfer import export_lines

    store, _ = open_store(args)
    # Every customer's data: the file is its owner's alone, like the data directory.
    out = sys.stdout if args.file == "-" else open_private(Path(args.file), "w")
    try:
        count = 0
        for line in export_lines(store):
            out.write(line + "\n")
            count += 1
    finally:
        if out is not sys.stdout:
            out.close()
    print(f"exported {count} items of {store.table_name}", file=sys.stderr)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from shared.storage.transfer import import_lines

    if args.from_moto:
        return _import_from_moto(args)
    store, _ = open_store(args)
    _ensure_local_table(store)
    source = sys.stdin if args.file == "-" else Path(args.file).open()  # noqa: SIM115 - stdin is not ours
    try:
        count = import_lines(store, source)
    finally:
        if source is not sys.stdin:
            source.close()
    _print(args, {"table": store.table_name, "imported": count}, lambda d: f"imported {d['imported']} items")
    return 0


def _ensure_local_table(store: DynamoTrackingStore) -> None:
    """A new local database gets its table; the items' schema version comes with them (serve migrates if old)."""
    from shared.local.stack import ensure_table
    from shared.storage.sqlite import is_sqlite

    if is_sqlite(store.client.meta.endpoint_url):
        ensure_table(store.client, store.table_name, stamp=False)


def _import_from_moto(args: argparse.Namespace) -> int:
    """The items of a former moto data directory into the store the arguments name (its own SQLite file by
    default)."""
    from shared.local.files import write_private_json
    from shared.local.stack import DATABASE_FILE, DEFAULT_REGION, DEFAULT_TABLE, INFO_FILE, read_info
    from shared.local.upgrade import moto_export
    from shared.storage.sqlite import sqlite_endpoint
    from shared.storage.transfer import import_lines

    old = read_info(args.from_moto)
    table = old.table if old else DEFAULT_TABLE
    lines = moto_export(args.from_moto, table, (old.region if old else None) or DEFAULT_REGION)
    into_the_directory = args.endpoint_url is None and args.profile is None and args.table is None
    if into_the_directory:
        client = make_client(endpoint_url=sqlite_endpoint(args.from_moto / DATABASE_FILE))
        store = DynamoTrackingStore(table, client=client)
    else:
        store, _ = open_store(args)
    _ensure_local_table(store)
    count = import_lines(store, lines)
    if into_the_directory and old is not None:
        # It named the former backend's server, gone with it: the directory's commands open the file from now on.
        write_private_json(
            args.from_moto / INFO_FILE, asdict(replace(old, dynamodb_endpoint=store.client.meta.endpoint_url))
        )
    _print(args, {"table": store.table_name, "imported": count}, lambda d: f"imported {d['imported']} items")
    return 0


def cmd_tui(args: argparse.Namespace) -> int:
    try:
        from tui.app import run
    except ImportError as exc:
        raise CliError(f"the TUI needs Textual: pip install 'footfall[tui]' ({exc})") from exc
    return run(args)


# --- parser -----------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="footfall", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    for name, helptext, func in (
        ("serve", "run the local stack", cmd_serve),
        ("demo", "the local stack + the traffic simulator (history, then live) + the TUI", cmd_demo),
    ):
        serve = commands.add_parser(name, help=helptext)
        serve.add_argument("--host", default="127.0.0.1")
        serve.add_argument("--port", type=int, default=8788)
        serve.add_argument("--workers", type=int, default=2, help="collector worker processes (default 2)")
        serve.add_argument(
            "--durable",
            action="store_true",
            help="embedded database: each commit on disk before the collector answers (synchronous=FULL), so a "
            "power cut loses nothing acknowledged either; about a third fewer events/s written (default NORMAL: "
            "crashes and kill -9 lose nothing acknowledged, a power cut can lose the last transactions)",
        )
        _connection(serve)
        serve.set_defaults(func=func)
    demo = serve  # the loop's last parser
    demo.add_argument("--customers", type=int, default=200, help="simulated customers of the history (default 200)")
    demo.add_argument("--days", type=float, default=14, help="days of simulated history (default 14)")
    demo.add_argument("--seed", type=int, default=1, help="same seed, same customers (re-sent events are duplicates)")
    demo.add_argument("--rate", type=float, default=3, help="live events per second after the history (default 3)")
    demo.add_argument("--no-tui", action="store_true", help="keep the stack in the foreground instead of the TUI")

    sim = commands.add_parser(
        "simulate", help="send realistic shop traffic (days of history, then live) through the real collector"
    )
    sim.add_argument("--customers", type=int, default=300, help="people arriving over the history (default 300)")
    sim.add_argument("--days", type=float, default=14, help="days of history before now (default 14)")
    sim.add_argument("--seed", type=int, default=1, help="same seed, same people and message ids (default 1)")
    sim.add_argument("--rate", type=float, default=0, help="events per second; 0 = as fast as the collector answers")
    sim.add_argument("--live", action="store_true", help="after the history, send live traffic until Ctrl-C")
    sim.add_argument("--live-rate", type=float, help="live events per second (default: --rate, or 5 if that is 0)")
    sim.add_argument("--url", help="collector URL (default: the local stack's)")
    sim.add_argument("--write-key", help="write key (default: the local stack's default source)")
    sim.add_argument("--source", help="the write key's source id, for signing click links (default: default)")
    sim.add_argument("--link-secret", help="the source's link secret (default: read from the table)")
    sim.add_argument("--json", action="store_true", help="print the final figures as JSON (progress to stderr)")
    _connection(sim)
    sim.set_defaults(func=cmd_simulate)

    sources = commands.add_parser("sources", help="manage sources (write keys, link and webhook secrets)")
    source_commands = sources.add_subparsers(dest="sources_command", required=True)
    add = source_commands.add_parser("add", help="create a source and print its write key once")
    add.add_argument("name")
    add.add_argument("--id", help="source id (default: from the name)")
    add.add_argument("--hash-emails", action="store_true", help="store e-mail addresses only as SHA-256")
    add.add_argument("--webhook-mapping", help="JSON file mapping this source's webhook payloads to events")
    add.add_argument(
        "--trust",
        choices=TRUST_LEVELS,
        default=CLIENT_TRUST,
        help="client (default: the key is public, in web pages and apps) or server (the key stays on your servers; "
        "only a server source may merge two known users with alias)",
    )
    add.set_defaults(func=cmd_sources_add)
    listing = source_commands.add_parser("list", help="list sources")
    listing.set_defaults(func=cmd_sources_list)
    rotate = source_commands.add_parser("rotate-secret", help="new link or webhook secret; the previous stays valid")
    rotate.add_argument("source")
    rotate.add_argument("--kind", choices=("link", "webhook"), required=True)
    rotate.set_defaults(func=cmd_sources_rotate)
    rotate_key = source_commands.add_parser(
        "rotate-key", help="new write key; the previous ones keep working for the grace period, then never"
    )
    rotate_key.add_argument("source")
    rotate_key.add_argument(
        "--grace", default=f"{int(DEFAULT_KEY_GRACE.total_seconds() // 3600)}h", help="e.g. 0s, 30m, 24h, 7d"
    )
    rotate_key.set_defaults(func=cmd_sources_rotate_key)
    remove = source_commands.add_parser("remove", help="delete a source: its key and secrets stop working")
    remove.add_argument("source")
    remove.add_argument("--yes", action="store_true", help="really remove it")
    remove.set_defaults(func=cmd_sources_remove)

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
    seg_history.add_argument("--last", type=int, metavar="N", help="only the N latest, newest first")
    seg_history.set_defaults(func=cmd_segments_history)
    seg_explain = segment_commands.add_parser("explain", help="why a customer is in or out, and when that changes")
    seg_explain.add_argument("segment")
    seg_explain.add_argument("customer")
    seg_explain.set_defaults(func=cmd_segments_explain)

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
        _connection(sub)
        sub.add_argument("--json", action="store_true")
        sub.set_defaults(func=func)
    retention = commands.add_parser("retention", help="cohort retention table")
    retention.add_argument("--by", choices=["day", "week"], default="day")
    retention.add_argument("--event", default="*", help="return event (default * = any; tracked events only)")
    retention.add_argument("--cumulative", action="store_true", help="came back on or after each offset")
    retention.add_argument("--cohorts", type=int, default=14, help="how many cohorts (default 14)")
    timing = commands.add_parser("timing", help="best time and channel: population table, or one customer's")
    timing.add_argument("--customer", help="customer id, userId, anonymousId or e-mail")
    for sub, func in ((retention, cmd_retention), (timing, cmd_timing)):
        _connection(sub)
        sub.add_argument("--json", action="store_true")
        sub.add_argument("--check", action="store_true", help="also recompute from every stored event and compare")
        sub.set_defaults(func=func)

    forget = commands.add_parser("forget", help="erase a customer (GDPR) and refuse their future events")
    forget.add_argument("id", help="customer id, userId, anonymousId, or u:/a: identity")
    forget.add_argument("--yes", action="store_true", help="really erase")
    forget.set_defaults(func=cmd_forget)

    migrate = commands.add_parser(
        "migrate", help="upgrade the table's items to this version (idempotent; serve and deploy run it)"
    )
    migrate.set_defaults(func=cmd_migrate)

    export = commands.add_parser("export", help="write every item of the table as JSON lines (DynamoDB's format)")
    export.add_argument("file", nargs="?", default="-", help="output file (default: standard output)")
    _connection(export)
    export.set_defaults(func=cmd_export)
    restore = commands.add_parser(
        "import", help="put the items of an export into the table, as a restore (nothing is processed again)"
    )
    restore.add_argument("file", nargs="?", default="-", help="export file (default: standard input)")
    restore.add_argument(
        "--from-moto",
        type=Path,
        metavar="DIR",
        help="the data directory of the former moto backend instead of a file (into DIR/footfall.db by default)",
    )
    _connection(restore)
    restore.add_argument("--json", action="store_true", help="machine-readable output")
    restore.set_defaults(func=cmd_import)

    tui = commands.add_parser("tui", help="the operator terminal UI: customers, segments, funnels, retention, live")
    _connection(tui)
    tui.set_defaults(func=cmd_tui)

    from shared.deploy import add_parser as add_deploy_parser  # `footfall deploy` owns its options and errors

    add_deploy_parser(commands)

    for sub in (
        add,
        listing,
        rotate,
        rotate_key,
        remove,
        sign,
        failed_list,
        show,
        replay,
        customers_list,
        customers_show,
        forget,
        migrate,
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
    except (CliError, DamagedDatabaseError) as exc:  # a damaged database file is the operator's to restore
        print(f"footfall: {exc}", file=sys.stderr)
        return 2
    except StorageError as exc:
        print(f"footfall: storage error: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
