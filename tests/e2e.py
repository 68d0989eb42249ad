"""The end-to-end tier's tools: real Meltano in a temporary system dir, a PostgreSQL schema.

The fixtures that hand them to tests (`meltano`, `postgres_url`, `warehouse`) are in
tests/conftest.py, so every module shares one `meltano install` per session.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
import typing as t
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg
import pytest

from optico_sandbox import Sandbox
from tap_optico.records import BOOLEAN_FIELDS, INTEGER_FIELDS, NUMBER_FIELDS, STRING_FIELDS
from tests import expected

PROJECT = Path(__file__).resolve().parents[1]
POSTGRES_URL = os.environ.get("TAP_OPTICO_TEST_POSTGRES_URL", "")
REQUIRE_POSTGRES = os.environ.get("TAP_OPTICO_REQUIRE_POSTGRES") == "1"
ENVIRONMENT = "dev"  # meltano.yml's default_environment: state ids start with it
# Far from UTC on purpose: the stored timestamps must still be UTC (meltano.yml pins the
# target's session to UTC; without that PostgreSQL would convert to this zone).
FOREIGN_TZ = "Pacific/Auckland"


def meltano_executable() -> str:
    beside = Path(sys.executable).with_name("meltano")
    if beside.exists():
        return str(beside)
    found = shutil.which("meltano")
    if not found:
        pytest.fail("meltano is not installed in the test environment (uv sync installs it)")
    return found


# Where `meltano install` puts plugins, under its system directory.
PLUGIN_DIRS = ("extractors", "loaders", "transformers", "utilities", "mappers", "orchestrators")


@dataclass
class Meltano:
    """Runs meltano commands in the checkout against one temporary system dir."""

    executable: str
    sys_dir: Path

    def env(self, extra: t.Mapping[str, str]) -> dict[str, str]:
        # Only what a test sets reaches the plugins: no stray TAP_OPTICO_*/TARGET_*/MELTANO_*.
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("TAP_OPTICO_", "TARGET_", "MELTANO_", "PG"))
        }
        return {
            **base,
            "MELTANO_SYS_DIR_ROOT": str(self.sys_dir),
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            "MELTANO_ENVIRONMENT": ENVIRONMENT,
            "NO_COLOR": "1",
            **extra,
        }

    def command(self, *args: str) -> list[str]:
        return [self.executable, "--log-level=info", *args]

    def attempt(
        self, *args: str, env: t.Mapping[str, str] | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """Run a meltano command that may fail; the caller checks the result."""
        return subprocess.run(
            self.command(*args),
            cwd=PROJECT,
            env=self.env(env or {}),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def run(
        self, *args: str, env: t.Mapping[str, str] | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        result = self.attempt(*args, env=env, timeout=timeout)
        assert result.returncode == 0, (
            f"meltano {' '.join(args)} failed ({result.returncode}):\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        )
        return result

    def sibling(self, sys_dir: Path) -> Meltano:
        """A system directory of its own over these installed plugins.

        Its own catalogs, logs and system database: Meltano writes an extractor's catalog
        to one directory per plugin, which two concurrent runs in one system directory
        would overwrite.
        """
        sys_dir.mkdir()
        for kind in PLUGIN_DIRS:
            if (self.sys_dir / kind).exists():
                (sys_dir / kind).symlink_to(
                    (self.sys_dir / kind).resolve(), target_is_directory=True
                )
        shutil.copy(self.sys_dir / "meltano.db", sys_dir / "meltano.db")
        return Meltano(self.executable, sys_dir)

    def python(self, loader: str) -> str:
        return str(self.sys_dir / "loaders" / loader / "venv" / "bin" / "python")


@dataclass
class Warehouse:
    """One test's schema in PostgreSQL, and the TARGET_POSTGRES_* settings that reach it."""

    url: str
    schema: str

    @property
    def env(self) -> dict[str, str]:
        parts = urlsplit(self.url)
        return {
            "TARGET_POSTGRES_HOST": parts.hostname or "127.0.0.1",
            "TARGET_POSTGRES_PORT": str(parts.port or 5432),
            "TARGET_POSTGRES_USER": unquote(parts.username or "postgres"),
            # target-postgres insists on a password setting; empty works with trust auth.
            "TARGET_POSTGRES_PASSWORD": unquote(parts.password or ""),
            "TARGET_POSTGRES_DATABASE": parts.path.lstrip("/") or "postgres",
            "TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA": self.schema,
            "PGTZ": FOREIGN_TZ,
        }

    def query(self, sql: str) -> list[tuple[t.Any, ...]]:
        with psycopg.connect(self.url) as conn:
            rows: list[tuple[t.Any, ...]] = conn.execute(
                sql.replace("{schema}", self.schema)
            ).fetchall()
        return rows

    def count(self, table: str) -> int:
        try:
            return int(self.query(f'select count(*) from "{{schema}}"."{table}"')[0][0])
        except psycopg.errors.UndefinedTable:
            return 0

    def wait_for_rows(
        self, table: str, rows: int, process: subprocess.Popen[t.Any], timeout: float = 180
    ) -> None:
        """Wait while `process` runs until `table` holds at least `rows` (to kill it midway)."""
        deadline = time.monotonic() + timeout
        while self.count(table) < rows:
            assert process.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, f"no {rows} rows landed within {timeout:.0f} s"
            time.sleep(0.2)

    def calls(self) -> dict[str, dict[str, t.Any]]:
        """Every calls row by call_id, in the shape of tests.expected.record."""
        columns = ["account", "call_id", "start_date", *RECORD_FIELDS, "additional_fields"]
        rows = self.query(f'select {", ".join(columns)} from "{{schema}}".calls')
        out: dict[str, dict[str, t.Any]] = {}
        for row in rows:
            record = dict(zip(columns, row, strict=True))
            # timestamp without time zone: a naive value, UTC by the tap's contract.
            record["start_date"] = record["start_date"].replace(tzinfo=dt.timezone.utc).isoformat()
            if isinstance(record["revenue"], Decimal):
                record["revenue"] = float(record["revenue"])
            assert record["call_id"] not in out, f"duplicate call_id {record['call_id']}"
            out[record["call_id"]] = record
        return out

    def daily(self) -> dict[str, dict[str, t.Any]]:
        rows = self.query(
            'select account, date, calls, duration, revenue from "{schema}".daily_calls'
        )
        out = {}
        for account, day, calls, duration, revenue in rows:
            key = day.isoformat() if isinstance(day, dt.date) else str(day)
            assert key not in out, f"duplicate daily_calls date {key}"
            out[key] = {"date": key, "calls": calls, "duration": duration, "revenue": revenue}
            out[key]["account"] = account
            out[key]["revenue"] = float(revenue) if revenue is not None else None
        return out


