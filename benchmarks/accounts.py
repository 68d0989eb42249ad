"""Many accounts in one tap run vs one account at a time, against a slow API.

    uv run python benchmarks/accounts.py

The sandbox serves 50 accounts of 1,000 calls each (a key, a seed and calls of their
own per account) with 300 ms of latency on every request. Two ways of syncing them
all, both `tap-optico > /dev/null` with default settings (3 requests in flight):

* together: one run whose `accounts` lists all 50;
* one at a time: 50 runs in a row, each with `select_accounts` naming one of them.

Each round runs both, alternating which goes first; the figures are the medians of
the rounds' wall times. The sandbox runs in this process (its threads sleep through
the latency); a warm-up sync without latency fills its page cache first, so every
measured request is served from memory after its 300 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import typing as t
from pathlib import Path

from optico_sandbox import Sandbox

TAP = [sys.executable, "-m", "tap_optico"]


def account_keys(count: int) -> list[str]:
    return [f"bench-account-{n:02d}-key" for n in range(1, count + 1)]


def write_config(config: dict[str, t.Any]) -> str:
    handle, path = tempfile.mkstemp(suffix=".json", prefix="tap-optico-bench-")
    os.close(handle)
    Path(path).write_text(json.dumps(config))
    return path


def tap_run(config_path: str) -> float:
    """Seconds one `tap-optico --config ... > /dev/null` takes; it must succeed."""
    started = time.perf_counter()
    result = subprocess.run(
        [*TAP, "--config", config_path],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        last = result.stderr.strip().splitlines()[-1:] or ["(no output)"]
        raise SystemExit(f"tap-optico failed ({result.returncode}): {last[0]}")
    return elapsed


def main(argv: t.Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=50)
    parser.add_argument("--calls", type=int, default=1000, help="calls per account")
    parser.add_argument("--latency", type=float, default=0.3, help="seconds per request")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (>= 1)")
    parser.add_argument("--start-date", default="2024-03-04")
    parser.add_argument("--end-date", default="2024-03-31", help="4 weekly windows by default")
    args = parser.parse_args(argv)

    keys = account_keys(args.accounts)
    names = [f"account-{n:02d}" for n in range(1, args.accounts + 1)]
    sandbox = Sandbox(
        calls=args.calls,
        start_date=args.start_date,
        end_date=args.end_date,
        seed=1,
        api_key=keys[0],
        accounts={key: {"calls": args.calls, "seed": n} for n, key in enumerate(keys) if n},
    )
    with sandbox:
        base = {
            "api_url": sandbox.url,
            "accounts": [{"name": n, "api_key": k} for n, k in zip(names, keys, strict=True)],
            "start_date": args.start_date,
            "end_date": args.end_date,
        }
        together = write_config(base)
        one_by_one = [write_config({**base, "select_accounts": [name]}) for name in names]

        sandbox.latency = 0.0
        tap_run(together)  # warm-up: every page generated once, then cached
        warm_requests = len(sandbox.requests)
        sandbox.clear_requests()
        sandbox.latency = args.latency

        print(
            f"{args.accounts} accounts x {args.calls} calls, {args.start_date}..{args.end_date}, "
            f"{warm_requests} requests per full sync, API latency {args.latency * 1000:.0f} ms, "
            f"default settings; {args.rounds} interleaved round(s)",
            flush=True,
        )
        times: dict[str, list[float]] = {"together": [], "one at a time": []}
        for round_ in range(args.rounds):
            order = ["together", "one at a time"]
            if round_ % 2:
                order.reverse()
            for way in order:
                if way == "together":
                    elapsed = tap_run(together)
                else:
                    elapsed = sum(tap_run(path) for path in one_by_one)
                times[way].append(elapsed)
                print(f"  round {round_ + 1}: {way}: {elapsed:.1f} s", flush=True)

    median_together = statistics.median(times["together"])
    median_single = statistics.median(times["one at a time"])
    print(f"one run, {args.accounts} accounts together: {median_together:.1f} s (median)")
    print(f"{args.accounts} runs, one account at a time: {median_single:.1f} s (median)")
    print(f"together is {median_single / median_together:.2f}x faster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
