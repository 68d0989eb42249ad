"""Settings: invalid values fail before any request, with one clear line."""

from __future__ import annotations

import json
import subprocess

import pytest

from tap_optico.config_schema import MAX_REQUEST_TIMEOUT, MAX_WINDOW_DAYS, SCHEMA
from tests.tap_run import TAP, config_for, sync


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"page_size": 5001}, "5001 is greater than the maximum of 5000 in config['page_size']"),
        ({"page_size": 9}, "9 is less than the minimum of 10 in config['page_size']"),
        ({"start_date": "2024-02-30"}, "start_date '2024-02-30' is not a calendar date"),
        ({"end_date": "31/03/2024"}, "end_date '31/03/2024' is not a calendar date"),
        (
            {"start_date": "2024-03-01", "end_date": "2024-02-01"},
            "start_date 2024-03-01 is after end_date 2024-02-01",
        ),
        ({"timezone": "Europe/Pariss"}, "timezone 'Europe/Pariss' is not a known IANA time zone"),
        ({"api_key": None}, "set api_key (one account) or accounts (several)"),
        ({"lookback_days": -1}, "-1 is less than the minimum of 0 in config['lookback_days']"),
        ({"window_days": 0}, "0 is less than the minimum of 1 in config['window_days']"),
        (
            {"window_days": 10**12},
            f"is greater than the maximum of {MAX_WINDOW_DAYS} in config['window_days']",
        ),
        (
            {"request_timeout": 10**12},
            f"is greater than the maximum of {MAX_REQUEST_TIMEOUT} in config['request_timeout']",
        ),
    ],
)
def test_invalid_settings_fail_before_any_request(make_sandbox, overrides, message):
    sb = make_sandbox(calls=20)
    run = sync(config_for(sb, **overrides))
    assert run.returncode == 1
    errors = [line for line in run.stderr.splitlines() if "| ERROR" in line]
    assert any(line.endswith(message) or message in line for line in errors), run.stderr
    assert "Traceback" not in run.stderr
    assert run.messages == []
    assert sb.requests == [], "nothing is requested with a bad setting"


def test_a_wrong_key_fails_at_once_with_the_api_message(make_sandbox):
    sb = make_sandbox(calls=20)
    run = sync(config_for(sb, api_key="not-the-key"))
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1].endswith("Optico API error: Invalid api key")
    assert len(sb.requests) == 1, "a refused key is not retried"
    assert "Traceback" not in run.stderr


def test_a_start_date_given_as_a_date_time_is_read_as_its_day(make_sandbox):
    sb = make_sandbox(calls=50, start_date="2024-01-01", end_date="2024-01-31")
    run = sync(config_for(sb, start_date="2024-01-15T00:00:00Z"), streams=["calls"])
    assert run.returncode == 0, run.stderr[-2000:]
    assert min(r.params["start_date"] for r in sb.requests) == "2024-01-15"


def test_every_setting_has_a_title_and_a_description():
    for name, spec in SCHEMA["properties"].items():
        assert spec.get("title"), name
        assert spec.get("description"), name


def test_about_lists_every_setting():
    result = subprocess.run(
        [*TAP, "--about", "--format", "json"], capture_output=True, text=True, check=True
    )
    about = json.loads(result.stdout)
    assert about["name"] == "tap-optico"
    assert set(about["settings"]["properties"]) >= set(SCHEMA["properties"])
    assert about["settings"]["properties"]["api_key"]["secret"] is True
    assert {
        "state",
        "catalog",
        "discover",
        "about",
        "stream-maps",
        "schema-flattening",
        "batch",
    } <= set(about["capabilities"])
