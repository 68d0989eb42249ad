"""What a user sees when the Data API misbehaves: retries, clear failures, no leaked key.

Most tests run the real CLI (tests/tap_run.py) against the sandbox with injected
faults and compare the output with the sandbox's truth and its request log. The
error mapping of responses the tap cannot provoke (its own parameters are always
valid) is tested on errors.py and client.OpticoStream with requests-mock.

Every test uses a distinctive API key and checks it appears in no output.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import random
import re
import threading
import time
import typing as t
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from optico_sandbox import Sandbox
from tap_optico import client, retries
from tap_optico.errors import (
    APIRefusedError,
    RetriesExhaustedError,
    TransientError,
    check_envelope,
)
from tap_optico.pages import Page
from tap_optico.tap import TapOptico
from tap_optico.walk import Query
from tap_optico.windows import Window
from tests import expected
from tests.tap_run import TapRun, assert_no_key, config_for, run_cli, spellings, sync

if t.TYPE_CHECKING:
    from optico_sandbox.server import RequestRecord

KEY = "d4t4_5f4dcc3b5aa765d61d8327deb882cf99"
TRACEBACK = "Traceback (most recent call last)"
MakeSandbox = Callable[..., Sandbox]

# One window of two weeks, two pages of 100: each query fails `first` times, then answers.
SMALL: dict[str, t.Any] = {
    "calls": 150,
    "start_date": "2024-01-01",
    "end_date": "2024-01-14",
    "api_key": KEY,
}
RETRY_LINE = re.compile(
    r"\| WARNING +\| [^|]+\| (\d{4}-\d\d-\d\d)\.\.(\d{4}-\d\d-\d\d) page (\d+): (.+); "
    r"retry (\d+) of (\d+) in ([\d.]+)s$"
)


# ---------------------------------------------------------------- helpers
def last_error(run: TapRun) -> str:
    lines = run.logged("ERROR")
    assert lines, run.stderr
    return lines[-1]


def truth_ids(sb: Sandbox, start: str | None = None, end: str | None = None) -> set[str]:
    """The call_id of every call the sandbox holds, computed as the tap does."""
    return expected.ids(sb.truth_calls(start, end))


def assert_records_are_the_truth(run: TapRun, sb: Sandbox) -> None:
    ids = [r["call_id"] for r in run.records("calls")]
    truth = truth_ids(sb)
    assert len(ids) == len(truth) == sb.total_calls
    assert set(ids) == truth


def query_of(record: RequestRecord) -> tuple[str, str, int]:
    return (record.params["start_date"], record.params["end_date"], int(record.params["page"]))


def retry_lines(run: TapRun) -> list[re.Match[str]]:
    return [m for line in run.stderr.splitlines() if (m := RETRY_LINE.search(line))]


# ---------------------------------------------------------------- 1. every transient fault
TRANSIENT: dict[str, str] = {
    "http500": "HTTP 500",
    "http502": "HTTP 502",
    "http503": "HTTP 503",
    "http429": "HTTP 429",
    "reset": "connection failed",
    "truncated": "not valid JSON",
    "cannot_handle": "Cannot handle request",
}


@pytest.fixture(scope="module")
def fault_runs() -> Iterator[dict[str, tuple[Sandbox, TapRun]]]:
    """One sync per fault kind, each query failing twice first; the syncs run in parallel.

    Backoff waits dominate these runs, so running them side by side keeps the module fast.
    """
    sandboxes = {kind: Sandbox(**SMALL).start() for kind in TRANSIENT}
    try:
        for kind, sb in sandboxes.items():
            sb.add_fault(kind, first=2, per="query", retry_after=1)  # type: ignore[arg-type]

        def run(kind: str) -> tuple[Sandbox, TapRun]:
            # Processes, not in-process syncs: only one of those can hold stdout at a time.
            sb = sandboxes[kind]
            config = config_for(sb, page_size=100, window_days=14, max_retries=3)
            return sb, run_cli(config, streams=["calls"])

        with ThreadPoolExecutor(len(sandboxes)) as pool:
            yield dict(zip(sandboxes, pool.map(run, sandboxes), strict=True))
    finally:
        for sb in sandboxes.values():
            sb.stop()


@pytest.mark.parametrize("kind", list(TRANSIENT))
def test_transient_fault_is_retried_and_the_sync_is_complete(
    fault_runs: dict[str, tuple[Sandbox, TapRun]], kind: str
) -> None:
    sb, run = fault_runs[kind]
    assert run.returncode == 0, run.stderr
    assert TRACEBACK not in run.stderr
    assert_records_are_the_truth(run, sb)
    assert run.bookmark() is not None
    # Each query was sent three times: two faults, then the answer that was used.
    by_query: dict[tuple[str, str, int], list[RequestRecord]] = {}
    for record in sb.requests:
        by_query.setdefault(query_of(record), []).append(record)
    assert sorted(by_query) == [("2024-01-01", "2024-01-14", 1), ("2024-01-01", "2024-01-14", 2)]
    for records in by_query.values():
        assert [r.fault for r in records] == [kind, kind, None]
        assert records[-1].status == 200
    # One WARNING per retry, naming the window, the page and the reason.
    lines = retry_lines(run)
    failed = Counter(query_of(r) for r in sb.requests if r.fault == kind)
    assert Counter((m[1], m[2], int(m[3])) for m in lines) == failed
    for match in lines:
        assert TRANSIENT[kind] in match[4], match[0]
        assert match[6] == "3"  # of max_retries
    assert sorted(int(m[5]) for m in lines) == [1, 1, 2, 2]
    # An HTML error page is never quoted.
    assert "<html" not in run.stderr
    assert "nginx" not in run.stderr
    assert_no_key(run, KEY)


def test_http429_retry_waits_at_least_retry_after(
    fault_runs: dict[str, tuple[Sandbox, TapRun]],
) -> None:
    sb, run = fault_runs["http429"]
    assert run.returncode == 0, run.stderr
    by_query: dict[tuple[str, str, int], list[RequestRecord]] = {}
    for record in sb.requests:
        by_query.setdefault(query_of(record), []).append(record)
    for records in by_query.values():
        for before, after in itertools.pairwise(records):
            assert before.status == 429
            assert after.time - before.time >= 1.0, (before, after)


# ---------------------------------------------------------------- 2. persistent failure
def test_persistent_failure_ends_with_one_clear_error_line(
    make_sandbox: MakeSandbox, calls_only: dict[str, t.Any]
) -> None:
    sb = make_sandbox(**SMALL)
    sb.add_fault("http503")
    run = sync(config_for(sb, page_size=100, window_days=14, max_retries=2), catalog=calls_only)
    assert run.returncode != 0
    assert [query_of(r) for r in sb.requests] == [("2024-01-01", "2024-01-14", 1)] * 3
    last = last_error(run)
    assert "2024-01-01..2024-01-14" in last
    assert "page 1" in last
    assert "HTTP 503" in last
    assert "still failing after 3 attempts" in last
    assert len(retry_lines(run)) == 2
    assert TRACEBACK not in run.stderr
    assert run.records("calls") == []
    assert_no_key(run, KEY)


# ---------------------------------------------------------------- 3. fatal envelopes
@pytest.mark.parametrize("error_status", [200, 401])
def test_wrong_api_key_fails_at_once(make_sandbox: MakeSandbox, error_status: int) -> None:
    wrong = "d4t4_0badc0ffee0badc0ffee0badc0ffee00"
    sb = make_sandbox(**SMALL, error_status=error_status)
    # Two windows and both streams: nothing may be sent after the refusal.
    run = sync(config_for(sb, api_key=wrong, page_size=50, window_days=7, max_retries=3))
    assert run.returncode != 0
    assert len(sb.requests) == 1
    last = last_error(run)
    assert "Invalid api key" in last
    assert TRACEBACK not in run.stderr
    assert not retry_lines(run)
    assert_no_key(run, wrong, KEY)


def test_several_error_messages_make_one_refusal_on_one_line() -> None:
    messages = [
        "Missing parameter `type`",
        "Invalid date 2024-02-30",
        "Limit must be between 10 and 5000",
    ]
    with pytest.raises(APIRefusedError) as caught:
        check_envelope("ERROR", messages)
    assert caught.value.messages == messages
    text = str(caught.value)
    assert "\n" not in text
    for message in messages:
        assert message in text
    assert text.index(messages[0]) < text.index(messages[1]) < text.index(messages[2])


def test_cannot_handle_request_alone_is_transient() -> None:
    with pytest.raises(TransientError) as caught:
        check_envelope("ERROR", ["Cannot handle request"])
    assert "Cannot handle request" in caught.value.reason


def test_cannot_handle_request_with_another_error_is_fatal() -> None:
    with pytest.raises(APIRefusedError) as caught:
        check_envelope("ERROR", ["Cannot handle request", "Invalid api key"])
    assert "Invalid api key" in str(caught.value)


def test_ok_envelope_is_read_once_without_retry(requests_mock: t.Any) -> None:
    mock = requests_mock.get(URL, json={"status": "OK", "totalResults": 7, "results": []})
    page = fetch_page()
    assert mock.call_count == 1
    assert (page.query, page.number, page.total, page.next_page) == (
        "2024-01-01..2024-01-07",
        1,
        7,
        None,
    )


# The stream's REST hooks with requests-mock: the judgement of one response, retries included.
URL = "https://optico.test/data-api"
WINDOW = Window(date(2024, 1, 1), date(2024, 1, 7))
OK_BODY = {"status": "OK", "totalResults": 0, "results": []}


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process only: shrink the backoff so retried unit tests take milliseconds."""
    monkeypatch.setattr(retries, "BACKOFF_FACTOR", 0.001)


