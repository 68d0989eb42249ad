"""Throughput, latency and memory benchmark of tap-optico against the sandbox.

    uv run python benchmarks/bench.py [--quick] [--runs N] [--markdown] [--meltano]

See benchmarks/README.md for what each figure means and how it is measured.
Internal modes (started by the benchmark itself as subprocesses): ``--serve`` runs
the sandbox, ``--reference`` runs one of the reference loops.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import typing as t
from dataclasses import dataclass, field
from pathlib import Path

if t.TYPE_CHECKING:
    from collections.abc import Sequence

HERE = Path(__file__).resolve()
BIN = Path(sys.executable).parent
MIB = 1024 * 1024

# The data sets. Windows are cut exactly as the tap cuts them (tap_optico.windows).
CPU_RANGE = ("2024-01-01", "2024-12-31")  # 53 windows of 7 days
EMPTY_DAY = "2023-12-31"  # before every data set: one request, no record
# 100 windows of one page each: with ~1 s of start-up, 3.5x needs ~70+ pages of 300 ms.
LATENCY_RANGE = ("2024-01-01", "2025-11-30")
LATENCY_CALLS = 25_000
LATENCY_SECONDS = 0.3
RSS_CALLS = (100_000, 1_000_000)
# The same calls per day at both volumes (the range grows with them), so that pages
# are equally full and only the volume differs: 20,000 calls a week, 4 pages a window.
RSS_CALLS_PER_DAY = 20_000 / 7


def rss_range(calls: int) -> tuple[str, str]:
    first = dt.date.fromisoformat(CPU_RANGE[0])
    days = math.ceil(calls / RSS_CALLS_PER_DAY)
    return first.isoformat(), (first + dt.timedelta(days=days - 1)).isoformat()


# --------------------------------------------------------------------------- sandbox


def serve(spec: dict[str, t.Any]) -> None:
    """Serve the sandbox in this process until stdin closes (the benchmark exited).

    Only the sandbox's public API: it keeps every body it served (an LRU of 256 MiB)
    and answers a repeated query from memory, byte for byte the same, so after the
    warm-up the timed runs measure the clients, not its page generation (about 20k
    calls/s). Latency and the request log apply to every request, cached or not.
    Each line read on stdin is answered on stdout with the number of API requests
    in the sandbox's log so far.
    """
    from urllib.parse import urlsplit

    from optico_sandbox import Sandbox

    with Sandbox(**spec) as sandbox:
        print(json.dumps({"url": sandbox.url, "api_key": sandbox.api_key}), flush=True)
        path = urlsplit(sandbox.url).path
        for _line in sys.stdin:  # EOF when the benchmark closes the pipe or dies
            print(sum(1 for record in sandbox.requests if record.path == path), flush=True)


@dataclass
class Server:
    """A sandbox in its own process, so that its CPU and memory are not the client's."""

    calls: int
    start: str
    end: str
    latency: float = 0.0
    url: str = ""
    api_key: str = ""
    proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> Server:
        spec = {
            "calls": self.calls,
            "start_date": self.start,
            "end_date": self.end,
            "latency": self.latency,
        }
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE), "--serve", json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        assert self.proc.stdout is not None
        hello = json.loads(self.proc.stdout.readline())
        self.url, self.api_key = hello["url"], hello["api_key"]
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def requests(self) -> int:
        """API requests the sandbox received so far (asked on its stdin)."""
        assert self.proc is not None
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write("requests\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def warm(self, windows: Sequence[tuple[str, str]], page_size: int) -> list[int]:
        """Fetch every page once, as the tap asks for it: total_results of each window."""
        from concurrent.futures import ThreadPoolExecutor

        import requests

        session = requests.Session()

        def fetch(window: tuple[str, str], page: int) -> dict[str, t.Any]:
            params = query(self.api_key, page_size, window, page)
            body: dict[str, t.Any] = session.get(self.url, params=params, timeout=600).json()
            return body

        def total(body: dict[str, t.Any]) -> int:
            return int(body.get("totalResults", body.get("total_results", 0)))

        with session, ThreadPoolExecutor(8) as pool:
            totals = list(pool.map(lambda w: total(fetch(w, 1)), windows))
            rest = [
                (w, p)
                for w, n in zip(windows, totals, strict=True)
                for p in range(2, math.ceil(n / page_size) + 1)
            ]
            list(pool.map(lambda wp: fetch(*wp), rest))
        return totals


def query(api_key: str, page_size: int, window: tuple[str, str], page: int) -> dict[str, t.Any]:
    """A page's query, its parameters in the tap's order (the sandbox caches per query)."""
    return {
        "api_key": api_key,
        "type": "calls",
        "limit": page_size,
        "start_date": window[0],
        "end_date": window[1],
        "page": page,
    }


# --------------------------------------------------------------------------- reference loops


def reference(
    kind: str, url: str, api_key: str, page_size: int, windows: Sequence[tuple[str, str]]
) -> None:
    """The reference: requests, decode the page, one JSON line per record to stdout.

    Written through a 64 KiB buffer whatever PYTHONUNBUFFERED says (Meltano sets it;
    the tap buffers its own output for the same reason).
    """
    import requests

    session = requests.Session()
    if kind == "msgspec":
        import msgspec

        decode = msgspec.json.decode
        encode = msgspec.json.Encoder().encode
        out = open(sys.stdout.fileno(), "wb", buffering=1 << 16, closefd=False)  # noqa: SIM115
        for window in windows:
            page: int | None = 1
            while page:
                response = session.get(url, params=query(api_key, page_size, window, page))
                body = decode(response.content)
                for record in body["results"]:
                    out.write(encode(record) + b"\n")
                page = body.get("nextPage", body.get("next_page"))
        out.flush()
    else:
        text = open(sys.stdout.fileno(), "w", buffering=1 << 16, closefd=False)  # noqa: SIM115
        loads, dumps, write = json.loads, json.dumps, text.write
        for window in windows:
            page = 1
            while page:
                response = session.get(url, params=query(api_key, page_size, window, page))
                body = loads(response.content)
                for record in body["results"]:
                    write(dumps(record) + "\n")
                page = body.get("nextPage", body.get("next_page"))
        text.flush()


# --------------------------------------------------------------------------- running things


@dataclass
class Run:
    wall: float
    rss_mib: float
    requests: int | None = None


@dataclass
class Series:
    """The runs of one variant."""

    name: str
    runs: list[Run] = field(default_factory=list)

    @property
    def walls(self) -> list[float]:
        return [run.wall for run in self.runs]

    @property
    def wall(self) -> float:
        return statistics.median(self.walls)

    @property
    def rss(self) -> float:
        return statistics.median(run.rss_mib for run in self.runs)

    @property
    def requests(self) -> int | None:
        counts = {run.requests for run in self.runs}
        return max(c for c in counts if c is not None) if counts - {None} else None


# Children cache their bytecode like any installed program. This repository's
# environment sets PYTHONDONTWRITEBYTECODE=1 and uv installs without .pyc files, so
# without a cache every process would compile its imports from source again (about
# 1 s for the SDK on this machine): start-up, not throughput.
PYCACHE = Path(tempfile.gettempdir()) / "optico-bench-pycache"


# The tap's code under test: a snapshot taken when the benchmark starts (see snapshot()),
# first on the children's import path, so edits made meanwhile do not reach them.
SNAPSHOT: list[Path] = []


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    if SNAPSHOT:
        env["PYTHONPATH"] = os.pathsep.join([str(SNAPSHOT[0]), env.get("PYTHONPATH", "")])
    return env | (extra or {})


def snapshot(workdir: Path, *, worktree: bool) -> str:
    """Copy tap_optico from HEAD (or the working tree) and describe what was copied."""
    root = HERE.parent.parent
    target = workdir / "snapshot"
    target.mkdir()
    if worktree:
        shutil.copytree(
            root / "tap_optico",
            target / "tap_optico",
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    else:
        archive = subprocess.run(
            ["git", "archive", "HEAD", "tap_optico"], cwd=root, check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    SNAPSHOT[:] = [target]
    commit = subprocess.run(
        ["git", "log", "-1", "--format=%h %s"], cwd=root, capture_output=True, text=True
    ).stdout.strip()
    return f"{'working tree' if worktree else 'HEAD'} ({commit})"


# GNU time measures the peak RSS of the command alone: wait4() from here would also
# count this process's own pages, which the child shares until it execs.
TIME = Path("/usr/bin/time")


def run(
    cmd: Sequence[str],
    *,
    stdout: int | t.IO[t.Any] = subprocess.DEVNULL,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    check: bool = True,
) -> Run:
    """Run a process from start to exit: its wall time and peak RSS."""
    with tempfile.NamedTemporaryFile() as err, tempfile.NamedTemporaryFile("r") as peak:
        timed = [str(TIME), "-q", "-f", "%M", "-o", peak.name, *cmd] if TIME.exists() else cmd
        started = time.perf_counter()
        proc = subprocess.Popen(timed, stdout=stdout, stderr=err, env=env or child_env(), cwd=cwd)
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        if check and proc.returncode:
            err.seek(0)
            tail = err.read().decode(errors="replace")[-3000:]
            raise SystemExit(f"{' '.join(cmd)} exited with {proc.returncode}:\n{tail}")
        kib = int(peak.read().strip() or 0) if TIME.exists() else usage.ru_maxrss
    return Run(wall=wall, rss_mib=kib * 1024 / MIB)


def counted(server: Server, cmd: Sequence[str], **kwargs: t.Any) -> Run:
    """Run, and count the API requests the sandbox received meanwhile."""
    before = server.requests()
    result = run(cmd, **kwargs)
    result.requests = server.requests() - before
    return result


@dataclass
class Tap:
    """Writes the tap's config and catalog files once."""

    workdir: Path
    executable: str = field(default_factory=lambda: str(BIN / "tap-optico"))
    catalog: Path | None = None

    def config(self, name: str, server: Server, start: str, end: str, **extra: t.Any) -> Path:
        path = self.workdir / f"{name}.json"
        config = {"api_key": server.api_key, "api_url": server.url}
        config |= {"start_date": start, "end_date": end, **extra}
        path.write_text(json.dumps(config))
        if self.catalog is None:
            self.catalog = self.workdir / "catalog.json"
            found = subprocess.run(
                [self.executable, "--config", str(path), "--discover"],
                check=True,
                capture_output=True,
                env=child_env(),
            )
            catalog = json.loads(found.stdout)
            for stream in catalog["streams"]:
                for entry in stream["metadata"]:
                    if entry["breadcrumb"] == []:
                        entry["metadata"]["selected"] = stream["tap_stream_id"] == "calls"
            self.catalog.write_text(json.dumps(catalog))
        return path

    def cmd(self, config: Path) -> list[str]:
        assert self.catalog is not None
        return [self.executable, "--config", str(config), "--catalog", str(self.catalog)]


def reference_cmd(
    kind: str, server: Server, page_size: int, windows: Sequence[tuple[str, str]]
) -> list[str]:
    return [
        sys.executable,
        str(HERE),
        "--reference",
        kind,
        "--url",
        server.url,
        "--key",
        server.api_key,
        "--page-size",
        str(page_size),
        "--windows",
        json.dumps(windows),
    ]


def count_records(cmd: Sequence[str]) -> int:
    """Run the tap once with stdout piped here: the number of RECORD messages."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=child_env())
    assert proc.stdout is not None
    records = sum(1 for line in proc.stdout if line.startswith(b'{"type":"RECORD"'))
    if proc.wait():
        raise SystemExit(f"{' '.join(cmd)} exited with {proc.returncode}")
    return records


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- report


@dataclass
class Row:
    figure: str
    value: str
    detail: str = ""


@dataclass
class Goal:
    name: str
    measured: str
    met: bool | None


def table(rows: Sequence[Sequence[str]], header: Sequence[str], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def spread(series: Series) -> str:
    walls = series.walls
    if len(walls) == 1:
        return f"1 run: {walls[0]:.2f} s"
    return f"{len(walls)} runs: {min(walls):.2f}..{max(walls):.2f} s"


# --------------------------------------------------------------------------- main


def windows_of(start: str, end: str, days: int) -> list[tuple[str, str]]:
    from tap_optico.windows import cut

    first, last = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    return [(w.start.isoformat(), w.end.isoformat()) for w in cut(first, last, days)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Benchmark tap-optico against the sandbox; see benchmarks/README.md."
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="about 2 minutes: 3 rounds of 50k calls, 1 latency round, no RSS runs",
    )
    parser.add_argument("--runs", type=int, help="interleaved rounds (default 5, quick 3)")
    parser.add_argument("--calls", type=int, help="calls of the CPU-bound data set (200k)")
    parser.add_argument("--markdown", action="store_true", help="print markdown tables")
    parser.add_argument(
        "--meltano",
        action="store_true",
        help="also time `meltano run tap-optico target-postgres` (PostgreSQL on 127.0.0.1)",
    )
    parser.add_argument("--no-rss", action="store_true", help="skip the peak RSS runs")
    parser.add_argument(
        "--worktree",
        action="store_true",
        help="measure the working tree's tap_optico, not HEAD's (a snapshot either way)",
    )
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--reference", choices=("stdlib", "msgspec"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    parser.add_argument("--page-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--windows", help=argparse.SUPPRESS)
    parser.add_argument("--sdk-floor", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sdk_floor is not None:
        sdk_floor(args.sdk_floor)
        return 0
    if args.serve:
        serve(json.loads(args.serve))
        return 0
    if args.reference:
        windows = [(str(w[0]), str(w[1])) for w in json.loads(args.windows)]
        reference(args.reference, args.url, args.key, args.page_size, windows)
        return 0
    return benchmark(args)


STDLIB = "reference loop, stdlib json"
MSGSPEC = "reference loop, msgspec"
TAP = "tap-optico > /dev/null"
FLOOR = "SDK floor: a stream yielding ready-made records, no HTTP"


def sdk_floor(records: int) -> None:
    """The SDK's own per-record cost, with every public speed-up the tap uses.

    A stream of the tap's `calls` schema yields the same finished record `records`
    times: no HTTP, no decoding, no coercion; conformance off, the tap's buffered
    msgspec writer. What this costs per record, the tap cannot go below through the
    SDK's record path.
    """
    from singer_sdk import Stream
    from singer_sdk import Tap as SDKTap
    from singer_sdk.helpers.conform import TypeConformanceLevel

    from tap_optico.messages import BufferedWriter
    from tap_optico.streams import CallsStream

    sample = {
        "call_id": "565fe7ddca4cd3c292ef13dad8a110a9",
        "start_date": "2024-03-31T08:30:00+00:00",
        "caller": "0612345678",
        "tracking_number": "0970000001",
        "phone": "0472123456",
        "trigger_type": "1",
        "source": "Google",
        "url": "https://www.plomberie-dupont.fr/debouchage-canalisation",
        "referer": "www.google.fr",
        "keyword": "plombier pas cher",
        "call_path": "https://www.plomberie-dupont.fr/\nhttps://www.plomberie-dupont.fr/tarifs",
        "status": "succès",
        "keypad": "",
        "client_data": "agence=paris",
        "visit_id": "301fabffacfb221394bbbf1f",
        "duration": 95,
        "revenue": 12.5,
        "is_redirect": False,
        "expired_redirect": False,
        "additional_fields": None,
    }

    class Floor(Stream):
        name = "calls"
        schema = CallsStream.schema
        primary_keys = ("call_id",)
        replication_key = "start_date"
        is_sorted = False
        TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE

        def get_records(self, context: t.Any) -> t.Iterator[dict[str, t.Any]]:
            for _ in range(records):
                yield dict(sample)

        def generate_child_contexts(self, record: t.Any, context: t.Any) -> t.Iterable[t.Any]:
            return ()

    class FloorTap(SDKTap):
        name = "sdk-floor"
        config_jsonschema: t.ClassVar[dict[str, t.Any]] = {"type": "object", "properties": {}}
        message_writer_class = BufferedWriter

        def discover_streams(self) -> list[Stream]:
            return [Floor(self)]

    FloorTap(config={}).sync_all()


def benchmark(args: argparse.Namespace) -> int:
    from tap_optico import config_schema

    page_size = config_schema.MAX_PAGE_SIZE  # the tap's default
    runs = args.runs or (3 if args.quick else 5)
    latency_runs = 1 if args.quick else min(runs, 3)
    calls = args.calls or (50_000 if args.quick else 200_000)
    days = config_schema.DEFAULT_WINDOW_DAYS
    cpu_windows = windows_of(*CPU_RANGE, days)
    lat_windows = windows_of(*LATENCY_RANGE, days)
    empty = [(EMPTY_DAY, EMPTY_DAY)]
    started = time.monotonic()
    load_before = os.getloadavg()
    rows: list[Row] = []
    goals: list[Goal] = []

    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="optico-bench-")))
        measured = snapshot(workdir, worktree=args.worktree)
        progress(f"tap_optico under test: {measured}")
        tap = Tap(workdir)
        progress(f"sandbox: {calls:,} calls {CPU_RANGE[0]}..{CPU_RANGE[1]}")
        cpu = stack.enter_context(Server(calls, *CPU_RANGE))
        progress(f"sandbox: {LATENCY_CALLS:,} calls {LATENCY_RANGE[0]}..{LATENCY_RANGE[1]}")
        lat = stack.enter_context(Server(LATENCY_CALLS, *LATENCY_RANGE, latency=LATENCY_SECONDS))
        cpu_cfg = tap.config("cpu", cpu, *CPU_RANGE)
        empty_cfg = tap.config("empty", cpu, EMPTY_DAY, EMPTY_DAY)
        sequential = "sequential (max_concurrent_requests=1)"
        default = f"default (max_concurrent_requests={config_schema.DEFAULT_CONCURRENCY})"
        four = "max_concurrent_requests=4"
        lat_cfgs = {
            sequential: tap.config("lat1", lat, *LATENCY_RANGE, max_concurrent_requests=1),
            default: tap.config("lat_default", lat, *LATENCY_RANGE),
            four: tap.config("lat4", lat, *LATENCY_RANGE, max_concurrent_requests=4),
        }

        # Warm-up, not timed: the sandboxes build and cache every page, and one tap
        # run is checked to emit exactly the sandbox's calls.
        progress("warm-up: the sandboxes build every page; the tap's output is checked")
        cpu_totals = cpu.warm(cpu_windows, page_size)
        lat_totals = lat.warm(lat_windows, page_size)
        n_records = sum(cpu_totals)
        emitted = count_records(tap.cmd(cpu_cfg))
        if emitted != n_records:
            raise SystemExit(f"the tap emitted {emitted} records, the sandbox holds {n_records}")
        melt = Meltano(cpu) if args.meltano else None
        if melt is not None:
            progress("meltano: installing the plugins in a scratch project")
            melt.install()

        cpu_cmds = {
            STDLIB: reference_cmd("stdlib", cpu, page_size, cpu_windows),
            MSGSPEC: reference_cmd("msgspec", cpu, page_size, cpu_windows),
            TAP: tap.cmd(cpu_cfg),
            FLOOR: [sys.executable, str(HERE), "--sdk-floor", str(n_records)],
        }
        empty_cmds = {
            STDLIB: reference_cmd("stdlib", cpu, page_size, empty),
            MSGSPEC: reference_cmd("msgspec", cpu, page_size, empty),
            TAP: tap.cmd(empty_cfg),
            FLOOR: [sys.executable, str(HERE), "--sdk-floor", "0"],
        }
        cpu_series = {name: Series(name) for name in cpu_cmds}
        empty_series = {name: Series(name) for name in cpu_cmds}
        lat_series = {name: Series(name) for name in lat_cfgs}
        melt_series = Series("meltano")

        # Interleaved: every round runs every variant once, in the same order.
        for round_ in range(1, runs + 1):
            progress(f"round {round_}/{runs}")
            for name, cmd in cpu_cmds.items():
                cpu_series[name].runs.append(counted(cpu, cmd))
            for name, cmd in empty_cmds.items():
                empty_series[name].runs.append(run(cmd))
            if round_ <= latency_runs:
                for name, cfg in lat_cfgs.items():
                    lat_series[name].runs.append(counted(lat, tap.cmd(cfg)))
            if melt is not None:
                melt_series.runs.append(melt.run(*CPU_RANGE, n_records))

        # 1 and 2: CPU-bound throughput.
        net = {name: cpu_series[name].wall - empty_series[name].wall for name in cpu_cmds}
        stdlib = cpu_series[STDLIB]
        for name, series in cpu_series.items():
            rows.append(
                Row(
                    f"{name}: records/s",
                    f"{n_records / series.wall:,.0f}/s",
                    f"{stdlib.wall / series.wall:.2f}x the stdlib loop; excluding start-up "
                    f"{n_records / net[name]:,.0f}/s = {net[STDLIB] / net[name]:.2f}x; "
                    f"wall {spread(series)}; start-up+exit {empty_series[name].wall:.2f} s; "
                    f"peak RSS {series.rss:.0f} MiB",
                )
            )
        tap_series = cpu_series[TAP]
        ratio = stdlib.wall / tap_series.wall
        goals.append(
            Goal(
                "CPU-bound: tap >= 1.0x the stdlib reference loop",
                f"{ratio:.2f}x (excluding start-up {net[STDLIB] / net[TAP]:.2f}x; "
                f"msgspec loop {stdlib.wall / cpu_series[MSGSPEC].wall:.2f}x; the SDK's record "
                f"path alone {stdlib.wall / cpu_series[FLOOR].wall:.2f}x)",
                ratio >= 1.0,
            )
        )

        # 3: latency-bound; "excluding start-up" subtracts the tap's empty run.
        pages = sum(max(1, math.ceil(n / page_size)) for n in lat_totals)
        startup = empty_series[TAP].wall
        base = lat_series[sequential].wall
        speedups = {}
        for name, series in lat_series.items():
            speedups[name] = base / series.wall
            rows.append(
                Row(
                    f"latency-bound, {name}: wall",
                    f"{series.wall:.2f} s",
                    f"{speedups[name]:.2f}x sequential; excluding start-up "
                    f"{(base - startup) / (series.wall - startup):.2f}x; "
                    f"{spread(series)}; {series.requests} requests",
                )
            )
        for name, target in ((default, 2.0), (four, 3.5)):
            goals.append(
                Goal(
                    f"latency-bound: {name.split(' (')[0]} >= {target}x faster than sequential",
                    f"{speedups[name]:.2f}x",
                    speedups[name] >= target,
                )
            )

        # Requests per sync against ceil(calls / page_size) + windows, from the sandbox log.
        cpu_bound = math.ceil(n_records / page_size) + len(cpu_windows)
        lat_bound = math.ceil(sum(lat_totals) / page_size) + len(lat_windows)
        cpu_pages = sum(max(1, math.ceil(n / page_size)) for n in cpu_totals)
        over = [(tap_series.requests or 0) - cpu_bound]
        over += [(s.requests or 0) - lat_bound for s in lat_series.values()]
        rows.append(
            Row(
                "requests per sync, CPU-bound data set",
                f"{tap_series.requests}",
                f"bound ceil({n_records}/{page_size}) + {len(cpu_windows)} windows = "
                f"{cpu_bound}; pages: {cpu_pages}",
            )
        )
        rows.append(
            Row(
                "requests per sync, latency data set",
                " / ".join(str(s.requests) for s in lat_series.values()),
                f"c=1 / default / c=4; bound ceil({sum(lat_totals)}/{page_size}) + "
                f"{len(lat_windows)} windows = {lat_bound}; pages: {pages}",
            )
        )

        # 4: peak RSS, one run per volume; the sandbox in its own process, each page built once.
        if args.quick or args.no_rss:
            goals.append(
                Goal(
                    "peak RSS flat (+-10%) from 100k to 1M calls and < 120 MiB",
                    f"not run (tap at {n_records:,} calls: {tap_series.rss:.0f} MiB)",
                    None,
                )
            )
        else:
            rss: dict[int, Run] = {}
            for volume in RSS_CALLS:
                progress(f"peak RSS: the tap over {volume:,} calls (no warm-up)")
                span = rss_range(volume)
                with Server(volume, *span) as server:
                    cfg = tap.config(f"rss{volume}", server, *span)
                    rss[volume] = counted(server, tap.cmd(cfg))
                bound = math.ceil(volume / page_size) + len(windows_of(*span, days))
                over.append((rss[volume].requests or 0) - bound)
                rows.append(
                    Row(
                        f"peak RSS of the tap, {volume:,} calls",
                        f"{rss[volume].rss_mib:.1f} MiB",
                        f"1 run, {rss[volume].wall:.1f} s; {span[0]}..{span[1]}; "
                        f"{rss[volume].requests} requests (bound {bound})",
                    )
                )
            low, high = (rss[v].rss_mib for v in RSS_CALLS)
            goals.append(
                Goal(
                    "peak RSS flat (+-10%) from 100k to 1M calls and < 120 MiB",
                    f"{low:.1f} -> {high:.1f} MiB ({high / low - 1:+.1%})",
                    abs(high / low - 1) <= 0.10 and max(low, high) < 120,
                )
            )
        goals.append(
            Goal(
                "requests per sync <= ceil(calls / page_size) + windows",
                "every measured sync" if max(over) <= 0 else f"{max(over)} over at worst",
                max(over) <= 0,
            )
        )

        # 5: meltano run tap-optico target-postgres.
        if melt is not None:
            rows.append(
                Row(
                    "meltano run tap-optico target-postgres: rows/s",
                    f"{n_records / melt_series.wall:,.0f}/s",
                    f"wall {spread(melt_series)}; tap's share (tap > /dev/null wall / "
                    f"meltano wall) {tap_series.wall / melt_series.wall:.0%}",
                )
            )

    lines = [
        f"command: {shown(args)}",
        f"tap_optico measured: {measured}",
        f"machine: {platform.machine()}, {os.cpu_count()} CPU(s), Python "
        f"{platform.python_version()}, {platform.platform()}; load average "
        f"{load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after",
        f"child processes: bytecode cached in {PYCACHE} (PYTHONDONTWRITEBYTECODE dropped); "
        f"PYTHONUNBUFFERED={os.environ.get('PYTHONUNBUFFERED', '(unset)')} inherited",
        f"{runs} interleaved rounds (latency-bound: {latency_runs}); every figure is a median",
        f"CPU-bound data: {n_records:,} calls {CPU_RANGE[0]}..{CPU_RANGE[1]}, "
        f"{len(cpu_windows)} windows of {days} days, {cpu_pages} pages of up to {page_size}; "
        "the sandbox serves each page from memory after the warm-up",
        f"latency-bound data: {sum(lat_totals):,} calls {LATENCY_RANGE[0]}..{LATENCY_RANGE[1]}, "
        f"{len(lat_windows)} windows, {pages} pages; the sandbox sleeps "
        f"{LATENCY_SECONDS * 1000:.0f} ms per request",
        "records/s: records / wall time from process start to exit, interpreter start-up "
        "included; 'excluding start-up' subtracts the median wall time of the same command "
        f"over one empty day ({EMPTY_DAY}: one request, no record)",
        f"total benchmark time: {time.monotonic() - started:.0f} s",
    ]
    report(lines, rows, goals, markdown=args.markdown)
    return 0


def shown(args: argparse.Namespace) -> str:
    words = ["uv run python benchmarks/bench.py"]
    words += ["--quick"] if args.quick else []
    words += [f"--runs {args.runs}"] if args.runs else []
    words += [f"--calls {args.calls}"] if args.calls else []
    words += ["--meltano"] if args.meltano else []
    words += ["--no-rss"] if args.no_rss else []
    words += ["--worktree"] if args.worktree else []
    return " ".join(words)


def report(lines: list[str], rows: list[Row], goals: list[Goal], *, markdown: bool) -> None:
    def heading(text: str) -> None:
        print(f"\n### {text}\n" if markdown else f"\n{text}")

    heading("Settings")
    for line in lines:
        print(f"- {line}" if markdown else f"  {line}")
    heading("Results")
    cells = [(r.figure, r.value, r.detail) for r in rows]
    print(table(cells, ("figure", "median", "detail"), markdown))
    heading("Goals")
    status = {None: "n/a", True: "met", False: "NOT met"}
    cells = [(g.name, g.measured, status[g.met]) for g in goals]
    print(table(cells, ("goal", "measured", "status"), markdown))


# --------------------------------------------------------------------------- meltano

ROOT = HERE.parent.parent
MELTANO_DIR = Path(tempfile.gettempdir()) / "optico-bench-meltano"
SCHEMA = "optico_bench"


@dataclass
class Meltano:
    """`meltano run tap-optico target-postgres` from a scratch copy of meltano.yml.

    The copy installs the tap from this checkout (pip_url -e <checkout>) and keeps
    Meltano's plugin venvs and system database out of the working tree; state is
    neither read nor written (--full-refresh --no-state-update).
    """

    server: Server

    def env(self, start: str, end: str) -> dict[str, str]:
        env = child_env()
        env.update(
            TAP_OPTICO_API_KEY=self.server.api_key,
            TAP_OPTICO_API_URL=self.server.url,
            TAP_OPTICO_START_DATE=start,
            TAP_OPTICO_END_DATE=end,
            TAP_OPTICO__SELECT='["calls.*"]',
            TARGET_POSTGRES_HOST=os.environ.get("TARGET_POSTGRES_HOST", "127.0.0.1"),
            TARGET_POSTGRES_PORT=os.environ.get("TARGET_POSTGRES_PORT", "5432"),
            TARGET_POSTGRES_USER=os.environ.get("TARGET_POSTGRES_USER", "postgres"),
            TARGET_POSTGRES_DATABASE=os.environ.get("TARGET_POSTGRES_DATABASE", "postgres"),
            # target-postgres insists on a password, even for a trust login.
            TARGET_POSTGRES_PASSWORD=os.environ.get("TARGET_POSTGRES_PASSWORD", "postgres"),
            TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA=SCHEMA,
            MELTANO_SEND_ANONYMOUS_USAGE_STATS="false",
        )
        return env

    def install(self) -> None:
        source = (ROOT / "meltano.yml").read_text()
        project = source.replace("pip_url: -e .\n", f"pip_url: -e {ROOT}\n")
        MELTANO_DIR.mkdir(exist_ok=True)
        target = MELTANO_DIR / "meltano.yml"
        fresh = not target.exists() or target.read_text() != project
        target.write_text(project)
        if fresh or not (MELTANO_DIR / ".meltano" / "loaders").exists():
            for kind, name in (("extractor", "tap-optico"), ("loader", "target-postgres")):
                subprocess.run(
                    [str(BIN / "meltano"), "install", "--plugin-type", kind, name],
                    cwd=MELTANO_DIR,
                    check=True,
                    env=self.env(*CPU_RANGE),
                    stdout=subprocess.DEVNULL,
                )

    def sql(self, statement: str) -> t.Any:
        import psycopg

        env = self.env(*CPU_RANGE)
        with psycopg.connect(
            host=env["TARGET_POSTGRES_HOST"],
            port=int(env["TARGET_POSTGRES_PORT"]),
            user=env["TARGET_POSTGRES_USER"],
            password=env["TARGET_POSTGRES_PASSWORD"],
            dbname=env["TARGET_POSTGRES_DATABASE"],
            autocommit=True,
        ) as conn:
            cursor = conn.execute(statement.encode())
            return cursor.fetchone() if cursor.description else None

    def run(self, start: str, end: str, expected: int) -> Run:
        self.sql(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        cmd = [str(BIN / "meltano"), "run", "--full-refresh", "--no-state-update"]
        result = run(
            [*cmd, "tap-optico", "target-postgres"], env=self.env(start, end), cwd=MELTANO_DIR
        )
        loaded = self.sql(f"SELECT count(*) FROM {SCHEMA}.calls")[0]
        if loaded != expected:
            raise SystemExit(f"meltano loaded {loaded} rows into {SCHEMA}.calls, not {expected}")
        return result


if __name__ == "__main__":
    sys.exit(main())
