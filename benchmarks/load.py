"""`make load`: load a fresh `footfall serve` on loopback, flat out or at a steady rate, and measure it.

Two modes (not part of `make test`: it is a measurement, and takes minutes):

- flat out (no `--rate`): N concurrent clients send bench corpus batches (the simulator's shop calls) as fast as the
  collector answers for `--duration` s (default 30); reports accepted events/s, p50/p99 request latency, errors
  (target 0) and how long processing needed to catch up once the load stopped.
- steady (`--rate R`): the simulator's live traffic (`shared.simulate.live`: new and returning visitors, carts,
  orders, identifies, e-mail opens and clicks) paced at R events/s for `--duration` s (default 120), and issue
  #15's two figures measured end to end, as a user sees them:
  - the lag curve: every 5 s, during the load and after it until processing has caught up, a marker event of a
    fresh userId is posted, and its lag is the time until that customer's profile exists (several markers are in
    flight at once when the lag exceeds 5 s, so samples stay 5 s apart);
  - segment latency: every 10 s during the load, a deciding event for a starter segment that one event enters
    (`--segment`, default `new_customers`) from a fresh userId, timed until the membership is `in` in the store
    (and until its `Audience Entered` is published to the local outbox);
  - time-based latency: a segment decided by a deadline (`load_timed_abandoners`: a cart not ordered within
    `TIMED_WINDOW` s, applied at the start), probed every 10 s during the load by a fresh userId's cart, timed from
    its deadline until the membership is `in` (target `--timed-target`, default 10 s: issue #15's local bound);
  - the collector's p50/p99 `/v1/batch` latency at that rate.
  Exit status 1 when a lag sample reached `--lag-target` (default 5 s), a segment entry took longer than
  `--segment-target` (default 5 s) or a time-based one longer than `--timed-target` after its deadline, a probe
  was never seen, or an event was not accepted.

`--json PATH` writes the summary's figures as JSON.

    python benchmarks/load.py [--clients 8] [--duration 30] [--workers 2] [--catch-up 300]
    python benchmarks/load.py --rate 200 [--duration 120] [--lag-target 5] [--segment new_customers] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.load_figures import percentile, rounded  # noqa: E402
from benchmarks.load_steady import SEGMENT_PROBES, report_steady, run_steady  # noqa: E402

# --- flat-out run ------------------------------------------------------------------------------------------------


def run_flat_out(args: argparse.Namespace) -> int:
    from bench_corpus import build_corpus
    from bench_load import Window, drive_collector
    from bench_stack import discard_serve, start_serve, stop_all, wait_for_processing

    duration = args.duration if args.duration is not None else 30.0
    serve = start_serve(args.workers)
    try:
        corpus = build_corpus(serve.info.write_key, seed=31)
        window = Window(args.warmup, duration)
        print(f"{args.clients} clients, {args.warmup:g} s warm-up + {duration:g} s on {serve.info.collector_url}")
        stats = drive_collector(serve.port, serve.info.write_key, corpus, args.clients, window)
        print("waiting for processing to catch up...", flush=True)
        lag = wait_for_processing(serve, timeout=args.catch_up)
    finally:
        discard_serve(serve)
        stop_all()
    latencies = sorted(stats.latencies)
    p50 = statistics.median(latencies) * 1000 if latencies else float("nan")
    p99 = percentile(latencies, 0.99) * 1000 if latencies else float("nan")
    rate = stats.counted / duration
    caught = f"{lag:.1f} s" if lag != float("inf") else f"not within {args.catch_up:g} s"
    print(f"accepted events/s       {rate:,.0f}")
    print(f"requests                {stats.requests:,} (100 events each)")
    print(f"latency p50 / p99       {p50:.0f} ms / {p99:.0f} ms")
    print(f"errors                  {stats.bad_requests} bad requests, {stats.bad_events} events not accepted")
    print(f"processing caught up    {caught} after the load stopped")
    for sample in stats.samples[:3]:
        print(f"  first errors: {sample}")
    if args.json is not None:
        figures = {
            "mode": "flat_out",
            "clients": args.clients,
            "duration_s": duration,
            "workers": args.workers,
            "accepted_events_per_second": round(rate, 1),
            "requests": stats.requests,
            "collector": {"p50_ms": rounded(p50, 1), "p99_ms": rounded(p99, 1)},
            "bad_requests": stats.bad_requests,
            "events_not_accepted": stats.bad_events,
            "caught_up_after_stop_s": rounded(lag),
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"figures written to {args.json}")
    return 0 if stats.bad_requests == 0 and stats.bad_events == 0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, help="steady mode: events/s of paced simulator traffic")
    parser.add_argument("--duration", type=float, help="seconds of load (default 30 flat out, 120 with --rate)")
    parser.add_argument("--clients", type=int, default=8, help="flat out: concurrent keep-alive clients (default 8)")
    parser.add_argument("--warmup", type=float, default=3.0, help="flat out: seconds before measuring (default 3)")
    parser.add_argument("--workers", type=int, default=2, help="serve --workers (default 2)")
    parser.add_argument("--catch-up", type=float, default=300.0, help="how long to wait for processing (default 300)")
    parser.add_argument("--lag-target", type=float, default=5.0, help="steady: lag at which a sample fails (5)")
    parser.add_argument("--segment", choices=sorted(SEGMENT_PROBES), default="new_customers", help="steady: probe")
    parser.add_argument("--segment-target", type=float, default=5.0, help="steady: max seconds to enter (5)")
    parser.add_argument("--seed", type=int, default=15, help="steady: simulator seed (default 15)")
    parser.add_argument(
        "--timed-target", type=float, default=10.0, help="steady: max seconds after a deadline to enter (10)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _on_signal)
    if args.rate is None:
        return run_flat_out(args)
    if args.rate <= 0:
        parser.error("--rate must be positive")
    args.duration = args.duration if args.duration is not None else 120.0
    return report_steady(run_steady(args), args.json)


def _on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through the `finally` blocks, which stop serve


if __name__ == "__main__":
    began = time.perf_counter()
    code = main()
    print(f"({time.perf_counter() - began:.0f} s)")
    sys.exit(code)
