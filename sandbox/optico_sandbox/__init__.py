"""Optico Data API sandbox: a local, deterministic stand-in for the unreachable live API.

Serves ``GET /data-api`` on 127.0.0.1 following shared/optico-data-api.md, standard
library only. From Python::

    with Sandbox(calls=1000, start_date="2024-01-01", end_date="2024-03-31") as sb:
        requests.get(sb.url, params={"api_key": sb.api_key, "type": "calls", ...})
        sb.truth_calls("2024-01-01", "2024-01-31")  # what the tap should extract
        sb.add_fault("http503", first=2)  # each distinct page fails twice, then works
        sb.requests  # RequestRecord log, api_key masked as "***"

From a shell: ``optico-sandbox --port 8765 --calls 50000`` (or ``python -m
optico_sandbox``); it prints the URL and the api key and serves until Ctrl-C.

Choices the documentation leaves open, made here:

* ``limit`` defaults to 100, ``page`` to 1; a ``page`` that is not an integer >= 1
  yields the (undocumented) error "Invalid parameter page".
* Results, including ``group_by_day`` rows, are newest first; ties keep a stable order
  (unless ``unstable_ties``).
* The data is messy by default: ~3% hidden callers (``caller`` is ""), ~1.3% look-alike
  calls sharing (start, caller, tracking number, phone) with the call before them.
* ``values="php"`` stringifies every value, the envelope's ``totalResults`` /
  ``nextPage`` included; ``status``, ``results`` and ``errors`` keep their shape.
* ``start_date > end_date`` is an empty OK result; empty parameters count as missing.
* Static (offline) calls come from three tracking numbers that carry an offline
  description (see :attr:`Sandbox.tracking_numbers`); their web fields are empty.
"""

from __future__ import annotations

from optico_sandbox.server import FAULT_KINDS, RequestRecord, Sandbox

__all__ = ["FAULT_KINDS", "RequestRecord", "Sandbox"]
