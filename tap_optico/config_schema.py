"""The settings users write: their JSON schema, and its errors told without a secret.

The setting names are an interface (the Hub definition, meltano.yml and users'
configs depend on them), so they are declared once, here. settings.py checks what
JSON Schema cannot express.
"""

from __future__ import annotations

import json
import typing as t

from singer_sdk import typing as th

if t.TYPE_CHECKING:
    from jsonschema import ValidationError

DEFAULT_API_URL = "https://www.optico.fr/data-api"
DEFAULT_ACCOUNT_NAME = "default"
MAX_ACCOUNT_NAME = 64
DEFAULT_TIMEZONE = "Europe/Paris"
MIN_PAGE_SIZE = 10
MAX_PAGE_SIZE = 5000
# One week: a window's first page holds about a week of calls for most accounts, a
# killed backfill loses at most a week of progress, and a year is only ~52 windows.
DEFAULT_WINDOW_DAYS = 7
DEFAULT_LOOKBACK_DAYS = 3
# Ten years: no one means a longer window, and far beyond it date arithmetic overflows.
MAX_WINDOW_DAYS = 3660
# Generous for a 5000-row page from a slow API, short enough to retry a dead socket.
DEFAULT_REQUEST_TIMEOUT = 60
# An hour for one answer is a hang, not a slow API; far beyond it socket timeouts overflow.
MAX_REQUEST_TIMEOUT = 3600
DEFAULT_MAX_RETRIES = 6
# Three requests in flight: the next pages are fetched while the current one is written.
# With 2, a 300 ms API gives at most 2x a sequential sync (1.94x measured); 3 clears
# that with margin while staying gentle on the API (429s pause every worker).
DEFAULT_CONCURRENCY = 3
MAX_CONCURRENCY = 16

FILTERS = ("phone", "tracking_phone", "caller_phone", "offline_phone_description")

SCHEMA = th.PropertiesList(
    th.Property(
        "api_key",
        th.StringType,
        secret=True,
        title="API key",
        description=(
            "Your Optico Data API key (Optico > Account > Data API), for one account. It is "
            "sent as the `api_key` query parameter and is never logged. Set this or `accounts`."
        ),
    ),
    th.Property(
        "account_name",
        th.StringType,
        default=DEFAULT_ACCOUNT_NAME,
        title="Account name",
        description=(
            "The `account` value of the records synced with `api_key` (and its state partition)."
        ),
    ),
    th.Property(
        "accounts",
        th.ArrayType(
            th.ObjectType(
                th.Property("name", th.StringType, required=True),
                th.Property("api_key", th.StringType, required=True, secret=True),
            )
        ),
        secret=True,
        title="Accounts",
        description=(
            'Several Optico accounts synced together: a list of {"name": ..., "api_key": ...}, '
            "each name a short label unique in the list, written to the records' `account` "
            "column. Each account keeps its own bookmark. Set this or `api_key`."
        ),
    ),
    th.Property(
        "select_accounts",
        th.ArrayType(th.StringType),
        title="Select accounts",
        description=(
            "Names of the accounts to sync (default: all). Run disjoint selections in "
            "parallel, each with its own state id, to fan out across processes."
        ),
    ),
    th.Property(
        "start_date",
        th.DateType,
        required=True,
        title="Start date",
        description="First day synced (YYYY-MM-DD, in `timezone`) when there is no bookmark.",
    ),
    th.Property(
        "end_date",
        th.DateType,
        title="End date",
        description="Last day synced, inclusive (YYYY-MM-DD). Defaults to today in `timezone`.",
    ),
    th.Property(
        "api_url",
        th.StringType,
        default=DEFAULT_API_URL,
        title="API URL",
        description="The Data API endpoint. Change it only to use a proxy or the sandbox.",
    ),
    th.Property(
        "page_size",
        th.IntegerType(minimum=MIN_PAGE_SIZE, maximum=MAX_PAGE_SIZE),
        default=MAX_PAGE_SIZE,
        title="Page size",
        description=(
            "Results per request, sent as `limit` (10 to 5000). "
            "The maximum means the fewest requests."
        ),
    ),
    th.Property(
        "phone",
        th.StringType,
        title="Destination phone filter",
        description="Only calls forwarded to this destination number.",
    ),
    th.Property(
        "tracking_phone",
        th.StringType,
        title="Tracking phone filter",
        description="Only calls made to this tracking number.",
    ),
    th.Property(
        "caller_phone",
        th.StringType,
        title="Caller phone filter",
        description="Only calls from this caller number.",
    ),
    th.Property(
        "offline_phone_description",
        th.StringType,
        title="Offline phone description filter",
        description=("Only calls to the static (offline) tracking number with this description."),
    ),
    th.Property(
        "timezone",
        th.StringType,
        default=DEFAULT_TIMEZONE,
        title="Time zone",
        description=(
            "IANA zone of the API's local times and dates. Timestamps are emitted in UTC."
        ),
    ),
    th.Property(
        "lookback_days",
        th.IntegerType(minimum=0),
        default=DEFAULT_LOOKBACK_DAYS,
        title="Lookback days",
        description=(
            "Days before the bookmark re-read on each run, to pick up late calls and "
            "changes to status, duration and revenue."
        ),
    ),
    th.Property(
        "window_days",
        th.IntegerType(minimum=1, maximum=MAX_WINDOW_DAYS),
        default=DEFAULT_WINDOW_DAYS,
        title="Window days",
        description=(
            "Days per request window. The bookmark advances after each window, so a "
            "killed sync resumes at the last completed window."
        ),
    ),
    th.Property(
        "request_timeout",
        th.IntegerType(minimum=1, maximum=MAX_REQUEST_TIMEOUT),
        default=DEFAULT_REQUEST_TIMEOUT,
        title="Request timeout",
        description="Seconds to wait for each HTTP response before retrying.",
    ),
    th.Property(
        "max_retries",
        th.IntegerType(minimum=0),
        default=DEFAULT_MAX_RETRIES,
        title="Max retries",
        description=(
            "Retries of a failed request (HTTP 429 and 5xx, timeouts, dropped "
            "connections, `Cannot handle request`), with exponential backoff and jitter."
        ),
    ),
    th.Property(
        "max_concurrent_requests",
        th.IntegerType(minimum=1, maximum=MAX_CONCURRENCY),
        default=DEFAULT_CONCURRENCY,
        title="Max concurrent requests",
        description=(
            "Requests in flight at once (1 to 16). Records and state are emitted in the "
            "same order whatever the value; 1 is strictly sequential."
        ),
    ),
).to_dict()

