"""A hostile or broken Data API: no hang, no runaway memory, no key leak, no silent gap.

Each test scripts a hostile server (tests/hostile.py): a real HTTP server on
127.0.0.1 with a random port, written on the standard library, whose every answer
the test decides, down to the bytes on the wire: endless pages, redirects to another
host, error messages that quote the key, absurd totals and Retry-After values, a body
sent one byte per second, a request never answered, JSON of unexpected shapes. The
tap runs against it in this process, in a thread given a few seconds, so a hang fails
the test instead of stalling the suite; where memory, signals or the CLI's own files
matter, it runs as the real CLI (`python -m tap_optico`) in a subprocess limited to
1 GiB of address space, so a runaway allocation fails the test, not the machine.

What users expect, and every test checks: the run ends within a bounded time, either
read correctly or with exit code 1 and the error on one log line (no traceback), and
no fragment of the API key appears in any output.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import itertools
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
import typing as t
import zoneinfo
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.hostile import (
    Answer,
    HostileAPI,
    Request,
    call,
    calls_on,
    envelope,
    error,
    paged,
    raw,
)
from tests.tap_run import (
    TAP,
    TapRun,
    assert_no_key_fragment,
    distinctive_key,
    last_log_line,
    one_line_failure,
    parse_run,
    sync,
    tap_command,
)

MEMORY_LIMIT = 1 << 30  # bytes of address space for the tap
MAX_PAGES_WITHOUT_TOTAL = 1000
WINDOW = "2024-01-01..2024-01-07"
PARIS = zoneinfo.ZoneInfo("Europe/Paris")
RETRY_WARNING = re.compile(r"\|\s*WARNING\s*\|.*\bretry \d+ of \d+")


# ---------------------------------------------------------------- running the tap
@dataclass
class Outcome:
    run: TapRun
    elapsed: float  # seconds from start (or from SIGTERM, see Tap.terminate) to exit
    peak_rss_mib: float | None  # measured only for a subprocess


class Tap:
    """The tap CLI in a subprocess: address space capped, peak RSS watched, time bounded."""

    def __init__(self, command: list[str], env: dict[str, str] | None = None) -> None:
        # The limit is set in a tiny launcher that then execs the tap: same pid, no preexec_fn
        # (unsafe with the server's threads running in this process).
        launcher = (
            "import os, resource, sys; "
            f"resource.setrlimit(resource.RLIMIT_AS, ({MEMORY_LIMIT}, {MEMORY_LIMIT})); "
            "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
        )
        assert command[: len(TAP)] == TAP
        clean = {k: v for k, v in os.environ.items() if not k.startswith("TAP_OPTICO_")}
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", launcher, *command[1:]],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            encoding="utf-8",
            errors="replace",
            env={**clean, **(env or {})},
        )
        self.peak_kib = 0
        # Both pipes are drained from the start: a tap blocked on a full pipe is no hang of its own.
        self._out: list[str] = []
        self._err: list[str] = []
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        self._threads = [
            threading.Thread(target=self._watch, daemon=True),
            threading.Thread(target=self._drain, args=(self.proc.stdout, self._out), daemon=True),
            threading.Thread(target=self._drain, args=(self.proc.stderr, self._err), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _drain(pipe: t.IO[str], into: list[str]) -> None:
        # Line by line, so what is written can be waited for while the tap runs.
        for line in iter(pipe.readline, ""):
            into.append(line)

    def _watch(self) -> None:
        status = Path(f"/proc/{self.proc.pid}/status")
        while self.proc.poll() is None:
            try:
                text = status.read_text()
            except OSError:
                return
            if match := re.search(r"^VmHWM:\s+(\d+) kB", text, re.M):
                self.peak_kib = max(self.peak_kib, int(match[1]))
            time.sleep(0.02)

    def wait_for(self, predicate: t.Callable[[str, str], bool], timeout: float) -> bool:
        """Whether (stdout, stderr) so far satisfy `predicate` within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not predicate("".join(self._out), "".join(self._err)):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                return predicate("".join(self._out), "".join(self._err))
            time.sleep(0.02)
        return True

    def terminate(self) -> None:
        """Send SIGTERM; the elapsed time of finish() counts from here."""
        self.proc.send_signal(signal.SIGTERM)
        self.started = time.monotonic()

    def finish(self, timeout: float, what: str = "the tap") -> Outcome:
        """Wait for the exit; a process still running after `timeout` s fails the test."""
        hung = False
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            hung = True
        elapsed = time.monotonic() - self.started
        for thread in self._threads:
            thread.join(5)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        stdout, stderr = "".join(self._out), "".join(self._err)
        if hung:
            pytest.fail(
                f"{what} still running after {timeout:.0f} s (killed); "
                f"last log line: {last_log_line(stderr)}"
            )
        lines = stdout.splitlines()
        bad = [line for line in lines if line.startswith("{") and not _is_json(line)]
        assert not bad, f"stdout holds a broken Singer message: {bad[0][:200]}"
        return Outcome(
            parse_run(self.proc.returncode, stdout, stderr), elapsed, self.peak_kib / 1024
        )


