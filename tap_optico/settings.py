"""The settings a sync runs with: the checks JSON Schema cannot express, and the defaults.

The schema itself, and how its errors are told, is config_schema.py.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import typing as t
import unicodedata
import zoneinfo
from dataclasses import dataclass
from urllib.parse import urlsplit

from typing_extensions import override

from tap_optico.config_schema import (
    DEFAULT_ACCOUNT_NAME,
    DEFAULT_API_URL,
    DEFAULT_CONCURRENCY,
    DEFAULT_LOOKBACK_DAYS,
    DEFAULT_MAX_RETRIES,
    DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_TIMEZONE,
    DEFAULT_WINDOW_DAYS,
    FILTERS,
    MAX_ACCOUNT_NAME,
    MAX_PAGE_SIZE,
    MIN_PAGE_SIZE,
    SettingsError,
)

if t.TYPE_CHECKING:
    import logging

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


@dataclass(frozen=True)
class Account:
    """One Optico account: its label in records and state, and its key."""

    name: str
    api_key: str = ""

    @override
    def __repr__(self) -> str:
        """Name only: the key never reaches a log through a repr."""
        return f"Account({self.name!r})"


@dataclass(frozen=True)
class Settings:
    """The validated settings a sync runs with."""

    accounts: tuple[Account, ...]
    # The account of the single `api_key` setting: it inherits unpartitioned state.
    inheriting_account: str | None
    api_url: str
    start_date: dt.date
    end_date: dt.date
    page_size: int
    zone: zoneinfo.ZoneInfo
    lookback_days: int
    window_days: int
    request_timeout: int
    max_retries: int
    concurrency: int
    filters: dict[str, str]

    @classmethod
    def from_config(cls, config: t.Mapping[str, t.Any], logger: logging.Logger) -> Settings:
        """Check what the JSON schema cannot, and fill in defaults.

        Raises:
            SettingsError: a setting is invalid.
        """
        zone = _zone(config.get("timezone") or DEFAULT_TIMEZONE)
        start = _date("start_date", config["start_date"])
        today = dt.datetime.now(zone).date()
        end_value = config.get("end_date")
        end = _date("end_date", end_value) if end_value else today
        if start > end:
            msg = f"start_date {start} is after end_date {end}"
            raise SettingsError(msg)
        if end > today:
            # Days to come hold no calls: planning them would cost requests on every run.
            logger.info(
                "end_date %s is after today (%s in %s): syncing up to today", end, today, zone
            )
            end = today
            if start > end:
                msg = f"start_date {start} is after today ({today} in {zone}): nothing to sync"
                raise SettingsError(msg)
        page_size = int(config.get("page_size", MAX_PAGE_SIZE))
        if not MIN_PAGE_SIZE <= page_size <= MAX_PAGE_SIZE:
            msg = f"page_size must be between {MIN_PAGE_SIZE} and {MAX_PAGE_SIZE}, got {page_size}"
            raise SettingsError(msg)
        accounts, inheriting = _accounts(config)
        return cls(
            accounts=accounts,
            inheriting_account=inheriting,
            api_url=_api_url(config.get("api_url") or DEFAULT_API_URL),
            start_date=start,
            end_date=end,
            page_size=page_size,
            zone=zone,
            lookback_days=int(config.get("lookback_days", DEFAULT_LOOKBACK_DAYS)),
            window_days=int(config.get("window_days", DEFAULT_WINDOW_DAYS)),
            request_timeout=int(config.get("request_timeout", DEFAULT_REQUEST_TIMEOUT)),
            max_retries=int(config.get("max_retries", DEFAULT_MAX_RETRIES)),
            concurrency=int(config.get("max_concurrent_requests", DEFAULT_CONCURRENCY)),
            filters={name: str(config[name]) for name in FILTERS if config.get(name)},
        )


def _date(name: str, value: t.Any) -> dt.date:
    text = str(value)
    if len(text) > len("YYYY-MM-DD") and text[10] in "T ":
        text = text[:10]  # a date-time: keep its calendar date
    try:
        if not _DATE.fullmatch(text):
            raise ValueError(text)
        return dt.date.fromisoformat(text)
    except ValueError:
        msg = f"{name} {value!r} is not a calendar date in YYYY-MM-DD form"
        raise SettingsError(msg) from None


def _zone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        msg = f"timezone {name!r} is not a known IANA time zone (e.g. Europe/Paris)"
        raise SettingsError(msg) from None


def _accounts(config: t.Mapping[str, t.Any]) -> tuple[tuple[Account, ...], str | None]:
    """The accounts to sync, in the configured order, and the single-key one if any."""
    key, listed = config.get("api_key"), config.get("accounts")
    accounts: tuple[Account, ...]
    if key and listed is not None:
        raise SettingsError("set either api_key (one account) or accounts (several), not both")
    if key:
        name = _account_name("account_name", config.get("account_name") or DEFAULT_ACCOUNT_NAME)
        accounts = (Account(name, str(key)),)
        inheriting: str | None = name
    elif listed is None:
        raise SettingsError("set api_key (one account) or accounts (several)")
    else:
        if not isinstance(listed, list) or not listed:
            raise SettingsError(
                'accounts is empty: list at least one {"name": ..., "api_key": ...}'
            )
        found: list[Account] = []
        for index, entry in enumerate(listed):
            if not isinstance(entry, dict):
                msg = f'accounts[{index}] is not an object {{"name": ..., "api_key": ...}}'
                raise SettingsError(msg)
            name = _account_name(f"accounts[{index}].name", entry.get("name"))
            if name in [known.name for known in found]:
                raise SettingsError(f"accounts: the name {name!r} appears more than once")
            if not entry.get("api_key"):
                raise SettingsError(f"accounts: {name!r} has no api_key")
            found.append(Account(name, str(entry["api_key"])))
        accounts = tuple(found)
        # Moving from api_key to accounts: the account named as the single one was keeps
        # the bookmark of the state that single account wrote.
        single = _label(config.get("account_name") or DEFAULT_ACCOUNT_NAME)
        inheriting = single if any(a.name == single for a in accounts) else None
    selected = config.get("select_accounts")
    if selected is not None:
        if not selected:
            msg = "select_accounts is empty, so it selects no account: remove it to sync them all"
            raise SettingsError(msg)
        wanted = {_label(name) for name in selected}
        unknown = sorted(wanted - {a.name for a in accounts})
        if unknown:
            msg = f"select_accounts names {', '.join(map(repr, unknown))}, not in accounts"
            raise SettingsError(msg)
        accounts = tuple(a for a in accounts if a.name in wanted)
    return accounts, inheriting


def _label(value: t.Any) -> str:
    """An account name as records and state hold it: trimmed, and in NFC.

    Names that look the same are the same name: "Café" typed in NFC or NFD is one account.
    """
    return unicodedata.normalize("NFC", str(value or "")).strip()


def _account_name(setting: str, value: t.Any) -> str:
    name = _label(value)
    if not name or len(name) > MAX_ACCOUNT_NAME or not name.isprintable():
        msg = f"{setting} must be a short printable label (1 to {MAX_ACCOUNT_NAME} characters)"
        raise SettingsError(msg)
    return name


def _api_url(url: str) -> str:
    """An http(s) URL with a valid host; anything else is refused before any request."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 (raises on a port that is not a number)
    except ValueError:
        parts, host = None, ""
    if parts is None or parts.scheme not in ("http", "https") or not _valid_host(host):
        msg = f"api_url {url[:100]!r} must be an http(s) URL such as {DEFAULT_API_URL}"
        raise SettingsError(msg)
    return url


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        labels = host.rstrip(".").split(".")
        return len(host) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in labels)
    return True
