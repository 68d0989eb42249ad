"""End to end: the Dagster code location of orchestrate/, every account a partition.

Dagster's own APIs drive it (`materialize`, `dagster asset materialize` in processes of
their own, sensor and schedule evaluation contexts, `dagster definitions validate`), with
real Meltano (the session's install, tests/conftest.py), target-postgres and the sandbox.
The Dagster instance is orchestrate/dagster.yaml itself, on a PostgreSQL database of the
session's; Meltano's system database is another database of the same server, as the
deployment in orchestrate/README.md shares it between machines.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import typing as t
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock
from urllib.parse import urlsplit, urlunsplit

import dagster as dg
import psycopg
import pytest

from orchestrate.definitions import (
    PARTITIONS,
    POOL,
    OpticoMeltano,
    defs,
    optico_account,
    optico_accounts_sensor,
    optico_every_account,
)
from orchestrate.meltano import bookmark
from tests import expected
from tests.e2e import (
    LOOKBACK,
    PROJECT,
    Accounts,
    Meltano,
    Warehouse,
    calls_rows,
    daily_rows,
    run_args,
)
from tests.tap_run import bookmark_of, partitions

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]

RUN_TIMEOUT = 300
TARGET = "target-postgres"


def dagster_executable() -> str:
    return str(Path(sys.executable).with_name("dagster"))


def database_url(server: str, name: str) -> str:
    return urlunsplit(urlsplit(server)._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def databases(postgres_url: str) -> Iterator[dict[str, str]]:
    """Two databases on the test server: Dagster's storage and Meltano's system database."""
    names = {role: f"tap_optico_{role}_{uuid.uuid4().hex[:8]}" for role in ("dagster", "meltano")}
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        for name in names.values():
            conn.execute(f'create database "{name}"')
    yield {role: database_url(postgres_url, name) for role, name in names.items()}
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        for name in names.values():
            conn.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture(scope="session")
def dagster_home(databases: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DAGSTER_HOME holding the example orchestrate/dagster.yaml, unchanged."""
    home = tmp_path_factory.mktemp("dagster-home")
    shutil.copy(PROJECT / "orchestrate" / "dagster.yaml", home / "dagster.yaml")
    return home


@pytest.fixture(scope="session")
def instance(dagster_home: Path, databases: dict[str, str]) -> Iterator[dg.DagsterInstance]:
    with (
        mock.patch.dict(os.environ, {"DAGSTER_POSTGRES_URL": databases["dagster"]}),
        dg.DagsterInstance.from_config(str(dagster_home)) as found,
    ):
        yield found


def unique(*names: str) -> list[str]:
    """Account names of this test only: the session's Meltano database outlives it."""
    tag = uuid.uuid4().hex[:6]
    return [f"{name}-{tag}" for name in names]


