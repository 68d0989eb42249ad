"""Shared fixtures: a running Optico sandbox per test; Meltano and PostgreSQL for the e2e tier."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from filelock import FileLock

from optico_sandbox import Sandbox
from tests.e2e import POSTGRES_URL, REQUIRE_POSTGRES, Meltano, Warehouse, meltano_executable
from tests.tap_run import catalog_for


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


@pytest.fixture
def calls_only() -> dict[str, Any]:
    """A catalog selecting only the `calls` stream."""
    return catalog_for(["calls"])


@pytest.fixture(scope="session")
def meltano(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Meltano:
    """`meltano install` of every plugin in meltano.yml, once per test run (~15 s with uv).

    The pytest-xdist workers of one run share it: the first to need it installs it, under
    a lock, in the run's own temporary directory. Each worker then runs Meltano in a system
    directory of its own over the shared plugins (`Meltano.sibling`).
    """
    base = tmp_path_factory.getbasetemp()
    root = base if worker_id == "master" else base.parent
    shared = root / "meltano-sys"
    with FileLock(root / "meltano-sys.lock"):
        if not (shared / ".installed").exists():
            shared.mkdir(exist_ok=True)
            Meltano(meltano_executable(), shared).run("install", timeout=900)
            (shared / ".installed").touch()
    if worker_id == "master":
        return Meltano(meltano_executable(), shared)
    return Meltano(meltano_executable(), shared).sibling(base / "meltano-sys")


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """TAP_OPTICO_TEST_POSTGRES_URL, answering; skipped without it unless CI requires it."""
    if not POSTGRES_URL:
        message = "TAP_OPTICO_TEST_POSTGRES_URL is not set"
        if REQUIRE_POSTGRES:
            pytest.fail(f"{message} but TAP_OPTICO_REQUIRE_POSTGRES=1")
        pytest.skip(message)
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=10) as conn:
            conn.execute("select 1")
    except psycopg.OperationalError as exc:
        if REQUIRE_POSTGRES:
            pytest.fail(f"PostgreSQL at {POSTGRES_URL} is required but unreachable: {exc}")
        pytest.skip(f"PostgreSQL at {POSTGRES_URL} is unreachable: {exc}")
    return POSTGRES_URL


@pytest.fixture
def warehouse(postgres_url: str) -> Iterator[Warehouse]:
    """A PostgreSQL schema of the test's own, dropped afterwards."""
    schema = f"tap_optico_e2e_{uuid.uuid4().hex[:12]}"
    yield Warehouse(postgres_url, schema)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'drop schema if exists "{schema}" cascade')
