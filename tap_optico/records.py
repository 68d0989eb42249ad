"""Where an API row becomes a record: field names, value types, times and `call_id`.

The API's two documents disagree on names (snake_case in the original, camelCase
in the 2026 reference) and types (PHP-style strings such as "1", "12.50", "" or
native JSON). Each field is accepted in either spelling and either style, and the
record always comes out in the schema's snake_case names and JSON types, so the
SDK's own type conformance can be switched off (it is the costliest step per record).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import re
import typing as t
import zoneinfo

import msgspec

from tap_optico.errors import UnexpectedAnswerError

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

_TRUE = frozenset({"1", "true", "yes", "oui", "on"})
_FALSE = frozenset({"0", "false", "no", "non", "off", ""})
_UTC = dt.timezone.utc
# Integers a target's BIGINT (and msgspec) can hold.
_MAX_INTEGER = 2**63
# The API's documented form; minutes and seconds are the same in UTC for whole-hour offsets.
_LOCAL = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:[0-5]\d:[0-5]\d")
# Other day orders a French PHP backend may print: DD/MM/YYYY (France's, never US
# MM/DD), DD-MM-YYYY and YYYY/MM/DD, read as YYYY-MM-DD.
_DAY_FIRST = re.compile(r"(\d\d)[/.-](\d\d)[/.-](\d{4})")
_YEAR_SLASH = re.compile(r"(\d{4})/(\d\d)/(\d\d)")


def iso_day(text: str) -> str:
    """The YYYY-MM-DD of a date's text in the orders above, else the text as it was."""
    head = text[:10]
    match = _DAY_FIRST.fullmatch(head) or _YEAR_SLASH.fullmatch(head)
    if match is None:
        return text
    day = match.groups() if match.re is _YEAR_SLASH else match.groups()[::-1]
    return "-".join(day) + text[10:]


def _finite(value: t.Any) -> float | None:
    """A finite number read from a number or its text, decimal comma included; else None."""
    try:
        number = float(value.replace(",", ".")) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class Coercer:
    """Turns API values into schema types; an unreadable value becomes null, once warned."""

    def __init__(self, stream: str, logger: logging.Logger) -> None:
        """Warnings name the stream; each field's first bad value is logged once."""
        self.stream = stream
        self.logger = logger
        self.bad_values: dict[str, int] = {}
        self.unknown_fields: set[str] = set()

    def bad(self, field: str, value: t.Any) -> None:
        """Count an unreadable value; warn on the first one of each field."""
        count = self.bad_values.get(field, 0)
        if not count:
            self.logger.warning(
                "%s.%s: cannot read %r, emitting null (further ones are only counted)%s",
                self.stream,
                field,
                value,
                "; such calls do not move the bookmark" if field == "start_date" else "",
            )
        self.bad_values[field] = count + 1

    def unknown(self, names: t.Iterable[str]) -> None:
        """Log, once per name, fields the API sends that the schema does not know yet."""
        new = set(names) - self.unknown_fields
        if new:
            self.unknown_fields |= new
            self.logger.warning(
                "%s: the API sent new fields %s; they are kept in `%s`",
                self.stream,
                ", ".join(sorted(new)),
                EXTRA_FIELD,
            )

    def summary(self) -> None:
        """Log how many values were nulled, per field, at the end of a sync."""
        for field, count in sorted(self.bad_values.items()):
            self.logger.warning(
                "%s.%s: %d unreadable values emitted as null", self.stream, field, count
            )

    def string(self, field: str, value: t.Any) -> str | None:
        """Strings stay; numbers become their text (a phone number may come as a number)."""
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "1" if value else "0"
        if isinstance(value, (int, float)):
            return str(value)
        self.bad(field, value)
        return None

    def integer(self, field: str, value: t.Any) -> int | None:
        """Integers, integral floats and their strings ("95", "95.0"); "" is null."""
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if value is None or value == "":
            return None
        number = _finite(value)
        if number is not None and number.is_integer() and abs(number) < _MAX_INTEGER:
            return int(number)
        self.bad(field, value)
        return None

    def number(self, field: str, value: t.Any) -> float | None:
        """Numbers and their strings, French decimal comma included ("12,50"); "" is null."""
        if value is None or value == "":
            return None
        number = _finite(value)
        if number is None:
            self.bad(field, value)
        return number

    def boolean(self, field: str, value: t.Any) -> bool | None:
        """Booleans, 1/0 and "1"/"0" (PHP), "true"/"false"; "" is false as PHP writes it."""
        if isinstance(value, bool) or value is None:
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str):
            text = value.strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
        self.bad(field, value)
        return None


