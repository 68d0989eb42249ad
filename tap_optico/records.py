"""Where an API row becomes a record: field names, and each value read (coerce.py, times.py).

The API's two documents disagree on names (snake_case in the original, camelCase
in the 2026 reference) and types (PHP-style strings such as "1", "12.50", "" or
native JSON). Each field is accepted in either spelling and either style, and the
record always comes out in the schema's snake_case names and JSON types, so the
SDK's own type conformance can be switched off (it is the costliest step per record).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import typing as t

import msgspec

from tap_optico.coerce import MAX_INTEGER, Coercer
from tap_optico.errors import UnexpectedAnswerError
from tap_optico.identity import call_id
from tap_optico.times import LocalTimes, iso_day

if t.TYPE_CHECKING:
    import logging
    import zoneinfo

# Output name -> JSON type, in the order the API documents them.
STRING_FIELDS = (
    "caller",
    "tracking_number",
    "phone",
    "trigger_type",
    "source",
    "url",
    "referer",
    "keyword",
    "call_path",
    "status",
    "keypad",
    "client_data",
    "visit_id",
)
INTEGER_FIELDS = ("duration",)
NUMBER_FIELDS = ("revenue",)
BOOLEAN_FIELDS = ("is_redirect", "expired_redirect")
EXTRA_FIELD = "additional_fields"

# Spellings seen or documented for each field; camelCase per the 2026 page.
ALIASES: dict[str, str] = {
    "startDate": "start_date",
    "trackingNumber": "tracking_number",
    "tracking number": "tracking_number",
    "triggerType": "trigger_type",
    "callPath": "call_path",
    "isRedirect": "is_redirect",
    "expiredRedirect": "expired_redirect",
    "clientData": "client_data",
    "visitId": "visit_id",
}


def _page_decoder(naming: t.Literal["camel"] | None) -> msgspec.json.Decoder[list[t.Any]]:
    """A decoder for pages whose every call uses one spelling and only known fields.

    msgspec's lax mode reads PHP-style strings ("95", "12.50", "1") as the schema's
    types in C. Anything else (an unknown field, "" for a number, a mixed spelling)
    fails the whole page, which then takes the per-field path: nothing is dropped.
    """
    fields = [
        ("start_date", str | None, None),
        *((name, str | None, None) for name in STRING_FIELDS),
        *((name, int | None, None) for name in INTEGER_FIELDS),
        *((name, float | None, None) for name in NUMBER_FIELDS),
        *((name, bool | None, None) for name in BOOLEAN_FIELDS),
    ]
    call = msgspec.defstruct(
        f"Call{naming or ''}", fields, rename=naming, forbid_unknown_fields=True
    )
    return msgspec.json.Decoder(list[call], strict=False)  # type: ignore[valid-type]


_CAMEL_PAGE = _page_decoder("camel")
_SNAKE_PAGE = _page_decoder(None)
_ANY_PAGE = msgspec.json.Decoder(list[dict[str, t.Any]] | dict[str, dict[str, t.Any]])


_SNIFF_BYTES = 4096


def rows(results: bytes | msgspec.Raw) -> list[dict[str, t.Any]]:
    """The rows of a page as plain objects; PHP may encode a list with gaps as an object.

    `null` is an empty page. Numbers beyond a double (1e400) are read as infinite,
    then nulled by the coercions.

    Raises:
        UnexpectedAnswerError: the results are not a list of objects.
    """
    data = bytes(results)
    if data.strip() in (b"null", b""):
        return []
    try:
        data.decode()
    except UnicodeDecodeError as exc:
        raise not_utf8(exc) from None
    try:
        try:
            decoded = _ANY_PAGE.decode(results)
        except msgspec.ValidationError as exc:
            if "out of range" not in str(exc):
                raise
            decoded = json.loads(data, parse_float=_float_or_text, parse_int=_int_or_text)
    except (msgspec.ValidationError, ValueError, RecursionError) as exc:
        msg = f"unexpected answer: the results are not a list of calls ({_reason(exc)})"
        raise UnexpectedAnswerError(msg) from None
    found = list(decoded.values()) if isinstance(decoded, dict) else decoded
    if not isinstance(found, list) or not all(isinstance(row, dict) for row in found):
        msg = "unexpected answer: the results are not a list of objects"
        raise UnexpectedAnswerError(msg)
    return found


def not_utf8(error: UnicodeDecodeError) -> UnexpectedAnswerError:
    """Text that is not UTF-8, and whose answer declared no other charset (transport.py)."""
    byte = error.object[error.start : error.start + 1].hex()
    return UnexpectedAnswerError(
        f"unexpected answer: the page is not UTF-8 text (byte 0x{byte} at {error.start}), "
        "and its Content-Type declares no other charset"
    )


def _calendar_day(value: t.Any) -> str:
    text = iso_day(value.strip()) if isinstance(value, str) else ""
    try:
        return dt.date.fromisoformat(text[:10]).isoformat()
    except ValueError:
        msg = f"unexpected answer: daily_calls date {str(value)[:40]!r} is not a date"
        raise UnexpectedAnswerError(msg) from None


def _float_or_text(text: str) -> float | str:
    """A JSON number as a float, or as its text if no double holds it (then coerced to null)."""
    number = float(text)
    return number if math.isfinite(number) else text


def _int_or_text(text: str) -> int | str:
    """A JSON integer, or its text if no BIGINT holds it (then coerced to null)."""
    number = int(text)
    return number if abs(number) < MAX_INTEGER else text


def _reason(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deep"
    return str(exc).splitlines()[0][:100]


def daily_records(results: bytes | msgspec.Raw, coerce: Coercer) -> list[dict[str, t.Any]]:
    """The `daily_calls` records of one page: day totals, the date as YYYY-MM-DD.

    Raises:
        UnexpectedAnswerError: a row whose date is not a calendar date (the record's key
            and the stream's bookmark: nothing else may reach a target or the state).
    """
    records = []
    for row in rows(results):
        records.append(
            {
                "date": _calendar_day(row.get("date")),
                "calls": coerce.integer("calls", row.get("calls")),
                "duration": coerce.integer("duration", row.get("duration")),
                "revenue": coerce.number("revenue", row.get("revenue")),
            }
        )
    return records


class CallRecords:
    """Normalises the calls of the API into `calls` records."""

    def __init__(self, zone: zoneinfo.ZoneInfo, logger: logging.Logger) -> None:
        """Set up the coercions for one sync."""
        self.coerce = Coercer("calls", logger)
        self.logger = logger
        self.times = LocalTimes(zone)
        self.unknown_fields: set[str] = set()
        # API key (either spelling) -> (record field, expected Python type, coercion).
        self._fields: dict[str, tuple[str, type, t.Callable[[str, t.Any], t.Any]]] = {}
        for fields, kind, convert in (
            (STRING_FIELDS, str, self.coerce.string),
            (INTEGER_FIELDS, int, self.coerce.integer),
            (NUMBER_FIELDS, float, self.coerce.number),
            (BOOLEAN_FIELDS, bool, self.coerce.boolean),
        ):
            for name in fields:
                self._fields[name] = (name, kind, convert)
        for alias, name in ALIASES.items():
            if name in self._fields:
                self._fields[alias] = self._fields[name]

    def _unknown(self, names: t.Iterable[str]) -> None:
        """Log, once per name, fields the API sends that the schema does not know yet."""
        new = set(names) - self.unknown_fields
        if new:
            self.unknown_fields |= new
            self.logger.warning(
                "calls: the API sent new fields %s; they are kept in `%s`",
                ", ".join(sorted(new)),
                EXTRA_FIELD,
            )

    def page(self, results: bytes | msgspec.Raw) -> list[dict[str, t.Any]]:
        """The records of one page of results (its raw JSON array)."""
        # The first call's keys tell the spelling; a wrong guess only costs the slow path.
        head = memoryview(results)[:_SNIFF_BYTES].tobytes()
        decoder = _CAMEL_PAGE if b'"startDate"' in head else _SNAKE_PAGE
        try:
            calls = decoder.decode(results)
        except (msgspec.ValidationError, RecursionError):
            return [self.record(row) for row in rows(results)]
        except UnicodeDecodeError as exc:
            raise not_utf8(exc) from None
        records = []
        for call in calls:
            record = msgspec.structs.asdict(call)
            record[EXTRA_FIELD] = None
            self._identify(record, record["start_date"])
            records.append(record)
        return records

    def _identify(self, record: dict[str, t.Any], raw_start: t.Any) -> None:
        """Set the record's UTC start_date and its call_id from the API's local start."""
        wall_clock = ""
        record["start_date"] = None
        if raw_start.__class__ is str and raw_start:
            try:
                record["start_date"], wall_clock = self.times.read(raw_start)
            except ValueError:
                self.coerce.bad("start_date", raw_start)
                wall_clock = raw_start
        elif raw_start is not None:
            self.coerce.bad("start_date", raw_start)
        record["call_id"] = call_id(
            wall_clock, record["caller"], record["tracking_number"], record["phone"]
        )

    def record(self, call: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
        """The `calls` record of one API call: every schema field present, nulls included."""
        record: dict[str, t.Any] = dict.fromkeys(_ALL_FIELDS)
        extra: dict[str, t.Any] | None = None
        raw_start: t.Any = None
        fields = self._fields
        for key, value in call.items():
            field = fields.get(key)
            if field is not None:
                name, kind, convert = field
                # Values already of the schema's type (or null) pass as they are.
                record[name] = (
                    value if value is None or value.__class__ is kind else convert(name, value)
                )
            elif key in _START_KEYS:
                raw_start = value
            else:
                if extra is None:
                    extra = {}
                extra[key] = value
        self._identify(record, raw_start)
        if extra is not None:
            self._unknown(extra)
            record[EXTRA_FIELD] = extra
        return record


_START_KEYS = frozenset({"start_date", "startDate"})
_ALL_FIELDS = (
    "call_id",
    "start_date",
    *STRING_FIELDS,
    *INTEGER_FIELDS,
    *NUMBER_FIELDS,
    *BOOLEAN_FIELDS,
    EXTRA_FIELD,
)
