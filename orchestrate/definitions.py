"""Every Optico account a partition: assets, the sensor that keeps the partitions, a schedule.

One materialisation of a partition is one ``meltano el tap-optico <target>`` of that account
alone (a single ``api_key`` with ``account_name``), on a state id of its own,
``<environment>:tap-optico-to-<target>:account-<name>``: the bookmark is the tap's, held by
Meltano; Dagster adds no date partitions on top of it.

Settings come from the environment (see orchestrate/README.md): ``OPTICO_KEYS_DIR`` (one
key file per account), ``OPTICO_TARGET`` (default target-postgres), ``MELTANO_ENVIRONMENT``
(default dev), ``OPTICO_MELTANO_PROJECT`` (default this repository), ``OPTICO_CRON``.
"""

# No `from __future__ import annotations`: Dagster reads the context's and the resource's
# annotations as types.
import os
import sys
import typing as t
from collections.abc import Iterator
from pathlib import Path

import dagster as dg

from orchestrate.accounts import AccountsError, KeysDir
from orchestrate.meltano import Outcome, bookmark, read_state, run_el

PROJECT = Path(__file__).resolve().parents[1]
PARTITIONS = "optico_accounts"
# The Dagster pool capping accounts in flight; its limit times the tap's
# max_concurrent_requests is the most requests sent to the API at once.
POOL = "optico_api"
STREAMS = ("calls", "daily_calls")
ACCOUNT_TAG = "optico/account"
# Dagster runs that may still be running a step.
LIVE = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]
# Settings that would make a run sync other accounts than its partition's.
OTHER_ACCOUNTS = ("TAP_OPTICO_ACCOUNTS", "TAP_OPTICO_SELECT_ACCOUNTS")

accounts = dg.DynamicPartitionsDefinition(name=PARTITIONS)


def _default_meltano() -> str:
    beside = Path(sys.executable).with_name("meltano")
    return str(beside) if beside.exists() else "meltano"


class OpticoMeltano(dg.ConfigurableResource["OpticoMeltano"]):
    """The Meltano project that syncs one account per run, and where the accounts' keys are."""

    keys_dir: str
    project_dir: str = str(PROJECT)
    environment: str = "dev"
    target: str = "target-postgres"
    meltano: str = "meltano"

    def state_id(self, name: str) -> str:
        """The account's own Meltano state id."""
        return f"{self.environment}:tap-optico-to-{self.target}:account-{name}"

    def account_names(self) -> list[str]:
        """The configured accounts' names (no key is read)."""
        return KeysDir(Path(self.keys_dir)).names()

    def sync(self, name: str, *, force: bool = False) -> Outcome:
        """One ``meltano el`` of this account alone; ``force`` takes over a dead run's state id."""
        env = {k: v for k, v in os.environ.items() if k not in OTHER_ACCOUNTS}
        env |= {
            "TAP_OPTICO_API_KEY": KeysDir(Path(self.keys_dir)).key_of(name),
            "TAP_OPTICO_ACCOUNT_NAME": name,
            "NO_COLOR": "1",
        }
        command = [
            *self._meltano("--log-level=info", "--log-format=json"),
            *("el", "tap-optico", self.target, "--state-id", self.state_id(name)),
            *(["--force"] if force else []),
        ]
        return run_el(command, cwd=Path(self.project_dir), env=env)

    def state(self, name: str) -> dict[str, t.Any] | None:
        """The account's Singer state as Meltano holds it."""
        command = self._meltano("--log-level=warning", "state", "get", self.state_id(name))
        return read_state(command, cwd=Path(self.project_dir), env=os.environ)

    def _meltano(self, *options: str) -> list[str]:
        return [self.meltano, f"--environment={self.environment}", *options]


def _runs_syncing(context: dg.AssetExecutionContext, name: str) -> list[str]:
    """Other Dagster runs of these assets on this account that may still be running."""
    runs = context.instance.get_runs(dg.RunsFilter(tags={"dagster/partition": name}, statuses=LIVE))
    ours = set(context.assets_def.keys)
    this = context.run.run_id
    return [r.run_id for r in runs if r.run_id != this and ours & (r.asset_selection or ours)]


