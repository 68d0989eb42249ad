"""End to end with several accounts: real Meltano, real target-postgres, the sandbox as the API.

The fixtures (Meltano installed once per session, a PostgreSQL schema per test) are
tests/conftest.py's; settings reach the plugins as environment variables, the
accounts as TAP_OPTICO_ACCOUNTS (JSON), as a user would set them.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests import expected
from tests.e2e import (
    LOOKBACK,
    PROJECT,
    RUN_TIMEOUT,
    Accounts,
    calls_rows,
    daily_rows,
    run_args,
    state_id,
    state_of,
)
from tests.tap_run import bookmark_of, partitions

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore::ResourceWarning")]


# ---------------------------------------------------------------- (a) + (b)
def test_accounts_load_equal_to_the_truth_then_resume_each_from_its_bookmark(
    postgres_url, warehouse, meltano, make_sandbox
):
    acc = Accounts(make_sandbox, {"north": 400, "south": 1500, "west": 150}, seed=61)
    suffix = warehouse.schema
    env = {**acc.env(), **warehouse.env}

    meltano.run(*run_args(suffix), env=env, timeout=RUN_TIMEOUT)
    truth_1, daily_1 = acc.truth(), acc.truth_daily()
    assert calls_rows(warehouse) == truth_1
    assert daily_rows(warehouse) == daily_1
    singer = state_of(meltano, state_id(suffix))["singer_state"]
    for stream in ("calls", "daily_calls"):
        assert list(partitions(singer, stream)) == acc.names, f"{stream}: a partition each"
    marks = {n: bookmark_of(singer, "calls", n) for n in acc.names}
    for name, mark in marks.items():
        assert mark == max(r["start_date"] for (a, _), r in truth_1.items() if a == name)

    # Between runs: late calls and updates in two accounts, inside their lookbacks.
    south, west = acc.key_of["south"], acc.key_of["west"]
    late = acc.sb.add_calls(
        20, expected.resume_day(marks["south"] or "", LOOKBACK), "2024-03-31", api_key=south
    )
    recent_west = expected.resume_day(marks["west"] or "", LOOKBACK)
    acc.sb.insert_call(f"{recent_west} 10:15:00", api_key=west, status="occupé")
    acc.sb.update_calls(150, api_key=south)
    acc.sb.clear_requests()

    meltano.run(*run_args(suffix), env=env, timeout=RUN_TIMEOUT)
    for name in acc.names:
        assert acc.first_days(name) == {
            "calls": expected.resume_day(marks[name] or "", LOOKBACK),
            "daily_calls": expected.resume_day(
                bookmark_of(singer, "daily_calls", name) or "", LOOKBACK
            ),
        }, f"{name}: incremental from its own bookmark"
    truth_2, daily_2 = acc.truth(), acc.truth_daily()
    # What an incremental run can know: the current truth within each account's lookback,
    # older calls as they were at the first run.
    reachable = {
        key: record
        if expected.local_day(record["start_date"]).isoformat()
        >= expected.resume_day(marks[key[0]] or "", LOOKBACK)
        else truth_1.get(key, record)
        for key, record in truth_2.items()
    }
    loaded = calls_rows(warehouse)
    assert len(loaded) == len(truth_1) + len(late) + 1
    assert loaded == reachable
    assert all(("south", expected.call_id(c)) in loaded for c in late)
    daily_from = {
        n: expected.resume_day(bookmark_of(singer, "daily_calls", n) or "", LOOKBACK)
        for n in acc.names
    }
    assert daily_rows(warehouse) == {
        key: row if key[1] >= daily_from[key[0]] else daily_1.get(key, row)
        for key, row in daily_2.items()
    }


# ---------------------------------------------------------------- (c) fan-out
def test_two_parallel_runs_on_disjoint_accounts_load_one_schema(
    postgres_url, warehouse, meltano, make_sandbox, tmp_path
):
    """Two `meltano run` at once, each on half of the accounts, into one schema.

    Meltano writes an extractor's catalog and state files to one directory per plugin
    (`.meltano/run/tap-optico/`), shared by every run of it in a system directory: two
    concurrent runs there overwrite each other's files. Each run gets its own system
    directory (MELTANO_SYS_DIR_ROOT, over the session's installed plugins), and both share
    one system database (MELTANO_DATABASE_URI), which holds the state of both state ids.

    target-postgres checks whether a table exists, then creates it: two targets starting
    together on an empty schema race there (`duplicate key value violates unique
    constraint "pg_type_typname_nsp_index"`, seen 1 run in 6). So a one-day sync of one
    account, without state, creates the tables first.
    """
    acc = Accounts(make_sandbox, {"a1": 900, "a2": 300, "b1": 1200, "b2": 500}, seed=71)
    database = {"MELTANO_DATABASE_URI": f"sqlite:///{meltano.sys_dir / 'meltano.db'}"}
    second = meltano.sibling(tmp_path / "second-sys")
    halves = {"first": (meltano, ["a1", "a2"]), "second": (second, ["b1", "b2"])}
    bootstrap = acc.env(select_accounts='["a1"]', end_date="2024-01-01")
    meltano.run(
        "run",
        "--no-state-update",
        "tap-optico",
        "target-postgres",
        env={**bootstrap, **warehouse.env, **database},
        timeout=RUN_TIMEOUT,
    )
    assert warehouse.count("calls") == len(acc.truth_calls_on("a1", "2024-01-01"))
    processes = {}
    for half, (runner, names) in halves.items():
        env = {**acc.env(select_accounts=json.dumps(names)), **warehouse.env, **database}
        processes[half] = subprocess.Popen(
            runner.command(*run_args(f"{warehouse.schema}-{half}")),
            cwd=PROJECT,
            env=runner.env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    outputs = {}
    for half, process in processes.items():
        out, _ = process.communicate(timeout=RUN_TIMEOUT)
        outputs[half] = (process.returncode, out)
    for half, (code, out) in outputs.items():
        errors = [line for line in out.splitlines() if "rror" in line and "│" not in line]
        assert code == 0, f"{half} half failed ({code}):\n" + "\n".join(errors[-30:])

    assert calls_rows(warehouse) == acc.truth(), "exactly the rows of one run over all accounts"
    assert daily_rows(warehouse) == acc.truth_daily()
    for half, (_runner, names) in halves.items():
        singer = state_of(meltano, state_id(f"{warehouse.schema}-{half}"))["singer_state"]
        assert list(partitions(singer, "calls")) == names, f"{half}: its own accounts only"


# ---------------------------------------------------------------- (d) one account fails
def test_a_refused_key_fails_the_run_and_meltano_keeps_the_others_state(
    postgres_url, warehouse, meltano, make_sandbox
):
    acc = Accounts(make_sandbox, {"east": 500, "broken": 700, "centre": 250}, seed=81)
    good_key = acc.key_of["broken"]
    acc.key_of["broken"] = "e2e-refused-key"
    suffix = warehouse.schema
    env = {**acc.env(), **warehouse.env}
    failed = meltano.attempt(*run_args(suffix), env=env, timeout=RUN_TIMEOUT)
    output = failed.stdout + failed.stderr
    assert failed.returncode != 0, output[-3000:]
    assert "1 of 3 accounts failed: broken" in output
    assert "e2e-refused-key" not in output
    ok = ("east", "centre")
    assert calls_rows(warehouse) == acc.truth(*ok)
    assert daily_rows(warehouse) == acc.truth_daily(*ok)

    singer = state_of(meltano, state_id(suffix))["singer_state"]
    marks = {}
    for stream in ("calls", "daily_calls"):
        found = partitions(singer, stream)
        for name in ok:
            assert found[name].get("replication_key_value"), f"{stream}: {name} kept"
            marks[stream, name] = found[name]["replication_key_value"]
        assert not found.get("broken", {}).get("replication_key_value")

    # The key fixed: the two others resume incrementally, the failed one from start_date.
    acc.key_of["broken"] = good_key
    acc.sb.clear_requests()
    meltano.run(*run_args(suffix), env={**acc.env(), **warehouse.env}, timeout=RUN_TIMEOUT)
    for name in ok:
        assert acc.first_days(name) == {
            "calls": expected.resume_day(marks["calls", name], LOOKBACK),
            "daily_calls": expected.resume_day(marks["daily_calls", name], LOOKBACK),
        }
    assert acc.first_days("broken") == {"calls": "2024-01-01", "daily_calls": "2024-01-01"}
    assert calls_rows(warehouse) == acc.truth()
    assert daily_rows(warehouse) == acc.truth_daily()
    singer = state_of(meltano, state_id(suffix))["singer_state"]
    assert list(partitions(singer, "calls")) == acc.names
