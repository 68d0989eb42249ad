"""``python -m optico_sandbox``: same as the ``optico-sandbox`` command."""

from __future__ import annotations

import sys

from optico_sandbox.cli import main

sys.exit(main())
