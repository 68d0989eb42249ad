"""Second hardening round: non-answers, stray dates, odd encodings and formats, full table.

Each test runs the tap in-process against a local HTTP server answering as a broken
proxy or a sloppy API would (tests.hostile), and asserts what a user would notice:
records, state, exit code and the one line that says why.
"""

from __future__ import annotations

import json
import typing as t

import pytest

from tests.hostile import Answer, HostileAPI, Request, calls_on, envelope, paged, raw
from tests.tap_run import TapRun, bookmark_of, sync

WEEK_1 = "2024-01-01"
WEEK_2 = "2024-01-08"


def config(api: HostileAPI, **overrides: t.Any) -> dict[str, t.Any]:
    return {
        "api_key": "secret-key",
        "api_url": api.url,
        "start_date": WEEK_1,
        "end_date": "2024-01-14",
        "window_days": 7,
        "max_retries": 1,
        **overrides,
    }


def daily_rows(calls: list[dict[str, t.Any]]) -> list[dict[str, t.Any]]:
    days: dict[str, int] = {}
    for c in calls:
        days[c["start_date"][:10]] = days.get(c["start_date"][:10], 0) + 1
    return [{"date": d, "calls": n, "duration": 0, "revenue": 0} for d, n in sorted(days.items())]


def api_of(week_1: list[dict[str, t.Any]], week_2: t.Callable[[Request], Answer]) -> HostileAPI:
    """Week 1 answered well (calls and days), week 2 as `week_2` says."""

    def respond(request: Request) -> Answer:
        if request.params["start_date"] != WEEK_1:
            return week_2(request)
        if request.params.get("group_by_day"):
            return paged(daily_rows(week_1), request.page, 100)
        return paged(week_1, request.page, 100)

    return HostileAPI(respond)


def calls_in(run: TapRun) -> int:
    """Distinct calls landed: (account, call_id) keys, as an upserting target keeps them."""
    return len({(r["account"], r["call_id"]) for r in run.records("calls")})


def last_line(run: TapRun) -> str:
    return run.stderr.strip().splitlines()[-1]


# ---------------------------------------------------------------- 1. a non-answer
@pytest.mark.parametrize(
    "body",
    [
        "{}",
        '{"status": "OK"}',
        '{"error": "Too many requests, try later"}',
        '{"message": "Service temporarily unavailable"}',
    ],
)
def test_an_answer_without_results_is_never_an_empty_window(body):
    week_1 = calls_on("2024-01-03", 5)
    with api_of(week_1, lambda request: raw(body)) as api:
        run = sync(config(api), streams=["calls"])
    assert run.returncode == 1
    assert "not a Data API page" in last_line(run), last_line(run)
    assert "0 call(s)" not in run.stderr
    assert calls_in(run) == 5
    mark = bookmark_of(run.state)
    assert mark is not None
    assert mark < "2024-01-08", f"the bookmark {mark} passes the window that was not read"


# ---------------------------------------------------------------- 2. stray dates
def test_a_row_dated_after_its_window_does_not_move_the_bookmark():
    week_1 = [*calls_on("2024-01-03", 5), *calls_on("2099-01-01", 1, first=50)]
    stray_day = [{"date": "2099-01-01", "calls": 1, "duration": 0, "revenue": 0}]

    def respond(request: Request) -> Answer:
        if request.params.get("group_by_day"):
            return envelope(daily_rows(week_1[:5]) + stray_day, total=2)
        if request.params["start_date"] == WEEK_1:
            return envelope(week_1, total=6)
        return envelope([], total=0)

    with HostileAPI(respond) as api:
        run = sync(config(api))
    assert run.returncode == 0, run.stderr[-2000:]
    assert calls_in(run) == 6, "the stray row is written as the API sent it"
    calls_mark = bookmark_of(run.state, "calls")
    assert calls_mark is not None
    assert calls_mark <= "2024-01-14T22:59:59+00:00", calls_mark
    assert bookmark_of(run.state, "daily_calls") == "2024-01-14"


def test_a_stray_row_then_a_failed_window_leaves_the_bookmark_at_the_completed_window():
    week_1 = [*calls_on("2024-01-03", 5), *calls_on("2024-03-15", 1, first=50)]
    with api_of(week_1, lambda request: raw("<h1>500</h1>", status=500)) as api:
        run = sync(config(api), streams=["calls"])
    assert run.returncode == 1
    mark = bookmark_of(run.state)
    assert mark is not None
    assert mark <= "2024-01-07T22:59:59+00:00", f"{mark} passes window 2, which failed"


# ---------------------------------------------------------------- 4, 8. encodings
def test_non_utf8_bytes_fail_their_account_in_one_line():
    good = calls_on("2024-01-03", 4)
    body = json.dumps({"status": "OK", "total_results": 1, "results": [good[0]]}).encode()
    broken = body.replace(b"succ\\u00e8s", b"succ\xe8s")
    assert broken != body

    def respond(request: Request) -> Answer:
        if "bad" in request.params["api_key"]:
            return raw(broken)
        if request.params["start_date"] != WEEK_1:
            return envelope([], total=0)
        if request.params.get("group_by_day"):
            return paged(daily_rows(good), request.page, 100)
        return paged(good, request.page, 100)

    with HostileAPI(respond) as api:
        accounts = [{"name": "good", "api_key": "good-key"}, {"name": "bad", "api_key": "bad-key"}]
        run = sync(config(api, api_key=None, accounts=accounts))
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    assert "not UTF-8 text (byte 0xe8" in run.stderr
    assert {r["account"] for r in run.records("calls")} == {"good"}
    assert calls_in(run) == 4
    assert run.records("daily_calls"), "the other stream is synced"


