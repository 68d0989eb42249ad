"""Several accounts in one sync (`accounts`), over real HTTP against a multi-account sandbox.

Each account is a key of its own in the sandbox, with calls of its own (a different seed,
size and date range), so a record carrying another account's data would not match its
account's truth. Every run is the real CLI in a subprocess, bounded in time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import typing as t

import pytest

from optico_sandbox import Sandbox
from tests import expected
from tests.tap_run import (
    TAP,
    TapRun,
    _write,
    assert_no_key_fragment,
    bookmark_of,
    catalog_for,
    distinctive_key,
    one_line_failure,
    parse_run,
    partitions,
    sync,
)

NAMES = ("alpha", "bravo", "charlie")
LOOKBACK = 3
TIMEOUT = 120  # seconds any one run of the tap may take
MakeSandbox = t.Callable[..., Sandbox]


# ---------------------------------------------------------------- helpers
class Trio:
    """A sandbox of three accounts of different sizes and ranges, and their names."""

    def __init__(self, make_sandbox: MakeSandbox, **options: t.Any) -> None:
        self.keys = [distinctive_key() for _ in NAMES]
        self.sb = make_sandbox(
            calls=300,
            start_date="2024-01-01",
            end_date="2024-03-31",
            seed=51,
            api_key=self.keys[0],
            accounts={
                self.keys[1]: {"calls": 1500, "seed": 52},
                self.keys[2]: {
                    "calls": 120,
                    "seed": 53,
                    "start_date": "2024-02-01",
                    "end_date": "2024-02-29",
                },
            },
            **options,
        )
        self.key_of = dict(zip(NAMES, self.keys, strict=True))

    def accounts(self, *names: str) -> list[dict[str, str]]:
        return [{"name": name, "api_key": self.key_of[name]} for name in names or NAMES]

    def config(self, *names: str, **overrides: t.Any) -> dict[str, t.Any]:
        config: dict[str, t.Any] = {
            "accounts": self.accounts(*names),
            "api_url": self.sb.url,
            "start_date": "2024-01-01",
            "end_date": "2024-03-31",
            "lookback_days": LOOKBACK,
            "page_size": 100,
            **overrides,
        }
        return {k: v for k, v in config.items() if v is not None}

    def truth(self, name: str) -> dict[str, dict[str, t.Any]]:
        calls = self.sb.truth_calls(api_key=self.key_of[name])
        return {
            key: record | {"additional_fields": None}
            for key, record in expected.records(calls, name).items()
        }

    def truth_daily(self, name: str) -> dict[str, dict[str, t.Any]]:
        rows = expected.daily(self.sb.truth_daily(api_key=self.key_of[name]), name)
        return {r["date"]: r for r in rows}

    def tag(self, name: str) -> int | None:
        """The account's tag in the sandbox's request log."""
        return self.sb.account_of(self.key_of[name])

    def first_days(self, name: str) -> dict[str, str]:
        """The first start_date each stream requested for an account."""
        return expected.first_days(self.sb.requests, self.tag(name))


@pytest.fixture
def trio(make_sandbox: MakeSandbox) -> Trio:
    return Trio(make_sandbox)


def by_account(
    records: t.Iterable[dict[str, t.Any]], key: str
) -> dict[str, dict[str, dict[str, t.Any]]]:
    """Records by account then by `key` (call_id or date), the last version winning."""
    out: dict[str, dict[str, dict[str, t.Any]]] = {}
    for record in records:
        out.setdefault(record["account"], {})[record[key]] = record
    return out


def assert_equal_truth(
    trio: Trio,
    calls: list[dict[str, t.Any]],
    daily: list[dict[str, t.Any]],
    names: t.Sequence[str] = NAMES,
) -> None:
    """Each account's records, upserted, equal its truth in both streams; nothing else."""
    assert all(r.get("account") in names for r in calls + daily), "account set on every record"
    calls_by = by_account(calls, "call_id")
    daily_by = by_account(daily, "date")
    assert set(calls_by) == set(names)
    for name in names:
        truth = trio.truth(name)
        assert len(calls_by[name]) == len(truth), f"{name}: {len(calls_by[name])} calls"
        assert calls_by[name] == truth, f"{name}: calls differ from the account's truth"
        assert daily_by.get(name, {}) == trio.truth_daily(name), f"{name}: daily_calls differ"
    ids = [set(calls_by[name]) for name in names]
    assert len(set().union(*ids)) == sum(map(len, ids)), "a call_id under two accounts"


def state_lines(path: t.Any) -> int:
    return str(path.read_text()).count('"type":"STATE"')