def _is_json(line: str) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def tap(
    config: dict[str, t.Any] | str,
    *,
    catalog: dict[str, t.Any] | None,
    state: dict[str, t.Any] | str | None = None,
    timeout: float = 20,
    env: dict[str, str] | None = None,
    process: bool = False,
) -> Outcome:
    """Run the tap to its end, within `timeout` seconds.

    In this process unless `process` is set, or a file path or the environment is given.
    """
    if process or env is not None or isinstance(config, str) or isinstance(state, str):
        return Tap(tap_command(config, state=state, catalog=catalog), env=env).finish(timeout)
    runs: list[TapRun] = []
    failures: list[BaseException] = []

    def run() -> None:
        try:
            runs.append(sync(config, state=state, catalog=catalog))
        except BaseException as exc:  # a traceback the CLI would print: the test fails
            failures.append(exc)

    started = time.monotonic()
    thread = threading.Thread(target=run, name="tap-under-test", daemon=True)
    thread.start()
    thread.join(timeout)
    elapsed = time.monotonic() - started
    if thread.is_alive():
        pytest.fail(f"the tap still running after {timeout:.0f} s")
    if failures:
        raise failures[0]
    return Outcome(runs[0], elapsed, None)


def config_of(api: HostileAPI, key: str, **overrides: t.Any) -> dict[str, t.Any]:
    """The issue's reproduction settings, one window of 2024-01-01..2024-01-07."""
    return {
        "api_key": key,
        "api_url": api.url,
        "start_date": "2024-01-01",
        "end_date": "2024-01-07",
        "max_retries": 1,
        "request_timeout": 5,
        "page_size": 10,
        **overrides,
    }


def retried(run: TapRun) -> list[str]:
    return [line for line in run.stderr.splitlines() if RETRY_WARNING.search(line)]


def newest_bookmark(state: dict[str, t.Any], stream: str = "calls") -> str | None:
    """The stream's bookmark, flat or in partitions (the newest of them)."""
    entry = state.get("bookmarks", {}).get(stream, {})
    values = [entry.get("replication_key_value")]
    values += [p.get("replication_key_value") for p in entry.get("partitions", [])]
    found = [str(v) for v in values if v is not None]
    return max(found, key=instant) if found else None


def instant(value: str) -> dt.datetime:
    """A bookmark or record time as an aware UTC datetime (a naive one is read as UTC)."""
    moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc)


def utc_of(local: str, zone: zoneinfo.ZoneInfo = PARIS) -> dt.datetime:
    """The UTC instant of an API local time, fold=0."""
    return dt.datetime.fromisoformat(local).replace(tzinfo=zone).astimezone(dt.timezone.utc)


def callers(run: TapRun) -> list[str]:
    return [str(r["caller"]) for r in run.records("calls")]


@pytest.fixture
def key() -> str:
    return distinctive_key()


def serve(respond: t.Callable[[Request], Answer]) -> HostileAPI:
    return HostileAPI(respond)


# ---------------------------------------------------------------- 1. endless paging
def test_01_paging_without_total_results_stops_at_its_page_budget(key, calls_only):
    """Full pages and a next_page forever, never a total_results: bounded, then one line."""

    def respond(request: Request) -> Answer:
        rows = calls_on("2024-01-03", 10, first=(request.page - 1) * 10)
        return envelope(rows, next_page=request.page + 1)

    with serve(respond) as api:
        outcome = tap(config_of(api, key), catalog=calls_only, timeout=30)
        requests = api.requests
    one_line_failure(outcome.run, WINDOW, "total_results")
    assert len(requests) <= MAX_PAGES_WITHOUT_TOTAL + 3, "pages beyond the budget (+ read-ahead)"
    assert len(requests) >= MAX_PAGES_WITHOUT_TOTAL, "the budget is 1000 pages"
    assert_no_key_fragment(outcome.run, key)


