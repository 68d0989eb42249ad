"""The `calls` and `daily_calls` streams: their schemas and their sync loop."""

from __future__ import annotations

import functools
import time
import typing as t

import requests
from requests.adapters import HTTPAdapter
from singer_sdk import Stream
from singer_sdk import typing as th
from singer_sdk.helpers.conform import TypeConformanceLevel

from tap_optico import __version__, bookmarks, calls
from tap_optico.calls import CallRecords, Coercer, rows
from tap_optico.client import DataAPI
from tap_optico.pagination import PageWalker
from tap_optico.settings import Settings
from tap_optico.windows import Window, cut

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from singer_sdk.helpers.types import Context

    from tap_optico.client import Page
    from tap_optico.tap import TapOptico


class OpticoStream(Stream):
    """A stream read from the Data API window by window, bookmark advancing per window."""

    # Records are built to match the schema exactly (see calls.py), so the SDK's
    # per-record conformance pass, its costliest step, is skipped.
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE
    # Newest first within a window: the bookmark is promoted per window (bookmarks.py).
    is_sorted = False
    group_by_day = False

    def __init__(self, tap: TapOptico) -> None:
        """A stream of this tap; its settings are the tap's, read when a sync needs them."""
        super().__init__(tap)
        self._optico = tap

    @property
    def settings(self) -> Settings:
        """The tap's validated settings."""
        return self._optico.settings

    def page_records(self, page: Page) -> list[dict[str, t.Any]]:
        """The records of one page of this stream."""
        raise NotImplementedError

    def generate_child_contexts(
        self, record: dict[str, t.Any], context: Context | None
    ) -> Iterable[Context | None]:
        """No child streams: skip the SDK's per-record child-context work."""
        return ()

    @property
    def coerce(self) -> Coercer:
        """The coercions of this stream's values; they count what they could not read."""
        raise NotImplementedError

    def finish(self) -> None:
        """Report once, at the end of the sync, the values emitted as null."""
        self.coerce.summary()

    def get_records(self, context: Context | None) -> Iterable[dict[str, t.Any]]:
        """Walk the windows from the bookmark (minus the lookback) to end_date."""
        settings = self.settings
        mark = bookmarks.bookmark(self)
        first = bookmarks.first_day(settings, mark)
        windows = cut(first, settings.end_date, settings.window_days)
        self.logger.info(
            "%s: reading %s..%s in %d window(s) of up to %d day(s) (bookmark %s, lookback %d)",
            self.name,
            first,
            settings.end_date,
            len(windows),
            settings.window_days,
            mark or "none",
            settings.lookback_days,
        )
        session = requests.Session()
        session.headers["User-Agent"] = f"tap-optico/{__version__}"
        session.mount("https://", HTTPAdapter(pool_maxsize=settings.concurrency))
        session.mount("http://", HTTPAdapter(pool_maxsize=settings.concurrency))
        api = DataAPI(
            settings,
            str(self.config["api_key"]),
            session,
            self.logger,
            group_by_day=self.group_by_day,
        )
        # In BATCH mode records reach the target only with their batch file, after
        # the SDK's own STATE: a STATE per window could overtake them.
        commit_per_window = self.get_batch_config(self.config) is None
        walker = PageWalker(api.fetch, windows, settings.page_size, settings.concurrency)
        with session, walker:
            for window in windows:
                yield from self._window_records(walker, window)
                if commit_per_window:
                    bookmarks.commit_window(self)
        self.finish()

    def _window_records(self, walker: PageWalker, window: Window) -> Iterator[dict[str, t.Any]]:
        """A window's records; re-read once if their count differs from total_results."""
        started = time.monotonic()
        for attempt in (1, 2):
            received = pages = 0
            total: int | None = None
            for page in walker.pages(window, again=attempt > 1):
                if total is None:
                    total = page.total
                pages += 1
                records = self.page_records(page)
                received += len(records)
                yield from records
            if total is None or received == total:
                break
            if attempt == 1:
                self.logger.warning(
                    "%s %s: received %d rows but the API announced %d; re-reading the window",
                    self.name,
                    window,
                    received,
                    total,
                )
            else:
                self.logger.warning(
                    "%s %s: received %d rows but the API announced %d, again; moving on",
                    self.name,
                    window,
                    received,
                    total,
                )
        self.logger.info(
            "%s %s: %d %s, %d page(s), %.1fs",
            self.name,
            window,
            received,
            "day(s)" if self.group_by_day else "call(s)",
            pages,
            time.monotonic() - started,
        )


