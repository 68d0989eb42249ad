"""Where a call gets its key: `call_id`, and look-alike calls told apart.

The API has no call id; the key is a digest of what never changes about a call, and
look-alikes (calls equal in all of it) are numbered in a fixed order.
"""

from __future__ import annotations

import hashlib
import json
import typing as t


def call_id(wall_clock: str, caller: str | None, tracking: str | None, phone: str | None) -> str:
    """The digest of a call's immutable identity: the id of the first of its look-alikes.

    The API has no call id. A call is identified by when it started (local wall
    clock, as the API writes it), who called, the tracking number called and the
    destination it was forwarded to: none of these change after the call, unlike
    status, duration and revenue, which stay out of the digest.
    """
    identity = "\x1f".join((wall_clock, caller or "", tracking or "", phone or ""))
    return hashlib.blake2b(identity.encode(), digest_size=16).hexdigest()


def lookalike_id(first: str, occurrence: int) -> str:
    """The id of the `occurrence`-th look-alike (1-based) of the call whose id is `first`.

    Look-alikes are distinct calls that share the whole identity above: two hidden
    callers (an empty or constant `caller`) reaching one tracking number in the same
    second, or a dropped call redialled within the second. Nothing in their identity
    tells them apart, so they are numbered: the first keeps the identity's digest,
    which is every call's id before look-alikes were told apart (no warehouse is
    re-keyed), and the n-th gets the digest of that id and n. The numbering is
    counted over rows the tap trusts to hold the whole group (tally.py) and follows
    `lookalike_order`, never the order of the API's pages, so it is the same on every
    run, whatever the window, page size or concurrency.
    """
    if occurrence == 1:
        return first
    return hashlib.blake2b(f"{first}\x1f{occurrence}".encode(), digest_size=16).hexdigest()


# The fields that order look-alikes: the visit first (set for web calls, and fixed once
# the call is made), then what else the call carries, status, duration and revenue last
# since they change. Look-alikes equal in all of them are interchangeable.
LOOKALIKE_ORDER = (
    "visit_id",
    "trigger_type",
    "source",
    "url",
    "referer",
    "keyword",
    "call_path",
    "keypad",
    "client_data",
    "is_redirect",
    "expired_redirect",
    "status",
    "duration",
    "revenue",
)


def lookalike_order(record: t.Mapping[str, t.Any]) -> tuple[str, ...]:
    """A look-alike's place in its group: its fields as text, compared in LOOKALIKE_ORDER."""
    return tuple(_text(record.get(name)) for name in LOOKALIKE_ORDER)


def _text(value: t.Any) -> str:
    """A record value as comparable text: null and "" alike, booleans as 0/1, numbers as JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return value if isinstance(value, str) else json.dumps(value)


def number_lookalikes(group: list[dict[str, t.Any]]) -> None:
    """Give each record of one whole look-alike group its id, in `lookalike_order`."""
    if len(group) < 2:
        return
    first = group[0]["call_id"]
    group.sort(key=lookalike_order)
    for occurrence, record in enumerate(group, start=1):
        record["call_id"] = lookalike_id(first, occurrence)
