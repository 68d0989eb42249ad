"""Print the dbt marts' headline figures and draw calls per day by source with the answer rate.

Reads the marts that `meltano run ... dbt-duckdb:build` built in a DuckDB file and writes a
PNG that opens with no network. Run with the optico-report utility's Python (matplotlib and
the duckdb that target-duckdb writes with), as scripts/quickstart does:

    .meltano/utilities/optico-report/venv/bin/python demo/report.py demo/quickstart.duckdb
    uv run meltano invoke optico-report:duckdb demo/quickstart.duckdb --png docs/optico-calls.png
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import sys
from pathlib import Path
from typing import Any

import duckdb
import matplotlib as mpl

mpl.use("Agg")  # files only, no display

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
from matplotlib.ticker import PercentFormatter

SOURCES_DRAWN = 5
ROLLING_DAYS = 7
COLORS = ("#1f6fb4", "#ff8c1a", "#2ca02c", "#9467bd", "#8c564b", "#b0b0b0")


def quoted(name: str) -> str:
    """A SQL identifier, double-quoted."""
    return '"' + name.replace('"', '""') + '"'


def rows(db: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[Any, ...]]:
    """Every row of a query."""
    return db.sql(sql).fetchall()


def table(header: list[str], body: list[list[str]]) -> str:
    """A plain text table, numbers right-aligned."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *body, strict=True)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, body)])


def print_measures(title: str, label: str, found: list[tuple[Any, ...]]) -> None:
    """A titled table of (label, calls, answered, revenue) rows, with the answer rate."""
    body = [[str(k), str(c), f"{int(a) / int(c):.1%}", f"{float(r):,.2f}"] for k, c, a, r in found]
    print(title)
    print(table([label, "calls", "answer rate", "revenue"], body) + "\n")


