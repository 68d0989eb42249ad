"""The two streams of the Data API: one record per call, and one per day."""

from __future__ import annotations

import datetime as dt
import functools
import typing as t

from typing_extensions import override

from tap_optico import schemas
from tap_optico.client import OpticoStream
from tap_optico.coerce import Coercer
from tap_optico.records import CallRecords, daily_records
from tap_optico.tally import CallTally, DayTally
from tap_optico.times import local_days

if t.TYPE_CHECKING:
    import msgspec

    from tap_optico.windows import Window


class CallsStream(OpticoStream):
    """One record per tracked call; `call_id` is a digest of the call's identity (identity.py)."""

    name = "calls"
    primary_keys = ("account", "call_id")
    replication_key = "start_date"
    schema = schemas.CALLS

    @functools.cached_property
    def calls(self) -> CallRecords:
        """The normaliser of this sync's calls (its coercions count unreadable values)."""
        return CallRecords(self.settings.zone, self.logger)

    @property
    @override
    def coerce(self) -> Coercer:
        return self.calls.coerce

    @override
    def page_records(self, results: msgspec.Raw) -> list[dict[str, t.Any]]:
        return self.calls.page(results)

    @override
    def new_tally(self) -> CallTally:
        return CallTally(local_days(self.settings.zone))

    @override
    def ceiling(self, window: Window) -> str:
        """The window's last second, in UTC as records write start_date."""
        midnight = dt.datetime.combine(window.end + dt.timedelta(days=1), dt.time())
        last = midnight.replace(tzinfo=self.settings.zone) - dt.timedelta(seconds=1)
        return last.astimezone(dt.timezone.utc).isoformat()


class DailyCallsStream(OpticoStream):
    """One record per day (`group_by_day=true`): calls, total duration and revenue."""

    name = "daily_calls"
    primary_keys = ("account", "date")
    replication_key = "date"
    group_by_day = True
    schema = schemas.DAILY_CALLS

    @functools.cached_property
    @override
    def coerce(self) -> Coercer:
        return Coercer(self.name, self.logger)

    @override
    def page_records(self, results: msgspec.Raw) -> list[dict[str, t.Any]]:
        return daily_records(results, self.coerce)

    @override
    def new_tally(self) -> DayTally:
        return DayTally()

    @override
    def ceiling(self, window: Window) -> str:
        return window.end.isoformat()