# ---------------------------------------------------------------- 2. redirects
@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_02_a_redirect_is_never_followed_and_the_key_never_leaves(key, calls_only, status):
    with serve(lambda request: envelope([], total=0)) as other:
        target = f"http://localhost:{other.port}/data-api"

        def respond(request: Request) -> Answer:
            query = request.path.partition("?")[2]
            return raw("", status=status, Location=f"{target}?{query}")

        with serve(respond) as api:
            outcome = tap(config_of(api, key), catalog=calls_only)
            sent = api.requests
        received_elsewhere = other.requests
    assert received_elsewhere == [], "the other host received the key"
    line = one_line_failure(outcome.run, "redirect", target)
    assert len(sent) == 1, "a redirect is refused, not retried"
    for fragment in (f"{target}?", "api_key", "type=calls", "start_date=", "page="):
        assert fragment not in outcome.run.output, fragment
    assert line
    assert_no_key_fragment(outcome.run, key)


# ---------------------------------------------------------------- 3. partial key leaks
def _lower_escapes(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m[0].lower(), text)


@pytest.mark.parametrize("quoting", ["first_12_chars", "url_lowercase_escapes"])
def test_03_no_fragment_of_the_key_in_an_api_error_message(key, calls_only, quoting):
    def respond(request: Request) -> Answer:
        if quoting == "first_12_chars":
            return error(f"Invalid api key {request.params['api_key'][:12]}...", status=403)
        return error(f"Invalid request GET {_lower_escapes(request.path)}", status=400)

    with serve(respond) as api:
        outcome = tap(config_of(api, key), catalog=calls_only)
    expected = "Invalid api key" if quoting == "first_12_chars" else "Invalid request"
    one_line_failure(outcome.run, expected)
    assert_no_key_fragment(outcome.run, key)


# ---------------------------------------------------------------- 4. huge total_results
def test_04_a_huge_total_results_fails_fast_in_little_memory(key, calls_only):
    def respond(request: Request) -> Answer:
        rows = calls_on("2024-01-03", 10, first=(request.page - 1) * 10)
        return envelope(rows, total=10**30, next_page=request.page + 1)

    with serve(respond) as api:
        outcome = tap(config_of(api, key), catalog=calls_only, timeout=15, process=True)
    assert outcome.elapsed < 15
    one_line_failure(outcome.run, "total_results")
    assert "MemoryError" not in outcome.run.stderr
    assert outcome.peak_rss_mib is not None
    assert outcome.peak_rss_mib < 400, f"peak RSS {outcome.peak_rss_mib:.0f} MiB"
    assert_no_key_fragment(outcome.run, key)


# ---------------------------------------------------------------- 5. Retry-After
WAIT_MENTION = re.compile(
    r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d|\bin \d[\d.,]* ?s\b|\b\d[\d.,]* ?(s|sec|seconds?)\b"
    r"|\b\d+ ?(min|minutes?|h|hours?|days?|years?)\b|\binf",
    re.I,
)


@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize("retry_after", ["99999999", "3600", "inf"])
def test_05_a_retry_after_beyond_the_maximum_fails_fast(key, calls_only, status, retry_after):
    def respond(request: Request) -> Answer:
        return raw("", status=status, **{"Retry-After": retry_after})

    with serve(respond) as api:
        outcome = tap(config_of(api, key), catalog=calls_only, timeout=15)
    assert outcome.elapsed < 10, f"took {outcome.elapsed:.1f} s"
    line = one_line_failure(outcome.run, "Retry-After")
    assert WAIT_MENTION.search(line.split("|")[-1]), f"the line does not say when: {line}"
    assert_no_key_fragment(outcome.run, key)


def test_05_a_retry_after_http_date_is_honoured(key, calls_only):
    rows = calls_on("2024-01-03", 5)

    def respond(request: Request) -> Answer:
        if request.number == 1:
            when = email.utils.formatdate(math.ceil(time.time()) + 3, usegmt=True)
            return raw("", status=503, **{"Retry-After": when})
        return paged(rows, request.page, 10)

    with serve(respond) as api:
        outcome = tap(config_of(api, key), catalog=calls_only, timeout=20)
        requests = api.requests
    assert outcome.run.returncode == 0, last_log_line(outcome.run.stderr)
    assert len(requests) == 2
    waited = requests[1].time - requests[0].time
    assert waited >= 2.0, f"retried {waited:.2f} s after the 503, before its Retry-After date"
    assert sorted(callers(outcome.run)) == sorted(r["caller"] for r in rows)
    assert_no_key_fragment(outcome.run, key)


