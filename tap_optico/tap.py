"""The Optico tap: settings, streams, and failures told in one line."""

from __future__ import annotations

import functools
import io
import json
import os
import signal
import sys
import threading
import typing as t
from pathlib import Path

import click
from singer_sdk import Stream, Tap
from singer_sdk.exceptions import ConfigValidationError
from typing_extensions import override

from tap_optico import bookmarks, redact
from tap_optico.catalog import with_chosen_methods
from tap_optico.client import OpticoStream
from tap_optico.config_schema import (
    SCHEMA,
    SettingsError,
    check_environment,
    schema_errors,
    secret_values,
)
from tap_optico.errors import AccountError, OpticoError
from tap_optico.messages import BufferedWriter
from tap_optico.settings import Settings
from tap_optico.state import checked_state
from tap_optico.streams import CallsStream, DailyCallsStream

if t.TYPE_CHECKING:
    from types import FrameType


class StoppedError(OpticoError):
    """The run was stopped by a signal."""


class AccountsFailedError(OpticoError):
    """Some accounts could not be synced; the others were."""


class TapOptico(Tap):
    """Singer tap for the Optico call-tracking Data API."""

    name = "tap-optico"
    config_jsonschema = SCHEMA
    # The tap the CLI runs, for `invoke` to report after `sync_all` (which the SDK
    # marks final): the coercion counts, and the accounts that failed.
    _cli_tap: t.ClassVar[TapOptico | None] = None
    # msgspec encodes several times faster than the default; see messages.py.
    message_writer_class = BufferedWriter

    def __init__(self, *args: t.Any, validate_config: bool = True, **kwargs: t.Any) -> None:
        """Load and check the config and state; from here on every API key is masked in all logs.

        Raises:
            ConfigValidationError: a setting is invalid (no key is ever quoted).
            StateError: the state is not of a shape this tap reads.
        """
        if kwargs.get("parse_env_config"):
            _check_environment(f"{self.name.upper().replace('-', '_')}_")
        self._failed: dict[str, dict[str, AccountError]] = {}
        if isinstance(kwargs.get("catalog"), dict):
            kwargs["catalog"] = with_chosen_methods(kwargs["catalog"])
        self._load(*args, validate_config=validate_config, **kwargs)
        for key in secret_values(self.config):
            redact.install(key)
        bookmarks.quiet_unsorted_warning()
        if threading.current_thread() is threading.main_thread():
            # The SDK's handlers exit 0, as if an interrupted sync had succeeded.
            signal.signal(signal.SIGTERM, _interrupted)
            signal.signal(signal.SIGINT, _interrupted)
        if validate_config:
            self._check_before_requests()
        TapOptico._cli_tap = self

    def _load(self, *args: t.Any, validate_config: bool, **kwargs: t.Any) -> None:
        """The SDK's own loading of config, catalog and state, its errors told without a key.

        Raises:
            ConfigValidationError: a setting is invalid (no key is ever quoted).
        """
        invalid: ConfigValidationError | None = None
        try:
            super().__init__(*args, validate_config=validate_config, **kwargs)
        except ConfigValidationError as exc:
            invalid = exc
        if invalid is not None:
            # The SDK's errors quote the offending value, a key for a misshapen `accounts`:
            # ours never quote a secret setting, and all its values are masked as well.
            # Raised outside the except block, so no exception chain keeps the original.
            clean = redact.Redactor(*secret_values(self.config))
            errors = [clean(error) for error in schema_errors(self.config_jsonschema, self.config)]
            raise ConfigValidationError(clean(str(invalid)), errors=errors)

    def _check_before_requests(self) -> None:
        """The settings and every bookmark, read now: a bad one fails before any request.

        Raises:
            ConfigValidationError: a setting is invalid.
            StateError: a bookmark cannot be read.
        """
        try:
            _ = self.settings
        except SettingsError as exc:
            raise _invalid(exc) from None
        for stream in self.streams.values():
            if isinstance(stream, OpticoStream) and stream.selected:
                stream.walk.plan()

    @functools.cached_property
    def settings(self) -> Settings:
        """The settings, read once: both streams sync the same days, even across midnight."""
        return Settings.from_config(self.config, self.logger)

    @override
    def discover_streams(self) -> list[Stream]:
        return [CallsStream(self), DailyCallsStream(self)]

    @override
    def load_state(self, state: dict[str, t.Any]) -> None:
        """Refuse a state of another shape in one line, where the SDK would fail obscurely.

        Raises:
            StateError: the state is not of a shape this tap reads.
        """
        super().load_state(checked_state(state, self.logger))

    def account_failed(self, stream: str, account: str, error: AccountError) -> None:
        """Report a failed account (by name: its key is never shown); the others go on."""
        self._failed.setdefault(account, {})[stream] = error
        if len(self.settings.accounts) > 1:
            self.logger.error("account %s (%s): %s", account, stream, error)

    def has_failed(self, account: str) -> bool:
        """Whether an account already failed in this run (it is skipped from then on)."""
        return account in self._failed

    def _failure_line(self) -> str:
        if len(self.settings.accounts) == 1:
            return str(next(iter(next(iter(self._failed.values())).values())))
        names = ", ".join(sorted(self._failed))
        return (
            f"{len(self._failed)} of {len(self.settings.accounts)} accounts failed: {names}; "
            "the others were synced, and each resumes from its last completed window"
        )

    @classmethod
    @override
    def invoke(cls, *args: t.Any, **kwargs: t.Any) -> None:
        """Run the CLI; a bad input, API failure or signal ends with one line and exit code 1."""
        try:
            state = kwargs.get("state")
            if state is not None:
                text = state.read()
                if not text.strip():
                    # A first run of `--state state.json` after `touch state.json`.
                    cls.logger.info("the state file is empty: starting without a state")
                    text = "{}"
                _json_object("state", text)
                kwargs = {**kwargs, "state": io.StringIO(text)}
            super().invoke(*args, **kwargs)
            tap = TapOptico._cli_tap
            if tap is not None:
                tap.report()
        except (OpticoError, ConfigValidationError) as exc:
            cls.logger.error("%s", failure_line(exc))
            sys.exit(1)

    def report(self) -> None:
        """After a sync: the values emitted as null, then the accounts that failed, if any.

        Raises:
            AccountsFailedError: some accounts failed; the others were synced.
        """
        for stream in self.streams.values():
            if isinstance(stream, OpticoStream):
                stream.coerce.summary()
        if self._failed:
            raise AccountsFailedError(self._failure_line())

    @classmethod
    @override
    def cb_config(cls, ctx: click.Context, param: click.Option, value: tuple[str, ...]) -> t.Any:
        """Refuse a config file that is not a JSON object, in one line, before any request."""
        for path in value:
            if path != "ENV":
                try:
                    _json_object("config", Path(path).read_text(encoding="utf-8"))
                except (OpticoError, OSError) as exc:
                    cls.logger.error("%s: %s", path, exc)
                    ctx.exit(1)
        return super().cb_config(ctx, param, value)