class LocalTimes:
    """Reads the API's naive local times in a zone and writes them as UTC ISO 8601.

    One normalised form ("YYYY-MM-DDTHH:MM:SS+00:00") makes bookmarks compare
    correctly as strings. The zone's offset is looked up once per local hour: at a
    DST change the skipped hour and the first pass of the repeated hour are read
    with the offset in force before the change (Python's fold=0), since the API
    gives no offset to tell the two passes apart.
    """

    def __init__(self, zone: zoneinfo.ZoneInfo) -> None:
        """Cache offsets per local hour."""
        self.zone = zone
        self._hours: dict[str, str | None] = {}

    def read(self, value: str) -> tuple[str, str]:
        """One API time as (UTC ISO 8601, canonical local "YYYY-MM-DD HH:MM:SS").

        Raises:
            ValueError: the value is not a time.
        """
        if not _LOCAL.fullmatch(value):
            value = iso_day(value.strip())
        if _LOCAL.fullmatch(value):
            hour = value[:13]
            try:
                prefix = self._hours[hour]
            except KeyError:
                prefix = self._hours[hour] = self._utc_hour_prefix(hour)
            if prefix is not None:
                return f"{prefix}{value[13:]}+00:00", f"{value[:10]} {value[11:]}"
        parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        local = parsed.replace(tzinfo=None, microsecond=0).isoformat(sep=" ")
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=self.zone)
        return parsed.astimezone(_UTC).replace(microsecond=0).isoformat(), local

    def _utc_hour_prefix(self, hour: str) -> str | None:
        """The UTC "YYYY-MM-DDTHH" of a local hour; None unless one whole-hour offset holds.

        Some zones change offset off the hour (America/Goose_Bay at 00:01 until 2011):
        such an hour, like any offset not in whole hours, is converted value by value.
        """
        local = dt.datetime.fromisoformat(f"{hour}:00:00").replace(tzinfo=self.zone)
        offset = local.utcoffset()
        if offset is None or offset.total_seconds() % 3600:
            return None
        if (local + dt.timedelta(minutes=59, seconds=59)).utcoffset() != offset:
            return None
        return local.astimezone(_UTC).strftime("%Y-%m-%dT%H")


def call_id(wall_clock: str, caller: str | None, tracking: str | None, phone: str | None) -> str:
    """The digest of a call's immutable identity: the id of the first of its look-alikes.

    The API has no call id. A call is identified by when it started (local wall
    clock, as the API writes it), who called, the tracking number called and the
    destination it was forwarded to: none of these change after the call, unlike
    status, duration and revenue, which stay out of the digest.
    """
    identity = "\x1f".join((wall_clock, caller or "", tracking or "", phone or ""))
    return hashlib.blake2b(identity.encode(), digest_size=16).hexdigest()


def lookalike_id(first: str, occurrence: int) -> str:
    """The id of the `occurrence`-th look-alike (1-based) of the call whose id is `first`.

    Look-alikes are distinct calls that share the whole identity above: two hidden
    callers (an empty or constant `caller`) reaching one tracking number in the same
    second, or a dropped call redialled within the second. Nothing in their identity
    tells them apart, so they are numbered: the first keeps the identity's digest,
    which is every call's id before look-alikes were told apart (no warehouse is
    re-keyed), and the n-th gets the digest of that id and n. The numbering is
    counted over rows the tap trusts to hold the whole group (tally.py) and follows
    `lookalike_order`, never the order of the API's pages, so it is the same on every
    run, whatever the window, page size or concurrency.
    """
    if occurrence == 1:
        return first
    return hashlib.blake2b(f"{first}\x1f{occurrence}".encode(), digest_size=16).hexdigest()


# The fields that order look-alikes: the visit first (set for web calls, and fixed once
# the call is made), then what else the call carries, status, duration and revenue last
# since they change. Look-alikes equal in all of them are interchangeable.
LOOKALIKE_ORDER = (
    "visit_id",
    "trigger_type",
    "source",
    "url",
    "referer",
    "keyword",
    "call_path",
    "keypad",
    "client_data",
    "is_redirect",
    "expired_redirect",
    "status",
    "duration",
    "revenue",
)


def lookalike_order(record: t.Mapping[str, t.Any]) -> tuple[str, ...]:
    """A look-alike's place in its group: its fields as text, compared in LOOKALIKE_ORDER."""
    return tuple(_text(record.get(name)) for name in LOOKALIKE_ORDER)


def _text(value: t.Any) -> str:
    """A record value as comparable text: null and "" alike, booleans as 0/1, numbers as JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return value if isinstance(value, str) else json.dumps(value)


def number_lookalikes(group: list[dict[str, t.Any]]) -> None:
    """Give each record of one whole look-alike group its id, in `lookalike_order`."""
    if len(group) < 2:
        return
    first = group[0]["call_id"]
    group.sort(key=lookalike_order)
    for occurrence, record in enumerate(group, start=1):
        record["call_id"] = lookalike_id(first, occurrence)


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
    return number if abs(number) < _MAX_INTEGER else text


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


def local_days(zone: zoneinfo.ZoneInfo) -> t.Callable[[str | None], dt.date | None]:
    """A reader of the local calendar day of a UTC start_date (or its minute), cached per minute."""
    minutes: dict[str, dt.date] = {}

    def day_of(start: str | None) -> dt.date | None:
        if not start:
            return None
        minute = start[:16]
        day = minutes.get(minute)
        if day is None:
            moment = dt.datetime.fromisoformat(f"{minute}+00:00")
            day = minutes[minute] = moment.astimezone(zone).date()
        return day

    return day_of


class CallRecords:
    """Normalises the calls of the API into `calls` records."""

    def __init__(self, zone: zoneinfo.ZoneInfo, logger: logging.Logger) -> None:
        """Set up the coercions for one sync."""
        self.coerce = Coercer("calls", logger)
        self.times = LocalTimes(zone)
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
            self.coerce.unknown(extra)
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
