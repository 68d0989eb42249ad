"""The tap alone at another commit and at the working tree, side by side on one sandbox.

    uv run python benchmarks/compare.py --base 0ea72dc --calls 200000

Each run is `python -m tap_optico` from a git worktree of `--base` and from this tree,
interleaved, against the same sandbox (its pages cached by a warm-up run of each). It
prints the median wall time of each, their ratio, and the records and distinct
`(account, call_id)` keys each emitted against the sandbox's truth.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from optico_sandbox import Sandbox

ROOT = Path(__file__).resolve().parent.parent


def run(root: Path, config: Path) -> tuple[float, int, int]:
    """Wall seconds, calls records and distinct keys of one sync from `root`'s tap_optico."""
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "tap_optico", "--config", str(config)],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        check=True,
    ).stdout
    wall = time.monotonic() - started
    keys = []
    for line in out.splitlines():
        if line.startswith(b'{"type":"RECORD","stream":"calls"'):
            record = json.loads(line)["record"]
            keys.append((record["account"], record["call_id"]))
    return wall, len(keys), len(set(keys))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the commit to compare with")
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="optico-compare-")))
        base = work / "base"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(base), args.base],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        stack.callback(
            subprocess.run, ["git", "worktree", "remove", "--force", str(base)], cwd=ROOT
        )
        sb = stack.enter_context(
            Sandbox(calls=args.calls, start_date="2024-01-01", end_date="2024-06-30")
        )
        config = work / "config.json"
        config.write_text(
            json.dumps(
                {
                    "api_key": sb.api_key,
                    "api_url": sb.url,
                    "start_date": sb.start_date,
                    "end_date": sb.end_date,
                }
            )
        )
        roots = {args.base: base, "working tree": ROOT}
        walls: dict[str, list[float]] = {name: [] for name in roots}
        counts = {name: run(root, config)[1:] for name, root in roots.items()}  # warm-up
        for _ in range(args.runs):
            for name, root in roots.items():
                walls[name].append(run(root, config)[0])
        medians = {name: statistics.median(values) for name, values in walls.items()}
        print(f"sandbox truth: {sb.total_calls} calls")
        for name, median in medians.items():
            records, keys = counts[name]
            print(f"{name}: median {median:.2f} s, {records} records, {keys} distinct keys")
        print(
            f"ratio working tree / {args.base}: {medians['working tree'] / medians[args.base]:.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
