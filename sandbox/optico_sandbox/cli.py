"""``optico-sandbox`` command: serve the sandbox until interrupted."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from optico_sandbox.server import Sandbox


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="optico-sandbox",
        description="Serve an Optico-compatible Data API on 127.0.0.1 with synthetic calls.",
    )
    parser.add_argument("--port", type=int, default=8765, help="port to bind (0 = random)")
    parser.add_argument("--calls", type=int, default=1000, help="number of calls to generate")
    parser.add_argument("--start-date", default="2024-01-01", help="first local day (YYYY-MM-DD)")
    parser.add_argument("--end-date", default="2024-03-31", help="last local day (YYYY-MM-DD)")
    parser.add_argument("--seed", type=int, default=0, help="data seed")
    parser.add_argument("--naming", choices=("camel", "snake"), default="camel")
    parser.add_argument("--values", choices=("native", "php"), default="native")
    parser.add_argument("--api-key", default="sandbox-key", help="the key clients must send")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added per request")
    parser.add_argument("--error-status", type=int, default=200, help="HTTP status of errors")
    parser.add_argument("--extra-fields", action="store_true", help="add unknown fields")
    parser.add_argument("--verbose", action="store_true", help="log requests (key masked)")
    parser.add_argument(
        "--lookalikes",
        type=float,
        default=0.013,
        help="share of calls that are a look-alike twin of the call before (0 = none)",
    )
    parser.add_argument(
        "--hidden-callers",
        type=float,
        default=0.03,
        help="share of calls with a hidden (empty) caller",
    )
    parser.add_argument(
        "--unstable-ties",
        action="store_true",
        help="order calls of one second differently on each page",
    )
    parser.add_argument(
        "--ignore-page",
        action="store_true",
        help="serve page 1's rows whatever page is asked for",
    )
    parser.add_argument(
        "--accounts",
        type=int,
        default=1,
        help="number of accounts, each with --calls calls of its own (keys KEY, KEY-2, ...)",
    )
    return parser


def account_keys(api_key: str, count: int) -> list[str]:
    """The keys of ``--accounts N``: the first is ``--api-key``, then KEY-2 .. KEY-N."""
    return [api_key] + [f"{api_key}-{n}" for n in range(2, count + 1)]


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, start the sandbox, print how to reach it and wait for Ctrl-C."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.accounts < 1:
        parser.error("--accounts must be at least 1")
    for name in ("lookalikes", "hidden_callers"):
        if not 0 <= getattr(args, name) <= 1:
            parser.error(f"--{name.replace('_', '-')} must be between 0 and 1")
    keys = account_keys(args.api_key, args.accounts)
    sandbox = Sandbox(
        calls=args.calls,
        start_date=args.start_date,
        end_date=args.end_date,
        seed=args.seed,
        naming=args.naming,
        values=args.values,
        api_key=args.api_key,
        port=args.port,
        latency=args.latency,
        error_status=args.error_status,
        extra_fields=args.extra_fields,
        verbose=args.verbose,
        lookalikes=args.lookalikes,
        hidden_callers=args.hidden_callers,
        unstable_ties=args.unstable_ties,
        ignore_page=args.ignore_page,
        # Seeds follow the first account's, so every account holds calls of its own.
        accounts={
            key: {"calls": args.calls, "seed": args.seed + n} for n, key in enumerate(keys) if n
        },
    )
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # Handle both explicitly: a backgrounded process may inherit SIGINT as ignored.
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    with sandbox:
        print(
            f"Optico sandbox: {sandbox.total_calls} calls, {args.start_date}..{args.end_date},"
            f" seed {args.seed}",
            flush=True,
        )
        print(f"URL: {sandbox.url}", flush=True)
        print(f"API key: {sandbox.api_key}", flush=True)
        if len(keys) > 1:
            listed = [{"name": f"account-{n}", "api_key": key} for n, key in enumerate(keys, 1)]
            print(f"Accounts: {len(keys)}, keys {keys[0]} .. {keys[-1]}", flush=True)
            print(f"TAP_OPTICO_ACCOUNTS='{json.dumps(listed)}'", flush=True)
        print("Press Ctrl-C to stop.", flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
