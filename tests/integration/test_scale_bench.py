"""`make bench-scale`'s builder and meter at a tiny size, so that the bench does not rot: the data dir it builds
audits right (the independent oracle, and the items read back with sqlite3), grows, and every TUI screen reads."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.oracle import audit

pytestmark = pytest.mark.integration

CUSTOMERS = 200
EVENTS_EACH = 10


def test_the_scale_bench_builds_a_data_dir_that_audits_right_and_times_every_screen(tmp_path: Path) -> None:
    from benchmarks import scale_bench, tui_bench

    # Given a data dir built by the bench
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    now = datetime.now(UTC).replace(microsecond=0)
    built = scale_bench.build(data_dir, CUSTOMERS, EVENTS_EACH, now)

    # Then what the oracle recomputes from the raw events is what is stored, and the counts are what was built
    heavy_events = len(tui_bench.HEAVY_IDENTITIES) * tui_bench.HEAVY_EVENTS_EACH + 2  # two logins
    assert built.customers == CUSTOMERS + 1
    assert built.events == CUSTOMERS * EVENTS_EACH + heavy_events
    _client, store = scale_bench.open_database(data_dir)
    report = audit(store, now=now)
    assert len(report.customers) == built.customers
    counts = scale_bench.count_items(data_dir)
    assert counts["event"] == built.events
    assert counts["customer profile"] == built.customers
    assert counts["merged profile"] == 1
    assert counts["link"] == CUSTOMERS + len(tui_bench.HEAVY_IDENTITIES)
    assert counts["member"] == counts["audience event"] == built.info["transitions"] > 0
    with closing(sqlite3.connect(data_dir / "footfall.db")) as db:  # the build's change records: as if processed
        assert db.execute("SELECT COUNT(*) FROM changes").fetchone()[0] == 0

    # When it grows, every screen is timed on it, and serve starts on it
    grown = scale_bench.grow(data_dir, CUSTOMERS, 50, EVENTS_EACH, now)
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    stage = scale_bench.measure(data_dir, built.customers + 50, built.events + grown.events, now, 1, empty_dir)

    # Then the new customers are there, every screen read in a handful of requests, and serve got ready
    counts = scale_bench.count_items(data_dir)
    assert counts["event"] == built.events + grown.events == built.events + 50 * EVENTS_EACH
    assert counts["customer profile"] == built.customers + 50
    assert [f.screen for f in stage.screens] == list(tui_bench.screens(None, "", now))
    assert all(0 < f.requests <= tui_bench.SCREEN_REQUEST_TARGET for f in stage.screens)
    assert stage.size.file_bytes >= stage.size.used_bytes > 0
    assert len(stage.serve_seconds) == len(stage.empty_serve_seconds) == 1  # serve started on it, and on an empty dir
