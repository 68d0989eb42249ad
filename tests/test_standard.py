"""singer-sdk's standard tap tests, against a sandbox started for this module."""

from __future__ import annotations

import atexit

from singer_sdk.testing import get_tap_test_class

from optico_sandbox import Sandbox
from tap_optico.tap import TapOptico

# The factory needs the config when the module is collected, so the sandbox starts here.
_SANDBOX = Sandbox(
    calls=400, start_date="2024-01-01", end_date="2024-02-29", seed=31, extra_fields=True
).start()
atexit.register(_SANDBOX.stop)

TestTapOptico = get_tap_test_class(
    TapOptico,
    config={
        "api_key": _SANDBOX.api_key,
        "api_url": _SANDBOX.url,
        "start_date": "2024-01-01",
        "end_date": "2024-02-29",
        "page_size": 100,
    },
)
