"""Settings and states of unexpected shapes: one line, before any request, and no key.

A config or state is written by hand, templated or passed through an environment
variable: a bracket forgotten, a value in the wrong place, numbers too large for any
clock, a STATE message saved whole. Each fails in one line naming what is wrong (never
quoting a key, whatever its shape), or is read as the user evidently meant.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess
import typing as t
import unicodedata
import zoneinfo

import pytest
from singer_sdk.exceptions import ConfigValidationError

from tap_optico.config_schema import MAX_REQUEST_TIMEOUT, MAX_WINDOW_DAYS
from tap_optico.tap import TapOptico
from tests.hostile import HostileAPI, raw
from tests.tap_run import (
    TapRun,
    assert_no_key_fragment,
    config_for,
    one_line_failure,
    parse_run,
    sync,
    tap_command,
)

# Every character a config, a URL or a log line treats specially.
KEY = "Sk+9/Zq=Ab&Cd%20Ef#Gh~Ij Kl"
NUMBER_KEY = 73519846027
BASE = {"start_date": "2024-01-01", "end_date": "2024-01-07", "api_url": "http://127.0.0.1:9/x"}
CAFE = unicodedata.normalize("NFC", "Café Acme")
TIMEOUT = 60


def settings_error(caplog: pytest.LogCaptureFixture, **config: t.Any) -> TapRun:
    """Build the tap in this process; it must refuse the config. The run holds all it said."""
    with caplog.at_level(logging.DEBUG), pytest.raises(ConfigValidationError) as refused:
        TapOptico(config={**BASE, **config})
    said = "\n".join([str(refused.value), *refused.value.errors, caplog.text])
    return TapRun(1, "", said)


def no_piece_of(run: TapRun, key: str) -> None:
    """No 4 characters of the key anywhere, raw or percent-decoded, in any case."""
    assert_no_key_fragment(run, key, size=4)


# ---------------------------------------------------------------- a key in a malformed setting
SHAPES: dict[str, tuple[str, t.Any, str]] = {
    # name: (setting, value, the key it holds)
    "accounts_without_brackets": ("accounts", {"name": "acme", "api_key": KEY}, KEY),
    "accounts_a_string": ("accounts", KEY, KEY),
    "accounts_strings": ("accounts", [KEY], KEY),
    "accounts_lists": ("accounts", [["acme", KEY]], KEY),
    "accounts_nested": ("accounts", {"acme": {"api_key": KEY}}, KEY),
    "accounts_key_an_object": ("accounts", [{"name": "acme", "api_key": {"key": KEY}}], KEY),
    "accounts_key_a_list": ("accounts", [{"name": "acme", "api_key": [KEY]}], KEY),
    "accounts_a_number": ("accounts", NUMBER_KEY, str(NUMBER_KEY)),
    "accounts_key_a_number": ("accounts", [{"name": "a", "api_key": NUMBER_KEY}], str(NUMBER_KEY)),
    "api_key_a_list": ("api_key", [KEY], KEY),
    "api_key_an_object": ("api_key", {"api_key": KEY}, KEY),
    "api_key_a_number": ("api_key", NUMBER_KEY, str(NUMBER_KEY)),
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_a_secret_setting_of_a_wrong_shape_is_named_never_quoted(caplog, shape):
    setting, value, key = SHAPES[shape]
    run = settings_error(caplog, **{setting: value})
    assert f"config['{setting}']" in run.stderr, run.stderr
    no_piece_of(run, key)


def test_accounts_without_brackets_says_the_shape_expected(caplog):
    run = settings_error(caplog, accounts={"name": "acme", "api_key": KEY})
    assert 'must be a list such as [{"name": ..., "api_key": ...}]' in run.stderr, run.stderr


def _env_run(accounts: str, **env: str) -> TapRun:
    """`tap-optico --config ENV` with TAP_OPTICO_ACCOUNTS as given, and nothing else inherited."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TAP_OPTICO_")}
    settings = {
        "TAP_OPTICO_ACCOUNTS": accounts,
        "TAP_OPTICO_START_DATE": "2024-01-01",
        "TAP_OPTICO_API_URL": "http://127.0.0.1:9/data-api",
        **env,
    }
    result = subprocess.run(
        tap_command("ENV"),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**clean, **settings},
        check=False,
    )
    return parse_run(result.returncode, result.stdout, result.stderr)


