"""`python -m tap_optico`: the same as the `tap-optico` command."""

from tap_optico.tap import TapOptico

TapOptico.cli()
