"""`make load`'s pieces without a stack: the sampling grid, markers in flight, the lag curve's statistics and
verdict, the outbox reader and the collector-latency wrapper."""

from __future__ import annotations

import json
import math
from pathlib import Path

from benchmarks.load_figures import (
    InFlight,
    Probe,
    Ticker,
    curve_stats,
    failures,
    lag_table,
    percentile,
    segment_figures,
    summary_lines,
)
from benchmarks.load_steady import Outbox, timed_batches


def test_percentile_is_nearest_rank_and_nan_when_empty() -> None:
    values = [float(n) for n in range(1, 101)]
    assert percentile(values, 0.95) == 95.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([7.0], 0.99) == 7.0
    assert math.isnan(percentile([], 0.5))


def test_ticker_fires_once_per_moment_and_drops_missed_ones() -> None:
    ticker = Ticker(100.0, 5.0)
    assert not ticker.due(99.9)
    assert ticker.due(100.0)
    assert not ticker.due(104.9)
    assert ticker.due(105.2)
    # A loop busy for 17 s fires once, not three times, and stays on the grid.
    assert ticker.due(122.0)
    assert not ticker.due(122.5)
    assert ticker.next == 125.0


def test_several_markers_stay_in_flight_and_resolve_independently() -> None:
    book = InFlight(timeout=60.0)
    first = book.add(Probe("m0", sent=0.0, t=0.0))
    second = book.add(Probe("m1", sent=5.0, t=5.0))
    third = book.add(Probe("m2", sent=10.0, t=10.0))
    assert [p.name for p in book.pending()] == ["m0", "m1", "m2"]

    assert book.mark_seen(["m0", "unknown"], now=12.0) == [first]
    assert book.mark_seen(["m0"], now=13.0) == []  # first sighting only
    assert first.latency == 12.0
    assert [p.name for p in book.pending()] == ["m1", "m2"]
    assert not book.settled

    book.mark_seen(["m2"], now=14.0)  # out of order is fine: each has its own clock
    assert third.latency == 4.0
    assert book.expire(now=64.9) == []
    assert book.expire(now=65.0) == [second]
    assert second.expired and second.latency is None
    assert book.settled


def test_curve_counts_samples_at_or_over_the_target_and_never_seen_as_infinite() -> None:
    probes = [Probe(f"m{n}", sent=5.0 * n, t=5.0 * n, seen=5.0 * n + lag) for n, lag in enumerate([1, 2, 5, 3])]
    curve = curve_stats(probes, target=5.0)
    assert (curve.samples, curve.seen, curve.max) == (4, 4, 5.0)
    assert [p.name for p in curve.over] == ["m2"]  # 5.0 is not below the 5 s target

    lost = Probe("m4", sent=20.0, t=20.0, expired=True)
    refused = Probe("m5", sent=25.0, t=25.0, rejected="HTTP 400")
    curve = curve_stats([*probes, lost, refused], target=5.0)
    assert curve.samples == 5 and curve.seen == 4
    assert math.isinf(curve.max) and math.isinf(curve.p95)
    assert [p.name for p in curve.over] == ["m2", "m4"]


def test_lag_table_flags_what_misses_the_target() -> None:
    probes = [
        Probe("a", sent=0.0, t=0.0, seen=1.25),
        Probe("b", sent=5.0, t=5.0, seen=12.0),
        Probe("c", sent=10.0, t=10.0, expired=True),
        Probe("d", sent=60.0, t=60.0, seen=61.0, phase="after"),
    ]
    lines = lag_table(probes, target=5.0)
    assert lines[0].split() == ["t", "(s)", "|", "lag", "(s)"]
    assert lines[2].split() == ["0", "|", "1.2"]
    assert ">= 5 s target" in lines[3] and "7.0" in lines[3]
    assert "NOT SEEN" in lines[4]
    assert "after the load" in lines[5]


def _figures(lags: list[float], segment: list[float | None]) -> dict:
    markers = [Probe(f"m{n}", sent=5.0 * n, t=5.0 * n, seen=5.0 * n + lag) for n, lag in enumerate(lags)]
    curve = curve_stats(markers, 5.0)
    probes = [
        Probe(f"s{n}", sent=10.0 * n, t=10.0 * n, seen=None if x is None else 10.0 * n + x, expired=x is None)
        for n, x in enumerate(segment)
    ]
    return {
        "rate": 200.0,
        "duration_s": 5.0,
        "traffic": {
            "sent": 1000,
            "accepted": 950,
            "recorded": 1000,
            "duplicate": 0,
            "rejected": 0,
            "not_stored": 0,
            "opens": 30,
            "clicks": 20,
            "seconds": 5.0,
            "events_per_second": 190.0,
            "sending_events_per_second": 200.0,
        },
        "lag": {
            "target_s": 5.0,
            "samples": curve.samples,
            "over_target": len(curve.over),
            "max_s": curve.max,
            "p95_s": curve.p95,
        },
        "segment": {"id": "new_customers", "target_s": 5.0, **segment_figures(probes)},
        "collector": {"requests": 10, "p50_ms": 100.0, "p99_ms": 300.0},
        "caught_up_after_stop_s": 1.0,
        "error": None,
    }


