"""The Optico tap: settings, streams, and one-line errors."""

from __future__ import annotations

import functools
import sys
import typing as t

from singer_sdk import Stream, Tap
from singer_sdk.exceptions import ConfigValidationError

from tap_optico import redact
from tap_optico.errors import OpticoError
from tap_optico.messages import BufferedWriter
from tap_optico.settings import SCHEMA, Settings, SettingsError
from tap_optico.streams import CallsStream, DailyCallsStream


class TapOptico(Tap):
    """Singer tap for the Optico call-tracking Data API."""

    name = "tap-optico"
    config_jsonschema = SCHEMA
    # msgspec encodes several times faster than the default; see messages.py.
    message_writer_class = BufferedWriter

    def __init__(self, *args: t.Any, validate_config: bool = True, **kwargs: t.Any) -> None:
        """Load and check the config; from here on the API key is masked in all logs.

        Raises:
            ConfigValidationError: a setting is invalid (the key is never quoted).
        """
        invalid: ConfigValidationError | None = None
        try:
            super().__init__(*args, validate_config=validate_config, **kwargs)
        except ConfigValidationError as exc:
            invalid = exc
        if invalid is not None:
            # jsonschema quotes the offending value: mask the key if it is the culprit.
            # Raised outside the except block, so no exception chain keeps the original.
            clean = redact.Redactor(str(self.config.get("api_key") or ""))
            errors = [clean(error) for error in invalid.errors]
            raise ConfigValidationError(clean(str(invalid)), errors=errors)
        if self.config.get("api_key"):
            redact.install(str(self.config["api_key"]))
        if validate_config:
            try:
                _ = self.settings
            except SettingsError as exc:
                raise ConfigValidationError(str(exc), errors=[str(exc)]) from None

    @functools.cached_property
    def settings(self) -> Settings:
        """The settings, read once: both streams sync the same days, even across midnight."""
        return Settings.from_config(self.config)

    def discover_streams(self) -> list[Stream]:
        """The two streams of the Data API."""
        return [CallsStream(self), DailyCallsStream(self)]

    @classmethod
    def invoke(cls, *args: t.Any, **kwargs: t.Any) -> None:
        """Run the CLI; an API or settings failure ends with one line and exit code 1."""
        try:
            super().invoke(*args, **kwargs)
        except OpticoError as exc:
            cls.logger.error("%s", exc)
            sys.exit(1)


if __name__ == "__main__":
    TapOptico.cli()