def failure_line(error: OpticoError | ConfigValidationError) -> str:
    """The one line a failed run ends with, every key masked."""
    if isinstance(error, ConfigValidationError):
        # One line, where the SDK would log each error and then a second line.
        return "Config validation failed: " + redact.redact("; ".join(error.errors) or str(error))
    return redact.redact(str(error))


def _check_environment(prefix: str) -> None:
    """Refuse in one line a setting from the environment the SDK would fail to read."""
    try:
        check_environment(os.environ, prefix)
    except SettingsError as exc:
        raise _invalid(exc) from None


def _invalid(error: SettingsError) -> ConfigValidationError:
    """A setting our checks refuse, as the SDK's own config error: one line, no key."""
    return ConfigValidationError(str(error), errors=[str(error)])


def _interrupted(signum: int, frame: FrameType | None) -> None:
    """SIGTERM: stop now. Records written so far are covered by the last STATE."""
    name = signal.Signals(signum).name
    msg = f"stopped by {name}; the next run resumes from the last completed window"
    raise StoppedError(msg)


def _json_object(kind: str, text: str) -> None:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        msg = f"the {kind} file is not valid JSON"
        raise OpticoError(msg) from None
    if not isinstance(value, dict):
        msg = f"the {kind} file must hold a JSON object, not {type(value).__name__}"
        raise OpticoError(msg)
