"""End to end: calls from the sandbox landed in PostgreSQL, by several pipelines.

    uv run --group bench python benchmarks/pipeline.py [--runs N] [--calls N] [--markdown]

Pipelines, each a process (or Meltano's processes) timed from start to exit, each
writing into a database of its own, dropped and created again before every run:

- ``meltano run --full-refresh tap-optico target-postgres`` from a scratch copy of
  this repository's meltano.yml (the tap installed from this checkout), its defaults;
- a dlt ``rest_api`` source (cursor paginator on ``nextPage``) into dlt's postgres
  destination, dlt's defaults (``--group bench`` installs dlt);
- a plain loop: ``requests`` + ``json`` + psycopg ``COPY``, page by page;
- the halves of the Meltano pipeline: ``tap-optico > file``, ``target-postgres <
  file`` and ``tap-optico | target-postgres`` without Meltano, with the settings
  Meltano passes them.

Every figure is the median of interleaved rounds (A, B, C, A, B, C, ...) after one
untimed warm-up round, then the same at 300 ms of API latency. ``--variant
NAME=VAR=VALUE;...`` adds a Meltano pipeline with settings overridden through the
environment (without latency), ``--pipe NAME=EXECUTABLE`` a ``tap | EXECUTABLE
--config`` pipe for a target configured with host/port/user/password/dbname (used
to compare pipelinewise-target-postgres). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import typing as t
from dataclasses import dataclass, field
from pathlib import Path

from bench import (  # the script's folder is on sys.path
    BIN,
    Run,
    Series,
    Server,
    child_env,
    progress,
    run,
    spread,
    table,
    windows_of,
)

if t.TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent
RANGE = ("2024-01-01", "2024-12-31")
PAGE_SIZE = 5000
LATENCY_SECONDS = 0.3
PROJECT_DIR = Path(tempfile.gettempdir()) / "optico-bench-pipeline"
PG = {
    "host": os.environ.get("TARGET_POSTGRES_HOST", "127.0.0.1"),
    "port": os.environ.get("TARGET_POSTGRES_PORT", "5432"),
    "user": os.environ.get("TARGET_POSTGRES_USER", "postgres"),
    # target-postgres insists on a password, even for a trust login.
    "password": os.environ.get("TARGET_POSTGRES_PASSWORD", "postgres"),
}
ADMIN_DB = os.environ.get("TARGET_POSTGRES_DATABASE", "postgres")
SCHEMA = "optico"  # meltano.yml's default_target_schema, and the other pipelines'
PGTZ = {"PGTZ": "UTC"}  # as meltano.yml sets in target-postgres's environment


def dsn(database: str) -> str:
    return f"postgresql://{PG['user']}:{PG['password']}@{PG['host']}:{PG['port']}/{database}"


def sql(database: str, statement: str) -> t.Any:
    import psycopg

    with psycopg.connect(dsn(database), autocommit=True) as conn:
        cursor = conn.execute(statement.encode())
        return cursor.fetchone() if cursor.description else None


def fresh_database(name: str) -> None:
    sql(ADMIN_DB, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    sql(ADMIN_DB, f'CREATE DATABASE "{name}"')


def count(database: str, table_name: str) -> int:
    return int(sql(database, f"SELECT count(*) FROM {table_name}")[0])


# --------------------------------------------------------------------------- the pipelines


def dlt_pipeline(url: str, key: str, start: str, end: str, database: str, workdir: str) -> None:
    """The dlt pipeline of the issue: rest_api source, postgres destination, defaults."""
    # dlt comes with `--group bench` only: mypy also runs without it.
    import dlt  # type: ignore[import-not-found,unused-ignore]
    from dlt.sources.rest_api import rest_api_source  # type: ignore[import-not-found,unused-ignore]

    base, path = url.rsplit("/", 1)
    source = rest_api_source(
        {
            "client": {
                "base_url": base + "/",
                "paginator": {
                    "type": "cursor",
                    "cursor_path": "nextPage",
                    "cursor_param": "page",
                },
            },
            "resources": [
                {
                    "name": "calls",
                    "endpoint": {
                        "path": path,
                        "params": {
                            "api_key": key,
                            "type": "calls",
                            "limit": PAGE_SIZE,
                            "start_date": start,
                            "end_date": end,
                        },
                        "data_selector": "results",
                    },
                }
            ],
        }
    )
    pipeline = dlt.pipeline(
        pipeline_name="optico_bench",
        destination=dlt.destinations.postgres(dsn(database)),
        dataset_name=SCHEMA,
        pipelines_dir=workdir,
    )
    pipeline.run(source)


def copy_loop(url: str, key: str, start: str, end: str, database: str) -> None:
    """requests + json + COPY, page by page: the floor of any pipeline in Python."""
    import psycopg
    import requests
    from psycopg.types.json import Jsonb

    sql_types = {bool: "boolean", int: "bigint", float: "double precision", str: "text"}
    session = requests.Session()
    params: dict[str, t.Any] = {
        "api_key": key,
        "type": "calls",
        "limit": PAGE_SIZE,
        "start_date": start,
        "end_date": end,
    }
    with psycopg.connect(dsn(database)) as conn:
        columns: list[str] = []
        page: int | None = 1
        while page:
            body = json.loads(session.get(url, params={**params, "page": page}).content)
            results = body["results"]
            if results and not columns:
                first = results[0]
                columns = list(first)
                types = [
                    "timestamp" if name == "startDate" else sql_types.get(type(value), "jsonb")
                    for name, value in first.items()
                ]
                conn.execute(f"CREATE SCHEMA {SCHEMA}".encode())
                ddl = ", ".join(f'"{c}" {s}' for c, s in zip(columns, types, strict=True))
                conn.execute(f"CREATE TABLE {SCHEMA}.calls ({ddl})".encode())
            names = ", ".join(f'"{c}"' for c in columns)
            with conn.cursor().copy(f"COPY {SCHEMA}.calls ({names}) FROM STDIN".encode()) as copy:
                for record in results:
                    copy.write_row(
                        [
                            Jsonb(v) if isinstance(v, dict | list) else v
                            for v in (record.get(c) for c in columns)
                        ]
                    )
            conn.commit()
            page = body.get("nextPage")


@dataclass
class Project:
    """A scratch copy of meltano.yml whose tap is this checkout, and its plugins."""

    directory: Path = PROJECT_DIR

    def env(self, server: Server, database: str, extra: Mapping[str, str] = {}) -> dict[str, str]:
        return child_env(
            {
                "TAP_OPTICO_API_KEY": server.api_key,
                "TAP_OPTICO_API_URL": server.url,
                "TAP_OPTICO_START_DATE": server.start,
                "TAP_OPTICO_END_DATE": server.end,
                "TAP_OPTICO__SELECT": '["calls.*"]',
                "TARGET_POSTGRES_HOST": PG["host"],
                "TARGET_POSTGRES_PORT": PG["port"],
                "TARGET_POSTGRES_USER": PG["user"],
                "TARGET_POSTGRES_PASSWORD": PG["password"],
                "TARGET_POSTGRES_DATABASE": database,
                "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
                **extra,
            }
        )

    def install(self, server: Server) -> None:
        source = (ROOT / "meltano.yml").read_text()
        project = source.replace("pip_url: -e .\n", f"pip_url: -e {ROOT}\n")
        self.directory.mkdir(exist_ok=True)
        target = self.directory / "meltano.yml"
        fresh = not target.exists() or target.read_text() != project
        target.write_text(project)
        if fresh or not (self.directory / ".meltano" / "loaders").exists():
            for kind, name in (
                ("extractor", "tap-optico"),
                ("loader", "target-postgres"),
            ):
                subprocess.run(
                    [str(BIN / "meltano"), "install", "--plugin-type", kind, name],
                    cwd=self.directory,
                    check=True,
                    env=self.env(server, ADMIN_DB),
                    stdout=subprocess.DEVNULL,
                )

    def meltano(self, *args: str) -> list[str]:
        return [str(BIN / "meltano"), *args]

    def dump(self, server: Server, what: str, plugin: str, path: Path, database: str) -> Path:
        """What Meltano hands a plugin (config or catalog), written to `path`."""
        out = subprocess.run(
            self.meltano("invoke", f"--dump={what}", plugin),
            cwd=self.directory,
            env=self.env(server, database),
            check=True,
            capture_output=True,
        ).stdout
        path.write_bytes(out)
        return path

    def executable(self, kind: str, name: str) -> str:
        return str(self.directory / ".meltano" / kind / name / "venv" / "bin" / name)


# --------------------------------------------------------------------------- the benchmark


@dataclass
class Pipeline:
    name: str
    database: str
    cmd: list[str]
    env: dict[str, str]
    cwd: Path | None = None
    table: str = f"{SCHEMA}.calls"
    stdin: Path | None = None
    stdout: Path | None = None
    before: t.Callable[[], None] | None = None
    series: Series = field(init=False)

    def __post_init__(self) -> None:
        self.series = Series(self.name)

    def once(self, expected: int | None) -> Run:
        if self.database:
            fresh_database(self.database)
        if self.before is not None:
            self.before()
        cmd = self.cmd
        if self.stdin is not None:  # still under GNU time, for the peak RSS
            cmd = ["bash", "-c", 'exec "$@" < "$0"', str(self.stdin), *cmd]
        with contextlib.ExitStack() as stack:
            out = stack.enter_context(self.stdout.open("wb")) if self.stdout else None
            result = run(cmd, env=self.env, cwd=self.cwd, stdout=out or subprocess.DEVNULL)
        if self.database and expected is not None:
            loaded = count(self.database, self.table)
            if loaded != expected:
                raise SystemExit(f"{self.name} loaded {loaded} rows, not {expected}")
        return result


MELTANO = "meltano run tap-optico target-postgres"
DLT = "dlt rest_api -> postgres, dlt defaults"
COPY = "plain requests + json + COPY, page by page"
TAP = "tap-optico > file"
TARGET = "target-postgres < file"
PIPE = "tap-optico | target-postgres, no Meltano (same settings)"


def pipelines(
    server: Server,
    project: Project,
    workdir: Path,
    tag: str,
    *,
    variants: Mapping[str, Mapping[str, str]],
    pipes: Mapping[str, str],
    halves: bool,
    skip: Sequence[str] = (),
) -> list[Pipeline]:
    """The pipelines of one data set (one sandbox), named databases `optico_<tag>_*`."""
    env = child_env({"RUNTIME__DLTHUB_TELEMETRY": "false"})
    args = [server.url, server.api_key, server.start, server.end]
    db = f"optico_{tag}"
    dlt_dir = workdir / f"dlt-{tag}"
    melt = project.meltano("run", "--full-refresh", "--no-state-update")
    melt += ["tap-optico", "target-postgres"]
    out: list[Pipeline] = [
        Pipeline(
            MELTANO,
            f"{db}_meltano",
            melt,
            project.env(server, f"{db}_meltano"),
            project.directory,
        ),
        Pipeline(
            DLT,
            f"{db}_dlt",
            [
                sys.executable,
                str(HERE),
                "--dlt",
                json.dumps([*args, f"{db}_dlt", str(dlt_dir)]),
            ],
            env,
            before=lambda: shutil.rmtree(dlt_dir, ignore_errors=True),
        ),
        Pipeline(
            COPY,
            f"{db}_copy",
            [sys.executable, str(HERE), "--copy", json.dumps([*args, f"{db}_copy"])],
            env,
        ),
    ]
    for name, extra in variants.items():
        database = f"{db}_{len(out)}"
        out.append(
            Pipeline(
                f"{MELTANO}, {name}",
                database,
                melt,
                project.env(server, database, extra),
                project.directory,
            )
        )
    tap_cfg = project.dump(server, "config", "tap-optico", workdir / f"tap-{tag}.json", db)
    catalog = project.dump(server, "catalog", "tap-optico", workdir / f"catalog-{tag}.json", db)
    tap_cmd = [project.executable("extractors", "tap-optico"), "--config", str(tap_cfg)]
    tap_cmd += ["--catalog", str(catalog)]
    messages = workdir / f"messages-{tag}.jsonl"
    for name, executable in pipes.items():
        database = f"{db}_{len(out)}"
        config = workdir / f"pipe{len(out)}-{tag}.json"
        config.write_text(
            json.dumps(
                {
                    "host": PG["host"],
                    "port": int(PG["port"]),
                    "user": PG["user"],
                    "password": PG["password"],
                    "dbname": database,
                    "default_target_schema": SCHEMA,
                }
            )
        )
        pipe = f"{shlex.join(tap_cmd)} | {shlex.quote(executable)} --config {config}"
        out.append(
            Pipeline(
                f"tap-optico | {name}, no Meltano",
                database,
                ["bash", "-o", "pipefail", "-c", pipe],
                child_env(PGTZ),
            )
        )
    out.append(Pipeline(TAP, "", tap_cmd, child_env(), stdout=messages))
    if halves:
        target = project.executable("loaders", "target-postgres")
        database = f"{db}_pipe"
        config = project.dump(server, "config", "target-postgres", workdir / "pipe.json", database)
        pipe = f"{shlex.join(tap_cmd)} | {shlex.quote(target)} --config {config}"
        out.append(
            Pipeline(PIPE, database, ["bash", "-o", "pipefail", "-c", pipe], child_env(PGTZ))
        )
        database = f"{db}_target"
        config = project.dump(
            server, "config", "target-postgres", workdir / "target.json", database
        )
        out.append(
            Pipeline(
                TARGET, database, [target, "--config", str(config)], child_env(PGTZ), stdin=messages
            )
        )
    left_out = {"dlt": {DLT}, "copy": {COPY}, "halves": {TAP, TARGET, PIPE}}
    dropped = set().union(*(left_out[name] for name in skip))
    return [item for item in out if item.name not in dropped]


def measure(
    label: str,
    items: Sequence[Pipeline],
    runs: int,
    expected: int,
    rows: list[tuple[str, ...]],
) -> dict[str, float]:
    """Warm-up (one untimed run of each, row counts checked), then interleaved rounds."""
    progress(f"{label}: warm-up, one run of each pipeline (fills the sandbox's page cache)")
    for item in items:
        item.once(expected)
    for round_ in range(1, runs + 1):
        progress(f"{label}: round {round_}/{runs}")
        for item in items:
            item.series.runs.append(item.once(expected))
    walls = {item.name: item.series.wall for item in items}
    base = walls[MELTANO]
    for item in items:
        wall = item.series.wall
        if item.name == MELTANO:
            ratio = "1.00x"
        elif item.name == TAP or item.name == TARGET:
            ratio = f"{wall / base:.0%} of the pipeline's time"
        else:
            ratio = f"{wall / base:.2f}x the pipeline's time"
        rows.append(
            (
                label,
                item.name,
                f"{wall:.1f} s",
                f"{expected / wall:,.0f}",
                ratio,
                f"{item.series.rss:.0f} MiB",
                spread(item.series),
            )
        )
    return walls


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Pipeline benchmark; see benchmarks/README.md.")
    parser.add_argument("--runs", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--latency-runs", type=int, default=3, help="rounds at 300 ms (default 3)")
    parser.add_argument("--calls", type=int, default=200_000, help="calls (default 200,000)")
    parser.add_argument("--markdown", action="store_true", help="print markdown tables")
    parser.add_argument("--no-latency", action="store_true", help="skip the 300 ms runs")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=VAR=VALUE[;VAR=VALUE]",
        help="also time the Meltano pipeline with these environment overrides",
    )
    parser.add_argument(
        "--pipe",
        action="append",
        default=[],
        metavar="NAME=EXECUTABLE",
        help="also time `tap | EXECUTABLE --config {host,port,user,password,dbname}`",
    )
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=("dlt", "copy", "halves"),
        help="leave out a pipeline (to compare variants sooner)",
    )
    parser.add_argument("--dlt", help=argparse.SUPPRESS)
    parser.add_argument("--copy", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.dlt:
        dlt_pipeline(*json.loads(args.dlt))
        return 0
    if args.copy:
        copy_loop(*json.loads(args.copy))
        return 0

    variants: dict[str, dict[str, str]] = {}
    for spec in args.variant:
        name, _, assignments = spec.partition("=")
        variants[name] = dict(a.split("=", 1) for a in assignments.split(";") if a)
    pipes = dict(spec.split("=", 1) for spec in args.pipe)
    started = time.monotonic()
    load_before = os.getloadavg()
    rows: list[tuple[str, ...]] = []
    lines = [
        f"command: uv run --group bench python benchmarks/pipeline.py "
        f"{' '.join(argv if argv is not None else sys.argv[1:])}".rstrip(),
        f"machine: {platform.machine()}, {os.cpu_count()} CPU(s), Python "
        f"{platform.python_version()}; PostgreSQL at {PG['host']}:{PG['port']}",
        f"data: {args.calls:,} calls {RANGE[0]}..{RANGE[1]}; the sandbox in its own process "
        "serves every page from its cache after the warm-up",
        f"{args.runs} interleaved rounds ({args.latency_runs} at {LATENCY_SECONDS * 1000:.0f} ms "
        "latency) after one untimed warm-up round; every figure is a median of wall times",
    ]
    goals: list[tuple[str, str, str]] = []
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="optico-pipe-")))
        project = Project()
        sets = [("none", 0.0, args.runs)]
        if not args.no_latency:
            sets.append((f"{LATENCY_SECONDS * 1000:.0f} ms", LATENCY_SECONDS, args.latency_runs))
        for label, latency, runs in sets:
            tag = "lat" if latency else "cpu"
            progress(f"sandbox: {args.calls:,} calls, latency {label}")
            with Server(args.calls, *RANGE, latency=latency) as server:
                if latency == 0:
                    progress("meltano: installing the plugins in a scratch project")
                    project.install(server)
                totals = server.warm(windows_of(*RANGE, 7), PAGE_SIZE)
                expected = sum(totals)
                items = pipelines(
                    server,
                    project,
                    workdir,
                    tag,
                    variants=variants if latency == 0 else {},
                    pipes=pipes,
                    halves=latency == 0,
                    skip=args.skip,
                )
                walls = measure(f"latency {label}", items, runs, expected, rows)
            melt = walls[MELTANO]
            if DLT in walls:
                goals.append(
                    (
                        f"latency {label}: meltano >= 1.5x faster than dlt",
                        f"{walls[DLT] / melt:.2f}x",
                        "met" if walls[DLT] / melt >= 1.5 else "NOT met",
                    )
                )
            if COPY in walls:
                goals.append(
                    (
                        f"latency {label}: meltano within 4x of the COPY loop",
                        f"{melt / walls[COPY]:.2f}x",
                        "met" if melt / walls[COPY] <= 4 else "NOT met",
                    )
                )
            if TAP in walls:
                share = walls[TAP] / melt
                goals.append(
                    (
                        f"latency {label}: tap > file <= 1/3 of the pipeline",
                        f"{share:.0%}",
                        "met" if share <= 1 / 3 else "NOT met",
                    )
                )
    lines.append(
        f"load average {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after; "
        f"total {time.monotonic() - started:.0f} s"
    )
    markdown = args.markdown
    print("\n### Settings\n" if markdown else "\nSettings")
    for line in lines:
        print(f"- {line}" if markdown else f"  {line}")
    print("\n### Pipelines\n" if markdown else "\nPipelines")
    header = (
        "API latency",
        "pipeline",
        "wall (median)",
        "calls/s",
        "ratio",
        "peak RSS",
        "runs",
    )
    print(table(rows, header, markdown))
    print("\n### Goals\n" if markdown else "\nGoals")
    print(table(goals, ("goal", "measured", "status"), markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