# ---------------------------------------------------------------- 6. SIGTERM
def _sigterm_run(
    api: HostileAPI,
    config: dict[str, t.Any],
    catalog: dict[str, t.Any],
    waiting: t.Callable[[str, str], bool],
) -> Outcome:
    """Start the tap, SIGTERM it once it is `waiting` (told by its output); it must exit in 5 s."""
    process = Tap(tap_command(config, catalog=catalog))
    try:
        assert api.wait_for(lambda requests: len(requests) >= 1, 20), "no request sent"
        assert process.wait_for(waiting, 20), "the tap never got to where it waits"
        assert process.proc.poll() is None, "the tap ended before SIGTERM"
    except BaseException:
        process.proc.kill()
        process.finish(5)
        raise
    process.terminate()
    return process.finish(5, "after SIGTERM, the tap")


def _in_backoff(stdout: str, stderr: str) -> bool:
    return RETRY_WARNING.search(stderr) is not None


def _at_its_first_request(stdout: str, stderr: str) -> bool:
    # Its windows are planned and logged just before the first request, which the API stalls.
    return "window(s) of up to" in stderr


@pytest.mark.parametrize("concurrency", [1, 3])
@pytest.mark.parametrize("where", ["backoff", "stalled_response"])
def test_06_sigterm_ends_the_run_within_seconds(key, calls_only, where, concurrency):
    if where == "backoff":
        settings: dict[str, t.Any] = {"max_retries": 3}
        waiting = _in_backoff

        def respond(request: Request) -> Answer:
            return raw("", status=503, **{"Retry-After": "60"})

    else:
        settings = {"request_timeout": 60}
        waiting = _at_its_first_request

        def respond(request: Request) -> Answer:
            return Answer(stall=True)

    with serve(respond) as api:
        config = config_of(
            api, key, end_date="2024-01-21", max_concurrent_requests=concurrency, **settings
        )
        outcome = _sigterm_run(api, config, calls_only, waiting)
    assert outcome.run.returncode != 0, "an interrupted sync reported success"
    assert_no_key_fragment(outcome.run, key)


@pytest.mark.parametrize("concurrency", [1, 3])
def test_06_sigterm_keeps_what_was_written_covered_by_the_last_state(key, calls_only, concurrency):
    first_window = calls_on("2024-01-02", 8) + calls_on("2024-01-06", 7, first=8)

    def respond(request: Request) -> Answer:
        if request.params["start_date"] == "2024-01-01":
            return paged(first_window, request.page, 10)
        return Answer(stall=True)

    def first_window_served(requests: list[Request]) -> bool:
        pages = {r.page for r in requests if r.params["start_date"] == "2024-01-01"}
        return {1, 2} <= pages and any(r.params["start_date"] == "2024-01-08" for r in requests)

    with serve(respond) as api:
        config = config_of(
            api,
            key,
            end_date="2024-01-21",
            window_days=7,
            max_concurrent_requests=concurrency,
            request_timeout=60,
        )
        process = Tap(tap_command(config, catalog=calls_only))
        try:
            assert api.wait_for(first_window_served, 20), "the second window was never requested"
            # The first window's records are out once the STATE that covers them is.
            assert process.wait_for(lambda out, err: '"replication_key_value"' in out, 20)
        except BaseException:
            process.proc.kill()
            process.finish(5)
            raise
        process.terminate()
        outcome = process.finish(5, "after SIGTERM, the tap")
    run = outcome.run
    assert run.returncode != 0, "an interrupted sync reported success"
    assert sorted(callers(run)) == sorted(c["caller"] for c in first_window)
    mark = newest_bookmark(run.state)
    assert mark is not None, "no STATE covers the completed first window"
    newest = max(utc_of(c["start_date"]) for c in first_window)
    assert instant(mark) >= newest, f"bookmark {mark} does not cover the first window"
    kinds = [m["type"] for m in run.messages if m["type"] in ("RECORD", "STATE")]
    last_state = len(kinds) - 1 - kinds[::-1].index("STATE")
    assert "RECORD" not in kinds[last_state:], "records written after the last STATE"
    assert_no_key_fragment(run, key)


