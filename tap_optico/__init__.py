"""tap-optico: a Singer tap for the Optico call-tracking Data API."""

from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("tap-optico")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