def _failure(name: str, state_id: str, outcome: Outcome) -> dg.Failure:
    return dg.Failure(
        description=f"account {name}: {outcome.summary}",
        metadata={
            "state_id": state_id,
            "exit_code": outcome.returncode,
            "log_tail": dg.MetadataValue.text("\n".join(outcome.tail)),
        },
        # The API refusing the key (or a parameter) answers the same on every attempt.
        allow_retries=not outcome.refused_by_api,
    )


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "calls",
            description="One row per tracked call, keyed on (account, call_id).",
            kinds={"meltano"},
        ),
        dg.AssetSpec(
            "daily_calls",
            description="One row per account and local day: calls, duration, revenue.",
            kinds={"meltano"},
        ),
    ],
    name="optico_account",
    group_name="optico",
    partitions_def=accounts,
    pool=POOL,
    retry_policy=dg.RetryPolicy(
        max_retries=3, delay=60, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
    ),
)
def optico_account(
    context: dg.AssetExecutionContext, optico: OpticoMeltano
) -> Iterator[dg.MaterializeResult[None]]:
    """Sync one account: both streams in one Meltano run, resumed from its own bookmark."""
    name = context.partition_key
    state_id = optico.state_id(name)
    outcome = optico.sync(name)
    if outcome.refused_as_running:
        others = _runs_syncing(context, name)
        if others:
            msg = f"account {name} is being synced by run {others[0]}: one run at a time"
            raise dg.Failure(description=msg, metadata={"state_id": state_id})
        # Meltano marks a job running until 5 minutes without heartbeat; Dagster, which
        # starts every run of this account, knows none is alive: the last one was killed.
        context.log.warning(f"{state_id} is marked running by a dead run: taking it over")
        outcome = optico.sync(name, force=True)
    if outcome.returncode != 0:
        raise _failure(name, state_id, outcome)
    state = optico.state(name)
    for stream in STREAMS:
        yield dg.MaterializeResult(
            asset_key=stream,
            metadata={
                "records": outcome.records.get(stream, 0),
                "bookmark": bookmark(state, stream, name) or "",
                "state_id": state_id,
                "seconds": round(outcome.seconds, 2),
            },
        )


optico_sync = dg.define_asset_job(
    "optico_sync",
    selection=[optico_account],
    description="Sync one account (a partition) into the warehouse.",
)


@dg.sensor(job=optico_sync, minimum_interval_seconds=60)
def optico_accounts_sensor(
    context: dg.SensorEvaluationContext, optico: OpticoMeltano
) -> dg.SensorResult:
    """Keep one partition per configured account; start the first sync of a new one."""
    try:
        configured = set(optico.account_names())
    except AccountsError as exc:
        return dg.SensorResult(skip_reason=str(exc))
    known = set(context.instance.get_dynamic_partitions(PARTITIONS))
    added, removed = sorted(configured - known), sorted(known - configured)
    requests: list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest] = []
    if added:
        requests.append(accounts.build_add_request(added))
    if removed:
        requests.append(accounts.build_delete_request(removed))
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=n, tags={ACCOUNT_TAG: n}) for n in added],
        dynamic_partitions_requests=requests,
        skip_reason=None if requests else "the partitions match the configured accounts",
    )


@dg.schedule(
    job=optico_sync,
    cron_schedule=os.environ.get("OPTICO_CRON", "0 6 * * *"),
    execution_timezone="Europe/Paris",
)
def optico_every_account(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
    """One run per account, each from its own bookmark."""
    names = context.instance.get_dynamic_partitions(PARTITIONS)
    return [dg.RunRequest(partition_key=n, tags={ACCOUNT_TAG: n}) for n in names]


defs = dg.Definitions(
    assets=[optico_account],
    jobs=[optico_sync],
    sensors=[optico_accounts_sensor],
    schedules=[optico_every_account],
    resources={
        "optico": OpticoMeltano(
            keys_dir=os.environ.get("OPTICO_KEYS_DIR", str(PROJECT / ".secrets" / "optico")),
            project_dir=os.environ.get("OPTICO_MELTANO_PROJECT", str(PROJECT)),
            environment=os.environ.get("MELTANO_ENVIRONMENT", "dev"),
            target=os.environ.get("OPTICO_TARGET", "target-postgres"),
            meltano=_default_meltano(),
        )
    },
)
