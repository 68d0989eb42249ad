"""The SDK's request metrics are the same whether requests are sent ahead or one by one.

Requests sent ahead go through the SDK's own sender (`RESTStream._request`, see
client.py): if an SDK upgrade renames or changes it, the counts below differ.
"""

from __future__ import annotations

import json
import typing as t
from collections import Counter

from tests.tap_run import config_for, sync


def request_metrics(stderr: str) -> Counter[str]:
    """Each request metric with its tags (not its timing, nor the pid), counted."""
    found: Counter[str] = Counter()
    for line in stderr.splitlines():
        if "METRIC: " not in line:
            continue
        metric: dict[str, t.Any] = json.loads(line.split("METRIC: ", 1)[1])
        if not metric["metric"].startswith("http_request"):
            continue
        tags = {k: v for k, v in metric["tags"].items() if k != "pid"}
        value = metric["value"] if metric["type"] == "counter" else None
        found[json.dumps([metric["metric"], tags, value], sort_keys=True)] += 1
    return found


def test_request_metrics_are_the_same_at_every_concurrency(make_sandbox):
    sb = make_sandbox(calls=20_000, start_date="2024-01-01", end_date="2024-03-31", seed=51)
    runs = {
        concurrency: sync(config_for(sb, page_size=1000, max_concurrent_requests=concurrency))
        for concurrency in (1, 3, 16)
    }
    metrics = {concurrency: request_metrics(run.stderr) for concurrency, run in runs.items()}
    for run in runs.values():
        assert run.returncode == 0, run.stderr[-2000:]
    durations = sum(n for key, n in metrics[1].items() if "http_request_duration" in key)
    assert durations == len(sb.requests) / 3, "one duration per request sent"
    assert metrics[3] == metrics[1]
    assert metrics[16] == metrics[1]