# Settings whose values may hold a key: no error quotes them, whatever their shape.
SECRET_SETTINGS = frozenset(
    name for name, spec in SCHEMA["properties"].items() if spec.get("secret")
)


class SettingsError(ValueError):
    """A setting is invalid; its message is one line meant for the user."""


def check_environment(environ: t.Mapping[str, str], prefix: str) -> None:
    """Refuse a setting given by an environment variable the SDK would fail to read.

    An integer setting must be an integer; a list (other than of strings, which may be
    comma-separated) or an object must be JSON.

    Raises:
        SettingsError: the variable names the setting and its value is unreadable.
    """
    for name, schema in SCHEMA["properties"].items():
        variable = f"{prefix}{name.upper()}"
        value = environ.get(variable)
        if value is None:
            continue
        kinds = _kinds(schema)
        if "integer" in kinds:
            try:
                int(value)
            except ValueError:
                msg = f"{name} from {variable}={value[:40]!r} is not an integer"
                raise SettingsError(msg) from None
        elif "object" in kinds or (
            "array" in kinds and "string" not in _kinds(schema.get("items") or {})
        ):
            try:
                json.loads(value)
            except (ValueError, RecursionError):
                # Not quoted: the value of `accounts` holds keys.
                msg = f"{name} from {variable} is not valid JSON"
                raise SettingsError(msg) from None


def schema_errors(schema: dict[str, t.Any], config: t.Mapping[str, t.Any]) -> list[str]:
    """The config's JSON Schema errors, worded as the SDK does, except under secret settings.

    jsonschema quotes the offending value, and a key in a misplaced bracket is one: an
    error under a secret setting says only where it is and the shape expected.
    """
    validator = th.DEFAULT_JSONSCHEMA_VALIDATOR(schema)
    return [_schema_error(error) for error in validator.iter_errors(dict(config))]


def _schema_error(error: ValidationError) -> str:
    path = list(error.absolute_path)
    where = f"config[{']['.join(repr(part) for part in path)}]"
    # A missing member is named from the schema, never from the value.
    if path and path[0] in SECRET_SETTINGS and error.validator != "required":
        expected = _expected(error.schema if isinstance(error.schema, dict) else {})
        return f"{where} must be {expected} (its value is not shown: it may hold a key)"
    return f"{error.message} in {where}" if path else error.message


def _expected(schema: dict[str, t.Any]) -> str:
    """What a schema asks for, in words: 'a list such as [{"name": ..., "api_key": ...}]'."""
    kinds = _kinds(schema)
    if kinds == ["array"] and isinstance(schema.get("items"), dict):
        return f"a list such as [{_example(schema['items'])}]"
    if kinds == ["object"]:
        return f"an object such as {_example(schema)}"
    return " or ".join(f"a {kind}" for kind in kinds)


def _example(schema: dict[str, t.Any]) -> str:
    if _kinds(schema) == ["object"]:
        return "{" + ", ".join(f'"{name}": ...' for name in schema.get("properties", {})) + "}"
    return "..."


def _kinds(schema: dict[str, t.Any]) -> list[str]:
    kinds = schema.get("type", [])
    return [kind for kind in ([kinds] if isinstance(kinds, str) else kinds) if kind != "null"]


def secret_values(config: t.Mapping[str, t.Any]) -> list[str]:
    """Every value under a secret setting, whatever its shape, but the names of accounts.

    What a well-formed config holds are the keys; a malformed one may hold them anywhere.
    Account names are labels printed in every log line: masking them would garble the logs.
    """
    found: list[str] = []

    def walk(value: t.Any) -> None:
        if isinstance(value, dict):
            for member, item in value.items():
                if not (member == "name" and isinstance(item, str)):
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
            found.append(str(value))

    for name in sorted(SECRET_SETTINGS):
        walk(config.get(name))
    return found