ENV_SHAPES = {
    "without_brackets": json.dumps({"name": "acme", "api_key": KEY}),
    "a_json_string": json.dumps(KEY),
    "strings": json.dumps([KEY]),
    "lists": json.dumps([["acme", KEY]]),
    "key_an_object": json.dumps([{"name": "acme", "api_key": {"key": KEY}}]),
    "not_json": KEY,
    "not_json_either": f"[{{name: acme, api_key: {KEY}}}]",
}


@pytest.mark.parametrize("shape", list(ENV_SHAPES))
def test_accounts_of_a_wrong_shape_from_the_environment_fail_in_one_line(shape):
    run = _env_run(ENV_SHAPES[shape])
    one_line_failure(run, "accounts")
    assert run.messages == []
    no_piece_of(run, KEY)


def test_accounts_that_are_no_json_from_the_environment_are_called_so():
    run = _env_run(KEY)
    one_line_failure(run, "accounts from TAP_OPTICO_ACCOUNTS is not valid JSON")


# ---------------------------------------------------------------- numbers beyond any clock
@pytest.mark.parametrize(
    ("setting", "maximum"),
    [("window_days", MAX_WINDOW_DAYS), ("request_timeout", MAX_REQUEST_TIMEOUT)],
)
@pytest.mark.parametrize("value", [10**12, 10**30])
def test_an_enormous_window_or_timeout_is_a_setting_error(caplog, setting, maximum, value):
    run = settings_error(caplog, api_key=KEY, **{setting: value})
    assert f"is greater than the maximum of {maximum} in config['{setting}']" in run.stderr


def test_the_largest_window_and_timeout_are_accepted():
    config = {**BASE, "api_key": KEY, "window_days": MAX_WINDOW_DAYS}
    tap = TapOptico(config={**config, "request_timeout": MAX_REQUEST_TIMEOUT})
    assert tap.settings.window_days == MAX_WINDOW_DAYS


# ---------------------------------------------------------------- end_date in the future
def test_an_end_date_in_the_future_plans_no_window_past_today(make_sandbox, caplog):
    zone = zoneinfo.ZoneInfo("Pacific/Kiritimati")  # UTC+14: its today is often UTC's tomorrow
    today = dt.datetime.now(zone).date()
    sb = make_sandbox(calls=20)
    start = (today - dt.timedelta(days=9)).isoformat()
    config = config_for(sb, start_date=start, end_date="2099-12-31", timezone=zone.key)
    with caplog.at_level(logging.INFO):
        run = sync(config, streams=["calls"])
    assert run.returncode == 0, run.stderr[-2000:]
    last = max(dt.date.fromisoformat(r.params["end_date"]) for r in sb.requests)
    assert last in (today, dt.datetime.now(zone).date()), f"a window up to {last}"
    capped = [line for line in run.stderr.splitlines() if "2099-12-31 is after today" in line]
    assert len(capped) == 1, run.stderr[-2000:]
    assert capped[0] in run.logged("INFO"), capped


def test_a_start_date_in_the_future_syncs_nothing_and_says_so(caplog):
    run = settings_error(caplog, api_key=KEY, start_date="2099-01-01", end_date="2099-12-31")
    assert "start_date 2099-01-01 is after today" in run.stderr


# ---------------------------------------------------------------- account names
def test_select_accounts_names_are_trimmed_and_normalised_as_accounts_are(make_sandbox):
    other = "second-key-for-cafe"
    sb = make_sandbox(calls=20, accounts={other: {"calls": 15, "seed": 9}})
    nfd = unicodedata.normalize("NFD", f" {CAFE} ")
    accounts = [{"name": "main", "api_key": sb.api_key}, {"name": nfd, "api_key": other}]
    config = config_for(sb, api_key=None, accounts=accounts, select_accounts=[f"{CAFE} "])
    run = sync(config, streams=["calls"])
    assert run.returncode == 0, run.stderr[-2000:]
    assert {r["account"] for r in run.records("calls")} == {CAFE}, "not the NFC, trimmed name"
    assert {r.account for r in sb.requests} == {1}, "not only the selected account was read"


def test_two_names_that_look_the_same_are_one_name(caplog):
    accounts = [
        {"name": unicodedata.normalize("NFC", CAFE), "api_key": "first-key"},
        {"name": unicodedata.normalize("NFD", CAFE), "api_key": "second-key"},
    ]
    run = settings_error(caplog, accounts=accounts)
    assert f"accounts: the name {CAFE!r} appears more than once" in run.stderr


def test_select_accounts_empty_selects_nothing_and_is_refused(caplog):
    run = settings_error(caplog, api_key=KEY, select_accounts=[])
    assert "select_accounts is empty" in run.stderr


