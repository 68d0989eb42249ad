"""The replication method a catalog asks for, wherever Meltano's `metadata:` put it.

Meltano's `metadata: {calls: {replication-method: FULL_TABLE}}` writes the method
into the stream's metadata, but the SDK reads it only from the entry's own
`replication_method`, which discovery filled with INCREMENTAL: the user's choice
would be ignored and the bookmark honoured. The metadata, which only a user sets,
wins over the entry.
"""

from __future__ import annotations

import typing as t

_KEYS = ("replication-method", "forced-replication-method")


def with_chosen_methods(catalog: dict[str, t.Any]) -> dict[str, t.Any]:
    """The catalog with each stream's `replication_method` as its metadata chose it."""
    for entry in catalog.get("streams") or []:
        if not isinstance(entry, dict):
            continue
        for item in entry.get("metadata") or []:
            if isinstance(item, dict) and item.get("breadcrumb") == []:
                chosen = next(
                    (item["metadata"][k] for k in _KEYS if (item.get("metadata") or {}).get(k)),
                    None,
                )
                if isinstance(chosen, str):
                    entry["replication_method"] = chosen.upper()
    return catalog
