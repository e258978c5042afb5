"""Footfall at one machine's scale (`make bench-scale`, issue 16): a data dir of 100 k customers / 1 M events on the
embedded database, every TUI screen's reads on it, then the same file grown to 10 M events; its size per million
events, and how long `footfall serve` and `footfall tui` take to open it.

The data dir is built straight into a `SqliteClient` (the file `footfall serve` makes, `<data-dir>/footfall.db`,
opened with `make_client` as serve opens it), not through HTTP and the stream runner (hours on 2 cores):
- the table as serve creates it (stamped with the newest schema version) and its starter segments;
- `tui_bench.fill`: each customer's events as the collector stores them (`event_to_item`), their profile folded by
  processing's code, their identity links, written in batches with `restore_items` (a restore: no change record);
  every customer evaluated by the product's own write paths (memberships, due list, audience events, history, then
  their analytics cells items); the counters those customers add, summed as the fold sums them (segment sizes
  included); a heavy merged customer (3 identities, 3,000 events) and its merged tombstone; failed events; a live
  feed;
- the change records those write paths leave are dropped after each chunk of customers, as if processed and past
  the feed's 24 h retention (their pages are reused by the next chunk, as the trim's are in a running data dir).

Then the growth to `--grow-to` events: more customers of the same kind, their events, profiles and links only (no
segment evaluation, no analytics cells or counters: stated in the notes).

The TUI's reads are `tui_bench.time_screens` on the file opened as `footfall tui` opens a data dir (`open_store`,
then `check_reachable`), median of 3, requests counted, read units from one metered pass. Serve's start is timed
until its `serve.json` names the new process (what the e2e tests wait for), median of `--serve-runs`, taking turns
with starts on an empty data dir (the baseline).

    python benchmarks/scale_bench.py [--customers 100000] [--events 1000000] [--grow-to 10000000] [--out PATH]
"""

from __future__ import annotations

import argparse
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench  # noqa: E402
import bench_stack  # noqa: E402
import tui_bench  # noqa: E402

from shared.local.stack import DATABASE_FILE, ensure_starter_segments, ensure_table  # noqa: E402
from shared.storage.dynamo import DynamoTrackingStore, make_client, serialize  # noqa: E402
from shared.storage.sqlite import sqlite_endpoint  # noqa: E402
from shared.storage.sqlite.feed import RETENTION_SECONDS  # noqa: E402

OUT = ROOT / "benchmarks" / "SCALE.md"
TABLE = tui_bench.TABLE
GROW_CHUNK = 2_000
"""Customers per transaction while growing (about 24,000 items)."""
MILLION = 1_000_000


@dataclass
class Size:
    """The database's files on disk."""

    events: int
    file_bytes: int
    """footfall.db + its WAL (+ the shared-memory index), as `ls` shows them."""
    used_bytes: int
    """Pages in use (the rest of the file is free pages, reused by later writes)."""

    @property
    def mb_per_million(self) -> float:
        return self.file_bytes / 2**20 / (self.events / MILLION)


@dataclass
class Stage:
    """The data dir at one size, measured."""

    customers: int
    events: int
    size: Size
    open_ms: float
    screens: list[tui_bench.ScreenFigure] = field(default_factory=list)
    serve_seconds: list[float] = field(default_factory=list)
    empty_serve_seconds: list[float] = field(default_factory=list)
    """Serve's starts on a fresh, empty data dir, taking turns with those on this one."""


@dataclass
class Built:
    customers: int
    events: int
    seconds: float
    info: dict[str, Any]


def open_database(data_dir: Path) -> tuple[Any, DynamoTrackingStore]:
    """The data dir's database, opened and set up as `footfall serve` does on first start."""
    client = make_client(endpoint_url=sqlite_endpoint(data_dir / DATABASE_FILE))
    ensure_table(client, TABLE)
    store = DynamoTrackingStore(TABLE, client=client)
    ensure_starter_segments(store)
    return client, store


def restore_writer(client: Any) -> tui_bench.Write:
    """Items written as a restore writes them: checked like any put, one transaction per call, no change record."""

    def write(rows: list[dict[str, Any]]) -> None:
        client.restore_items(TableName=TABLE, Items=[serialize(row) for row in rows])

    return write


