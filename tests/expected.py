"""What the tap should emit for a sandbox call: the truth seen through the tap's contract."""

from __future__ import annotations

import datetime as dt
import hashlib
import typing as t
import zoneinfo

PARIS = zoneinfo.ZoneInfo("Europe/Paris")


def utc(local: str, zone: zoneinfo.ZoneInfo = PARIS) -> str:
    """A naive local API time as the tap's UTC string (fold=0 on the repeated hour)."""
    moment = dt.datetime.fromisoformat(local).replace(tzinfo=zone)
    return moment.astimezone(dt.timezone.utc).isoformat()


def call_id(call: t.Mapping[str, t.Any]) -> str:
    """The documented call_id: BLAKE2b-128 of local start, caller, tracking number, phone."""
    identity = "\x1f".join(
        (
            call["start_date"],
            call["caller"] or "",
            call["tracking_number"] or "",
            call["phone"] or "",
        )
    )
    return hashlib.blake2b(identity.encode(), digest_size=16).hexdigest()


def record(call: t.Mapping[str, t.Any], account: str = "default") -> dict[str, t.Any]:
    """The calls record expected for one truth call (snake_case, native types)."""
    expected = {k: v for k, v in call.items() if k != "offline_phone_description"}
    expected["account"] = account
    expected["start_date"] = utc(call["start_date"])
    expected["call_id"] = call_id(call)
    return expected


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
