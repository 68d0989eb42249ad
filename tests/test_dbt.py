"""End to end: the dbt models of transform/, built by Meltano after a sync of the sandbox.

Real Meltano runs `tap-optico target-postgres dbt-postgres:build` and `tap-optico
target-duckdb dbt-duckdb:build` (every dbt test included) against the sandbox, then the
marts are compared with the sandbox's truth: calls, answered calls, duration and revenue
per account, local day and source; per source and keyword; per caller. The local days come
from the sandbox's own local times, so they check the models' UTC-to-local conversion too,
across the change to summer time on 2024-03-31.

The same tests prove that the models take both shapes of the loaded tables (the tap's
`account` column, one account or several sharing call_ids; and tables without the column,
as earlier versions of the tap loaded them), and that a lost or a duplicated call fails the
build.

PostgreSQL comes from TAP_OPTICO_TEST_POSTGRES_URL, as in tests/test_meltano.py (skipped
without it, failed when TAP_OPTICO_REQUIRE_POSTGRES=1). dbt writes its artifacts and logs
under the test's temporary directory, never into the work tree.
"""

from __future__ import annotations

import collections
import json
import subprocess
import typing as t
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from tests import expected
from tests.e2e import FOREIGN_TZ, Meltano, Warehouse, tap_env

psycopg = pytest.importorskip("psycopg")

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore::ResourceWarning")]

ACCOUNTS = ["north", "south"]
ANSWERED = "succès"  # the sandbox's answered status (sandbox/optico_sandbox/data.py)


class DbtMeltano(Meltano):
    """A Meltano runner that also keeps the caller's DBT_* variables from the plugins."""

    def env(self, extra: t.Mapping[str, str]) -> dict[str, str]:
        base = super().env(extra)
        return {k: v for k, v in base.items() if not k.startswith("DBT_") or k in extra}


@pytest.fixture(scope="session")
def meltano_dbt(meltano: Meltano) -> DbtMeltano:
    """The session's Meltano install (tests/conftest.py), which holds the dbt plugins too."""
    return DbtMeltano(meltano.executable, meltano.sys_dir)


def dbt_env(tmp_path: Path) -> dict[str, str]:
    """dbt's artifacts and logs in the test's directory (Meltano's <PLUGIN>_<SETTING> names)."""
    return {
        f"{plugin}_{setting}": str(tmp_path / folder)
        for plugin in ("DBT_POSTGRES", "DBT_DUCKDB")
        for setting, folder in (("TARGET_PATH", "dbt-target"), ("LOG_PATH", "dbt-logs"))
    }


def results(tmp_path: Path) -> dict[str, str]:
    """Status of every node of the last dbt command, by node name."""
    run = json.loads((tmp_path / "dbt-target" / "run_results.json").read_text())
    return {r["unique_id"].split(".")[2]: r["status"] for r in run["results"]}


# --- the truth, in the marts' shape -----------------------------------------------------

Measures = tuple[int, int, int, int]  # calls, answered, duration (s), revenue (cents)


def cents(value: t.Any) -> int:
    return int((Decimal(str(value)) * 100).quantize(Decimal(1)))


def measures(calls: t.Iterable[t.Mapping[str, t.Any]]) -> Measures:
    calls = list(calls)
    return (
        len(calls),
        sum(c["status"] == ANSWERED for c in calls),
        sum(c["duration"] for c in calls),
        sum(cents(c["revenue"]) for c in calls),
    )


def group(
    calls: t.Iterable[dict[str, t.Any]], key: t.Callable[[dict[str, t.Any]], tuple[t.Any, ...]]
) -> dict[tuple[t.Any, ...], list[dict[str, t.Any]]]:
    groups: dict[tuple[t.Any, ...], list[dict[str, t.Any]]] = collections.defaultdict(list)
    for call in calls:
        groups[key(call)].append(call)
    return groups


def label(value: str | None) -> str:
    return value or "(none)"


