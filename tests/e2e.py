"""The end-to-end tier's tools: real Meltano in a temporary system dir, a PostgreSQL schema.

The fixtures that hand them to tests (`meltano`, `postgres_url`, `warehouse`) are in
tests/conftest.py, so every module shares one `meltano install` per session.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import typing as t
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg
import pytest

from tap_optico.records import BOOLEAN_FIELDS, INTEGER_FIELDS, NUMBER_FIELDS, STRING_FIELDS

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
