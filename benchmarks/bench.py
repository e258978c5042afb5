"""Footfall benchmark (not a test): storage cost, local `/v1/batch` throughput and collect cold-start import time.

Run with `make bench` (`.venv/bin/python benchmarks/bench.py`). It prints a table and writes it to
`benchmarks/RESULTS.md`. The machine is shared and noisy, so every figure is set against a baseline measured in
the same run, and the ratio is reported next to the absolute figure.

1. Write and read units per event, billed as AWS bills them (`benchmarks/meter.py`, hooked into every process of
   `footfall serve` on the embedded database), per entity, on the workloads users run
   (`benchmarks/cost_bench.py`): 14 days of simulated history in bulk, live traffic at 50 and at 200 events/s,
   and mostly new visitors. A workload whose processing did not catch up is reported FAILED and the bench exits
   non-zero.
   Baseline: "naive 3", the same events' own event-item units + a de-duplication marker + a profile update each.
2. `/v1/batch` throughput of `footfall serve` (real HTTP, keep-alive clients, 100 events a request, every event
   must come back `accepted`) on its default embedded database (SQLite). Baseline: a raw SQLite insert loop of the
   same event items (one transaction per 25, one thread) on a fresh file, for as long.
3. Import time of the collect Lambda's handler module against `import boto3` + one DynamoDB client, each in a
   fresh interpreter, interleaved, medians.

4. Funnel report read cost at 10k/100k/1M events (`analytics_bench.py`).
5. Each TUI screen's reads (requests, ms, read units) on realistic data in the embedded SQLite database, and the
   `--check` path (`recompute`) (`tui_bench.py`).
6. The customer item's size on 30-day simulated histories and for a heavy customer (`item_size.py`).

Default scale (about 10 minutes on a shared 2-core machine): throughput 10 s per configuration; bulk history of
60 customers (~1,400 events); live 20 s and worst case 10 s at 50 events/s, steady 10 s at 200 events/s; TUI 2,500
customers x 10 events + one heavy customer. Exit status 1 when any workload's processing did not catch up (reported
FAILED, not a number).

Every process started here listens on 127.0.0.1 only and is stopped before the script exits.
"""

from __future__ import annotations

import argparse
import math
import signal
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


sys.path.insert(0, str(ROOT / "benchmarks"))
import analytics_bench  # noqa: E402
import cost_bench  # noqa: E402
import item_size  # noqa: E402
import tui_bench  # noqa: E402
from bench_corpus import CUSTOMERS, DAYS, build_corpus  # noqa: E402
from bench_load import BATCH_WRITE_SIZE, paced_lag, sqlite_rate, throughput  # noqa: E402
from bench_report import (  # noqa: E402
    Row,
    analytics_rows,
    cost_rows,
    kept_sections,
    machine,
    print_table,
    render,
    seconds_or_failed,
    tui_rows,
    yes,
)
from bench_stack import discard_serve, import_times, on_signal, stop_all, wait_for_processing  # noqa: E402

RESULTS = ROOT / "benchmarks" / "RESULTS.md"
REGION = "us-east-1"