def fetch_page(**overrides: t.Any) -> Page:
    """Page 1 of WINDOW through the calls stream's hooks, as a worker fetches it."""
    config = {
        "api_key": KEY,
        "api_url": URL,
        "start_date": "2024-01-01",
        "end_date": "2024-01-07",
        "page_size": 100,
        "max_retries": 2,
        **overrides,
    }
    stream = TapOptico(config=config).streams["calls"]
    assert isinstance(stream, client.OpticoStream)
    return stream.pages[stream.fetch(Query("default", WINDOW), 1)]


def exception_texts(exc: BaseException | None) -> Iterator[str]:
    """The text of an exception and of everything chained to it, suppressed context included.

    singer_sdk.logging.StructuredFormatter follows __context__ even after `from None`.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield f"{type(exc).__name__}: {exc}"
        exc = exc.__cause__ or exc.__context__


@pytest.mark.usefixtures("fast_backoff")
def test_refusal_envelope_is_not_retried(requests_mock: t.Any) -> None:
    messages = ["Missing parameter `type`", "Limit must be between 10 and 5000"]
    mock = requests_mock.get(URL, json={"status": "ERROR", "errors": messages})
    with pytest.raises(APIRefusedError) as caught:
        fetch_page()
    assert mock.call_count == 1
    assert "Missing parameter `type`; Limit must be between 10 and 5000" in str(caught.value)


@pytest.mark.usefixtures("fast_backoff")
def test_cannot_handle_request_is_retried_then_succeeds(requests_mock: t.Any) -> None:
    mock = requests_mock.get(
        URL,
        [
            {"json": {"status": "ERROR", "errors": ["Cannot handle request"]}},
            {"json": OK_BODY},
        ],
    )
    page = fetch_page()
    assert mock.call_count == 2
    assert page.total == 0


@pytest.mark.usefixtures("fast_backoff")
@pytest.mark.parametrize("status", [400, 403, 404])
def test_4xx_html_body_is_refused_with_its_status_only(requests_mock: t.Any, status: int) -> None:
    body = f"<html><body><h1>Forbidden</h1><p>key {KEY} is not allowed</p>nginx</body></html>"
    mock = requests_mock.get(URL, status_code=status, text=body, reason="Forbidden")
    with pytest.raises(APIRefusedError) as caught:
        fetch_page()
    assert mock.call_count == 1
    text = str(caught.value)
    assert f"HTTP {status}" in text
    for fragment in ("<", "nginx", "is not allowed", KEY, "optico.test"):
        assert fragment not in text
    for chained in exception_texts(caught.value):
        assert KEY not in chained


@pytest.mark.usefixtures("fast_backoff")
def test_4xx_envelope_quoting_the_key_is_masked(requests_mock: t.Any) -> None:
    """An API message that echoes the key (as "Invalid date <value>" echoes its value)."""
    envelope = {"status": "ERROR", "errors": [f"Invalid api key {KEY}"]}
    requests_mock.get(URL, status_code=403, json=envelope)
    with pytest.raises(APIRefusedError) as caught:
        fetch_page()
    assert "Invalid api key" in str(caught.value)
    for chained in exception_texts(caught.value):
        for spelling in spellings(KEY):
            assert spelling not in chained


@pytest.mark.usefixtures("fast_backoff")
def test_request_exception_text_and_chain_never_show_the_url(requests_mock: t.Any) -> None:
    url_with_key = f"{URL}?api_key={KEY}&type=calls"
    requests_mock.get(
        URL,
        exc=requests.ConnectionError(f"Max retries exceeded with url: {url_with_key}"),
    )
    with pytest.raises(RetriesExhaustedError) as caught:
        fetch_page(max_retries=1)
    assert "connection failed (ConnectionError)" in str(caught.value)
    assert "still failing after 2 attempts" in str(caught.value)
    for chained in exception_texts(caught.value):
        assert KEY not in chained
        assert "optico.test" not in chained


def test_backoff_starts_at_backoff_factor(
    requests_mock: t.Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Waits are 1, 2, 4 s ... (each the upper bound of its full jitter), not 2, 4, 8 s."""
    monkeypatch.setattr(random, "uniform", lambda low, high: high)
    sleeps: list[float] = []
    monkeypatch.setattr(time, "sleep", sleeps.append)  # backoff sleeps via time.sleep
    requests_mock.get(URL, [{"status_code": 500}] * 3 + [{"json": OK_BODY}])
    with caplog.at_level(logging.WARNING, logger="tap-optico"):
        fetch_page(max_retries=3)
    factor = retries.BACKOFF_FACTOR
    assert sleeps == [factor, 2 * factor, 4 * factor]
    logged = [r.getMessage().rsplit(" in ", 1)[-1] for r in caplog.records]
    assert logged == [f"{w:.1f}s" for w in sleeps]


