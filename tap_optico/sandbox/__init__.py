"""Optico Data API sandbox: a local, deterministic stand-in for the unreachable live API.

Example:
    >>> from tap_optico.sandbox import Sandbox
    >>> with Sandbox(calls=500) as sb:  # doctest: +SKIP
    ...     requests.get(sb.url, params={"api_key": sb.api_key, ...})
"""

from __future__ import annotations

from tap_optico.sandbox.server import FAULT_KINDS, RequestRecord, Sandbox

__all__ = ["FAULT_KINDS", "RequestRecord", "Sandbox"]
