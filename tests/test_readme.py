"""The README states what the tap really does: its settings table and its test command."""

from __future__ import annotations

import re
import subprocess
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