# ---------------------------------------------------------------- 7. slow body
def test_07_request_timeout_bounds_a_body_sent_one_byte_per_second(key, calls_only):
    body = json.dumps(
        {"status": "OK", "total_results": 1, "results": [call("2024-01-03 10:00:00", 1)]}
    )
    assert 150 < len(body) < 400

    def respond(request: Request) -> Answer:
        return Answer(body=body.encode(), byte_delay=1.0)

    with serve(respond) as api:
        # Two attempts of 2 s each, where the whole body would take over 150 s.
        outcome = tap(config_of(api, key, request_timeout=2), catalog=calls_only, timeout=30)
    assert outcome.elapsed < 12, f"took {outcome.elapsed:.1f} s"
    line = one_line_failure(outcome.run)
    assert re.search(r"request_timeout|\b2(\.0)? ?s\b|time[ds]? ?out", line, re.I), line
    assert_no_key_fragment(outcome.run, key)


# ---------------------------------------------------------------- 8. short pages
@pytest.mark.parametrize("concurrency", [1, 3])
def test_08_pages_shorter_than_limit_are_followed_to_the_end(key, calls_only, concurrency):
    rows = calls_on("2024-01-04", 30)

    def respond(request: Request) -> Answer:
        page = request.page
        chunk = rows[(page - 1) * 5 : page * 5]
        return envelope(chunk, total=30, next_page=page + 1 if page < 6 else None)

    with serve(respond) as api:
        outcome = tap(config_of(api, key, max_concurrent_requests=concurrency), catalog=calls_only)
    assert outcome.run.returncode == 0, last_log_line(outcome.run.stderr)
    assert sorted(callers(outcome.run)) == sorted(r["caller"] for r in rows)
    assert_no_key_fragment(outcome.run, key)


# ---------------------------------------------------------------- 9. shapes
@pytest.mark.parametrize("last", [False, 0], ids=["false", "zero"])
def test_09_next_page_false_or_zero_ends_the_window(key, calls_only, last):
    rows = calls_on("2024-01-05", 15)

    def respond(request: Request) -> Answer:
        if request.page == 1:
            return envelope(rows[:10], total=15, next_page=2)
        return envelope(rows[10:], total=15, next_page=last)

    with serve(respond) as api:
        outcome = tap(config_of(api, key), catalog=calls_only)
    assert outcome.run.returncode == 0, last_log_line(outcome.run.stderr)
    assert sorted(callers(outcome.run)) == sorted(r["caller"] for r in rows)
    assert "not valid JSON" not in outcome.run.stderr
    assert_no_key_fragment(outcome.run, key)


UNEXPECTED_SHAPES = {
    "top_level_list": '[{"status": "OK", "total_results": 0, "results": []}]',
    "fractional_total": json.dumps(
        {"status": "OK", "total_results": 12.7, "results": calls_on("2024-01-02", 10)}
    ),
    "errors_object": '{"status": "ERROR", "errors": {"code": 7, "message": "Invalid api key"}}',
    "status_number": '{"status": 5, "total_results": 0, "results": []}',
}


@pytest.mark.parametrize("shape", list(UNEXPECTED_SHAPES))
def test_09_valid_json_of_an_unexpected_shape_is_called_so(key, calls_only, shape):
    with serve(lambda request: raw(UNEXPECTED_SHAPES[shape])) as api:
        outcome = tap(config_of(api, key), catalog=calls_only)
    one_line_failure(outcome.run, "unexpected")
    assert "not valid JSON" not in outcome.run.stderr
    assert_no_key_fragment(outcome.run, key)


# ---------------------------------------------------------------- 10. no silent gap
def test_10_a_next_page_that_is_not_a_number_stops_before_the_window(key, calls_only):
    rows = calls_on("2024-01-01", 20, first=0)

    def respond(request: Request) -> Answer:
        if request.page == 1:
            return envelope(rows[:10], total=20, next_page="abc")
        return envelope(rows[10:], total=20)

    with serve(respond) as api:
        outcome = tap(config_of(api, key), catalog=calls_only)
    run = outcome.run
    one_line_failure(run, WINDOW)
    assert {r["caller"] for r in rows[:10]} <= set(callers(run)), "page 1 was not written"
    mark = newest_bookmark(run.state)
    first_call = utc_of(rows[0]["start_date"])
    assert mark is None or instant(mark) < first_call, f"bookmark {mark} passes the window"
    assert_no_key_fragment(run, key)


