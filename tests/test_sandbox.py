"""The Optico sandbox honours the documented Data API contract, over real HTTP."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from optico_sandbox import FAULT_KINDS, Sandbox

KEY = "sandbox-key"
KEY_B, KEY_C = "key-bravo", "key-charlie"
RANGE = {"start_date": "2024-01-01", "end_date": "2024-03-31"}
MakeSandbox = Callable[..., Sandbox]


def get(sb: Sandbox, **params: Any) -> requests.Response:
    query: dict[str, Any] = {"api_key": KEY, "type": "calls", **RANGE}
    query.update(params)
    query = {k: v for k, v in query.items() if v is not None}
    return requests.get(sb.url, params=query, timeout=10)


def data(sb: Sandbox, **params: Any) -> dict[str, Any]:
    response = get(sb, **params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == "OK", body
    return body


def key_of(call: dict[str, Any]) -> tuple[str, str, str, str]:
    return (call["startDate"], call["caller"], call["trackingNumber"], call["phone"])


def truth_key(call: dict[str, Any]) -> tuple[str, str, str, str]:
    return (call["start_date"], call["caller"], call["tracking_number"], call["phone"])


# ---------------------------------------------------------------- paging and ordering


def test_first_page_uses_defaults_and_is_newest_first(sandbox: Sandbox) -> None:
    body = data(sandbox)
    truth = sandbox.truth_calls()
    assert body["totalResults"] == len(truth) == 1000
    assert body["nextPage"] == 2
    assert len(body["results"]) == 100  # default limit
    starts = [c["startDate"] for c in body["results"]]
    assert starts == sorted(starts, reverse=True)
    assert [key_of(c) for c in body["results"]] == [truth_key(c) for c in truth[::-1][:100]]


def test_pages_are_one_based_and_next_page_disappears_on_the_last(sandbox: Sandbox) -> None:
    seen: list[tuple[str, str, str, str]] = []
    page = 1
    while True:
        body = data(sandbox, limit=300, page=page)
        assert body["totalResults"] == 1000
        seen.extend(key_of(c) for c in body["results"])
        if "nextPage" not in body:
            break
        assert body["nextPage"] == page + 1
        page += 1
    assert page == 4
    assert len(body["results"]) == 100
    assert seen == [truth_key(c) for c in sandbox.truth_calls()[::-1]]
    beyond = data(sandbox, limit=300, page=5)
    assert beyond["results"] == []
    assert "nextPage" not in beyond


def test_exact_multiple_of_limit_has_no_next_page(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(calls=20)
    body = data(sb, limit=10, page=2)
    assert len(body["results"]) == 10
    assert "nextPage" not in body


def test_end_date_is_inclusive(sandbox: Sandbox) -> None:
    day = "2024-02-14"
    truth = sandbox.truth_calls(day, day)
    assert truth
    body = data(sandbox, start_date=day, end_date=day, limit=5000)
    assert body["totalResults"] == len(truth)
    assert all(c["startDate"].startswith(day) for c in body["results"])


def test_equal_start_times_keep_a_stable_order(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(calls=30)
    a = sb.insert_call("2024-02-01 10:00:00", caller="0611111111")
    b = sb.insert_call("2024-02-01 10:00:00", caller="0622222222")
    truth = [truth_key(c) for c in sb.truth_calls("2024-02-01", "2024-02-01")]
    assert truth.index(truth_key(a)) < truth.index(truth_key(b))
    for _ in range(2):
        body = data(sb, start_date="2024-02-01", end_date="2024-02-01", limit=5000)
        assert [key_of(c) for c in body["results"]] == truth[::-1]


# ---------------------------------------------------------------- errors


def test_every_error_comes_at_once_in_documented_order(sandbox: Sandbox) -> None:
    response = requests.get(sandbox.url, timeout=10)
    assert response.status_code == 200
    assert response.json() == {
        "status": "ERROR",
        "errors": [
            "Invalid api key",
            "Missing parameter `type`",
            "Missing parameter `start_date`",
            "Missing parameter `end_date`",
        ],
    }
    body = get(
        sandbox, api_key="wrong", type="mms", start_date="2024-02-30", end_date="24-03-01", limit=1
    ).json()
    assert body["errors"] == [
        "Invalid api key",
        "Invalid parameter type",
        "Invalid date 2024-02-30",
        "Invalid date 24-03-01",
        "Limit must be between 10 and 5000",
    ]


def test_wrong_key_alone(sandbox: Sandbox) -> None:
    assert get(sandbox, api_key="nope").json() == {"status": "ERROR", "errors": ["Invalid api key"]}


@pytest.mark.parametrize(
    "value", ["2024-02-30", "2023-02-29", "2024-13-01", "2024-1-05", "20240105", "2024/01/05", ""]
)
def test_invalid_dates(sandbox: Sandbox, value: str) -> None:
    expected = "Missing parameter `start_date`" if value == "" else f"Invalid date {value}"
    assert get(sandbox, start_date=value).json()["errors"] == [expected]


@pytest.mark.parametrize(("limit", "ok"), [(9, False), (10, True), (5000, True), (5001, False)])
def test_limit_bounds(sandbox: Sandbox, limit: int, ok: bool) -> None:
    body = get(sandbox, limit=limit).json()
    if ok:
        assert len(body["results"]) == min(limit, 1000)
    else:
        assert body == {"status": "ERROR", "errors": ["Limit must be between 10 and 5000"]}


def test_error_status_is_configurable(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(calls=10, error_status=400)
    assert get(sb, api_key="x").status_code == 400
    assert get(sb).status_code == 200


def test_sms_is_an_empty_ok_result(sandbox: Sandbox) -> None:
    assert data(sandbox, type="sms") == {"status": "OK", "totalResults": 0, "results": []}


def test_page_must_be_a_positive_integer(sandbox: Sandbox) -> None:
    assert get(sandbox, page=0).json()["errors"] == ["Invalid parameter page"]
    assert get(sandbox, page="x").json()["errors"] == ["Invalid parameter page"]


def test_reversed_range_is_empty(sandbox: Sandbox) -> None:
    body = data(sandbox, start_date="2024-02-02", end_date="2024-02-01")
    assert body == {"status": "OK", "totalResults": 0, "results": []}


def test_unknown_path_is_404(sandbox: Sandbox) -> None:
    response = requests.get(sandbox.url.replace("/data-api", "/other"), timeout=10)
    assert response.status_code == 404


# ---------------------------------------------------------------- group_by_day and filters


def test_group_by_day_matches_truth_and_paginates(sandbox: Sandbox) -> None:
    truth = sandbox.truth_daily()
    body = data(sandbox, group_by_day="true", limit=5000)
    assert body["totalResults"] == len(truth)
    assert body["results"] == truth[::-1]
    assert sum(row["calls"] for row in truth) == 1000
    page = data(sandbox, group_by_day="true", limit=10, page=2)
    assert page["nextPage"] == 3
    assert page["results"] == truth[::-1][10:20]
    calls = sandbox.truth_calls("2024-03-01", "2024-03-01")
    day = sandbox.truth_daily("2024-03-01", "2024-03-01")
    assert day == [
        {
            "date": "2024-03-01",
            "calls": len(calls),
            "duration": sum(c["duration"] for c in calls),
            "revenue": round(sum(c["revenue"] for c in calls), 2),
        }
    ]


@pytest.mark.parametrize(
    ("param", "field", "value"),
    [
        ("tracking_phone", "trackingNumber", "0974590003"),
        ("phone", "phone", "0472123456"),
        ("offline_phone_description", "trackingNumber", "Flyer printemps"),
    ],
)
def test_filters(sandbox: Sandbox, param: str, field: str, value: str) -> None:
    truth = sandbox.truth_calls(**{param: value})
    assert 0 < len(truth) < 1000
    body = data(sandbox, limit=5000, **{param: value})
    assert body["totalResults"] == len(truth)
    assert [key_of(c) for c in body["results"]] == [truth_key(c) for c in truth[::-1]]
    if param == "offline_phone_description":
        static = {t["tracking_number"] for t in sandbox.tracking_numbers if t[param] == value}
        assert {c["trackingNumber"] for c in body["results"]} == static
        assert all(c["source"] == "" and c["visitId"] == "" for c in body["results"])
    else:
        assert {c[field] for c in body["results"]} == {value}


def test_static_calls_are_a_small_share(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(calls=5000)
    static = {t["tracking_number"] for t in sb.tracking_numbers if t["offline_phone_description"]}
    share = sum(c["tracking_number"] in static for c in sb.truth_calls()) / 5000
    assert 0.05 <= share <= 0.10


def test_caller_filter_is_exact(sandbox: Sandbox) -> None:
    caller = next(c["caller"] for c in sandbox.truth_calls()[500:] if c["caller"])
    body = data(sandbox, caller_phone=caller)
    assert body["totalResults"] == len(sandbox.truth_calls(caller_phone=caller)) >= 1
    assert {c["caller"] for c in body["results"]} == {caller}
    assert data(sandbox, caller_phone=caller[:-1])["totalResults"] == 0


def test_group_by_day_honours_filters(sandbox: Sandbox) -> None:
    calls = sandbox.truth_calls(tracking_phone="0974590001")
    rows = data(sandbox, group_by_day="true", tracking_phone="0974590001", limit=5000)["results"]
    assert sum(r["calls"] for r in rows) == len(calls)


# ---------------------------------------------------------------- response styles


CAMEL_KEYS = {
    "startDate", "caller", "trackingNumber", "phone", "triggerType", "source", "url", "referer",
    "keyword", "callPath", "status", "duration", "revenue", "keypad", "isRedirect",
    "expiredRedirect", "clientData", "visitId",
}  # fmt: skip


def test_camel_naming_and_native_values_by_default(sandbox: Sandbox) -> None:
    body = data(sandbox, limit=1000)
    assert set(body) == {"status", "totalResults", "results"}  # last page: no nextPage
    for call in body["results"]:
        assert set(call) == CAMEL_KEYS
        assert isinstance(call["duration"], int)
        assert isinstance(call["revenue"], float)
        assert isinstance(call["isRedirect"], bool)
        assert call["triggerType"] in {"1", "2", "3", "4"}
        assert call["status"] in {"succès", "occupé", "aucune réponse"}
        assert call["status"] == "succès" or call["duration"] == 0
        hidden = call["caller"] == ""
        for number in (
            call["trackingNumber"],
            call["phone"],
            *([] if hidden else [call["caller"]]),
        ):
            assert len(number) == 10
            assert number.startswith("0")
            assert number.isdigit()
        assert hidden or call["caller"][:2] in {"06", "07", "01"}
        if call["source"]:
            assert call["url"] == call["callPath"].split("\n")[-1]


def test_snake_naming_and_php_values(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(calls=300, naming="snake", values="php")
    body = data(sb, limit=50)
    assert body["total_results"] == "300"
    assert body["next_page"] == "2"
    truth = sb.truth_calls()[::-1][:50]
    for call, native in zip(body["results"], truth, strict=True):
        assert set(call) == set(native)
        assert all(isinstance(v, str) for v in call.values())
        assert call["revenue"] == f"{native['revenue']:.2f}"
        assert call["duration"] == str(native["duration"])
        assert call["is_redirect"] == ("1" if native["is_redirect"] else "0")
    rows = data(sb, group_by_day="true", limit=10)["results"]
    assert all(isinstance(v, str) for row in rows for v in row.values())
    assert all(len(row["revenue"].split(".")[1]) == 2 for row in rows)


def test_extra_fields_are_added(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(calls=50, extra_fields=True)
    call = data(sb, limit=10)["results"][0]
    assert set(call) == CAMEL_KEYS | {"recordingUrl", "callerCity"}
    assert "recording_url" in sb.truth_calls()[0]


def test_bad_style_is_rejected() -> None:
    with pytest.raises(ValueError, match="naming"):
        Sandbox(calls=10, naming="kebab")  # type: ignore[arg-type]


# ---------------------------------------------------------------- data generation


def test_data_is_deterministic_from_the_seed(make_sandbox: MakeSandbox) -> None:
    a = make_sandbox(calls=500, seed=7)
    b = make_sandbox(calls=500, seed=7)
    c = make_sandbox(calls=500, seed=8)
    assert a.truth_calls() == b.truth_calls()
    assert data(a, limit=500) == data(b, limit=500)
    assert a.truth_calls() != c.truth_calls()


def test_dst_days_and_key_uniqueness(make_sandbox: MakeSandbox) -> None:
    autumn = make_sandbox(
        calls=20000,
        start_date="2024-10-27",
        end_date="2024-10-27",
        lookalikes=0,
        hidden_callers=0,
    )
    starts = [c["start_date"] for c in autumn.truth_calls()]
    # Time order goes back from 02:59:59 to 02:00:00: the repeated hour is present.
    assert any(later < earlier for earlier, later in itertools.pairwise(starts))
    assert len({truth_key(c) for c in autumn.truth_calls()}) == 20000
    spring = Sandbox(calls=5000, start_date="2024-03-31", end_date="2024-03-31")
    hours = {c["start_date"][11:13] for c in spring.truth_calls()}
    assert "02" not in hours
    assert {"01", "03"} <= hours


def test_insert_call_around_midnight_and_dst(sandbox: Sandbox) -> None:
    call = sandbox.insert_call("2024-03-31 00:30:00", caller="0612345678")
    body = data(sandbox, start_date="2024-03-31", end_date="2024-03-31", caller_phone="0612345678")
    assert [c["startDate"] for c in body["results"]] == ["2024-03-31 00:30:00"]
    assert (
        data(sandbox, start_date="2024-03-30", end_date="2024-03-30", caller_phone="0612345678")[
            "totalResults"
        ]
        == 0
    )
    assert call["caller"] == "0612345678"
    with pytest.raises(ValueError, match="does not exist"):
        sandbox.insert_call("2024-03-31 02:30:00")
    first = sandbox.insert_call("2024-03-30 02:30:00", caller="0699999999")
    with pytest.raises(ValueError, match="same key"):
        sandbox.insert_call(
            "2024-03-30 02:30:00",
            caller="0699999999",
            tracking_number=first["tracking_number"],
            phone=first["phone"],
        )


def test_autumn_fold_calls(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(calls=10, start_date="2024-10-01", end_date="2024-10-31")
    a = sb.insert_call("2024-10-27 02:30:00", caller="0611112222", tracking_number="0974590001")
    b = sb.insert_call(
        "2024-10-27 02:30:00", fold=1, caller="0611112222", tracking_number="0974590002"
    )
    body = data(sb, start_date="2024-10-27", end_date="2024-10-27", caller_phone="0611112222")
    # Newest first: the second pass through 02:30 (UTC+1) comes before the first (UTC+2).
    assert [c["trackingNumber"] for c in body["results"]] == [
        b["tracking_number"],
        a["tracking_number"],
    ]


# ---------------------------------------------------------------- mutations


def test_add_calls_late_arrivals_are_served(sandbox: Sandbox) -> None:
    before = data(sandbox, start_date="2024-01-10", end_date="2024-01-10")["totalResults"]
    added = sandbox.add_calls(5, "2024-01-10", "2024-01-10")
    assert len(added) == 5
    assert all(c["start_date"].startswith("2024-01-10") for c in added)
    body = data(sandbox, start_date="2024-01-10", end_date="2024-01-10", limit=5000)
    assert body["totalResults"] == before + 5
    served = {key_of(c) for c in body["results"]}
    assert {truth_key(c) for c in added} <= served
    assert data(sandbox)["totalResults"] == 1005
    assert sandbox.truth_daily("2024-01-10", "2024-01-10")[0]["calls"] == before + 5
    assert data(sandbox, group_by_day="true", limit=5000)["results"] == sandbox.truth_daily()[::-1]


def test_update_calls_changes_status_duration_revenue(sandbox: Sandbox) -> None:
    before = sandbox.truth_calls()
    updated = sandbox.update_calls(4)
    # Calls keep their place in the truth: the changed ones pair up with what they were.
    changed = [(b, a) for b, a in zip(before, sandbox.truth_calls(), strict=True) if b != a]
    assert [new for _old, new in changed] == updated
    assert len(updated) == 4
    for old, new in changed:
        assert new["status"] != old["status"]
        assert {k: v for k, v in new.items() if k not in ("status", "duration", "revenue")} == {
            k: v for k, v in old.items() if k not in ("status", "duration", "revenue")
        }
        day = new["start_date"][:10]
        served = data(sandbox, start_date=day, end_date=day, limit=5000)["results"]
        assert [(key_of(c), c["status"], c["duration"], c["revenue"]) for c in served] == [
            (truth_key(c), c["status"], c["duration"], c["revenue"])
            for c in sandbox.truth_calls(day, day)[::-1]
        ]
    assert data(sandbox, group_by_day="true", limit=5000)["results"] == sandbox.truth_daily()[::-1]
    assert sum(r["duration"] for r in sandbox.truth_daily()) == sum(
        c["duration"] for c in sandbox.truth_calls()
    )


def test_mutations_are_deterministic(make_sandbox: MakeSandbox) -> None:
    a = make_sandbox(calls=200)
    b = make_sandbox(calls=200)
    assert a.add_calls(3, "2024-02-01", "2024-02-05") == b.add_calls(3, "2024-02-01", "2024-02-05")
    assert a.update_calls(3) == b.update_calls(3)


# ---------------------------------------------------------------- messy data, misbehaving servers

ONE_DAY: dict[str, Any] = {"start_date": "2024-02-01", "end_date": "2024-02-01"}


def walk(sb: Sandbox, limit: int = 10, **params: Any) -> tuple[list[dict[str, Any]], set[int]]:
    """Every row of a window paged through ``next_page``, and the totals announced."""
    rows: list[dict[str, Any]] = []
    totals: set[int] = set()
    page = 1
    while True:
        body = data(sb, limit=limit, page=page, **params)
        rows.extend(body["results"])
        totals.add(body["total_results" if "total_results" in body else "totalResults"])
        if "nextPage" not in body and "next_page" not in body:
            return rows, totals
        page += 1


def as_counter(rows: list[dict[str, Any]]) -> Counter[str]:
    return Counter(json.dumps(row, sort_keys=True) for row in rows)


def test_default_data_holds_lookalikes_and_hidden_callers(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(calls=30400)
    truth = sb.truth_calls()
    keys = Counter(truth_key(c) for c in truth)
    lookalikes = len(truth) - len(keys)  # calls sharing the key of an earlier one
    assert 0.010 <= lookalikes / len(truth) <= 0.016
    assert 0.025 <= sum(c["caller"] == "" for c in truth) / len(truth) <= 0.035
    # The truth counts every call, look-alikes included, and so does the server.
    assert sb.total_calls == data(sb)["totalResults"] == 30400
    assert sum(r["calls"] for r in sb.truth_daily()) == 30400
    # A look-alike group is served whole, its callers found by the caller filter.
    start, caller, track, phone = next(k for k, n in keys.items() if n > 1 and k[1])
    day = start[:10]
    body = data(sb, start_date=day, end_date=day, caller_phone=caller, tracking_phone=track)
    assert [key_of(c) for c in body["results"]].count((start, caller, track, phone)) >= 2
    # Twins draw their other fields anew: most differ from their first in visit or outcome.
    groups: dict[tuple[str, str, str, str], set[str]] = {k: set() for k, n in keys.items() if n > 1}
    for call in truth:
        groups.get(truth_key(call), set()).add(json.dumps(call))
    assert sum(len(rows) > 1 for rows in groups.values()) > len(groups) / 2


def test_no_lookalikes_and_no_hidden_callers_on_request(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(calls=30400, lookalikes=0, hidden_callers=0)
    truth = sb.truth_calls()
    assert len({truth_key(c) for c in truth}) == 30400
    assert all(c["caller"] for c in truth)
    with pytest.raises(ValueError, match="lookalikes"):
        Sandbox(calls=10, lookalikes=1.5)


def test_hidden_callers_are_not_found_by_a_caller_filter(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(calls=5000, lookalikes=0, hidden_callers=0.5)
    truth = sb.truth_calls()
    hidden = sum(c["caller"] == "" for c in truth)
    assert 2000 < hidden < 3000
    callers = {c["caller"] for c in truth if c["caller"]}
    found = sum(len(sb.truth_calls(caller_phone=c)) for c in callers)
    assert found == len(truth) - hidden


def test_insert_call_can_add_a_lookalike(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(calls=30)
    first = sb.insert_call("2024-02-01 10:00:00", caller="", tracking_number="0974590101")
    fields = {k: first[k] for k in ("caller", "tracking_number", "phone")}
    with pytest.raises(ValueError, match="same key"):
        sb.insert_call("2024-02-01 10:00:00", **fields)
    twin = sb.insert_call("2024-02-01 10:00:00", allow_lookalike=True, **fields)
    assert truth_key(twin) == truth_key(first)
    body = data(sb, **ONE_DAY, tracking_phone="0974590101", limit=5000)
    assert [key_of(c) for c in body["results"]].count(truth_key(first)) == 2
    assert sb.truth_daily(*ONE_DAY.values())[0]["calls"] == body["totalResults"]


def test_unstable_ties_repeat_and_skip_rows_across_pages(make_sandbox: MakeSandbox) -> None:
    many_ties = {"calls": 600, **ONE_DAY, "lookalikes": 0.5, "naming": "snake"}
    stable = make_sandbox(**many_ties)
    rows, totals = walk(stable, **ONE_DAY)
    assert rows == stable.truth_calls()[::-1]
    unstable = make_sandbox(**many_ties, unstable_ties=True)
    truth = unstable.truth_calls()
    assert truth == stable.truth_calls()
    rows, totals = walk(unstable, **ONE_DAY)
    assert totals == {600}
    assert len(rows) == 600
    starts = [r["start_date"] for r in rows]
    assert starts == sorted(starts, reverse=True), "every page is a slice of a newest-first order"
    served, expected = as_counter(rows), as_counter(truth)
    repeated, missed = served - expected, expected - served
    assert sum(repeated.values()) == sum(missed.values()) > 0
    # One query holds one order: a single page of the whole day is the truth, reordered.
    assert as_counter(data(unstable, **ONE_DAY, limit=5000)["results"]) == expected
    grouped = data(unstable, **ONE_DAY, group_by_day="true")["results"]
    assert grouped == unstable.truth_daily()


def test_a_server_ignoring_page_serves_page_one_every_time(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(calls=70, **ONE_DAY, ignore_page=True)
    first = data(sb, **ONE_DAY, limit=10)
    rows, totals = walk(sb, **ONE_DAY)
    assert totals == {70}
    assert len(rows) == 70
    assert rows == first["results"] * 7, "7 pages, each page 1's 10 rows"
    assert "nextPage" not in data(sb, **ONE_DAY, limit=10, page=7)
    assert data(sb, **ONE_DAY, limit=10, page=9)["results"] == first["results"]
    days = make_sandbox(calls=500, ignore_page=True)
    page_1 = data(days, group_by_day="true", limit=10)
    page_2 = data(days, group_by_day="true", limit=10, page=2)
    assert page_2["results"] == page_1["results"] == days.truth_daily()[::-1][:10]
    assert (page_2["totalResults"], page_2["nextPage"]) == (91, 3)


def test_a_call_arriving_while_a_window_is_paged(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(calls=70, **ONE_DAY, accounts={KEY_B: {"calls": 70}})
    sb.arrive_while_paging()
    sb.arrive_while_paging(after_page=2, api_key=KEY_B)
    before = sb.truth_calls()
    data(sb, **ONE_DAY, group_by_day="true")  # per-day rows neither fire nor disarm it
    data(sb, **ONE_DAY, limit=10, page=2)  # another page does not fire it either
    assert sb.truth_calls() == before
    page_1 = data(sb, **ONE_DAY, limit=10)
    assert page_1["totalResults"] == 70
    truth = sb.truth_calls()
    assert len(truth) == 71
    assert truth[:-1] == before
    newest = truth[-1]
    assert newest["start_date"] > before[-1]["start_date"]
    reread = data(sb, **ONE_DAY, limit=10)
    assert reread["results"][0]["startDate"] == newest["start_date"]
    page_2 = data(sb, **ONE_DAY, limit=10, page=2)
    assert page_2["totalResults"] == 71
    assert page_2["results"][0] == page_1["results"][-1], "every later row moved down by one"
    data(sb, **ONE_DAY, limit=10, page=1)
    assert len(sb.truth_calls()) == 71, "it fires once"
    assert sb.truth_daily()[0]["calls"] == 71
    assert data(sb, **ONE_DAY, group_by_day="true")["results"] == sb.truth_daily()
    assert sb.total_calls == 71
    assert len(sb.truth_calls(api_key=KEY_B)) == 70, "the other account waits for its page 2"
    data(sb, **ONE_DAY, api_key=KEY_B, limit=10, page=2)
    assert len(sb.truth_calls(api_key=KEY_B)) == 71
    with pytest.raises(KeyError):
        sb.arrive_while_paging(api_key="nobody")


# ---------------------------------------------------------------- faults


@pytest.mark.parametrize("kind", ["http500", "http502", "http503"])
def test_server_error_faults(make_sandbox: MakeSandbox, kind: str) -> None:
    sb = make_sandbox(calls=50)
    sb.add_fault(kind)  # type: ignore[arg-type]
    response = get(sb)
    assert response.status_code == int(kind[4:])
    assert response.headers["Content-Type"].startswith("text/html")
    sb.clear_faults()
    assert get(sb).status_code == 200


def test_http429_carries_retry_after(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(calls=50)
    sb.add_fault("http429", retry_after=7)
    response = get(sb)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"


def test_reset_closes_before_any_byte(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(calls=50)
    sb.add_fault("reset", first=1)
    with pytest.raises(requests.ConnectionError):
        get(sb)
    assert get(sb).status_code == 200
    assert [(r.status, r.fault) for r in sb.requests] == [(None, "reset"), (200, None)]


def test_truncated_body_is_invalid_json(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(calls=50)
    sb.add_fault("truncated")
    response = get(sb)
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.text)


def test_cannot_handle_envelope(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(calls=50)
    sb.add_fault("cannot_handle")
    response = get(sb)
    assert response.status_code == 200
    assert response.json() == {"status": "ERROR", "errors": ["Cannot handle request"]}


def test_latency_fault_and_option(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(calls=50)
    sb.add_fault("latency", seconds=0.3, first=1)
    started = time.monotonic()
    assert data(sb)["totalResults"] == 50
    assert time.monotonic() - started >= 0.3
    slow = make_sandbox(calls=50, latency=0.2)
    started = time.monotonic()
    get(slow)
    assert time.monotonic() - started >= 0.2


def test_stuck_paginator_never_ends(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(calls=25)
    sb.add_fault("stuck")
    last = data(sb, limit=10, page=3)
    assert len(last["results"]) == 5
    assert last["nextPage"] == 4
    beyond = data(sb, limit=10, page=4)
    assert beyond["results"] == []
    assert beyond["nextPage"] == 5


def test_first_k_per_query_then_success(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(calls=50)
    sb.add_fault("http503", first=2)
    for page in (1, 2):
        assert [get(sb, limit=10, page=page).status_code for _ in range(3)] == [503, 503, 200]
    # A different api_key is the same query: its counter is already spent.
    assert get(sb, limit=10, page=1, api_key="other").status_code == 200


def test_first_k_per_request_counts_overall(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(calls=50)
    sb.add_fault("http500", first=2, per="request")
    codes = [get(sb, limit=10, page=p).status_code for p in (1, 2, 3, 4)]
    assert codes == [500, 500, 200, 200]


def test_faults_chain_in_order(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(calls=50)
    sb.add_fault("http502", first=1)
    sb.add_fault("cannot_handle", first=1)
    first, second, third = (get(sb) for _ in range(3))
    assert first.status_code == 502
    assert second.json()["errors"] == ["Cannot handle request"]
    assert third.json()["status"] == "OK"
    assert [r.fault for r in sb.requests] == ["http502", "cannot_handle", None]


def test_unknown_fault_kind_is_rejected(sandbox: Sandbox) -> None:
    assert "stuck" in FAULT_KINDS
    with pytest.raises(ValueError, match="unknown fault"):
        sandbox.add_fault("explode")  # type: ignore[arg-type]


# ---------------------------------------------------------------- request log and logging


def test_concurrent_requests_are_all_logged(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(calls=500)
    sb.add_fault("http500", first=1)

    def fetch(page: int) -> list[int]:
        return [get(sb, limit=10, page=page).status_code for _ in range(3)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(fetch, range(1, 9)))
    assert all(codes == [500, 200, 200] for codes in results)
    assert len(sb.requests) == 24


def test_request_log_masks_the_key(sandbox: Sandbox) -> None:
    get(sandbox, limit=20, page=2)
    get(sandbox, api_key="wrong")
    first, second = sandbox.requests
    assert first.method == "GET"
    assert first.path == "/data-api"
    assert first.params == {"api_key": "***", "type": "calls", **RANGE, "limit": "20", "page": "2"}
    assert first.status == 200
    assert first.fault is None
    assert first.time <= second.time
    assert second.params["api_key"] == "***"
    sandbox.clear_requests()
    assert sandbox.requests == []


def test_server_is_silent_and_verbose_mode_masks_the_key(
    make_sandbox: MakeSandbox, capfd: pytest.CaptureFixture[str]
) -> None:
    quiet = make_sandbox(calls=10, api_key="s3cr3t-quiet")
    requests.get(quiet.url, params={"api_key": "s3cr3t-quiet"}, timeout=10)
    assert capfd.readouterr().err == ""
    loud = make_sandbox(calls=10, api_key="s3cr3t-loud", verbose=True)
    requests.get(loud.url, params={"api_key": "s3cr3t-loud", "type": "calls"}, timeout=10)
    err = capfd.readouterr().err
    assert "/data-api" in err
    assert "s3cr3t" not in err


# ---------------------------------------------------------------- command line


@contextlib.contextmanager
def sandbox_cli(
    *args: str, lines: int, stop: signal.Signals = signal.SIGTERM
) -> Iterator[list[str]]:
    """`optico-sandbox ARGS` on a free port: its first output lines; it must exit 0 on `stop`."""
    exe = shutil.which("optico-sandbox", path=os.path.dirname(sys.executable))
    command = [exe] if exe else [sys.executable, "-m", "optico_sandbox.cli"]
    proc = subprocess.Popen([*command, "--port", "0", *args], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield [proc.stdout.readline() for _ in range(lines)]
    finally:
        proc.send_signal(stop)
        assert proc.wait(timeout=10) == 0
        if proc.stdout is not None:
            proc.stdout.close()


def url_of(lines: list[str]) -> str:
    return next(line.split(": ", 1)[1].strip() for line in lines if line.startswith("URL:"))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_cli_serves_until_interrupted(signum: signal.Signals) -> None:
    args = ("--calls", "200", "--api-key", "cli-key", "--naming", "snake")
    with sandbox_cli(*args, lines=3, stop=signum) as lines:
        url = url_of(lines)
        assert any(line.strip() == "API key: cli-key" for line in lines)
        assert url.startswith("http://127.0.0.1:")
        assert url.endswith("/data-api")
        params = {"api_key": "cli-key", "type": "calls", **RANGE}
        body = requests.get(url, params=params, timeout=10).json()
        assert body["total_results"] == 200


def test_cli_misbehaves_on_request() -> None:
    args = ("--calls", "70", "--api-key", "cli-key", "--ignore-page", "--unstable-ties")
    with sandbox_cli(*args, "--lookalikes", "0", "--hidden-callers", "0", lines=3) as lines:
        params = {"api_key": "cli-key", "type": "calls", **RANGE, "limit": "10"}
        pages = [
            requests.get(url_of(lines), params={**params, "page": page}, timeout=10).json()
            for page in ("1", "2")
        ]
        assert pages[0]["results"] == pages[1]["results"]
        assert all(c["caller"] for c in pages[0]["results"])
        assert pages[1]["nextPage"] == 3


# ---------------------------------------------------------------- several accounts


def accounts_sandbox(make_sandbox: MakeSandbox) -> Sandbox:
    return make_sandbox(
        calls=300,
        seed=1,
        accounts={
            KEY_B: {"calls": 1200, "seed": 2},
            KEY_C: {"calls": 80, "seed": 3, "start_date": "2024-02-01", "end_date": "2024-02-29"},
        },
    )


def test_each_key_is_an_account_with_calls_of_its_own(make_sandbox: MakeSandbox) -> None:
    sb = accounts_sandbox(make_sandbox)
    assert sb.api_keys == [KEY, KEY_B, KEY_C]
    assert [data(sb, api_key=k)["totalResults"] for k in sb.api_keys] == [300, 1200, 80]
    assert sb.truth_calls() == sb.truth_calls(api_key=KEY), "the default account is api_key's"
    truths = {k: sb.truth_calls(api_key=k) for k in sb.api_keys}
    assert [len(v) for v in truths.values()] == [300, 1200, 80]
    keys = [{truth_key(c) for c in calls} for calls in truths.values()]
    assert len(set().union(*keys)) == sum(map(len, keys)), "no call shared between accounts"
    assert {c["start_date"][:7] for c in truths[KEY_C]} == {"2024-02"}, "its own range"
    served = data(sb, api_key=KEY_B, limit=5000)["results"]
    assert sorted(key_of(c) for c in served) == sorted(truth_key(c) for c in truths[KEY_B])
    assert sb.store_for(KEY_C).count == 80
    assert sb.total_calls == 300


def test_per_account_daily_truth(make_sandbox: MakeSandbox) -> None:
    sb = accounts_sandbox(make_sandbox)
    for key in sb.api_keys:
        rows = data(sb, api_key=key, group_by_day="true", limit=5000)["results"]
        assert sorted(rows, key=lambda r: r["date"]) == sb.truth_daily(api_key=key)
    assert sum(r["calls"] for r in sb.truth_daily(api_key=KEY_B)) == 1200
    assert sb.truth_daily("2024-02-01", "2024-02-10", api_key=KEY_C) == [
        r for r in sb.truth_daily(api_key=KEY_C) if r["date"] <= "2024-02-10"
    ]


def test_an_unknown_key_is_refused_among_several(make_sandbox: MakeSandbox) -> None:
    sb = accounts_sandbox(make_sandbox)
    assert get(sb, api_key="key-delta").json() == {"status": "ERROR", "errors": ["Invalid api key"]}
    assert [r.account for r in sb.requests] == [None]
    with pytest.raises(KeyError):
        sb.truth_calls(api_key="key-delta")


def test_mutations_touch_one_account_only(make_sandbox: MakeSandbox) -> None:
    sb = accounts_sandbox(make_sandbox)
    before = {k: sb.truth_calls(api_key=k) for k in sb.api_keys}
    data(sb, api_key=KEY_B)  # fills the body cache: mutations must clear it
    added = sb.add_calls(7, "2024-03-01", "2024-03-02", api_key=KEY_B)
    changed = sb.update_calls(5, api_key=KEY_B)
    inserted = sb.insert_call("2024-03-15 10:00:00", api_key=KEY_B, status="occupé")
    assert data(sb, api_key=KEY_B)["totalResults"] == 1200 + 7 + 1
    assert sb.truth_calls(api_key=KEY) == before[KEY]
    assert sb.truth_calls(api_key=KEY_C) == before[KEY_C]
    bravo = sb.truth_calls(api_key=KEY_B)
    for call in [*added, *changed, inserted]:
        assert call in bravo
    # Without api_key, the mutations go to the default account, as before.
    sb.add_calls(2)
    assert sb.total_calls == 302
    assert len(sb.truth_calls(api_key=KEY_B)) == 1208


def test_accounts_are_deterministic_and_can_be_added_later(make_sandbox: MakeSandbox) -> None:
    one, two = accounts_sandbox(make_sandbox), accounts_sandbox(make_sandbox)
    for key in one.api_keys:
        assert one.truth_calls(api_key=key) == two.truth_calls(api_key=key)
    late = make_sandbox(calls=10)
    late.add_account("key-late", calls=40, seed=9)
    late.add_account("key-derived")  # no seed: one derived from the key
    assert data(late, api_key="key-late")["totalResults"] == 40
    derived = late.truth_calls(api_key="key-derived")
    assert len(derived) == 1000
    assert {truth_key(c) for c in derived}.isdisjoint(truth_key(c) for c in late.truth_calls())
    with pytest.raises(ValueError, match="already"):
        late.add_account("key-late")


def test_request_log_tells_accounts_apart_without_keys(make_sandbox: MakeSandbox) -> None:
    sb = accounts_sandbox(make_sandbox)
    for key in (KEY_C, KEY, KEY_B, "nobody"):
        get(sb, api_key=key)
    assert [r.account for r in sb.requests] == [2, 0, 1, None]
    assert [sb.account_of(k) for k in sb.api_keys] == [0, 1, 2]
    assert all(r.params["api_key"] == "***" for r in sb.requests)
    assert not any(k in repr(sb.requests) for k in sb.api_keys)


def test_a_fault_can_target_one_account(make_sandbox: MakeSandbox) -> None:
    sb = accounts_sandbox(make_sandbox)
    sb.add_fault("http503", api_key=KEY_B)
    sb.add_fault("cannot_handle", first=1, api_key=KEY_C)
    assert [get(sb, api_key=KEY_B).status_code for _ in range(3)] == [503, 503, 503]
    assert get(sb, api_key=KEY).status_code == 200
    assert get(sb, api_key=KEY_C).json()["errors"] == ["Cannot handle request"]
    assert data(sb, api_key=KEY_C)["totalResults"] == 80
    assert [(r.account, r.fault) for r in sb.requests] == [
        (1, "http503"),
        (1, "http503"),
        (1, "http503"),
        (0, None),
        (2, "cannot_handle"),
        (2, None),
    ]
    with pytest.raises(KeyError):
        sb.add_fault("http500", api_key="nobody")


def test_verbose_mode_masks_every_account_key(
    make_sandbox: MakeSandbox, capfd: pytest.CaptureFixture[str]
) -> None:
    sb = make_sandbox(calls=10, api_key="s3cr3t-one", verbose=True, accounts={"s3cr3t-two": {}})
    for key in sb.api_keys:
        requests.get(sb.url, params={"api_key": key, "type": "calls"}, timeout=10)
    err = capfd.readouterr().err
    assert err.count("/data-api") == 2
    assert "s3cr3t" not in err


def test_cli_serves_several_accounts() -> None:
    args = ("--calls", "50", "--api-key", "cli", "--accounts", "3")
    with sandbox_cli(*args, lines=5) as lines:
        url = url_of(lines)
        env = next(line for line in lines if line.startswith("TAP_OPTICO_ACCOUNTS="))
        listed = json.loads(env.split("=", 1)[1].strip().strip("'"))
        assert [a["api_key"] for a in listed] == ["cli", "cli-2", "cli-3"]
        assert len({a["name"] for a in listed}) == 3
        firsts = set()
        for account in listed:
            params = {"api_key": account["api_key"], "type": "calls", **RANGE}
            body = requests.get(url, params=params, timeout=10).json()
            assert body["totalResults"] == 50
            firsts.add(body["results"][0]["caller"] + body["results"][0]["startDate"])
        assert len(firsts) == 3, "each account its own calls"