# ---------------------------------------------------------------- 4. stuck paginator
def test_stuck_paginator_fails_clearly_within_its_page_budget(
    make_sandbox: MakeSandbox, calls_only: dict[str, t.Any]
) -> None:
    sb = make_sandbox(**{**SMALL, "calls": 200})
    sb.add_fault("stuck")
    limit = 50
    run = sync(
        config_for(sb, page_size=limit, window_days=7, max_concurrent_requests=4, max_retries=1),
        catalog=calls_only,
    )
    assert run.returncode != 0
    last = last_error(run)
    assert "total_results" in last
    assert "2024-01-01..2024-01-07" in last
    assert TRACEBACK not in run.stderr
    total = len(sb.truth_calls("2024-01-01", "2024-01-07"))
    pages = [r for r in sb.requests if r.params["start_date"] == "2024-01-01"]
    assert 0 < len(pages) <= math.ceil(total / limit) + 1
    assert_no_key(run, KEY)


# ---------------------------------------------------------------- 5. concurrency
def test_concurrent_workers_all_back_off_on_429_and_output_is_unchanged(
    make_sandbox: MakeSandbox, calls_only: dict[str, t.Any]
) -> None:
    shape = {**SMALL, "calls": 400, "end_date": "2024-01-28"}
    overrides = {"page_size": 50, "window_days": 7, "max_retries": 4}
    faulty = make_sandbox(**shape)
    faulty.add_fault("http429", first=1, per="query", retry_after=1)
    run = sync(config_for(faulty, max_concurrent_requests=4, **overrides), catalog=calls_only)
    assert run.returncode == 0, run.stderr
    assert_records_are_the_truth(run, faulty)
    log = faulty.requests
    refused = [r for r in log if r.status == 429]
    assert len(refused) == len({query_of(r) for r in log}) >= 8
    # After a 429 nothing is sent by any worker for Retry-After seconds (requests
    # already in flight when the 429 was answered arrive within `in_flight`).
    in_flight = 0.15
    for no in refused:
        early = [r for r in log if no.time + in_flight < r.time < no.time + 1.0]
        assert not early, (no, early)

    plain = make_sandbox(**shape)
    sequential = sync(config_for(plain, max_concurrent_requests=1, **overrides), catalog=calls_only)
    assert sequential.returncode == 0, sequential.stderr
    assert run.records("calls") == sequential.records("calls")
    assert run.state == sequential.state
    assert run.states == sequential.states
    assert_no_key(run, KEY)
    assert_no_key(sequential, KEY)