def build(data_dir: Path, customers: int, events_each: int, now: datetime) -> Built:
    """The data dir at `customers` (+ the heavy one) x `events_each` events (see the module docstring)."""
    started = time.perf_counter()
    client, store = open_database(data_dir)

    def after_chunk(done: int) -> None:
        drop_feed(client)  # as the stream runner would have: processed, and trimmed (the pages are reused)
        if done % 10_000 == 0 or done > customers:
            print(
                f"  built {done:,} of {customers + 1:,} customers ({time.perf_counter() - started:.0f} s)", flush=True
            )

    filled = tui_bench.fill(
        restore_writer(client), store, customers, events_each, now, keep_events=False, after_chunk=after_chunk
    )
    drop_feed(client)
    seconds = time.perf_counter() - started
    client.close()
    return Built(filled.customers, filled.events, seconds, filled.info)


def drop_feed(client: Any) -> int:
    """The change records of the build, as if processed and past the feed's retention (the trim serve runs)."""
    return int(client.trim_feed(now=time.time() + RETENTION_SECONDS + 1))


def grow(data_dir: Path, first: int, customers: int, events_each: int, now: datetime) -> Built:
    """`customers` more customers, numbered from `first`: their events, profiles and links only."""
    started = time.perf_counter()
    client = make_client(endpoint_url=sqlite_endpoint(data_dir / DATABASE_FILE))
    write = restore_writer(client)
    rng = random.Random(first)
    events = 0
    for start in range(first, first + customers, GROW_CHUNK):
        chunk = [
            tui_bench.build_customer(n, rng, now, events_each)
            for n in range(start, min(start + GROW_CHUNK, first + customers))
        ]
        write([row for built in chunk for row in built.rows])
        events += sum(len(built.events) for built in chunk)
        if (start - first) % 100_000 < GROW_CHUNK:
            rate = events / (time.perf_counter() - started)
            print(f"  grown by {events:,} events ({rate:,.0f} events/s)", flush=True)
    client.close()
    return Built(customers, events, time.perf_counter() - started, {})


def size_of(data_dir: Path, events: int) -> Size:
    path = data_dir / DATABASE_FILE
    files = sum(p.stat().st_size for p in data_dir.iterdir() if p.name.startswith(DATABASE_FILE))
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        pages, free, page = (
            db.execute(f"PRAGMA {name}").fetchone()[0] for name in ("page_count", "freelist_count", "page_size")
        )
    return Size(events, files, (pages - free) * page)


def count_items(data_dir: Path) -> dict[str, int]:
    """Items per entity, read with sqlite3 from the stored JSON (not through the product's code): an audit."""
    path = data_dir / DATABASE_FILE
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        rows = db.execute(
            "SELECT json_extract(body, '$.entity.S'), json_extract(body, '$.src.S') = 'footfall', "
            "json_extract(body, '$.GSI1PK') IS NOT NULL, COUNT(*) FROM items WHERE tbl = ? GROUP BY 1, 2, 3",
            (TABLE,),
        ).fetchall()
    counts: dict[str, int] = {}
    for entity, audience, listed, count in rows:
        name = str(entity)
        if entity == "event" and audience:
            name = "audience event"
        elif entity == "profile":
            name = "customer profile" if listed else "merged profile"
        counts[name] = counts.get(name, 0) + count
    return counts


def open_for_tui(data_dir: Path) -> tuple[Any, float]:
    """The data source `footfall tui --data-dir` reads through, and how long opening it took (ms)."""
    from shared.compose import open_store
    from tui.connect import check_reachable, describe
    from tui.data import StoreDataSource

    args = argparse.Namespace(data_dir=data_dir, endpoint_url=None, table=None, region=None, profile=None)
    started = time.perf_counter()
    store, extra = open_store(args)
    check_reachable(store, profile=None)
    source = StoreDataSource(store, label=describe(store, extra.get("info")))
    return source, (time.perf_counter() - started) * 1000


def time_tui(data_dir: Path, now: datetime) -> tuple[float, list[tui_bench.ScreenFigure]]:
    """Every screen's reads on the data dir (as `tui_bench` times its SQLite leg), and the open time."""
    from shared.storage.sqlite.engine import SqliteClient

    source, open_ms = open_for_tui(data_dir)
    # The live feed's items expire an hour after they were written (and serve's runner deletes them): fresh ones.
    tui_bench.put_live_feed(source.store, datetime.now(UTC))
    sizes = {row.segment_id: row.size or 0 for row in source.segments(now=now)}
    segment = max(sizes, key=lambda s: sizes[s])
    side = SqliteClient(data_dir / DATABASE_FILE)  # the meter's own reads, unhooked
    try:
        figures = tui_bench.time_screens(source.store.client, side, source, segment, now, "SQLite")
    finally:
        side.close()
        source.store.client.close()
    return open_ms, figures


