"""Records match their schema exactly, whatever the API's value style; coercions and call_id."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import typing as t
import zoneinfo

import jsonschema
import pytest
from singer_sdk.helpers.conform import TypeConformanceLevel

from tap_optico.coerce import Coercer
from tap_optico.identity import call_id
from tap_optico.messages import BufferedWriter
from tap_optico.records import CallRecords
from tap_optico.streams import CallsStream, DailyCallsStream
from tap_optico.tap import TapOptico
from tests.tap_run import config_for, sync

PARIS = zoneinfo.ZoneInfo("Europe/Paris")


@pytest.mark.parametrize("values", ["native", "php"])
@pytest.mark.parametrize("naming", ["camel", "snake"])
def test_records_match_their_schema_exactly_without_sdk_conformance(make_sandbox, naming, values):
    sb = make_sandbox(calls=400, seed=41, naming=naming, values=values, extra_fields=True)
    run = sync(config_for(sb, page_size=100))
    assert run.returncode == 0, run.stderr[-2000:]
    checker = jsonschema.Draft7Validator.FORMAT_CHECKER
    conformed_run = sdk_conformed_run(config_for(sb, page_size=100))
    for stream in (CallsStream, DailyCallsStream):
        schema = stream.schema
        validator = jsonschema.Draft7Validator(schema, format_checker=checker)
        records = run.records(stream.name)
        assert records
        for record in records:
            validator.validate(record)
            assert set(record) == set(schema["properties"]), "every field, and only those"
            for name, value in record.items():
                types = schema["properties"][name]["type"]
                if isinstance(value, bool):
                    assert "boolean" in types, name
                elif isinstance(value, int):
                    assert "integer" in types or "number" in types, name

        # What the SDK's own (switched-off) conformance produces: the same records.
        assert conformed_run[stream.name] == records


def sdk_conformed_run(config: dict[str, t.Any]) -> dict[str, list[dict[str, t.Any]]]:
    """The records of a sync in which the SDK's recursive type conformance is switched on."""
    tap = TapOptico(config=config)
    for stream in tap.streams.values():
        stream.TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.RECURSIVE
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    with contextlib.redirect_stdout(out):
        tap.sync_all()
        assert isinstance(tap.message_writer, BufferedWriter)
        tap.message_writer.flush()
    out.flush()
    records: dict[str, list[dict[str, t.Any]]] = {}
    buffer = out.buffer
    assert isinstance(buffer, io.BytesIO)
    for line in buffer.getvalue().decode().splitlines():
        message = json.loads(line)
        if message["type"] == "RECORD":
            records.setdefault(message["stream"], []).append(message["record"])
    return records


def test_php_style_values_are_coerced(caplog):
    coerce = Coercer("calls", logging.getLogger("tap-optico.calls"))
    assert coerce.integer("duration", "95") == 95
    assert coerce.integer("duration", "95.0") == 95
    assert coerce.integer("duration", "") is None
    assert coerce.number("revenue", "12.50") == 12.5
    assert coerce.number("revenue", "12,50") == 12.5, "a French decimal comma"
    assert coerce.number("revenue", 7) == 7
    assert coerce.boolean("is_redirect", "1") is True
    assert coerce.boolean("is_redirect", "0") is False
    assert coerce.boolean("is_redirect", "") is False
    assert coerce.boolean("is_redirect", 1) is True
    assert coerce.string("caller", 612345678) == "612345678"
    assert coerce.bad_values == {}


def test_an_unreadable_value_becomes_null_with_one_warning(caplog):
    calls = CallRecords(PARIS, logging.getLogger("tap-optico.calls"))
    raw = {
        "startDate": "2024-05-01 10:00:00",
        "caller": "0600000001",
        "duration": "1m35",
        "revenue": "n/a",
    }
    with caplog.at_level(logging.WARNING):
        first = calls.record(raw)
        second = calls.record({**raw, "caller": "0600000002"})
        broken = calls.record({**raw, "startDate": "hier"})
    assert first["duration"] is None
    assert first["revenue"] is None
    assert second["duration"] is None
    assert broken["start_date"] is None
    assert broken["call_id"], "the id stays non-null even without a readable time"
    assert calls.coerce.bad_values == {"duration": 3, "revenue": 3, "start_date": 1}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3, "one warning per field, not per value"
    assert "calls.duration: cannot read '1m35'" in warnings[0]


def test_call_id_is_stable_and_ignores_what_changes_after_the_call():
    calls = CallRecords(PARIS, logging.getLogger("test"))
    call = {
        "startDate": "2024-03-31 00:30:00",
        "caller": "0612345678",
        "trackingNumber": "0970000001",
        "phone": "0472123456",
        "status": "occupé",
        "duration": 0,
        "revenue": 0,
    }
    record = calls.record(call)
    # Pinned: the same call gets this id on every run and every machine.
    assert record["call_id"] == call_id(
        "2024-03-31 00:30:00", "0612345678", "0970000001", "0472123456"
    )
    assert record["call_id"] == "565fe7ddca4cd3c292ef13dad8a110a9"
    updated = calls.record({**call, "status": "succès", "duration": 95, "revenue": 12.5})
    assert updated["call_id"] == record["call_id"]
    snake = calls.record(
        {
            "start_date": "2024-03-31T00:30:00",
            "caller": "0612345678",
            "tracking_number": "0970000001",
            "phone": "0472123456",
        }
    )
    assert snake["call_id"] == record["call_id"], "spelling and separator do not change the id"
    other = calls.record({**call, "caller": "0612345679"})
    assert other["call_id"] != record["call_id"]


@pytest.mark.parametrize(
    ("local", "utc"),
    [
        ("2024-01-15 00:30:00", "2024-01-14T23:30:00+00:00"),
        ("2024-03-31 01:59:59", "2024-03-31T00:59:59+00:00"),
        (
            "2024-03-31 02:30:00",
            "2024-03-31T01:30:00+00:00",
        ),  # skipped hour: read before the change
        ("2024-03-31 03:00:00", "2024-03-31T01:00:00+00:00"),
        ("2024-10-27 02:30:00", "2024-10-27T00:30:00+00:00"),  # repeated hour: first pass
        ("2024-10-27 03:00:00", "2024-10-27T02:00:00+00:00"),
        ("2024-06-01T12:00:00+02:00", "2024-06-01T10:00:00+00:00"),  # an offset, if ever sent, wins
    ],
)
def test_local_times_are_read_in_the_zone(local, utc):
    calls = CallRecords(PARIS, logging.getLogger("test"))
    assert calls.record({"start_date": local})["start_date"] == utc


def test_a_page_the_fast_decoder_refuses_is_read_field_by_field():
    calls = CallRecords(PARIS, logging.getLogger("test"))
    good = {
        "startDate": "2024-05-01 10:00:00",
        "caller": "0600000001",
        "duration": "95",
        "revenue": "1.50",
    }
    odd = {**good, "caller": "0600000002", "duration": "", "tracking number": "0970000001"}
    fast = calls.page(json.dumps([good]).encode())
    slow = calls.page(json.dumps({"0": good, "2": odd}).encode())  # PHP's object of rows
    assert slow[0] == fast[0]
    assert slow[1]["duration"] is None
    assert slow[1]["tracking_number"] == "0970000001", "A's spelling with a space"
    assert slow[1]["additional_fields"] is None