# ---------------------------------------------------------------- 6. key leak paths
def test_a_backoff_retry_and_giveup_lines_never_show_the_key(
    make_sandbox: MakeSandbox, calls_only: dict[str, t.Any]
) -> None:
    sb = make_sandbox(**SMALL)
    sb.add_fault("reset")
    run = sync(config_for(sb, page_size=100, window_days=14, max_retries=1), catalog=calls_only)
    assert run.returncode != 0
    assert len(retry_lines(run)) == 1
    assert "still failing after 2 attempts" in last_error(run)
    assert "api_key" not in run.stderr
    assert TRACEBACK not in run.stderr
    assert_no_key(run, KEY)


def test_b_connection_refused_error_shows_no_url(calls_only: dict[str, t.Any]) -> None:
    config = {
        "api_key": KEY,
        "api_url": "http://127.0.0.1:1/data-api",
        "start_date": "2024-01-01",
        "end_date": "2024-01-03",
        "max_retries": 1,
    }
    run = sync(config, catalog=calls_only)
    assert run.returncode != 0
    last = last_error(run)
    assert "connection failed" in last
    assert "still failing after 2 attempts" in last
    for fragment in ("127.0.0.1:1", "data-api?", "api_key", "Max retries exceeded", TRACEBACK):
        assert fragment not in run.stderr
    assert_no_key(run, KEY)


