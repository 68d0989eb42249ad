"""Running the tap, in this process (`sync`) or as its CLI (`run_cli`), and judging its output."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import secrets
import subprocess
import sys
import tempfile
import typing as t
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, quote_plus, unquote, unquote_plus

import pytest
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.logging import ConsoleFormatter

from tap_optico.errors import OpticoError
from tap_optico.messages import BufferedWriter
from tap_optico.tap import TapOptico, failure_line

TAP = [sys.executable, "-m", "tap_optico"]


@dataclass
class TapRun:
    returncode: int
    stdout: str
    stderr: str
    messages: list[dict[str, t.Any]] = field(default_factory=list)

    def records(self, stream: str = "calls") -> list[dict[str, t.Any]]:
        return [
            m["record"] for m in self.messages if m["type"] == "RECORD" and m["stream"] == stream
        ]

    @property
    def states(self) -> list[dict[str, t.Any]]:
        return [m["value"] for m in self.messages if m["type"] == "STATE"]

    @property
    def state(self) -> dict[str, t.Any]:
        return self.states[-1] if self.states else {}

    def bookmark(self, stream: str = "calls", account: str = "default") -> str | None:
        return bookmark_of(self.state, stream, account)

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def logged(self, level: str) -> list[str]:
        """The log lines of one level ("ERROR", "INFO"...), in the CLI's format."""
        return [
            line
            for line in self.stderr.splitlines()
            if line.split(" | ", 2)[1:2] == [f"{level:<8}"]
        ]


def spellings(secret: str) -> set[str]:
    """Every way a secret can show up in text: raw and URL-encoded."""
    return {secret, quote(secret, safe=""), quote_plus(secret)}


def assert_no_key(run: TapRun, *secrets: str) -> None:
    """No secret is in any line of stdout or stderr, any STATE or any RECORD."""
    assert secrets, "which key?"
    texts = {
        "stdout": run.stdout,
        "stderr": run.stderr,
        "state": json.dumps(run.states),
        "records": json.dumps([m for m in run.messages if m["type"] == "RECORD"]),
    }
    for secret in secrets:
        for spelling in spellings(secret):
            for where, text in texts.items():
                assert spelling not in text, f"the API key leaked into {where}"


def bookmark_of(
    state: dict[str, t.Any], stream: str = "calls", account: str = "default"
) -> str | None:
    """The bookmark an account resumes from: its partition's, else the unpartitioned one."""
    entry = state.get("bookmarks", {}).get(stream, {})
    for partition in entry.get("partitions", []):
        if partition.get("context") == {"account": account}:
            value = partition.get("replication_key_value")
            if value is not None:
                return str(value)
    value = entry.get("replication_key_value")
    return None if value is None else str(value)


def config_for(sandbox: t.Any, **overrides: t.Any) -> dict[str, t.Any]:
    """A config pointing at a sandbox, covering its whole date range."""
    config = {
        "api_key": sandbox.api_key,
        "api_url": sandbox.url,
        "start_date": sandbox.store.start_day.isoformat(),
        "end_date": sandbox.store.end_day.isoformat(),
    }
    config.update(overrides)
    return {k: v for k, v in config.items() if v is not None}


def catalog_for(
    streams: t.Iterable[str], replication_method: str | None = None
) -> dict[str, t.Any]:
    """The tap's catalog (what `--discover` prints) with only the given streams selected.

    `replication_method` is set on them as Meltano's `metadata:` sets it.
    """
    catalog = TapOptico(config={}, validate_config=False).catalog_dict
    wanted = set(streams)
    for entry in catalog["streams"]:
        for item in entry["metadata"]:
            if item["breadcrumb"] == []:
                item["metadata"]["selected"] = entry["tap_stream_id"] in wanted
                if replication_method is not None:
                    item["metadata"]["replication-method"] = replication_method
    return catalog