# ---------------------------------------------------------------- (a) records
def test_three_accounts_equal_their_truth_in_the_same_order_at_any_concurrency(trio):
    runs = {}
    for concurrency in (1, 3):
        run = sync(trio.config(max_concurrent_requests=concurrency))
        assert run.returncode == 0, run.stderr[-2000:]
        assert_equal_truth(trio, run.records("calls"), run.records("daily_calls"))
        runs[concurrency] = run

    sequential, ahead = runs[1], runs[3]
    # Accounts in config order, each stream in turn.
    for stream in ("calls", "daily_calls"):
        order = [r["account"] for r in sequential.records(stream)]
        assert order == sorted(order, key=NAMES.index), f"{stream}: accounts out of config order"

    # The same messages in the same order, whatever the concurrency.
    def shape(run: TapRun) -> list[t.Any]:
        return [
            (m["type"], m.get("stream"), m.get("record") or m.get("value"))
            for m in run.messages
            if m["type"] in ("RECORD", "STATE")
        ]

    assert shape(ahead) == shape(sequential), "output order depends on max_concurrent_requests"
    assert {r.account for r in trio.sb.requests} == {0, 1, 2}


# ---------------------------------------------------------------- (b) state
def test_each_account_keeps_its_own_bookmark_and_resumes_from_it(trio):
    first = sync(trio.config())
    assert first.returncode == 0, first.stderr[-2000:]
    for stream, key in (("calls", "start_date"), ("daily_calls", "date")):
        found = partitions(first.state, stream)
        assert list(found) == list(NAMES), f"{stream}: one partition per account, in order"
        for name in NAMES:
            newest = max(r[key] for r in first.records(stream) if r["account"] == name)
            assert found[name]["replication_key_value"] == newest, (stream, name)
            assert found[name]["context"] == {"account": name}
    charlie, alpha = (bookmark_of(first.state, "calls", n) or "" for n in ("charlie", "alpha"))
    assert charlie.startswith("2024-02-29"), "charlie's data stops in February: its bookmark too"
    assert alpha.startswith("2024-03-")

    # Second run: late calls for bravo inside its lookback, a fourth account added.
    bravo_mark = bookmark_of(first.state, "calls", "bravo")
    assert bravo_mark is not None
    late = trio.sb.add_calls(
        5, expected.resume_day(bravo_mark, LOOKBACK), "2024-03-31", api_key=trio.key_of["bravo"]
    )
    delta_key = distinctive_key()
    trio.sb.add_account(delta_key, calls=200, seed=54)
    trio.key_of["delta"] = delta_key
    trio.sb.clear_requests()
    config = trio.config()
    config["accounts"].append({"name": "delta", "api_key": delta_key})
    second = sync(config, state=first.state)
    assert second.returncode == 0, second.stderr[-2000:]

    for name in NAMES:
        assert trio.first_days(name) == {
            "calls": expected.resume_day(bookmark_of(first.state, "calls", name) or "", LOOKBACK),
            "daily_calls": expected.resume_day(
                bookmark_of(first.state, "daily_calls", name) or "", LOOKBACK
            ),
        }, f"{name} resumes from its own bookmark minus the lookback"
    assert trio.first_days("delta") == {"calls": "2024-01-01", "daily_calls": "2024-01-01"}, (
        "an account added later starts at start_date"
    )
    new_ids = {r["call_id"] for r in second.records() if r["account"] == "bravo"}
    assert {expected.call_id(c) for c in late} <= new_ids, "late calls picked up"
    names = (*NAMES, "delta")
    assert list(partitions(second.state, "calls")) == list(names)
    assert_equal_truth(
        trio,
        first.records("calls") + second.records("calls"),
        first.records("daily_calls") + second.records("daily_calls"),
        names,
    )
    for name in ("alpha", "charlie"):
        assert bookmark_of(second.state, "calls", name) == bookmark_of(first.state, "calls", name)


def test_an_old_unpartitioned_state_is_the_single_keys_bookmark(trio):
    old = {
        "bookmarks": {
            "calls": {
                "replication_key": "start_date",
                "replication_key_value": "2024-03-10T12:00:00+00:00",
            },
            "daily_calls": {"replication_key": "date", "replication_key_value": "2024-03-12"},
        }
    }
    config = trio.config(accounts=None, api_key=trio.key_of["bravo"], account_name="bravo")
    run = sync(config, state=old)
    assert run.returncode == 0, run.stderr[-2000:]
    assert trio.first_days("bravo") == {"calls": "2024-03-07", "daily_calls": "2024-03-09"}
    assert {r["account"] for r in run.records() + run.records("daily_calls")} == {"bravo"}
    found = partitions(run.state, "calls")
    assert list(found) == ["bravo"]
    assert found["bravo"]["replication_key_value"] == max(r["start_date"] for r in run.records())
    truth = trio.truth("bravo")
    assert {r["call_id"] for r in run.records()} == {
        i
        for i, r in truth.items()
        if expected.local_day(r["start_date"]).isoformat() >= "2024-03-07"
    }


