"""Where a sync starts, and how its bookmark advances window by window.

The API returns each window newest first, so records are not in bookmark order
and the SDK keeps the running maximum as a progress marker. We promote that
marker to the bookmark (and write a STATE message) each time a window completes:
a sync killed at any instant resumes from its last completed window. The state
stays one small object per stream: no per-window partitions.
"""

from __future__ import annotations

import datetime as dt
import logging
import typing as t

if t.TYPE_CHECKING:
    import zoneinfo

    from singer_sdk import Stream

    from tap_optico.settings import Settings

# The SDK warns that progress markers are "not resumable"; ours are promoted after
# each window, so the warning (repeated once per window) would only mislead.
_UNSORTED_WARNING = "Stream is assumed to be unsorted"


class _DropUnsortedWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_UNSORTED_WARNING)


logging.getLogger("singer_sdk").addFilter(_DropUnsortedWarning())


def bookmark_day(value: str, zone: zoneinfo.ZoneInfo) -> dt.date:
    """The local calendar day of a bookmark: a date, or a UTC date-time of a call."""
    if len(value) == len("YYYY-MM-DD"):
        return dt.date.fromisoformat(value)
    moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(zone).date()


def first_day(settings: Settings, bookmark: str | None) -> dt.date:
    """The first day to read: the bookmark's day minus the lookback, never before start_date.

    Re-reading `lookback_days` before the bookmark picks up late-arriving calls and
    later changes to status, duration and revenue; targets upsert them on `call_id`.
    """
    if not bookmark:
        return settings.start_date
    day = bookmark_day(bookmark, settings.zone) - dt.timedelta(days=settings.lookback_days)
    return max(settings.start_date, day)


def bookmark(stream: Stream) -> str | None:
    """The stream's bookmark from the incoming state, if any."""
    value = stream.stream_state.get("replication_key_value")
    return str(value) if value else None


def commit_window(stream: Stream) -> None:
    """Promote the records seen so far to the bookmark and emit a STATE message.

    Call it only when every record of the window has been written. The signpost
    (the sync's start time, a ceiling for bookmarks) is kept for later windows.
    """
    signpost = stream.get_replication_key_signpost(None)
    stream.finalize_state_progress_markers()
    stream.state_manager.write_replication_key_signpost(signpost)