def test_c_config_error_on_the_key_does_not_echo_it(calls_only: dict[str, t.Any]) -> None:
    key = 987654321987
    config = {"api_key": key, "start_date": "2024-01-01", "api_url": "http://127.0.0.1:1/x"}
    run = sync(config, catalog=calls_only)
    assert run.returncode != 0
    assert any("api_key" in line for line in run.logged("ERROR")), run.stderr
    assert TRACEBACK not in run.stderr
    assert_no_key(run, str(key))


def test_c_config_error_on_another_setting_does_not_echo_the_key(
    calls_only: dict[str, t.Any],
) -> None:
    config = {
        "api_key": KEY,
        "start_date": "2024-01-01",
        "page_size": "lots",
        "api_url": "http://127.0.0.1:1/x",
    }
    run = sync(config, catalog=calls_only)
    assert run.returncode != 0
    assert any("page_size" in line for line in run.logged("ERROR")), run.stderr
    assert TRACEBACK not in run.stderr
    assert_no_key(run, KEY)


STRUCTURED_LOGGING = """\
version: 1
disable_existing_loggers: false
formatters:
  structured:
    (): singer_sdk.logging.StructuredFormatter
handlers:
  stderr:
    class: logging.StreamHandler
    formatter: structured
    stream: ext://sys.stderr
root:
  level: INFO
  handlers: [stderr]
"""