# ---------------------------------------------------------------- (c) SIGKILL, resume
def test_a_killed_multi_account_sync_resumes_every_account(make_sandbox, tmp_path):
    trio = Trio(make_sandbox, latency=0.03)
    config = trio.config(page_size=50, window_days=4, max_concurrent_requests=2)
    output = tmp_path / "stdout.jsonl"
    command = [*TAP, "--config", _write(config)]
    # calls: 23 windows per account (69 STATE lines), then daily_calls: kill inside bravo.
    with output.open("w") as stdout:
        process = subprocess.Popen(command, stdout=stdout, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + TIMEOUT
        while state_lines(output) < 35:
            assert process.poll() is None, "the sync ended before it could be killed"
            assert time.monotonic() < deadline, f"no progress within {TIMEOUT} s"
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    lines = output.read_text().splitlines()
    killed = parse_run(-9, "\n".join(lines[:-1]), "")  # the last line may be cut
    killed_state = killed.states[-1]
    done = {r["account"] for r in killed.records()}
    assert "alpha" in done, "killed after alpha's calls"
    assert len(killed.records()) < sum(len(trio.truth(n)) for n in NAMES), "killed midway"
    marks = {name: bookmark_of(killed_state, "calls", name) for name in NAMES}
    assert marks["alpha"] is not None
    assert marks["bravo"] is not None, "bravo had completed windows when killed"

    trio.sb.clear_requests()
    resumed = sync(config, state=killed_state)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    for name, mark in marks.items():
        want = expected.resume_day(mark, LOOKBACK) if mark else "2024-01-01"
        assert trio.first_days(name)["calls"] == want, f"{name} resumes from its own window"
    assert_equal_truth(
        trio,
        killed.records("calls") + resumed.records("calls"),
        killed.records("daily_calls") + resumed.records("daily_calls"),
    )


# ---------------------------------------------------------------- (d) one account fails
def test_a_refused_key_fails_its_account_only(trio):
    refused = distinctive_key()  # no account of the sandbox has it
    config = trio.config()
    config["accounts"][1]["api_key"] = refused
    run = sync(config)
    line = one_line_failure(run, "1 of 3 accounts failed: bravo")
    assert run.logged("ERROR")[-1] == line, "the summary is the last ERROR line"
    assert line.rstrip().endswith(
        "1 of 3 accounts failed: bravo; the others were synced, and each resumes from its "
        "last completed window"
    )
    assert any(
        "account bravo (calls): " in e and "Invalid api key" in e for e in run.logged("ERROR")
    )
    ok = ("alpha", "charlie")
    assert_equal_truth(trio, run.records("calls"), run.records("daily_calls"), ok)
    for stream in ("calls", "daily_calls"):
        found = partitions(run.state, stream)
        for name in ok:
            assert found[name].get("replication_key_value"), f"{stream}: {name} has its bookmark"
        assert not found.get("bravo", {}).get("replication_key_value")
    refused_requests = [r for r in trio.sb.requests if r.account is None]
    queries = [(r.params["start_date"], r.params["page"]) for r in refused_requests]
    assert len(set(queries)) == len(queries), "a refused key is not retried"
    # Requests sent ahead (max_concurrent_requests, 3 by default) may already be out.
    assert 1 <= len(queries) <= 3, queries
    assert not [r for r in refused_requests if r.params.get("group_by_day")], (
        "a failed account is skipped for the rest of the run"
    )
    for key in [*trio.keys, refused]:
        assert_no_key_fragment(run, key)


def test_an_account_whose_retries_run_out_keeps_its_last_window(trio):
    first = sync(trio.config(end_date="2024-03-15"))
    assert first.returncode == 0, first.stderr[-2000:]
    trio.sb.add_fault("http503", api_key=trio.key_of["bravo"])
    trio.sb.clear_requests()
    run = sync(trio.config(max_retries=1), state=first.state)
    line = one_line_failure(run, "1 of 3 accounts failed: bravo")
    assert run.logged("ERROR")[-1] == line
    failure = [e for e in run.logged("ERROR") if "account bravo (calls): " in e]
    assert failure, run.stderr[-2000:]
    assert "after 2 attempts" in failure[0]
    assert not [r for r in run.records() + run.records("daily_calls") if r["account"] == "bravo"]
    for stream in ("calls", "daily_calls"):
        assert bookmark_of(run.state, stream, "bravo") == bookmark_of(
            first.state, stream, "bravo"
        ), f"{stream}: bravo stays at its last completed window"
        for name in ("alpha", "charlie"):
            assert bookmark_of(run.state, stream, name) is not None
    for name in ("alpha", "charlie"):
        got = by_account(first.records() + run.records(), "call_id")[name]
        assert got == trio.truth(name), f"{name} synced despite bravo's failure"
    # bravo's calls stream failed: its daily_calls were not even tried.
    assert {r.params.get("group_by_day") for r in trio.sb.requests if r.account == 1} == {None}
    for key in trio.keys:
        assert_no_key_fragment(run, key)

    trio.sb.clear_faults()
    trio.sb.clear_requests()
    fixed = sync(trio.config(), state=run.state)
    assert fixed.returncode == 0, fixed.stderr[-2000:]
    assert trio.first_days("bravo")["calls"] == expected.resume_day(
        bookmark_of(first.state, "calls", "bravo") or "", LOOKBACK
    )
    assert_equal_truth(
        trio,
        first.records("calls") + run.records("calls") + fixed.records("calls"),
        first.records("daily_calls") + run.records("daily_calls") + fixed.records("daily_calls"),
    )


# ---------------------------------------------------------------- (e) settings
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"api_key": "k"}, "set either api_key (one account) or accounts (several), not both"),
        ({"accounts": []}, "accounts is empty"),
        (
            {"accounts": [{"name": "a", "api_key": "k1"}, {"name": "a", "api_key": "k2"}]},
            "accounts: the name 'a' appears more than once",
        ),
        ({"accounts": [{"name": "", "api_key": "k1"}]}, "accounts[0].name must be a short"),
        ({"accounts": [{"name": "  ", "api_key": "k1"}]}, "accounts[0].name must be a short"),
        ({"select_accounts": ["alpha", "zulu"]}, "select_accounts names 'zulu', not in accounts"),
    ],
    ids=["both", "empty", "duplicate", "empty-name", "blank-name", "unknown-selected"],
)
def test_invalid_accounts_fail_in_one_line_before_any_request(trio, overrides, message):
    run = sync(trio.config(**overrides))
    assert run.returncode == 1, run.stderr[-2000:]
    # One line naming the problem.
    lines = run.logged("ERROR")
    assert len(lines) == 1, run.stderr
    assert message in lines[0]
    assert "Traceback" not in run.stderr
    assert run.messages == []
    assert trio.sb.requests == [], "nothing is requested"
    for key in trio.keys:
        assert_no_key_fragment(run, key)


