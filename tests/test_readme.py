"""The README states what the tap really does: its settings table and its test command."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tests.tap_run import TAP

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()


def table(markdown: str) -> list[str]:
    return [line for line in markdown.splitlines() if line.startswith("|")]


def test_the_settings_table_is_what_about_prints():
    about = subprocess.run(
        [*TAP, "--about", "--format=markdown"], capture_output=True, text=True, check=True
    ).stdout
    settings = about.split("## Settings", 1)[1]
    documented = re.search(r"<!-- settings:start -->(.*)<!-- settings:end -->", README, re.S)
    assert documented is not None
    assert table(documented.group(1)) == table(settings)


def test_the_quickstart_commands_exist():
    for command in ("./scripts/quickstart", "./scripts/test"):
        assert command in README
        assert (ROOT / command).is_file()
    assert "./scripts/test" in (ROOT / ".ci" / "run").read_text()


def test_the_plain_pipe_commands_work_as_written_on_a_first_run(sandbox, tmp_path):
    """The README's plain Singer pipe, run twice in an empty folder: a first run, then a next."""
    block = README.split("## Use as a plain Singer pipe", 1)[1].split("```sh\n", 1)[1]
    script = block.split("```", 1)[0]
    # The placeholders made real: the sandbox's key and URL, and its last day (not today's,
    # which would walk two and a half years of empty windows).
    config = (
        f'{{"api_key": "{sandbox.api_key}", "api_url": "{sandbox.url}", '
        f'"end_date": "{sandbox.end_date}", '
    )
    script = script.replace('{"api_key": "your-key", ', config)
    assert "target-jsonl" in script
    # target-jsonl prints each STATE value it confirms on stdout, as this stand-in does.
    target = (
        f'{sys.executable} -c "import json, sys; '
        "[print(json.dumps(m['value'])) for m in map(json.loads, sys.stdin) "
        "if m.get('type') == 'STATE']\""
    )
    script = script.replace("tap-optico", " ".join(TAP)).replace("target-jsonl", target)
    for run in ("first", "next"):
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, f"{run} run: {done.stderr[-2000:]}"
        state = json.loads((tmp_path / "state.json").read_text())
        assert state["bookmarks"]["calls"]["partitions"], f"{run} run: a bookmark is kept"