def chart(daily: list[tuple[Any, ...]], png: Path, title: str) -> None:
    """Calls per day stacked by source (the biggest, then the rest); the answer rate above.

    Args:
        daily: (local_date, source, calls, answered) rows.
        png: The file written.
        title: The picture's title.
    """
    totals: collections.Counter[str] = collections.Counter()
    for _day, source, calls, _answered in daily:
        totals[source] += calls
    top = [name for name, _ in totals.most_common(SOURCES_DRAWN)]
    days: list[dt.date] = sorted({row[0] for row in daily})
    index = {day: i for i, day in enumerate(days)}
    series = {name: [0] * len(days) for name in [*top, "other"]}
    calls_per_day = [0] * len(days)
    answered_per_day = [0] * len(days)
    for day, source, calls, answered in daily:
        i = index[day]
        series[source if source in top else "other"][i] += calls
        calls_per_day[i] += calls
        answered_per_day[i] += answered
    if not any(series["other"]):
        del series["other"]

    fig, (rate, bars) = plt.subplots(
        2, 1, sharex=True, figsize=(11, 6), dpi=100, height_ratios=(1, 2.6)
    )
    bottom = [0] * len(days)
    for color, (name, values) in zip(COLORS, series.items(), strict=False):
        bars.bar(days, values, bottom=bottom, width=0.85, color=color, label=name, linewidth=0)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    bars.set_ylabel("calls per day")
    bars.set_ylim(0, max(bottom) * 1.2)
    bars.legend(loc="upper left", ncols=len(series), fontsize=8, frameon=False)
    bars.xaxis.set_major_locator(mdates.WeekdayLocator(byweekday=mdates.MO))
    bars.xaxis.set_major_formatter(mdates.DateFormatter("%d %b"))
    bars.tick_params(axis="x", labelsize=8)

    nan = float("nan")
    daily_rate = [a / c if c else nan for a, c in zip(answered_per_day, calls_per_day, strict=True)]
    rolling = []
    for i in range(len(days)):
        lo = max(0, i - ROLLING_DAYS + 1)
        calls = sum(calls_per_day[lo : i + 1])
        rolling.append(sum(answered_per_day[lo : i + 1]) / calls if calls else nan)
    rate.plot(days, daily_rate, color="#d62728", linewidth=0.8, alpha=0.45, label="per day")
    rate.plot(days, rolling, color="#d62728", linewidth=2, label=f"{ROLLING_DAYS} days")
    rate.set_ylim(0, 1)
    rate.yaxis.set_major_formatter(PercentFormatter(1.0))
    rate.set_ylabel("answer rate")
    rate.legend(loc="lower left", ncols=2, fontsize=8, frameon=False)
    rate.set_title(title, fontsize=11, loc="left")
    for axes in (rate, bars):
        axes.spines[["top", "right"]].set_visible(False)
        axes.grid(axis="y", linewidth=0.4, alpha=0.5)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    # No software/version metadata: the committed picture changes only when the data does.
    fig.savefig(png, metadata={"Software": None})
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Print the figures and write the picture; 1 when the marts disagree with the load."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("database", nargs="?", default="demo/quickstart.duckdb")
    parser.add_argument("--schema", default="optico_analytics", help="schema of the marts")
    parser.add_argument("--source-schema", default="optico", help="schema of the loaded tables")
    parser.add_argument("--png", type=Path, default=Path("docs/optico-calls.png"))
    args = parser.parse_args(argv)

    db = duckdb.connect(args.database, read_only=True)
    marts, raw = quoted(args.schema), quoted(args.source_schema)
    daily = rows(
        db,
        f"select local_date, source, sum(calls), sum(answered) from {marts}.optico_calls_daily"  # noqa: S608
        " group by local_date, source order by local_date, source",
    )
    if not daily:
        print(f"No calls in {args.schema}.optico_calls_daily.")
        return 1
    ((calls, answered, revenue, duration, first, last, accounts),) = rows(
        db,
        "select sum(calls), sum(answered), sum(revenue), sum(total_duration_s), min(local_date),"  # noqa: S608
        f" max(local_date), count(distinct account) from {marts}.optico_calls_daily",
    )
    ((loaded,),) = rows(db, f"select count(*) from {raw}.calls")  # noqa: S608
    n_calls, n_answered = int(calls), int(answered)
    check = "=" if n_calls == int(loaded) else "DIFFERS FROM"
    print(f"optico_calls_daily: {n_calls} calls {check} {loaded} calls loaded ({args.database})")
    print(
        f"{first} to {last}, {accounts} account(s): {n_answered} answered"
        f" ({n_answered / n_calls:.1%}), revenue {float(revenue):,.2f},"
        f" {int(duration) / n_calls:.0f} s per call\n"
    )

    by_source = rows(
        db,
        "select source, sum(calls) as calls, sum(answered), sum(revenue)"  # noqa: S608
        f" from {marts}.optico_sources group by source order by calls desc, source",
    )
    print_measures("optico_sources, per source", "source", by_source)
    keywords = rows(
        db,
        "select keyword, sum(calls) as calls, sum(answered), sum(revenue)"  # noqa: S608
        f" from {marts}.optico_sources where keyword <> '(none)'"
        " group by keyword order by calls desc, keyword limit 5",
    )
    print_measures("optico_sources, top keywords", "keyword", keywords)
    ((callers, repeat, repeat_calls),) = rows(
        db,
        "select count(*), sum(case when is_repeat_caller then 1 else 0 end),"  # noqa: S608
        f" sum(case when is_repeat_caller then calls else 0 end) from {marts}.optico_callers",
    )
    n_callers, n_repeat = int(callers), int(repeat or 0)
    print(
        f"optico_callers: {n_callers} callers, {n_repeat} called back"
        f" ({n_repeat / n_callers:.1%}), making {int(repeat_calls or 0)} calls\n"
    )

    chart(
        daily, args.png, f"Optico calls per day by source, and the answer rate ({first} to {last})"
    )
    print(f"Picture: {args.png}")
    return 0 if check == "=" else 1


if __name__ == "__main__":
    sys.exit(main())
