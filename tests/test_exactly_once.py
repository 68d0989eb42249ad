"""Every call exactly once: look-alikes kept apart, pages that repeat or skip rows repaired.

The syncs run in-process against the sandbox over real HTTP. The truth's ids come
from tests.expected, which restates the README's rule independently of the tap.
"""

from __future__ import annotations

import datetime as dt
import typing as t

import pytest

from optico_sandbox import Sandbox
from tap_optico.identity import call_id, lookalike_id
from tap_optico.tally import CallTally
from tap_optico.times import local_days
from tests import expected
from tests.tap_run import TapRun, config_for, sync


def keys(run: TapRun) -> dict[str, dict[str, t.Any]]:
    """The calls a target upserting on call_id keeps, by call_id."""
    return {r["call_id"]: r for r in run.records("calls")}


def assert_truth(run: TapRun, sb: Sandbox) -> None:
    """Exit 0, and as many keys as the sandbox holds calls, each with its call's values."""
    assert run.returncode == 0, run.stderr[-3000:]
    want = expected.records(sb.truth_calls())
    got = {
        k: {f: v for f, v in r.items() if f != "additional_fields"} for k, r in keys(run).items()
    }
    assert len(got) == sb.total_calls
    assert got == want, "one record per call, keyed as documented, with its values"


# ---------------------------------------------------------------- the rule, pinned
def test_ids_of_calls_without_look_alikes_are_unchanged():
    """The ids every existing warehouse holds (the README's table): no re-keying."""
    first = call_id("2024-03-31 00:30:00", "0612345678", "0970000001", "0472123456")
    assert first == "565fe7ddca4cd3c292ef13dad8a110a9"
    assert lookalike_id(first, 1) == first, "the first of a group keeps today's id"
    assert lookalike_id(first, 2) == "c090eb00c7a849b7b66f57cdb807ed5d"
    assert lookalike_id(first, 3) == "338a12ac98bca3a75e5d0211f3e9ef9c"
    hidden = call_id("2024-03-31 00:30:00", "", "0970000001", "0472123456")
    assert hidden == "2d65a0693450f9207beef906f5e4b3be"
    assert call_id("2024-03-31 00:30:00", None, "0970000001", "0472123456") == hidden
    assert lookalike_id(hidden, 2) == "0b7fec6e39686311be431eb725a8d20f", "the README's table"


def test_look_alikes_get_one_key_each_whatever_the_page_size(make_sandbox):
    sb = make_sandbox(calls=400, start_date="2024-03-01", end_date="2024-03-10", seed=31)
    second = "2024-03-05 10:00:00"
    for visit in ("c", "a", "b"):  # three hidden callers in one second, one tracking number
        sb.insert_call(
            second,
            caller="",
            tracking_number="0974590001",
            visit_id=visit,
            allow_lookalike=True,
        )
    for _ in range(2):  # two identical offline look-alikes: nothing tells them apart
        sb.insert_call(
            second,
            caller="",
            tracking_number="0974590101",
            visit_id="",
            status="occupé",
            allow_lookalike=True,
        )
    runs = [sync(config_for(sb, page_size=size)) for size in (10, 11, 13, 5000)]
    for run in runs:
        assert_truth(run, sb)
    assert all(keys(run) == keys(runs[0]) for run in runs), "the same keys at every page size"
    group = [r for r in runs[0].records() if r["tracking_number"] == "0974590001"]
    group = [r for r in group if r["start_date"] == expected.utc(second)]
    first = call_id(second, "", "0974590001", "0145678900")
    by_visit = {r["visit_id"]: r["call_id"] for r in group}
    assert by_visit == {
        "a": first,
        "b": lookalike_id(first, 2),
        "c": lookalike_id(first, 3),
    }, "numbered by visit_id, the first keeping the identity's id"


@pytest.mark.parametrize("concurrency", [1, 3])
@pytest.mark.parametrize("window_days", [1, 30])
@pytest.mark.parametrize("accounts", [1, 2])
def test_keys_match_the_truth_with_default_look_alikes(
    make_sandbox, concurrency, window_days, accounts
):
    sb = make_sandbox(
        calls=2000,
        start_date="2024-03-01",
        end_date="2024-03-31",
        seed=32,
        accounts={"key-b": {"calls": 1000}},
    )
    groups = [g for g in _groups(sb.truth_calls()).values() if len(g) > 1]
    assert len(groups) >= 20, "the default data holds look-alikes"
    settings = {
        "page_size": 100,
        "window_days": window_days,
        "max_concurrent_requests": concurrency,
    }
    if accounts == 1:
        run = sync(config_for(sb, **settings), streams=["calls"])
        assert_truth(run, sb)
        return
    config = config_for(sb, api_key=None, **settings)
    config["accounts"] = [
        {"name": "a", "api_key": sb.api_key},
        {"name": "b", "api_key": "key-b"},
    ]
    run = sync(config, streams=["calls"])
    assert run.returncode == 0, run.stderr[-3000:]
    got = {(r["account"], r["call_id"]) for r in run.records()}
    want = {("a", k) for k in expected.ids(sb.truth_calls())}
    want |= {("b", k) for k in expected.ids(sb.truth_calls(api_key="key-b"))}
    assert got == want
    assert len(got) == 3000, "distinct (account, call_id) keys, one per call"