def time_serve(dirs: list[Path], runs: int) -> list[list[float]]:
    """Seconds from starting `footfall serve --data-dir` until its `serve.json` says it is ready, `runs` times for
    each data dir, taking turns (so that the machine's load weighs on each alike)."""
    found: list[list[float]] = [[] for _ in dirs]
    for _ in range(runs):
        for data_dir, times in zip(dirs, found, strict=True):
            started = time.perf_counter()
            serve = bench_stack.start_serve(2, data_dir)
            times.append(time.perf_counter() - started)
            bench_stack.stop_process(serve.process)
    return found


def measure(data_dir: Path, customers: int, events: int, now: datetime, serve_runs: int, empty_dir: Path) -> Stage:
    """The data dir's size, the TUI's open and screens, and `serve_runs` starts of serve on it and on `empty_dir`."""
    size = size_of(data_dir, events)
    print(f"  {size.file_bytes / 2**20:,.0f} MB ({size.mb_per_million:,.0f} MB per million events)", flush=True)
    open_ms, screens = time_tui(data_dir, now)
    stage = Stage(customers, events, size, open_ms, screens)
    if serve_runs:
        stage.serve_seconds, stage.empty_serve_seconds = time_serve([data_dir, empty_dir], serve_runs)
        print(
            f"  serve ready in {', '.join(f'{s:.1f}' for s in stage.serve_seconds)} s "
            f"(empty data dir: {', '.join(f'{s:.1f}' for s in stage.empty_serve_seconds)} s)",
            flush=True,
        )
    return stage


# --- the report ---------------------------------------------------------------------------------------------------


def screen_rows(stage: Stage) -> list[bench.Row]:
    scale = f"{stage.customers:,} customers, {stage.events:,} events"
    return [
        bench.Row(
            f"TUI screen `{f.screen}` ({f.path}): reads at {scale}",
            f"{f.requests} requests, {f.ms:.0f} ms, {f.ru:.1f} RU",
            "—",
            "—",
            f"≤ {tui_bench.SCREEN_REQUEST_TARGET} requests, < {tui_bench.SCREEN_MS_TARGET:g} ms",
            bench.yes(f.requests <= tui_bench.SCREEN_REQUEST_TARGET and f.ms < tui_bench.SCREEN_MS_TARGET),
        )
        for f in stage.screens
    ]


def stage_rows(stage: Stage) -> list[bench.Row]:
    scale = f"{stage.events:,} events"
    size = stage.size
    rows = [
        bench.Row(
            f"database size at {scale} (footfall.db + WAL)",
            f"{size.file_bytes / 2**20:,.0f} MB, **{size.mb_per_million:,.0f} MB per million events** "
            f"({size.used_bytes / 2**20:,.0f} MB in use)",
            "—",
            "—",
            "—",
            "—",
        ),
        bench.Row(
            f"`footfall tui` data source opens the data dir at {scale}", f"{stage.open_ms:.0f} ms", "—", "—", "—", "—"
        ),
    ]
    if stage.serve_seconds:
        median, empty = statistics.median(stage.serve_seconds), statistics.median(stage.empty_serve_seconds)
        rows.append(
            bench.Row(
                f"`footfall serve` start until ready (serve.json) at {scale}, median of {len(stage.serve_seconds)}",
                f"{median:.1f} s",
                f"{empty:.1f} s (empty data dir)",
                f"{median / empty:.2f}",
                "—",
                "—",
            )
        )
    return rows


def render(rows: list[bench.Row], header: dict[str, str], notes: list[str]) -> str:
    return bench.render(
        rows,
        header,
        notes,
        title="## Scale: one data dir at 100 k customers / 1 M events, grown to 10 M (benchmarks/scale_bench.py)",
    )