RECORD_FIELDS = (*STRING_FIELDS, *INTEGER_FIELDS, *NUMBER_FIELDS, *BOOLEAN_FIELDS)


LOOKBACK = 3


def tap_env(sb: t.Any, **overrides: t.Any) -> dict[str, str]:
    settings = {
        "api_url": sb.url,
        "api_key": sb.api_key,
        "start_date": sb.store.start_day.isoformat(),
        "end_date": sb.store.end_day.isoformat(),
        "lookback_days": LOOKBACK,
        **overrides,
    }
    return {f"TAP_OPTICO_{name.upper()}": str(value) for name, value in settings.items()}


def state_of(meltano: Meltano, state_id: str) -> dict[str, t.Any]:
    result = meltano.run("state", "get", state_id)
    text = result.stdout.strip()
    return t.cast("dict[str, t.Any]", json.loads(text[text.index("{") :]))


MakeSandbox = t.Callable[..., Sandbox]


RUN_TIMEOUT = 300


class Accounts:
    """A sandbox whose every account has calls of its own, named and keyed for the tap."""

    def __init__(self, make_sandbox: MakeSandbox, sizes: dict[str, int], seed: int) -> None:
        names = list(sizes)
        self.key_of = {name: f"e2e-{seed}-{name}-key" for name in names}
        first = names[0]
        self.sb = make_sandbox(
            calls=sizes[first],
            start_date="2024-01-01",
            end_date="2024-03-31",
            seed=seed,
            api_key=self.key_of[first],
            accounts={
                self.key_of[n]: {"calls": sizes[n], "seed": seed + i}
                for i, n in enumerate(names)
                if i
            },
        )
        self.names = names

    def env(self, **overrides: t.Any) -> dict[str, str]:
        settings: dict[str, t.Any] = {
            "api_url": self.sb.url,
            "accounts": json.dumps([{"name": n, "api_key": self.key_of[n]} for n in self.names]),
            "start_date": "2024-01-01",
            "end_date": "2024-03-31",
            "lookback_days": LOOKBACK,
            **overrides,
        }
        return {f"TAP_OPTICO_{k.upper()}": str(v) for k, v in settings.items() if v is not None}

    def truth(self, *names: str) -> dict[tuple[str, str], dict[str, t.Any]]:
        out = {}
        for name in names or self.names:
            calls = self.sb.truth_calls(api_key=self.key_of[name])
            for key, record in expected.records(calls, name).items():
                out[name, key] = record | {"additional_fields": None}
        return out

    def truth_daily(self, *names: str) -> dict[tuple[str, str], dict[str, t.Any]]:
        out = {}
        for name in names or self.names:
            for row in expected.daily(self.sb.truth_daily(api_key=self.key_of[name]), name):
                out[name, row["date"]] = row
        return out

    def truth_calls_on(self, name: str, day: str) -> list[dict[str, t.Any]]:
        return self.sb.truth_calls(day, day, api_key=self.key_of[name])

    def first_days(self, name: str) -> dict[str, str]:
        return expected.first_days(self.sb.requests, self.sb.account_of(self.key_of[name]))