@dataclass
class Marts:
    """The three marts, keyed and reduced to what the truth can say."""

    daily: dict[tuple[t.Any, ...], Measures]
    sources: dict[tuple[t.Any, ...], Measures]
    callers: dict[tuple[t.Any, ...], tuple[t.Any, ...]]


def truth_marts(calls: list[dict[str, t.Any]], accounts: t.Iterable[str]) -> Marts:
    """What the marts must hold for these calls (start_date in local time), per account."""
    by_day = group(calls, lambda c: (c["start_date"][:10], label(c["source"])))
    by_source = group(calls, lambda c: (label(c["source"]), label(c["keyword"]), "(none)"))
    # A hidden number (an empty caller) is nobody's: the marts leave it out.
    by_caller = group([c for c in calls if c["caller"]], lambda c: (c["caller"],))
    per_caller = {}
    for (caller,), rows in by_caller.items():
        starts = sorted(c["start_date"] for c in rows)
        n, answered, _duration, revenue = measures(rows)
        per_caller[caller] = (n, answered, revenue, starts[0], starts[-1], n > 1)
    return Marts(
        daily={(a, *k): measures(rows) for a in accounts for k, rows in by_day.items()},
        sources={(a, *k): measures(rows) for a in accounts for k, rows in by_source.items()},
        callers={(a, who): row for a in accounts for who, row in per_caller.items()},
    )


def marts_from_rows(
    daily: t.Sequence[t.Sequence[t.Any]],
    sources: t.Sequence[t.Sequence[t.Any]],
    callers: t.Sequence[t.Sequence[t.Any]],
) -> Marts:
    """Marts from the rows of the queries in MART_QUERIES."""
    return Marts(
        daily={
            (a, str(d), s): (int(n), int(ok), int(sec), cents(r))
            for a, d, s, n, ok, sec, r in daily
        },
        sources={
            (a, s, k, c): (int(n), int(ok), int(sec), cents(r))
            for a, s, k, c, n, ok, sec, r in sources
        },
        callers={
            (a, who): (int(n), int(ok), cents(r), str(first)[:19], str(last)[:19], bool(rep))
            for a, who, n, ok, r, first, last, rep in callers
        },
    )


MART_QUERIES = {
    "daily": "select account, local_date, source, calls, answered, total_duration_s, revenue"
    " from {schema}.optico_calls_daily",
    "sources": "select account, source, keyword, campaign, calls, answered, total_duration_s,"
    " revenue from {schema}.optico_sources",
    "callers": "select account, caller, calls, answered, revenue, first_call_at_local,"
    " last_call_at_local, is_repeat_caller from {schema}.optico_callers",
    "staged": "select account, call_id, start_at_utc, start_at_local, local_date, outcome,"
    " is_first_call from {schema}.stg_optico__calls",
    "rates": "select min(answer_rate), max(answer_rate), sum(answered) * 1.0 / sum(calls)"
    " from {schema}.optico_calls_daily",
}


def check_marts(
    rows: t.Mapping[str, t.Sequence[t.Sequence[t.Any]]],
    calls: list[dict[str, t.Any]],
    accounts: list[str],
) -> None:
    """Every mart row, and every staged call, equal to the truth."""
    truth = truth_marts(calls, accounts)
    marts = marts_from_rows(rows["daily"], rows["sources"], rows["callers"])
    assert sum(v[0] for v in marts.daily.values()) == len(calls) * len(accounts)
    assert marts.daily == truth.daily, "calls, answered, duration, revenue per day and source"
    assert marts.sources == truth.sources, "per source, keyword and campaign"
    assert marts.callers == truth.callers, "per caller"

    outcomes = {ANSWERED: "answered", "occupé": "busy", "aucune réponse": "no_answer"}
    want = {
        (account, key): (
            expected.utc(c["start_date"])[:19].replace("T", " "),
            c["start_date"],
            c["start_date"][:10],
            outcomes[c["status"]],
        )
        for account in accounts
        for key, c in expected.keyed(calls).items()
    }
    staged = {
        (a, call_id): (str(utc)[:19], str(local)[:19], str(day), outcome)
        for a, call_id, utc, local, day, outcome, _first in rows["staged"]
    }
    assert staged == want, "UTC and local start, local day and outcome of every call"
    first_calls = sum(bool(row[6]) for row in rows["staged"])
    assert first_calls == len(truth.callers), "one first call per caller"
    ((low, high, overall),) = rows["rates"]
    assert 0 <= float(low) <= float(high) <= 1
    answered = sum(c["status"] == ANSWERED for c in calls)
    assert float(overall) == pytest.approx(answered / len(calls))


