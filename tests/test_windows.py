"""Date windows, and the count check that re-reads a window once."""

from __future__ import annotations

import datetime as dt
import json
import logging
import typing as t

import pytest
import requests_mock

from tap_optico.tap import TapOptico
from tap_optico.windows import Window, cut

URL = "https://optico.test/data-api"


def test_windows_cover_the_range_in_order_without_gaps():
    windows = cut(dt.date(2024, 1, 1), dt.date(2024, 1, 20), 7)
    assert windows == [
        Window(dt.date(2024, 1, 1), dt.date(2024, 1, 7)),
        Window(dt.date(2024, 1, 8), dt.date(2024, 1, 14)),
        Window(dt.date(2024, 1, 15), dt.date(2024, 1, 20)),
    ]
    assert cut(dt.date(2024, 1, 2), dt.date(2024, 1, 1), 7) == [], "a future bookmark: nothing"
    assert cut(dt.date(2024, 2, 29), dt.date(2024, 2, 29), 30) == [
        Window(dt.date(2024, 2, 29), dt.date(2024, 2, 29))
    ]


def call(n: int) -> dict[str, object]:
    return {"startDate": f"2024-01-01 10:{n:02d}:00", "caller": f"06000000{n:02d}", "duration": 1}


def sync_one_day(
    body: dict[str, object], **config: object
) -> tuple[list[dict[str, t.Any]], int, TapOptico]:
    """The calls records of 2024-01-01 from an API answering `body`, and the requests sent."""
    tap = TapOptico(
        config={
            "api_key": "secret-key",
            "api_url": URL,
            "start_date": "2024-01-01",
            "end_date": "2024-01-01",
            **config,
        }
    )
    with requests_mock.Mocker() as mock:
        mock.get(URL, json=body)
        stream = tap.streams["calls"]
        records = [r for r in stream.get_records({"account": "default"}) if isinstance(r, dict)]
    return records, mock.call_count, tap


@pytest.mark.parametrize("concurrency", [1, 3])
def test_a_window_short_of_total_results_is_read_again_then_left_unpassed(
    caplog, capsys, concurrency
):
    short = {"status": "OK", "totalResults": 3, "results": [call(1), call(2)]}
    with caplog.at_level(logging.INFO):
        records, requests, tap = sync_one_day(short, max_concurrent_requests=concurrency)
    assert requests == 3, "the window, its per-day counts, the day in one page: not forever"
    assert len(records) == 2, "the first read is emitted; the short page is not a whole day"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        "2 rows hold 2 distinct calls but the API announced 3; re-reading" in w for w in warnings
    )
    assert tap.has_failed("default"), "the account's sync stops at the short window"
    states = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if '"STATE"' in line
    ]
    assert not any(
        "replication_key_value" in p
        for s in states
        for p in s["value"]["bookmarks"]["calls"].get("partitions", [])
    ), "the bookmark never passes a window that stays short"


def test_a_window_that_matches_total_results_is_read_once():
    full = {"status": "OK", "totalResults": 2, "results": [call(1), call(2)]}
    records, requests, _ = sync_one_day(full)
    assert requests == 1
    assert [r["caller"] for r in records] == ["0600000001", "0600000002"]