def calls_rows(warehouse: Warehouse) -> dict[tuple[str, str], dict[str, t.Any]]:
    """Every calls row by (account, call_id), in the shape of tests.expected.record."""
    columns = ["account", "call_id", "start_date", *RECORD_FIELDS, "additional_fields"]
    rows = warehouse.query(f'select {", ".join(columns)} from "{{schema}}".calls')
    out: dict[tuple[str, str], dict[str, t.Any]] = {}
    for row in rows:
        record = dict(zip(columns, row, strict=True))
        record["start_date"] = record["start_date"].replace(tzinfo=dt.timezone.utc).isoformat()
        if isinstance(record["revenue"], Decimal):
            record["revenue"] = float(record["revenue"])
        key = (record["account"], record["call_id"])
        assert key not in out, f"duplicate row {key}"
        out[key] = record
    return out


def daily_rows(warehouse: Warehouse) -> dict[tuple[str, str], dict[str, t.Any]]:
    rows = warehouse.query(
        'select account, date, calls, duration, revenue from "{schema}".daily_calls'
    )
    out: dict[tuple[str, str], dict[str, t.Any]] = {}
    for account, day, calls, duration, revenue in rows:
        key = (account, day.isoformat())
        assert key not in out, f"duplicate daily_calls row {key}"
        out[key] = {
            "date": day.isoformat(),
            "calls": calls,
            "duration": duration,
            "revenue": None if revenue is None else float(revenue),
            "account": account,
        }
    return out


def run_args(suffix: str) -> tuple[str, ...]:
    return ("run", "--state-id-suffix", suffix, "tap-optico", "target-postgres")


def state_id(suffix: str) -> str:
    return f"{ENVIRONMENT}:tap-optico-to-target-postgres:{suffix}"
