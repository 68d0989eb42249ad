"""bookmarks.py against the real SDK: fails loudly if an upgrade changes its state internals.

bookmarks.py is the one module that reads and writes the SDK's state dicts by key
(partitions, progress markers, signposts). These tests run real syncs of the SDK's
own loop over a mocked API and check the STATE messages it emits, so a renamed key
or a changed promotion rule shows up here, not as a lost bookmark in production.
"""

from __future__ import annotations

import datetime as dt
import json
import typing as t

import pytest
import requests_mock

from tap_optico import bookmarks
from tap_optico.messages import BufferedWriter
from tap_optico.tap import TapOptico

URL = "https://optico.test/data-api"
ACCOUNT = {"account": "default"}


def call(day: str, n: int) -> dict[str, t.Any]:
    return {"startDate": f"{day} 1{n}:00:00", "caller": f"060000000{n}", "duration": 1}


def answer(calls: list[dict[str, t.Any]], total: int | None = None) -> dict[str, t.Any]:
    return {
        "status": "OK",
        "totalResults": len(calls) if total is None else total,
        "results": calls,
    }


def sync(
    capsys: pytest.CaptureFixture[str],
    windows: dict[str, dict[str, t.Any]],
    *,
    state: dict[str, t.Any] | None = None,
    every_record: bool = False,
) -> tuple[TapOptico, list[dict[str, t.Any]]]:
    """Sync `calls` over 2024-01-01..2024-01-04 in windows of 2 days; the STATEs emitted."""
    tap = TapOptico(
        config={
            "api_key": "secret-key",
            "api_url": URL,
            "start_date": "2024-01-01",
            "end_date": "2024-01-04",
            "window_days": 2,
            "max_concurrent_requests": 1,
        },
        state=state,
    )
    stream = tap.streams["calls"]
    tap.streams["daily_calls"].selected = False
    if every_record:
        stream.STATE_MSG_FREQUENCY = 1  # the SDK's mid-window STATE, progress markers and all
    with requests_mock.Mocker() as mock:
        for start, body in windows.items():
            mock.get(f"{URL}?start_date={start}", json=body)
        tap.sync_all()
    assert isinstance(tap.message_writer, BufferedWriter)
    tap.message_writer.flush()  # the records of an abandoned window, still in the block
    lines = capsys.readouterr().out.splitlines()
    states = [json.loads(line)["value"] for line in lines if '"type":"STATE"' in line]
    return tap, states


def partition(state: dict[str, t.Any]) -> dict[str, t.Any]:
    (found,) = [
        p for p in state["bookmarks"]["calls"][bookmarks.PARTITIONS] if p["context"] == ACCOUNT
    ]
    return t.cast("dict[str, t.Any]", found)


def test_each_window_promotes_the_bookmark_and_the_final_state_is_clean(capsys):
    _, states = sync(
        capsys,
        {
            "2024-01-01": answer([call("2024-01-02", 1), call("2024-01-01", 2)]),
            "2024-01-03": answer([call("2024-01-04", 3)]),
        },
    )
    values = [partition(s).get(bookmarks.VALUE) for s in states if "calls" in s["bookmarks"]]
    # Newest first within a window, yet each STATE holds the window's maximum, in UTC.
    assert "2024-01-02T10:00:00+00:00" in values
    assert values[-1] == "2024-01-04T12:00:00+00:00"
    final = partition(states[-1])
    assert set(final) == {"context", "replication_key", bookmarks.VALUE}
    for state in states:
        assert bookmarks.SIGNPOST not in state["bookmarks"].get("calls", {}), "no stray signpost"


def test_the_sdk_keeps_its_running_maximum_under_the_names_bookmarks_py_reads(capsys):
    _, states = sync(
        capsys,
        {"2024-01-01": answer([call("2024-01-02", 1)]), "2024-01-03": answer([])},
        every_record=True,
    )
    markers = [
        partition(s)[bookmarks.PROGRESS] for s in states if bookmarks.PROGRESS in partition(s)
    ]
    assert markers, "the SDK's mid-window STATE carries progress markers"
    assert markers[0][bookmarks.VALUE] == "2024-01-02T10:00:00+00:00"


def test_a_window_that_stays_short_is_abandoned_and_the_bookmark_stays_before_it(capsys):
    tap, states = sync(
        capsys,
        {
            "2024-01-01": answer([call("2024-01-01", 1)]),
            "2024-01-03": answer([call("2024-01-04", 2)], total=2),
        },
    )
    assert tap.has_failed("default")
    final = partition(states[-1])
    assert final[bookmarks.VALUE] == "2024-01-01T10:00:00+00:00", "not past the short window"
    assert bookmarks.PROGRESS not in final


JAN = {day: f"2024-01-0{day}T10:00:00+00:00" for day in range(1, 5)}


@pytest.mark.parametrize(
    ("state", "first_request"),
    [
        # The unpartitioned bookmark of the single-key tap before partitions.
        ({"replication_key": "start_date", "replication_key_value": JAN[3]}, "2024-01-03"),
        # Partitions written by another SDK tap, without an `account` in their context:
        # the earliest wins, so nothing is skipped.
        (
            {
                "partitions": [
                    {"context": {}, "replication_key_value": JAN[4]},
                    {"context": {"v": 1}, "replication_key_value": JAN[3]},
                ]
            },
            "2024-01-03",
        ),
        # This tap's own partition wins over anything else.
        (
            {
                "replication_key_value": JAN[1],
                "partitions": [{"context": ACCOUNT, "replication_key_value": JAN[4]}],
            },
            "2024-01-04",
        ),
    ],
)
def test_states_this_tap_did_not_write_are_read(state, first_request):
    tap = TapOptico(
        config={
            "api_key": "secret-key",
            "api_url": URL,
            "start_date": "2024-01-01",
            "end_date": "2024-01-05",
            "lookback_days": 0,
            "window_days": 1,
        },
        state={"bookmarks": {"calls": state}},
    )
    windows = tap.streams["calls"].walk.plan()["default"]  # type: ignore[attr-defined]
    assert windows[0].start == dt.date.fromisoformat(first_request)


@pytest.mark.parametrize("value", [12345, "garbage"])
def test_an_unreadable_bookmark_is_refused(value):
    state = {"bookmarks": {"calls": {"replication_key_value": value}}}
    with pytest.raises(bookmarks.StateError, match="bookmark"):
        TapOptico(
            config={"api_key": "secret-key", "api_url": URL, "start_date": "2024-01-01"},
            state=state,
        )


def test_moving_from_api_key_to_accounts_keeps_the_bookmark_under_the_same_name():
    tap = TapOptico(
        config={
            "accounts": [
                {"name": "default", "api_key": "key-of-before"},
                {"name": "new-client", "api_key": "another-key"},
            ],
            "api_url": URL,
            "start_date": "2024-01-01",
            "end_date": "2024-01-05",
            "lookback_days": 0,
            "window_days": 1,
        },
        state={"bookmarks": {"calls": {"replication_key_value": JAN[3]}}},
    )
    plan = tap.streams["calls"].walk.plan()  # type: ignore[attr-defined]
    assert plan["default"][0].start == dt.date(2024, 1, 3), "the old single key's bookmark"
    assert plan["new-client"][0].start == dt.date(2024, 1, 1), "a new account starts over"
