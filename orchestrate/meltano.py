"""One account's Meltano run: ``meltano el`` on its own state id, its JSON log read as it goes.

``meltano el`` keeps a run's catalog and state files under ``.meltano/run/elt/<state id>/``,
so runs of different accounts share one project and one system directory; ``meltano run``
would put them all in ``.meltano/run/tap-optico/`` and two at once would collide.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
import typing as t
from dataclasses import dataclass, field
from pathlib import Path

# Meltano's own words when a state id's last job is still marked running.
ALREADY_RUNNING = "pipeline is already running"
# The tap's prefix for an answer in which the API refused the request (a key, a parameter):
# running it again does not help, so it is not retried.
API_REFUSAL = "Optico API error:"
TAIL_LINES = 40
STOP_GRACE_SECONDS = 30


@dataclass
class Outcome:
    """What one ``meltano el`` did, read from its log."""

    returncode: int
    seconds: float
    records: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    tail: collections.deque[str] = field(
        default_factory=lambda: collections.deque(maxlen=TAIL_LINES)
    )

    @property
    def refused_as_running(self) -> bool:
        """Meltano refused to start: its system database says the state id is in use."""
        return any(ALREADY_RUNNING in e for e in self.errors)

    @property
    def refused_by_api(self) -> bool:
        """The API refused the account's requests (e.g. its key): a retry would fail alike."""
        return any(e.startswith(API_REFUSAL) for e in self.errors)

    @property
    def summary(self) -> str:
        """The first error, which names the cause (the tap's and Meltano's come in order)."""
        return self.errors[0] if self.errors else f"meltano exited with code {self.returncode}"

    def read(self, line: str) -> None:
        """Take one line of Meltano's JSON log: count records, keep errors and the tail."""
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            self.tail.append(line.rstrip())
            return
        text = str(event.get("event", "")).strip()
        metric = event.get("metric_info") or _metric_in(text)
        if isinstance(metric, dict):
            # The tap's SDK counters, one per stream and account, emitted as it goes.
            if metric.get("metric") == "record_count" and event.get("cmd_type") == "extractor":
                stream = str(metric.get("tags", {}).get("stream"))
                self.records[stream] = self.records.get(stream, 0) + int(metric.get("value", 0))
            return
        level = str(event.get("level", "info"))
        self.tail.append(f"{event.get('name') or 'meltano'} {level}: {text}")
        if level in ("error", "critical") and text:
            self.errors.append(text.splitlines()[0])


def _metric_in(text: str) -> t.Any:
    """The SDK's metric as text (``METRIC: {...}``), when it reached Meltano unstructured."""
    if not text.startswith("METRIC: {"):
        return None
    try:
        return json.loads(text.removeprefix("METRIC: "))
    except ValueError:
        return None


def run_el(
    command: t.Sequence[str], *, cwd: Path, env: t.Mapping[str, str], echo: t.TextIO = sys.stderr
) -> Outcome:
    """Run one ``meltano el`` to its end, echoing its log; stopped with it if interrupted.

    The pipeline (Meltano, the tap, the target) gets its own process group, and is sent
    SIGTERM if this process is interrupted (a Dagster run terminated), so the tap stops
    at a window's end and no orphan keeps loading.
    """
    started = time.monotonic()
    process = subprocess.Popen(  # noqa: S603 (the configured meltano, no shell)
        list(command),
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    outcome = Outcome(returncode=-1, seconds=0.0)
    try:
        assert process.stdout is not None
        for line in process.stdout:
            outcome.read(line)
            echo.write(line)
        outcome.returncode = process.wait()
    finally:
        if process.poll() is None:
            _stop(process)
    outcome.seconds = time.monotonic() - started
    return outcome


def _stop(process: subprocess.Popen[str]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def read_state(
    command: t.Sequence[str], *, cwd: Path, env: t.Mapping[str, str]
) -> dict[str, t.Any] | None:
    """The Singer state ``meltano state get`` prints, or None when the state id has none."""
    result = subprocess.run(  # noqa: S603 (the configured meltano, no shell)
        list(command),
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    text = result.stdout.strip()
    if result.returncode != 0 or "{" not in text:
        return None
    state = json.loads(text[text.index("{") :])
    singer = state.get("singer_state") if isinstance(state, dict) else None
    return singer if isinstance(singer, dict) else None


def bookmark(state: t.Mapping[str, t.Any] | None, stream: str, account: str) -> str | None:
    """One account's bookmark of one stream in a Singer state, if it has one."""
    entries = (state or {}).get("bookmarks", {}).get(stream, {}).get("partitions", [])
    for entry in entries:
        if entry.get("context", {}).get("account") == account:
            value = entry.get("replication_key_value")
            return None if value is None else str(value)
    return None