def test_10_a_window_still_short_after_its_reread_is_not_passed(key, calls_only):
    complete = calls_on("2024-01-03", 15)
    short = calls_on("2024-01-09", 20, first=100)

    def respond(request: Request) -> Answer:
        if request.params["start_date"] == "2024-01-01":
            return paged(complete, request.page, 10)
        return paged(short, request.page, 10, total=30)  # announces 30, serves 20

    with serve(respond) as api:
        outcome = tap(config_of(api, key, end_date="2024-01-14", window_days=7), catalog=calls_only)
        requests = api.requests
    run = outcome.run
    one_line_failure(run, "2024-01-08..2024-01-14")
    assert {r["caller"] for r in complete + short} == set(callers(run))
    short_reads = [r for r in requests if r.params["start_date"] == "2024-01-08" and r.page == 1]
    # The window, its per-day counts, its first day in one page, then paged twice: bounded.
    assert len(short_reads) == 5, "the short window is read again a bounded number of times"
    mark = newest_bookmark(run.state)
    assert mark is not None, "the complete first window has no bookmark"
    assert instant(mark) >= max(utc_of(c["start_date"]) for c in complete)
    assert instant(mark) < min(utc_of(c["start_date"]) for c in short), f"{mark} passes the gap"
    assert_no_key_fragment(run, key)


# ---------------------------------------------------------------- 11. tracebacks
def test_11_results_null_is_an_empty_page(key, calls_only):
    body = '{"status": "OK", "total_results": 0, "results": null}'
    with serve(lambda request: raw(body)) as api:
        outcome = tap(config_of(api, key), catalog=calls_only)
    assert outcome.run.returncode == 0, last_log_line(outcome.run.stderr)
    assert outcome.run.records("calls") == []
    assert "Traceback" not in outcome.run.stderr
    assert_no_key_fragment(outcome.run, key)


def test_11_results_holding_non_objects_fail_in_one_line(key, calls_only):
    body = '{"status": "OK", "total_results": 2, "results": [1, "x"]}'
    with serve(lambda request: raw(body)) as api:
        outcome = tap(config_of(api, key), catalog=calls_only)
    one_line_failure(outcome.run, "unexpected")
    assert_no_key_fragment(outcome.run, key)


def test_11_an_infinite_number_becomes_null_with_a_warning(key, calls_only):
    rows = calls_on("2024-01-02", 2)
    rows[0]["revenue"] = "__HUGE__"
    body = json.dumps({"status": "OK", "total_results": 2, "results": rows})
    body = body.replace('"__HUGE__"', "1e400")
    with serve(lambda request: raw(body)) as api:
        outcome = tap(config_of(api, key), catalog=calls_only)
    run = outcome.run
    assert run.returncode == 0, last_log_line(run.stderr)
    revenue = {r["caller"]: r["revenue"] for r in run.records("calls")}
    assert revenue == {rows[0]["caller"]: None, rows[1]["caller"]: 12.5}
    warnings = [line for line in run.stderr.splitlines() if "WARNING" in line]
    assert any("revenue" in line for line in warnings), last_log_line(run.stderr)
    assert_no_key_fragment(run, key)


def test_11_json_nested_100000_deep_fails_in_one_line(key, calls_only):
    depth = 100_000
    body = '{"status": "OK", "total_results": 1, "results": ' + "[" * depth + "]" * depth + "}"
    with serve(lambda request: raw(body)) as api:
        outcome = tap(config_of(api, key), catalog=calls_only, timeout=25)
    assert outcome.elapsed < 20
    one_line_failure(outcome.run)
    assert "RecursionError" not in outcome.run.stderr
    assert_no_key_fragment(outcome.run, key)


def _flat_state(value: t.Any) -> dict[str, t.Any]:
    return {
        "bookmarks": {"calls": {"replication_key": "start_date", "replication_key_value": value}}
    }


@pytest.mark.parametrize("value", [12345, "garbage"])
def test_11_an_unreadable_bookmark_fails_before_any_request(key, calls_only, value):
    with serve(lambda request: envelope([], total=0)) as api:
        outcome = tap(config_of(api, key), catalog=calls_only, state=_flat_state(value))
        requests = api.requests
    line = one_line_failure(outcome.run)
    assert "bookmark" in line.lower() or "state" in line.lower(), line
    assert requests == []
    assert_no_key_fragment(outcome.run, key)


def test_11_a_bookmark_in_year_1_starts_at_start_date(key, calls_only):
    rows = calls_on("2024-01-02", 3)
    with serve(lambda request: paged(rows, request.page, 10)) as api:
        state = _flat_state("0001-01-01T00:00:00+00:00")
        outcome = tap(config_of(api, key), catalog=calls_only, state=state)
        requests = api.requests
    assert outcome.run.returncode == 0, last_log_line(outcome.run.stderr)
    assert requests, "nothing requested"
    assert requests[0].params["start_date"] == "2024-01-01"
    assert sorted(callers(outcome.run)) == sorted(r["caller"] for r in rows)
    assert_no_key_fragment(outcome.run, key)


