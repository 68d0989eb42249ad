"""End to end: the project's meltano.yml, real Meltano, real loaders, the sandbox as the API.

`meltano install` runs once per session into a temporary system dir (MELTANO_SYS_DIR_ROOT),
from the checkout itself, so `pip_url: -e .` installs the code under test and nothing
is written into the work tree. Every test loads into a PostgreSQL schema of its own
(dropped afterwards) and runs with a state-id suffix of its own, so runs never collide.

PostgreSQL comes from TAP_OPTICO_TEST_POSTGRES_URL (e.g.
postgresql://postgres@127.0.0.1:5432/postgres). Without it the PostgreSQL tests skip,
unless TAP_OPTICO_REQUIRE_POSTGRES=1 (set by .ci/run), which makes them fail.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import typing as t

import pytest

from tests import expected
from tests.e2e import ENVIRONMENT, LOOKBACK, PROJECT, state_of, tap_env
from tests.tap_run import bookmark_of

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore::ResourceWarning")]


def truth_by_id(calls: t.Iterable[t.Mapping[str, t.Any]]) -> dict[str, dict[str, t.Any]]:
    return {
        key: record | {"additional_fields": None} for key, record in expected.records(calls).items()
    }


def daily_by_date(rows: t.Iterable[t.Mapping[str, t.Any]]) -> dict[str, dict[str, t.Any]]:
    return {r["date"]: r for r in expected.daily(rows)}


def calls_requests(sb: t.Any) -> list[t.Any]:
    return [r for r in sb.requests if r.params.get("group_by_day", "") not in ("true", "1")]


def daily_requests(sb: t.Any) -> list[t.Any]:
    return [r for r in sb.requests if r.params.get("group_by_day", "") in ("true", "1")]


def test_run_then_incremental_run_then_full_refresh(postgres_url, warehouse, meltano, make_sandbox):
    sb = make_sandbox(calls=3000, start_date="2024-01-01", end_date="2024-03-31", seed=41)
    suffix = warehouse.schema
    state_id = f"{ENVIRONMENT}:tap-optico-to-target-postgres:{suffix}"
    env = {**tap_env(sb), **warehouse.env}
    run = ("run", "--state-id-suffix", suffix, "tap-optico", "target-postgres")

    # Run 1: everything, values and UTC timestamps equal to the sandbox's truth.
    meltano.run(*run, env=env)
    truth_1 = truth_by_id(sb.truth_calls())
    loaded = warehouse.calls()
    assert len(loaded) == len(truth_1) == 3000
    lookalikes = 3000 - len({expected.call_id(c) for c in sb.truth_calls()})
    assert lookalikes >= 20, "the data holds look-alikes, each its own row"
    assert loaded == truth_1, "every row, every column, start_date in UTC"
    daily_1 = daily_by_date(sb.truth_daily())
    assert warehouse.daily() == daily_1
    state = state_of(meltano, state_id)
    bookmark = bookmark_of(state["singer_state"])
    assert bookmark is not None
    assert bookmark == max(r["start_date"] for r in truth_1.values())

    # Between runs: late calls inside the lookback, and changed status/duration/revenue.
    reread_from = expected.local_day(bookmark) - dt.timedelta(days=LOOKBACK)
    late = sb.add_calls(25, reread_from.isoformat(), "2024-03-31")
    changed = sb.update_calls(300)
    recent = [c for c in changed if c["start_date"][:10] >= reread_from.isoformat()]
    older = [c for c in changed if c["start_date"][:10] < reread_from.isoformat()]
    assert recent, "some updates fall inside the lookback (seeded)"
    assert older, "and some before it (seeded)"
    sb.clear_requests()

    # Run 2: incremental (the state went back to the tap), from the bookmark minus the
    # lookback; upserts on call_id, so no duplicates and changed values in place.
    meltano.run(*run, env=env)
    assert {r.params["start_date"] for r in calls_requests(sb)} == {reread_from.isoformat()}
    last_day = max(daily_1)
    daily_from = (dt.date.fromisoformat(last_day) - dt.timedelta(days=LOOKBACK)).isoformat()
    assert {r.params["start_date"] for r in daily_requests(sb)} == {daily_from}
    assert len(sb.requests) <= 4, "an incremental run reads the lookback only"

    truth_2 = truth_by_id(sb.truth_calls())
    # What an incremental run can know: the current truth inside the lookback; older
    # calls as they were at run 1 (a change older than the lookback needs a full refresh).
    reachable = {
        call_id: (
            record
            if expected.local_day(record["start_date"]) >= reread_from
            else truth_1.get(call_id, record)
        )
        for call_id, record in truth_2.items()
    }
    loaded = warehouse.calls()
    assert len(loaded) == 3000 + len(late)
    assert loaded == reachable
    now = expected.keyed(sb.truth_calls())
    for call in recent:
        row = loaded[expected.id_in(call, now)]
        assert (row["status"], row["duration"], row["revenue"]) == (
            call["status"],
            call["duration"],
            call["revenue"],
        ), "updated in place"
    daily_2 = daily_by_date(sb.truth_daily())
    assert warehouse.daily() == {
        day: row if day >= daily_from else daily_1.get(day, row) for day, row in daily_2.items()
    }

    # Run 3: --full-refresh ignores the state, re-reads everything, upserts: no duplicates,
    # and now every change, however old, is in.
    sb.clear_requests()
    meltano.run("run", "--full-refresh", *run[1:], env=env)
    assert min(r.params["start_date"] for r in sb.requests) == "2024-01-01"
    assert warehouse.calls() == truth_2
    assert warehouse.count("calls") == len(truth_2)
    assert warehouse.daily() == daily_2


def test_a_killed_run_then_a_rerun_ends_equal_to_the_truth(
    postgres_url, warehouse, meltano, make_sandbox
):
    sb = make_sandbox(
        calls=2000, start_date="2024-01-01", end_date="2024-03-31", seed=42, latency=0.15
    )
    suffix = warehouse.schema
    env = {
        **tap_env(sb, page_size=100, max_concurrent_requests=1),
        **warehouse.env,
        "TARGET_POSTGRES_BATCH_SIZE_ROWS": "100",
    }
    run = ("run", "--state-id-suffix", suffix, "tap-optico", "target-postgres")
    process = subprocess.Popen(
        meltano.command(*run),
        cwd=PROJECT,
        env=meltano.env(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: meltano, the tap and the target
    )
    try:
        warehouse.wait_for_rows("calls", 300, process)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    at_kill = warehouse.count("calls")
    assert 0 < at_kill < 2000, "killed midway"

    # The killed run's job row is still marked running, so a plain re-run is refused until
    # it goes stale (5 minutes without heartbeat); --force takes over its state id.
    refused = subprocess.run(
        meltano.command(*run),
        cwd=PROJECT,
        env=meltano.env(env),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert refused.returncode != 0
    assert "--force" in refused.stdout + refused.stderr

    # SDK targets (target-postgres) confirm state only when they drain every sink: at the
    # end, or after 5 minutes. A run killed sooner left no state, so the re-run starts
    # over; it upserts on call_id, so the rows already loaded are not duplicated.
    meltano.run("run", "--force", *run[1:], env=env)
    assert warehouse.calls() == truth_by_id(sb.truth_calls())
    assert warehouse.daily() == daily_by_date(sb.truth_daily())


def test_duckdb_keeps_every_row_across_batches(meltano, make_sandbox, tmp_path):
    """Every row lands, batch after batch (target-duckdb 0.8.0 with duckdb >= 1.3 is known
    to drop each batch's first row; meltano.yml pins duckdb 1.2.2)."""
    sb = make_sandbox(calls=2500, start_date="2024-01-01", end_date="2024-03-31", seed=43)
    database = tmp_path / "warehouse.duckdb"
    env = {
        **tap_env(sb),
        "TARGET_DUCKDB_PATH": str(database),
        "TARGET_DUCKDB_DEFAULT_TARGET_SCHEMA": "optico",
        "TARGET_DUCKDB_BATCH_SIZE_ROWS": "600",  # 2500 calls: five batches
    }
    meltano.run("run", "--state-id-suffix", tmp_path.name, "tap-optico", "target-duckdb", env=env)
    script = (
        "import duckdb, json, sys\n"
        "c = duckdb.connect(sys.argv[1], read_only=True)\n"
        "ids = c.sql('select call_id, start_date::varchar from optico.calls').fetchall()\n"
        "days = c.sql('select date, calls from optico.daily_calls').fetchall()\n"
        "print(json.dumps({'ids': ids, 'days': [[str(d), n] for d, n in days],\n"
        "                  'duckdb': duckdb.__version__}))\n"
    )
    result = subprocess.run(
        [meltano.python("target-duckdb"), "-c", script, str(database)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    landed = json.loads(result.stdout)
    truth = {
        key: expected.utc(c["start_date"])[:19].replace("T", " ")
        for key, c in expected.keyed(sb.truth_calls()).items()
    }
    assert len(landed["ids"]) == len(truth) == 2500, f"duckdb {landed['duckdb']}"
    assert dict(landed["ids"]) == truth, "every call, start_date stored in UTC"
    assert {d: n for d, n in landed["days"]} == {r["date"]: r["calls"] for r in sb.truth_daily()}


def test_loader_defaults_a_rerun_adds_no_row_and_times_stay_utc(
    postgres_url, warehouse, meltano, make_sandbox
):
    """meltano.yml's own loader settings (chosen for speed) keep upserts and UTC times."""
    dumped = meltano.run("invoke", "--dump=config", "target-postgres", env=warehouse.env).stdout
    config = json.loads(dumped[dumped.index("{") :])
    assert config["use_copy"] is True, "the test runs under the project's defaults"
    assert config["validate_records"] is False
    assert config["load_method"] == "upsert"
    # Across the spring daylight-saving change (2024-03-31), in a session zone far from UTC.
    sb = make_sandbox(calls=1500, start_date="2024-03-25", end_date="2024-04-05", seed=44)
    env = {**tap_env(sb), **warehouse.env}
    run = ("run", "--state-id-suffix", warehouse.schema, "tap-optico", "target-postgres")
    truth = truth_by_id(sb.truth_calls())
    meltano.run(*run, env=env)
    assert warehouse.calls() == truth, "every row, every column, start_date in UTC"
    meltano.run("run", "--full-refresh", *run[1:], env=env)
    assert warehouse.count("calls") == len(truth) == 1500, "a re-run adds no row"
    assert warehouse.calls() == truth