LAG_TARGET = 5.0
THROUGHPUT_TARGET = 3000.0
IMPORT_RATIO_TARGET = 1.3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per load run (default 10)")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds before each window (default 3)")
    parser.add_argument("--workers", default="2", help="serve --workers values to try (default 2)")
    parser.add_argument("--clients", default="4", help="client concurrencies to try (default 4)")
    parser.add_argument("--steady-rate", type=float, default=200.0, help="events/s of the steady-load lag run")
    parser.add_argument("--import-runs", type=int, default=5, help="fresh interpreters per import figure (default 5)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="markdown file to write")
    parser.add_argument("--tui-customers", type=int, default=2_500, help="customers (x10 events) for TUI reads")
    parser.add_argument("--cost-customers", type=int, default=60, help="customers of the bulk history (default 60)")
    parser.add_argument("--live-rate", type=float, default=50.0, help="events/s of the live workloads (default 50)")
    parser.add_argument("--live-seconds", type=float, default=20.0, help="seconds of each live workload (default 20)")
    parser.add_argument("--worst-visits", type=int, default=1000, help="visits at once, worst case (default 1000)")
    parser.add_argument("--worst-seconds", type=float, default=10.0, help="seconds of the worst case (default 10)")
    parser.add_argument("--item-customers", type=int, default=item_size.CUSTOMERS, help="customers sized (default 500)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, on_signal)

    began = time.perf_counter()
    header = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), **machine()}
    configs = [(int(w), int(c)) for w in args.workers.split(",") for c in args.clients.split(",")]
    try:
        print("import time (fresh interpreters)...", flush=True)
        phase = time.perf_counter()
        handler_times, boto_times = import_times(args.import_runs)
        print(f"  {time.perf_counter() - phase:.1f} s", flush=True)
        print(f"throughput: {len(configs)} configurations, {args.warmup:g} s warm-up + {args.duration:g} s each...")
        phase = time.perf_counter()
        runs, best, best_serve = throughput(configs, args)
        try:
            print(f"  {time.perf_counter() - phase:.1f} s", flush=True)
            print("processing: waiting for the stream runner to catch up after the best run...", flush=True)
            drain = wait_for_processing(best_serve, timeout=120)
            print(f"  caught up {drain:.1f} s after the load stopped", flush=True)
        finally:
            discard_serve(best_serve)
        print(
            f"write and read units (metered in-process): bulk {args.cost_customers} customers x 14 days, live "
            f"{args.live_seconds:g} s and worst {args.worst_seconds:g} s at {args.live_rate:g} events/s, steady "
            f"{args.duration:g} s at {args.steady_rate:g} events/s...",
            flush=True,
        )
        phase = time.perf_counter()
        workloads = cost_bench.measure(
            customers=args.cost_customers,
            rate=args.live_rate,
            seconds=args.live_seconds,
            worst_concurrent=args.worst_visits,
            worst_seconds=args.worst_seconds,
            steady_rate=args.steady_rate,
            steady_seconds=args.duration,
        )
        print(f"  {time.perf_counter() - phase:.1f} s", flush=True)
        print(f"processing lag at a steady {args.steady_rate:g} events/s for {args.duration:g} s...", flush=True)
        phase = time.perf_counter()
        steady_lag, steady_events = paced_lag(args.steady_rate, args.duration)
        print(f"  caught up {steady_lag:.1f} s after the load, {time.perf_counter() - phase:.1f} s", flush=True)
        print("baseline: raw SQLite insert loop, 1 thread...", flush=True)
        phase = time.perf_counter()
        raw = sqlite_rate(build_corpus("wk_placeholder"), args)
        print(f"  {raw.counted / args.duration:,.0f} items/s, {time.perf_counter() - phase:.1f} s", flush=True)
        print("analytics: funnel report read cost at 10k/100k/1M events...", flush=True)
        phase = time.perf_counter()
        figures = analytics_bench.measure()
        print(f"  {time.perf_counter() - phase:.1f} s", flush=True)
        print(f"TUI screens at {args.tui_customers:,} customers x 10 events + a heavy one...", flush=True)
        phase = time.perf_counter()
        screens, tui_info = tui_bench.measure(args.tui_customers)
        print(f"  {time.perf_counter() - phase:.1f} s", flush=True)
        print(f"customer item size: {args.item_customers} customers x {item_size.DAYS:g} days + a heavy one...")
        sizes = item_size.measure(args.item_customers)
        print(f"  {sizes.seconds:.1f} s", flush=True)
    finally:
        stop_all()

    duration = args.duration
    raw_rate_value = raw.counted / duration
    collector_rate = best.rate(duration)
    handler_ms = statistics.median(handler_times) * 1000
    boto_ms = statistics.median(boto_times) * 1000
    errors = sum(r.stats.bad_requests for r in runs), sum(r.stats.bad_events for r in runs)

    rows = cost_rows(workloads)
    rows += [
        Row(
            f"processing lag at a steady {args.steady_rate:g} events/s ({steady_events:,} events)",
            seconds_or_failed(steady_lag),
            "—",
            "—",
            f"< {LAG_TARGET:g} s",
            yes(steady_lag < LAG_TARGET),
        ),
        Row(
            "processing backlog after the best throughput run: stream runner caught up after the load",
            seconds_or_failed(drain),
            "—",
            "—",
            "— (reported: the collector outruns processing)",
            "—",
        ),
        Row(
            f"/v1/batch throughput, best (serve --workers {best.workers}, {best.clients} clients)",
            f"{collector_rate:,.0f} events/s",
            f"{raw_rate_value:,.0f} items/s (raw SQLite insert loop, 1 thread)",
            f"{collector_rate / raw_rate_value:.3f}",
            f"≥ {THROUGHPUT_TARGET:,.0f} events/s",
            yes(collector_rate >= THROUGHPUT_TARGET),
        ),
    ]
    rows += [
        Row(
            f"/v1/batch throughput (serve --workers {r.workers}, {r.clients} clients)",
            f"{r.rate(duration):,.0f} events/s",
            f"{raw_rate_value:,.0f} items/s",
            f"{r.rate(duration) / raw_rate_value:.3f}",
            "— (tried)",
            "—",
        )
        for r in runs
        if r is not best
    ]
    rows += [
        Row(
            "load errors: bad requests / events not accepted (all runs)",
            f"{errors[0]} / {errors[1]}",
            "—",
            "—",
            "0 / 0",
            yes(errors == (0, 0)),
        ),
        Row(
            f"collect handler module import (median of {args.import_runs})",
            f"{handler_ms:.0f} ms",
            f"{boto_ms:.0f} ms (import boto3 + DynamoDB client)",
            f"{handler_ms / boto_ms:.3f}",
            f"ratio ≤ {IMPORT_RATIO_TARGET:g}",
            yes(handler_ms / boto_ms <= IMPORT_RATIO_TARGET),
        ),
    ]
    rows += analytics_rows(figures)
    rows += tui_rows(screens, tui_info)
    rows += [Row(*row) for row in item_size.rows(sizes)]
    header["elapsed"] = f"{time.perf_counter() - began:.0f} s"
    header["scale"] = (
        f"throughput {args.warmup:g} + {args.duration:g} s per configuration (workers {args.workers}, clients "
        f"{args.clients}); steady lag {args.steady_rate:g} events/s for {args.duration:g} s; bulk history "
        f"{args.cost_customers} customers x 14 days; live {args.live_rate:g} events/s for {args.live_seconds:g} s; "
        f"steady {args.steady_rate:g} events/s for {args.duration:g} s; "
        f"worst {args.worst_visits} visits at once, {args.live_rate:g} events/s for {args.worst_seconds:g} s; "
        f"TUI {args.tui_customers:,} customers x 10 events + a heavy merged customer; item sizes "
        f"{args.item_customers} customers x {item_size.DAYS:g} days + {item_size.HEAVY_EVENTS:,} events"
    )
    best_latency = statistics.median(best.stats.latencies) * 1000 if best.stats.latencies else float("nan")
    notes = [
        "Write and read units (benchmarks/cost_bench.py, benchmarks/meter.py): each workload runs a fresh "
        "`footfall serve` on the embedded database, each of its processes metered in-process "
        "(benchmarks/metered/sitecustomize.py), so every request of the collector workers, the stream runner and "
        "the scheduler is billed as AWS bills it (item "
        "size per 1 KB written / 4 KB read, the larger of before and after, transaction actions 2x, index entries, "
        "deletes, failed conditions; the rules and their sources are in meter.py's docstring). The stream runner "
        f"batches like the template's mappings (processing: BatchSize 1000, {cost_bench.BATCH_WINDOW:g} s window; "
        f"the counter fold {cost_bench.FOLD_WINDOW:g} s after the first record of its window). Events come from "
        "shared/simulate/. Per-entity "
        "ledgers below the table; `event/default` are the collector's event items, `event/footfall` the Audience "
        "Entered/Exited events processing writes, `pk:ID`/`pk:CUSTOMER` reads of items that did not exist "
        "(identity-link and first-profile lookups). Naive 3 = each event's own event "
        "item units + 1 de-duplication marker + 1 profile update.",
        "Events (benchmarks/bench_corpus.py): the simulator's shop traffic (shared/simulate/, what `footfall "
        "simulate` sends), the first /v1/batch calls of a history where "
        f"{CUSTOMERS:,} people arrive within {DAYS * 24:g} h, many visits under way at "
        "once: page calls, Product Viewed, Product Added with cart_id, Checkout Started and Order Completed with "
        "their products, identify at sign-up, checkout or login, Signed Up; context.page, userAgent, UTM campaign; "
        "about one event in six brings a new identity (e-mail opens and clicks, sent by pixel and redirect, are "
        "left out). 100 events per request, the write key in each event, unique messageIds.",
        f"Throughput: {args.warmup:g} s warm-up then {duration:g} s measured per configuration, each on a fresh "
        "`footfall serve` (own data dir, the embedded SQLite database); keep-alive http.client threads "
        f"in this process; events counted from `accepted` answers completed in the window. Best run: "
        f"{best.stats.requests:,} requests, median request latency {best_latency:.0f} ms.",
        f"Baseline throughput: a raw SQLite insert loop in this process (fresh WAL file, synchronous=NORMAL as the "
        f"embedded store), {BATCH_WRITE_SIZE} event items per transaction (event_to_item on the same kind of parsed "
        "events, unique keys, JSON bodies), one thread, same warm-up and window: the file's ceiling. The collector's "
        "path does more per event: parsing and validating the call, a conditional put each (its own transaction, "
        "with the change-feed row), the suppression read, HTTP.",
        "Import: `python -c` fresh interpreters, timed inside the child with time.perf_counter, interleaved; "
        f"handler {', '.join(f'{t * 1000:.0f}' for t in handler_times)} ms; "
        f"boto3 {', '.join(f'{t * 1000:.0f}' for t in boto_times)} ms.",
    ]
    notes.append(
        "Analytics (benchmarks/analytics_bench.py): the purchase funnel's counter items that processing keeps for "
        "10k/100k/1M synthetic shop events over 30 days (each customer's cells, summed) are put into a fresh "
        "embedded database (SQLite, opened in this process as `footfall serve`'s default is); a 30-day report is "
        "read 5 times (requests counted with a botocore-style hook: the definitions GetItem and one Query; median "
        "latency shown)."
    )
    check = tui_info["check"]
    notes.append(
        f"TUI (benchmarks/tui_bench.py): {tui_info['items']:,} items in a table made from TABLE_DEFINITION (stream "
        f"enabled) in a fresh embedded SQLite database, in {tui_info['fill_seconds']:.0f} s "
        f"({tui_info['sqlite_bytes'] / 2**20:.0f} MB with its WAL): {check.customers:,} customers, "
        f"{check.events:,} events (one heavy merged customer with {len(tui_bench.HEAVY_IDENTITIES)} identities and "
        f"{len(tui_bench.HEAVY_IDENTITIES) * tui_bench.HEAVY_EVENTS_EACH:,} events and two logins, plus its merged "
        f"tombstone), profiles folded by processing's code, links, {tui_info['counter_items']:,} counter items (the "
        "customers' cells and segment sizes, summed as the fold sums them); every customer evaluated against the "
        "starter segments through the product's write path "
        f"({tui_info['transitions']:,} entries: memberships, due list, audience events, history; sizes "
        f"{tui_info['segment_sizes']}), then their analytics cells items (`update_customers`); "
        f"{tui_bench.FAILED_EVENTS} failed events; {tui_bench.LIVE_ITEMS} live "
        "items. Each screen's data-source reads (what it calls when it opens) timed, median of 3, requests counted "
        "with a botocore-style hook, read units from one metered pass (benchmarks/meter.py), the file opened "
        "directly as `footfall tui` opens `footfall serve`'s default. Rendering is not included. Check path: "
        "`services.analytics.recompute` (what `funnels show --check` and `retention --check` run) on that table; "
        "baseline: its pure part (`domain.analytics.recompute`) on the same events already in memory."
    )
    notes.append(item_size.note(sizes))
    samples = [s for r in runs for s in r.stats.samples][:3]
    if samples:
        notes.append("First load errors: " + "; ".join(f"`{s}`" for s in samples))
    for r in runs:
        if r.died:
            notes.append(
                f"`footfall serve --workers {r.workers}` ({r.clients} clients) died during its run: {r.died!r}"
            )
    ledgers = [line for workload in workloads for line in cost_bench.ledger_table(workload)]
    print()
    print_table(rows)
    args.output.write_text(render(rows, header, notes, ledgers) + kept_sections(args.output))
    print(f"\nwritten to {args.output}")
    failures = cost_bench.problems(workloads)
    failures += [
        f"{what}: processing did not catch up"
        for what, lag in (("steady load", steady_lag), ("best run", drain))
        if math.isinf(lag)
    ]
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