@dataclass
class Location:
    """The code location as one test deploys it: a keys directory, the environment, Dagster."""

    meltano: Meltano
    instance: dg.DagsterInstance
    home: Path
    databases: dict[str, str]
    keys: Path
    settings: dict[str, str] = field(default_factory=dict)

    def deploy(self, acc: Accounts, warehouse: Warehouse, **overrides: t.Any) -> None:
        """One key file per account, the tap's and the target's settings, a partition each."""
        self.keys.mkdir(exist_ok=True)
        for name in acc.names:
            (self.keys / name).write_text(acc.key_of[name] + "\n")
        # TAP_OPTICO_ACCOUNTS among them too: a run must sync its partition's account alone.
        self.settings = {
            **acc.env(**overrides),
            **warehouse.env,
            "MELTANO_DATABASE_URI": self.databases["meltano"],
        }
        self.instance.add_dynamic_partitions(PARTITIONS, acc.names)

    def environ(self) -> dict[str, str]:
        return {
            **self.meltano.env(self.settings),
            "DAGSTER_HOME": str(self.home),
            "DAGSTER_POSTGRES_URL": self.databases["dagster"],
            "OPTICO_KEYS_DIR": str(self.keys),
            "OPTICO_TARGET": TARGET,
        }

    def resource(self) -> OpticoMeltano:
        return OpticoMeltano(
            keys_dir=str(self.keys),
            project_dir=str(PROJECT),
            target=TARGET,
            meltano=self.meltano.executable,
        )

    def materialize(self, name: str) -> dg.ExecuteInProcessResult:
        """One partition, in this process (the pipeline's processes inherit the environment)."""
        with mock.patch.dict(os.environ, self.environ(), clear=True):
            return dg.materialize(
                [optico_account],
                partition_key=name,
                instance=self.instance,
                resources={"optico": self.resource()},
                raise_on_error=False,
            )

    def start(self, name: str) -> subprocess.Popen[str]:
        """One partition in a process of its own, as a run worker on another machine."""
        return subprocess.Popen(
            [
                dagster_executable(),
                "asset",
                "materialize",
                "-m",
                "orchestrate.definitions",
                "--select",
                "calls,daily_calls",
                "--partition",
                name,
            ],
            cwd=PROJECT,
            env=self.environ(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own group: Dagster, Meltano, the tap, the target
        )

    def state(self, name: str) -> dict[str, t.Any]:
        """The account's Singer state in the shared system database."""
        with mock.patch.dict(os.environ, self.environ(), clear=True):
            state = self.resource().state(name)
        assert state is not None, f"{name} has no state"
        return state


@pytest.fixture
def location(meltano, instance, dagster_home, databases, tmp_path) -> Location:
    return Location(meltano, instance, dagster_home, databases, tmp_path / "keys")


def materialized(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, t.Any]]:
    """Each asset's materialisation metadata, as plain values."""
    return {
        event.asset_key.to_user_string(): {k: v.value for k, v in event.metadata.items()}
        for event in result.asset_materializations_for_node("optico_account")
    }


def failure_of(result: dg.ExecuteInProcessResult) -> str:
    failures = result.get_step_failure_events()
    assert len(failures) == 1, failures
    data = failures[0].step_failure_data
    user = data.user_failure_data
    return user.description or "" if user else data.error.message if data.error else ""


def output_of(process: subprocess.Popen[str], timeout: float = RUN_TIMEOUT) -> str:
    out, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, f"exit {process.returncode}:\n{out[-6000:]}"
    return out


