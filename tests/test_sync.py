"""Full syncs against the sandbox over real HTTP: records, ids, times, pages."""

from __future__ import annotations

import gzip
import json
import math
from collections import Counter
from urllib.parse import urlparse

import pytest

from tests import expected
from tests.tap_run import bookmark_of, config_for, sync


def test_full_sync_equals_the_truth(make_sandbox):
    sb = make_sandbox(calls=1500, start_date="2024-01-01", end_date="2024-03-31", seed=3)
    run = sync(config_for(sb, page_size=200))
    assert run.returncode == 0, run.stderr[-2000:]

    records = run.records("calls")
    ids = [r["call_id"] for r in records]
    assert all(ids), "call_id is never null or empty"
    assert len(ids) == len(set(ids)) == 1500, "one record per call, no duplicates"
    truth = expected.records(sb.truth_calls())
    got = {r["call_id"]: {k: v for k, v in r.items() if k != "additional_fields"} for r in records}
    assert got == truth, "every field of every call, one-to-one with the sandbox's truth"

    daily = run.records("daily_calls")
    assert sorted(daily, key=lambda d: d["date"]) == expected.daily(sb.truth_daily())
    assert run.bookmark("calls") == max(r["start_date"] for r in records)
    assert run.bookmark("daily_calls") == sb.truth_daily()[-1]["date"]


@pytest.mark.parametrize(
    ("naming", "values"), [("camel", "php"), ("snake", "native"), ("snake", "php")]
)
def test_naming_and_value_styles_give_identical_records(make_sandbox, naming, values):
    reference = make_sandbox(calls=300, seed=5)
    other = make_sandbox(calls=300, seed=5, naming=naming, values=values)
    first = sync(config_for(reference, page_size=50))
    second = sync(config_for(other, page_size=50))
    assert first.returncode == second.returncode == 0, second.stderr[-2000:]
    assert second.records("calls") == first.records("calls")
    assert second.records("daily_calls") == first.records("daily_calls")
    assert len(first.records("calls")) == 300


def test_local_times_become_utc_across_dst_changes(make_sandbox):
    sb = make_sandbox(calls=10, start_date="2024-03-01", end_date="2024-11-30", seed=1)
    placed = {
        "2024-03-30 00:30:00": "2024-03-29T23:30:00+00:00",  # 00:30 local, winter: UTC day before
        "2024-03-31 01:59:59": "2024-03-31T00:59:59+00:00",  # last second before spring forward
        "2024-03-31 03:00:00": "2024-03-31T01:00:00+00:00",  # first second after it (CEST)
        "2024-07-14 00:30:00": "2024-07-13T22:30:00+00:00",  # 00:30 local, summer
        "2024-10-27 01:30:00": "2024-10-26T23:30:00+00:00",  # before fall back (CEST)
        "2024-10-27 03:30:00": "2024-10-27T02:30:00+00:00",  # after it (CET)
    }
    for local in placed:
        sb.insert_call(local)
    run = sync(config_for(sb, window_days=30))
    assert run.returncode == 0, run.stderr[-2000:]
    by_id = {r["call_id"]: r for r in run.records("calls")}
    for call in sb.truth_calls():
        if call["start_date"] in placed:
            assert by_id[expected.call_id(call)]["start_date"] == placed[call["start_date"]]
    # A call at 00:30 local counts for its local day in daily_calls, not the UTC day.
    days = {d["date"]: d["calls"] for d in run.records("daily_calls")}
    assert days["2024-03-30"] >= 1
    assert days["2024-07-14"] >= 1


def test_the_repeated_autumn_hour_is_read_as_its_first_pass(make_sandbox):
    sb = make_sandbox(calls=10, start_date="2024-10-20", end_date="2024-10-31", seed=2)
    sb.insert_call("2024-10-27 02:30:00", fold=0, caller="0611111111")
    sb.insert_call("2024-10-27 02:30:00", fold=1, caller="0622222222")
    run = sync(config_for(sb))
    assert run.returncode == 0, run.stderr[-2000:]
    times = {r["caller"]: r["start_date"] for r in run.records("calls")}
    # The API gives no offset: both passes read as CEST (fold=0), as the README documents;
    # the calls stay distinct records because their callers differ.
    assert times["0611111111"] == times["0622222222"] == "2024-10-27T00:30:00+00:00"