def test_verdict_passes_only_when_every_target_is_met() -> None:
    good = _figures([1.0, 2.0, 1.5], [1.0, 2.0])
    assert failures(good) == []
    assert good["segment"]["p50_s"] == 1.5 and good["segment"]["max_s"] == 2.0
    summary = "\n".join(summary_lines(good))
    for figure in ("200.0 events/s", "max 2.0 s, p95 2.0 s", "p50 1.5 s, max 2.0 s", "p50 100 ms, p99 300 ms"):
        assert figure in summary

    slow = _figures([1.0, 6.0, 30.0], [1.0, 8.0])
    problems = failures(slow)
    assert any("lag reached the 5 s target in 2 of 3 samples" in p for p in problems)
    assert any("new_customers entered up to 8.0 s" in p for p in problems)

    short = _figures([1.0], [1.0])
    short["rate"] = 1000.0  # the sender reached 200 events/s of the 1,000 asked
    assert any("reached only 200 of the 1,000 events/s asked" in p for p in failures(short))
    assert failures(short | {"rate": 205.0}) == []  # within 5 % of the asked rate

    lost = _figures([1.0], [1.0, None])
    lost["caught_up_after_stop_s"] = None
    problems = failures(lost)
    assert any("1 of 2 segment probes never entered" in p for p in problems)
    assert any("did not catch up" in p for p in problems)
    assert "never (gave up)" in "\n".join(summary_lines(lost))


def test_outbox_reader_returns_new_audience_entries_of_the_segment_once(tmp_path: Path) -> None:
    path = tmp_path / "outbox.jsonl"
    outbox = Outbox(path)
    assert outbox.entered("new_customers") == set()  # not written yet

    def line(user: str, event: str = "Audience Entered", segment: str = "new_customers") -> str:
        return json.dumps({"event": event, "userId": user, "properties": {"audience_key": segment}}) + "\n"

    path.write_text(line("a") + line("b", segment="browsers") + line("c", event="Audience Exited") + '{"event": "Au')
    assert outbox.entered("new_customers") == {"a"}
    with path.open("a") as handle:  # the half-written line completes
        handle.write('dience Entered", "userId": "d", "properties": {"audience_key": "new_customers"}}\n')
    assert outbox.entered("new_customers") == {"d"}
    assert outbox.entered("new_customers") == set()


def test_timed_batches_times_the_simulators_requests_and_restores_its_client() -> None:
    from shared import simulate

    original = simulate.CollectorClient.batch
    latencies: list[float] = []

    class Client(simulate.CollectorClient):
        def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
            return 200, {}, json.dumps({"results": [{"status": "accepted"}]}).encode()

    target = simulate.Target(url="http://127.0.0.1:9", write_key="wk", source_id="default", link_secret="s")
    with timed_batches(latencies):
        assert Client(target).batch([{"type": "track"}]) == [{"status": "accepted"}]
    assert len(latencies) == 1 and latencies[0] >= 0
    assert simulate.CollectorClient.batch is original


def test_a_new_bench_run_keeps_the_sections_other_tools_wrote(tmp_path: Path) -> None:
    from benchmarks.bench import kept_sections

    results = tmp_path / "RESULTS.md"
    assert kept_sections(results) == ""  # no file yet
    results.write_text(
        "# results\n\n| old table |\n\n## Steady load (x)\n\ncurve\n\n## Mutation testing (y)\n\nscores\n"
    )
    assert kept_sections(results) == "\n## Steady load (x)\n\ncurve\n\n## Mutation testing (y)\n\nscores\n"
    results.write_text("# results\n\n| old table |\n")
    assert kept_sections(results) == ""


def test_time_based_probes_count_from_their_deadline_and_fail_past_the_target() -> None:
    # A probe sent at 0 with a 5 s window, seen in the segment at 12 s: 7 s after its deadline
    def timed(seen: list[float | None]) -> dict:
        probes = [Probe(f"t{n}", sent=0.0, t=0.0, seen=x, expired=x is None, after=5.0) for n, x in enumerate(seen)]
        return {"id": "load_timed_abandoners", "window_s": 5.0, "target_s": 10.0, **segment_figures(probes)}

    good = _figures([1.0], [1.0]) | {"timed": timed([12.0, 8.0])}
    assert failures(good) == []
    assert good["timed"]["max_s"] == 7.0 and good["timed"]["p50_s"] == 5.0
    assert "p50 5.0 s, max 7.0 s after the deadline" in "\n".join(summary_lines(good))
    late = _figures([1.0], [1.0]) | {"timed": timed([16.5, 9.0])}
    assert failures(late) == ["segment load_timed_abandoners entered up to 11.5 s after the deadline (target <= 10 s)"]
    lost = _figures([1.0], [1.0]) | {"timed": timed([6.0, None])}
    assert failures(lost) == ["1 of 2 time-based probes never entered load_timed_abandoners"]