# ---------------------------------------------------------------- the definitions
def test_the_definitions_validate_with_dagster():
    result = subprocess.run(
        [dagster_executable(), "definitions", "validate", "-m", "orchestrate.definitions"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All code locations passed validation" in result.stdout + result.stderr
    assets = defs.resolve_assets_def("calls")
    assert isinstance(assets.partitions_def, dg.DynamicPartitionsDefinition)
    assert assets.partitions_def.name == PARTITIONS
    assert assets.op.pool == POOL
    assert assets.op.retry_policy is not None


def test_the_sensor_adds_and_removes_partitions_as_accounts_change(tmp_path):
    keys = tmp_path / "keys"
    keys.mkdir()
    for name, key in {"acme": "key-acme-1", "globex": "key-globex-2"}.items():
        (keys / name).write_text(key)
    # Kubernetes projects secrets through hidden entries: they are not accounts.
    (keys / "..data").mkdir()
    resources = {"optico": OpticoMeltano(keys_dir=str(keys))}
    with dg.instance_for_test() as instance:

        def tick() -> dg.SensorResult:
            context = dg.build_sensor_context(instance=instance, resources=resources)
            result = optico_accounts_sensor(context)
            assert isinstance(result, dg.SensorResult)
            assert "key-" not in repr(result), "names only, never keys"
            # What the daemon does with the requests.
            for request in result.dynamic_partitions_requests or []:
                if isinstance(request, dg.AddDynamicPartitionsRequest):
                    instance.add_dynamic_partitions(PARTITIONS, list(request.partition_keys))
                else:
                    for key in request.partition_keys:
                        instance.delete_dynamic_partition(PARTITIONS, key)
            return result

        first = tick()
        assert instance.get_dynamic_partitions(PARTITIONS) == ["acme", "globex"]
        assert [r.partition_key for r in first.run_requests or []] == ["acme", "globex"]

        # A client onboarded, another gone: one partition added (and synced), one removed.
        (keys / "initech").write_text("key-initech-3")
        (keys / "globex").unlink()
        second = tick()
        assert sorted(instance.get_dynamic_partitions(PARTITIONS)) == ["acme", "initech"]
        assert [r.partition_key for r in second.run_requests or []] == ["initech"]

        third = tick()
        assert not third.run_requests
        assert not third.dynamic_partitions_requests
        assert third.skip_reason is not None

        # A name that cannot be a partition stops the sensor with one line; nothing changes.
        (keys / "bad name").write_text("key-bad-4")
        assert "'bad name' is not an account name" in str(tick().skip_reason)
        assert sorted(instance.get_dynamic_partitions(PARTITIONS)) == ["acme", "initech"]


def test_the_schedule_requests_every_partition():
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(PARTITIONS, ["acme", "globex", "initech"])
        context = dg.build_schedule_context(instance=instance)
        requests = optico_every_account(context)
        assert isinstance(requests, list)
        assert sorted(r.partition_key or "" for r in requests) == ["acme", "globex", "initech"]
        assert all(r.tags["optico/account"] == r.partition_key for r in requests)


# ---------------------------------------------------------------- (a) truth, union
def test_partitions_land_the_truth_and_their_union_equals_one_multi_account_run(
    location, warehouse, postgres_url, meltano, make_sandbox
):
    north, south, west = unique("north", "south", "west")
    acc = Accounts(make_sandbox, {north: 400, south: 900, west: 150}, seed=91)
    location.deploy(acc, warehouse)
    for name in acc.names:
        result = location.materialize(name)
        assert result.success, failure_of(result)
        # Each partition lands exactly its own account's truth, nothing of the others'.
        assert {a for a, _ in calls_rows(warehouse)} <= set(acc.names)
        landed = {k: v for k, v in calls_rows(warehouse).items() if k[0] == name}
        assert landed == acc.truth(name)
        state = location.state(name)
        for stream in ("calls", "daily_calls"):
            assert list(partitions(state, stream)) == [name], "its state id holds it alone"
        meta = materialized(result)
        assert meta["calls"]["records"] == len(acc.truth(name))
        assert meta["daily_calls"]["records"] == len(acc.truth_daily(name))
        assert meta["calls"]["bookmark"] == bookmark_of(state, "calls", name)
        assert meta["calls"]["bookmark"] == max(r["start_date"] for r in acc.truth(name).values())
        assert meta["daily_calls"]["bookmark"] == bookmark(state, "daily_calls", name)
        assert meta["calls"]["state_id"] == f"dev:tap-optico-to-{TARGET}:account-{name}"
    assert calls_rows(warehouse) == acc.truth()
    assert daily_rows(warehouse) == acc.truth_daily()

    # One multi-account run of the same data, into another schema, lands the same rows.
    single = Warehouse(postgres_url, f"{warehouse.schema}_one")
    try:
        meltano.run(*run_args(single.schema), env={**acc.env(), **single.env}, timeout=RUN_TIMEOUT)
        assert calls_rows(single) == calls_rows(warehouse)
        assert daily_rows(single) == daily_rows(warehouse)
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f'drop schema if exists "{single.schema}" cascade')


# ---------------------------------------------------------------- (b) two processes at once
def test_two_partitions_at_once_from_separate_processes_load_the_same_tables(
    location, warehouse, meltano, make_sandbox
):
    first, second = unique("first", "second")
    acc = Accounts(make_sandbox, {first: 1500, second: 1200}, seed=93)
    location.deploy(acc, warehouse, max_concurrent_requests=1)
    # target-postgres races when two loaders create one table: a one-day sync without
    # state creates them first (README, "Scale out with Dagster").
    meltano.run(
        "run",
        "--no-state-update",
        "tap-optico",
        TARGET,
        env={
            **acc.env(select_accounts=json.dumps([first]), end_date="2024-01-01"),
            **warehouse.env,
        },
        timeout=RUN_TIMEOUT,
    )
    processes = {name: location.start(name) for name in acc.names}
    outputs = {name: output_of(process) for name, process in processes.items()}

    assert calls_rows(warehouse) == acc.truth()
    assert daily_rows(warehouse) == acc.truth_daily()
    for name in acc.names:
        state = location.state(name)
        assert list(partitions(state, "calls")) == [name], f"{name}: its own account only"
        runs = location.instance.get_runs(dg.RunsFilter(tags={"dagster/partition": name}))
        assert [r.status for r in runs] == [dg.DagsterRunStatus.SUCCESS], outputs[name][-3000:]
    # They did run at the same time: each started before the other ended.
    spans = {}
    for name in acc.names:
        (run,) = location.instance.get_runs(dg.RunsFilter(tags={"dagster/partition": name}))
        record = location.instance.get_run_record_by_id(run.run_id)
        assert record is not None
        assert record.start_time is not None
        assert record.end_time is not None
        spans[name] = (record.start_time, record.end_time)
    assert spans[first][0] < spans[second][1]
    assert spans[second][0] < spans[first][1]


# ---------------------------------------------------------------- (c) a refused key
def test_a_refused_key_fails_its_own_partition_only_with_the_api_message(
    location, warehouse, make_sandbox
):
    east, broken, centre = unique("east", "broken", "centre")
    acc = Accounts(make_sandbox, {east: 500, broken: 300, centre: 250}, seed=95)
    acc.key_of[broken] = "e2e-refused-key"
    location.deploy(acc, warehouse)
    results = {name: location.materialize(name) for name in acc.names}

    assert not results[broken].success
    message = failure_of(results[broken])
    assert message == f"account {broken}: Optico API error: Invalid api key"
    assert results[broken].retry_attempts_for_node("optico_account") == 0, "not retried"
    failure = results[broken].get_step_failure_events()[0].step_failure_data
    assert failure.user_failure_data is not None
    tail = failure.user_failure_data.metadata["log_tail"].value
    assert "Invalid api key" in str(tail)
    assert "e2e-refused-key" not in message + str(tail)
    for name in (east, centre):
        assert results[name].success, failure_of(results[name])
    assert calls_rows(warehouse) == acc.truth(east, centre)
    assert daily_rows(warehouse) == acc.truth_daily(east, centre)


# ---------------------------------------------------------------- (d) killed, then retried
def test_a_partition_killed_mid_run_then_retried_resumes_from_its_confirmed_state(
    location, warehouse, make_sandbox
):
    (name,) = unique("killed")
    acc = Accounts(make_sandbox, {name: 2500}, seed=97)
    location.deploy(acc, warehouse, end_date="2024-01-31")
    first = location.materialize(name)
    assert first.success, failure_of(first)
    confirmed = location.state(name)
    marks = {s: bookmark(confirmed, s, name) or "" for s in ("calls", "daily_calls")}
    at_first = warehouse.count("calls")
    assert at_first == len([k for k, r in acc.truth().items() if r["start_date"] < "2024-02"])

    # The next run, slowed down, killed (all its processes) once some of its rows landed.
    location.settings |= {
        "TAP_OPTICO_END_DATE": "2024-03-31",
        "TAP_OPTICO_PAGE_SIZE": "100",
        "TAP_OPTICO_MAX_CONCURRENT_REQUESTS": "1",
        "TARGET_POSTGRES_BATCH_SIZE_ROWS": "100",
    }
    acc.sb.latency = 0.15
    process = location.start(name)
    try:
        warehouse.wait_for_rows("calls", at_first + 300, process)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
    assert at_first < warehouse.count("calls") < 2500, "killed midway"
    assert location.state(name) == confirmed, "no state confirmed since"

    # Run monitoring marks a run whose worker died failed (orchestrate/dagster.yaml); then
    # the retry. Meltano still marks the killed job running; Dagster knows it is dead.
    (killed,) = location.instance.get_runs(
        dg.RunsFilter(tags={"dagster/partition": name}, statuses=[dg.DagsterRunStatus.STARTED])
    )
    location.instance.report_run_failed(killed)
    acc.sb.latency = 0.0
    acc.sb.clear_requests()
    retried = location.materialize(name)
    assert retried.success, failure_of(retried)
    assert retried.retry_attempts_for_node("optico_account") == 0, "taken over at once"
    assert acc.first_days(name) == {s: expected.resume_day(marks[s], LOOKBACK) for s in marks}, (
        "from its bookmark"
    )
    assert calls_rows(warehouse) == acc.truth(), "nothing lost, nothing duplicated"
    assert daily_rows(warehouse) == acc.truth_daily()
    state = location.state(name)
    assert bookmark_of(state, "calls", name) == max(r["start_date"] for r in acc.truth().values())