def test_request_count_and_page_size(make_sandbox):
    sb = make_sandbox(calls=1234, start_date="2024-01-01", end_date="2024-02-29", seed=7)
    run = sync(config_for(sb, page_size=100, window_days=10), streams=["calls"])
    assert run.returncode == 0, run.stderr[-2000:]
    assert len(run.records("calls")) == 1234
    requests = sb.requests
    windows = 6  # 60 days in windows of 10
    assert len(requests) <= math.ceil(1234 / 100) + windows
    assert {r.params["limit"] for r in requests} == {"100"}
    assert {r.params["type"] for r in requests} == {"calls"}
    assert {r.params["api_key"] for r in requests} == {"***"}, "the log masks the key"
    starts = sorted({r.params["start_date"] for r in requests})
    assert starts == [
        "2024-01-01",
        "2024-01-11",
        "2024-01-21",
        "2024-01-31",
        "2024-02-10",
        "2024-02-20",
    ]
    assert max(r.params["end_date"] for r in requests) == "2024-02-29"


@pytest.mark.parametrize("concurrency", [1, 4])
def test_window_of_exactly_page_size_results_and_empty_windows(make_sandbox, concurrency):
    sb = make_sandbox(calls=10, start_date="2024-05-01", end_date="2024-05-01", seed=4)
    # A sandbox of 10 calls on one day, then nine empty days.
    run = sync(
        config_for(
            sb,
            end_date="2024-05-10",
            page_size=10,
            window_days=1,
            max_concurrent_requests=concurrency,
        ),
        streams=["calls"],
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert len(run.records("calls")) == 10
    pages = Counter(r.params["start_date"] for r in sb.requests)
    assert pages == {f"2024-05-{d:02d}": 1 for d in range(1, 11)}, (
        "one request per window, no page 2"
    )
    assert "2024-05-01..2024-05-01: 10 call(s), 1 page(s)" in run.stderr
    assert "2024-05-02..2024-05-02: 0 call(s), 1 page(s)" in run.stderr


def test_unknown_fields_are_kept_and_named_once(make_sandbox):
    sb = make_sandbox(calls=200, seed=9, extra_fields=True)
    run = sync(config_for(sb, page_size=50), streams=["calls"])
    assert run.returncode == 0, run.stderr[-2000:]
    records = run.records("calls")
    assert all(r["additional_fields"] for r in records)
    extra_names = set(records[0]["additional_fields"])
    assert len(extra_names) == 2
    warnings = [line for line in run.stderr.splitlines() if "the API sent new fields" in line]
    assert len(warnings) == 1
    assert all(name in warnings[0] for name in extra_names)


def test_filters_are_passed_to_the_api(make_sandbox):
    sb = make_sandbox(calls=400, seed=11)
    number = sb.truth_calls()[0]["tracking_number"]
    run = sync(config_for(sb, tracking_phone=number, page_size=50), streams=["calls"])
    assert run.returncode == 0, run.stderr[-2000:]
    truth = sb.truth_calls(tracking_phone=number)
    assert {r["call_id"] for r in run.records("calls")} == expected.ids(truth)
    assert {r.params.get("tracking_phone") for r in sb.requests} == {number}


def test_batch_mode_writes_every_call_to_batch_files(make_sandbox, tmp_path):
    sb = make_sandbox(calls=700, seed=12)
    batch_config = {
        "encoding": {"format": "jsonl", "compression": "gzip"},
        "storage": {"root": f"file://{tmp_path}", "prefix": "optico-"},
    }
    run = sync(config_for(sb, page_size=100, batch_config=batch_config), streams=["calls"])
    assert run.returncode == 0, run.stderr[-2000:]
    batches = [m for m in run.messages if m["type"] == "BATCH"]
    assert batches
    assert run.records() == [], "records travel in the batch files"
    ids = set()
    for message in batches:
        for url in message["manifest"]:
            with gzip.open(urlparse(url).path, "rt") as handle:
                ids |= {json.loads(line)["call_id"] for line in handle}
    assert ids == expected.ids(sb.truth_calls())
    last = max(i for i, m in enumerate(run.messages) if m["type"] == "BATCH")
    states_before_last_batch = [m for m in run.messages[:last] if m["type"] == "STATE"]
    assert all(bookmark_of(s["value"]) is None for s in states_before_last_batch), (
        "no bookmark overtakes the batch files"
    )
    assert run.bookmark() == max(expected.record(c)["start_date"] for c in sb.truth_calls())
