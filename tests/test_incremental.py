"""Incremental syncs: lookback, late arrivals and updates, a killed sync, a future bookmark."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import time

from tests import expected
from tests.tap_run import TAP, _write, bookmark_of, catalog_for, config_for, sync


def test_second_run_rereads_the_lookback_and_picks_up_changes(make_sandbox):
    sb = make_sandbox(calls=900, start_date="2024-01-01", end_date="2024-03-31", seed=21)
    config = config_for(sb, page_size=100, lookback_days=3)
    first = sync(config, streams=["calls"])
    assert first.returncode == 0, first.stderr[-2000:]
    bookmark = first.bookmark()
    assert bookmark is not None
    assert bookmark == max(r["start_date"] for r in first.records())
    assert len(json.dumps(first.state)) < 400, "state stays one small object per stream"

    reread_from = expected.local_day(bookmark) - dt.timedelta(days=3)
    late = sb.add_calls(6, reread_from.isoformat(), "2024-03-31")  # late arrivals in the lookback
    too_late = sb.add_calls(2, "2024-01-10", "2024-01-12")  # older than the lookback reaches
    changed = sb.update_calls(40)
    sb.clear_requests()

    second = sync(config, state=first.state, streams=["calls"])
    assert second.returncode == 0, second.stderr[-2000:]
    assert {r.params["start_date"] for r in sb.requests} == {reread_from.isoformat()}
    assert len(sb.requests) <= 2, "an incremental run reads only the lookback"

    warehouse = expected.by_id(first.records() + second.records())
    for call in late:
        assert warehouse[expected.call_id(call)] == expected.record(call) | {
            "additional_fields": None
        }
    for call in too_late:
        assert expected.call_id(call) not in warehouse, (
            "documented: the lookback bounds late arrivals"
        )
    now = expected.keyed(sb.truth_calls())
    for call in changed:
        row = warehouse[expected.id_in(call, now)]
        if dt.date.fromisoformat(call["start_date"][:10]) >= reread_from:
            assert (row["status"], row["duration"], row["revenue"]) == (
                call["status"],
                call["duration"],
                call["revenue"],
            ), "an update inside the lookback is re-read"
    assert len(warehouse) == 900 + 6
    assert (second.bookmark() or "") >= bookmark


def test_a_killed_sync_resumes_from_its_last_completed_window(make_sandbox, tmp_path):
    sb = make_sandbox(
        calls=1200, start_date="2024-01-01", end_date="2024-04-29", seed=22, latency=0.05
    )
    config = config_for(sb, page_size=50, window_days=4, max_concurrent_requests=2)
    output = tmp_path / "stdout.jsonl"
    command = [*TAP, "--config", _write(config), "--catalog", _write(catalog_for(["calls"]))]
    with output.open("w") as stdout:
        process = subprocess.Popen(command, stdout=stdout, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while output.read_text().count('"type":"STATE"') < 8:
            assert process.poll() is None, "the sync ended before it could be killed"
            assert time.monotonic() < deadline, "no progress within 300 s"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    lines = output.read_text().splitlines()
    messages = [json.loads(line) for line in lines[:-1]]  # the last line may be cut
    killed_records = [m["record"] for m in messages if m["type"] == "RECORD"]
    killed_state = [m["value"] for m in messages if m["type"] == "STATE"][-1]
    assert 0 < len(killed_records) < 1200, "killed midway"
    bookmark = bookmark_of(killed_state)
    assert bookmark is not None

    sb.clear_requests()
    resumed = sync(config, state=killed_state, streams=["calls"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    restart_day = expected.local_day(bookmark) - dt.timedelta(days=3)
    assert min(r.params["start_date"] for r in sb.requests) == restart_day.isoformat(), (
        "resumes from the bookmark minus the lookback, not from start_date"
    )
    warehouse = expected.by_id(killed_records + resumed.records())
    truth = expected.ids(sb.truth_calls())
    assert set(warehouse) == truth, "nothing lost, nothing invented"


def test_a_bookmark_in_the_future_fetches_nothing(make_sandbox):
    sb = make_sandbox(calls=100, seed=23)
    state = {
        "bookmarks": {
            "calls": {
                "replication_key": "start_date",
                "replication_key_value": "2030-01-01T00:00:00+00:00",
            }
        }
    }
    run = sync(config_for(sb), state=state, streams=["calls"])
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.records() == []
    assert sb.requests == []
    assert run.bookmark() == "2030-01-01T00:00:00+00:00", "the bookmark is kept, not lost"


def test_start_date_moved_past_the_bookmark_wins(make_sandbox):
    sb = make_sandbox(calls=300, start_date="2024-01-01", end_date="2024-03-31", seed=24)
    state = {
        "bookmarks": {
            "calls": {
                "replication_key": "start_date",
                "replication_key_value": "2024-01-15T10:00:00+00:00",
            }
        }
    }
    run = sync(config_for(sb, start_date="2024-03-01"), state=state, streams=["calls"])
    assert run.returncode == 0, run.stderr[-2000:]
    assert min(r.params["start_date"] for r in sb.requests) == "2024-03-01"
    assert {r["call_id"] for r in run.records()} == expected.ids(
        sb.truth_calls(start_date="2024-03-01")
    )
