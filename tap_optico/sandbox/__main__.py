"""``python -m tap_optico.sandbox``: same as the ``optico-sandbox`` command."""

from __future__ import annotations

import sys

from tap_optico.sandbox.cli import main

sys.exit(main())