BAD_FILES = {"not_json": "{'bookmarks': nope", "empty": "", "list": "[]"}


# An empty state file is a first run (the README's pipe starts with `touch state.json`).
@pytest.mark.parametrize("content", [name for name in BAD_FILES if name != "empty"])
def test_11_a_state_file_that_is_not_a_json_object_fails_before_any_request(
    key, calls_only, tmp_path, content
):
    path = tmp_path / "state.json"
    path.write_text(BAD_FILES[content])
    with serve(lambda request: envelope([], total=0)) as api:
        outcome = tap(config_of(api, key), catalog=calls_only, state=str(path))
        requests = api.requests
    one_line_failure(outcome.run, "state")
    assert requests == []
    assert_no_key_fragment(outcome.run, key)


@pytest.mark.parametrize("content", list(BAD_FILES))
def test_11_a_config_file_that_is_not_a_json_object_fails_in_one_line(
    key, calls_only, tmp_path, content
):
    path = tmp_path / "config.json"
    path.write_text(BAD_FILES[content])
    outcome = tap(str(path), catalog=calls_only)
    one_line_failure(outcome.run, "config")
    assert_no_key_fragment(outcome.run, key)


def test_11_a_bad_page_size_from_the_environment_fails_in_one_line(key, calls_only):
    with serve(lambda request: envelope([], total=0)) as api:
        env = {
            "TAP_OPTICO_API_KEY": key,
            "TAP_OPTICO_START_DATE": "2024-01-01",
            "TAP_OPTICO_END_DATE": "2024-01-07",
            "TAP_OPTICO_API_URL": api.url,
            "TAP_OPTICO_PAGE_SIZE": "abc",
        }
        outcome = tap("ENV", catalog=calls_only, env=env)
        requests = api.requests
    one_line_failure(outcome.run, "page_size")
    assert requests == []
    assert_no_key_fragment(outcome.run, key)


# ---------------------------------------------------------------- 12. one line
def test_12_an_api_message_with_newlines_is_printed_on_one_line(key, calls_only):
    message = (
        "Invalid date 2024-13-01\nTraceback (most recent call last):\n"
        '  File "/srv/optico/api.php", line 12, in handle\nFatalError: boom'
    )
    with serve(lambda request: error(message)) as api:
        outcome = tap(config_of(api, key), catalog=calls_only)
    line = one_line_failure(outcome.run, "Invalid date 2024-13-01", api_traceback_text=True)
    assert "FatalError: boom" in line, "the API's message spans several lines"
    assert not any(x.lstrip().startswith("File ") for x in outcome.run.output.splitlines())
    assert_no_key_fragment(outcome.run, key)


@pytest.mark.parametrize(
    "url",
    [
        "http://exa mple.com/data-api",
        "http://-bad-..host/data-api",
        "localhost:1234/data-api",
        "file:///etc/passwd",
    ],
    ids=["space", "dots", "no_scheme", "file"],
)
def test_11_12_an_api_url_that_is_no_http_url_is_a_setting_error(key, calls_only, url):
    """An invalid host (11), no scheme or a file:// URL (12): refused as a setting, not retried."""
    config = {
        "api_key": key,
        "api_url": url,
        "start_date": "2024-01-01",
        "end_date": "2024-01-07",
        "max_retries": 1,
        "request_timeout": 5,
    }
    outcome = tap(config, catalog=calls_only, timeout=15)
    line = one_line_failure(outcome.run, "api_url")
    assert not retried(outcome.run), "a setting error is not retried"
    assert "connection failed" not in line
    assert_no_key_fragment(outcome.run, key)


# ---------------------------------------------------------------- 13. other states, zones
BOOKMARK = "2024-02-10T00:00:00+00:00"
STATES: dict[str, dict[str, t.Any]] = {
    "partition_account_default": {"context": {"account": "default"}},
    "partition_empty_context": {"context": {}},
    "partition_unknown_context": {"context": {"api": "v1"}},
    "legacy_flat": {},
}


def _state_of(kind: str) -> dict[str, t.Any]:
    if kind == "legacy_flat":
        return _flat_state(BOOKMARK)
    partition = {
        **STATES[kind],
        "replication_key": "start_date",
        "replication_key_value": BOOKMARK,
    }
    return {"bookmarks": {"calls": {"partitions": [partition]}}}


