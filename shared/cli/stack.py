"""The local stack and its table: `footfall serve|demo|simulate|tui`, `migrate`, `export`, `import`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from shared.cli import render
from shared.cli.options import CliError, add_connection, add_data_options
from shared.compose import open_store
from shared.domain.sources import Source
from shared.ports import StorageError
from shared.storage.dynamo import DynamoTrackingStore, make_client


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
    from shared import simulate

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
    if runner is None:
        return _demo_in_foreground(args, running, target)
    return _demo_with_tui(args, running, target, runner)


def _simulator(args: argparse.Namespace, target: Any, stop: Any) -> Callable[[Callable[[str], None]], None]:
    """The demo's traffic: the history as fast as the collector takes it, then live at `--rate`, until `stop`."""
    from shared import simulate

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

    return simulate_traffic


def _demo_in_foreground(args: argparse.Namespace, running: Any, target: Any) -> int:
    import threading

    from shared.local import stack

    stop = threading.Event()
    thread = threading.Thread(target=_simulator(args, target, stop), args=(print,), name="simulate", daemon=True)
    thread.start()
    try:
        return stack.run(running)
    finally:
        stop.set()
        thread.join(timeout=10)


def _demo_with_tui(
    args: argparse.Namespace, running: Any, target: Any, runner: Callable[[argparse.Namespace], int]
) -> int:
    import contextlib
    import threading

    stop = threading.Event()
    log_path = args.data_dir / "demo.log"
    # The TUI owns the terminal: the stack's and the simulator's output go to a log file meanwhile.
    with log_path.open("a") as log, contextlib.redirect_stdout(log):

        def to_log(line: str) -> None:
            log.write(line + "\n")
            log.flush()

        thread = threading.Thread(target=_simulator(args, target, stop), args=(to_log,), name="simulate", daemon=True)
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
    _stop_on_signals(stop)
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
    render.emit(args, stats.to_json(), lambda _: f"simulate: {'stopped' if stop.is_set() else 'done'}: {stats.line()}")
    return 1 if stats.rejected or stats.not_stored else 0


def _stop_on_signals(stop: Any) -> None:
    import signal

    def stopping(*_: Any) -> None:
        stop.set()  # finish the request in flight and print the figures; a second Ctrl-C interrupts at once
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, stopping)
    signal.signal(signal.SIGTERM, stopping)


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
    render.emit(args, data, render.migrated)
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
    render.emit(args, {"table": store.table_name, "imported": count}, render.imported)
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
    render.emit(args, {"table": store.table_name, "imported": count}, render.imported)
    return 0


def cmd_tui(args: argparse.Namespace) -> int:
    try:
        from tui.app import run
    except ImportError as exc:
        raise CliError(f"the TUI needs Textual: pip install 'footfall[tui]' ({exc})") from exc
    return run(args)


def add_stack(commands: Any) -> None:
    """`footfall serve`, `footfall demo` and `footfall simulate`."""
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
        add_connection(serve)
        serve.set_defaults(func=func)
    demo = serve  # the loop's last parser
    demo.add_argument("--customers", type=int, default=200, help="simulated customers of the history (default 200)")
    demo.add_argument("--days", type=float, default=14, help="days of simulated history (default 14)")
    demo.add_argument("--seed", type=int, default=1, help="same seed, same customers (re-sent events are duplicates)")
    demo.add_argument("--rate", type=float, default=3, help="live events per second after the history (default 3)")
    demo.add_argument("--no-tui", action="store_true", help="keep the stack in the foreground instead of the TUI")
    _add_simulate(commands)


def _add_simulate(commands: Any) -> None:
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
    add_connection(sim)
    sim.set_defaults(func=cmd_simulate)


def add_table(commands: Any) -> None:
    """`footfall migrate`, `footfall export`, `footfall import` and `footfall tui`."""
    migrate = commands.add_parser(
        "migrate", help="upgrade the table's items to this version (idempotent; serve and deploy run it)"
    )
    migrate.set_defaults(func=cmd_migrate)
    add_data_options(migrate)
    export = commands.add_parser("export", help="write every item of the table as JSON lines (DynamoDB's format)")
    export.add_argument("file", nargs="?", default="-", help="output file (default: standard output)")
    add_connection(export)
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
    add_connection(restore)
    restore.add_argument("--json", action="store_true", help="machine-readable output")
    restore.set_defaults(func=cmd_import)
    tui = commands.add_parser("tui", help="the operator terminal UI: customers, segments, funnels, retention, live")
    add_connection(tui)
    tui.set_defaults(func=cmd_tui)