class CallsStream(OpticoStream):
    """One record per tracked call; `call_id` is a digest of the call's identity."""

    name = "calls"
    primary_keys = ("call_id",)
    replication_key = "start_date"
    schema = th.PropertiesList(
        th.Property(
            "call_id",
            th.StringType,
            required=True,
            description=(
                "Stable id of the call: a BLAKE2b digest of its local start time, caller, "
                "tracking number and destination phone (the API has none)."
            ),
        ),
        th.Property(
            "start_date",
            th.DateTimeType,
            description="When the call started, in UTC (the API's local time read in `timezone`).",
        ),
        th.Property("caller", th.StringType, description="The caller's phone number."),
        th.Property("tracking_number", th.StringType, description="The tracking number called."),
        th.Property(
            "phone", th.StringType, description="The destination number the call was forwarded to."
        ),
        th.Property(
            "trigger_type",
            th.StringType,
            description=(
                'What triggered the call: "1" normal, "2" call back, "3" automatic rule, '
                '"4" manual invitation.'
            ),
        ),
        th.Property(
            "source",
            th.StringType,
            description='Visit source, e.g. "adwords", "Google", "traffic direct".',
        ),
        th.Property(
            "url", th.StringType, description="URL where the tracking number was displayed."
        ),
        th.Property("referer", th.StringType, description="Referring domain."),
        th.Property("keyword", th.StringType, description="Keyword that generated the visit."),
        th.Property(
            "call_path",
            th.StringType,
            description="Pages viewed during the visit, one per line, oldest first.",
        ),
        th.Property(
            "status",
            th.StringType,
            description='Call status as the API writes it: "succès", "occupé", "aucune réponse"…',
        ),
        th.Property("keypad", th.StringType, description="Keys pressed during the call."),
        th.Property(
            "client_data", th.StringType, description="Data attached to the phone numbers."
        ),
        th.Property("visit_id", th.StringType, description="Links the call to a website visit."),
        th.Property("duration", th.IntegerType, description="Call duration in seconds."),
        th.Property("revenue", th.NumberType, description="Estimated revenue of the call."),
        th.Property(
            "is_redirect", th.BooleanType, description="Redirected because there was no answer."
        ),
        th.Property(
            "expired_redirect",
            th.BooleanType,
            description="Redirected because the tracking number had expired.",
        ),
        th.Property(
            calls.EXTRA_FIELD,
            th.ObjectType(additional_properties=True),
            description="Fields the API sent that this version of the tap does not know, as sent.",
        ),
    ).to_dict()

    @functools.cached_property
    def _calls(self) -> CallRecords:
        return CallRecords(self.settings.zone, self.logger)

    @property
    def coerce(self) -> Coercer:
        """The coercions inside CallRecords."""
        return self._calls.coerce

    def page_records(self, page: Page) -> list[dict[str, t.Any]]:
        """See calls.CallRecords."""
        return self._calls.page(page.results)


class DailyCallsStream(OpticoStream):
    """One record per day (`group_by_day=true`): calls, total duration and revenue."""

    name = "daily_calls"
    primary_keys = ("date",)
    replication_key = "date"
    group_by_day = True
    schema = th.PropertiesList(
        th.Property("date", th.DateType, required=True, description="The local calendar day."),
        th.Property("calls", th.IntegerType, description="Number of calls that day."),
        th.Property(
            "duration", th.IntegerType, description="Total call duration that day, in seconds."
        ),
        th.Property("revenue", th.NumberType, description="Total estimated revenue that day."),
    ).to_dict()

    @functools.cached_property
    def coerce(self) -> Coercer:
        """Coercions of the day totals."""
        return Coercer(self.name, self.logger)

    def page_records(self, page: Page) -> list[dict[str, t.Any]]:
        """Coerce each day's totals; the date is kept as the API's YYYY-MM-DD."""
        coerce = self.coerce
        records = []
        for row in rows(page.results):
            day = coerce.string("date", row.get("date"))
            records.append(
                {
                    "date": day[:10] if day else None,
                    "calls": coerce.integer("calls", row.get("calls")),
                    "duration": coerce.integer("duration", row.get("duration")),
                    "revenue": coerce.number("revenue", row.get("revenue")),
                }
            )
        return records
