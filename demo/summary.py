"""Print what the quick start loaded into DuckDB: calls per source and per day.

Run with the target-duckdb plugin's Python (it has duckdb), as scripts/quickstart does:
    .meltano/loaders/target-duckdb/venv/bin/python demo/summary.py demo/quickstart.duckdb
"""

from __future__ import annotations

import collections
import datetime as dt
import sys
import zoneinfo

import duckdb

SCHEMA = "optico"  # meltano.yml: target-duckdb default_target_schema
ZONE = zoneinfo.ZoneInfo("Europe/Paris")  # the sandbox's (and the tap's default) zone
DAYS_SHOWN = 7
SOURCES_SHOWN = 4


def table(header: list[str], rows: list[list[str]]) -> str:
    """A plain text table, numbers right-aligned."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def main(path: str) -> int:
    """Summarise the calls and daily_calls tables of the DuckDB file at ``path``."""
    db = duckdb.connect(path, read_only=True)
    calls = db.sql("select start_date::varchar, source, revenue from optico.calls").fetchall()
    daily = db.sql(
        "select date, calls, duration, revenue from optico.daily_calls order by date"
    ).fetchall()
    if not calls:
        print("No calls loaded.")
        return 1

    # start_date is stored in UTC; count per local (Europe/Paris) day like the API does.
    per_day: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    per_source: collections.Counter[str] = collections.Counter()
    revenue: collections.Counter[str] = collections.Counter()
    for start, source, amount in calls:
        utc = dt.datetime.fromisoformat(start).replace(tzinfo=dt.timezone.utc)
        name = source or "(none)"
        per_day[utc.astimezone(ZONE).date().isoformat()][name] += 1
        per_source[name] += 1
        revenue[name] += amount or 0
    total = len(calls)
    first, last = min(per_day), max(per_day)
    daily_total = sum(int(row[1]) for row in daily)
    print(f"{total} calls from {first} to {last} in {path} (schema {SCHEMA})")
    check = "matches" if daily_total == total else "DIFFERS FROM"
    print(f"daily_calls: {len(daily)} days, {daily_total} calls ({check} the calls table)\n")

    print("Calls per source")
    rows = [
        [name, str(count), f"{100 * count / total:.1f}%", f"{revenue[name]:.2f}"]
        for name, count in per_source.most_common()
    ]
    print(table(["source", "calls", "share", "revenue"], rows) + "\n")

    top = [name for name, _count in per_source.most_common(SOURCES_SHOWN)]
    days = sorted(per_day)[-DAYS_SHOWN:]
    by_date = {str(row[0])[:10]: row for row in daily}
    print(f"Calls per day, last {len(days)} days (daily_calls totals and calls by source)")
    rows = []
    for day in days:
        counts = per_day[day]
        other = sum(counts.values()) - sum(counts[name] for name in top)
        api = by_date.get(day)
        rows.append(
            [
                day,
                str(api[1]) if api else "-",
                *(str(counts[name]) for name in top),
                str(other),
                f"{api[3]:.2f}" if api else "-",
            ]
        )
    print(table(["day", "calls", *top, "other", "revenue"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "demo/quickstart.duckdb"))