@pytest.mark.parametrize("kind", list(STATES))
def test_13_a_state_of_another_shape_is_read(key, calls_only, kind):
    with serve(lambda request: envelope([], total=0)) as api:
        config = config_of(api, key, end_date="2024-02-20", lookback_days=3, window_days=7)
        outcome = tap(config, catalog=calls_only, state=_state_of(kind))
        requests = api.requests
    run = outcome.run
    assert run.returncode == 0, last_log_line(run.stderr)
    assert requests, "nothing requested"
    assert requests[0].params["start_date"] == "2024-02-07", "the bookmark was ignored"
    mark = newest_bookmark(run.state)
    assert mark is not None, "the bookmark was dropped from the state"
    assert instant(mark) == instant(BOOKMARK)
    assert_no_key_fragment(run, key)


def find_off_hour_change() -> tuple[str, dt.datetime, dt.datetime]:
    """A zone and two local times of one clock hour whose UTC offsets differ (fold=0).

    Scans the zones for an offset change whose wall-clock time is not on the hour
    (e.g. America/Goose_Bay changed at 00:01 until 2011). Two times that both exist
    on the clock (the API can send them) are preferred to a pair with a time skipped
    by the change.
    """
    fallback: tuple[str, dt.datetime, dt.datetime] | None = None
    for name in sorted(zoneinfo.available_timezones()):
        if name.startswith(("posix/", "right/")):
            continue
        zone = zoneinfo.ZoneInfo(name)
        start, end, step = 788_918_400, 1_893_456_000, 14 * 86_400  # 1995..2030, 2 weeks
        for moment in range(start, end, step):
            if _offset(zone, moment) == _offset(zone, moment + step):
                continue
            low, high = moment, moment + step  # bisect to the second of the change
            while high - low > 1:
                middle = (low + high) // 2
                if _offset(zone, middle) == _offset(zone, low):
                    low = middle
                else:
                    high = middle
            for x, y in _split_hour(zone, high):
                if _exists(zone, x) and _exists(zone, y):
                    return name, x, y
                fallback = fallback or (name, x, y)
        if fallback:
            return fallback
    raise AssertionError("no zone changes its offset off the hour")


def _offset(zone: zoneinfo.ZoneInfo, timestamp: int) -> dt.timedelta | None:
    return dt.datetime.fromtimestamp(timestamp, zone).utcoffset()


def _exists(zone: zoneinfo.ZoneInfo, wall: dt.datetime) -> bool:
    """The wall-clock time is shown by the zone's clocks (it is not skipped by a change)."""
    back = wall.replace(tzinfo=zone).astimezone(dt.timezone.utc).astimezone(zone)
    return back.replace(tzinfo=None) == wall


def _split_hour(zone: zoneinfo.ZoneInfo, change: int) -> list[tuple[dt.datetime, dt.datetime]]:
    """Pairs of local times of one clock hour near `change` whose fold=0 offsets differ."""
    pairs = []
    for shift in (-2, -1, 0, 1, 2):
        wall = dt.datetime.fromtimestamp(change + 3600 * shift, zone).replace(tzinfo=None)
        hour = wall.replace(minute=0, second=0, microsecond=0)
        times = [hour + dt.timedelta(minutes=m, seconds=30) for m in range(60)]
        for x, y in itertools.pairwise(times):
            if x.replace(tzinfo=zone).utcoffset() != y.replace(tzinfo=zone).utcoffset():
                pairs.append((x, y))
    return pairs


def test_13_a_zone_changing_its_offset_off_the_hour_gets_exact_utc_times(key, calls_only):
    zone_name, before, after = find_off_hour_change()
    zone = zoneinfo.ZoneInfo(zone_name)
    ten = dt.timedelta(seconds=10)
    # The first call of the hour fills any per-hour cache; the others must not use it.
    moments = [before, after, after + ten, before - ten]
    rows = [call(m.isoformat(sep=" "), n) for n, m in enumerate(moments)]

    with serve(lambda request: paged(rows, request.page, 10)) as api:
        day = before.date().isoformat()
        config = config_of(api, key, start_date=day, end_date=day, timezone=zone_name)
        outcome = tap(config, catalog=calls_only)
    run = outcome.run
    assert run.returncode == 0, last_log_line(run.stderr)
    emitted = {r["caller"]: r["start_date"] for r in run.records("calls")}
    expected = {c["caller"]: utc_of(c["start_date"], zone) for c in rows}
    assert set(emitted) == set(expected)
    wrong = {
        c: (v, expected[c].isoformat()) for c, v in emitted.items() if instant(v) != expected[c]
    }
    assert not wrong, f"{zone_name}: UTC times off (emitted, expected): {wrong}"
    assert_no_key_fragment(run, key)
