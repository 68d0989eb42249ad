"""The Dagster code location of tap-optico: every Optico account a partition.

Definitions are in :mod:`orchestrate.definitions` (``dagster dev`` finds them through
pyproject.toml's ``[tool.dagster]``). This package is not part of the tap's wheel.
"""