def test_accounts_from_environment_variables(trio):
    env = {
        "TAP_OPTICO_ACCOUNTS": json.dumps(trio.accounts()),
        "TAP_OPTICO_SELECT_ACCOUNTS": json.dumps(["charlie", "alpha"]),
        "TAP_OPTICO_API_URL": trio.sb.url,
        "TAP_OPTICO_START_DATE": "2024-01-01",
        "TAP_OPTICO_END_DATE": "2024-03-31",
    }
    command = [*TAP, "--config", "ENV", "--catalog", _write(catalog_for(["calls"]))]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TAP_OPTICO_")}
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=TIMEOUT, env={**clean, **env}
    )
    run = parse_run(result.returncode, result.stdout, result.stderr)
    assert run.returncode == 0, run.stderr[-2000:]
    calls = by_account(run.records(), "call_id")
    assert list(calls) == ["alpha", "charlie"], "config order, not selection order"
    for name in ("alpha", "charlie"):
        assert calls[name] == trio.truth(name)
    for key in trio.keys:
        assert_no_key_fragment(run, key)


# ---------------------------------------------------------------- (f) select_accounts
def test_select_accounts_syncs_only_those(trio):
    run = sync(trio.config(select_accounts=["bravo"]))
    assert run.returncode == 0, run.stderr[-2000:]
    assert_equal_truth(trio, run.records("calls"), run.records("daily_calls"), ("bravo",))
    assert {r.account for r in trio.sb.requests} == {trio.tag("bravo")}
    assert list(partitions(run.state, "calls")) == ["bravo"]
    assert list(partitions(run.state, "daily_calls")) == ["bravo"]
