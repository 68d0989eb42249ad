"""What the tap should emit for a sandbox call: the truth seen through the tap's contract."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import typing as t
import zoneinfo

PARIS = zoneinfo.ZoneInfo("Europe/Paris")


def utc(local: str, zone: zoneinfo.ZoneInfo = PARIS) -> str:
    """A naive local API time as the tap's UTC string (fold=0 on the repeated hour)."""
    moment = dt.datetime.fromisoformat(local).replace(tzinfo=zone)
    return moment.astimezone(dt.timezone.utc).isoformat()


def call_id(call: t.Mapping[str, t.Any]) -> str:
    """The documented call_id of a call with no look-alike (and of the first of a group)."""
    identity = "\x1f".join(
        (
            call["start_date"],
            call["caller"] or "",
            call["tracking_number"] or "",
            call["phone"] or "",
        )
    )
    return hashlib.blake2b(identity.encode(), digest_size=16).hexdigest()


# The README's order of look-alikes: these fields as text, compared in turn.
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


def _text(value: t.Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return value if isinstance(value, str) else json.dumps(value)


def keyed(calls: t.Iterable[t.Mapping[str, t.Any]]) -> dict[str, t.Mapping[str, t.Any]]:
    """Every call of a set of whole days by its documented call_id, look-alikes numbered."""
    groups: dict[str, list[t.Mapping[str, t.Any]]] = {}
    for call in calls:
        groups.setdefault(call_id(call), []).append(call)
    out: dict[str, t.Mapping[str, t.Any]] = {}
    for first, group in groups.items():
        ordered = sorted(group, key=lambda c: tuple(_text(c[f]) for f in LOOKALIKE_ORDER))
        for occurrence, call in enumerate(ordered, start=1):
            text = first if occurrence == 1 else f"{first}\x1f{occurrence}"
            key = first if occurrence == 1 else _blake(text)
            out[key] = call
    return out


def _blake(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def ids(calls: t.Iterable[t.Mapping[str, t.Any]]) -> set[str]:
    """The call_ids of a set of whole days."""
    return set(keyed(calls))


def id_in(call: t.Mapping[str, t.Any], truth: t.Mapping[str, t.Mapping[str, t.Any]]) -> str:
    """The call_id of one call among `keyed` truth (an identical look-alike: the first)."""
    first = call_id(call)
    if truth.get(first) == call:
        return first
    return next(key for key, other in truth.items() if other == call)


def record(
    call: t.Mapping[str, t.Any], account: str = "default", key: str | None = None
) -> dict[str, t.Any]:
    """The calls record expected for one truth call (snake_case, native types)."""
    expected = {k: v for k, v in call.items() if k != "offline_phone_description"}
    expected["account"] = account
    expected["start_date"] = utc(call["start_date"])
    expected["call_id"] = key or call_id(call)
    return expected


def records(
    calls: t.Iterable[t.Mapping[str, t.Any]], account: str = "default"
) -> dict[str, dict[str, t.Any]]:
    """The calls records expected for a set of whole days, by call_id."""
    return {key: record(call, account, key) for key, call in keyed(calls).items()}


def by_id(records: t.Iterable[t.Mapping[str, t.Any]]) -> dict[str, dict[str, t.Any]]:
    """Records keyed by call_id, the last version winning, as an upserting target keeps them."""
    return {r["call_id"]: dict(r) for r in records}


def daily(
    rows: t.Iterable[t.Mapping[str, t.Any]], account: str = "default"
) -> list[dict[str, t.Any]]:
    """The daily_calls records expected for the sandbox's per-day truth."""
    return [{**row, "account": account} for row in rows]


def first_days(requests: t.Iterable[t.Any], account: int | None) -> dict[str, str]:
    """The first start_date each stream asked the sandbox for, for one account's tag."""
    out: dict[str, str] = {}
    for request in requests:
        if request.account == account:
            stream = "daily_calls" if request.params.get("group_by_day") else "calls"
            day = request.params["start_date"]
            out[stream] = min(out.get(stream, day), day)
    return out


def local_day(value: str) -> dt.date:
    """The Paris calendar day of a bookmark: a date as it is, a UTC time converted."""
    if len(value) == len("YYYY-MM-DD"):
        return dt.date.fromisoformat(value)
    return dt.datetime.fromisoformat(value).astimezone(PARIS).date()


def resume_day(bookmark: str, lookback: int) -> str:
    """The first day a run asks for after this bookmark, `lookback` days before its day."""
    return (local_day(bookmark) - dt.timedelta(days=lookback)).isoformat()
