"""Where each account's sync starts, and how its bookmark advances window by window.

The API returns each window newest first, so records are not in bookmark order
and the SDK keeps the running maximum as a progress marker. We promote that
marker to the account's bookmark (and write a STATE message) each time a window
completes: a sync killed at any instant resumes every account from its own last
completed window. A window that cannot be completed is abandoned: its markers are
dropped, so the bookmark never passes calls that were not read.

This is the only module that touches the SDK's state internals (the partition
dicts and their keys); tests/test_bookmarks.py fails loudly if an SDK upgrade
changes them.
"""

from __future__ import annotations

import datetime as dt
import logging
import typing as t

from typing_extensions import override

from tap_optico.errors import OpticoError

if t.TYPE_CHECKING:
    import zoneinfo

    from singer_sdk import Stream
    from singer_sdk.helpers.types import Context

    from tap_optico.settings import Settings

# The SDK's names in a stream or partition state.
VALUE = "replication_key_value"
PARTITIONS = "partitions"
PROGRESS = "progress_markers"
SIGNPOST = "replication_key_signpost"

# The SDK warns, once per window, that progress markers are "not resumable"; ours are
# promoted after each window, so the warning would only mislead. It also warns once per
# record without a start_date: the coercions say it once per field, then count.
_QUIET_WARNINGS = ("Stream is assumed to be unsorted", "New replication value is null")


class StateError(OpticoError):
    """The incoming state holds a bookmark this tap cannot read."""


class _DropUnsortedWarning(logging.Filter):
    @override
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_QUIET_WARNINGS)


def quiet_unsorted_warning() -> None:
    """Drop the SDK's misleading and per-record warnings from its logs."""
    logger = logging.getLogger("singer_sdk")
    if not any(isinstance(f, _DropUnsortedWarning) for f in logger.filters):
        logger.addFilter(_DropUnsortedWarning())


def bookmark(stream: Stream, context: Context, *, inherits: bool) -> str | None:
    """The account's bookmark from the incoming state, if any.

    An account that `inherits` (the single `api_key` account, or the account of
    `accounts` named as it was) also reads states this tap did not write in its
    partition: the unpartitioned bookmark of earlier versions, and partitions of
    contexts it does not know (older SDK taps). The earliest wins, so upgrading starts
    nobody over and skips nothing.
    """
    partition = stream.get_context_state(context).get(VALUE)
    if partition is not None or not inherits:
        return _text(stream.name, partition)
    state = stream.stream_state
    found = [state.get(VALUE)]
    for other in state.get(PARTITIONS) or []:
        # Partitions with an `account` are this tap's, for other accounts.
        if isinstance(other, dict) and "account" not in (other.get("context") or {}):
            found.append(other.get(VALUE))
    values = [v for v in (_text(stream.name, value) for value in found) if v is not None]
    return min(values) if values else None


def _text(stream: str, value: t.Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _unreadable(stream, value)
    return value


def _unreadable(stream: str, value: t.Any) -> StateError:
    text = repr(value[:40] if isinstance(value, str) else value)
    return StateError(
        f"the state's {stream} bookmark {text} is not a date; fix or remove the state"
    )


def first_day(settings: Settings, mark: str | None, stream: str) -> dt.date:
    """The first day to read: the bookmark's day minus the lookback, never before start_date.

    Re-reading `lookback_days` before the bookmark picks up late-arriving calls and
    later changes to status, duration and revenue; targets upsert them.

    Raises:
        StateError: the bookmark is not a date or a date-time.
    """
    if not mark:
        return settings.start_date
    try:
        day = bookmark_day(mark, settings.zone) - dt.timedelta(days=settings.lookback_days)
    except OverflowError:  # a bookmark near year 1 or 9999: before start_date it is
        return settings.start_date
    except ValueError:
        raise _unreadable(stream, mark) from None
    return max(settings.start_date, day)


def bookmark_day(value: str, zone: zoneinfo.ZoneInfo) -> dt.date:
    """The local calendar day of a bookmark: a date, or a UTC date-time of a call."""
    if len(value) == len("YYYY-MM-DD"):
        return dt.date.fromisoformat(value)
    moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(zone).date()


def begin(stream: Stream, context: Context) -> None:
    """Cap the account's bookmark at the sync's start, as the SDK does unpartitioned.

    The SDK writes that cap (the signpost) beside the partitions, where nothing reads
    it and every STATE would carry it: it moves into the account's partition.
    """
    stream.stream_state.pop(SIGNPOST, None)
    signpost = stream.get_replication_key_signpost(context)
    if signpost:
        stream.state_manager.write_replication_key_signpost(signpost, context=context)


def commit_window(stream: Stream, context: Context, ceiling: str) -> None:
    """Promote the records seen so far to the account's bookmark and emit a STATE message.

    Call it only when every record of the window has been written. A row the API dated
    after the window (a stray 2099) is written but does not carry the bookmark past
    `ceiling`, the window's last instant: a later window is never skipped for it. The
    signpost (the sync's start time, another ceiling) is kept for later windows.
    """
    state = stream.get_context_state(context)
    signpost = state.get(SIGNPOST)
    stream.finalize_state_progress_markers(state)
    value = state.get(VALUE)
    if isinstance(value, str) and value > ceiling:
        state[VALUE] = ceiling
    if signpost is not None:
        state[SIGNPOST] = signpost


def abandon_window(stream: Stream, context: Context) -> None:
    """Forget the records of an unfinished window: the bookmark stays where it was."""
    stream.get_context_state(context).pop(PROGRESS, None)