# --- PostgreSQL --------------------------------------------------------------------------


@pytest.fixture
def analytics(postgres_url: str) -> Iterator[Warehouse]:
    """A schema for the load and its `<schema>_analytics` for the models; both dropped."""
    schema = f"tap_optico_dbt_{uuid.uuid4().hex[:12]}"
    yield Warehouse(postgres_url, schema)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'drop schema if exists "{schema}" cascade')
        conn.execute(f'drop schema if exists "{schema}_analytics" cascade')


def postgres_rows(warehouse: Warehouse) -> dict[str, list[t.Sequence[t.Any]]]:
    """The mart queries, in a session whose TimeZone is far from UTC."""
    schema = f'"{warehouse.schema}_analytics"'
    with psycopg.connect(warehouse.url) as conn:
        conn.execute(f"set timezone = '{FOREIGN_TZ}'")
        return {
            name: conn.execute(sql.format(schema=schema)).fetchall()
            for name, sql in MART_QUERIES.items()
        }


def test_postgres_marts_equal_the_truth_and_a_lost_call_fails_the_build(
    postgres_url, analytics, meltano_dbt, make_sandbox, tmp_path
):
    sb = make_sandbox(calls=2000, start_date="2024-01-01", end_date="2024-03-31", seed=51)
    # Two accounts of the same (sandbox) data: the same call_ids in both, so every key must
    # hold the account.
    accounts = [{"name": name, "api_key": sb.api_key} for name in ACCOUNTS]
    tap = {k: v for k, v in tap_env(sb).items() if k != "TAP_OPTICO_API_KEY"}
    # PGTZ (far from UTC) reaches dbt: the models must not depend on the session's zone.
    env = {
        **tap,
        "TAP_OPTICO_ACCOUNTS": json.dumps(accounts),
        **analytics.env,
        **dbt_env(tmp_path),
    }
    assert env["PGTZ"] == FOREIGN_TZ
    meltano_dbt.run(
        "run",
        "--state-id-suffix",
        analytics.schema,
        "tap-optico",
        "target-postgres",
        "dbt-postgres:build",
        env=env,
    )
    statuses = results(tmp_path)
    assert set(statuses.values()) == {"success", "pass"}, statuses
    assert statuses["assert_calls_reconcile_with_daily_calls"] == "pass"
    for test in (
        "assert_status_and_url_parsing",
        "assert_marts_add_up_to_calls",
        "optico_unique_key_stg_optico__calls_account__call_id",
        "accepted_values_stg_optico__calls_outcome__answered__busy__no_answer__other",
        "optico_between_optico_calls_daily_answer_rate__1__0",
    ):
        assert statuses[test] == "pass", test
    assert analytics.count("calls") == 2 * 2000
    check_marts(postgres_rows(analytics), sb.truth_calls(), ACCOUNTS)

    # A call lost between the API and the warehouse: the reconciliation with the API's
    # daily totals fails the build.
    analytics.query(
        "delete from {schema}.calls where call_id = (select min(call_id) from {schema}.calls)"
        " returning call_id"
    )
    failed = meltano_dbt.attempt("invoke", "dbt-postgres:build", env=env)
    assert failed.returncode != 0
    assert results(tmp_path)["assert_calls_reconcile_with_daily_calls"] == "fail"