def run_cli(
    config: dict[str, t.Any],
    *,
    state: dict[str, t.Any] | None = None,
    catalog: dict[str, t.Any] | None = None,
    streams: t.Iterable[str] | None = None,
    args: t.Sequence[str] = (),
    timeout: float = 300,
    env: dict[str, str] | None = None,
) -> TapRun:
    """Run `python -m tap_optico --config ...` in a subprocess, its stdout read as Singer messages.

    For what only a process shows: exit codes, stdout framing, signals, the environment.
    """
    if streams is not None:
        catalog = catalog_for(streams)
    result = subprocess.run(
        tap_command(config, state=state, catalog=catalog, args=args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    return parse_run(result.returncode, result.stdout, result.stderr)


# Config and state files hold keys: they live in one private directory, removed at exit.
_FILES = tempfile.TemporaryDirectory(prefix="tap-optico-test-")


def _write(content: dict[str, t.Any]) -> str:
    handle, path = tempfile.mkstemp(suffix=".json", dir=_FILES.name)
    os.close(handle)
    Path(path).write_text(json.dumps(content))
    return path


def tap_command(
    config: dict[str, t.Any] | str,
    *,
    state: dict[str, t.Any] | str | None = None,
    catalog: dict[str, t.Any] | None = None,
    args: t.Sequence[str] = (),
) -> list[str]:
    """The command line run_cli runs; a str config or state is a path (or `ENV`) used as is."""
    command = [*TAP, "--config", config if isinstance(config, str) else _write(config), *args]
    if state is not None:
        command += ["--state", state if isinstance(state, str) else _write(state)]
    if catalog is not None:
        command += ["--catalog", _write(catalog)]
    return command


def parse_run(returncode: int, stdout: str, stderr: str) -> TapRun:
    """A finished run, the lines of its stdout that are JSON read as Singer messages."""
    messages = [json.loads(line) for line in stdout.splitlines() if line.strip().startswith("{")]
    return TapRun(returncode, stdout, stderr, messages)


def sync(
    config: dict[str, t.Any],
    *,
    state: dict[str, t.Any] | None = None,
    streams: t.Iterable[str] | None = None,
    catalog: dict[str, t.Any] | None = None,
    replication_method: str | None = None,
) -> TapRun:
    """Run one sync in this process, as the CLI would: exit code 1 and its one line on failure.

    `streams` and `replication_method` make its catalog (`catalog_for`). `stderr` holds
    the log lines of the run, formatted as the CLI's; a failure the CLI would print as a
    traceback propagates.
    """
    if streams is not None:
        catalog = catalog_for(streams, replication_method)
    log = io.StringIO()
    handler = logging.StreamHandler(log)
    handler.setFormatter(ConsoleFormatter())
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    returncode = 0
    try:
        with contextlib.redirect_stdout(out):
            try:
                tap = TapOptico(config=config, state=state, catalog=catalog)
                try:
                    tap.sync_all()
                    tap.report()
                finally:
                    assert isinstance(tap.message_writer, BufferedWriter)
                    tap.message_writer.flush()
            except (OpticoError, ConfigValidationError) as error:
                TapOptico.logger.error("%s", failure_line(error))
                returncode = 1
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    out.flush()
    buffer = out.buffer
    assert isinstance(buffer, io.BytesIO)
    return parse_run(returncode, buffer.getvalue().decode(), log.getvalue())


# ---------------------------------------------------------------- judging the output
def one_line_failure(run: TapRun, *words: str, api_traceback_text: bool = False) -> str:
    """Exit 1, no traceback, and one ERROR line holding every word (case-insensitive)."""
    if run.returncode != 1:
        last = last_log_line(run.stderr)
        pytest.fail(f"exit code {run.returncode}, not 1; last log line: {last}")
    if api_traceback_text:
        # The API's own text may say "Traceback"; it must not start a line of its own.
        starts = [line for line in run.output.splitlines() if line.lstrip().startswith("Trace")]
        if starts:
            pytest.fail(f"a line starts with {starts[0]!r}")
    elif "Traceback" in run.stderr:
        pytest.fail(f"a traceback: {last_log_line(run.stderr)}")
    lines = run.logged("ERROR")
    if not lines:
        pytest.fail(f"no ERROR line; last log line: {last_log_line(run.stderr)}")
    matching = [line for line in lines if all(w.lower() in line.lower() for w in words)]
    if not matching:
        pytest.fail(f"no ERROR line mentions {list(words)}; the last: {log_message(lines[-1])}")
    return matching[-1]


def last_log_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return log_message(lines[-1])[:400] if lines else "(none)"


def log_message(line: str) -> str:
    """A log line without its time, level and logger (any other line as it is)."""
    fields = line.split(" | ", 3)
    return fields[3] if len(fields) == 4 else line


def distinctive_key() -> str:
    """ "K3y&s#cr t=ü" and 24 random hex digits, each 6 of them mixing letters and digits.

    So no 6-character fragment of the key can match a timestamp, a number or an English
    word of the logs by chance.
    """
    while True:
        tail = secrets.token_hex(12)
        windows = [tail[i : i + 6] for i in range(len(tail) - 5)]
        if all(re.search("[a-f]", w) and re.search("[0-9]", w) for w in windows):
            return "K3y&s#cr t=ü" + tail


def assert_no_key_fragment(run: TapRun, key: str, size: int = 6) -> None:
    """The whole key in no spelling anywhere, and no `size` characters of it in the logs.

    Fragments are searched in stderr and in the non-RECORD lines of stdout (records hold
    hex digests that could match a hex fragment by chance), raw and percent-decoded,
    case-insensitively.
    """
    assert_no_key(run, key)
    logs = run.stderr + "\n".join(
        line for line in run.stdout.splitlines() if '"type":"RECORD"' not in line.replace(" ", "")
    )
    texts = {"as written": logs, "unquoted": unquote(logs), "unquote_plus": unquote_plus(logs)}
    for i in range(len(key) - size + 1):
        fragment = key[i : i + size].lower()
        for how, text in texts.items():
            assert fragment not in text.lower(), f"{key[i : i + size]!r} of the key leaked ({how})"


def partitions(state: dict[str, t.Any], stream: str) -> dict[str, dict[str, t.Any]]:
    entries = state.get("bookmarks", {}).get(stream, {}).get("partitions", [])
    return {p["context"]["account"]: p for p in entries}