def test_d_structured_logs_never_show_the_key(
    make_sandbox: MakeSandbox, calls_only: dict[str, t.Any], tmp_path: Path
) -> None:
    log_config = tmp_path / "logging.yml"
    log_config.write_text(STRUCTURED_LOGGING)
    sb = make_sandbox(**SMALL)
    sb.add_fault("reset")
    run = run_cli(
        config_for(sb, page_size=100, window_days=14, max_retries=1),
        catalog=calls_only,
        env={"SINGER_SDK_LOG_CONFIG": str(log_config)},
    )
    assert run.returncode != 0
    entries = [json.loads(line) for line in run.stderr.splitlines() if line.strip()]
    assert entries, "no structured log line"
    errors_ = [e for e in entries if e["level"] == "error"]
    assert "still failing after 2 attempts" in errors_[-1]["message"]
    assert any("retry 1 of 1" in e["message"] for e in entries if e["level"] == "warning")
    assert_no_key(run, KEY)


class _KeyEchoingHandler(BaseHTTPRequestHandler):
    """A server that refuses every request and quotes the key back in its body."""

    body_kind = "envelope"

    def do_GET(self) -> None:
        key = parse_qs(urlsplit(self.path).query).get("api_key", [""])[0]
        if self.server.body_kind == "envelope":  # type: ignore[attr-defined]
            body = json.dumps({"status": "ERROR", "errors": [f"Invalid api key {key}"]})
            kind = "application/json"
        else:
            body = f"<html><body>Forbidden for key {key} at {self.path}</body></html>"
            kind = "text/html"
        data = body.encode()
        self.send_response(403)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: t.Any) -> None:
        """Silent."""


@pytest.mark.parametrize("body_kind", ["envelope", "html"])
def test_e_403_body_quoting_the_key_is_not_shown(
    calls_only: dict[str, t.Any], body_kind: str
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _KeyEchoingHandler)
    server.body_kind = body_kind  # type: ignore[attr-defined]
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        config = {
            "api_key": KEY,
            "api_url": f"http://127.0.0.1:{server.server_address[1]}/data-api",
            "start_date": "2024-01-01",
            "end_date": "2024-01-03",
            "max_retries": 1,
        }
        run = sync(config, catalog=calls_only)
    finally:
        server.shutdown()
        server.server_close()
    assert run.returncode != 0
    last = last_error(run)
    assert ("Invalid api key" if body_kind == "envelope" else "HTTP 403") in last
    assert TRACEBACK not in run.stderr
    assert_no_key(run, KEY)


@pytest.mark.parametrize("key", [KEY, "d4t4 5f4d/cc3b+5aa7%76=5d&61"], ids=["plain", "quoted"])
def test_f_debug_logs_of_urllib3_are_redacted(
    make_sandbox: MakeSandbox, calls_only: dict[str, t.Any], key: str
) -> None:
    sb = make_sandbox(**{**SMALL, "api_key": key})
    sb.add_fault("http500", first=1, per="request")
    run = run_cli(
        config_for(sb, page_size=100, window_days=14, max_retries=2),
        catalog=calls_only,
        env={"TAP_OPTICO_LOGLEVEL": "DEBUG"},
    )
    assert run.returncode == 0, run.stderr
    assert_records_are_the_truth(run, sb)
    urllib3_lines = [line for line in run.stderr.splitlines() if "urllib3.connectionpool" in line]
    requests_logged = [line for line in urllib3_lines if '"GET /data-api?' in line]
    assert len(requests_logged) == len(sb.requests) == 3
    assert all("api_key=***" in line for line in requests_logged)
    assert_no_key(run, key)