def test_latin1_declared_by_the_answer_is_read_and_a_bom_is_skipped():
    calls = calls_on("2024-01-03", 3)
    body = json.dumps({"status": "OK", "total_results": 3, "results": calls}, ensure_ascii=False)

    def respond(request: Request) -> Answer:
        if request.params["start_date"] != WEEK_1:
            return raw(b"\xef\xbb\xbf" + json.dumps({"status": "OK", "results": []}).encode())
        answer = raw(body.encode("latin-1"))
        answer.content_type = "application/json; charset=ISO-8859-1"
        return answer

    with HostileAPI(respond) as api:
        run = sync(config(api), streams=["calls"])
    assert run.returncode == 0, run.stderr[-2000:]
    assert [r["status"] for r in run.records()] == ["succès"] * 3


# ---------------------------------------------------------------- 5, 7. formats
def test_french_dates_are_read_and_reach_the_bookmark_as_iso():
    calls = calls_on("2024-01-03", 3)
    for c in calls:
        day, clock = c["start_date"].split()
        c["start_date"] = f"{day[8:]}/{day[5:7]}/{day[:4]} {clock}"
    days = [{"date": "03/01/2024", "calls": 3, "duration": 0, "revenue": 0}]

    def respond(request: Request) -> Answer:
        if request.params["start_date"] != WEEK_1:
            return envelope([], total=0)
        if request.params.get("group_by_day"):
            return envelope(days, total=1)
        return envelope(calls, total=3)

    with HostileAPI(respond) as api:
        first = sync(config(api))
        assert first.returncode == 0, first.stderr[-2000:]
        assert [r["date"] for r in first.records("daily_calls")] == ["2024-01-03"]
        assert all(r["start_date"].startswith("2024-01-03T") for r in first.records())
        assert bookmark_of(first.state, "daily_calls") == "2024-01-03"
        again = sync(config(api), state=first.state)
    assert again.returncode == 0, again.stderr[-2000:]


def test_an_unreadable_start_date_is_said_once_not_per_record():
    calls = calls_on("2024-01-03", 40)
    for c in calls:
        c["start_date"] = "yesterday"
    with api_of(calls, lambda request: envelope([], total=0)) as api:
        run = sync(config(api), streams=["calls"])
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stderr.count("cannot read 'yesterday'") == 1
    assert "do not move the bookmark" in run.stderr
    assert "New replication value is null" not in run.stderr
    assert "40 unreadable values" in run.stderr


def test_a_daily_date_that_is_no_date_stops_the_account_before_the_state():
    days = [{"date": "le 3 janvier", "calls": 3, "duration": 0, "revenue": 0}]
    with HostileAPI(lambda request: envelope(days, total=1)) as api:
        run = sync(config(api), streams=["daily_calls"])
    assert run.returncode == 1
    assert "daily_calls date 'le 3 janvier' is not a date" in last_line(run)
    assert bookmark_of(run.state, "daily_calls") is None


# ---------------------------------------------------------------- 6. full table
def test_full_table_in_the_catalog_reads_the_whole_range():
    calls = [*calls_on("2024-01-03", 3), *calls_on("2024-01-10", 3, first=10)]

    def respond(request: Request) -> Answer:
        chosen = [c for c in calls if request.params["start_date"] <= c["start_date"][:10]]
        chosen = [c for c in chosen if c["start_date"][:10] <= request.params["end_date"]]
        return envelope(chosen, total=len(chosen))

    state = {
        "bookmarks": {
            "calls": {
                "partitions": [
                    {
                        "context": {"account": "default"},
                        "replication_key": "start_date",
                        "replication_key_value": "2024-01-12T10:00:00+00:00",
                    }
                ]
            }
        }
    }
    with HostileAPI(respond) as api:
        incremental = sync(config(api), state=state, streams=["calls"])
        tap_config = config(api)
        full = sync(tap_config, state=state, streams=["calls"], replication_method="FULL_TABLE")
    assert calls_in(incremental) == 3, "incremental honours the bookmark"
    assert full.returncode == 0, full.stderr[-2000:]
    assert calls_in(full) == 6, "full table reads from start_date"


# ---------------------------------------------------------------- 13. draft 4 targets
def test_the_schema_names_no_json_schema_draft():
    with HostileAPI(lambda request: envelope([], total=0)) as api:
        run = sync(config(api))
    schemas = [m for m in run.messages if m["type"] == "SCHEMA"]
    assert {m["stream"] for m in schemas} == {"calls", "daily_calls"}
    assert all("$schema" not in m["schema"] for m in schemas)