# ---------------------------------------------------------------- a 304
def test_a_304_is_called_not_modified_not_a_redirect():
    with HostileAPI(lambda request: raw("", status=304)) as api:
        run = sync({**BASE, "api_key": KEY, "api_url": api.url, "max_retries": 0})
        requests = api.requests
    assert run.returncode == 1
    errors = run.logged("ERROR")
    assert errors, run.stderr
    assert "HTTP 304 Not Modified" in errors[-1], errors
    assert "redirect" not in errors[-1], errors
    assert len(requests) == 1, "a 304 is not retried"
    no_piece_of(run, KEY)


# ---------------------------------------------------------------- states of unexpected shapes
def _calls(entry: t.Any) -> dict[str, t.Any]:
    return {"bookmarks": {"calls": entry}}


_PARTITION = {"context": {"account": "default"}, "replication_key": "start_date"}
STATES: dict[str, tuple[dict[str, t.Any], str]] = {
    "bookmarks_a_list": ({"bookmarks": [{"calls": {}}]}, "bookmarks is a list, not an object"),
    "bookmarks_null": ({"bookmarks": None}, "bookmarks is null, not an object"),
    "stream_a_list": (_calls([]), "bookmarks.calls is a list, not an object"),
    "stream_a_string": (_calls("2024-01-03"), "bookmarks.calls is a string, not an object"),
    "partitions_an_object": (
        _calls({"partitions": _PARTITION}),
        "bookmarks.calls.partitions is an object, not a list",
    ),
    "partition_a_string": (
        _calls({"partitions": ["default"]}),
        "bookmarks.calls.partitions[0] is a string, not an object",
    ),
    "context_a_string": (
        _calls({"partitions": [{**_PARTITION, "context": "default"}]}),
        "bookmarks.calls.partitions[0].context is a string, not an object",
    ),
    "value_a_number": (
        _calls({"partitions": [{**_PARTITION, "replication_key_value": 20240103}]}),
        "bookmarks.calls.partitions[0].replication_key_value is a number, not a string",
    ),
    "value_an_object": (
        _calls({"replication_key_value": {"date": "2024-01-03"}}),
        "bookmarks.calls.replication_key_value is an object, not a string",
    ),
    "other_stream_a_list": (
        {"bookmarks": {"daily_calls": [1]}},
        "bookmarks.daily_calls is a list, not an object",
    ),
    "message_value_a_list": ({"type": "STATE", "value": []}, "value is a list, not an object"),
}


@pytest.mark.parametrize("shape", list(STATES))
def test_a_state_of_an_unexpected_shape_fails_naming_what_is_wrong(make_sandbox, shape):
    sb = make_sandbox(calls=20)
    state, what = STATES[shape]
    run = sync(config_for(sb), state=state)
    assert run.returncode == 1
    assert [line.rsplit(" | ", 1)[-1] for line in run.logged("ERROR")] == [
        f"the state's {what}; fix or remove the state"
    ]
    assert sb.requests == [], "a request before the state was read"


def test_a_state_holding_a_whole_state_message_is_read(make_sandbox, caplog):
    sb = make_sandbox(calls=50, start_date="2024-01-01", end_date="2024-01-31")
    value = _calls({"replication_key": "start_date", "replication_key_value": "2024-01-20"})
    message = {"type": "STATE", "value": value}
    with caplog.at_level(logging.INFO):
        run = sync(config_for(sb, lookback_days=3), state=message, streams=["calls"])
    assert run.returncode == 0, run.stderr[-2000:]
    first = min(r.params["start_date"] for r in sb.requests)
    assert first == "2024-01-17", "the STATE message's bookmark was not read"
    assert any(
        line.endswith("| the state is a whole STATE message: reading its value")
        for line in run.logged("INFO")
    ), run.stderr


@pytest.mark.parametrize("content", ["", " \n\t\n"], ids=["empty", "whitespace"])
def test_an_empty_state_file_is_a_first_run(make_sandbox, tmp_path, content):
    sb = make_sandbox(calls=20, start_date="2024-01-01", end_date="2024-01-07")
    path = tmp_path / "state.json"
    path.write_text(content)
    command = tap_command(config_for(sb), state=str(path))
    result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    run = parse_run(result.returncode, result.stdout, result.stderr)
    assert run.returncode == 0, run.stderr[-2000:]
    assert len(run.records("calls")) == 20
    assert run.state, "no STATE to save for the next run"
    assert "the state file is empty: starting without a state" in run.stderr
