"""Shared fixtures: a running Optico sandbox per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from optico_sandbox import Sandbox


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """A started default sandbox (1000 calls, 2024-01-01..2024-03-31); ``.url`` is its URL."""
    with Sandbox() as sb:
        yield sb


@pytest.fixture
def make_sandbox() -> Iterator[Callable[..., Sandbox]]:
    """Factory of started sandboxes taking the Sandbox constructor kwargs; all stopped after."""
    started: list[Sandbox] = []

    def _make(**kwargs: Any) -> Sandbox:
        sb = Sandbox(**kwargs).start()
        started.append(sb)
        return sb

    yield _make
    for sb in started:
        sb.stop()