def notes_of(built: Built, grown: Built | None, counts: dict[str, int], args: argparse.Namespace) -> list[str]:
    events_each = args.events // args.customers
    notes = [
        f"Built (`tui_bench.fill`, written straight into a `SqliteClient`): {args.customers:,} customers x "
        f"{events_each} events + one heavy merged customer ({len(tui_bench.HEAVY_IDENTITIES)} identities, "
        f"{len(tui_bench.HEAVY_IDENTITIES) * tui_bench.HEAVY_EVENTS_EACH:,} events, two logins, its merged "
        "tombstone): events as the collector stores them (`event_to_item`), profiles folded by processing's code, "
        "identity links; every customer evaluated against the starter segments by the product's write paths "
        f"({built.info['transitions']:,} membership changes: memberships, due list, audience events, history) and "
        f"their analytics cells items written by `update_customers`; {built.info['counter_items']:,} counter items "
        f"(the customers' cells and segment sizes, summed as the fold sums them); {tui_bench.FAILED_EVENTS} failed "
        f"events; {tui_bench.LIVE_ITEMS} live items. Events, profiles, links and counters are written with "
        "`restore_items` (no change record), the rest through the store; the change records they leave are dropped "
        f"after each chunk of {tui_bench.CHUNK:,} customers (as if processed and past the 24 h retention). "
        f"{built.events:,} events in {built.seconds:.0f} s ({built.events / built.seconds:,.0f} events/s with "
        "everything above). Event counts here are the customers' own events; the audience events the segments' "
        f"path writes ({built.info['transitions']:,} more event items) are in the file but not counted.",
        "Items read back with sqlite3 from the stored JSON after the build: "
        + ", ".join(f"{name} {count:,}" for name, count in sorted(counts.items()))
        + ".",
    ]
    if grown is not None:
        notes.append(
            f"Grown by {grown.customers:,} more customers x {events_each} events ({grown.events:,} events) with their "
            "profiles and links only (no segment evaluation, analytics cells or counters for them), "
            f"{GROW_CHUNK:,} customers a transaction: {grown.events / grown.seconds:,.0f} events/s "
            f"({grown.seconds / 60:.0f} min)."
        )
    notes += [
        "Database size: the files in the data dir (footfall.db, its WAL and shared-memory index); 'in use' leaves "
        "out free pages (the dropped change records' pages, reused by later writes). MB per million events divides "
        "the whole file, profiles, links, memberships and counters included.",
        "TUI: each screen's data-source reads (`tui.data.StoreDataSource`: what the screen calls when it opens, "
        "rendering not included) on the file opened as `footfall tui --data-dir` opens it (`open_store`, then "
        "`check_reachable`), median of 3, requests counted with the client's botocore hooks, read units from one "
        "metered pass (benchmarks/meter.py). 'Opens' is that open alone, in this process.",
        "`footfall serve --data-dir` is started as a subprocess (2 collector workers and the stream runner), "
        "timed until its serve.json names the new process, then stopped (SIGTERM); the baseline is the same on a "
        "fresh, empty data dir (its first start, then restarts), the two taking turns.",
    ]
    return notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000, help="customers of the first stage (default 100k)")
    parser.add_argument(
        "--events", type=int, default=MILLION, help="their events (default 1M; a multiple of customers)"
    )
    parser.add_argument("--grow-to", type=int, default=10 * MILLION, help="events after growing (default 10M; 0: none)")
    parser.add_argument("--serve-runs", type=int, default=3, help="serve starts timed per stage (default 3; 0: none)")
    parser.add_argument("--data-dir", type=Path, help="build here (must not exist; kept), else a temporary dir")
    parser.add_argument("--out", type=Path, default=OUT, help=f"markdown output (default {OUT.relative_to(ROOT)})")
    args = parser.parse_args(argv)
    began = time.monotonic()
    header = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), **bench.machine()}
    now = datetime.now(UTC).replace(microsecond=0)
    events_each = max(1, args.events // args.customers)
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="footfall-scale-")) / "data"
    data_dir.mkdir(parents=True)
    empty_dir = Path(tempfile.mkdtemp(prefix="footfall-scale-empty-"))
    rows: list[bench.Row] = []
    try:
        print(f"building {args.customers:,} customers x {events_each} events in {data_dir}...", flush=True)
        built = build(data_dir, args.customers, events_each, now)
        counts = count_items(data_dir)
        first = measure(data_dir, built.customers, built.events, now, args.serve_runs, empty_dir)
        rows += screen_rows(first) + stage_rows(first)
        grown = None
        if args.grow_to > built.events:
            more = (args.grow_to - built.events) // events_each
            print(f"growing by {more:,} customers x {events_each} events...", flush=True)
            grown = grow(data_dir, args.customers, more, events_each, now)
            second = measure(
                data_dir, built.customers + more, built.events + grown.events, now, args.serve_runs, empty_dir
            )
            rows += stage_rows(second) + screen_rows(second)
            rows.append(
                bench.Row(
                    "build rate, growing (events + profiles + links, restore_items)",
                    f"{grown.events / grown.seconds:,.0f} events/s",
                    f"{built.events / built.seconds:,.0f} events/s (first stage, everything)",
                    "—",
                    "—",
                    "—",
                )
            )
        header["elapsed"] = f"{(time.monotonic() - began) / 60:.0f} min"
        header["scale"] = f"{args.customers:,} customers x {events_each} events + a heavy merged customer" + (
            f", grown to {args.grow_to:,} events" if grown else ""
        )
        text = render(rows, header, notes_of(built, grown, counts, args))
    finally:
        shutil.rmtree(empty_dir, ignore_errors=True)
        if args.data_dir is None:
            shutil.rmtree(data_dir.parent, ignore_errors=True)
    print()
    print(text)
    args.out.write_text(text)
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