# --- DuckDB ------------------------------------------------------------------------------

DUCKDB_SCRIPT = """
import duckdb, json, sys
db = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == "read")
out = {}
for name, sql in json.loads(sys.argv[3]).items():
    relation = db.sql(sql)  # None for statements without rows
    out[name] = relation.fetchall() if relation is not None else []
print(json.dumps(out, default=str))
"""


def duckdb_sql(
    meltano: Meltano, database: Path, queries: dict[str, str], *, write: bool = False
) -> dict[str, list[list[t.Any]]]:
    """Run queries with the dbt-duckdb plugin's duckdb (the one the loader writes with)."""
    python = meltano.sys_dir / "transformers" / "dbt-duckdb" / "venv" / "bin" / "python"
    mode = "write" if write else "read"
    result = subprocess.run(
        [str(python), "-c", DUCKDB_SCRIPT, str(database), mode, json.dumps(queries)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return t.cast("dict[str, list[list[t.Any]]]", json.loads(result.stdout))


def test_duckdb_marts_equal_the_truth_with_and_without_an_account_column(
    meltano_dbt, make_sandbox, tmp_path
):
    sb = make_sandbox(calls=2000, start_date="2024-01-01", end_date="2024-03-31", seed=52)
    database = tmp_path / "warehouse.duckdb"
    env = {
        **tap_env(sb),
        "TAP_OPTICO_ACCOUNT_NAME": "acme",
        "TARGET_DUCKDB_PATH": str(database),
        "TARGET_DUCKDB_DEFAULT_TARGET_SCHEMA": "optico",
        # Not UTC on purpose: DuckDB's session zone must not matter either.
        "TZ": FOREIGN_TZ,
        **dbt_env(tmp_path),
    }
    meltano_dbt.run(
        "run",
        "--state-id-suffix",
        tmp_path.name,
        "tap-optico",
        "target-duckdb",
        "dbt-duckdb:build",
        env=env,
    )
    assert set(results(tmp_path).values()) == {"success", "pass"}, results(tmp_path)
    calls = sb.truth_calls()
    queries = {name: sql.format(schema="optico_analytics") for name, sql in MART_QUERIES.items()}
    check_marts(duckdb_sql(meltano_dbt, database, queries), calls, ["acme"])

    # Tables without the `account` column: every row gets the optico_account var.
    duckdb_sql(
        meltano_dbt,
        database,
        {
            "schema": "create schema bare",
            "calls": "create table bare.calls as select * exclude (account) from optico.calls",
            "daily": "create table bare.daily_calls as"
            " select * exclude (account) from optico.daily_calls",
        },
        write=True,
    )
    bare = {
        **env,
        "DBT_OPTICO_SCHEMA": "bare",
        "DBT_DUCKDB_SCHEMA": "bare_analytics",
        "DBT_OPTICO_ACCOUNT": "solo",
    }
    meltano_dbt.run("invoke", "dbt-duckdb:build", env=bare)
    assert set(results(tmp_path).values()) == {"success", "pass"}
    queries = {name: sql.format(schema="bare_analytics") for name, sql in MART_QUERIES.items()}
    check_marts(duckdb_sql(meltano_dbt, database, queries), calls, ["solo"])

    # A call loaded twice fails the build at the staging key (the marts and the
    # reconciliation downstream of it are then skipped).
    duckdb_sql(
        meltano_dbt,
        database,
        {"dup": "insert into bare.calls select * from bare.calls order by call_id limit 1"},
        write=True,
    )
    failed = meltano_dbt.attempt("invoke", "dbt-duckdb:build", env=bare)
    assert failed.returncode != 0
    statuses = results(tmp_path)
    assert statuses["optico_unique_key_stg_optico__calls_account__call_id"] == "fail"
    assert statuses["assert_calls_reconcile_with_daily_calls"] == "skipped"
