"""The CLI's one renderer: `--json` is the read models' serialisation, in today's shape and key order."""

from __future__ import annotations

import argparse
import json

from shared.cli import render
from shared.services.customers import CustomerDetail, Forgotten, RecentEvent
from shared.services.segments import AppliedSegment, SegmentDiff, SegmentExplanation, SegmentPlan, SegmentsApplied


def _detail() -> CustomerDetail:
    return CustomerDetail(
        customer_id="u:ann",
        user_id="ann",
        email="ann@example.com",
        first_seen="2026-03-01T10:00:00.000Z",
        last_seen="2026-03-07T11:00:00.000Z",
        events=2,
        orders=1,
        revenue=59.5,
        identities=("u:ann", "a:x"),
        traits={"email": "ann@example.com"},
        computed={"average_order_value": 59.5, "rolling": {"30d": {"events": 2}}, "open_cart": []},
        flags={},
        links=({"attached": "u:ann", "via": "m-1"},),
        recent_events=(RecentEvent("2026-03-07T11:00:00.000Z", "page", None, "m-2", "web", {"path": "/"}),),
        total_stored_events=2,
    )


def test_a_customer_detail_is_serialised_field_by_field_in_declaration_order():
    data = render.plain(_detail())
    assert list(data) == [
        "customer_id",
        "user_id",
        "email",
        "first_seen",
        "last_seen",
        "events",
        "orders",
        "revenue",
        "identities",
        "traits",
        "computed",
        "flags",
        "links",
        "recent_events",
        "total_stored_events",
    ]
    assert data["identities"] == ["u:ann", "a:x"]
    assert data["recent_events"] == [
        {
            "at": "2026-03-07T11:00:00.000Z",
            "type": "page",
            "event": None,
            "message_id": "m-2",
            "source": "web",
            "properties": {"path": "/"},
        }
    ]


def test_a_segment_plan_is_an_object_keyed_by_segment_id():
    plan = SegmentPlan(
        {"browsers": SegmentDiff(2, 1, 9, ("u:a", "u:b"), ("u:c",)), "lapsed": SegmentDiff(0, 0, 0, (), ())}
    )
    assert render.plain(plan) == {
        "browsers": {"enter": 2, "exit": 1, "size": 9, "sample_enter": ["u:a", "u:b"], "sample_exit": ["u:c"]},
        "lapsed": {"enter": 0, "exit": 0, "size": 0, "sample_enter": [], "sample_exit": []},
    }
    assert render.segment_plan(plan).splitlines() == [
        "browsers             +2 -1 (size 9) u:a u:b",
        "lapsed               +0 -0 (size 0) ",
    ]


def test_json_or_text_is_the_same_result(capsys):
    why = SegmentExplanation(
        "browsers", "u:ann", member=False, rule_says=True, reasons=("count = 5",), next_change=None
    )
    render.emit(argparse.Namespace(json=True), why, render.explanation)
    assert json.loads(capsys.readouterr().out) == {
        "segment": "browsers",
        "customer_id": "u:ann",
        "member": False,
        "rule_says": True,
        "reasons": ["count = 5"],
        "next_change": None,
    }
    render.emit(argparse.Namespace(json=False), why, render.explanation)
    assert capsys.readouterr().out == "u:ann is not in browsers\n  - count = 5\nnext change: only with a new event\n"


def test_the_other_results_keep_their_shape():
    applied = SegmentsApplied((AppliedSegment("browsers", 2),), entered=3, exited=1)
    assert render.plain(applied) == {"segments": [{"id": "browsers", "version": 2}], "entered": 3, "exited": 1}
    assert render.applied_segments(applied) == "applied browsers v2; backfill: 3 entered, 1 exited"
    gone = Forgotten(None, ("u:x", "a:x"), 0)
    assert render.plain(gone) == {"customer_id": None, "identities": ["u:x", "a:x"], "deleted_items": 0}
    assert render.forgotten("x")(gone) == "forgot x: 0 items deleted; identities u:x, a:x will not be stored again"
    assert render.customer(_detail()).splitlines()[-1] == "  2026-03-07T11:00:00.000Z  page      "


CHATTY = """
import argparse
import importlib

cli = importlib.import_module("shared.cli.main")  # the module (the package's `main` is its function)

def chatty(_):
    for n in range(200_000):
        print(f"line {n}")
    return 0

def parser():
    built = argparse.ArgumentParser()
    built.set_defaults(func=chatty)
    return built

cli.build_parser = parser
raise SystemExit(cli.main([]))
"""


def test_a_reader_that_goes_away_ends_the_command_quietly():
    # Given a command printing far more than a pipe holds, read by something that stops after one line (`| head -1`)
    import subprocess
    import sys

    process = subprocess.Popen(
        [sys.executable, "-c", CHATTY], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.readline() == "line 0\n"
    process.stdout.close()
    # Then it ends with the shell's code for a closed pipe, and no traceback
    assert process.wait(timeout=30) == 141
    assert process.stderr.read() == ""
