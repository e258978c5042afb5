"""`make load`: N concurrent clients against a fresh `footfall serve` for a bounded time, on loopback.

Reports accepted events/s, p50/p99 request latency, errors (target 0) and how long processing needed to catch
up once the load stopped. Not part of `make test` (it is a measurement, and takes minutes).

    python benchmarks/load.py [--clients 8] [--duration 30] [--workers 2] [--catch-up 300]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import bench


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8, help="concurrent keep-alive clients (default 8)")
    parser.add_argument("--duration", type=float, default=30.0, help="measured seconds (default 30)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring (default 3)")
    parser.add_argument("--workers", type=int, default=2, help="serve --workers (default 2)")
    parser.add_argument("--catch-up", type=float, default=300.0, help="how long to wait for processing (default 300)")
    args = parser.parse_args(argv)
    serve = bench.start_serve(args.workers)
    try:
        corpus = bench.build_corpus(serve.info.write_key, seed=31)
        window = bench.Window(args.warmup, args.duration)
        print(f"{args.clients} clients, {args.warmup:g} s warm-up + {args.duration:g} s on {serve.info.collector_url}")
        stats = bench.drive_collector(serve.port, serve.info.write_key, corpus, args.clients, window)
        print("waiting for processing to catch up...", flush=True)
        lag = bench.wait_for_processing(serve, timeout=args.catch_up)
    finally:
        bench.discard_serve(serve)
        bench.stop_all()
    latencies = sorted(stats.latencies)
    p50 = statistics.median(latencies) * 1000 if latencies else float("nan")
    p99 = bench.percentile(latencies, 0.99) * 1000 if latencies else float("nan")
    rate = stats.counted / args.duration
    caught = f"{lag:.1f} s" if lag != float("inf") else f"not within {args.catch_up:g} s"
    print(f"accepted events/s       {rate:,.0f}")
    print(f"requests                {stats.requests:,} (100 events each)")
    print(f"latency p50 / p99       {p50:.0f} ms / {p99:.0f} ms")
    print(f"errors                  {stats.bad_requests} bad requests, {stats.bad_events} events not accepted")
    print(f"processing caught up    {caught} after the load stopped")
    for sample in stats.samples[:3]:
        print(f"  first errors: {sample}")
    return 0 if stats.bad_requests == 0 and stats.bad_events == 0 else 1


if __name__ == "__main__":
    began = time.perf_counter()
    code = main()
    print(f"({time.perf_counter() - began:.0f} s)")
    sys.exit(code)