def test_a_second_run_and_an_incremental_run_give_the_same_keys(make_sandbox):
    sb = make_sandbox(calls=2500, seed=33)
    full = sync(config_for(sb, page_size=100))
    again = sync(config_for(sb, page_size=250, window_days=3, max_concurrent_requests=1))
    assert keys(again) == keys(full), "a second full run: the same keys, the same calls"

    early = sync(config_for(sb, end_date="2024-02-15", page_size=100), streams=["calls"])
    later = sync(
        config_for(sb, page_size=100, lookback_days=5, window_days=2),
        state=early.state,
        streams=["calls"],
    )
    assert later.returncode == 0, later.stderr[-3000:]
    warehouse = keys(early) | keys(later)
    assert warehouse == keys(full), "incremental with lookback lands the same keys"
    assert len(warehouse) == sb.total_calls


def test_a_call_that_changes_keeps_its_key(make_sandbox):
    sb = make_sandbox(calls=1500, seed=34)
    before = keys(sync(config_for(sb, page_size=100), streams=["calls"]))
    sb.update_calls(300)
    after = sync(config_for(sb, page_size=100), streams=["calls"])
    assert_truth(after, sb)
    assert set(keys(after)) == set(before), "updates add no key and drop none"


# ---------------------------------------------------------------- pages that lie
def _busy_second(sb: Sandbox, second: str, calls: int) -> None:
    """Many calls in one second: a tie group wider than a page."""
    for n in range(calls):
        sb.insert_call(second, caller=f"06{n:08d}", tracking_number="0974590002")


def test_unstable_ties_across_pages_lose_no_call(make_sandbox):
    sb = make_sandbox(
        calls=300, start_date="2024-03-01", end_date="2024-03-07", seed=35, unstable_ties=True
    )
    for second in ("2024-03-03 09:00:00", "2024-03-03 11:30:00", "2024-03-06 15:00:00"):
        _busy_second(sb, second, 25)
    run = sync(config_for(sb, page_size=10), streams=["calls"])
    assert_truth(run, sb)
    assert "each in one page" in run.stderr, "the repair is said"


def test_a_server_that_ignores_page_loses_no_call(make_sandbox):
    sb = make_sandbox(
        calls=70, start_date="2024-03-01", end_date="2024-03-07", seed=36, ignore_page=True
    )
    run = sync(config_for(sb, page_size=10), streams=["calls"])
    assert_truth(run, sb)
    assert "70 rows hold 10 distinct calls but the API announced 70" in run.stderr


def test_a_call_arriving_while_a_window_is_paged_is_read(make_sandbox):
    sb = make_sandbox(calls=70, start_date="2024-03-01", end_date="2024-03-01", seed=37)
    sb.arrive_while_paging(1, after_page=1)
    for concurrency in (1, 3):
        run = sync(config_for(sb, page_size=10, max_concurrent_requests=concurrency))
        assert_truth(run, sb)
        sb.arrive_while_paging(1, after_page=1)
    assert sb.total_calls == 72


def test_a_server_that_cannot_be_paged_stops_the_account_naming_the_window(make_sandbox):
    sb = make_sandbox(
        calls=6000, start_date="2024-03-01", end_date="2024-03-01", seed=38, ignore_page=True
    )
    run = sync(config_for(sb, page_size=5000), streams=["calls"])
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()[-1]
    assert "2024-03-01..2024-03-01" in last
    assert "cannot be read whole" in last
    assert run.bookmark() is None, "the bookmark never passes the window"


# ---------------------------------------------------------------- the tally alone
def _record(start: str, caller: str, status: str, visit: str = "") -> dict[str, t.Any]:
    return {
        "call_id": call_id(start, caller, "0974590001", "0145678900"),
        "start_date": expected.utc(start),
        "caller": caller,
        "status": status,
        "visit_id": visit,
    }


def test_a_row_repeated_on_the_next_page_is_not_a_second_call():
    tally = CallTally(local_days(expected.PARIS))
    a = _record("2024-03-01 10:00:05", "0611111111", "succès")
    b = _record("2024-03-01 10:00:00", "", "succès")
    c = _record("2024-03-01 09:00:00", "0622222222", "occupé")
    assert tally.page([a, b], total=3) == [a], "the page's last second waits for the next"
    assert tally.page([dict(b), c], total=3) == [b], "its repeat is dropped"
    assert tally.end() == [c]
    assert tally.whole()
    assert tally.distinct == 3


def test_a_repeat_that_changed_between_pages_is_doubted_not_emitted():
    tally = CallTally(local_days(expected.PARIS))
    a = _record("2024-03-01 10:00:05", "0611111111", "succès")
    b = _record("2024-03-01 10:00:00", "", "occupé")
    b_later = b | {"status": "succès"}
    c = _record("2024-03-01 09:00:00", "0622222222", "occupé")
    assert tally.page([a, b], total=3) == [a]
    assert tally.page([b_later, c], total=3) == [], "neither version of b is keyed here"
    assert tally.end() == [c]
    assert not tally.whole()
    assert tally.days_to_reread([dt.date(2024, 3, 1)], None) == [dt.date(2024, 3, 1)]


def test_identical_rows_in_one_page_are_two_calls():
    tally = CallTally(local_days(expected.PARIS))
    b = _record("2024-03-01 10:00:00", "", "occupé")
    c = _record("2024-03-01 09:00:00", "0622222222", "occupé")
    emitted = tally.page([b, dict(b), c], total=3) + tally.end()
    assert [r["call_id"] for r in emitted] == [
        b["call_id"],
        lookalike_id(b["call_id"], 2),
        c["call_id"],
    ]
    assert tally.whole()


def _groups(calls: t.Iterable[t.Mapping[str, t.Any]]) -> dict[str, list[t.Any]]:
    out: dict[str, list[t.Any]] = {}
    for call in calls:
        out.setdefault(expected.call_id(call), []).append(call)
    return out
