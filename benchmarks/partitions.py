"""What one Dagster partition run costs over the sync itself, per account.

    TAP_OPTICO_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/postgres \
        uv run python benchmarks/partitions.py --accounts 5

The sandbox serves N small accounts (200 calls each, one quarter). Meltano is installed
into a temporary system dir; everything loads into a temporary PostgreSQL schema. Two
ways of syncing the same accounts from scratch:

* partitions: one `materialize` of orchestrate/'s optico_account per account, in a row
  (each one `meltano el` on its own state id, then `meltano state get`);
* together: one `meltano el` whose `accounts` lists all N.

The overhead per account is (partitions - together) / N: what running an account as a
partition of its own adds, mostly process start-up (Meltano, the tap, the target).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from unittest import mock
from urllib.parse import unquote, urlsplit

import dagster as dg
import psycopg

from optico_sandbox import Sandbox
from orchestrate.definitions import PARTITIONS, OpticoMeltano, optico_account

PROJECT = Path(__file__).resolve().parents[1]
MELTANO = str(Path(sys.executable).with_name("meltano"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=5)
    args = parser.parse_args()
    url = os.environ["TAP_OPTICO_TEST_POSTGRES_URL"]
    keys = {f"bench{n:02d}": f"bench-key-{n:02d}-{uuid.uuid4().hex}" for n in range(args.accounts)}
    first, *others = keys
    schema = f"tap_optico_bench_{uuid.uuid4().hex[:8]}"
    parts = urlsplit(url)
    with (
        tempfile.TemporaryDirectory() as tmp,
        Sandbox(
            calls=200,
            api_key=keys[first],
            accounts={keys[n]: {"calls": 200, "seed": i + 1} for i, n in enumerate(others)},
        ) as sb,
    ):
        keys_dir = Path(tmp, "keys")
        keys_dir.mkdir()
        for name, key in keys.items():
            (keys_dir / name).write_text(key)
        env = {
            "MELTANO_SYS_DIR_ROOT": str(Path(tmp, "sys")),
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            "TAP_OPTICO_API_URL": sb.url,
            "TAP_OPTICO_START_DATE": "2024-01-01",
            "TAP_OPTICO_END_DATE": "2024-03-31",
            "TARGET_POSTGRES_HOST": parts.hostname or "127.0.0.1",
            "TARGET_POSTGRES_PORT": str(parts.port or 5432),
            "TARGET_POSTGRES_USER": unquote(parts.username or "postgres"),
            "TARGET_POSTGRES_PASSWORD": unquote(parts.password or ""),
            "TARGET_POSTGRES_DATABASE": parts.path.lstrip("/") or "postgres",
        }
        with mock.patch.dict(os.environ, env):
            subprocess.run(
                [MELTANO, "install", "tap-optico", "target-postgres"],
                cwd=PROJECT,
                check=True,
                capture_output=True,
            )
            os.environ["TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA"] = schema
            resource = OpticoMeltano(keys_dir=str(keys_dir), meltano=MELTANO)
            with dg.DagsterInstance.ephemeral() as instance:
                instance.add_dynamic_partitions(PARTITIONS, list(keys))
                started = time.monotonic()
                for name in keys:
                    result = dg.materialize(
                        [optico_account],
                        partition_key=name,
                        instance=instance,
                        resources={"optico": resource},
                    )
                    assert result.success
                partitions = time.monotonic() - started
            os.environ["TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA"] = f"{schema}_one"
            os.environ["TAP_OPTICO_ACCOUNTS"] = json.dumps(
                [{"name": n, "api_key": k} for n, k in keys.items()]
            )
            started = time.monotonic()
            subprocess.run(
                [MELTANO, "el", "tap-optico", "target-postgres", "--state-id", f"bench-{schema}"],
                cwd=PROJECT,
                check=True,
                capture_output=True,
            )
            together = time.monotonic() - started
    with psycopg.connect(url, autocommit=True) as conn:
        for name in (schema, f"{schema}_one"):
            conn.execute(f'drop schema if exists "{name}" cascade')
    n = args.accounts
    print(
        f"{n} accounts of 200 calls: partitions {partitions:.1f} s ({partitions / n:.1f} s each),"
        f" together {together:.1f} s; overhead {(partitions - together) / n:.1f} s per account"
    )


if __name__ == "__main__":
    main()
